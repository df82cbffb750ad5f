"""Content-addressed source manifest versions: same inputs -> same id, changes -> new id and a diff,
parent recorded, published versions immutable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from manifests.diff import diff_sources
from manifests.source.build import build
from manifests.source.builders import build_folder
from manifests.source.loader import load_source
from manifests.versioning import VersionMeta, content_id, publish, read_meta, resolve

from videoutil import moving_square, write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def videos(tmp_path):
    v = tmp_path / "videos"
    for i, cls in enumerate(("run", "run", "walk")):
        write_video(v / cls / f"c{i}.mp4", moving_square(8, seed=i))
    return v


def make(videos, out):
    return build(build_folder(videos, None), videos, None, out)


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.iterdir())}


def test_same_inputs_same_id(videos, tmp_path):
    a, pa = make(videos, tmp_path / "m1")
    b, pb = make(videos, tmp_path / "m2")
    assert a == b and len(a) == 16
    assert (pa / "videos.parquet").read_bytes() == (pb / "videos.parquet").read_bytes()


def test_changed_file_new_id_parent_and_diff(videos, tmp_path):
    out = tmp_path / "m"
    v1, p1 = make(videos, out)
    assert read_meta(p1).parent is None
    write_video(videos / "walk" / "c2.mp4", moving_square(9, seed=9))  # re-encoded: new bytes, 9 frames
    write_video(videos / "walk" / "c3.mp4", moving_square(8, seed=3))  # added
    (videos / "run" / "c0.mp4").unlink()  # removed
    v2, p2 = make(videos, out)
    assert v2 != v1 and read_meta(p2).parent == v1 and resolve(out) == p2
    d = diff_sources(load_source(p1), load_source(p2))
    assert (d.added, d.removed) == (["walk/c3.mp4"], ["run/c0.mp4"])
    assert list(d.changed) == ["walk/c2.mp4"]
    assert {"sha256", "size_bytes", "num_frames"} <= set(d.changed["walk/c2.mp4"])
    assert d.lines()[-1] == f"{v1} -> {v2}: 1 added, 1 removed, 1 changed"
    res = subprocess.run(
        [sys.executable, "-m", "jobs.build_manifest", "diff", str(p1), str(out / "LATEST")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 1 and "~ walk/c2.mp4: " in res.stdout and "+ walk/c3.mp4" in res.stdout
    assert diff_sources(load_source(p2), load_source(p2)).empty


def test_published_versions_are_immutable(videos, tmp_path):
    out = tmp_path / "m"
    v1, p1 = make(videos, out)
    before = snapshot(p1)
    assert make(videos, out) == (v1, p1)  # rebuild: same version, nothing rewritten
    write_video(videos / "run" / "c1.mp4", moving_square(8, seed=42))
    v2, _ = make(videos, out)
    assert snapshot(p1) == before and v2 != v1
    m1 = load_source(p1)
    assert m1.meta.version_id == v1 and [r.num_frames for r in m1.videos] == [8, 8, 8]
    assert (out / "LATEST").read_text().strip() == v2


def test_metadata_records_schema_source_parent_creation(videos, tmp_path):
    _, p = make(videos, tmp_path / "m")
    meta = read_meta(p)
    assert meta.schema_version == 2 and meta.kind == "source" and meta.created_at.endswith("+00:00")
    assert meta.source["dataset"] == "folder" and meta.source["videos_root"] == str(videos.resolve())
    assert meta.source["params"]["hashed_split"] == {"test_fraction": 0.2}


def test_publish_keeps_existing_version(tmp_path):
    calls = []

    def write(d):
        calls.append(d)
        (d / "x.txt").write_text("first")

    meta = VersionMeta("abc", "source", 1, {}, None, "t")
    publish(tmp_path, "abc", write, meta)
    publish(tmp_path, "abc", lambda d: (d / "x.txt").write_text("second"), meta)
    assert (tmp_path / "abc" / "x.txt").read_text() == "first" and len(calls) == 1
    assert content_id(["a", b"b"]) == content_id(["a", "b"]) != content_id(["ab"])


def test_load_source_rejects_other_kinds_and_newer_schemas(videos, tmp_path):
    _, p = make(videos, tmp_path / "m")
    meta = json.loads((p / "version.json").read_text())
    for key, value, match in (("kind", "shards", "expected 'source'"), ("schema_version", 99, "newer")):
        bad = tmp_path / f"bad_{key}"
        shutil.copytree(p, bad)
        (bad / "version.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ValueError, match=match):
            load_source(bad)


def test_cli_reports_build_errors_without_traceback(videos, tmp_path):
    from jobs.build_manifest import main

    assert (
        main(
            [
                "--dataset",
                "ucf101",
                "--videos",
                str(videos),
                "--annotations",
                str(tmp_path),
                "--out",
                str(tmp_path / "m"),
                "--workers",
                "0",
            ]
        )
        == 2
    )


def test_diagnostic_note_is_not_part_of_the_id(videos):
    import dataclasses

    from manifests.source.build import assemble, version_id
    from manifests.source.probe import inspect_video

    plan = build_folder(videos, None)
    records = assemble(plan, {e.rel_path: inspect_video(videos / e.rel_path) for e in plan.entries})
    noted = [dataclasses.replace(r, note="decord failed after 16 of 60 frames") for r in records]
    changed = [dataclasses.replace(records[0], num_frames=99)] + records[1:]
    assert version_id({}, plan, records) == version_id({}, plan, noted) != version_id({}, plan, changed)
