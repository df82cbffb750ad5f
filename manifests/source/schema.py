"""Written schema of a source manifest version: typed records and their Parquet tables.

A source manifest version directory holds::

    version.json     VersionMeta (kind "source"); meta.source["videos_root"] is the absolute videos dir
    videos.parquet   one row per video (VIDEO_SCHEMA), sorted by rel_path
    labels.parquet   one row per label (LABEL_SCHEMA), id = index into VideoRecord.labels

Status values (``STATUSES``): "ok" rows are the ones later stages use; every other value names the
failure category and ``error`` says why (the build never stops on one bad video).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 2  # 2: the partial column (read: 1 and 2)
KIND = "source"
VIDEOS_FILE = "videos.parquet"
LABELS_FILE = "labels.parquet"

STATUSES = {
    "ok": "decodes to at least one frame, listed in the annotations with a known class",
    "missing": "listed in the annotations but no such file under the videos root",
    "empty": "zero-byte file",
    "unreadable": "ffmpeg finds no video stream or no frame can be decoded (non-video, truncated)",
    "decode_crash": "the decoder crashed on it (signal), contained in a child process (pipeline.contain)",
    "decode_timeout": "decoding did not finish within the time limit (--decode-timeout); the decoder was killed",
    "partial": "decodes only part-way (a cut download, corrupt data) and the build ran with --partial fail",
    "unknown_class": "its class is not in the dataset's class list (or it has no label row)",
    "unlisted": "on disk under a class folder but in no split file",
    "filtered": "FCVID: none of its labels is among the kept categories",
    "duplicate": "same bytes (sha256) as another video, or listed twice with conflicting labels",
}
SPLIT_VALUES = ("train", "test", "unused")

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("rel_path", pa.string(), nullable=False),  # posix path relative to videos_root
        pa.field("labels", pa.list_(pa.int32()), nullable=False),  # label ids (index into labels table)
        pa.field("label_names", pa.list_(pa.string()), nullable=False),
        pa.field("splits", pa.map_(pa.string(), pa.string()), nullable=False),  # split1 -> train|test|unused
        pa.field("size_bytes", pa.int64()),  # null when the file is missing
        pa.field("sha256", pa.string()),  # of the file's bytes
        pa.field("duration_s", pa.float64()),  # probed from the header (ffmpeg -i)
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),  # of the stored video, before any resize
        pa.field("height", pa.int32()),
        pa.field("num_frames", pa.int32()),  # counted by decoding (pipeline.decode), not from the header
        pa.field("header_frames", pa.int32()),  # round(duration × fps) as the header claims
        pa.field("codec", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # key of STATUSES
        pa.field("error", pa.string()),  # why status is not "ok"
        pa.field("note", pa.string()),  # non-fatal remarks (decoder fallback, header vs decoded count, label fixes)
        # why decoding stopped before the end (a cut download, corrupt data): num_frames counts the decodable
        # prefix, which is what the file holds for every later stage; null when the whole file decoded
        pa.field("partial", pa.string()),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)

LABEL_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("source_index", pa.int32()),  # the dataset's own numbering (classInd, FCVID column + 1)
    ],
    metadata={"schema_version": str(SCHEMA_VERSION)},
)


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One row of videos.parquet (contract in docs/architecture.md; trailing fields are extras)."""

    video_id: str
    rel_path: str
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    splits: dict[str, str]
    size_bytes: int | None
    sha256: str | None
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    num_frames: int | None
    status: str
    error: str | None
    header_frames: int | None = None
    codec: str | None = None
    note: str | None = None
    partial: str | None = None  # why only a prefix decodes (see VIDEO_SCHEMA); None: the whole file

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["labels"], row["label_names"] = list(self.labels), list(self.label_names)
        row["splits"] = sorted(self.splits.items())
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VideoRecord:
        """Parse a Parquet row (as given by ``Table.to_pylist()``); unknown keys are an error."""
        row = dict(row)
        row["labels"] = tuple(int(x) for x in row["labels"])
        row["label_names"] = tuple(row["label_names"])
        splits = row["splits"]
        row["splits"] = dict(splits.items() if isinstance(splits, dict) else splits)
        return cls(**row)


def videos_table(records: list[VideoRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=VIDEO_SCHEMA)


def labels_table(names: list[str], source_index: list[int | None] | None = None) -> pa.Table:
    idx = source_index if source_index is not None else [None] * len(names)
    return pa.Table.from_pylist(
        [{"id": i, "name": n, "source_index": s} for i, (n, s) in enumerate(zip(names, idx))], schema=LABEL_SCHEMA
    )
