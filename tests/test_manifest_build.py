"""End-to-end source manifest builds on real encoded videos: bad inputs get a status and a reason,
load_source returns the contract's records, the CLI prints the version id, Ray and in-process agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import build_manifest
from manifests.source.build import build
from manifests.source.builders import FCVID_NUM_CATEGORIES, build_fcvid, build_ucf101
from manifests.source.loader import load_source
from manifests.source.probe import inspect_video

from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]
A, H = "ApplyEyeMakeup", "HandstandPushups"


def crlf(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{ln}\r\n" for ln in lines).encode())


@pytest.fixture(scope="module")
def ucf(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    v, a = root / "videos", root / "annotations"
    write_video(v / A / "v_ApplyEyeMakeup_g01_c01.mp4", moving_square(20, seed=1))
    write_video(v / A / "v_ApplyEyeMakeup_g02_c01.mp4", moving_square(18, seed=2))
    write_video(v / H / "v_HandStandPushups_g01_c01.avi", moving_square(16, seed=3))
    write_video(v / A / "v_odd name é_g03_c01.mp4", moving_square(12, seed=4))
    write_video(v / A / "v_unlisted_g04_c01.mp4", moving_square(10, seed=5))
    write_video(v / "Mystery" / "v_Mystery_g01_c01.mp4", moving_square(10, seed=6))
    good = (v / A / "v_ApplyEyeMakeup_g01_c01.mp4").read_bytes()
    (v / A / "v_copy_g05_c01.mp4").write_bytes(good)  # same bytes as g01
    (v / A / "v_half_g06_c01.mp4").write_bytes(good[: len(good) // 2])  # truncated: moov atom cut off
    (v / A / "v_zero_g07_c01.avi").write_bytes(b"")
    (v / H / "v_text_g02_c01.avi").write_text("not a video, just text\n" * 30)
    crlf(a / "classInd.txt", [f"1 {A}", f"2 {H}"])
    crlf(
        a / "trainlist01.txt",
        [
            f"{A}/{n} 1"
            for n in (
                "v_ApplyEyeMakeup_g01_c01.mp4",
                "v_odd name é_g03_c01.mp4",
                "v_copy_g05_c01.mp4",
                "v_half_g06_c01.mp4",
                "v_zero_g07_c01.avi",
                "v_gone_g08_c01.mp4",
            )
        ]
        + [f"{H}/v_HandstandPushups_g01_c01.avi 2", "Mystery/v_Mystery_g01_c01.mp4 3"],
    )
    crlf(a / "testlist01.txt", [f"{A}/v_ApplyEyeMakeup_g02_c01.mp4", f"{H}/v_text_g02_c01.avi"])
    crlf(a / "trainlist02.txt", [f"{A}/v_ApplyEyeMakeup_g02_c01.mp4 1"])
    crlf(a / "testlist02.txt", [])
    return v, a, root


@pytest.fixture(scope="module")
def built(ucf):
    v, a, root = ucf
    vid, path = build(build_ucf101(v, a), v, a, root / "manifests")
    return vid, path, load_source(path)


def rec(manifest, name):
    (r,) = [r for r in manifest.videos if Path(r.rel_path).name == name]
    return r


EXPECTED = {
    "v_ApplyEyeMakeup_g01_c01.mp4": "ok",
    "v_ApplyEyeMakeup_g02_c01.mp4": "ok",
    "v_HandStandPushups_g01_c01.avi": "ok",
    "v_odd name é_g03_c01.mp4": "ok",
    "v_unlisted_g04_c01.mp4": "unlisted",
    "v_Mystery_g01_c01.mp4": "unknown_class",
    "v_copy_g05_c01.mp4": "duplicate",
    "v_half_g06_c01.mp4": "unreadable",
    "v_zero_g07_c01.avi": "empty",
    "v_text_g02_c01.avi": "unreadable",
    "v_gone_g08_c01.mp4": "missing",
}


def test_every_video_gets_a_status_and_a_reason(built):
    _, _, m = built
    assert {Path(r.rel_path).name: r.status for r in m.videos} == EXPECTED
    for r in m.videos:
        assert (r.error is None) == (r.status == "ok"), r
    assert "same content (sha256) as" in rec(m, "v_copy_g05_c01.mp4").error
    assert "Invalid data" in rec(m, "v_half_g06_c01.mp4").error
    assert "empty file" in rec(m, "v_zero_g07_c01.avi").error
    assert "no split file" in rec(m, "v_unlisted_g04_c01.mp4").error
    assert m.meta.extra["status_counts"]["ok"] == 4
    assert any("testlist02.txt: empty split file" in w for w in m.meta.extra["warnings"])


def test_records_follow_the_contract(built):
    vid, path, m = built
    assert m.meta.version_id == vid and m.meta.kind == "source" and m.dir == path
    assert m.labels == [A, H]
    r = rec(m, "v_HandStandPushups_g01_c01.avi")
    assert r.rel_path == f"{H}/v_HandStandPushups_g01_c01.avi" and r.video_id == "v_HandStandPushups_g01_c01"
    assert (r.labels, r.label_names) == ((1,), (H,))
    assert r.splits == {"split1": "train", "split2": "unused"}
    assert (r.num_frames, r.width, r.height, r.fps, r.codec) == (16, 80, 64, 25.0, "mjpeg")
    assert r.duration_s == pytest.approx(16 / 25, abs=0.05) and len(r.sha256) == 64
    assert m.path(r).is_file() and r.size_bytes == m.path(r).stat().st_size
    odd = rec(m, "v_odd name é_g03_c01.mp4")
    assert odd.num_frames == 12 and m.path(odd).is_file()
    assert rec(m, "v_ApplyEyeMakeup_g02_c01.mp4").splits == {"split1": "test", "split2": "train"}
    assert [r.rel_path for r in m.split("split1", "train")] == sorted(
        [f"{A}/v_ApplyEyeMakeup_g01_c01.mp4", f"{A}/v_odd name é_g03_c01.mp4", r.rel_path]
    )
    assert len({r.video_id for r in m.videos}) == len(m.videos)


def test_load_source_accepts_dir_file_latest_and_root(built, ucf):
    vid, path, _ = built
    for p in (path, path / "videos.parquet", path.parent / "LATEST", path.parent):
        assert load_source(p).meta.version_id == vid
    with pytest.raises(FileNotFoundError, match="not a dataset version"):
        load_source(ucf[2])


def test_inspect_video_is_pure_and_never_raises(ucf, tmp_path, monkeypatch):
    v = ucf[0]
    f = inspect_video(v / A / "v_ApplyEyeMakeup_g01_c01.mp4")
    assert f["status"] == "ok" and f["num_frames"] == 20 and f["header_frames"] == 20
    assert inspect_video(tmp_path / "none.mp4")["status"] == "missing"
    assert inspect_video(v / H / "v_text_g02_c01.avi")["status"] == "unreadable"

    def denied(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("manifests.source.probe.file_digest", denied)
    f = inspect_video(v / A / "v_ApplyEyeMakeup_g01_c01.mp4")
    assert f["status"] == "unreadable" and "Permission denied" in f["error"]


def test_fcvid_multilabel_roundtrip(tmp_path):
    v, a = tmp_path / "v", tmp_path / "a"
    write_video(v / "archery" / "y1.mp4", moving_square(8, seed=7))
    write_video(v / "beach" / "y2.mp4", moving_square(8, seed=8))
    crlf(a / "FCVID_VideoName_TrainTestSplit.txt", ["archery/y1.mp4 train", "beach/y2.mp4 test"])
    rows = [["0"] * FCVID_NUM_CATEGORIES for _ in range(2)]
    rows[0][4] = rows[0][0] = rows[0][15] = rows[1][15] = "1"  # archery + accordion + beach; beach only
    crlf(a / "FCVID_Label.txt", [" ".join(r) for r in rows])
    m = load_source(build(build_fcvid(v, a), v, a, tmp_path / "m")[1])
    y1, y2 = sorted(m.videos, key=lambda r: r.rel_path)
    assert y1.label_names == ("accordionPerformance", "archery") and y1.status == "ok"
    assert y2.status == "filtered" and y2.labels == ()
    assert len(m.labels) == 170 and m.meta.source["params"]["categories"] == "fcvid170.tsv"


def test_cli_prints_version_id_last_and_ray_matches_in_process(ucf, built):
    v, a, root = ucf
    args = ["--dataset", "ucf101", "--videos", str(v), "--annotations", str(a), "--out", str(root / "cli")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "jobs.build_manifest", *args, "--workers", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    assert res.stdout.strip().splitlines()[-1] == built[0]
    # the default path: Ray tasks on a local 2-CPU cluster (started and shut down inside main)
    assert build_manifest.main(args + ["--workers", "2", "--chunk", "3"]) == 0
    assert (root / "cli" / "LATEST").read_text().strip() == built[0]
    meta = json.loads((root / "cli" / built[0] / "version.json").read_text())
    assert meta["parent"] is None  # rebuilt unchanged: still the first version
