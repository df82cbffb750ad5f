"""Export a shard dataset version to mmaction2's rawframes layout (no Ray here; jobs.export drives it).

Layouts (``--layout``, ``LAYOUTS``; ``auto`` picks the version's dataset kind, read from its source manifest).
The mmaction2 layouts follow what mmaction2's ``tools/data/<dataset>/`` scripts write (``build_rawframes.py
--level 2`` and ``build_file_list.py``), with ``<out>`` in the role of ``data/<dataset>/``::

    <out>/rawframes/<Class>/<video>/img_00001.jpg ...     ucf101, hmdb51, folder: level 2, the class folder
    <out>/rawframes/<video_id>/img_00001.jpg ...          fcvid, ids: level 1 (multi-label; no class folder)
        .../flow_x_00001.jpg, flow_y_00001.jpg ...        flow planes: filename_tmpl "flow_{}_{:05d}.jpg"
    <out>/<ds>_train_split_<k>_rawframes.txt              RGB list, the split's training videos
    <out>/<ds>_val_split_<k>_rawframes.txt                RGB list, the split's *test* videos (mmaction2's name)
    <out>/<ds>_fit_split_<k>_rawframes.txt                training videos minus the held-out ones
    <out>/<ds>_heldout_split_<k>_rawframes.txt            the validation subset (validation.carve, as ClipDataset)
    <out>/<ds>_<subset>_split_<k>_flow.txt                the same four for flow (n_flow = n_rgb - 1 frames)
    <out>/label_map.txt                                   class names, line i = label id i
    <out>/configs/<ds>_split_<k>_{rgb,flow}.py            mmaction2 configs (manifests.readers.mmconfig)
    <out>/.asym3d-export.json                             marker: shard version id and export options

``<ds>`` is the dataset kind (``ucf101`` ...), ``<k>`` the split number (``split1`` -> 1; another split name
is used as it is). The ``flat`` layout is the export of earlier releases: ``<out>/<video_id>/`` and
``<out>/<split>_<subset>_rawframes[_flow].txt`` (train / test), no label map, no configs.

Numbering starts at 1 (mmaction2's ``start_index=1`` default, denseflow's names); flow_x/flow_y_k is the
flow from RGB frame k to k+1. Flow planes are the shards' flow-image channels unchanged (x, y mapped from
[-bound, bound] px to 1..255 with 0 px at 128, ``pipeline.flowimage``), as grayscale JPEGs like denseflow writes.
Whitespace in a folder name (mmaction2 splits list lines on it) becomes ``_``, plus ``-<sha256(id)[:8]>`` if
that name is taken (``frame_dirs``); the lists use the folder name.
Labels are the 0-based label ids of the version (``labels.parquet``); a multi-label video lists all its
ids separated by spaces, as mmaction2's ``build_file_list.py`` writes them (``multi_class=True``).

A video extracted with temporal windows (``jobs.extract --segments K``; ``ShardRecord.windows``) holds K runs
of consecutive frames with gaps between them. mmaction2 samples clips anywhere inside a frame folder, so each
window gets its own folder ``<out>/<video_id>/w00``, ``w01``, ... (frames numbered from 1 in each) and its
own list line ``<video_id>/w00 <frames> <labels>``: no clip crosses a gap. mmaction2 then scores windows,
not videos: average their scores per video yourself for video-level accuracy. A video with one run keeps
the flat layout above.

A video directory is written to ``<out>/.tmp-<video_id>-<random>/`` and renamed into place when complete,
so an existing ``<out>/<video_id>/`` is always complete and a rerun skips it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from manifests.readers.mmconfig import ConfigSpec, config_text
from manifests.readers.validation import RULES, Carve, carve
from manifests.shards import ShardDataset, ShardRecord
from manifests.versioning import read_meta
from pipeline.storage import ShardReader

MARKER = ".asym3d-export.json"
FORMATS = ("rawframes",)
EXPORT_STREAMS = ("rgb", "flow")  # the streams a rawframes export can write (mmaction2 reads these)
RGB_TMPL, FLOW_TMPL = "img_{:05d}.jpg", "{}_{:05d}.jpg"  # file names: RGB / flow plane ("flow_x", k)
MM_FLOW_TMPL = "flow_{}_{:05d}.jpg"  # mmaction2's filename_tmpl for these flow files (it formats "x" / "y")
SUBSETS = ("train", "test")
LABEL_MAP = "label_map.txt"
FRAMES_DIR = "rawframes"  # frame root of the mmaction2 layouts (data/<dataset>/rawframes in mmaction2)


class ExportError(ValueError):
    """Bad export request (non-empty foreign directory, unknown split/stream/format); one-line message."""


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    level: int  # 2: <class>/<video>/ from the source path; 1: <video_id>/; 0: flat (earlier releases)
    kinds: tuple[str, ...] = ()  # dataset kinds it fits (empty: any)


LAYOUTS = {
    "ucf101": Layout("ucf101", 2, ("ucf101",)),
    "hmdb51": Layout("hmdb51", 2, ("hmdb51",)),
    "folder": Layout("folder", 2, ("folder",)),
    "fcvid": Layout("fcvid", 1, ("fcvid",)),
    "ids": Layout("ids", 1),
    "flat": Layout("flat", 0),
}
LAYOUT_CHOICES = ("auto", *LAYOUTS)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    version_id: str
    format: str = "rawframes"
    streams: tuple[str, ...] = EXPORT_STREAMS
    jpeg_quality: int = 95  # OpenCV's default, as in mmaction2 / denseflow frame folders
    split: str | None = None  # only videos in train/test of this split (None: every extracted video)
    layout: str = "auto"  # a LAYOUTS name or auto (the marker records the resolved name)
    val_fraction: float = 0.1  # held-out subset of each split's training videos (jobs.train's default)
    val_group_rule: str = "auto"
    val_seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=2)


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What an export writes, resolved before anything is written (``make_plan``)."""

    layout: Layout
    dataset: str  # list-file prefix: the dataset kind (ucf101, ...) or "dataset"
    records: list[ShardRecord]  # grouped by shard file, then by video id
    names: dict[str, str]  # video id -> folder under the frame root ("Class/video" at level 2)
    splits: list[str]
    carves: dict[str, Carve]  # split -> validation carve of its training videos (mmaction2 layouts)

    @property
    def frames(self) -> str:
        return "" if self.layout.level == 0 else FRAMES_DIR


