"""Shard dataset versions: the extracted RGB / Flow / RGBF dataset, parsed into typed records.

A version directory (written once through ``manifests.versioning.publish``)::

    <root>/<version_id>/version.json       VersionMeta(kind="shards"), parent = source manifest version
    <root>/<version_id>/shards.parquet     one row per extracted video (SHARDS_SCHEMA)
    <root>/<version_id>/failures.parquet   one row per video that was not extracted (FAILURES_SCHEMA)
    <root>/<version_id>/labels.parquet     label_id -> name (LABELS_SCHEMA)
    <root>/<version_id>/shards/*.h5        pipeline.storage shard files

``load_shards`` is the one place the tables are parsed (docs/style.md §4); ``publish_shards`` is the writer used
by jobs.extract, and ``write_shard_dataset`` builds a small version from in-memory frames (tests, demos).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.source.loader import load_source
from manifests.versioning import VersionMeta, content_id, file_digest, publish, resolve, utc_now
from pipeline.storage import STREAMS, ShardWriter, codec_spec

KIND = "shards"
# 2: failures.parquet records each video's splits; 3: shards.parquet's partial column (read: 1 to 3)
SCHEMA_VERSION = 3
SHARDS_FILE, FAILURES_FILE, LABELS_FILE, SHARDS_DIR = "shards.parquet", "failures.parquet", "labels.parquet", "shards"

SHARDS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("shard", pa.string()),  # path relative to the version directory, e.g. shards/00000.h5
        ("group", pa.string()),  # HDF5 group inside the shard
        ("n_rgb", pa.int32()),
        ("n_flow", pa.int32()),  # = n_rgb - number of windows (flow and rgbf streams); n_rgb - 1 by default
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("labels", pa.list_(pa.int32())),
        ("label_names", pa.list_(pa.string())),
        ("splits", pa.map_(pa.string(), pa.string())),  # split name -> train | test | unused
        ("sha256_rgb", pa.string()),  # checksums of the stored stream payloads (pipeline.storage)
        ("sha256_flow", pa.string()),
        ("sha256_rgbf", pa.string()),
        ("shard_sha256", pa.string()),  # sha256 of the whole shard file
        ("source_rel_path", pa.string()),  # the video in the source manifest
        ("source_sha256", pa.string()),
        ("codec", pa.string()),  # JSON {stream: codec name, "opts": {...}}
        ("flow_params", pa.string()),  # JSON of the Brox / flow-image parameters
        ("code_version", pa.string()),
        # temporal sampling (pipeline.sampling): the stored frames are these runs [start, length] of the
        # resampled timeline, back to back; flow and rgbf hold length - 1 frames per run (never across runs)
        ("windows", pa.list_(pa.list_(pa.int32()))),
        ("fps", pa.float64()),  # frame rate of the stored frames (--fps, else the native rate); null if unknown
        ("partial", pa.string()),  # why the source file decodes only part-way (its prefix is stored); null: whole
    ]
)
FAILURES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("source_rel_path", pa.string()),
        ("stage", pa.string()),  # source | input | decode | length | flow | static | store
        ("error", pa.string()),  # reason, naming the file
        ("shard", pa.string()),  # shard the video was assigned to ("" if none)
        ("splits", pa.map_(pa.string(), pa.string())),  # split name -> train | test | unused (schema 2)
    ]
)
LABELS_SCHEMA = pa.schema([("label_id", pa.int32()), ("name", pa.string())])


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """One extracted video: where its streams live and what it is labelled."""

    video_id: str
    shard_path: Path  # absolute
    group: str
    n_rgb: int
    n_flow: int
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    splits: dict[str, str]
    height: int
    width: int
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)  # stream -> sha256
    shard_sha256: str = ""
    source_rel_path: str = ""
    source_sha256: str = ""
    windows: tuple[tuple[int, int], ...] = ()  # (start, length) runs; () = one run of all n_rgb frames
    fps: float | None = None
    partial: str | None = None  # why only the decodable prefix of the source file is stored; None: all of it

    def window_lengths(self, stream: str) -> list[int]:
        """Frames per window of ``stream`` in storage order: rgb ``length``, flow / rgbf ``length - 1``."""
        runs = self.windows or ((0, self.n_rgb),)
        return [n if stream == "rgb" else n - 1 for _, n in runs]

    def stored_runs(self, stream: str) -> list[tuple[int, int]]:
        """(first stored frame, frame count) of each window of ``stream``, in storage order."""
        lengths = self.window_lengths(stream)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        return [(int(a), int(n)) for a, n in zip(starts, lengths)]


@dataclasses.dataclass(frozen=True)
class FailureRecord:
    video_id: str
    stage: str
    error: str
    source_rel_path: str = ""
    shard: str = ""
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # empty in schema-1 versions


@dataclasses.dataclass
class ShardDataset:
    root: Path  # the version directory
    meta: VersionMeta
    labels: list[str]  # index = label id
    records: list[ShardRecord]
    failures: list[FailureRecord]

    def __len__(self) -> int:
        return len(self.records)

    def split(self, name: str, subset: str) -> list[ShardRecord]:
        """Records whose split ``name`` is ``subset`` (train | test | unused)."""
        return [r for r in self.records if r.splits.get(name) == subset]


# ------------------------------------------------------------------------------------------------ reading
def load_shards(path: str | os.PathLike) -> ShardDataset:
    """Load a shard dataset version (anything ``manifests.versioning.resolve`` accepts)."""
    vdir = resolve(path)
    meta = VersionMeta.from_file(vdir / "version.json")
    if meta.kind != KIND:
        raise ValueError(f"{vdir}: a {meta.kind!r} version, not a shard dataset")
    labels = [r["name"] for r in sorted(pq.read_table(vdir / LABELS_FILE).to_pylist(), key=lambda r: r["label_id"])]
    records = []
    for r in pq.read_table(vdir / SHARDS_FILE).to_pylist():
        records.append(
            ShardRecord(
                video_id=r["video_id"],
                shard_path=(vdir / r["shard"]).resolve(),
                group=r["group"],
                n_rgb=r["n_rgb"],
                n_flow=r["n_flow"],
                labels=tuple(r["labels"]),
                label_names=tuple(r["label_names"]),
                splits=dict(r["splits"]),
                height=r["height"],
                width=r["width"],
                checksums={s: r[f"sha256_{s}"] for s in STREAMS},
                shard_sha256=r["shard_sha256"],
                source_rel_path=r["source_rel_path"],
                source_sha256=r["source_sha256"],
                windows=tuple(tuple(w) for w in (r.get("windows") or ())),
                fps=r.get("fps"),
                partial=r.get("partial"),
            )
        )
    missing = sorted({str(r.shard_path) for r in records if not r.shard_path.is_file()})
    if missing:
        raise FileNotFoundError(f"{vdir}: {len(missing)} shard files missing, e.g. {missing[0]}")
    failures = [
        FailureRecord(
            video_id=r["video_id"],
            stage=r["stage"],
            error=r["error"],
            source_rel_path=r["source_rel_path"],
            shard=r["shard"],
            splits=dict(r.get("splits") or {}),
        )
        for r in pq.read_table(vdir / FAILURES_FILE).to_pylist()
    ]
    return ShardDataset(root=vdir, meta=meta, labels=labels, records=records, failures=failures)


def split_coverage(ds: ShardDataset, split: str, subset: str, evaluated: Iterable[str]) -> dict[str, Any]:
    """How much of ``split``'s ``subset`` videos an evaluation covers.

    The videos of the subset are the extracted ones (``shards.parquet``) plus the failures recorded in it
    (``failures.parquet``). Failures of schema-1 versions carry no splits: they are looked up in the source
    manifest the version was extracted from (``version.json`` source_dir) when it is still readable, else
    counted as ``failures_split_unknown``. Returns {split, subset, videos, evaluated, fraction, missing:
    [{video_id, stage, error}], failures_split_unknown}.
    """
    evaluated = set(evaluated)
    failures = list(ds.failures)
    if any(not f.splits for f in failures):
        splits = _source_splits(ds)
        failures = [dataclasses.replace(f, splits=splits.get(f.video_id, {})) if not f.splits else f for f in failures]
    ok = [r.video_id for r in ds.records if r.splits.get(split) == subset]
    failed = [f for f in failures if f.splits.get(split) == subset]
    missing = [{"video_id": f.video_id, "stage": f.stage, "error": f.error} for f in failed]
    missing += [
        {"video_id": v, "stage": "not evaluated", "error": "extracted but not in this evaluation (--max-videos subset)"}
        for v in ok
        if v not in evaluated
    ]
    total = len(ok) + len(failed)
    done = sum(1 for v in ok if v in evaluated)
    return {
        "split": split,
        "subset": subset,
        "videos": total,
        "evaluated": done,
        "fraction": done / total if total else float("nan"),
        "missing": sorted(missing, key=lambda m: m["video_id"]),
        "failures_split_unknown": sum(1 for f in failures if not f.splits),
    }


def _source_splits(ds: ShardDataset) -> dict[str, dict[str, str]]:
    """{video_id: splits} from the source manifest named in version.json, or {} when it cannot be read."""
    src = ds.meta.source.get("source_dir") if isinstance(ds.meta.source, dict) else None
    if not src:
        return {}
    try:
        return {r.video_id: dict(r.splits) for r in load_source(src).videos}
    except (OSError, ValueError, KeyError):
        return {}


# ------------------------------------------------------------------------------------------------ writing
def write_tables(
    dest: Path,
    records: Sequence[ShardRecord],
    failures: Sequence[FailureRecord],
    labels: Sequence[str],
    *,
    codec: Mapping[str, Any] | None = None,
    flow_params: Mapping[str, Any] | None = None,
    code_version: str = "",
) -> None:
    """Write the three Parquet tables into ``dest``; shard paths are stored as ``shards/<file name>``."""
    codec_s = json.dumps(codec or {}, sort_keys=True)
    flow_s = json.dumps(flow_params or {}, sort_keys=True)
    rows = [
        {
            "video_id": r.video_id,
            "shard": f"{SHARDS_DIR}/{Path(r.shard_path).name}",
            "group": r.group,
            "n_rgb": r.n_rgb,
            "n_flow": r.n_flow,
            "height": r.height,
            "width": r.width,
            "labels": list(r.labels),
            "label_names": list(r.label_names),
            "splits": sorted(r.splits.items()),
            **{f"sha256_{s}": r.checksums.get(s, "") for s in STREAMS},
            "shard_sha256": r.shard_sha256,
            "source_rel_path": r.source_rel_path,
            "source_sha256": r.source_sha256,
            "codec": codec_s,
            "flow_params": flow_s,
            "code_version": code_version,
            "windows": [list(w) for w in (r.windows or ((0, r.n_rgb),))],
            "fps": r.fps,
            "partial": r.partial,
        }
        for r in sorted(records, key=lambda r: r.video_id)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARDS_SCHEMA), dest / SHARDS_FILE)
    frows = [
        {**dataclasses.asdict(f), "splits": sorted(f.splits.items())}
        for f in sorted(failures, key=lambda f: f.video_id)
    ]
    pq.write_table(pa.Table.from_pylist(frows, schema=FAILURES_SCHEMA), dest / FAILURES_FILE)
    lrows = [{"label_id": i, "name": n} for i, n in enumerate(labels)]
    pq.write_table(pa.Table.from_pylist(lrows, schema=LABELS_SCHEMA), dest / LABELS_FILE)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # other filesystem, or links unsupported
        shutil.copy2(src, dst)


def publish_shards(
    root: str | os.PathLike,
    version_id: str,
    shard_files: Iterable[Path],
    records: Sequence[ShardRecord],
    failures: Sequence[FailureRecord],
    labels: Sequence[str],
    *,
    source: Mapping[str, Any],
    parent: str | None,
    codec: Mapping[str, Any] | None = None,
    flow_params: Mapping[str, Any] | None = None,
    code_version: str = "",
    extra: Mapping[str, Any] | None = None,
    update_latest: bool = True,
) -> Path:
    """Publish ``<root>/<version_id>``: shard files are hard-linked (copied across filesystems) into the
    version's shards/ directory, then the tables and version.json are written, all atomically."""
    files = sorted({Path(p) for p in shard_files})
    names = [p.name for p in files]
    if len(set(names)) != len(names):
        raise ValueError("shard file names must be unique")
    known = set(names)
    stray = [r.video_id for r in records if Path(r.shard_path).name not in known]
    if stray:
        raise ValueError(f"{len(stray)} records point at shards not being published, e.g. {stray[0]}")
    meta = VersionMeta(
        version_id=version_id,
        kind=KIND,
        schema_version=SCHEMA_VERSION,
        source=dict(source),
        parent=parent,
        created_at=utc_now(),
        extra={
            "codec": dict(codec or {}),
            "flow_params": dict(flow_params or {}),
            "code_version": code_version,
            "num_videos": len(records),
            "num_failures": len(failures),
            "num_shards": len(files),
            **dict(extra or {}),
        },
    )

    def write_files(tmp: Path) -> None:
        (tmp / SHARDS_DIR).mkdir()
        for p in files:
            _link_or_copy(p, tmp / SHARDS_DIR / p.name)
        write_tables(tmp, records, failures, labels, codec=codec, flow_params=flow_params, code_version=code_version)

    return publish(Path(root), version_id, write_files, meta, update_latest=update_latest)


