"""The extraction driver: a source manifest version in, a published shard dataset version out, on Ray.

``extract(manifest, out, cfg)`` selects the videos (``select_videos``), derives the version id from the
source version, the configuration and the code (``version_id``), assigns the videos to shards
(manifests.extraction.plan_shards) and runs one Ray task per shard (manifests.extraction.build_shard), each
writing its own shard file atomically into ``<out>/.work-<id>/shards/``. A rerun finds the same work
directory, skips the shards already there and only then publishes ``<out>/<id>/``
(manifests.shards.publish_shards). Each video decodes in a contained child process: a decoder crash or
hang costs that video (a failure row, stage "decode"), and ``<out>/poison.jsonl`` remembers it so that
reruns skip it unless ``retry_failed`` (manifests.poison).

The pipelined mode (``layout``; the default on a cluster with GPUs) moves the Brox solves out of the shard
tasks into a pool of flow actors (one per GPU, or per CPU core): shard tasks decode and write on CPU
workers while the actors solve pairs of several videos per batch, with at most two requests in flight per
task (jobs.extraction.flowpool). The shards are the same either way: the mode is not part of the version id.

Publishing guards: nothing is published when no video was extracted, or when more than
``max_failure_rate`` of the videos this version attempted failed (``PublishRefused``; the work directory is
kept so a rerun, e.g. with a higher rate after reading the reasons, redoes nothing); a shard task that fails
for good (an unexpected exception, retried by Ray) fails the job. Ray resources are chosen here, from the
cluster's resources, never in the stages (docs/style.md §2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jobs.cli import cluster
from jobs.extraction import flowpool
from jobs.report.dataset_card import write_card_safely
from manifests import poison
from manifests.extraction import ExtractConfig, ShardPlan, build_shard, plan_shards
from manifests.extraction.bookkeeping import (
    PublishRefused,
    attach_reuse,
    check_publishable,
    prepare_work,
    published_stale,
    record_poison,
    reusable,
    select_videos,
    shard_rows,
)
from manifests.shards import publish_shards
from manifests.source.loader import SourceManifest, load_source
from manifests.versioning import META_FILE, content_id

CODE_VERSION = "extract-2"  # bump when the output changes; extract-2: flow images with an exact zero (255 levels)
CODE_FILES = (
    "pipeline/decode.py",
    "pipeline/sampling.py",
    "pipeline/flow.py",
    "pipeline/sornative.py",
    "pipeline/_sor.c",
    "pipeline/flowimage.py",
    "pipeline/rgbf.py",
    "pipeline/storage.py",
    "manifests/extraction/plan.py",
    "manifests/extraction/shard.py",
)
REPO = Path(__file__).resolve().parents[2]
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


def code_version() -> str:
    """CODE_VERSION plus a hash of the code that produces the shard contents."""
    h = hashlib.sha256()
    for f in CODE_FILES:
        h.update((REPO / f).read_bytes())
    return f"{CODE_VERSION}+{h.hexdigest()[:12]}"


def version_id(source: SourceManifest, cfg: ExtractConfig, code: str) -> str:
    return content_id(["shards", source.meta.version_id, cfg.to_json(), code])


# -------------------------------------------------------------------------------------------------- Ray
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


def layout(
    res: dict[str, float], mode: str = "auto", workers: int | None = None, flow_workers: int | None = None
) -> Layout:
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
        return Layout(
            "pipelined",
            {"num_cpus": 1, "num_gpus": 0},
            "cuda",
            max(1, workers or int(cpus) - n),
            n,
            {"num_cpus": 1, "num_gpus": 1},
        )
    n = flow_workers or max(1, int(cpus))
    return Layout(
        "pipelined",
        {"num_cpus": TASK_CPU, "num_gpus": 0},
        "cpu",
        max(1, workers or int(cpus)),
        n,
        {"num_cpus": 1 - TASK_CPU, "num_gpus": 0},
    )


def run_shards(
    todo: list[ShardPlan],
    cfg: ExtractConfig,
    shard_dir: Path,
    ray,
    opts: dict,
    device: str,
    concurrency: int,
    bar,
    contained: bool = True,
    flow=None,
) -> tuple[list[dict], list[tuple[ShardPlan, str]]]:
    """One task per shard with at most ``concurrency + 1`` in flight (jobs.cli.cluster.bounded), so the
    driver holds few ObjectRefs and no frames. Returns (summaries, [(plan, error)] of shards that failed for
    good). ``flow``: the pipelined mode's flow service (jobs.extraction.flowpool.RemoteFlow)."""
    # retry_exceptions=True: an unexpected exception in shard code is retried like a crash, then fails the job
    remote = ray.remote(build_shard).options(**opts, max_retries=MAX_RETRIES, retry_exceptions=True)
    cfg_ref = ray.put(cfg)
    extra = {} if contained else {"contained": False}  # benchmarks only
    if flow is not None:
        extra["flow"] = flow
    results, errors = [], []
    submit = lambda plan: remote.remote(plan, cfg_ref, str(shard_dir), device, **extra)  # noqa: E731
    for plan, summary in cluster.bounded(ray, submit, todo, concurrency + 1):
        if isinstance(summary, ray.exceptions.RayError):  # retries exhausted: the shard stays undone
            errors.append((plan, cluster.error_line(summary)))
            continue
        results.append(summary)
        bar.set_postfix(
            ok=sum(len(s["videos"]) for s in results), failed=sum(len(s["failures"]) for s in results), refresh=False
        )
        bar.update(len(plan.videos))  # renders the postfix just set
    return results, errors


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
    flow_stats: tuple = ()  # pipelined: each flow actor's counters (jobs.extraction.flowpool.FlowBatcher.stats)
    reused: int = 0  # videos copied from an earlier version (counted in ok)
    recomputed: int = 0  # videos whose earlier copy failed its sha256, computed again


