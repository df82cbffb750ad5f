"""Extract a source manifest version into a versioned shard dataset (RGB / Flow image / RGBF, HDF5 + Parquet).

    python -m jobs.extract --manifest DIR_OR_FILE --out DIR [--address ADDR] [--force] [--verify] [--codec NAME |
        --codec rgb=jpeg --codec flow=jpeg-planar ...] [--size H W] [--shard-size N] [--workers N]
        [--flow-preset NAME] [--flow-param k=v ...] [--split NAME ...] [--bound PX] [--min-frames N]
        [--static-threshold PX] [--resize {stretch,short-side-crop}] [--max-failure-rate F]
        [--decode-timeout S] [--retry-failed] [--fps F] [--segments K --segment-frames L]
        [--mode {auto,tasks,pipelined}] [--flow-workers N]

The last line on stdout is the output version id. Design (docs/extract.md): videos are assigned to shards
deterministically (sorted ids chunked by --shard-size); one Ray task per shard decodes, computes flow and
writes its own shard file atomically into ``<out>/.work-<id>/shards/``. The id is derived from the source
version, the parameters and the code version, so a rerun finds the same work directory, skips the shards
already there and only then publishes ``<out>/<id>/`` (manifests.shards.publish_shards). Each video decodes
in a contained child process: a decoder crash or hang costs that video (a failure row, stage "decode"),
and ``<out>/poison.jsonl`` remembers it so that reruns skip it unless --retry-failed (manifests.poison).

``--mode pipelined`` (the default on a cluster with GPUs) moves the Brox solves out of the shard tasks into a
pool of flow actors (one per GPU, or per CPU core): shard tasks decode and write on CPU workers while the
actors solve pairs of several videos per batch, with at most two requests in flight per task
(manifests.flowpool). The shards are the same either way: the mode is not part of the version id.

Publishing guards: nothing is published when no video was extracted, or when more than
``--max-failure-rate`` of the videos this version attempted failed (exit 1, the work directory is kept so a
rerun, e.g. with a higher rate after reading the reasons, redoes nothing); a shard task that fails for good
(an unexpected exception, retried by Ray) fails the job. Bad arguments exit 2 before Ray starts (jobs.cli).
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

from jobs.cli import checks, reaper
from jobs.report.card import write_card_safely
from manifests import poison
from manifests.shards import FailureRecord, ShardRecord, publish_shards
from manifests.source import SourceManifest, load_source
from manifests.versioning import META_FILE, content_id
from pipeline import sampling
from pipeline.decode import RESIZE_MODES, decode_timeout
from pipeline.flow import DEFAULT_PRESET, PRESETS, brox_params
from pipeline.storage import CODECS, DEFAULT_CODEC, STREAMS, ShardError, codec_spec
from manifests.extraction import ExtractConfig, ShardPlan, VideoTask, build_shard, plan_shards, read_finished
from manifests import flowpool

CODE_VERSION = "extract-2"  # bump when the output changes; extract-2: flow images with an exact zero (255 levels)
CODE_FILES = ("pipeline/decode.py", "pipeline/sampling.py", "pipeline/flow.py", "pipeline/sornative.py",
              "pipeline/_sor.c", "pipeline/flowimage.py", "pipeline/rgbf.py", "pipeline/storage.py",
              "manifests/extraction.py")
REPO = Path(__file__).resolve().parents[1]
MAX_RETRIES = 3  # Ray retries of a shard task after a worker / node crash, an I/O error or an unexpected one
# Publishing guard: more than half of the attempted videos failing is a systemic problem (a missing codec, a
# wrong mount, --min-frames above the dataset's lengths), not a dataset's normal share of broken files; the
# tests' fixture (4 bad of 12) and real datasets (a few % at most) stay under it. Lower it for a strict run.
MAX_FAILURE_RATE = 0.5
MODES = ("auto", "tasks", "pipelined")
# CPU declared by a shard task of the pipelined mode on a cluster without GPUs: decoding, flow images, RGBF
# and the codecs take ~6 ms of CPU per 128x171 frame against ~94 ms per Brox pair (docs/benchmarks/scale.md),
# so each core holds one flow actor (1 - TASK_CPU) and one shard task. With GPUs a shard task takes 1 CPU.
TASK_CPU = 0.25
IN_FLIGHT = 2  # flow requests (groups of 64 pairs) a pipelined shard task keeps outstanding


class PublishRefused(RuntimeError):
    """The run finished but the version must not be published (no ok video, too many failures)."""


def code_version() -> str:
    """CODE_VERSION plus a hash of the code that produces the shard contents."""
    h = hashlib.sha256()
    for f in CODE_FILES:
        h.update((REPO / f).read_bytes())
    return f"{CODE_VERSION}+{h.hexdigest()[:12]}"


def select_videos(source: SourceManifest, cfg: ExtractConfig, timeout: float | None = None,
                  known: dict[str, dict] | None = None,
                  retry_failed: bool = False) -> tuple[list[VideoTask], list[FailureRecord], dict]:
    """Rows to extract (status ok, in one of cfg.splits if given), source failures, and the records by id.

    Each task's decode time limit is ``timeout`` or, if None, ``pipeline.decode.decode_timeout`` of the row's
    header facts; a task whose file has a poison record in ``known`` that ``poison.skip`` skips carries it."""
    tasks, failures, rows = [], [], {}
    for r in source.videos:
        if cfg.splits and not any(r.splits.get(s) in ("train", "test") for s in cfg.splits):
            continue
        rows[r.video_id] = r
        if r.ok:
            limit = timeout or decode_timeout(r.duration_s, r.fps, r.width, r.height)
            rec = (known or {}).get(r.sha256 or "")
            skip = rec if rec is not None and poison.skip(rec, limit, retry_failed) else None
            tasks.append(VideoTask(r.video_id, str(source.path(r)), r.rel_path, r.sha256, r.size_bytes, limit, skip,
                                   r.num_frames, r.fps, r.duration_s))
        else:
            failures.append(FailureRecord(r.video_id, "source", f"{r.status}: {r.error}", r.rel_path, "",
                                          dict(r.splits)))
    return tasks, failures, rows


def version_id(source: SourceManifest, cfg: ExtractConfig, code: str) -> str:
    return content_id(["shards", source.meta.version_id, cfg.to_json(), code])


# -------------------------------------------------------------------------------------------------- Ray
def _init_ray(address: str | None, workers: int | None):
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        connect(ray, address)
    else:
        # "local": always a new cluster of our own, never one another process left running on this machine
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        reaper.watch()  # the cluster goes when this driver goes, even after kill -9
    return ray


def connect(ray, address: str, **kwargs: Any) -> None:
    """``ray.init(address)`` where a refusal becomes one line that says how to fix it (token auth)."""
    try:
        ray.init(address=address, log_to_driver=False, **kwargs)
    except (ConnectionError, ray.exceptions.AuthenticationError) as e:
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise checks.UsageError(
            f"--address {address}: the cluster refused the connection ({checks.one_line(e)}); clusters started "
            f"by `ray start --head` use token authentication: set RAY_AUTH_MODE=token (now {mode}) and give the "
            f"cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN), see README") from None


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a run uses the cluster: ``mode`` tasks (each shard task solves its own flow) or pipelined (shard
    tasks with ``task_opts`` + ``flow_workers`` flow actors with ``actor_opts``)."""
    mode: str
    task_opts: dict[str, Any]
    device: str
    concurrency: int  # shard tasks at a time
    flow_workers: int = 0
    actor_opts: dict[str, Any] = dataclasses.field(default_factory=dict)


