"""Export a shard dataset version for mmaction2: rawframes (frame folders) or videos, file lists, label map, configs.

    python -m jobs.export --manifest SHARDS --format rawframes|videos --out DIR [--split NAME] [--streams rgb,flow]
        [--layout auto|ucf101|hmdb51|folder|fcvid|ids|flat] [--val-fraction F] [--val-group-rule R]
        [--val-seed S] [--clip-len T] [--crop S] [--jpeg-quality Q] [--video-codec C] [--workers N]
        [--chunk K] [--address ADDR]

Layouts, list names and formats: manifests/readers/rawframes.py, manifests/readers/videos.py and
docs/ecosystem.md; the configs: manifests/readers/mmconfig.py. Videos are exported by Ray tasks of
``--chunk`` videos (grouped by shard file), at most ``workers + 1`` in flight; ``--workers 0`` or ``1``
runs in-process without Ray. Each video folder (or video file) appears atomically, so a rerun into the
same DIR (same version and options) skips finished ones. Videos that failed extraction (failures.parquet) are not
exported and are counted in the summary. Exit status: 0, 1 if some video could not be exported (rerun to
retry), 2 on bad input (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from jobs.cli import checks, cluster
from manifests.readers.rawframes import (
    LAYOUT_CHOICES,
    ExportError,
    ExportOptions,
    export_chunk,
    make_plan,
    prepare_dir,
    write_configs,
    write_lists,
)
from manifests.shards import load_shards
from pipeline.videofile import DEFAULT_CODEC, VIDEO_CODECS

TASK_OPTIONS = {"num_cpus": 1, "max_retries": 2}  # Ray resources live in jobs/


def _chunks(records: list, size: int) -> list[list]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def run_local(chunks: list[list], out: Path, opts: ExportOptions, bar, names: dict[str, str]) -> list[dict]:
    results = []
    for c in chunks:
        res = export_chunk(c, str(out), opts, {r.video_id: names[r.video_id] for r in c})
        results += res
        bar.update(len(res))
    return results


def run_ray(
    chunks: list[list],
    out: Path,
    opts: ExportOptions,
    bar,
    names: dict[str, str],
    workers: int | None,
    address: str | None,
) -> list[dict]:
    """One task per chunk, at most ``concurrency + 1`` in flight (jobs.cli.cluster.bounded); results are small
    dicts. A chunk whose task failed for good counts its videos as failed."""
    with cluster.session(address, workers) as ray:
        concurrency = max(1, workers or int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(**TASK_OPTIONS)(export_chunk)

        def submit(c: list):
            return task.remote(c, str(out), opts, {r.video_id: names[r.video_id] for r in c})

        results: list[dict] = []
        for c, res in cluster.bounded(ray, submit, chunks, concurrency + 1):
            if isinstance(res, ray.exceptions.RayError):  # worker lost after retries
                res = [{"video_id": r.video_id, "files": 0, "error": cluster.error_line(res)} for r in c]
            results += res
            bar.update(len(res))
        return results


def export(
    manifest: str,
    out: str | os.PathLike,
    opts_kw: dict,
    *,
    workers: int | None = 0,
    chunk: int = 16,
    address: str | None = None,
    clip_len: int = 16,
    crop: int | None = None,
    log=print,
) -> dict:
    """Run the export; returns the summary dict. Raises ExportError on bad input (before any work).
    ``clip_len`` and ``crop`` (default: 112, or the shortest frame side when smaller) go into the configs."""
    t0 = time.time()
    ds = load_shards(manifest)
    plan, opts = make_plan(ds, ExportOptions(version_id=ds.meta.version_id, **opts_kw))
    crop = check_clip(ds, clip_len, crop)
    out = Path(out)
    prepare_dir(out, opts)
    root = out / plan.frames  # the frame root (data_prefix); out itself for the flat layout
    root.mkdir(exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a killed run; never renamed into place
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    records, names = plan.records, plan.names  # video id -> folder under the frame root
    todo = [r for r in records if not (root / plan.entry(r)).exists()]
    skipped = len(records) - len(todo)
    bar = tqdm(
        total=len(records),
        initial=skipped,
        unit="video",
        desc="export",
        file=sys.stderr,
        mininterval=1.0,
        dynamic_ncols=True,
    )
    chunks = _chunks(todo, max(1, chunk))
    use_ray = bool(todo) and workers not in (0, 1)  # None: Ray with every CPU of the machine or cluster
    if use_ray:
        results = run_ray(chunks, root, opts, bar, names, workers, address)
    else:
        results = run_local(chunks, root, opts, bar, names)
    bar.close()
    errors = [r for r in results if r["error"]]
    lists = write_lists(out, plan, opts, ds.labels)
    configs = write_configs(out, plan, opts, ds, clip_len, crop)
    summary = {
        "version_id": ds.meta.version_id,
        "out": str(out),
        "exported": len(results) - len(errors),
        "skipped_done": skipped,
        "errors": len(errors),
        "extraction_failures": len(ds.failures),
        "files": sum(r["files"] for r in results),
        "format": plan.format.name,
        "layout": plan.layout.name,
        "lists": [p.name for p in lists],
        "configs": [p.name for p in configs],
        "seconds": round(time.time() - t0, 2),
    }
    for e in errors[:20]:
        log(f"export: {e['video_id']}: {e['error']}")
    log(
        f"export: {summary['exported']} videos exported, {skipped} done earlier, {len(errors)} failed, "
        f"{len(ds.failures)} not extracted (failures.parquet, skipped), {summary['files']} files, "
        f"{len(lists)} file lists, {len(configs)} configs ({plan.format.name}, layout {plan.layout.name}), "
        f"{summary['seconds']} s"
    )
    return summary


def check_clip(ds, clip_len: int, crop: int | None) -> int:
    """The configs' crop (default min(112, shortest frame side)); ExportError when it or clip_len cannot work."""
    if clip_len < 1:
        raise ExportError(f"--clip-len: must be >= 1, got {clip_len}")
    short = min((min(r.height, r.width) for r in ds.records), default=0)
    crop = min(112, short) if crop is None else crop
    if not 1 <= crop <= short:
        smallest = min(ds.records, key=lambda r: min(r.height, r.width))
        raise ExportError(
            f"--crop: {crop} does not fit the frames ({smallest.height}x{smallest.width}, video {smallest.video_id})"
        )
    return crop


