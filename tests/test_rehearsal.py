"""The rehearsal benchmark's dataset plan, its generator on a small shape, its measuring and its flags."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from jobs.bench import rehearsal


def test_plan_has_ucf101s_shape():
    rows = rehearsal.plan_dataset(13320, 133)
    first = [r for r in rows if not r["later"]]
    assert len(first) == 13320 and len(rows) == 13320 + 133
    per_group = Counter((r["cls"], r["group"]) for r in first)
    assert len(per_group) == 101 * 25 and set(per_group.values()) <= {4, 5, 6, 7}
    plus = Counter((r["cls"], r["group"]) for r in rows)
    assert max(plus.values()) <= 7  # a later clip goes into a group that had room
    assert len({r["rel"] for r in rows}) == len(rows)
    assert all(25 <= r["frames"] <= 50 for r in rows)
    broken = Counter(r["broken"] for r in first if "broken" in r)
    assert set(broken) == set(rehearsal.BROKEN_KINDS) and 120 <= sum(broken.values()) <= 140  # about 1 %
    assert all(r["rel"].endswith(".mp4") for r in first if r.get("broken") == "audio-only")
    assert not any("broken" in r for r in rows if r["later"])
    assert Counter(r["profile"] for r in first).keys() == set(range(len(rehearsal.PROFILES)))


def test_generate_small_dataset(tmp_path):
    from manifests.source.builders import build_ucf101

    res = rehearsal.generate(tmp_path, 100, 5, classes=4, groups=5)
    assert res["videos"] == 100 and res["extra"] == 5
    videos = tmp_path / "data" / "videos"
    files = sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*") if p.is_file())
    assert len(files) == 100 and len(list((tmp_path / "data" / "later").rglob("*.*"))) == 5
    ann = tmp_path / "data" / "annotations"
    assert (ann / "classInd.txt").read_bytes().startswith(b"1 Action001\r\n")
    plan = build_ucf101(videos, ann)
    assert sorted(e.rel_path for e in plan.entries) == files  # every file listed, nothing missing
    assert all(e.status == "ok" for e in plan.entries)
    sizes = {p.stat().st_size for p in videos.rglob("*") if p.is_file()}
    assert 0 in sizes  # the zero-byte file (the plan's one broken clip at this size)


def test_tree_sampler_sees_children_and_their_cpu():
    busy = "import time; x = bytearray(80 << 20)\nwhile time.process_time() < 1.5: pass"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"
    p = subprocess.Popen([sys.executable, "-c", code])
    s = rehearsal.TreeSampler(p.pid)
    p.wait()
    r = s.stop()
    assert r["processes"] >= 2
    assert 0.9 <= r["cpu_s"] <= 3  # the child's 1.5 CPU s, less at most one sampling interval
    assert r["other_peak_mb"] >= 80  # the child's 80 MB, not the parent's
    assert r["driver_peak_mb"] < r["other_peak_mb"]


@pytest.mark.parametrize(
    "argv,expect",
    [
        (["--videos", "5"], "--videos 5"),
        (["--videos", "0"], "--videos 0"),
        (["--workers", "0"], "--workers 0"),
        (["--stages", "gen", "train"], "--stages"),
        (["--export-streams", "rgbf"], "--export-streams"),
        (["--size", "0", "0"], "--size"),
        (["--manifest-entries", "-1"], "--manifest-entries"),
        (["--extra", "0"], "--extra"),
        (["--resume-classes", "0"], "--resume-classes 0"),
        (["--resume-classes", "102"], "--resume-classes 102"),
    ],
)
def test_bad_flags_one_line_exit_2_nothing_made(tmp_path, argv, expect):
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    p = subprocess.run(
        [sys.executable, "-m", "jobs.bench.rehearsal", "--work", str(work), "--out", str(tmp_path / "r.md"), *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and expect in lines[0], p.stderr
    assert lines[0].startswith("bench.rehearsal: error: ")
    assert not work.exists() and not (tmp_path / "r.md").exists()