def layout(res: dict[str, float], mode: str = "auto", workers: int | None = None,
           flow_workers: int | None = None) -> Layout:
    """The run's layout from the cluster's resources: never asks for a GPU the cluster lacks. ``auto``:
    pipelined when the cluster has GPUs, else tasks (on CPU the two are measured side by side in
    docs/benchmarks/pipelined.md). ``workers``: shard tasks at a time; ``flow_workers``: flow actors."""
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    if mode == "auto":
        mode = "pipelined" if gpus >= 1 else "tasks"
    if mode == "tasks":
        if gpus >= 1:
            return Layout("tasks", {"num_cpus": 1, "num_gpus": 1}, "cuda", max(1, workers or int(gpus)))
        return Layout("tasks", {"num_cpus": 1, "num_gpus": 0}, "cpu", max(1, workers or int(cpus)))
    if gpus >= 1:
        n = flow_workers or int(gpus)
        return Layout("pipelined", {"num_cpus": 1, "num_gpus": 0}, "cuda",
                      max(1, workers or int(cpus) - n), n, {"num_cpus": 1, "num_gpus": 1})
    n = flow_workers or max(1, int(cpus))
    return Layout("pipelined", {"num_cpus": TASK_CPU, "num_gpus": 0}, "cpu", max(1, workers or int(cpus)), n,
                  {"num_cpus": 1 - TASK_CPU, "num_gpus": 0})


