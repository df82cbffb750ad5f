"""A run's bookkeeping, without Ray: which videos it extracts, which of them an earlier version already holds
(``reusable``), which shards an earlier run finished, what the finished shards' summaries become (manifest
rows, poison records), and whether the result may be published. The driver (jobs.extraction.driver) calls
these around its Ray tasks."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from manifests import poison
from manifests.extraction.plan import ExtractConfig, ShardPlan, VideoTask, content_key
from manifests.extraction.shard import read_finished
from manifests.shards import FailureRecord, ShardRecord, load_shards
from manifests.source.loader import SourceManifest
from manifests.versioning import find_versions, read_meta
from pipeline.decode import decode_timeout
from pipeline.storage import ShardError


class PublishRefused(RuntimeError):
    """The run finished but the version must not be published (no ok video, too many failures)."""


def select_videos(
    source: SourceManifest,
    cfg: ExtractConfig,
    timeout: float | None = None,
    known: dict[str, dict] | None = None,
    retry_failed: bool = False,
) -> tuple[list[VideoTask], list[FailureRecord], dict]:
    """Rows to extract (status ok, in one of cfg.splits if given), source failures, and the records by id.
    A row the source manifest marks partial is a source failure under ``cfg.partial == "fail"``.

    Each task's decode time limit is ``timeout`` or, if None, ``pipeline.decode.decode_timeout`` of the row's
    header facts; a task whose file has a poison record in ``known`` that ``poison.skip`` skips carries it."""
    tasks, failures, rows = [], [], {}
    for r in source.videos:
        if cfg.splits and not any(r.splits.get(s) in ("train", "test") for s in cfg.splits):
            continue
        rows[r.video_id] = r
        if r.ok and r.partial and cfg.partial == "fail":
            why = f"partial: {r.rel_path} decodes only {r.num_frames} frames ({r.partial}); --partial fail"
            failures.append(FailureRecord(r.video_id, "source", why, r.rel_path, "", dict(r.splits)))
        elif r.ok:
            limit = timeout or decode_timeout(r.duration_s, r.fps, r.width, r.height)
            rec = (known or {}).get(r.sha256 or "")
            skip = rec if rec is not None and poison.skip(rec, limit, retry_failed) else None
            tasks.append(
                VideoTask(
                    r.video_id,
                    str(source.path(r)),
                    r.rel_path,
                    r.sha256,
                    r.size_bytes,
                    limit,
                    skip,
                    r.num_frames,
                    r.fps,
                    r.duration_s,
                    r.partial,
                )
            )
        else:
            failures.append(
                FailureRecord(r.video_id, "source", f"{r.status}: {r.error}", r.rel_path, "", dict(r.splits))
            )
    return tasks, failures, rows


def reusable(out: Path, cfg: ExtractConfig, code: str, exclude: str = "") -> dict[str, dict[str, Any]]:
    """sha256 of a file -> where a published shard version under ``out`` (not ``exclude``) holds it, extracted
    with the same ``cfg.content_key()`` and code version: what ``VideoTask.reuse`` carries. Versions that do
    not load (a missing shard file, another kind) are passed over; the first version (by path) wins."""
    key, found = cfg.content_key(), {}
    for vdir in find_versions(out, max_depth=1) if Path(out).is_dir() else []:
        meta = read_meta(vdir)
        conf = (meta.source or {}).get("config")
        if meta.kind != "shards" or meta.version_id == exclude or meta.extra.get("code_version") != code:
            continue
        if content_key(conf or {}) != key:
            continue
        try:
            records = load_shards(vdir).records
        except (OSError, ValueError, KeyError):
            continue
        for r in records:
            if r.source_sha256 and r.source_sha256 not in found:
                found[r.source_sha256] = {
                    "version": meta.version_id,
                    "shard": str(r.shard_path),
                    "group": r.group,
                    "checksums": dict(r.checksums),
                    "n_rgb": r.n_rgb,
                    "n_flow": r.n_flow,
                    "windows": [list(w) for w in r.windows],
                    "fps": r.fps,
                    "partial": r.partial,
                }
    return found


def attach_reuse(tasks: list[VideoTask], found: dict[str, dict[str, Any]]) -> list[VideoTask]:
    """``tasks`` with ``reuse`` set where ``found`` (``reusable``) holds their file (same sha256)."""
    return [dataclasses.replace(t, reuse=found[t.sha256]) if t.sha256 in found else t for t in tasks]


def shard_rows(summaries: list[dict], rows: dict) -> tuple[list[ShardRecord], list[FailureRecord]]:
    """Manifest rows from shard summaries and the source records (labels, splits, source path and hash)."""
    records, failures = [], []
    for s in summaries:
        for v in s["videos"]:
            r = rows[v["video_id"]]
            records.append(
                ShardRecord(
                    v["video_id"],
                    Path(s["path"]),
                    v["group"],
                    v["n_rgb"],
                    v["n_flow"],
                    r.labels,
                    r.label_names,
                    dict(r.splits),
                    v["height"],
                    v["width"],
                    v["checksums"],
                    s["sha256"],
                    r.rel_path,
                    r.sha256 or "",
                    tuple(tuple(w) for w in v.get("windows", [(0, v["n_rgb"])])),
                    v.get("fps"),
                    v.get("partial"),
                )
            )
        for f in s["failures"]:
            failures.append(
                FailureRecord(
                    f["video_id"],
                    f["stage"],
                    f["error"],
                    rows[f["video_id"]].rel_path,
                    s["name"],
                    dict(rows[f["video_id"]].splits),
                )
            )
    return records, failures


def stale_poison(summary: dict, tasks: dict[str, VideoTask], retry_failed: bool) -> bool:
    """Whether a finished shard holds a decoder crash / timeout that this run would retry (so it is redone):
    any with --retry-failed, a timeout whose limit was smaller than this run's."""
    return any(
        f.get("poison") and not poison.skip(f["poison"], tasks[f["video_id"]].timeout_s or 0, retry_failed)
        for f in summary["failures"]
        if f["video_id"] in tasks
    )


