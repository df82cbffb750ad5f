"""The demo path end to end at the tiny preset (every stage CLI as a subprocess), the report and preview."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs.demokit import synth
from jobs.report import markdown, plots
from pipeline import flowimage, rgbf
from pipeline.storage import ShardReader, ShardWriter

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    proc = _run(
        ["jobs.demo", "--preset", "tiny", "--workers", "2", "--data", str(root / "data"), "--runs", str(root / "runs")],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, proc.stdout


@pytest.mark.slow
def test_demo_writes_a_sane_report(demo):
    root, stdout = demo
    out = root / "runs" / "report"
    for name in (
        "report.md",
        "summary.json",
        "confusion.png",
        "curves_pretrain.png",
        "curves_finetune.png",
        "flow_colour_key.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert list(out.glob("panel_*.png"))
    s = json.loads((out / "summary.json").read_text())
    n_test = s["settings"]["test_videos"]
    assert n_test > 0 and s["settings"]["train_videos"] > 0
    assert [r["stream"] for r in s["results"]][:2] == ["RGB", "RGBF"]
    for r in s["results"]:
        assert 0.0 <= r["top1"] <= 1.0 and r["n"] == n_test
    assert all(v > 0 for v in s["timings"].values())
    for stream in ("rgb", "rgbf"):
        m = json.loads((root / "runs" / f"evaluate-{stream}" / "metrics.json").read_text())
        cm = np.array(m["video"]["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == n_test
        assert m["stream"] == stream
    md = (out / "report.md").read_text()
    assert "RGBF" in md and "confusion.png" in md and "jobs.extract" in md
    assert "video top-1" in stdout and "report.md" in stdout


@pytest.mark.slow
def test_preview_renders_a_video_of_the_demo_shards(demo, tmp_path):
    root, _ = demo
    shards = root / "data" / "shards" / "target"
    proc = _run(
        ["jobs.preview", "--manifest", str(shards), "--video", "v_MoveUp_g01_c01", "--out", str(tmp_path)], timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "v_MoveUp_g01_c01.png").stat().st_size > 0
    bad = _run(["jobs.preview", "--manifest", str(shards), "--video", "v_Nope", "--out", str(tmp_path)], timeout=120)
    assert bad.returncode == 2 and "v_Nope" in bad.stderr


def test_stream_panel_reads_a_shard(tmp_path):
    rgb = synth.render_video("MoveDown", frames=5, size=(32, 40))
    flow = np.zeros((4, 32, 40, 2), np.float32)
    flow[:, 10:20, 10:20, 1] = 3.0
    with ShardWriter(tmp_path / "s.h5") as w:
        w.add("v", {"rgb": rgb, "flow": flowimage.flow_to_image(flow), "rgbf": rgbf.make_rgbf(rgb[:-1], flow)})
    with ShardReader(tmp_path / "s.h5") as r:
        rows = plots.panel_frames(r, "v", n=3)
        assert [rows[k].shape for k in plots.ROWS] == [(3, 32, 40, 3)] * 4
        path = plots.stream_panel(r, "v", tmp_path / "panel.png", n=3)
    assert path.stat().st_size > 0
    # the colour row encodes the downward flow inside the square and none outside it
    col = rows["Flow (colour)"][0]
    ref = flowimage.flow_to_color(flow[0], 3.0)[15, 15]
    assert col[15, 15].min() < 60 and np.argmax(col[15, 15]) == np.argmax(ref)  # saturated, same hue
    assert (col[0, 0] >= 235).all()  # ~white: flow-image quantisation leaves < 0.1 px


def test_colour_wheel_matches_flow_to_color():
    wheel = plots.colour_wheel(41)
    right = flowimage.flow_to_color(np.array([[[20.0, 0.0]]], np.float32), max_flow=20.0)[0, 0]
    assert np.abs(wheel[20, 40].astype(int) - right).max() <= 1
    assert (wheel[0, 0] == 255).all() and (wheel[20, 20] == 255).all()  # outside the disc / zero flow


def test_markdown_lists_results_and_figures():
    s = {
        "title": "t",
        "description": "d",
        "results": [{"model": "m", "stream": "RGBF", "top1": 0.95, "mean_class_accuracy": 0.9, "n": 20}],
        "timings": {"extract": 1.5},
        "settings": {"a": 1},
        "figures": {"Curves": "curves.png"},
        "commands": [["python", "-m", "jobs.extract"]],
    }
    md = markdown.markdown(s)
    assert "| m | RGBF | 95.0% | 90.0% | 20 |" in md and "![Curves](curves.png)" in md


def test_demo_training_commands_select_on_validation(tmp_path):
    """Finetuning holds out a validation group and evaluation scores best.pt; pretraining has no evaluation;
    --validation-only stops before the test videos; --resume drops --no-resume."""
    from jobs import demo

    calls = []
    p = demo.PRESETS["default"]
    shards = {"pretrain": tmp_path / "pre", "target": tmp_path / "tgt"}
    assert (
        demo.train_and_evaluate(
            lambda stage, args: calls.append((stage, args)), p, shards, tmp_path, validation_only=True
        )
        == {}
    )
    stages = [s for s, _ in calls]
    assert stages == ["pretrain-rgb", "finetune-rgb", "pretrain-rgbf", "finetune-rgbf"]  # no evaluate-*
    args = dict(calls)
    assert "data.val_fraction=0" in args["pretrain-rgb"] and "eval.every=0" in args["pretrain-rgb"]
    ft = args["finetune-rgb"]
    assert f"data.val_fraction={p.val_fraction}" in ft and "data.val_group_rule=ucf101" in ft and "--no-resume" in ft
    calls.clear()
    demo.train_and_evaluate(lambda stage, args: calls.append((stage, args)), p, shards, tmp_path, resume=True)
    args = dict(calls)
    assert not any("--no-resume" in a for a in args.values())
    assert str(tmp_path / "finetune-rgbf" / "best.pt") in args["evaluate-rgbf"]
    assert str(tmp_path / "finetune-rgb" / "best.pt") in args["evaluate-rgbf"]  # --fuse