def run_shards(todo: list[ShardPlan], cfg: ExtractConfig, shard_dir: Path, ray, opts: dict, device: str,
               concurrency: int, bar, contained: bool = True,
               flow=None) -> tuple[list[dict], list[tuple[ShardPlan, str]]]:
    """One task per shard with at most ``concurrency + 1`` in flight (ray.wait), so the driver holds few
    ObjectRefs and no frames. Returns (summaries, [(plan, error)] of shards that failed for good)."""
    # retry_exceptions=True: an unexpected exception in shard code is retried like a crash, then fails the job
    remote = ray.remote(build_shard).options(**opts, max_retries=MAX_RETRIES, retry_exceptions=True)
    cfg_ref = ray.put(cfg)
    extra = {} if contained else {"contained": False}  # benchmarks only
    if flow is not None:  # the pipelined mode: a flow service (manifests.flowpool.RemoteFlow) solves the pairs
        extra["flow"] = flow
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
            pending[remote.remote(plan, cfg_ref, str(shard_dir), device, **extra)] = plan
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
            bar.set_postfix(ok=sum(len(s["videos"]) for s in results),
                            failed=sum(len(s["failures"]) for s in results), refresh=False)
            bar.update(len(plan.videos))  # renders the postfix just set
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
                                       v["checksums"], s["sha256"], r.rel_path, r.sha256 or "",
                                       tuple(tuple(w) for w in v.get("windows", [(0, v["n_rgb"])])),
                                       v.get("fps")))
        for f in s["failures"]:
            failures.append(FailureRecord(f["video_id"], f["stage"], f["error"], rows[f["video_id"]].rel_path,
                                          s["name"], dict(rows[f["video_id"]].splits)))
    return records, failures


def stale_poison(summary: dict, tasks: dict[str, VideoTask], retry_failed: bool) -> bool:
    """Whether a finished shard holds a decoder crash / timeout that this run would retry (so it is redone):
    any with --retry-failed, a timeout whose limit was smaller than this run's."""
    return any(f.get("poison") and not poison.skip(f["poison"], tasks[f["video_id"]].timeout_s or 0, retry_failed)
               for f in summary["failures"] if f["video_id"] in tasks)


def _published_stale(final: Path, plan: ShardPlan, tasks: dict[str, VideoTask], retry_failed: bool) -> bool:
    try:
        return stale_poison(read_finished(final / "shards" / plan.name, plan), tasks, retry_failed)
    except (ShardError, ValueError, OSError, KeyError):  # not as planned: --force is the way to redo it
        return False


