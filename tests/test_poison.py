"""Poison videos (issue 16): a decoder that crashes or hangs on one file costs that file, never a job.

Faults are injected with the test-only hook tests/faults/sitecustomize.py (FAULT_ENV: the contained decoder
sends itself SIGSEGV on crash.avi and sleeps an hour on hang.avi). Both CLI stages run end to end on a local
Ray cluster (PYTHONPATH and the variable reach the Ray workers and their contained children); reruns skip the
recorded files, --retry-failed decodes them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests import poison
from manifests.shards import load_shards
from manifests.source.loader import load_source

from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]
FAULT_ENV = "ASYM3D_TEST_DECODE_FAULTS"  # read by tests/faults/sitecustomize.py
TIMEOUT = 5  # --decode-timeout of the tests
FAULTS = "crash.avi=segv,hang.avi=hang"
GOOD = [f"good{i}" for i in range(4)]
FAST = ["--size", "32", "40", "--flow-param", "inner=2", "--flow-param", "outer=2", "--flow-param", "solver=2"]


def run(module: str, *args: str, faults: str = "", timeout: float = 150) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    env.pop(FAULT_ENV, None)
    if faults:  # the hook: a sitecustomize every Python process of the run imports at start-up
        env["PYTHONPATH"] += os.pathsep + str(REPO / "tests" / "faults")
        env[FAULT_ENV] = faults
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return p.returncode, p.stdout, p.stderr, time.time() - t0


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("poison") / "videos"
    for i, name in enumerate(GOOD + ["crash", "hang"]):
        write_video(root / ("a" if i % 2 else "b") / f"{name}.avi", moving_square(6 + i, 48, 64, seed=i))
    return root


def statuses(manifest: Path) -> dict[str, tuple[str, str | None]]:
    return {r.video_id: (r.status, r.error) for r in load_source(manifest).videos}


def test_build_manifest_contains_crash_and_hang_then_rerun_skips_them(videos, tmp_path):
    out = tmp_path / "manifests"
    args = ["--dataset", "folder", "--videos", str(videos), "--out", str(out)]
    rc, stdout, stderr, secs = run(
        "jobs.build_manifest", *args, "--workers", "2", "--chunk", "6", "--decode-timeout", str(TIMEOUT), faults=FAULTS
    )
    assert rc == 0, stderr
    st = statuses(out / stdout.split()[-1])
    assert {v: s for v, (s, _) in st.items()} == {
        **dict.fromkeys(GOOD, "ok"),
        "crash": "decode_crash",
        "hang": "decode_timeout",
    }
    assert st["crash"][1].endswith("crash.avi: decoder crashed (signal 11, SIGSEGV)")
    assert st["hang"][1].endswith(f"hang.avi: decoder timed out after {TIMEOUT} s")
    assert {r["kind"] for r in poison.load(out).values()} == {"crash", "timeout"}
    # a rerun (in-process this time) skips both recorded files: no decoder started for them, no wait
    rc, stdout2, stderr, secs = run(
        "jobs.build_manifest", *args, "--workers", "0", "--decode-timeout", str(TIMEOUT), faults=FAULTS
    )
    assert rc == 0, stderr
    assert stdout2.split()[-1] == stdout.split()[-1] and secs < 60  # same content: the same version id
    assert "poison: 2 videos skipped" in stderr
    # --retry-failed with the faults gone: both decode, their poison records are cleared
    rc, stdout3, stderr, _ = run("jobs.build_manifest", *args, "--workers", "0", "--retry-failed")
    assert rc == 0, stderr
    assert {s for s, _ in statuses(out / stdout3.split()[-1]).values()} == {"ok"} and poison.load(out) == {}


def test_extract_contains_crash_and_hang_preview_and_retry(videos, tmp_path):
    manifests, shards = tmp_path / "manifests", tmp_path / "shards"
    rc, stdout, stderr, _ = run(
        "jobs.build_manifest", "--dataset", "folder", "--videos", str(videos), "--out", str(manifests), "--workers", "0"
    )
    assert rc == 0, stderr
    source = manifests / stdout.split()[-1]
    args = ["--manifest", str(source), "--out", str(shards), "--shard-size", "2", "--workers", "2", *FAST]
    rc, stdout, stderr, secs = run("jobs.extract", *args, "--decode-timeout", str(TIMEOUT), faults=FAULTS)
    assert rc == 0, stderr
    assert "2 decoder crash / timeout outcomes recorded" in stderr
    vid = stdout.split()[-1]
    ds = load_shards(shards / vid)
    ids = [r.video_id for r in ds.records]
    assert sorted(ids) == GOOD  # every good video exactly once
    fails = {f.video_id: (f.stage, f.error) for f in ds.failures}
    assert fails == {"crash": ("decode", fails["crash"][1]), "hang": ("decode", fails["hang"][1])}
    assert fails["crash"][1].endswith("decoder crashed (signal 11, SIGSEGV)")
    assert fails["hang"][1].endswith(f"decoder timed out after {TIMEOUT} s")
    assert len(poison.load(shards)) == 2
    # preview of a poison video: one line naming the video and the reason, exit 2
    rc, out, err, _ = run(
        "jobs.preview", "--manifest", str(shards / vid), "--video", "crash", "--out", str(tmp_path / "pv")
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "decoder crashed (signal 11" in err, err
    # the published version is kept as it is on a plain rerun
    rc, stdout2, stderr, _ = run("jobs.extract", *args, "--decode-timeout", str(TIMEOUT), faults=FAULTS)
    assert rc == 0 and "already published" in stderr and stdout2.split()[-1] == vid
    # --retry-failed (faults gone): only the shards holding them are redone, the version is replaced
    before = {p.name: p.stat().st_mtime_ns for p in (shards / vid / "shards").iterdir()}
    rc, stdout3, stderr, _ = run("jobs.extract", *args, "--retry-failed")
    assert rc == 0, stderr
    assert stdout3.split()[-1] == vid
    ds = load_shards(shards / vid)
    assert sorted(r.video_id for r in ds.records) == sorted(GOOD + ["crash", "hang"]) and not ds.failures
    after = {p.name: p.stat().st_mtime_ns for p in (shards / vid / "shards").iterdir()}
    assert sum(before[n] == after[n] for n in before) >= 1  # a shard without poison was kept as it was
    assert poison.load(shards) == {}
    assert json.loads((shards / poison.POISON_FILE).read_text().splitlines()[-1])["kind"] == "cleared"


def test_poison_log_rules(tmp_path):
    assert poison.load(tmp_path) == {} and poison.append(tmp_path, []) == 0
    assert not (tmp_path / poison.POISON_FILE).exists()  # nothing to record: no file
    poison.append(
        tmp_path,
        [
            poison.record("a" * 64, "crash", "decoder crashed (signal 11, SIGSEGV)"),
            poison.record("b" * 64, "timeout", "decoder timed out after 30 s", timeout_s=30.0),
            poison.record("c" * 64, "crash", "decoder crashed (signal 6, SIGABRT)"),
        ],
    )
    poison.append(tmp_path, [poison.record("c" * 64, "cleared", "decoded")])
    with open(tmp_path / poison.POISON_FILE, "a") as f:
        f.write('{"sha256": "d')  # torn last line of a killed driver
    known = poison.load(tmp_path)
    assert sorted(known) == ["a" * 64, "b" * 64]
    crash, hang = known["a" * 64], known["b" * 64]
    assert poison.skip(crash, 1000.0, False) and not poison.skip(crash, 1.0, True)
    assert poison.skip(hang, 30.0, False) and poison.skip(hang, 10.0, False)
    assert not poison.skip(hang, 60.0, False) and not poison.skip(hang, 30.0, True)  # a larger limit retries
