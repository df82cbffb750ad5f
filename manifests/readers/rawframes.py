"""Export a shard dataset version to mmaction2's rawframes or videos layout (no Ray here; jobs.export drives it).

Formats (``--format``, ``FORMATS``): ``rawframes`` (below: JPEG frame folders, RGB and flow, for
``RawframeDataset``) and ``videos`` (one video file per video's RGB frames for ``VideoDataset``, written by
``manifests.readers.videos``, whose docstring has its layout). Both share the layouts, names, splits,
validation carves, label map and configs planned here; the ``flat`` layout is rawframes only.

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

from manifests.readers import videos
from manifests.readers.mmconfig import ConfigSpec, config_text
from manifests.readers.validation import RULES, Carve, carve
from manifests.shards import ShardDataset, ShardRecord
from manifests.versioning import read_meta
from pipeline.storage import ShardReader
from pipeline.videofile import DEFAULT_CODEC, VIDEO_CODECS

MARKER = ".asym3d-export.json"
EXPORT_STREAMS = ("rgb", "flow")  # the streams a rawframes export can write (mmaction2 reads these)
RGB_TMPL, FLOW_TMPL = "img_{:05d}.jpg", "{}_{:05d}.jpg"  # file names: RGB / flow plane ("flow_x", k)
MM_FLOW_TMPL = "flow_{}_{:05d}.jpg"  # mmaction2's filename_tmpl for these flow files (it formats "x" / "y")
SUBSETS = ("train", "test")
LABEL_MAP = "label_map.txt"
FRAMES_DIR = "rawframes"  # frame root of the mmaction2 layouts (data/<dataset>/rawframes in mmaction2)


class ExportError(ValueError):
    """Bad export request (non-empty foreign directory, unknown split/stream/format); one-line message."""


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    root: str  # folder under <out> holding the frames / videos (mmaction2's data/<dataset>/rawframes | videos)
    streams: tuple[str, ...]  # streams it can write (and writes by default)
    lists: dict[str, str]  # stream -> list-name suffix (<ds>_<subset>_split_<k>_<suffix>.txt)


FORMATS = {
    "rawframes": Format("rawframes", FRAMES_DIR, EXPORT_STREAMS, {"rgb": "rawframes", "flow": "flow"}),
    # mmaction2 reads flow only as rawframes: DecordDecode gives 3-channel frames, not x / y planes
    "videos": Format("videos", videos.VIDEOS_DIR, ("rgb",), {"rgb": "videos"}),
}


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


DEFAULT_JPEG_QUALITY = 95  # OpenCV's default, as in mmaction2 / denseflow frame folders


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    version_id: str
    format: str = "rawframes"
    streams: tuple[str, ...] | None = None  # None: every stream of the format (the marker records them)
    jpeg_quality: int | None = None  # rawframes only; None: 95, OpenCV's default, as mmaction2 / denseflow frames
    split: str | None = None  # only videos in train/test of this split (None: every extracted video)
    layout: str = "auto"  # a LAYOUTS name or auto (the marker records the resolved name)
    val_fraction: float = 0.1  # held-out subset of each split's training videos (jobs.train's default)
    val_group_rule: str = "auto"
    val_seed: int = 0
    video_codec: str | None = None  # videos: a pipeline.videofile.VIDEO_CODECS name (None: the default)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        if d["video_codec"] is None:  # rawframes: the marker of earlier releases, unchanged
            del d["video_codec"]
        return json.dumps(d, sort_keys=True, indent=2)


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What an export writes, resolved before anything is written (``make_plan``)."""

    layout: Layout
    dataset: str  # list-file prefix: the dataset kind (ucf101, ...) or "dataset"
    records: list[ShardRecord]  # grouped by shard file, then by video id
    names: dict[str, str]  # video id -> folder under the frame root ("Class/video" at level 2)
    splits: list[str]
    carves: dict[str, Carve]  # split -> validation carve of its training videos (mmaction2 layouts)
    format: Format = FORMATS["rawframes"]
    video_codec: str = DEFAULT_CODEC  # videos format

    @property
    def frames(self) -> str:
        """The frame (or video) root under the export directory; "" for the flat layout."""
        return "" if self.layout.level == 0 else self.format.root

    def entry(self, rec: ShardRecord) -> str:
        """What a video occupies under the frame root (its frame folder, its video file or window folder);
        it exists only when complete."""
        name = self.names[rec.video_id]
        return videos.entry(rec, name, self.video_codec) if self.format.name == "videos" else name


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


