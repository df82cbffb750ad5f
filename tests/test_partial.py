"""One policy for files that decode only part-way, in both stages, and records that are the same on every run.

Real encoders (the ffmpeg binary of imageio-ffmpeg, OpenCV's MJPG writer) make the files a web dataset holds:
a faststart MP4 cut at 30% of its bytes (a cut download: header intact, data missing), an MP4 whose moov
atom is at the end, cut (unreadable), an AVI cut in the middle of a frame, and an MP4 with a damaged region
in the middle. The source manifest (manifests.source.build) and the extraction (build_shard on the rows it
selects) must give each the same verdict and the same frame count; ``--partial fail`` fails the partial ones
in both; and two runs on the same files write the same bytes (no decoder addresses or other run facts).
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pyarrow.parquet as pq
import pytest

from manifests.extraction import ExtractConfig, ShardPlan, build_shard
from manifests.extraction.bookkeeping import select_videos
from manifests.source.build import build
from manifests.source.builders import build_folder
from manifests.source.loader import load_source
from manifests.source.schema import VIDEOS_FILE
from pipeline.flow import FlowConfig

from videoutil import moving_square, write_video

CFG = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(inner=2, outer=2, solver=2), static_threshold=0.0)
PARTIAL = ("fast_cut", "damaged")  # a decoder stops part-way with an error: the prefix is the video, marked
SILENT = ("avi_cut",)  # the demuxer drops the cut frame and the data ends: no decoder error, not marked
UNREADABLE = ("moov_cut",)


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("partial")
    raw, d = root / "raw", root / "videos" / "Walk"
    raw.mkdir()
    d.mkdir(parents=True)
    lavfi = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "3", "-pix_fmt", "yuv420p"]
    _ffmpeg(*lavfi, "-c:v", "libx264", "-movflags", "+faststart", str(raw / "fast.mp4"))
    _ffmpeg(*lavfi, "-c:v", "libx264", str(raw / "moov_end.mp4"))
    _cut(raw / "fast.mp4", d / "fast_cut.mp4", 0.3)
    _cut(raw / "moov_end.mp4", d / "moov_cut.mp4", 0.5)
    _cut(write_video(raw / "whole.avi", moving_square(30, 48, 64, seed=1)), d / "avi_cut.avi", 0.55)
    src = write_video(raw / "square.mp4", moving_square(120, 48, 64, seed=3))
    _ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(raw / "square_fast.mp4"))
    data = bytearray((raw / "square_fast.mp4").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    (d / "damaged.mp4").write_bytes(bytes(data))
    write_video(d / "whole.avi", moving_square(12, 48, 64, seed=2))
    return root / "videos"


def source_version(videos: Path, out: Path, partial: str = "keep") -> Path:
    return build(build_folder(videos, None), videos, None, out, partial=partial)[1]


def extract(source: Path, cfg: ExtractConfig, out: Path) -> tuple[dict, list]:
    tasks, source_failures, _ = select_videos(load_source(source), cfg)
    return build_shard(ShardPlan(0, "00000.h5", tuple(tasks)), cfg, str(out)), source_failures


def test_both_stages_give_a_partial_file_the_same_verdict_and_count(videos, tmp_path):
    from jobs.report.dataset_card import write_card

    rows = {r.video_id: r for r in load_source(source_version(videos, tmp_path / "m")).videos}
    card = write_card(tmp_path / "m" / "LATEST").read_text()  # the card lists them
    assert "## Partial files" in card and "fast_cut.mp4" in card and "damaged.mp4" in card
    assert {v for v, r in rows.items() if r.partial} == set(PARTIAL)
    for v in PARTIAL:  # the decodable prefix, counted, with the reason; fewer frames than the header claims
        r = rows[v]
        assert r.status == "ok" and 2 <= r.num_frames < r.header_frames, r
    assert rows["whole"].ok and rows["whole"].num_frames == 12 and rows["whole"].partial is None
    assert rows["avi_cut"].ok and rows["avi_cut"].num_frames < 30  # 30 frames written, the file cut at 55%
    assert rows["moov_cut"].status == "unreadable"
    s, source_failures = extract(tmp_path / "m" / "LATEST", CFG, tmp_path / "s")
    assert not s["failures"], s["failures"]
    assert [f.video_id for f in source_failures] == list(UNREADABLE)
    stored = {v["video_id"]: v for v in s["videos"]}
    assert set(stored) == set(PARTIAL) | set(SILENT) | {"whole"}
    for v, row in stored.items():  # extraction stores exactly the frames the manifest counted
        assert row["n_rgb"] == rows[v].num_frames and row.get("partial") == rows[v].partial, (v, row)


def test_partial_fail_fails_them_in_both_stages(videos, tmp_path):
    rows = {r.video_id: r for r in load_source(source_version(videos, tmp_path / "m", "fail")).videos}
    assert {v for v, r in rows.items() if r.status == "partial"} == set(PARTIAL)
    assert all("--partial fail" in rows[v].error for v in PARTIAL)
    kept = tmp_path / "kept"
    source_version(videos, kept)  # a manifest that kept them, extracted under --partial fail
    s, source_failures = extract(kept / "LATEST", dataclasses.replace(CFG, partial="fail"), tmp_path / "s")
    failed = {f.video_id: f.error for f in source_failures}
    assert set(failed) == set(PARTIAL) | set(UNREADABLE)
    assert all(failed[v].startswith("partial: ") and "--partial fail" in failed[v] for v in PARTIAL)
    assert [v["video_id"] for v in s["videos"]] == ["avi_cut", "whole"]


def test_extraction_never_stores_another_count_than_the_manifest(videos, tmp_path):
    """A manifest that counted more frames than the file decodes now (e.g. a file cut after the build): the
    video fails with the count and the decoder's reason instead of being stored shorter."""
    source = source_version(videos, tmp_path / "m")
    tasks, _, _ = select_videos(load_source(source), CFG)
    task = next(t for t in tasks if t.video_id == "fast_cut")
    task = dataclasses.replace(task, num_frames=task.num_frames + 5, sha256=None, size_bytes=None)
    s = build_shard(ShardPlan(0, "00000.h5", (task,)), CFG, str(tmp_path / "s"))
    (f,) = s["failures"]
    assert f["stage"] == "decode" and f"the source manifest counted {task.num_frames}" in f["error"], f


