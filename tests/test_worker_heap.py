"""A streaming worker keeps frame-sized arrays out of glibc's heap (manifests.extraction.shard.bound_heap).

glibc's default mmap threshold is dynamic: once a mapped block is freed, later blocks up to its size come from
the heap, where they leave free but resident holes and the heap's extent creeps up with the video's length
(docs/benchmarks/scale.md, worker memory). Each case runs in a fresh interpreter, whose malloc state is known,
and asks mallinfo2 whether an array of one chunk of frames, allocated after one such array was freed, is a
mapping of its own; the control case (no stream_video) shows that glibc's default answers no."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from videoutil import moving_square, write_video

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import ctypes, json, sys
import numpy as np

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

info = ctypes.CDLL(None).mallinfo2
info.restype = MallInfo2
if sys.argv[1] != "-":  # one video through the worker's path first
    from manifests.extraction import ExtractConfig, VideoTask, flow_stage, stream_video
    from pipeline.flow import FlowConfig
    from pipeline.storage import ShardWriter

    cfg = ExtractConfig(size=(128, 160), flow=FlowConfig.resolve(inner=1, outer=1, solver=1), static_threshold=0.0)
    task = VideoTask("v", sys.argv[1], "v.avi", None, None, num_frames=12, fps=25.0, duration_s=12 / 25)
    with ShardWriter(sys.argv[2], codec="lzf") as w:
        stream_video(task, cfg, flow_stage(cfg, "cpu"), w, "v", contained=False)
n = 64 * 128 * 160 * 3  # one chunk of frames (shard.STREAM_FRAMES) at 128x160
a = np.ones(n, np.uint8)
del a  # a freed mapping: glibc's default raises its threshold to its size here
b = np.ones(n, np.uint8)
print(json.dumps({"mapped": info().hblkhd >= n}))
"""


def _mapped(*args: str) -> bool:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(p.stdout.strip().splitlines()[-1])["mapped"]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt / mallinfo2)")
def test_stream_video_maps_frame_sized_arrays(tmp_path):
    video = write_video(tmp_path / "v.avi", moving_square(12, 128, 160))
    assert not _mapped("-")  # glibc's default: the second array comes from the heap
    assert _mapped(str(video), str(tmp_path / "s.h5"))  # after a video through stream_video: its own mapping