def dataset_kind(ds: ShardDataset) -> str | None:
    """The dataset kind (ucf101, hmdb51, fcvid, folder) recorded by the version's source manifest, or None when
    that manifest is not at its recorded path (or the version was not made by jobs.extract)."""
    src = ds.meta.source.get("source_dir")
    if not src:
        return None
    try:
        return read_meta(src).source.get("dataset")
    except (OSError, ValueError, TypeError):
        return None


def resolve_layout(ds: ShardDataset, name: str) -> tuple[Layout, str]:
    """(layout, list prefix) for ``--layout name``; ExportError when it does not fit the version."""
    kind = dataset_kind(ds)
    if name == "auto":
        name = kind if kind in LAYOUTS else "ids"
    if name not in LAYOUTS:
        raise ExportError(f"--layout: unknown layout {name!r} (known: {', '.join(LAYOUT_CHOICES)})")
    lay = LAYOUTS[name]
    if lay.kinds and kind is not None and kind not in lay.kinds:
        raise ExportError(f"--layout: {name} does not fit this version's dataset ({kind}); use auto, ids or flat")
    if lay.level == 2:
        bad = [r for r in ds.records if len(PurePosixPath(r.source_rel_path).parts) < 2]
        if bad:
            raise ExportError(
                f"--layout: {name} writes <class>/<video>/ folders, but video {bad[0].video_id!r} has no class "
                f"folder in its source path {bad[0].source_rel_path!r}; use ids or flat"
            )
    return lay, kind or (name if lay.kinds else "dataset")


def split_number(split: str) -> str:
    """mmaction2's split number in list names: ``split1`` -> ``1``; any other split name as it is."""
    m = re.fullmatch(r"split(\d+)", split)
    return m[1] if m else split


