"""Per-video facts for a source manifest (size, sha256, header probe, decoded frame count): a pure function.

``inspect_video`` never raises for a bad file: the bad-input policy is to return a status ("missing",
"empty", "unreadable") and the reason, so one broken video never stops a build. jobs.build_manifest runs
it as Ray tasks; tests and ``--workers 0`` call it directly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from manifests.versioning import file_digest
from pipeline.decode import DecodeError, decode_video_ex, probe_video

COUNT_SIZE = (32, 32)  # frames are decoded at this size only to count them (cheap; count does not depend on it)

FACT_KEYS = ("size_bytes", "sha256", "duration_s", "fps", "width", "height", "num_frames", "header_frames",
             "codec", "status", "error", "note")


def inspect_video(path: str | Path, count_size: tuple[int, int] = COUNT_SIZE) -> dict[str, Any]:
    """Facts about one video file as a dict with FACT_KEYS; status "ok" iff it decodes to >= 1 frame."""
    path = Path(path)
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    if not path.is_file():
        return {**facts, "status": "missing", "error": f"{path}: no such file"}
    try:
        facts["size_bytes"] = path.stat().st_size
        facts["sha256"] = file_digest(path)
    except OSError as e:  # e.g. permission denied, I/O error on a bad disk sector
        return {**facts, "status": "unreadable", "error": f"{path}: cannot read: {e.strerror or e}"}
    if facts["size_bytes"] == 0:
        return {**facts, "status": "empty", "error": f"{path}: empty file (0 bytes)"}
    try:
        info = probe_video(path)
        decoded = decode_video_ex(path, size=count_size)
    except DecodeError as e:
        return {**facts, "status": "unreadable", "error": str(e)}
    n = len(decoded.frames)
    notes = [f"decoded by {decoded.backend}: {decoded.note}"] if decoded.note else []
    if info.header_frames is not None and abs(info.header_frames - n) > 1:
        notes.append(f"header implies {info.header_frames} frames, decoded {n}")
    facts.update(duration_s=info.duration_s, fps=info.fps, width=info.width, height=info.height,
                 header_frames=info.header_frames, codec=info.codec, num_frames=n, status="ok",
                 note="; ".join(notes) or None)
    return facts


def inspect_many(paths: list[str | Path], count_size: tuple[int, int] = COUNT_SIZE) -> list[dict[str, Any]]:
    """inspect_video over a chunk of paths (one Ray task handles a chunk to amortise task overhead)."""
    return [inspect_video(p, count_size) for p in paths]
