"""Bad input to every CLI stage: exit 2, one line naming the argument or path, no traceback, nothing written.

The matrix runs each stage's ``main`` in-process (fast: every check happens before Ray, a model or a data
loader) and compares a snapshot of the test's directory tree before and after, so a published version, a
moved LATEST or a half-written work dir fails the case. A few cases run as subprocesses to check what a
user sees (exit status, stderr) and the <= 30 s bound of an --address that does not answer.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures import synthetic_shards
from test_extract import make_source
from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]
FAST = ["--size", "32", "40", "--flow-param", "inner=2", "--flow-param", "outer=2", "--flow-param", "solver=2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Inputs shared by the cases: a source manifest, a shard dataset, a file, an unwritable dir, videos."""
    d = tmp_path_factory.mktemp("world")
    vids = {f"good{i}": write_video(d / "videos" / f"good{i}.avi", moving_square(6, 48, 64, seed=i)) for i in range(2)}
    ucf = d / "ucf"
    (ucf / "videos" / "Walk").mkdir(parents=True)
    write_video(ucf / "videos" / "Walk" / "v_Walk_g01_c01.avi", moving_square(4, 32, 32))
    (ucf / "ann").mkdir()
    (ucf / "ann" / "classInd.txt").write_text("1 Walk\n")
    (ucf / "ann" / "trainlist01.txt").write_text("Walk/v_Walk_g01_c01.avi 1\n")
    (ucf / "ann" / "testlist01.txt").write_text("")
    (d / "empty").mkdir()
    (d / "a_file").write_text("not a directory\n")
    (d / "not_ckpt.pt").write_text("not a checkpoint\n")
    locked = d / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return {
        "root": d,
        "source": make_source(d / "manifests", vids),
        "shards": synthetic_shards(d / "shards"),
        "file": d / "a_file",
        "locked": locked,
        "empty": d / "empty",
        "ucf": ucf,
        "not_ckpt": d / "not_ckpt.pt",
        "videos": d / "videos",
    }


