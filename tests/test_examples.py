"""The documented examples keep working: docs/examples/own_training_loop.py runs on tiny shards."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from fixtures import synthetic_shards

REPO = Path(__file__).resolve().parents[1]


def test_own_training_loop_example(tmp_path):
    shards = synthetic_shards(tmp_path / "shards", num_videos=8, num_classes=2, frames=8)
    cmd = [
        sys.executable,
        str(REPO / "docs/examples/own_training_loop.py"),
        "--shards",
        str(tmp_path / "shards"),
        "--stream",
        "rgbf",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--clip-len",
        "4",
        "--crop",
        "16",
        "--width",
        "0.0625",
        "--workers",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"version {shards.name}: 8 videos, 2 classes")
    losses = [float(ln.rsplit(" ", 1)[1]) for ln in lines if " step " in ln]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert "clip top-1 over the 6 training clips seen" in lines[-1]
