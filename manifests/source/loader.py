"""Load a source manifest version into typed records: the one place its tables are parsed (docs/style.md §4)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.source.schema import KIND, LABELS_FILE, SCHEMA_VERSION, VIDEO_SCHEMA, VIDEOS_FILE, VideoRecord
from manifests.versioning import META_FILE, VersionMeta, resolve


@dataclasses.dataclass(frozen=True)
class SourceManifest:
    """A pinned source manifest version: metadata, videos root, one record per video, label names."""

    meta: VersionMeta
    videos_root: Path
    videos: list[VideoRecord]
    labels: list[str]  # index = label id
    dir: Path  # the version directory

    def path(self, record: VideoRecord) -> Path:
        """Absolute path of a record's video file."""
        return self.videos_root / record.rel_path

    def ok(self) -> list[VideoRecord]:
        """Records with status "ok" (the ones extraction uses)."""
        return [r for r in self.videos if r.ok]

    def split(self, name: str, part: str) -> list[VideoRecord]:
        """OK records whose membership in split `name` (e.g. "split1") is `part` (train | test)."""
        return [r for r in self.videos if r.ok and r.splits.get(name) == part]


def load_source(path: str | os.PathLike) -> SourceManifest:
    """Load a version dir, a file in it, a LATEST file or a root with LATEST (see versioning.resolve).

    Raises FileNotFoundError / ValueError naming the path when it is not a readable source manifest.
    """
    vdir = resolve(path)
    meta = VersionMeta.from_file(vdir / META_FILE)
    if meta.kind != KIND:
        raise ValueError(f"{vdir}: version kind is {meta.kind!r}, expected {KIND!r}")
    if meta.schema_version > SCHEMA_VERSION:
        raise ValueError(f"{vdir}: schema version {meta.schema_version} is newer than this code ({SCHEMA_VERSION})")
    videos = pq.read_table(vdir / VIDEOS_FILE)
    if meta.schema_version < 2 and "partial" not in videos.column_names:  # written before the column existed
        videos = videos.append_column("partial", pa.nulls(len(videos), pa.string()))
    missing = set(VIDEO_SCHEMA.names) - set(videos.column_names)
    if missing:
        raise ValueError(f"{vdir / VIDEOS_FILE}: missing columns {sorted(missing)}")
    records = [VideoRecord.from_row(r) for r in videos.select(VIDEO_SCHEMA.names).to_pylist()]
    labels = pq.read_table(vdir / LABELS_FILE).sort_by("id").column("name").to_pylist()
    return SourceManifest(meta, Path(meta.source["videos_root"]), records, labels, vdir)