def extract(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    cfg: ExtractConfig,
    *,
    address: str | None = None,
    force: bool = False,
    workers: int | None = None,
    verify: bool = False,
    log=print,
    max_failure_rate: float = MAX_FAILURE_RATE,
    decode_timeout: float | None = None,
    retry_failed: bool = False,
    contained: bool = True,
    mode: str = "auto",
    flow_workers: int | None = None,
    reuse: bool = True,
) -> RunSummary:
    """Run the job; returns its summary. Raises RuntimeError if some shards failed for good, PublishRefused
    (a RuntimeError) when the result must not be published (``check_publishable``).

    ``decode_timeout``: seconds per video decode (default per video, pipeline.decode.decode_timeout);
    ``retry_failed``: decode again videos whose decoder crashed / timed out in an earlier run (their shards
    are redone, also in a published version, which is then replaced); ``contained=False`` decodes in the
    task's own process (benchmarks only); ``mode`` / ``flow_workers``: see ``layout``. ``reuse``: copy the
    groups of videos that a published version under ``out`` holds extracted the same way (same file sha256,
    ``ExtractConfig.content_key`` and code version) instead of computing them (not with ``force``)."""
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
        redo = [
            p
            for p in plan_shards(tasks, cfg.shard_size)
            if (retry_failed or known) and published_stale(final, p, by_id, retry_failed)
        ]
        if not redo:
            log(f"extract: version {vid} already published at {final} (--force redoes it)")
            return RunSummary(vid, final, 0, 0, 0, 0, time.time() - t0)
        log(f"extract: {len(redo)} shards of published {vid} hold decoder crashes / timeouts to retry")
        replace = True
    if not tasks:
        where = f" in splits {','.join(cfg.splits)}" if cfg.splits else ""
        raise PublishRefused(f"{source.dir}: no video with status ok{where} to extract; nothing published")
    if reuse and not force:  # copy what an earlier version under out holds instead of computing it again
        tasks = attach_reuse(tasks, reusable(out, cfg, code, exclude=vid))
    plans = list(plan_shards(tasks, cfg.shard_size))
    shard_dir = work / "shards"
    t_init = time.time()
    # before the work dir exists: a cluster that refuses us leaves nothing
    ray = cluster.start(address or os.environ.get("RAY_ADDRESS"), workers)
    try:
        if replace:  # the published shards become the work dir's finished ones (hard links)
            shard_dir.mkdir(parents=True, exist_ok=True)
            for p in plans:
                if not (shard_dir / p.name).exists() and (final / "shards" / p.name).exists():
                    os.link(final / "shards" / p.name, shard_dir / p.name)
        done, todo = prepare_work(work, shard_dir, plans, source, cfg, code, force, verify, log, by_id, retry_failed)
        skipped = sum(len(s["assigned"]) for s in done)
        t_shards = time.time()
        lay = layout(ray.cluster_resources(), mode, workers, flow_workers)
        pool, flow, stats = [], None, []
        if lay.mode == "pipelined" and todo:
            pool = flowpool.start_pool(ray, lay.flow_workers, lay.actor_opts, cfg.flow.params, lay.device)
            flow = flowpool.RemoteFlow(pool, max_batch=8, in_flight=IN_FLIGHT)
        log(
            f"extract: {len(tasks)} videos in {len(plans)} shards ({len(done)} done earlier), "
            f"{lay.concurrency} tasks at a time, flow on {lay.device}, task resources {lay.task_opts}"
            + (f", pipelined: {lay.flow_workers} flow actors {lay.actor_opts}" if lay.mode == "pipelined" else "")
        )
        bar = tqdm(
            total=len(tasks),
            initial=skipped,
            unit="video",
            desc="extract",
            file=sys.stderr,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        try:
            new, errors = run_shards(
                todo, cfg, shard_dir, ray, lay.task_opts, lay.device, lay.concurrency, bar, contained, flow
            )
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
    reused = sum((Counter(s.get("reused", {})) for s in new), Counter())
    recomputed = sum(s.get("recomputed", 0) for s in new)
    n_poison = record_poison(out, new, rows, known)
    if n_poison:
        log(f"extract: {n_poison} decoder crash / timeout outcomes recorded in {out / poison.POISON_FILE}")
    secs = time.time() - t0
    log(
        f"extract: ok {ok}, failed {failed}, reused {reused.total()}, skipped {skipped} (in shards done earlier), "
        f"source failures {len(source_failures)}, {secs:.1f} s, {(ok + failed) / max(secs, 1e-9):.2f} videos/s"
        + (f"; {recomputed} reused groups failed their sha256 and were computed again" if recomputed else "")
    )
    if errors:
        for plan, err in errors:
            log(f"extract: shard {plan.name} ({len(plan.videos)} videos) failed after {MAX_RETRIES} retries: {err}")
        raise RuntimeError(
            f"{len(errors)} shards failed; nothing published. Rerun to retry them (finished shards are kept in {work})"
        )
    check_publishable(done + new, max_failure_rate, work)
    records, failures = shard_rows(done + new, rows)
    flow_params = {**cfg.flow.as_dict(), "bound": cfg.bound}
    meta_source = {"source_version": source.meta.version_id, "source_dir": str(source.dir), "config": cfg.as_dict()}
    aside = None
    if (force or replace) and final.exists():  # versions are immutable: move the old one aside, publish, then drop it
        aside = out / f".{vid}.replaced-{os.getpid()}"
        os.rename(final, aside)
    publish_shards(
        out,
        vid,
        [shard_dir / p.name for p in plans],
        records,
        source_failures + failures,
        source.labels,
        source=meta_source,
        parent=source.meta.version_id,
        codec={"streams": cfg.codec, "opts": cfg.codec_opts},
        flow_params=flow_params,
        code_version=code,
        extra={"reused": dict(sorted(reused.items()))} if reused else None,
    )
    if aside:
        shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    log(f"extract: published {final} ({len(records)} videos, {len(source_failures) + len(failures)} failures)")
    write_card_safely(final, log)  # card.md + figures next to the version; a failure only warns
    return RunSummary(
        vid,
        final,
        ok,
        failed,
        skipped,
        len(source_failures),
        secs,
        t_shards - t_init,
        t_done - t_shards,
        sum(s["seconds"] for s in new),
        sum(s["cpu_s"] for s in new),
        lay.mode,
        tuple(stats),
        reused.total(),
        recomputed,
    )