def snapshot(root: Path) -> dict[str, object]:
    """Every path under root with its size (files) and the content of LATEST pointers."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_text() if p.name == "LATEST" else (p.stat().st_size if p.is_file() else "dir")
    return out


W = "{"  # placeholders are filled from the world fixture: {source}, {shards}, {file}, ...
CASES: list[tuple[str, str, str]] = [  # (stage, argv template, text the message must contain)
    # build_manifest
    ("build_manifest", "--dataset folder --videos {videos} --out {root}/m1 --workers -1", "--workers -1"),
    ("build_manifest", "--dataset folder --videos {videos} --out {root}/m1 --chunk 0", "--chunk 0"),
    ("build_manifest", "--dataset folder --videos {videos} --out {file}", "--out"),
    ("build_manifest", "--dataset folder --videos {videos} --out {locked}/m", "not writable"),
    ("build_manifest", "--dataset folder --videos {root}/nope --out {root}/m1", "--videos"),
    ("build_manifest", "--dataset folder --videos {empty} --out {root}/m1 --workers 0", "no video files"),
    ("build_manifest", "--dataset ucf999 --videos {videos} --out {root}/m1", "--dataset"),
    ("build_manifest", "--dataset hmdb51 --videos {ucf}/videos --annotations {ucf}/ann --out {root}/m1", "ann"),
    ("build_manifest", "--dataset ucf101 --videos {ucf}/videos --annotations {file} --out {root}/m1", "--annotations"),
    ("build_manifest", "--dataset folder --videos {videos} --out {root}/m1 --test-fraction 1.5", "--test-fraction"),
    ("build_manifest", "--dataset folder --videos {videos} --out {root}/m1 --address 127.0.0.1:1", "--address"),
    ("build_manifest", "--dataset folder --videos {videos}", "--out"),
    (
        "build_manifest",
        "--dataset folder --videos {videos} --out {root}/m1 --max-failure-rate -0.1",
        "--max-failure-rate",
    ),
    ("build_manifest", "diff {root}/nope {source}", "base"),
    ("build_manifest", "--dataset folder --videos {videos} --out {root}/m1 --partial maybe", "--partial"),
    # extract
    ("extract", "--manifest {source} --out {root}/s1 --workers -1", "--workers -1"),
    ("extract", "--manifest {source} --out {root}/s1 --codec webp", "--codec webp"),
    ("extract", "--manifest {source} --out {root}/s1 --codec depth=gzip", "depth"),
    ("extract", "--manifest {source} --out {root}/s1 --shard-size 0", "--shard-size 0"),
    ("extract", "--manifest {source} --out {root}/s1 --size 0 0", "--size 0 0"),
    ("extract", "--manifest {source} --out {root}/s1 --split split9", "--split split9"),
    ("extract", "--manifest {source} --out {file}", "--out"),
    ("extract", "--manifest {source} --out {locked}/s", "not writable"),
    ("extract", "--manifest {root}/nope --out {root}/s1", "--manifest"),
    ("extract", "--manifest {shards} --out {root}/s1", "'shards' version"),
    ("extract", "--manifest {source} --out {root}/s1 --address 127.0.0.1:1", "--address 127.0.0.1:1"),
    ("extract", "--manifest {source} --out {root}/s1 --address nowhere", "--address nowhere"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-param levels=3", "--flow-param"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-param inner", "--flow-param inner"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-param wmedian=4", "wmedian must be 0 (off) or an odd"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-param coarse_scale=1.5", "coarse_scale must be 0 (off)"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-param lighting=log", "lighting must be one of"),
    ("extract", "--manifest {source} --out {root}/s1 --max-failure-rate 2", "--max-failure-rate"),
    ("extract", "--manifest {source} --out {root}/s1 --resize squash", "--resize"),
    ("extract", "--manifest {source} --out {root}/s1 --quality 0", "--quality 0"),
    ("extract", "--manifest {source} --out {root}/s1 --min-frames 0", "--min-frames 0"),
    ("extract", "--manifest {source} --out {root}/s1 --bound -1", "--bound"),
    ("extract", "--manifest {source} --out {root}/s1 --workers two", "--workers"),
    ("extract", "--manifest {source} --out {root}/s1 --mode fast", "--mode"),
    ("extract", "--manifest {source} --out {root}/s1 --partial maybe", "--partial"),
    ("extract", "--manifest {source} --out {root}/s1 --flow-workers 0", "--flow-workers 0"),
    ("extract", "--manifest {source} --out {root}/s1 --mode tasks --flow-workers 2", "--flow-workers 2"),
    # train
    ("train", "optim.epochs=1", "data.manifest"),
    ("train", "data.manifest={root}/nope out_dir={root}/r1", "data.manifest"),
    ("train", "data.manifest={source} out_dir={root}/r1", "'shards' version"),
    ("train", "data.manifest={shards} out_dir={root}/r1 data.split=split9", "data.split split9"),
    ("train", "data.manifest={shards} out_dir={file}", "out_dir"),
    ("train", "data.manifest={shards} out_dir={root}/r1 optim.epochs=0", "optim.epochs"),
    ("train", "data.manifest={shards} out_dir={root}/r1 init_from={root}/nope.pt", "init_from"),
    ("train", "data.manifest={shards} out_dir={root}/r1 --resume {root}/nope.pt", "--resume"),
    ("train", "--config {root}/nope.yaml", "nope.yaml"),
    ("train", "data.manifest={shards} out_dir={root}/r1 --workers -1", "workers"),
    # evaluate
    ("evaluate", "--checkpoint {root}/nope.pt --manifest {shards} --out {root}/e1", "--checkpoint"),
    ("evaluate", "--checkpoint {not_ckpt} --manifest {shards} --out {root}/e1", "not a jobs.train checkpoint"),
    ("evaluate", "--checkpoint {not_ckpt} --manifest {shards} --out {root}/e1 --num-clips 0", "--num-clips 0"),
    ("evaluate", "--checkpoint {not_ckpt} --manifest {shards} --out {root}/e1 --num-crops 3", "--num-crops"),
    ("evaluate", "--checkpoint {not_ckpt} --manifest {shards} --out {root}/e1 --stream depth", "--stream depth"),
    # preview
    ("preview", "--manifest {root}/nope --video v000 --out {root}/p1", "--manifest"),
    ("preview", "--manifest {source} --video v000 --out {root}/p1", "'shards' version"),
    ("preview", "--manifest {shards} --video nope --out {root}/p1", "--video nope"),
    ("preview", "--manifest {shards} --video v000 --out {root}/p1 --frames 0", "--frames 0"),
    ("preview", "--manifest {shards} --video v000 --out {file}", "--out"),
    # make_demo_data
    ("make_demo_data", "--out {root}/d1 --size 47 64", "--size 47 64"),
    ("make_demo_data", "--out {root}/d1 --classes 0", "--classes 0"),
    ("make_demo_data", "--out {root}/d1 --videos-per-class 2 --clips-per-group 4", "--videos-per-class"),
    ("make_demo_data", "--out {file}", "--out"),
    ("make_demo_data", "--out {root}/d1 --frames 1", "--frames 1"),
    # export, card, versions
    ("export", "--manifest {shards} --out {root}/x1 --jpeg-quality 0", "--jpeg-quality"),
    ("export", "--manifest {shards} --out {file}", "--out"),
    ("export", "--manifest {shards} --out {root}/x1 --address 127.0.0.1:1", "--address 127.0.0.1:1"),
    ("export", "--manifest {shards} --out {root}/x1 --chunk 0", "--chunk"),
    ("export", "--manifest {source} --out {root}/x1 --workers 0", "--manifest"),
    ("export", "--manifest {shards} --out {root}/x1 --split split9 --workers 0", "--split"),
    ("export", "--manifest {shards} --out {root}/x1 --layout ucf101 --workers 0", "--layout"),
    ("export", "--manifest {shards} --out {root}/x1 --layout tree --workers 0", "--layout"),
    ("export", "--manifest {shards} --out {root}/x1 --crop 999 --workers 0", "--crop"),
    ("export", "--manifest {shards} --out {root}/x1 --val-fraction 1.5 --workers 0", "--val-fraction"),
    ("export", "--manifest {shards} --out {root}/x1 --format videos --streams flow --workers 0", "--streams"),
    ("export", "--manifest {shards} --out {root}/x1 --format videos --layout flat --workers 0", "--layout"),
    ("export", "--manifest {shards} --out {root}/x1 --format videos --video-codec vp9 --workers 0", "--video-codec"),
    ("export", "--manifest {shards} --out {root}/x1 --video-codec h264-rgb --workers 0", "--video-codec"),
    ("export", "--manifest {shards} --out {root}/x1 --format videos --jpeg-quality 90 --workers 0", "--jpeg-quality"),
    ("card", "{root}/nope", "nope"),
    ("card", "", "version"),
    ("versions", "ls {root}/nope", "nope"),
    ("versions", "list {root}", "expected a command, got 'list'"),
    ("versions", "diff {root}/nope {source}", "nope"),
    # demo
    ("demo", "--data {root}/dd --runs {root}/dr --workers 0", "--workers 0"),
    ("demo", "--data {root}/dd --runs {file}", "--runs"),
    ("demo", "--data {locked}/x --runs {root}/dr", "--data"),
    ("demo", "--data {root}/dd --runs {root}/dr --preset huge", "--preset"),
    ("demo", "--data {root}/dd --runs {root}/dr --pretrain-epochs 0", "--pretrain-epochs 0"),
]


def fill(template: str, world: dict[str, Path]) -> list[str]:
    return [part.format(**{k: str(v) for k, v in world.items()}) for part in template.split()]


@pytest.mark.parametrize("stage,template,expect", CASES, ids=[f"{c[0]}:{c[1].split(' --')[-1][:40]}" for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(stage, template, expect, world, capsys, monkeypatch):
    if os.geteuid() == 0 and "{locked}" in template:
        pytest.skip("root ignores directory permissions")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    argv = fill(template, world)
    before = snapshot(world["root"])
    rc = importlib.import_module(f"jobs.{stage}").main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (argv, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{stage}: error: ") and expect in lines[0], lines[0]
    assert snapshot(world["root"]) == before  # nothing published, created or moved
    import ray

    assert not ray.is_initialized()  # the check came before Ray


def test_matrix_covers_every_stage_with_30_cases():
    from test_layout import CLI_STAGES

    assert len(CASES) >= 30 and {c[0] for c in CASES} == CLI_STAGES


def run_cli(stage: str, argv: list[str], timeout: float = 60) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", f"jobs.{stage}", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def test_subprocess_address_that_does_not_answer_fails_fast_and_leaves_nothing(world, tmp_path):
    out = tmp_path / "s"
    rc, _, err, secs = run_cli(
        "extract", ["--manifest", str(world["source"]), "--out", str(out), "--address", "127.0.0.1:1", *FAST]
    )
    assert rc == 2 and secs < 30 and err.count("\n") == 1 and "--address 127.0.0.1:1" in err, err
    assert not out.exists()  # no .work-<id>, not even the root
    # a black-holed address (TEST-NET-1, never routed) times out within the check's bound
    from jobs.cli import checks

    t0 = time.monotonic()
    with pytest.raises(checks.UsageError, match="192.0.2.1:6379"):
        checks.ray_address("--address", "192.0.2.1:6379", timeout=2)
    assert time.monotonic() - t0 < 10


def test_subprocess_out_is_a_file(world):
    rc, out, err, _ = run_cli(
        "build_manifest", ["--dataset", "folder", "--videos", str(world["videos"]), "--out", str(world["file"])]
    )
    assert rc == 2 and out == "" and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"--out {world['file']}: is a file" in err


def test_out_dir_check_creates_nothing(tmp_path):
    from jobs.cli import checks

    assert checks.out_dir("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b" and not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(checks.UsageError, match="cannot be created: .*/f is a file"):
        checks.out_dir("--out", tmp_path / "f" / "sub")
    assert np.array_equal(checks.size("--size", [8, 10]), (8, 10))