def check_options(ds: ShardDataset, opts: ExportOptions) -> None:
    """Raise ExportError naming the bad argument (before any work)."""
    if opts.format not in FORMATS:
        raise ExportError(f"--format: unknown format {opts.format!r} (known: {', '.join(FORMATS)})")
    bad = [s for s in opts.streams if s not in EXPORT_STREAMS]
    if bad or not opts.streams:
        raise ExportError(f"--streams: unknown stream(s) {bad or opts.streams} (known: {', '.join(EXPORT_STREAMS)})")
    if not 1 <= opts.jpeg_quality <= 100:
        raise ExportError(f"--jpeg-quality: must be in 1..100, got {opts.jpeg_quality}")
    known = sorted({s for r in ds.records for s in r.splits})
    if opts.split is not None and opts.split not in known:
        raise ExportError(f"--split: no split {opts.split!r} in {ds.root} (have {', '.join(known) or 'none'})")
    if not 0.0 <= opts.val_fraction < 1.0:
        raise ExportError(f"--val-fraction: must be in [0, 1), got {opts.val_fraction}")
    if opts.val_group_rule not in RULES:
        raise ExportError(f"--val-group-rule: unknown rule {opts.val_group_rule!r} (known: {', '.join(RULES)})")


def make_plan(ds: ShardDataset, opts: ExportOptions) -> tuple[ExportPlan, ExportOptions]:
    """Check the options against the version and resolve everything the export writes; returns the plan and
    the options with the layout resolved (what the marker records). Raises ExportError, writes nothing."""
    check_options(ds, opts)
    layout, dataset = resolve_layout(ds, opts.layout)
    opts = dataclasses.replace(opts, layout=layout.name)
    records = select(ds, opts.split)
    splits = [opts.split] if opts.split else sorted({s for r in records for s in r.splits})
    carves: dict[str, Carve] = {}
    if layout.level and opts.val_fraction:
        for split in splits:
            train = [r for r in ds.records if r.splits.get(split) == "train"]  # as ClipDataset(subset="train")
            if not train:
                continue
            try:
                carves[split] = carve(train, opts.val_fraction, opts.val_group_rule, opts.val_seed)
            except ValueError as e:
                raise ExportError(f"--val-fraction: {split}: {e}") from None
    names = frame_dirs(records, layout.level)
    return ExportPlan(layout, dataset, records, names, splits, carves), opts


def prepare_dir(out: Path, opts: ExportOptions) -> None:
    """Refuse a non-empty ``out`` that is not an export with the same options; write the marker."""
    marker = out / MARKER
    if marker.is_file():
        try:
            prev = json.loads(marker.read_text())
        except (OSError, ValueError) as e:
            raise ExportError(f"--out: {marker} is unreadable ({e})") from None
        mine = json.loads(opts.to_json())
        if prev != mine:
            diff = ", ".join(f"{k}={prev.get(k)!r} (now {v!r})" for k, v in mine.items() if prev.get(k) != v)
            raise ExportError(f"--out: {out} holds another export ({diff}); choose an empty directory")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out: {out} is not empty and not an export of version {opts.version_id}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{MARKER}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(opts.to_json())
    os.replace(tmp, marker)


def folder_name(rec: ShardRecord, level: int) -> str:
    """Folder of a video under the frame root, before whitespace is replaced: ``<class>/<stem>`` of its source
    path at level 2 (as mmaction2's ``build_rawframes.py --level 2`` names it), else its id."""
    if level == 2:
        rel = PurePosixPath(rec.source_rel_path)
        return f"{rel.parent.name}/{rel.stem}"
    return rec.video_id


def frame_dirs(records: Iterable[ShardRecord], level: int = 0) -> dict[str, str]:
    """video id -> folder name (deterministic: names without whitespace first, in id order; whitespace becomes
    ``_``, and a name already taken gets ``-<sha256(id)[:8]>``)."""
    raw = {r.video_id: folder_name(r, level) for r in records}
    out: dict[str, str] = {}
    taken: set[str] = set()
    for v in sorted(raw, key=lambda v: (bool(re.search(r"\s", raw[v])), v)):
        name = re.sub(r"\s", "_", raw[v])
        if name in taken:
            name += "-" + hashlib.sha256(v.encode()).hexdigest()[:8]
        out[v] = name
        taken.add(name)
    return out