def record_poison(out: Path, summaries: list[dict], rows: dict, known: dict[str, dict]) -> int:
    """Append this run's new decoder crashes / timeouts (and known ones that now decoded) to the poison log."""
    recs = []
    for s in summaries:
        for f in s["failures"]:
            p, r = f.get("poison"), rows[f["video_id"]]
            if p and not p.get("cached") and r.sha256:
                recs.append(poison.record(r.sha256, p["kind"], p["reason"], timeout_s=p["timeout_s"],
                                          size_bytes=r.size_bytes, path=r.rel_path, job="extract"))
        for v in s["videos"]:
            r = rows[v["video_id"]]
            if r.sha256 in known:
                recs.append(poison.record(r.sha256, "cleared", "decoded", size_bytes=r.size_bytes, path=r.rel_path,
                                          job="extract"))
    return poison.append(out, recs)


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
    mode: str = "tasks"  # the layout this run used (Layout.mode)
    flow_stats: tuple = ()  # pipelined: each flow actor's counters (manifests.flowpool.FlowBatcher.stats)


def failure_report(failures: list[dict], top: int = 5) -> list[str]:
    """The most common failure reasons as lines ``N x stage: reason`` (file names stripped to group them)."""
    from collections import Counter

    def reason(f: dict) -> str:
        err = f["error"].split(": ", 1)[1] if ": " in f["error"] else f["error"]  # drop the leading path
        return f"{f['stage']}: {err[:160]}"
    return [f"{n} x {r}" for r, n in Counter(reason(f) for f in failures).most_common(top)]


def check_publishable(summaries: list[dict], max_failure_rate: float, work: Path) -> None:
    """PublishRefused when no video was extracted or the failure rate over attempted videos is too high."""
    ok = sum(len(s["videos"]) for s in summaries)
    fails = [f for s in summaries for f in s["failures"]]
    attempted = ok + len(fails)
    rate = len(fails) / attempted if attempted else 1.0
    if ok and rate <= max_failure_rate:
        return
    why = ("no video was extracted" if not ok else
           f"{len(fails)} of {attempted} videos failed ({rate:.0%} > --max-failure-rate {max_failure_rate:g})")
    top = "; ".join(failure_report(fails)) or "no videos selected (check --split and the source manifest)"
    raise PublishRefused(f"{why}; nothing published, finished shards kept in {work} (a rerun redoes none of "
                         f"them). Top reasons: {top}")