def resolve_layout(ds: ShardDataset, name: str, fmt: str = "rawframes") -> tuple[Layout, str]:
    """(layout, list prefix) for ``--layout name``; ExportError when it does not fit the version."""
    kind = dataset_kind(ds)
    if name == "auto":
        name = kind if kind in LAYOUTS else "ids"
    if name not in LAYOUTS:
        raise ExportError(f"--layout: unknown layout {name!r} (known: {', '.join(LAYOUT_CHOICES)})")
    lay = LAYOUTS[name]
    if fmt != "rawframes" and lay.level == 0:
        raise ExportError(
            f"--layout: {name} is the rawframes layout of earlier releases; --format {fmt} takes the others"
        )
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
    fmt = FORMATS[opts.format]
    streams = fmt.streams if opts.streams is None else opts.streams
    bad = [s for s in streams if s not in fmt.streams]
    if bad and opts.format == "videos" and set(bad) <= set(EXPORT_STREAMS):
        raise ExportError("--streams: the videos format writes rgb only (mmaction2 reads flow as rawframes only)")
    if bad or not streams:
        raise ExportError(f"--streams: unknown stream(s) {bad or streams} (known: {', '.join(fmt.streams)})")
    if opts.video_codec is not None and opts.format != "videos":
        raise ExportError(f"--video-codec: applies to --format videos only, not {opts.format}")
    if opts.video_codec is not None and opts.video_codec not in VIDEO_CODECS:
        raise ExportError(f"--video-codec: unknown codec {opts.video_codec!r} (known: {', '.join(VIDEO_CODECS)})")
    if opts.jpeg_quality is not None and opts.format == "videos":  # the videos format writes no JPEG
        raise ExportError("--jpeg-quality: applies to --format rawframes only, not videos (see --video-codec)")
    if opts.jpeg_quality is not None and not 1 <= opts.jpeg_quality <= 100:
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
    layout, dataset = resolve_layout(ds, opts.layout, opts.format)
    fmt = FORMATS[opts.format]
    codec = opts.video_codec or DEFAULT_CODEC
    opts = dataclasses.replace(
        opts,
        layout=layout.name,
        streams=fmt.streams if opts.streams is None else opts.streams,
        video_codec=codec if fmt.name == "videos" else None,
        jpeg_quality=DEFAULT_JPEG_QUALITY if opts.jpeg_quality is None else opts.jpeg_quality,
    )
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
    return ExportPlan(layout, dataset, records, names, splits, carves, fmt, codec), opts


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
    runs = rec.stored_runs(stream)
    if len(runs) <= 1:
        return [("", 0, runs[0][1] if runs else 0)]
    return [(videos.WINDOW.format(k), a, n) for k, (a, n) in enumerate(runs)]


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
    records: Sequence[ShardRecord], out: str, opts: ExportOptions, names: dict[str, str] | None = None
) -> list[dict]:
    """Export videos into the frame root ``out`` in ``opts.format`` (one Ray task's work; ``opts`` as
    ``make_plan`` resolved them); per-video errors are returned, not raised (bad-input policy: an unreadable
    video is counted and left out of the file lists, the others go on)."""
    out_p, results, readers = Path(out), [], {}
    try:
        for rec in records:
            try:
                reader = readers.setdefault(str(rec.shard_path), ShardReader(rec.shard_path))
                name = (names or {}).get(rec.video_id) or rec.video_id
                if opts.format == "videos":
                    files = videos.export_video(reader, rec, out_p, opts.video_codec or DEFAULT_CODEC, name)
                else:
                    files = export_video(reader, rec, out_p, opts.streams or EXPORT_STREAMS, opts.jpeg_quality, name)
                results.append({"video_id": rec.video_id, "files": files, "error": None})
            except (OSError, KeyError, ValueError, IndexError) as e:
                results.append({"video_id": rec.video_id, "files": 0, "error": f"{type(e).__name__}: {e}"})
    finally:
        for r in readers.values():
            r.close()
    return results


