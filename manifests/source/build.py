"""Assemble a Plan and per-video facts into records and publish them as an immutable source version.

Status precedence (first that applies): the file's own failure (missing, empty, unreadable, decode_crash,
decode_timeout), then the
annotation-level one (unknown_class, duplicate listing, filtered, unlisted), then content duplicates
(same sha256 as an earlier rel_path, which keeps "ok"). The version id hashes the schema version, the
source description (dataset, absolute videos root, parameters), the labels, the warnings and every row
except its diagnostic ``note``; the creation time and the parent are recorded in version.json but are not
part of the id. The decode time limit is not a parameter of the id either: it changes content only
through the statuses of the videos that hit it, and those rows are hashed.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from manifests import poison
from manifests.source.annotations import Plan
from manifests.source.probe import COUNT_SIZE, FACT_KEYS, inspect_video
from manifests.source.schema import (
    KIND,
    LABELS_FILE,
    SCHEMA_VERSION,
    VIDEOS_FILE,
    VideoRecord,
    labels_table,
    videos_table,
)
from manifests.versioning import LATEST, VersionMeta, content_id, file_digest, publish, read_meta, utc_now

FILE_FAILURES = ("missing", "empty", "unreadable", "decode_crash", "decode_timeout", "partial")
# Stored but not hashed into the version id: decoder diagnostics can vary between runs on corrupt files
# (decord's threaded decoder reports a mid-file error after a varying number of frames).
DIAGNOSTIC = ("note",)


def video_ids(rel_paths: list[str]) -> list[str]:
    """File stem when unique in the dataset, else the path without suffix with '/' replaced by '__'.

    Ids are Unicode NFC (a file named in NFD on disk, as macOS writes them, gets the id its name has in
    the annotation lists); ``rel_path`` keeps the name as on disk, for opening the file.
    """
    nfc = [unicodedata.normalize("NFC", r) for r in rel_paths]
    stems = Counter(PurePosixPath(r).stem for r in nfc)
    return [
        PurePosixPath(r).stem
        if stems[PurePosixPath(r).stem] == 1
        else PurePosixPath(r).with_suffix("").as_posix().replace("/", "__")
        for r in nfc
    ]


def assemble(plan: Plan, facts: dict[str, dict[str, Any]]) -> list[VideoRecord]:
    """Records sorted by rel_path. `facts[rel_path]` is inspect_video's dict (absent for missing files)."""
    records, first_with_hash = [], {}
    ids = video_ids([e.rel_path for e in plan.entries])
    for vid, e in zip(ids, plan.entries):
        f = facts.get(e.rel_path) or {"status": "missing", "error": e.error}
        notes = ([f["note"]] if f.get("note") else []) + e.notes
        if f["status"] in FILE_FAILURES:
            status, error = f["status"], f["error"]
            if e.status not in ("ok", "missing"):
                notes.append(e.error)
        else:
            status, error = e.status, e.error
        if status == "ok" and f.get("sha256"):
            first = first_with_hash.setdefault(f["sha256"], e.rel_path)
            if first != e.rel_path:
                status, error = "duplicate", f"{e.rel_path}: same content (sha256) as {first}"
        fields = {k: f.get(k) for k in FACT_KEYS if k not in ("status", "error", "note")}
        records.append(
            VideoRecord(
                video_id=vid,
                rel_path=e.rel_path,
                labels=tuple(e.labels),
                label_names=tuple(plan.labels[i] for i in e.labels),
                splits=dict(e.splits),
                status=status,
                error=error,
                note="; ".join(notes) or None,
                **fields,
            )
        )
    return records


def source_description(plan: Plan, videos: Path, annotations: Path | None) -> dict[str, Any]:
    return {
        "dataset": plan.dataset,
        "videos_root": str(Path(videos).resolve()),
        "annotations": str(Path(annotations).resolve()) if annotations else None,
        "annotation_files": {p.name: file_digest(p) for p in plan.annotation_files if p.is_file()},
        "splits": plan.split_names,
        "params": {**plan.params, "count_size": list(COUNT_SIZE)},
    }


def version_id(source: dict[str, Any], plan: Plan, records: list[VideoRecord]) -> str:
    head = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "source": source,
            "labels": plan.labels,
            "label_source_index": plan.label_source_index,
            "warnings": plan.warnings,
        },
        sort_keys=True,
    )
    rows = ({k: v for k, v in r.to_row().items() if k not in DIAGNOSTIC} for r in records)
    return content_id([head, *(json.dumps(row, sort_keys=True) for row in rows)])