def extract(manifest: str | os.PathLike, out: str | os.PathLike, cfg: ExtractConfig, *, address: str | None = None,
            force: bool = False, workers: int | None = None, verify: bool = False, log=print,
            max_failure_rate: float = MAX_FAILURE_RATE, decode_timeout: float | None = None,
            retry_failed: bool = False, contained: bool = True, mode: str = "auto",
            flow_workers: int | None = None) -> RunSummary:
    """Run the job; returns its summary. Raises RuntimeError if some shards failed for good, PublishRefused
    (a RuntimeError) when the result must not be published (``check_publishable``).

    ``decode_timeout``: seconds per video decode (default per video, pipeline.decode.decode_timeout);
    ``retry_failed``: decode again videos whose decoder crashed / timed out in an earlier run (their shards
    are redone, also in a published version, which is then replaced); ``contained=False`` decodes in the
    task's own process (benchmarks only); ``mode`` / ``flow_workers``: see ``layout``."""
    from tqdm import tqdm

    t0 = time.time()
    source = load_source(manifest)
    code = code_version()
    vid = version_id(source, cfg, code)
    out = Path(out)
    final, work = out / vid, out / f".work-{vid}"
    known = poison.load(out)
    tasks, source_failures, rows = select_videos(source, cfg, decode_timeout, known, retry_failed)
    by_id = {t.video_id: t for t in tasks}
    replace = False
    if (final / META_FILE).exists() and not force:
        # only with a poison log or --retry-failed can a published shard hold something to retry
        redo = [p for p in plan_shards(tasks, cfg.shard_size)
                if (retry_failed or known) and _published_stale(final, p, by_id, retry_failed)]
        if not redo:
            log(f"extract: version {vid} already published at {final} (--force redoes it)")
            return RunSummary(vid, final, 0, 0, 0, 0, time.time() - t0)
        log(f"extract: {len(redo)} shards of published {vid} hold decoder crashes / timeouts to retry")
        replace = True
    if not tasks:
        where = f" in splits {','.join(cfg.splits)}" if cfg.splits else ""
        raise PublishRefused(f"{source.dir}: no video with status ok{where} to extract; nothing published")
    plans = list(plan_shards(tasks, cfg.shard_size))
    shard_dir = work / "shards"
    t_init = time.time()
    ray = _init_ray(address, workers)  # before the work dir exists: a cluster that refuses us leaves nothing
    try:
        if replace:  # the published shards become the work dir's finished ones (hard links)
            shard_dir.mkdir(parents=True, exist_ok=True)
            for p in plans:
                if not (shard_dir / p.name).exists() and (final / "shards" / p.name).exists():
                    os.link(final / "shards" / p.name, shard_dir / p.name)
        done, todo = _prepare_work(work, shard_dir, plans, source, cfg, code, force, verify, log,
                                   by_id, retry_failed)
        skipped = sum(len(s["assigned"]) for s in done)
        t_shards = time.time()
        lay = layout(ray.cluster_resources(), mode, workers, flow_workers)
        pool, flow, stats = [], None, []
        if lay.mode == "pipelined" and todo:
            pool = flowpool.start_pool(ray, lay.flow_workers, lay.actor_opts, cfg.flow_params, lay.device)
            flow = flowpool.RemoteFlow(pool, max_batch=8, in_flight=IN_FLIGHT)
        log(f"extract: {len(tasks)} videos in {len(plans)} shards ({len(done)} done earlier), "
            f"{lay.concurrency} tasks at a time, flow on {lay.device}, task resources {lay.task_opts}"
            + (f", pipelined: {lay.flow_workers} flow actors {lay.actor_opts}" if lay.mode == "pipelined" else ""))
        bar = tqdm(total=len(tasks), initial=skipped, unit="video", desc="extract", file=sys.stderr,
                   mininterval=1.0, dynamic_ncols=True)
        try:
            new, errors = run_shards(todo, cfg, shard_dir, ray, lay.task_opts, lay.device, lay.concurrency, bar,
                                     contained, flow)
        finally:
            if pool:
                stats = flowpool.pool_stats(ray, pool)
                flowpool.stop_pool(ray, pool)
        t_done = time.time()
        bar.close()
        if pool:
            log("extract: " + flowpool.describe(stats, t_done - t_shards))
    finally:
        ray.shutdown()
    ok, failed = sum(len(s["videos"]) for s in new), sum(len(s["failures"]) for s in new)
    n_poison = record_poison(out, new, rows, known)
    if n_poison:
        log(f"extract: {n_poison} decoder crash / timeout outcomes recorded in {out / poison.POISON_FILE}")
    secs = time.time() - t0
    log(f"extract: ok {ok}, failed {failed}, skipped {skipped} (in shards done earlier), "
        f"source failures {len(source_failures)}, {secs:.1f} s, {(ok + failed) / max(secs, 1e-9):.2f} videos/s")
    if errors:
        for plan, err in errors:
            log(f"extract: shard {plan.name} ({len(plan.videos)} videos) failed after {MAX_RETRIES} retries: {err}")
        raise RuntimeError(f"{len(errors)} shards failed; nothing published. Rerun to retry them "
                           f"(finished shards are kept in {work})")
    check_publishable(done + new, max_failure_rate, work)
    records, failures = _records(done + new, rows)
    flow_params = {"preset": cfg.flow_params.get("preset", DEFAULT_PRESET),
                   **dataclasses.asdict(brox_params(**cfg.flow_params)), "bound": cfg.bound}
    meta_source = {"source_version": source.meta.version_id, "source_dir": str(source.dir),
                   "config": json.loads(cfg.to_json())}
    aside = None
    if (force or replace) and final.exists():  # versions are immutable: move the old one aside, publish, then drop it
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
                      t_done - t_shards, sum(s["seconds"] for s in new), sum(s["cpu_s"] for s in new),
                      lay.mode, tuple(stats))