def list_lines(
    records: Iterable[ShardRecord], stream: str, names: dict[str, str] | None = None, video_codec: str | None = None
) -> list[str]:
    """mmaction2 rawframe annotation lines "<frame_dir> <total_frames> <label> [<label> ...]" (one line per
    window, "<frame_dir>/wKK", for a video stored as several windows); with ``video_codec`` (the videos
    format) VideoDataset lines "<video file> <label> [<label> ...]" instead."""
    names = names or {}
    lines = []
    for r in sorted(records, key=lambda r: r.video_id):
        labels = " ".join(str(i) for i in r.labels)
        if video_codec is not None:
            lines += [f"{path} {labels}" for path, _ in videos.files(r, names.get(r.video_id, r.video_id), video_codec)]
            continue
        for sub, _, length in window_parts(r, "rgb" if stream == "rgb" else "flow"):
            folder = names.get(r.video_id, r.video_id) + (f"/{sub}" if sub else "")
            lines.append(f"{folder} {length} {labels}")
    return lines


def list_name(split: str, subset: str, stream: str, dataset: str | None = None, fmt: str = "rawframes") -> str:
    """File list name: mmaction2's ``<dataset>_<subset>_split_<k>_rawframes.txt`` (``..._flow.txt`` for flow,
    ``..._videos.txt`` for the videos format; subset train | val | fit | heldout), or with ``dataset=None``
    the flat layout's ``<split>_<subset>_rawframes[_flow].txt``."""
    if dataset is None:
        return f"{split}_{subset}_rawframes{'' if stream == 'rgb' else '_flow'}.txt"
    return f"{dataset}_{subset}_split_{split_number(split)}_{FORMATS[fmt].lists[stream]}.txt"


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
    done = [r for r in plan.records if (root / plan.entry(r)).exists()]
    prefix = None if plan.layout.level == 0 else plan.dataset
    codec = plan.video_codec if plan.format.name == "videos" else None
    written = []
    for split in plan.splits:
        for subset, part in list_subsets(plan, done, split).items():
            for stream in opts.streams or plan.format.streams:
                path = out / list_name(split, subset, stream, prefix, plan.format.name)
                _write_text(path, "".join(line + "\n" for line in list_lines(part, stream, plan.names, codec)))
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


def parse_video_list(path: str | os.PathLike) -> list[tuple[str, tuple[int, ...]]]:
    """Read an mmaction2 video list back: [(video file, labels)]."""
    return [
        (line.split()[0], tuple(int(x) for x in line.split()[1:]))
        for line in Path(path).read_text().splitlines()
        if line.strip()
    ]


def config_lists(plan: ExportPlan, split: str, stream: str) -> dict[str, str]:
    """train / val / test list names of a config: fit / heldout / val (the split's test videos) with a carve,
    train / - / val without one."""
    name = lambda subset: list_name(split, subset, stream, plan.dataset, plan.format.name)  # noqa: E731
    if split in plan.carves:
        return {"train": name("fit"), "val": name("heldout"), "test": name("val")}
    return {"train": name("train"), "test": name("val")}


def write_configs(
    out: Path, plan: ExportPlan, opts: ExportOptions, ds: ShardDataset, clip_len: int, crop: int
) -> list[Path]:
    """``out/configs/<dataset>_split_<k>_<stream>.py`` per split and exported stream (mmaction2 layouts);
    ``..._videos.py`` for the videos format."""
    if plan.layout.level == 0:
        return []
    (out / "configs").mkdir(exist_ok=True)
    multilabel = any(len(r.labels) > 1 for r in ds.records)
    written = []
    for split in plan.splits:
        for stream in opts.streams or plan.format.streams:
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
                format=plan.format.name,
            )
            kind = "videos" if plan.format.name == "videos" else stream
            path = out / "configs" / f"{plan.dataset}_split_{split_number(split)}_{kind}.py"
            _write_text(path, config_text(spec))
            written.append(path)
    return written
