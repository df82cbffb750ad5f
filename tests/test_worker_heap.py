"""A streaming worker keeps frame-sized arrays out of glibc's heap (manifests.extraction.shard.bound_heap).

glibc's default mmap threshold is dynamic: once a mapped block is freed, later blocks up to its size come from
the heap, where they leave free but resident holes and the heap's extent creeps up with the video's length
(docs/benchmarks/scale.md, worker memory). The mechanism is checked in fresh interpreters, whose malloc state
is known: an array of one chunk of frames, allocated after one such array was freed, is a mapping of its own
after ``bound_heap`` and a piece of the heap without it (glibc's default). Two more check that
``stream_video`` and a pipelined run's flow actor call ``bound_heap`` with the frame size they are given."""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.extraction.flowpool import FlowActor
from manifests.extraction import ExtractConfig, VideoTask, flow_stage, stream_video
from manifests.extraction import shard as extraction
from pipeline.flow import FlowConfig
from pipeline.storage import ShardWriter

from videoutil import moving_square, write_video

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import ctypes, json, sys
import numpy as np
from manifests.extraction.shard import bound_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

info = ctypes.CDLL(None).mallinfo2
info.restype = MallInfo2
if sys.argv[1] == "bound":
    assert bound_heap(128, 160)
n = 64 * 128 * 160 * 3  # one chunk of frames (shard.STREAM_FRAMES) at 128x160
a = np.ones(n, np.uint8)
del a  # a freed mapping: glibc's default raises its threshold to its size here
before = info().hblkhd  # bytes in mappings
b = np.ones(n, np.uint8)
print(json.dumps({"mapped": info().hblkhd - before >= n}))
"""


def _mapped(mode: str) -> bool:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(p.stdout.strip().splitlines()[-1])["mapped"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt / mallinfo2)")
def test_bound_heap_maps_chunk_sized_arrays():
    assert not _mapped("default")  # glibc's dynamic threshold: the second array comes from the heap
    assert _mapped("bound")


def test_stream_video_bounds_the_heap(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(extraction, "bound_heap", lambda h, w: calls.append((h, w)))
    video = write_video(tmp_path / "v.avi", moving_square(12, 32, 40))
    cfg = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(inner=1, outer=1, solver=1), static_threshold=0.0)
    task = VideoTask("v", str(video), "v.avi", None, None, num_frames=12, fps=25.0, duration_s=12 / 25)
    with ShardWriter(tmp_path / "s.h5", codec="lzf") as w:
        stream_video(task, cfg, flow_stage(cfg, "cpu"), w, "v", contained=False)
    assert calls == [(32, 40)]


def test_flow_actor_bounds_the_heap_per_frame_size(monkeypatch):
    calls = []
    monkeypatch.setattr(extraction, "bound_heap", lambda h, w: calls.append((h, w)))
    actor = FlowActor(FlowConfig.resolve(inner=1, outer=1, solver=1).params, "cpu", threads=1)
    frames = moving_square(4, 32, 40)

    async def requests():
        a = await actor.solve(frames)
        b = await actor.solve(frames[:3])  # same frame size: bound once
        c = await actor.solve(moving_square(3, 24, 40))  # a new size: bound again
        return a, b, c

    a, b, c = asyncio.run(requests())
    assert calls == [(32, 40), (24, 40)]
    assert a.shape == (3, 32, 40, 2) and b.shape == (2, 32, 40, 2) and c.shape == (2, 24, 40, 2)