def build_parser() -> argparse.ArgumentParser:
    p = checks.parser(prog="python -m jobs.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="shard dataset version (dir, LATEST file or root)")
    p.add_argument("--format", default="rawframes", help="rawframes (JPEG folders) or videos (one file per video)")
    p.add_argument("--out", required=True, type=Path, help="export directory (empty, or an earlier export)")
    p.add_argument("--split", default=None, help="only videos in train/test of this split (default: all)")
    p.add_argument("--streams", default=None, help="comma-separated: rgb, flow (default: rgb,flow; videos: rgb)")
    p.add_argument("--layout", default="auto", help=f"one of {', '.join(LAYOUT_CHOICES)} (default: the dataset's)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out part of each split's training videos")
    p.add_argument("--val-group-rule", default="auto", help="auto | none | ucf101 (manifests.readers.validation)")
    p.add_argument("--val-seed", type=int, default=0)
    p.add_argument("--clip-len", type=int, default=16, help="frames per clip in the mmaction2 configs")
    p.add_argument("--crop", type=int, default=None, help="crop size in the configs (default min(112, frame side))")
    p.add_argument(
        "--jpeg-quality", type=int, default=None, help="rawframes JPEG quality 1-100 (default 95, as OpenCV)"
    )
    p.add_argument(
        "--video-codec",
        default=None,
        help=f"videos: one of {', '.join(VIDEO_CODECS)} (default {DEFAULT_CODEC}, lossless)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray tasks at a time (and CPUs of a local Ray; default: all CPUs of the machine or "
        "cluster); 0 or 1: in-process, no Ray",
    )
    p.add_argument("--chunk", type=int, default=16, help="videos per Ray task")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="existing Ray cluster")
    return p


@checks.cli("export")
def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    checks.out_dir("--out", a.out)
    if a.workers is None or a.workers > 1:
        checks.ray_address("--address", a.address)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    streams = None if a.streams is None else tuple(s.strip() for s in a.streams.split(",") if s.strip())
    for name, value in (("--workers", a.workers), ("--chunk", a.chunk)):
        if value is not None and value < (0 if name == "--workers" else 1):
            log(f"export: error: {name}: must be {'>= 0' if name == '--workers' else '>= 1'}, got {value}")
            return 2
    try:
        summary = export(
            a.manifest,
            a.out,
            {
                "format": a.format,
                "streams": streams,
                "jpeg_quality": a.jpeg_quality,
                "split": a.split,
                "layout": a.layout,
                "val_fraction": a.val_fraction,
                "val_group_rule": a.val_group_rule,
                "val_seed": a.val_seed,
                "video_codec": a.video_codec,
            },
            workers=a.workers,
            chunk=a.chunk,
            address=a.address,
            clip_len=a.clip_len,
            crop=a.crop,
            log=log,
        )
    except ExportError as e:
        log(f"export: error: {e}")
        return 2
    except (FileNotFoundError, ValueError) as e:  # no such version, or not a shard version
        log(f"export: error: --manifest: {e}")
        return 2
    print(summary["out"])
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