def select(ds: ShardDataset, split: str | None) -> list[ShardRecord]:
    """Records to export, grouped by shard file (one open file per task), then by video id."""
    recs = [r for r in ds.records if split is None or r.splits.get(split) in SUBSETS]
    return sorted(recs, key=lambda r: (str(r.shard_path), r.video_id))


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"{path}: OpenCV could not write the JPEG")


def window_parts(rec: ShardRecord, stream: str) -> list[tuple[str, int, int]]:
    """(subfolder, first stored frame, frame count) of each window of ``stream`` in storage order; one part
    with subfolder "" for a video stored as one run."""
    lengths = rec.window_lengths(stream)
    if len(lengths) <= 1:
        return [("", 0, lengths[0] if lengths else 0)]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
    return [(f"w{k:02d}", int(a), int(n)) for k, (a, n) in enumerate(zip(starts, lengths))]


def export_video(
    reader: ShardReader, rec: ShardRecord, out: Path, streams: Sequence[str], quality: int, name: str | None = None
) -> int:
    """Write one video's frame folder ``out/name`` (default: the id; one subfolder per window when it has
    several) atomically; returns the number of files written (0 if the folder existed)."""
    name = name or rec.video_id
    final = out / name
    if final.is_dir():
        return 0
    tmp = out / f".tmp-{name.replace('/', '__')}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        n = 0
        if "rgb" in streams:
            rgb = reader.read(rec.group, "rgb")  # (n_rgb, H, W, 3) RGB
            for sub, a, length in window_parts(rec, "rgb"):
                (tmp / sub).mkdir(exist_ok=True)
                for k in range(length):
                    frame = cv2.cvtColor(rgb[a + k], cv2.COLOR_RGB2BGR)
                    _write_jpeg(tmp / sub / RGB_TMPL.format(k + 1), frame, quality)
                    n += 1
        if "flow" in streams:
            flow = reader.read(rec.group, "flow")  # (n_flow, H, W, 3): x, y, |w|
            for sub, a, length in window_parts(rec, "flow"):
                (tmp / sub).mkdir(exist_ok=True)
                for k in range(length):
                    for c, plane in enumerate(("flow_x", "flow_y")):
                        img = np.ascontiguousarray(flow[a + k, ..., c])
                        _write_jpeg(tmp / sub / FLOW_TMPL.format(plane, k + 1), img, quality)
                    n += 2
        final.parent.mkdir(parents=True, exist_ok=True)  # the class folder (level-2 layouts)
        os.rename(tmp, final)
        return n
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_chunk(
    records: Sequence[ShardRecord], out: str, streams: Sequence[str], quality: int, names: dict[str, str] | None = None
) -> list[dict]:
    """Export videos (one Ray task's work); per-video errors are returned, not raised (bad-input policy:
    an unreadable video is counted and left out of the file lists, the others go on)."""
    out_p, results, readers = Path(out), [], {}
    try:
        for rec in records:
            try:
                reader = readers.setdefault(str(rec.shard_path), ShardReader(rec.shard_path))
                files = export_video(reader, rec, out_p, streams, quality, (names or {}).get(rec.video_id))
                results.append({"video_id": rec.video_id, "files": files, "error": None})
            except (OSError, KeyError, ValueError, IndexError) as e:
                results.append({"video_id": rec.video_id, "files": 0, "error": f"{type(e).__name__}: {e}"})
    finally:
        for r in readers.values():
            r.close()
    return results


def list_lines(records: Iterable[ShardRecord], stream: str, names: dict[str, str] | None = None) -> list[str]:
    """mmaction2 rawframe annotation lines "<frame_dir> <total_frames> <label> [<label> ...]" (one line per
    window, "<frame_dir>/wKK", for a video stored as several windows)."""
    names = names or {}
    lines = []
    for r in sorted(records, key=lambda r: r.video_id):
        labels = " ".join(str(i) for i in r.labels)
        for sub, _, length in window_parts(r, "rgb" if stream == "rgb" else "flow"):
            folder = names.get(r.video_id, r.video_id) + (f"/{sub}" if sub else "")
            lines.append(f"{folder} {length} {labels}")
    return lines


