"""Dataset cards: ``<version dir>/card.md`` with its figures in ``<version dir>/card/``.

    write_card(version)            -> Path of card.md (source manifest or shard dataset version)
    write_card_safely(version)     the publishing hook: never raises, warns and returns None on failure

A card is a human-readable summary written after a version is published; it is not part of the version's
content (the id hashes the tables, never the card), so regenerating it (``python -m jobs.card VERSION``)
is always allowed. Figures: videos per class and split, duration and frame-count histograms, failures by
reason (examples in the text), and for shard versions the flow-magnitude distribution, bytes per stream
and sample panels (RGB / Flow / RGBF rows, ``plots.stream_panel``). Files are written into a temporary
directory and moved into place, so a card is never half written.
"""

from __future__ import annotations

import collections
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jobs.report import plots
from manifests.shards import ShardDataset, load_shards
from manifests.source.loader import SourceManifest, load_source
from manifests.versioning import VersionMeta, dir_size, format_bytes, read_meta, resolve
from pipeline.storage import STREAMS, ShardReader

CARD, CARD_DIR = "card.md", "card"
FLOW_SAMPLE_VIDEOS = 16  # videos read for the flow-magnitude histogram
BYTES_SAMPLE_VIDEOS = 64  # videos whose stream sizes are measured
PANEL_VIDEOS = 3
EXAMPLES = 3  # failure examples per reason


# -------------------------------------------------------------------------------------------- statistics
def class_split_counts(items: list[tuple[tuple[str, ...], dict[str, str]]]) -> dict[str, dict[str, dict[str, int]]]:
    """[(label names, splits)] -> {split: {class: {subset: videos}}} (a multi-label video counts per label)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for names, splits in items:
        for split, subset in splits.items():
            for n in names:
                cls = out.setdefault(split, {}).setdefault(n, {})
                cls[subset] = cls.get(subset, 0) + 1
    return dict(sorted(out.items()))


def failure_groups(rows: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    """[(reason, video, error)] -> {reason: [(video, error), ...]} sorted by count, most first."""
    groups: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for reason, video, error in rows:
        groups[reason].append((video, error))
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def _sample(records: list, n: int) -> list:
    if len(records) <= n:
        return list(records)
    return [records[i] for i in np.linspace(0, len(records) - 1, n).round().astype(int)]


def stored_bytes(reader: ShardReader, group: str, stream: str) -> int:
    """Bytes a stream takes in its shard: compressed chunks of an array codec, JPEG strings of a JPEG codec."""
    ds = reader.file[group][stream]
    if ds.dtype.kind == "O":  # vlen uint8: one JPEG per frame
        return int(sum(len(b) for b in ds[()]))
    return int(ds.id.get_storage_size())


# ----------------------------------------------------------------------------------------------- markdown
def _md_failures(groups: dict[str, list[tuple[str, str]]], what: str) -> list[str]:
    if not groups:
        return [f"No {what}.", ""]
    lines = ["| reason | videos | examples |", "|---|---:|---|"]
    for reason, items in groups.items():
        ex = "<br>".join(f"`{v}`: {(e or '').replace('|', '/')[:160]}" for v, e in items[:EXAMPLES])
        lines.append(f"| {reason} | {len(items)} | {ex} |")
    return lines + [""]


def _md_partial(items: list[tuple[str, str]]) -> list[str]:
    """(video, reason) of the videos kept as their decodable prefix (--partial keep), as a short section."""
    if not items:
        return []
    lines = [
        "## Partial files",
        "",
        f"{len(items)} videos decode only part-way (a cut download, corrupt data); "
        "their decodable prefix is kept (`--partial keep`, the default; `--partial fail` fails them).",
        "",
    ]
    lines += [f"- `{v}`: {reason.replace('|', '/')[:160]}" for v, reason in items[:EXAMPLES]]
    return lines + ([f"- ... and {len(items) - EXAMPLES} more"] if len(items) > EXAMPLES else []) + [""]


def _md_split_table(
    counts: dict[str, dict[str, dict[str, int]]], videos_by_split: dict[str, dict[str, int]]
) -> list[str]:
    lines = ["| split | train | test | unused | classes |", "|---|---:|---:|---:|---:|"]
    for split, subsets in videos_by_split.items():
        lines.append(
            f"| {split} | {subsets.get('train', 0)} | {subsets.get('test', 0)} | "
            f"{subsets.get('unused', 0)} | {len(counts.get(split, {}))} |"
        )
    return lines + [""]


def _videos_by_split(items: list[tuple[tuple[str, ...], dict[str, str]]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for _, splits in items:
        for split, subset in splits.items():
            out.setdefault(split, {})
            out[split][subset] = out[split].get(subset, 0) + 1
    return dict(sorted(out.items()))


def _header(meta: VersionMeta, vdir: Path, title: str) -> list[str]:
    return [
        f"# Dataset card: {title} `{meta.version_id}`",
        "",
        f"- kind: `{meta.kind}`, schema version {meta.schema_version}",
        f"- parent: `{meta.parent or '-'}`",
        f"- created: {meta.created_at} (UTC)",
        f"- size on disk: {format_bytes(_content_size(vdir))} (without this card)",
        "",
    ]


def _content_size(vdir: Path) -> int:
    """Bytes of the version's own files (the card and hidden temporary files not counted)."""
    parts = [p for p in vdir.iterdir() if not p.name.startswith(".") and p.name not in (CARD, CARD_DIR)]
    return sum(dir_size(p) if p.is_dir() else p.stat().st_size for p in parts)


