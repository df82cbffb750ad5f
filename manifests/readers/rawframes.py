"""Export a shard dataset version to mmaction2's rawframes layout (no Ray here; jobs.export drives it).

Layout written under ``out`` (the ``data_prefix`` of an mmaction2 ``RawframeDataset``)::

    <out>/<video_id>/img_00001.jpg ...      RGB frames 1..n_rgb          (filename_tmpl "img_{:05}.jpg")
    <out>/<video_id>/flow_x_00001.jpg ...   flow image channel 0 (x), frames 1..n_flow = n_rgb - 1
    <out>/<video_id>/flow_y_00001.jpg ...   flow image channel 1 (y)     (filename_tmpl "{}_{:05d}.jpg")
    <out>/<split>_<subset>_rawframes.txt    RGB file list:  "<video_id> <n_rgb> <label> [<label> ...]"
    <out>/<split>_<subset>_rawframes_flow.txt  flow file list: "<video_id> <n_flow> <label> ..."
    <out>/.asym3d-export.json               marker: shard version id and export options

Numbering starts at 1 (mmaction2's ``start_index=1`` default, denseflow's names); flow_x/flow_y_k is the
flow from RGB frame k to k+1. Flow planes are the shards' flow-image channels unchanged (x, y mapped from
[-bound, bound] px to 1..255 with 0 px at 128, ``pipeline.flowimage``), as grayscale JPEGs like denseflow writes.
A video id holding whitespace (mmaction2 splits list lines on it) gets a folder name with ``_`` instead,
plus ``-<sha256(id)[:8]>`` if that name is taken (``frame_dir``); the lists use the folder name.
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
from pathlib import Path

import cv2
import numpy as np

from manifests.shards import ShardDataset, ShardRecord
from pipeline.storage import ShardReader

MARKER = ".asym3d-export.json"
FORMATS = ("rawframes",)
EXPORT_STREAMS = ("rgb", "flow")  # the streams a rawframes export can write (mmaction2 reads these)
RGB_TMPL, FLOW_TMPL = "img_{:05d}.jpg", "{}_{:05d}.jpg"  # mmaction2 filename_tmpl for RGB / Flow
SUBSETS = ("train", "test")


class ExportError(ValueError):
    """Bad export request (non-empty foreign directory, unknown split/stream/format); one-line message."""


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    version_id: str
    format: str = "rawframes"
    streams: tuple[str, ...] = EXPORT_STREAMS
    jpeg_quality: int = 95  # OpenCV's default, as in mmaction2 / denseflow frame folders
    split: str | None = None  # only videos in train/test of this split (None: every extracted video)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=2)


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


def frame_dir(video_id: str, taken: set[str] = frozenset()) -> str:
    """Folder name of a video: its id, whitespace replaced by ``_`` (suffixed with a hash if ``taken``)."""
    name = re.sub(r"\s", "_", video_id)
    if name != video_id and name in taken:
        name += "-" + hashlib.sha256(video_id.encode()).hexdigest()[:8]
    return name


def frame_dirs(records: Iterable[ShardRecord]) -> dict[str, str]:
    """video id -> folder name for a version's records (deterministic: ids without whitespace first)."""
    ids = sorted(r.video_id for r in records)
    taken = {v for v in ids if not re.search(r"\s", v)}
    out = {v: v for v in taken}
    for v in ids:
        if v not in out:
            out[v] = frame_dir(v, taken)
            taken.add(out[v])
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
    tmp = out / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
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


def list_name(split: str, subset: str, stream: str) -> str:
    return f"{split}_{subset}_rawframes{'' if stream == 'rgb' else '_flow'}.txt"


def write_lists(out: Path, records: Sequence[ShardRecord], opts: ExportOptions) -> list[Path]:
    """One file list per split, subset and exported stream, holding the videos whose folder exists."""
    names = frame_dirs(records)
    done = [r for r in records if (out / names[r.video_id]).is_dir()]
    splits = [opts.split] if opts.split else sorted({s for r in done for s in r.splits})
    written = []
    for split in splits:
        for subset in SUBSETS:
            part = [r for r in done if r.splits.get(split) == subset]
            for stream in opts.streams:
                path = out / list_name(split, subset, stream)
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text("".join(line + "\n" for line in list_lines(part, stream, names)))
                os.replace(tmp, path)
                written.append(path)
    return written


def parse_list(path: str | os.PathLike) -> list[tuple[str, int, tuple[int, ...]]]:
    """Read an mmaction2 rawframe list back: [(frame_dir, total_frames, labels)]."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            parts = line.split()
            out.append((parts[0], int(parts[1]), tuple(int(x) for x in parts[2:])))
    return out
