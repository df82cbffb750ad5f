"""Extract a source manifest version into a versioned shard dataset (RGB / Flow image / RGBF, HDF5 + Parquet).

    python -m jobs.extract --manifest DIR_OR_FILE --out DIR [--address ADDR] [--force] [--verify] [--codec NAME |
        --codec rgb=jpeg --codec flow=jpeg-planar ...] [--size H W] [--shard-size N] [--workers N]
        [--flow-param k=v ...] [--split NAME ...] [--bound PX] [--min-frames N] [--static-threshold PX]

The last line on stdout is the output version id. Design (docs/extract.md): videos are assigned to shards
deterministically (sorted ids chunked by --shard-size); one Ray task per shard decodes, computes flow and
writes its own shard file atomically into ``<out>/.work-<id>/shards/``. The id is derived from the source
version, the parameters and the code version, so a rerun finds the same work directory, skips the shards
already there and only then publishes ``<out>/<id>/`` (manifests.shards.publish_shards).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from jobs.report.card import write_card_safely
from manifests.shards import FailureRecord, ShardRecord, publish_shards
from manifests.source import SourceManifest, load_source
from manifests.versioning import META_FILE, content_id
from pipeline.flow import BroxParams
from pipeline.storage import CODECS, DEFAULT_CODEC, STREAMS, ShardError, codec_spec
from manifests.extraction import ExtractConfig, ShardPlan, VideoTask, build_shard, plan_shards, read_finished

CODE_VERSION = "extract-1"  # bump when the output changes in a way the source files below do not show
CODE_FILES = ("pipeline/decode.py", "pipeline/flow.py", "pipeline/flowimage.py", "pipeline/rgbf.py",
              "pipeline/storage.py", "manifests/extraction.py")
REPO = Path(__file__).resolve().parents[1]
MAX_RETRIES = 3  # Ray retries of a shard task after a worker / node crash or a transient I/O error


def code_version() -> str:
    """CODE_VERSION plus a hash of the code that produces the shard contents."""
    h = hashlib.sha256()
    for f in CODE_FILES:
        h.update((REPO / f).read_bytes())
    return f"{CODE_VERSION}+{h.hexdigest()[:12]}"


def select_videos(source: SourceManifest, cfg: ExtractConfig) -> tuple[list[VideoTask], list[FailureRecord], dict]:
    """Rows to extract (status ok, in one of cfg.splits if given), source failures, and the records by id."""
    tasks, failures, rows = [], [], {}
    for r in source.videos:
        if cfg.splits and not any(r.splits.get(s) in ("train", "test") for s in cfg.splits):
            continue
        rows[r.video_id] = r
        if r.ok:
            tasks.append(VideoTask(r.video_id, str(source.path(r)), r.rel_path, r.sha256, r.size_bytes))
        else:
            failures.append(FailureRecord(r.video_id, "source", f"{r.status}: {r.error}", r.rel_path, ""))
    return tasks, failures, rows


def version_id(source: SourceManifest, cfg: ExtractConfig, code: str) -> str:
    return content_id(["shards", source.meta.version_id, cfg.to_json(), code])


# -------------------------------------------------------------------------------------------------- Ray
def _init_ray(address: str | None, workers: int | None):
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": always a new cluster of our own, never one another process left running on this machine
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


def _resources(ray, workers: int | None) -> tuple[dict[str, Any], str, int]:
    """Task options, flow device and concurrency from what the cluster has: never ask for a GPU it lacks."""
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    if gpus >= 1:
        opts, device, slots = {"num_cpus": 1, "num_gpus": 1}, "cuda", int(gpus)
    else:
        opts, device, slots = {"num_cpus": 1, "num_gpus": 0}, "cpu", max(1, int(cpus))
    return opts, device, max(1, workers or slots)


def run_shards(todo: list[ShardPlan], cfg: ExtractConfig, shard_dir: Path, ray, opts: dict, device: str,
               concurrency: int, bar) -> tuple[list[dict], list[tuple[ShardPlan, str]]]:
    """One task per shard with at most ``concurrency + 1`` in flight (ray.wait), so the driver holds few
    ObjectRefs and no frames. Returns (summaries, [(plan, error)] of shards that failed for good)."""
    remote = ray.remote(build_shard).options(**opts, max_retries=MAX_RETRIES,
                                             retry_exceptions=[OSError, ShardError])
    cfg_ref = ray.put(cfg)
    pending: dict[Any, ShardPlan] = {}
    plans = iter(todo)
    results, errors = [], []
    more = True
    while more or pending:
        while more and len(pending) < concurrency + 1:
            plan = next(plans, None)
            if plan is None:
                more = False
                break
            pending[remote.remote(plan, cfg_ref, str(shard_dir), device)] = plan
        if not pending:
            break
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            plan = pending.pop(ref)
            try:
                summary = ray.get(ref)
            except ray.exceptions.RayError as e:  # retries exhausted: the shard stays undone, rerun redoes it
                errors.append((plan, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
                continue
            results.append(summary)
            bar.update(len(plan.videos))
            bar.set_postfix(ok=sum(len(s["videos"]) for s in results),
                            failed=sum(len(s["failures"]) for s in results), refresh=False)
    return results, errors


# ------------------------------------------------------------------------------------------------ driver
def _records(summaries: list[dict], rows: dict) -> tuple[list[ShardRecord], list[FailureRecord]]:
    """Manifest rows from shard summaries and the source records (labels, splits, source path and hash)."""
    records, failures = [], []
    for s in summaries:
        for v in s["videos"]:
            r = rows[v["video_id"]]
            records.append(ShardRecord(v["video_id"], Path(s["path"]), v["group"], v["n_rgb"], v["n_flow"],
                                       r.labels, r.label_names, dict(r.splits), v["height"], v["width"],
                                       v["checksums"], s["sha256"], r.rel_path, r.sha256 or ""))
        for f in s["failures"]:
            failures.append(FailureRecord(f["video_id"], f["stage"], f["error"], rows[f["video_id"]].rel_path,
                                          s["name"]))
    return records, failures


@dataclasses.dataclass(frozen=True)
class RunSummary:
    version_id: str
    path: Path
    ok: int  # videos extracted by this run
    failed: int  # videos that failed the bad-input policy in this run
    skipped: int  # videos in shards finished by an earlier run
    source_failures: int  # rows of the source manifest whose status is not ok
    seconds: float  # whole run
    ray_init_s: float = 0.0  # ray.init (local cluster start or connect)
    shards_s: float = 0.0  # first task submitted -> last result
    task_s: float = 0.0  # sum over this run's shard tasks of their time inside build_shard
    task_cpu_s: float = 0.0  # and of their process CPU time


def extract(manifest: str | os.PathLike, out: str | os.PathLike, cfg: ExtractConfig, *, address: str | None = None,
            force: bool = False, workers: int | None = None, verify: bool = False, log=print) -> RunSummary:
    """Run the job; returns its summary. Raises RuntimeError if some shards failed for good."""
    from tqdm import tqdm

    t0 = time.time()
    source = load_source(manifest)
    code = code_version()
    vid = version_id(source, cfg, code)
    out = Path(out)
    final, work = out / vid, out / f".work-{vid}"
    if (final / META_FILE).exists() and not force:
        log(f"extract: version {vid} already published at {final} (--force redoes it)")
        return RunSummary(vid, final, 0, 0, 0, 0, time.time() - t0)
    tasks, source_failures, rows = select_videos(source, cfg)
    plans = list(plan_shards(tasks, cfg.shard_size))
    shard_dir = work / "shards"
    if force and work.exists():
        shutil.rmtree(work)
    shard_dir.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps({"source": source.meta.version_id, "code_version": code,
                                                  "config": json.loads(cfg.to_json())}, indent=2))
    for stale in shard_dir.glob("*.tmp"):  # left by a killed worker; never renamed, never in a manifest
        stale.unlink(missing_ok=True)
    done, todo = [], []
    for plan in plans:
        path = shard_dir / plan.name
        if path.exists():
            try:
                done.append(read_finished(path, plan, full=verify))
                continue
            except (ShardError, ValueError, OSError, KeyError) as e:
                log(f"extract: redoing {path}: {e}")
                path.unlink()
        todo.append(plan)
    skipped = sum(len(s["assigned"]) for s in done)
    t_init = time.time()
    ray = _init_ray(address, workers)
    t_shards = time.time()
    try:
        opts, device, concurrency = _resources(ray, workers)
        log(f"extract: {len(tasks)} videos in {len(plans)} shards ({len(done)} done earlier), "
            f"{concurrency} tasks at a time, flow on {device}, task resources {opts}")
        bar = tqdm(total=len(tasks), initial=skipped, unit="video", desc="extract", file=sys.stderr,
                   mininterval=1.0, dynamic_ncols=True)
        new, errors = run_shards(todo, cfg, shard_dir, ray, opts, device, concurrency, bar)
        t_done = time.time()
        bar.close()
    finally:
        ray.shutdown()
    ok, failed = sum(len(s["videos"]) for s in new), sum(len(s["failures"]) for s in new)
    secs = time.time() - t0
    log(f"extract: ok {ok}, failed {failed}, skipped {skipped} (in shards done earlier), "
        f"source failures {len(source_failures)}, {secs:.1f} s, {(ok + failed) / max(secs, 1e-9):.2f} videos/s")
    if errors:
        for plan, err in errors:
            log(f"extract: shard {plan.name} ({len(plan.videos)} videos) failed after {MAX_RETRIES} retries: {err}")
        raise RuntimeError(f"{len(errors)} shards failed; nothing published. Rerun to retry them "
                           f"(finished shards are kept in {work})")
    records, failures = _records(done + new, rows)
    flow_params = {**dataclasses.asdict(BroxParams(**cfg.flow_params)), "bound": cfg.bound}
    meta_source = {"source_version": source.meta.version_id, "source_dir": str(source.dir),
                   "config": json.loads(cfg.to_json())}
    aside = None
    if force and final.exists():  # versions are immutable: move the old one aside, publish, then drop it
        aside = out / f".{vid}.replaced-{os.getpid()}"
        os.rename(final, aside)
    publish_shards(out, vid, [shard_dir / p.name for p in plans], records, source_failures + failures,
                   source.labels, source=meta_source, parent=source.meta.version_id,
                   codec={"streams": cfg.codec, "opts": cfg.codec_opts}, flow_params=flow_params,
                   code_version=code)
    if aside:
        shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    log(f"extract: published {final} ({len(records)} videos, {len(source_failures) + len(failures)} failures)")
    write_card_safely(final, log)  # card.md + figures next to the version; a failure only warns
    return RunSummary(vid, final, ok, failed, skipped, len(source_failures), secs, t_shards - t_init,
                      t_done - t_shards, sum(s["seconds"] for s in new), sum(s["cpu_s"] for s in new))


# --------------------------------------------------------------------------------------------------- CLI
def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _kv(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what}: expected key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def config_from_args(a: argparse.Namespace) -> ExtractConfig:
    codec = dict(DEFAULT_CODEC)
    for c in a.codec or []:
        codec.update({s: c for s in STREAMS} if "=" not in c else _kv([c], "--codec"))
    codec = codec_spec(codec)
    flow_params = _kv(a.flow_param or [], "--flow-param")
    try:
        BroxParams(**flow_params)  # fail early on a bad parameter
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--flow-param: {e}") from None
    codec_opts = {k: v for k, v in {"level": a.level, "quality": a.quality, "chunk_frames": a.chunk_frames}.items()
                  if v is not None}
    return ExtractConfig(size=tuple(a.size), codec=codec, codec_opts=codec_opts, shard_size=a.shard_size,
                         flow_params=flow_params, bound=a.bound, min_frames=a.min_frames,
                         static_threshold=a.static_threshold, splits=tuple(sorted(set(a.split or []))))


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    p = argparse.ArgumentParser(prog="python -m jobs.extract", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="source manifest (anything versioning.resolve accepts)")
    p.add_argument("--out", required=True, help="root directory of shard dataset versions")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    p.add_argument("--force", action="store_true", help="redo every shard even if done or published")
    p.add_argument("--verify", action="store_true", help="re-check all checksums of shards done earlier")
    p.add_argument("--codec", action="append", metavar="NAME|STREAM=NAME",
                   help=f"codec for all streams or one stream; codecs {sorted(CODECS)}; default {DEFAULT_CODEC}")
    p.add_argument("--level", type=int, default=None, help="gzip level")
    p.add_argument("--quality", type=int, default=None, help="JPEG quality")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per HDF5 chunk (array codecs)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=list(d.size))
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="videos per shard")
    p.add_argument("--workers", type=int, default=None, help="shard tasks at a time (and CPUs of a local Ray)")
    p.add_argument("--flow-param", action="append", metavar="K=V", help="Brox parameter (pipeline.flow.BroxParams)")
    p.add_argument("--bound", type=float, default=d.bound, help="flow image bound in px")
    p.add_argument("--split", action="append", metavar="NAME", help="only videos in train/test of this split")
    p.add_argument("--min-frames", type=int, default=d.min_frames)
    p.add_argument("--static-threshold", type=float, default=d.static_threshold,
                   help="max |flow| in px below which a video counts as static (failure)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg = config_from_args(a)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  stdout carries only the id
    try:
        vid = extract(a.manifest, a.out, cfg, address=a.address, force=a.force, workers=a.workers,
                      verify=a.verify, log=log).version_id
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        log(f"extract: error: {e}")
        return 1
    print(vid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