# ------------------------------------------------------------------------------------------- source cards
def source_card(m: SourceManifest, out: Path) -> list[str]:
    """Figures into ``out`` (the card dir being written), returns the markdown lines."""
    ok = m.ok()
    items = [(r.label_names, r.splits) for r in ok]
    counts = class_split_counts(items)
    plots.plot_class_counts(
        counts, m.labels, out / "classes.png", title=f"ok videos per class and split ({len(ok)} videos)"
    )
    plots.plot_histograms(
        {
            "duration": ([r.duration_s for r in ok], "duration (s, from the header)"),
            "frames": ([r.num_frames for r in ok], "frames (decoded)"),
        },
        out / "lengths.png",
        title="video lengths (status ok)",
    )
    groups = failure_groups([(r.status, r.rel_path, r.error or "") for r in m.videos if not r.ok])
    plots.plot_bars(
        {k: len(v) for k, v in groups.items()},
        out / "failures.png",
        title=f"failures by reason ({sum(len(v) for v in groups.values())} of {len(m.videos)} videos)",
        xlabel="videos",
    )
    lines = _header(m.meta, m.dir, "source manifest")
    lines += [
        f"Videos root: `{m.videos_root}`. {len(m.videos)} videos listed, {len(ok)} ok, {len(m.labels)} classes.",
        "",
        "## Splits",
        "",
    ]
    lines += _md_split_table(counts, _videos_by_split(items))
    lines += [
        "![videos per class and split](card/classes.png)",
        "",
        "## Lengths",
        "",
        "![duration and frame-count histograms](card/lengths.png)",
        "",
    ]
    lines += _md_partial([(r.rel_path, r.partial) for r in ok if r.partial])
    lines += ["## Failures", ""]
    lines += _md_failures(groups, "failures: every listed video is ok")
    lines += ["![failures by reason](card/failures.png)", ""]
    return lines


# -------------------------------------------------------------------------------------------- shard cards
def _source_durations(ds: ShardDataset) -> dict[str, float | None] | None:
    src = ds.meta.source.get("source_dir")
    try:
        return {r.video_id: r.duration_s for r in load_source(src).videos} if src else None
    except (OSError, ValueError):
        return None