def _prepare_work(work: Path, shard_dir: Path, plans: list[ShardPlan], source: SourceManifest, cfg: ExtractConfig,
                  code: str, force: bool, verify: bool, log, tasks: dict[str, VideoTask] | None = None,
                  retry_failed: bool = False) -> tuple[list[dict], list[ShardPlan]]:
    """Create (or reuse) the work dir; returns (summaries of shards finished earlier, plans still to do).
    A finished shard holding a decoder crash / timeout that this run retries (``stale_poison``) is redone."""
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
                summary = read_finished(path, plan, full=verify)
            except (ShardError, ValueError, OSError, KeyError) as e:
                log(f"extract: redoing {path}: {e}")
                path.unlink()
            else:
                if not stale_poison(summary, tasks or {}, retry_failed):
                    done.append(summary)
                    continue
                log(f"extract: redoing {path}: retrying its decoder crashes / timeouts")
                path.unlink()
        todo.append(plan)
    return done, todo


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
            raise checks.UsageError(f"{what} {it}: expected key=value")
        k, v = it.split("=", 1)
        out[k.strip()] = _value(v.strip())
    return out


def config_from_args(a: argparse.Namespace) -> ExtractConfig:
    """The ExtractConfig of parsed arguments; UsageError (naming the argument) for any bad value."""
    codec = dict(DEFAULT_CODEC)
    for c in a.codec or []:
        spec = {s: c for s in STREAMS} if "=" not in c else _kv([c], "--codec")
        for stream, name in spec.items():
            checks.choice(f"--codec {c}: stream", stream, STREAMS)
            checks.choice("--codec", name, CODECS)
        codec.update(spec)
    codec = codec_spec(codec)
    overrides = _kv(a.flow_param or [], "--flow-param")
    try:  # fail early (exit 2, before Ray) on a bad preset or parameter; record the resolved parameters
        if "preset" in overrides:
            raise ValueError("use --flow-preset to choose a preset")
        resolved = brox_params(a.flow_preset, **overrides)
    except (TypeError, ValueError) as e:
        raise checks.UsageError(f"{'--flow-preset' if 'preset must' in str(e) else '--flow-param'}: {e}") from None
    flow_params = {"preset": a.flow_preset, **dataclasses.asdict(resolved)}
    checks.number_in("--level", a.level, 0, 9, allow_none=True)
    checks.number_in("--quality", a.quality, 1, 100, allow_none=True)
    checks.positive_int("--chunk-frames", a.chunk_frames, allow_none=True)
    checks.positive_int("--shard-size", a.shard_size)
    checks.positive_int("--min-frames", a.min_frames)
    if not a.bound > 0:
        raise checks.UsageError(f"--bound {a.bound}: must be > 0 px")
    if not a.static_threshold >= 0:
        raise checks.UsageError(f"--static-threshold {a.static_threshold}: must be >= 0 px")
    codec_opts = {k: v for k, v in {"level": a.level, "quality": a.quality, "chunk_frames": a.chunk_frames}.items()
                  if v is not None}
    try:
        sampling.check_sampling(a.fps, a.segments, a.segment_frames)
    except ValueError as e:  # one line, exit status 2, before anything is read or Ray starts
        raise checks.UsageError(str(e)) from None
    return ExtractConfig(size=checks.size("--size", a.size), resize=a.resize, codec=codec, codec_opts=codec_opts,
                         shard_size=a.shard_size, flow_params=flow_params, bound=a.bound, min_frames=a.min_frames,
                         static_threshold=a.static_threshold, splits=tuple(sorted(set(a.split or []))),
                         fps=a.fps, segments=a.segments, segment_frames=a.segment_frames)