def published_stale(final: Path, plan: ShardPlan, tasks: dict[str, VideoTask], retry_failed: bool) -> bool:
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
                recs.append(
                    poison.record(
                        r.sha256,
                        p["kind"],
                        p["reason"],
                        timeout_s=p["timeout_s"],
                        size_bytes=r.size_bytes,
                        path=r.rel_path,
                        job="extract",
                    )
                )
        for v in s["videos"]:
            r = rows[v["video_id"]]
            if r.sha256 in known:
                recs.append(
                    poison.record(
                        r.sha256, "cleared", "decoded", size_bytes=r.size_bytes, path=r.rel_path, job="extract"
                    )
                )
    return poison.append(out, recs)


def failure_report(failures: list[dict], top: int = 5) -> list[str]:
    """The most common failure reasons as lines ``N x stage: reason`` (file names stripped to group them)."""

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
    why = (
        "no video was extracted"
        if not ok
        else f"{len(fails)} of {attempted} videos failed ({rate:.0%} > --max-failure-rate {max_failure_rate:g})"
    )
    top = "; ".join(failure_report(fails)) or "no videos selected (check --split and the source manifest)"
    raise PublishRefused(
        f"{why}; nothing published, finished shards kept in {work} (a rerun redoes none of them). Top reasons: {top}"
    )


def prepare_work(
    work: Path,
    shard_dir: Path,
    plans: list[ShardPlan],
    source: SourceManifest,
    cfg: ExtractConfig,
    code: str,
    force: bool,
    verify: bool,
    log,
    tasks: dict[str, VideoTask] | None = None,
    retry_failed: bool = False,
) -> tuple[list[dict], list[ShardPlan]]:
    """Create (or reuse) the work dir; returns (summaries of shards finished earlier, plans still to do).
    A finished shard holding a decoder crash / timeout that this run retries (``stale_poison``) is redone."""
    if force and work.exists():
        shutil.rmtree(work)
    shard_dir.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(
        json.dumps({"source": source.meta.version_id, "code_version": code, "config": cfg.as_dict()}, indent=2)
    )
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