def shard_card(ds: ShardDataset, out: Path) -> list[str]:
    recs = ds.records
    items = [(r.label_names, r.splits) for r in recs]
    counts = class_split_counts(items)
    plots.plot_class_counts(
        counts, ds.labels, out / "classes.png", title=f"extracted videos per class and split ({len(recs)} videos)"
    )
    durations = _source_durations(ds)
    panels = {"frames": ([r.n_rgb for r in recs], "RGB frames per video")}
    if durations is not None:
        panels = {"duration": ([durations.get(r.video_id) for r in recs], "duration (s, source header)"), **panels}
    plots.plot_histograms(panels, out / "lengths.png", title="lengths of the extracted videos")
    groups = failure_groups([(f.stage, f.video_id, f.error) for f in ds.failures])
    plots.plot_bars(
        {k: len(v) for k, v in groups.items()},
        out / "failures.png",
        title=f"failures by stage ({len(ds.failures)} videos not extracted)",
        xlabel="videos",
    )
    bound = float(ds.meta.extra.get("flow_params", {}).get("bound", plots.FLOW_BOUND))
    mags, per_frame, sample, panel_recs = _read_samples(recs, bound, out)
    plots.plot_flow_magnitude(
        np.concatenate(mags) if mags else np.zeros(0),
        bound,
        out / "flow_magnitude.png",
        title=f"flow magnitude, every 4th pixel of {len(mags)} videos (bound {bound:g} px)",
    )
    total = {s: sum(r.n_rgb if s == "rgb" else r.n_flow for r in recs) for s in STREAMS}
    est = {s: per_frame[s] * total[s] / 2**20 for s in STREAMS}
    plots.plot_bars(
        est,
        out / "bytes.png",
        xlabel="MiB (estimated for the whole version)",
        title=f"bytes per stream (measured on {len(sample)} of {len(recs)} videos)",
        annotate=[f"{est[s]:.1f} MiB, {per_frame[s] / 1024:.1f} KiB/frame" for s in STREAMS],
    )
    codec = ds.meta.extra.get("codec", {})
    lines = _header(ds.meta, ds.root, "shard dataset")
    lines += [
        f"{len(recs)} videos extracted, {len(ds.failures)} not extracted, {len(ds.labels)} classes, "
        f"{ds.meta.extra.get('num_shards', '?')} shard files. Frame size: "
        f"{_sizes(recs)}. Codecs: `{codec.get('streams', codec)}`, options `{codec.get('opts', {})}`. "
        f"Flow-image bound {bound:g} px.",
        "",
        "## Splits",
        "",
    ]
    lines += _md_split_table(counts, _videos_by_split(items))
    lines += [
        "![videos per class and split](card/classes.png)",
        "",
        "## How it was made",
        "",
    ]
    lines += provenance(ds)
    lines += [
        "## Lengths",
        "",
        "![length histograms](card/lengths.png)",
        "",
    ]
    if durations is None:
        lines += ["(Durations come from the source manifest, which was not found at the recorded path.)", ""]
    lines += _md_partial([(r.video_id, r.partial) for r in recs if r.partial])
    lines += ["## Failures", ""] + _md_failures(groups, "failures")
    lines += [
        "![failures by stage](card/failures.png)",
        "",
        "## Flow",
        "",
        "![flow magnitude distribution](card/flow_magnitude.png)",
        "",
        "## Storage",
        "",
        "| stream | frames | KiB per frame (measured) | MiB (estimated) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s} | {total[s]} | {per_frame[s] / 1024:.1f} | {est[s]:.1f} |" for s in STREAMS]
    lines += [
        "",
        "![bytes per stream](card/bytes.png)",
        "",
        "## Samples",
        "",
        "Rows: RGB, Flow image (x, y, magnitude as R, G, B), RGBF, flow in the Middlebury colour code.",
        "",
    ]
    lines += [f"![sample {i}](card/sample_{i}.png)" for i in range(len(panel_recs))] + [""]
    return lines


def _sampling(cfg: dict[str, Any]) -> str:
    fps = f"resampled to {cfg['fps']:g} fps" if cfg.get("fps") else "every frame at the native rate"
    if cfg.get("segments"):
        return f"{fps}; {cfg['segments']} evenly spaced windows of {cfg.get('segment_frames')} frames per video"
    return f"{fps}; one window of every frame"


def provenance(ds: ShardDataset) -> list[str]:
    """The "how it was made" table of a shard card, like a model card's training details: the source version
    and dataset, the code version, the flow preset with every resolved Brox parameter, the flow-image bound,
    temporal sampling, frame size and resize policy, codecs, and any other setting the version recorded."""
    meta = ds.meta
    cfg = dict(meta.source.get("config") or {})
    flow = dict(meta.extra.get("flow_params") or cfg.get("flow") or {})
    preset = flow.pop("preset", None)
    bound = flow.pop("bound", cfg.get("bound"))
    source = meta.source.get("source_version") or meta.parent or "-"
    try:
        dataset = read_meta(meta.source["source_dir"]).source.get("dataset", "?")
    except (KeyError, OSError, ValueError, TypeError):
        dataset = "? (source manifest not at its recorded path)"
    size = cfg.get("size")
    rows = [
        ("source version", f"`{source}` (dataset {dataset}; `{meta.source.get('source_dir', '-')}`)"),
        ("code version", f"`{meta.extra.get('code_version') or '-'}`"),
        ("flow", f"Brox, preset `{preset}`" if preset else "-"),
        *[(f"flow: {k}", f"`{v}`") for k, v in sorted(flow.items())],
        ("flow-image bound", f"{bound:g} px" if isinstance(bound, int | float) else "-"),
        ("temporal sampling", _sampling(cfg) if cfg else "-"),
        ("frame size", f"{size[0]}x{size[1]} (H x W), resize `{cfg.get('resize')}`" if size else _sizes(ds.records)),
        ("codecs", f"`{cfg.get('codec', meta.extra.get('codec'))}`, options `{cfg.get('codec_opts', {})}`"),
    ]
    shown = {"flow", "bound", "fps", "segments", "segment_frames", "size", "resize", "codec", "codec_opts"}
    rows += [(k, f"`{v}`") for k, v in sorted(cfg.items()) if k not in shown]  # every other recorded setting
    return ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]