@dataclasses.dataclass
class VideoStreams:
    """In-memory input of ``write_shard_dataset``: streams {"rgb": (T,H,W,3), "flow"/"rgbf": (T-1,H,W,3)}."""

    video_id: str
    streams: Mapping[str, np.ndarray]
    labels: tuple[int, ...] = ()
    splits: Mapping[str, str] = dataclasses.field(default_factory=dict)
    label_names: tuple[str, ...] | None = None  # default: from the label list
    windows: tuple[tuple[int, int], ...] = ()  # (start, length) runs of the rgb frames; () = one run


def write_shard_dataset(
    root: str | os.PathLike,
    videos: Iterable[VideoStreams],
    labels: Sequence[str],
    *,
    failures: Sequence[FailureRecord] = (),
    codec: str | Mapping[str, str] | None = None,
    shard_size: int = 8,
    update_latest: bool = True,
    **codec_opts: Any,
) -> Path:
    """Write a small shard dataset version from in-memory frames, without Ray. Returns the version dir."""
    videos = sorted(videos, key=lambda v: v.video_id)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".write-", dir=root))
    try:
        records, files = [], []
        for k in range(0, len(videos), shard_size):
            path = work / f"{k // shard_size:05d}.h5"
            batch = []
            with ShardWriter(path, codec=codec, **codec_opts) as w:
                for v in videos[k : k + shard_size]:
                    if v.windows:
                        sums = _add_windowed(w, v)
                    else:
                        sums = w.add(v.video_id, v.streams, {"video_id": v.video_id})
                    batch.append((v, sums))
            files.append(path)
            digest = file_digest(path)
            for v, sums in batch:
                t, h, wd, _ = v.streams["rgb"].shape
                names = v.label_names if v.label_names is not None else tuple(labels[i] for i in v.labels)
                records.append(
                    ShardRecord(
                        v.video_id,
                        path,
                        v.video_id,
                        t,
                        t - max(len(v.windows), 1),
                        tuple(v.labels),
                        tuple(names),
                        dict(v.splits),
                        h,
                        wd,
                        sums,
                        digest,
                        windows=tuple(v.windows),
                    )
                )
        vid = content_id(
            [
                KIND,
                json.dumps(list(labels)),
                json.dumps([codec_spec(codec), codec_opts], sort_keys=True),
                *[
                    f"{r.video_id}:{Path(r.shard_path).name}:{sorted(r.checksums.items())}:{r.labels}:{sorted(r.splits.items())}"
                    for r in records
                ],  # content, not file bytes (HDF5 padding is not deterministic)
                *[f"{f.video_id}:{f.stage}:{f.error}:{sorted(f.splits.items())}" for f in failures],
            ]
        )
        return publish_shards(
            root,
            vid,
            files,
            records,
            failures,
            labels,
            source={"builder": "write_shard_dataset"},
            parent=None,
            codec={"streams": codec_spec(codec), "opts": codec_opts},
            update_latest=update_latest,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _add_windowed(w: ShardWriter, v: VideoStreams) -> dict[str, str]:
    """Store a video whose rgb frames are several windows (flow / rgbf: length - 1 frames per window)."""
    t, h, wd, _ = v.streams["rgb"].shape
    if sum(n for _, n in v.windows) != t:
        raise ValueError(f"{v.video_id}: windows {v.windows} do not add up to {t} rgb frames")
    out = w.stream(v.video_id, h, wd)
    for s in STREAMS:
        out.append(s, np.ascontiguousarray(v.streams[s]))
    return out.finish({"video_id": v.video_id, "windows": [list(x) for x in v.windows]}, n_flow=t - len(v.windows))
