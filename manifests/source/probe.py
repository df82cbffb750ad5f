"""Per-video facts for a source manifest (size, sha256, header probe, decoded frame count): a pure function.

``inspect_video`` never raises for a bad file: the bad-input policy is to return a status ("missing",
"empty", "unreadable", "decode_crash", "decode_timeout") and the reason, so one broken video never stops a
build. The frame count decodes the file in this process's contained child (``pipeline.contain``; a chunk's
files in one batch): a decoder
that crashes or hangs on the file costs that file ("decoder crashed (signal N)" / "decoder timed out after
S s"), never the task. The header probe runs the ffmpeg binary as a child process already.
jobs.build_manifest runs it as Ray tasks; tests and ``--workers 0`` call it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from manifests import poison
from manifests.versioning import file_digest
from pipeline.contain import ContainedFailure, Crashed, map_contained
from pipeline.decode import CONTAIN_PRELOAD, PROBE_TIMEOUT_S, DecodeError, FrameStream, decode_timeout, probe_video

COUNT_SIZE = (32, 32)  # frames are decoded at this size only to count them (cheap; count does not depend on it)

FACT_KEYS = (
    "size_bytes",
    "sha256",
    "duration_s",
    "fps",
    "width",
    "height",
    "num_frames",
    "header_frames",
    "codec",
    "status",
    "error",
    "note",
    "partial",
)
CONTAINED_STATUS = {"crash": "decode_crash", "timeout": "decode_timeout"}  # poison kind -> manifest status


def count_frames(path: str, count_size: tuple[int, int]) -> tuple[int, str, str | None, str | None]:
    """(frames decoded, backend, note, partial) by ``FrameStream``, the decoder extraction uses, so both
    stages count the same frames; runs in the contained child, so only four small values come back."""
    fs = FrameStream(path, count_size)
    n = sum(len(frames) for _, frames in fs)
    return n, fs.backend or "", fs.note, fs.partial


def poison_kind(e: ContainedFailure) -> str:
    """ "crash" or "timeout" (the key of CONTAINED_STATUS and of manifests.poison records)."""
    return "crash" if isinstance(e, Crashed) else "timeout"


def inspect_video(
    path: str | Path,
    count_size: tuple[int, int] = COUNT_SIZE,
    *,
    timeout: float | None = None,
    known: dict[str, dict[str, Any]] | None = None,
    retry_failed: bool = False,
    contained: bool = True,
    partial: str = "keep",
) -> dict[str, Any]:
    """Facts about one video file as a dict with FACT_KEYS; status "ok" iff it decodes to >= 1 frame.

    A file that decodes only part-way (a cut download, a corrupt tail, a damaged region) counts its decodable
    prefix and says why in ``partial``; with ``partial="fail"`` its status is "partial" instead of "ok".

    ``timeout``: seconds for the frame count (default ``pipeline.decode.decode_timeout`` of the probed
    header). ``known``: poison records by sha256 (manifests.poison) of earlier builds; a file whose record
    ``poison.skip`` says to skip gets that status again without being decoded. A contained failure also
    sets the extra key ``poison`` = {"kind", "reason", "timeout_s"[, "cached": True when skipped]} so the
    driver can record it. ``contained=False`` decodes in this process (benchmarks only).
    """
    return inspect_many(
        [path],
        count_size,
        timeout=timeout,
        known=known,
        retry_failed=retry_failed,
        contained=contained,
        partial=partial,
    )[0]


def inspect_many(
    paths: list[str | Path],
    count_size: tuple[int, int] = COUNT_SIZE,
    *,
    timeout: float | None = None,
    known: dict[str, dict[str, Any]] | None = None,
    retry_failed: bool = False,
    contained: bool = True,
    partial: str = "keep",
) -> list[dict[str, Any]]:
    """inspect_video over a chunk of paths (one Ray task handles a chunk to amortise task overhead).

    Hash and probe every file here first, then send all the frame counts to the contained child in one
    batch (``pipeline.contain.map_contained``): one hand-over per chunk rather than per video, which is what
    keeps containment cheap on a loaded machine (docs/manifests.md)."""
    facts, limits = zip(*(_pre(Path(p), timeout, known, retry_failed) for p in paths)) if paths else ((), ())
    facts = list(facts)
    todo = [i for i, f in enumerate(facts) if f["status"] is None]
    counts = map_contained(
        count_frames,
        [(str(paths[i]), tuple(count_size)) for i in todo],
        [limits[i] for i in todo],
        contained=contained,
        preload=CONTAIN_PRELOAD,
    )
    for i, res in zip(todo, counts):
        facts[i] = _post(Path(paths[i]), facts[i], res, limits[i], partial)
    return facts


def _pre(
    path: Path, timeout: float | None, known: dict[str, dict[str, Any]] | None, retry_failed: bool
) -> tuple[dict[str, Any], float]:
    """Facts before decoding (status None = still to decode) and the decode time limit."""
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    if not path.is_file():
        return {**facts, "status": "missing", "error": f"{path}: no such file"}, 0.0
    try:
        facts["size_bytes"] = path.stat().st_size
        facts["sha256"] = file_digest(path)
    except OSError as e:  # e.g. permission denied, I/O error on a bad disk sector
        return {**facts, "status": "unreadable", "error": f"{path}: cannot read: {e.strerror or e}"}, 0.0
    if facts["size_bytes"] == 0:
        return {**facts, "status": "empty", "error": f"{path}: empty file (0 bytes)"}, 0.0
    try:
        info = probe_video(path, timeout=timeout or PROBE_TIMEOUT_S)
    except DecodeError as e:
        return {**facts, "status": "unreadable", "error": str(e)}, 0.0
    facts.update(
        duration_s=info.duration_s,
        fps=info.fps,
        width=info.width,
        height=info.height,
        header_frames=info.header_frames,
        codec=info.codec,
    )
    limit = timeout or decode_timeout(info.duration_s, info.fps, info.width, info.height)
    rec = (known or {}).get(facts["sha256"])
    if rec is not None and poison.skip(rec, limit, retry_failed):
        return {
            **facts,
            "status": CONTAINED_STATUS[rec["kind"]],
            "error": f"{path}: {rec['reason']}",
            "note": "not decoded again: recorded in the poison log (--retry-failed retries it)",
            "poison": {"kind": rec["kind"], "reason": rec["reason"], "timeout_s": rec.get("timeout_s"), "cached": True},
        }, limit
    return facts, limit


def _post(path: Path, facts: dict[str, Any], res: Any, limit: float, policy: str = "keep") -> dict[str, Any]:
    """Facts after the frame count ``res``: (n, backend, note, partial), or the exception it ended with."""
    if isinstance(res, DecodeError):
        return {**facts, "status": "unreadable", "error": str(res)}
    if isinstance(res, ContainedFailure):
        kind = poison_kind(res)
        return {
            **facts,
            "status": CONTAINED_STATUS[kind],
            "error": f"{path}: {res.reason}",
            "poison": {"kind": kind, "reason": res.reason, "timeout_s": limit},
        }
    if isinstance(res, BaseException):  # a bug, not the file: fail the task (Ray retries it / reports it)
        raise res
    n, backend, note, partial = res
    notes = [f"decoded by {backend}: {note}"] if note else []
    if facts["header_frames"] is not None and abs(facts["header_frames"] - n) > 1:
        notes.append(f"header implies {facts['header_frames']} frames, decoded {n}")
    facts = {**facts, "num_frames": n, "status": "ok", "note": "; ".join(notes) or None, "partial": partial}
    if partial and policy == "fail":
        return {**facts, "status": "partial", "error": f"{path}: decodes only {n} frames ({partial}); --partial fail"}
    return facts