def _read_samples(recs: list, bound: float, out: Path) -> tuple[list[np.ndarray], dict[str, float], list, list]:
    """Read the sampled videos once: flow magnitudes in px (every 4th pixel of up to FLOW_SAMPLE_VIDEOS
    videos), stored bytes per frame of each stream (up to BYTES_SAMPLE_VIDEOS videos), and the sample
    panels written into ``out``. Returns (magnitudes, bytes per frame, bytes sample, panel records)."""
    mags, stored, frames = [], dict.fromkeys(STREAMS, 0), dict.fromkeys(STREAMS, 0)
    readers: dict[str, ShardReader] = {}

    def reader(r) -> ShardReader:
        return readers.setdefault(str(r.shard_path), ShardReader(r.shard_path))

    try:
        for r in _sample(recs, FLOW_SAMPLE_VIDEOS):
            if r.n_flow:  # channel 2 of the flow image: 255 * min(|w| / bound, 1)
                mags.append(reader(r).read(r.group, "flow")[..., 2].ravel()[::4].astype(np.float32) * (bound / 255))
        sample = _sample(recs, BYTES_SAMPLE_VIDEOS)
        for r in sample:
            for s in STREAMS:
                stored[s] += stored_bytes(reader(r), r.group, s)
                frames[s] += r.n_rgb if s == "rgb" else r.n_flow
        panel_recs = _panel_records(recs)
        for i, r in enumerate(panel_recs):
            plots.stream_panel(
                reader(r), r.group, out / f"sample_{i}.png", n=6, title=f"{r.video_id} ({', '.join(r.label_names)})"
            )
    finally:
        for rd in readers.values():
            rd.close()
    return mags, {s: stored[s] / max(frames[s], 1) for s in STREAMS}, sample, panel_recs


def _sizes(recs) -> str:
    sizes = collections.Counter(f"{r.height}x{r.width}" for r in recs)
    return ", ".join(f"{k} ({v})" for k, v in sizes.most_common(3)) or "-"


def _panel_records(recs) -> list:
    """Up to PANEL_VIDEOS videos of different classes (first video of each class, classes evenly spread)."""
    first: dict[tuple[int, ...], Any] = {}
    for r in recs:
        if r.n_flow >= 1:
            first.setdefault(r.labels, r)
    return _sample(list(first.values()), PANEL_VIDEOS)


# ------------------------------------------------------------------------------------------------ writing
def write_card(version: str | os.PathLike) -> Path:
    """(Re)write the card of a version; returns the path of card.md."""
    vdir = resolve(version)
    meta = read_meta(vdir)
    build: Callable[[Path], list[str]]
    if meta.kind == "shards":
        ds = load_shards(vdir)
        build = lambda out: shard_card(ds, out)  # noqa: E731
    elif meta.kind == "source":
        m = load_source(vdir)
        build = lambda out: source_card(m, out)  # noqa: E731
    else:
        raise ValueError(f"{vdir}: no card for versions of kind {meta.kind!r}")
    tmp = Path(tempfile.mkdtemp(prefix=".card-", dir=vdir))
    try:
        (tmp / CARD_DIR).mkdir()
        text = "\n".join(build(tmp / CARD_DIR))
        (tmp / CARD).write_text(text)
        old = vdir / f".{CARD_DIR}.old-{os.getpid()}"
        if (vdir / CARD_DIR).exists():
            os.rename(vdir / CARD_DIR, old)
        os.rename(tmp / CARD_DIR, vdir / CARD_DIR)
        os.replace(tmp / CARD, vdir / CARD)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return vdir / CARD


def write_card_safely(version: str | os.PathLike, log: Callable[[str], None] | None = None) -> Path | None:
    """Publishing hook: write the card; on any failure warn (stderr) and return None. The version stays."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        return write_card(version)
    except Exception as e:  # noqa: BLE001  a card must never lose a published version
        log(
            f"warning: dataset card for {version} not written ({type(e).__name__}: {e}); "
            f"regenerate with: python -m jobs.card {version}"
        )
        return None
