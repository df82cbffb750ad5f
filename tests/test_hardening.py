"""Issue 12 without Ray: publishing guards, unexpected errors in shard code, byte-identical shard files,
permissions that follow the umask, NFC video ids, the short-side-crop resize."""

from __future__ import annotations

import hashlib
import os
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from manifests.extraction import ExtractConfig, ShardPlan, VideoTask, build_shard
from pipeline.decode import cover_size, decode_video
from pipeline.flow import FlowConfig

from fixtures import synthetic_shards
from videoutil import moving_square, write_video

CFG = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(inner=2, outer=2, solver=2))


def summary(ok: int, failures: list[tuple[str, str]]) -> dict:
    return {
        "videos": [{"video_id": f"v{i}"} for i in range(ok)],
        "failures": [
            {"video_id": f"f{i}", "stage": st, "error": f"/data/f{i}.avi: {err}"}
            for i, (st, err) in enumerate(failures)
        ],
    }


# ------------------------------------------------------------------------------------------- publishing guards
def test_check_publishable_refuses_zero_ok_and_too_many_failures(tmp_path):
    from manifests.extraction.bookkeeping import PublishRefused, check_publishable, failure_report

    check_publishable([summary(2, [("decode", "bad")])], 0.5, tmp_path)  # 1 of 3 failed: publishes
    with pytest.raises(PublishRefused, match="no video was extracted.*Top reasons: 2 x decode: moov atom"):
        check_publishable([summary(0, [("decode", "moov atom not found")] * 2)], 1.0, tmp_path)
    with pytest.raises(PublishRefused, match=r"3 of 4 videos failed \(75% > --max-failure-rate 0.5\)"):
        check_publishable(
            [
                summary(1, [("length", "1 decoded frames"), ("static", "still")]),
                summary(0, [("length", "1 decoded frames")]),
            ],
            0.5,
            tmp_path,
        )
    assert failure_report(summary(0, [("length", "short")] * 3 + [("static", "s")])["failures"]) == [
        "3 x length: short",
        "1 x static: s",
    ]  # grouped without the file names, most common first


def test_unexpected_exception_in_shard_code_fails_the_task(tmp_path, monkeypatch):
    import manifests.extraction.shard as ex

    p = write_video(tmp_path / "a.avi", moving_square(5, 48, 64))
    plan = ShardPlan(0, "00000.h5", (VideoTask("a", str(p), "a.avi", None, None),))

    def broken(*_a, **_k):
        raise TypeError("a regression")

    monkeypatch.setattr(ex, "flow_to_image", broken)  # inside the streaming flow stage (WindowFlow)
    with pytest.raises(RuntimeError, match="unexpected TypeError while streaming: a regression"):
        build_shard(plan, CFG, str(tmp_path / "shards"))
    assert not list((tmp_path / "shards").glob("*"))  # no shard, no temporary file