def check_args(a: argparse.Namespace, cfg: ExtractConfig) -> None:
    """Everything checkable before Ray starts: the manifest, --out, --workers, --split, --address."""
    from manifests.schema import KIND as SOURCE_KIND

    checks.positive_int("--workers", a.workers, allow_none=True)
    checks.positive_int("--flow-workers", a.flow_workers, allow_none=True)
    if a.flow_workers is not None and a.mode == "tasks":
        raise checks.UsageError(f"--flow-workers {a.flow_workers}: only with --mode pipelined or auto "
                                f"(--mode tasks solves flow inside the shard tasks)")
    checks.number_in("--max-failure-rate", a.max_failure_rate, 0.0, 1.0)
    checks.version("--manifest", a.manifest, SOURCE_KIND)
    checks.out_dir("--out", a.out)
    if cfg.splits:
        source = load_source(a.manifest)
        known = sorted(set(source.meta.source.get("splits") or []) | {k for r in source.videos for k in r.splits})
        for s in cfg.splits:
            checks.split_in("--split", s, known, source.dir)
    if a.address:
        checks.ray_address("--address", a.address)
    else:
        checks.ray_address("RAY_ADDRESS", os.environ.get("RAY_ADDRESS") or None)


def build_parser() -> argparse.ArgumentParser:
    d = ExtractConfig()
    p = checks.parser(prog="python -m jobs.extract", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--resize", choices=RESIZE_MODES, default=d.resize,
                   help="stretch: each axis to --size (the paper's 128x171); short-side-crop: keep the aspect "
                        "ratio, scale to cover --size, crop the centre")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="videos per shard")
    p.add_argument("--workers", type=int, default=None, help="shard tasks at a time (and CPUs of a local Ray)")
    p.add_argument("--flow-preset", default=DEFAULT_PRESET, metavar="NAME",
                   help=f"Brox preset {tuple(PRESETS)} (pipeline.flow.PRESETS); default {DEFAULT_PRESET}")
    p.add_argument("--flow-param", action="append", metavar="K=V",
                   help="Brox parameter overriding the preset (pipeline.flow.BroxParams)")
    p.add_argument("--bound", type=float, default=d.bound, help="flow image bound in px")
    p.add_argument("--split", action="append", metavar="NAME", help="only videos in train/test of this split")
    p.add_argument("--min-frames", type=int, default=d.min_frames)
    p.add_argument("--static-threshold", type=float, default=d.static_threshold,
                   help="max |flow| in px below which a video counts as static (failure)")
    p.add_argument("--max-failure-rate", type=float, default=MAX_FAILURE_RATE,
                   help="do not publish when more than this share of the attempted videos failed "
                        f"(default {MAX_FAILURE_RATE}); the work dir is kept for a rerun")
    p.add_argument("--fps", type=float, default=None, metavar="F",
                   help="resample every video to F frames/s before anything else (default: native rate)")
    p.add_argument("--segments", type=int, default=None, metavar="K",
                   help="keep K evenly spaced windows per video (TSN-style; with --segment-frames)")
    p.add_argument("--segment-frames", type=int, default=None, metavar="L",
                   help="frames per window (L-1 flows each; flow never crosses windows)")
    p.add_argument("--decode-timeout", type=checks.positive_seconds, default=None, metavar="S",
                   help="seconds a video's decode may take before it is killed and recorded as a failure "
                        "(default: per video, max(30, frames x pixels / 1e7) from the source manifest)")
    p.add_argument("--retry-failed", action="store_true",
                   help="decode again videos that crashed or timed out in an earlier run under --out")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="tasks: each shard task solves its own flow; pipelined: shard tasks decode and write on "
                        "CPU while a pool of flow actors (one per GPU, else per core) solves pairs of several "
                        "videos per batch; auto (default): pipelined when the cluster has GPUs. Same shards")
    p.add_argument("--flow-workers", type=int, default=None, metavar="N",
                   help="flow actors of the pipelined mode (default: one per GPU, else one per CPU)")
    return p


@checks.cli("extract")
def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    cfg = config_from_args(a)
    check_args(a, cfg)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731  stdout carries only the id
    try:
        vid = extract(a.manifest, a.out, cfg, address=a.address, force=a.force, workers=a.workers,
                      verify=a.verify, log=log, max_failure_rate=a.max_failure_rate,
                      decode_timeout=a.decode_timeout, retry_failed=a.retry_failed, mode=a.mode,
                      flow_workers=a.flow_workers).version_id
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        if isinstance(e, checks.UsageError):
            raise
        log(f"extract: error: {checks.one_line(e)}")
        return 1
    print(vid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