def test_records_are_the_same_on_every_run(videos, tmp_path):
    """Two builds and two extractions of the same files write the same bytes: the decoder messages in
    reasons and notes carry no memory addresses (ffmpeg's "[h264 @ 0x55...]") or other run facts."""
    a, b = source_version(videos, tmp_path / "a"), source_version(videos, tmp_path / "b")
    assert a.name == b.name and (a / VIDEOS_FILE).read_bytes() == (b / VIDEOS_FILE).read_bytes()
    texts = [t for r in pq.read_table(a / VIDEOS_FILE).to_pylist() for t in (r["error"], r["note"], r["partial"]) if t]
    assert any("mov,mp4" in t or "h264" in t for t in texts) and not any(" @ 0x" in t for t in texts), texts
    # extraction finds the partial files itself (as without a counted manifest): the decoder's messages go into
    # the shard file, as the rows' partial reasons (keep) or as failure reasons (fail)
    tasks, _, _ = select_videos(load_source(a), CFG)
    plan = ShardPlan(0, "00000.h5", tuple(dataclasses.replace(t, num_frames=None, partial=None) for t in tasks))
    for cfg in (CFG, dataclasses.replace(CFG, partial="fail")):
        s1, s2 = (build_shard(plan, cfg, str(tmp_path / f"{k}-{cfg.partial}")) for k in (1, 2))
        assert s1["sha256"] == s2["sha256"] and s1["failures"] == s2["failures"], cfg.partial
        texts = [v.get("partial") for v in s1["videos"]] + [f["error"] for f in s1["failures"]]
        assert any(t and "mov,mp4" in t for t in texts) and not any(t and " @ 0x" in t for t in texts), texts


def test_a_source_manifest_written_before_the_partial_column_still_loads(videos, tmp_path):
    import json

    v = source_version(videos, tmp_path / "m")
    table = pq.read_table(v / VIDEOS_FILE)
    pq.write_table(table.drop_columns(["partial"]), v / VIDEOS_FILE)
    meta = json.loads((v / "version.json").read_text())
    (v / "version.json").write_text(json.dumps({**meta, "schema_version": 1}))
    assert all(r.partial is None for r in load_source(v).videos)
