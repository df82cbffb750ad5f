"""Incremental versions: extraction copies what an earlier version under --out already holds (same file
sha256, same content parameters and code) and computes only the rest; versions stay independent, and a
reused group whose stored payload fails its sha256 is computed again, never copied."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import pytest

from jobs.extraction.driver import extract
from manifests.extraction import ExtractConfig
from manifests.shards import load_shards
from manifests.source.build import build
from manifests.source.builders import build_folder
from manifests.versioning import read_meta
from pipeline.flow import FlowConfig
from pipeline.storage import ShardReader

from videoutil import moving_square, write_video

CFG = ExtractConfig(size=(32, 40), flow=FlowConfig.resolve(inner=2, outer=2, solver=2), shard_size=4)


def manifest(videos: Path, out: Path) -> Path:
    return build(build_folder(videos, None), videos, None, out)[1]


def streams(version: Path) -> dict[str, dict[str, str]]:
    return {r.video_id: r.checksums for r in load_shards(version).records}


@pytest.mark.slow
def test_a_new_version_computes_only_what_changed(tmp_path):
    videos = tmp_path / "videos"
    for i in range(12):
        write_video(videos / ("Run" if i % 2 else "Walk") / f"v{i:02d}.avi", moving_square(6 + i % 3, 48, 64, seed=i))
    out, log = tmp_path / "shards", []
    a = extract(manifest(videos, tmp_path / "ma"), out, CFG, workers=1, log=log.append)
    assert a.ok == 12 and a.reused == 0

    # one file changed, one added: B computes those 2 and copies the other 11 from A
    write_video(videos / "Walk" / "v00.avi", moving_square(7, 48, 64, seed=100))
    write_video(videos / "Run" / "v12.avi", moving_square(8, 48, 64, seed=12))
    mb = manifest(videos, tmp_path / "mb")
    b = extract(mb, out, CFG, workers=1, log=log.append)
    assert (b.ok, b.reused, b.recomputed) == (13, 11, 0) and b.version_id != a.version_id
    assert any("reused 11" in m for m in log), log
    assert read_meta(b.path).extra["reused"] == {a.version_id: 11}
    scratch = extract(mb, tmp_path / "scratch", CFG, workers=1, log=log.append, reuse=False)
    assert scratch.reused == 0 and scratch.version_id == b.version_id
    assert streams(b.path) == streams(scratch.path)  # every stream of B equals B built from scratch

    shutil.rmtree(a.path)  # versions are independent: B loses nothing with A
    for shard in sorted((b.path / "shards").glob("*.h5")):
        with ShardReader(shard) as r:
            r.verify(full=True)

    # an earlier version edited after publishing never poisons a new one: the damaged group is computed again
    victim = next(r for r in load_shards(b.path).records if r.video_id == "v05")
    with h5py.File(victim.shard_path, "r+") as f:  # the stored payload changes, its recorded sha256 does not
        ds = f[victim.group]["flow"]
        ds[0] = 255 - ds[0]
    c = extract(mb, out, dataclasses.replace(CFG, shard_size=5), workers=1, log=log.append)
    assert (c.ok, c.reused, c.recomputed) == (13, 12, 1), log[-3:]
    assert any("1 reused groups failed their sha256 and were computed again" in m for m in log)
    assert streams(c.path) == streams(scratch.path)