def write_version(
    out: Path, plan: Plan, records: list[VideoRecord], videos: Path, annotations: Path | None, parent: str | None = None
) -> tuple[str, Path]:
    """Publish records as a new immutable version under `out`; parent defaults to out/LATEST."""
    out = Path(out)
    source = source_description(plan, videos, annotations)
    vid = version_id(source, plan, records)
    if parent is None and (out / LATEST).is_file():
        parent = read_meta(out / LATEST).version_id
    if parent == vid:  # rebuilding the latest version unchanged: it keeps its own parent
        parent = read_meta(out / vid).parent if (out / vid).is_dir() else None
    counts = dict(sorted(Counter(r.status for r in records).items()))
    meta = VersionMeta(
        vid,
        KIND,
        SCHEMA_VERSION,
        source,
        parent,
        utc_now(),
        extra={
            "status_counts": counts,
            "warnings": plan.warnings,
            "num_videos": len(records),
            "num_labels": len(plan.labels),
        },
    )

    def write_files(d: Path) -> None:
        pq.write_table(videos_table(records), d / VIDEOS_FILE)
        pq.write_table(labels_table(plan.labels, plan.label_source_index), d / LABELS_FILE)

    return vid, publish(out, vid, write_files, meta)


def build(
    plan: Plan,
    videos: Path,
    annotations: Path | None,
    out: Path,
    inspect: Callable[..., list[dict[str, Any]]] | None = None,
    *,
    require_ok: bool = False,
    max_failure_rate: float | None = None,
    timeout: float | None = None,
    retry_failed: bool = False,
    contained: bool = True,
    partial: str = "keep",
    log: Callable[[str], None] | None = None,
) -> tuple[str, Path]:
    """Inspect every entry's file (in-process by default, or with `inspect(paths, **opts) -> facts`, opts
    being inspect_video's keyword arguments) and publish.

    With ``require_ok``, a build in which no video ends with status ok raises ValueError (with the status
    counts) and publishes nothing: such a version could only mislead the next stage. With
    ``max_failure_rate``, so does a build in which more than that share of the listed files failed
    (FILE_FAILURES, decoder crashes and timeouts included; annotation-level statuses such as unlisted are
    not file failures). Files whose decoder crashed or timed out in an earlier build under `out` are
    skipped unless `retry_failed` (manifests.poison); this build's crashes and timeouts are appended to
    `<out>/poison.jsonl` (also when the guards then refuse to publish: they are facts about the files).
    ``partial``: "keep" (a file that decodes only part-way is ok, its prefix counted and the reason in its
    ``partial`` column) or "fail" (status "partial", a file failure).
    """
    todo = [e.rel_path for e in plan.entries if e.status != "missing"]
    paths = [Path(videos) / r for r in todo]
    known = poison.load(out)
    opts = {
        "timeout": timeout,
        "known": known,
        "retry_failed": retry_failed,
        "contained": contained,
        "partial": partial,
    }
    results = inspect(paths, **opts) if inspect else [inspect_video(p, **opts) for p in paths]
    n = poison.append(out, poison_updates(paths, results, known))
    skipped = sum(bool((f.get("poison") or {}).get("cached")) for f in results)
    if log and (n or skipped):
        log(
            f"poison: {skipped} videos skipped (decoder crashed / timed out in an earlier build; --retry-failed "
            f"retries them), {n} outcomes recorded in {Path(out) / poison.POISON_FILE}"
        )
    records = assemble(plan, dict(zip(todo, results)))
    counts = dict(sorted(Counter(r.status for r in records).items()))
    if require_ok and not any(r.status == "ok" for r in records):
        raise ValueError(f"{videos}: no video is usable (statuses {counts}); nothing published")
    bad = [r for r in records if r.status in FILE_FAILURES]
    if max_failure_rate is not None and records and len(bad) / len(records) > max_failure_rate:
        top = Counter(f"{r.status}: {(r.error or '').split(': ', 1)[-1][:120]}" for r in bad).most_common(5)
        raise ValueError(
            f"{videos}: {len(bad)} of {len(records)} files failed ({len(bad) / len(records):.0%} > "
            f"--max-failure-rate {max_failure_rate:g}); nothing published. Top reasons: "
            + "; ".join(f"{n} x {reason}" for reason, n in top)
        )
    return write_version(out, plan, records, videos, annotations)


def poison_updates(
    paths: list[Path], results: list[dict[str, Any]], known: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Poison log lines for this build: new crashes / timeouts, and "cleared" for known ones that decoded."""
    out = []
    for p, f in zip(paths, results):
        if f.get("poison") and not f["poison"].get("cached"):
            out.append(
                poison.record(
                    f["sha256"],
                    f["poison"]["kind"],
                    f["poison"]["reason"],
                    timeout_s=f["poison"]["timeout_s"],
                    size_bytes=f["size_bytes"],
                    path=str(p),
                    job="build_manifest",
                )
            )
        elif f.get("status") == "ok" and f.get("sha256") in known:
            out.append(
                poison.record(
                    f["sha256"], "cleared", "decoded", size_bytes=f["size_bytes"], path=str(p), job="build_manifest"
                )
            )
    return out