def list_name(split: str, subset: str, stream: str, dataset: str | None = None) -> str:
    """File list name: mmaction2's ``<dataset>_<subset>_split_<k>_rawframes.txt`` (``..._flow.txt`` for flow;
    subset train | val | fit | heldout), or with ``dataset=None`` the flat layout's
    ``<split>_<subset>_rawframes[_flow].txt``."""
    if dataset is None:
        return f"{split}_{subset}_rawframes{'' if stream == 'rgb' else '_flow'}.txt"
    return f"{dataset}_{subset}_split_{split_number(split)}_{'rawframes' if stream == 'rgb' else 'flow'}.txt"


def list_subsets(plan: ExportPlan, records: Sequence[ShardRecord], split: str) -> dict[str, list[ShardRecord]]:
    """Subset name in the list names -> its records. mmaction2 layouts: train, val (= the split's test videos,
    as mmaction2's tools name them), and with a carve fit (train minus held-out) and heldout; flat: train, test."""

    def part(subset: str) -> list[ShardRecord]:
        return [r for r in records if r.splits.get(split) == subset]

    if plan.layout.level == 0:
        return {s: part(s) for s in SUBSETS}
    out = {"train": part("train"), "val": part("test")}
    if split in plan.carves:
        held = {r.video_id for r in plan.carves[split].val}
        out["fit"] = [r for r in out["train"] if r.video_id not in held]
        out["heldout"] = [r for r in out["train"] if r.video_id in held]
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_lists(out: Path, plan: ExportPlan, opts: ExportOptions, labels: Sequence[str] = ()) -> list[Path]:
    """One file list per split, subset and exported stream, holding the videos whose folder exists, and (not
    flat) the label map; list paths are relative to the frame root, as mmaction2's ``data_prefix`` wants."""
    root = out / plan.frames
    done = [r for r in plan.records if (root / plan.names[r.video_id]).is_dir()]
    prefix = None if plan.layout.level == 0 else plan.dataset
    written = []
    for split in plan.splits:
        for subset, part in list_subsets(plan, done, split).items():
            for stream in opts.streams:
                path = out / list_name(split, subset, stream, prefix)
                _write_text(path, "".join(line + "\n" for line in list_lines(part, stream, plan.names)))
                written.append(path)
    if prefix is not None:
        _write_text(out / LABEL_MAP, "".join(f"{name}\n" for name in labels))
        written.append(out / LABEL_MAP)
    return written


def parse_list(path: str | os.PathLike) -> list[tuple[str, int, tuple[int, ...]]]:
    """Read an mmaction2 rawframe list back: [(frame_dir, total_frames, labels)]."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            parts = line.split()
            out.append((parts[0], int(parts[1]), tuple(int(x) for x in parts[2:])))
    return out


def config_lists(plan: ExportPlan, split: str, stream: str) -> dict[str, str]:
    """train / val / test list names of a config: fit / heldout / val (the split's test videos) with a carve,
    train / - / val without one."""
    name = lambda subset: list_name(split, subset, stream, plan.dataset)  # noqa: E731
    if split in plan.carves:
        return {"train": name("fit"), "val": name("heldout"), "test": name("val")}
    return {"train": name("train"), "test": name("val")}


def write_configs(
    out: Path, plan: ExportPlan, opts: ExportOptions, ds: ShardDataset, clip_len: int, crop: int
) -> list[Path]:
    """``out/configs/<dataset>_split_<k>_<stream>.py`` per split and exported stream (mmaction2 layouts)."""
    if plan.layout.level == 0:
        return []
    (out / "configs").mkdir(exist_ok=True)
    multilabel = any(len(r.labels) > 1 for r in ds.records)
    written = []
    for split in plan.splits:
        for stream in opts.streams:
            spec = ConfigSpec(
                ds.meta.version_id,
                plan.dataset,
                split,
                stream,
                config_lists(plan, split, stream),
                len(ds.labels),
                multilabel,
                clip_len,
                crop,
                frames_dir=plan.frames,
            )
            path = out / "configs" / f"{plan.dataset}_split_{split_number(split)}_{stream}.py"
            _write_text(path, config_text(spec))
            written.append(path)
    return written