def test_build_manifest_with_no_usable_video_publishes_nothing(tmp_path, capsys):
    from jobs import build_manifest

    (tmp_path / "v" / "a").mkdir(parents=True)
    (tmp_path / "v" / "a" / "x.avi").write_bytes(b"\0" * 100)  # listed, but no video decodes
    rc = build_manifest.main(
        ["--dataset", "folder", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "m"), "--workers", "0"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "no video is usable (statuses {'unreadable': 1}); nothing published" in err, err
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


# --------------------------------------------------------------------------------- byte-identical shard files
def test_same_content_gives_byte_identical_shard_files(tmp_path):
    """No timestamps or run facts in the file: two writes a second apart are the same bytes."""
    p = write_video(tmp_path / "a.avi", moving_square(5, 48, 64))
    plan = ShardPlan(0, "00000.h5", (VideoTask("a", str(p), "a.avi", None, None),))
    digests = []
    for run in range(2):
        s = build_shard(plan, CFG, str(tmp_path / f"run{run}"))
        assert s["seconds"] > 0 and s["cpu_s"] > 0  # timings travel in the summary, not in the file
        digests.append(hashlib.sha256(Path(s["path"]).read_bytes()).hexdigest())
        assert s["sha256"] == digests[-1]
        time.sleep(1.1)
    assert digests[0] == digests[1]


# -------------------------------------------------------------------------------------------------- umask
@pytest.mark.parametrize("umask,dir_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_published_files_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        vdir = synthetic_shards(tmp_path / "shards", num_videos=2)
    finally:
        os.umask(old)
    paths = [vdir, *vdir.rglob("*"), vdir.parent / "LATEST"]
    modes = {p.relative_to(tmp_path): p.stat().st_mode & 0o777 for p in paths}
    assert modes[vdir.relative_to(tmp_path)] == dir_mode and modes[(vdir / "shards").relative_to(tmp_path)] == dir_mode
    files = {k: m for k, m in modes.items() if (tmp_path / k).is_file()}
    assert len(files) >= 5 and set(files.values()) == {file_mode}, files


# ---------------------------------------------------------------------------------------------- Unicode ids
def test_video_ids_are_nfc_and_lookups_accept_nfd(tmp_path):
    from manifests.source.annotations import Entry, Plan
    from manifests.source.build import build, video_ids
    from manifests.source.loader import load_source

    nfd = unicodedata.normalize("NFD", "Café_g01_c01")
    assert nfd != "Café_g01_c01" and video_ids([f"x/{nfd}.avi"]) == ["Café_g01_c01"]
    p = write_video(tmp_path / "v" / f"{nfd}.avi", moving_square(3, 32, 32))
    plan = Plan("folder", ["x"], [Entry(p.name, (0,), {"split1": "train"})], ["split1"])
    _, vdir = build(plan, tmp_path / "v", None, tmp_path / "m")
    (rec,) = load_source(vdir).videos
    assert rec.video_id == "Café_g01_c01" and rec.rel_path == p.name  # raw name kept for opening the file
    assert load_source(vdir).path(rec).is_file()

    from jobs.preview import preview
    from manifests.shards import VideoStreams, write_shard_dataset

    rgb = moving_square(3, 16, 16)
    shards = write_shard_dataset(
        tmp_path / "s", [VideoStreams("Café", {"rgb": rgb, "flow": rgb[1:], "rgbf": rgb[1:]}, (0,))], ["x"]
    )
    for query in ("Café", unicodedata.normalize("NFD", "Café")):
        assert preview(shards, query, tmp_path / "p", frames=2).is_file()


# --------------------------------------------------------------------------------------------------- resize
def test_short_side_crop_keeps_the_aspect_ratio(tmp_path):
    wide = np.zeros((4, 48, 96, 3), np.uint8)
    wide[:, :, 40:56] = 255  # a vertical bar in the middle: 16 px wide of 96
    p = write_video(tmp_path / "wide.avi", wide)
    assert cover_size((32, 32), (48, 96)) == (32, 64) and cover_size((128, 171), (240, 320)) == (128, 171)
    assert cover_size((128, 171), (320, 180)) == (304, 171)  # portrait: full width, centre of the height
    crop = decode_video(p, (32, 32), resize="short-side-crop")
    stretch = decode_video(p, (32, 32))
    assert crop.shape == stretch.shape == (4, 32, 32, 3)
    bar = lambda f: int((f[0, 16, :, 0] > 128).sum())  # noqa: E731  bar width in px on the middle row
    assert abs(bar(crop) - 16 * 32 / 48) <= 2 and abs(bar(stretch) - 16 * 32 / 96) <= 2  # 10.7 px vs 5.3 px
    assert np.array_equal(crop, decode_video(p, (32, 64))[:, :, 16:48])
    with pytest.raises(ValueError, match="resize mode"):
        decode_video(p, (32, 32), resize="squash")


def test_resize_mode_is_part_of_the_version_id():
    from jobs.extract import build_parser, config_from_args

    a = config_from_args(build_parser().parse_args(["--manifest", "m", "--out", "o"]))
    b = config_from_args(build_parser().parse_args(["--manifest", "m", "--out", "o", "--resize", "short-side-crop"]))
    assert a.resize == "stretch" and a.size == (128, 171) and b.resize == "short-side-crop"
    assert a.to_json() != b.to_json() and ExtractConfig.from_json(b.to_json()) == b


def test_progress_postfix_matches_the_summary_counts():
    """The bar's ok/failed postfix is set before each advance, so its last render shows the final counts."""
    from jobs.extraction.driver import run_shards

    class Ref:
        def __init__(self, plan):
            self.plan = plan

    class FakeRay:  # runs "tasks" synchronously: shard i has i ok videos and 1 failure
        exceptions = type("E", (), {"RayError": RuntimeError})

        def remote(self, fn):

            class R:
                def options(self, **_):
                    return self

                def remote(self, plan, *_):
                    return Ref(plan)

            return R()

        def put(self, x):
            return x

        def wait(self, refs, num_returns):
            return refs[:1], refs[1:]

        def get(self, ref):
            i = ref.plan.index
            return {"videos": [{}] * i, "failures": [{}], "assigned": []}

    class Bar:
        def __init__(self):
            self.renders, self.postfix, self.n = [], {}, 0

        def set_postfix(self, refresh=True, **kw):
            self.postfix = kw

        def update(self, n):
            self.n += n
            self.renders.append((self.n, dict(self.postfix)))

    plans = [ShardPlan(i, f"{i:05d}.h5", (None,) * (i + 1)) for i in range(4)]
    bar = Bar()
    results, errors = run_shards(plans, CFG, Path("."), FakeRay(), {}, "cpu", 2, bar)
    assert not errors and bar.renders[-1] == (10, {"ok": 0 + 1 + 2 + 3, "failed": 4})


def test_build_manifest_failure_rate_guard(tmp_path, capsys):
    from jobs import build_manifest

    v = tmp_path / "v" / "a"
    v.mkdir(parents=True)
    write_video(v / "good.avi", moving_square(4, 32, 32))
    for name in ("bad1.avi", "bad2.avi"):
        (v / name).write_bytes(b"\1" * 200)  # unreadable: 2 of 3 files
    args = ["--dataset", "folder", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "m"), "--workers", "0"]
    assert build_manifest.main(args) == 1
    err = capsys.readouterr().err
    assert "2 of 3 files failed (67% > --max-failure-rate 0.5); nothing published. Top reasons: 2 x unreadable" in err
    assert not (tmp_path / "m" / "LATEST").exists()
    assert build_manifest.main(args + ["--max-failure-rate", "0.9"]) == 0  # the operator accepts the rate
    assert (tmp_path / "m" / "LATEST").exists()
