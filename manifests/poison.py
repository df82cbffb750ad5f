"""The poison log of an output root: videos whose decoder crashed or timed out, so a rerun skips them.

``<root>/poison.jsonl`` (root = build_manifest's --out or extract's --out), one JSON object per line,
append-only, written only by the job's driver::

    {"sha256": ..., "size_bytes": ..., "kind": "crash"|"timeout"|"cleared", "reason": "decoder crashed
     (signal 11, SIGSEGV)", "timeout_s": 30.0, "path": ..., "job": "build_manifest"|"extract", "at": UTC}

Keyed by the file's sha256 (the content, wherever the file lives and whatever version lists it), the last
line of a sha256 wins; "cleared" (the file decoded after a --retry-failed) ends a record. Why a per-root log
and not the previous version: a poison file must cost its time once per root, across versions whose ids
differ (new videos in the folder, a new --size), across a job that failed before publishing, and in
extraction across shards; all of these share the root and the file content, not a version.

``skip``: a crash is skipped on every rerun unless --retry-failed; a timeout is skipped unless
--retry-failed or the new time limit is larger than the one that expired (so a larger --decode-timeout
retries it by itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from manifests.versioning import utc_now

POISON_FILE = "poison.jsonl"
KINDS = ("crash", "timeout")


def load(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """sha256 -> its latest crash / timeout record under ``root`` (empty if there is no log)."""
    path = Path(root) / POISON_FILE
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a torn last line of a killed driver: ignore it
            continue
        if not isinstance(rec, dict) or not rec.get("sha256"):
            continue
        if rec.get("kind") in KINDS:
            out[rec["sha256"]] = rec
        else:
            out.pop(rec["sha256"], None)
    return out


def skip(rec: dict[str, Any], timeout_s: float, retry_failed: bool) -> bool:
    """Whether a video with poison record ``rec`` is skipped by a run with this time limit (module doc)."""
    if retry_failed:
        return False
    if rec["kind"] == "crash":
        return True
    return timeout_s <= float(rec.get("timeout_s") or 0) + 1e-6


def record(
    sha256: str,
    kind: str,
    reason: str,
    *,
    timeout_s: float | None = None,
    size_bytes: int | None = None,
    path: str = "",
    job: str = "",
) -> dict[str, Any]:
    return {
        "sha256": sha256,
        "size_bytes": size_bytes,
        "kind": kind,
        "reason": reason,
        "timeout_s": timeout_s,
        "path": path,
        "job": job,
        "at": utc_now(),
    }


def append(root: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Append records to ``<root>/poison.jsonl`` (created only when there is something to write)."""
    lines = [json.dumps(r, sort_keys=True) + "\n" for r in records]
    if not lines:
        return 0
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / POISON_FILE, "a") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
    return len(lines)
