"""Temporal sampling of extraction: a constant frame rate, then TSN-style windows, as pure index arithmetic.

Two steps, both on frame indices (no pixels), so every decode backend gives the same selection:

1. **Rate** (``--fps F``). Source frame ``i`` sits at time ``i / r`` (``r`` = the video's native rate);
   output frame ``k`` sits at ``k / F`` and takes the source frame nearest in time,
   ``floor(k * r / F + 1/2)``. Output frames continue while that index is a decoded frame. Downsampling
   drops frames, upsampling repeats them (a repeated pair has zero flow). ``F`` None: output = source.
   The native rate is a constant (the container's), so variable-frame-rate timing is approximated by it.
2. **Windows** (``--segments K --segment-frames L``). The ``T`` output frames are cut into ``K`` equal
   segments (``floor(k T / K)`` boundaries); window ``k`` is the ``L`` consecutive frames centred in segment
   ``k`` (TSN's test-time choice). With ``T >= K L`` the windows never overlap; with ``L <= T < K L`` they
   would, and overlapping windows are merged into one run (no frame stored twice); ``T < L`` is a failure
   (the video is shorter than one window). ``K`` None: one window of all ``T`` frames (no sampling).

A window is ``(start, length)`` in output frames. Flow exists only inside a window: ``length - 1`` flows each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import cast

import numpy as np

Window = tuple[int, int]  # (start, length) in output frames


def check_sampling(fps: float | None, segments: int | None, segment_frames: int | None) -> None:
    """ValueError naming the argument when a sampling setting is out of range (the CLI's check)."""
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a finite number > 0, got {fps!r}")
    if (segments is None) != (segment_frames is None):
        raise ValueError("--segments and --segment-frames go together (give both or neither)")
    if segments is not None and (isinstance(segments, bool) or int(segments) != segments or segments < 1):
        raise ValueError(f"--segments must be an integer >= 1, got {segments!r}")
    if segment_frames is not None and (
        isinstance(segment_frames, bool) or int(segment_frames) != segment_frames or segment_frames < 2
    ):
        raise ValueError(
            f"--segment-frames must be an integer >= 2 (a window needs one flow pair), got {segment_frames!r}"
        )


def source_index(k: np.ndarray | int, native_fps: float, fps: float | None) -> np.ndarray:
    """Source frame index of output frame(s) ``k`` (step 1 of the module docstring)."""
    k = np.asarray(k, dtype=np.int64)
    if fps is None:
        return k
    return np.floor(k * (native_fps / fps) + 0.5 + 1e-9).astype(np.int64)


def output_count(n_source: int, native_fps: float, fps: float | None) -> int:
    """Number of output frames of a video with ``n_source`` decoded frames."""
    if fps is None or n_source <= 0:
        return max(n_source, 0)
    # largest k with floor(k r/F + 1/2) <= n - 1, i.e. k r/F + 1/2 < n; searched around the estimate
    k = max(int((n_source - 0.5) * fps / native_fps) + 2, 0)
    while k > 0 and source_index(k - 1, native_fps, fps) > n_source - 1:
        k -= 1
    return k


def windows(n_frames: int, segments: int | None, segment_frames: int | None) -> list[Window]:
    """Runs of output frames to keep (step 2); [] when the video is shorter than one window."""
    if segments is None:
        return [(0, n_frames)] if n_frames > 0 else []
    length = int(cast(int, segment_frames))  # given with segments
    if n_frames < length:
        return []
    out: list[Window] = []
    for k in range(segments):
        lo, hi = (k * n_frames) // segments, ((k + 1) * n_frames) // segments
        start = min(max(lo + (hi - lo - length) // 2, 0), n_frames - length)
        if out and start < out[-1][0] + out[-1][1]:  # overlaps the previous window: merge
            s0 = out[-1][0]
            out[-1] = (s0, max(out[-1][0] + out[-1][1], start + length) - s0)
        else:
            out.append((start, length))
    return out


class FrameSelector:
    """Streams the output frames of the windows from source frames arriving in chunks, in order.

    ``sel = FrameSelector(wins, native_fps, fps)``; for each consecutive source chunk (T, H, W, 3),
    ``sel.push(chunk)`` yields ``(window_index, frames)`` pieces (consecutive output frames of one window, in
    order). Chunks may start past skipped source frames (``push(chunk, base)``): only ``source_ranges()``
    must be decoded. ``sel.done`` is True once every window frame has been emitted; ``sel.needed_source`` is the
    number of source frames the windows need (None: all of them, i.e. no segments)."""

    def __init__(self, wins: list[Window] | None, native_fps: float, fps: float | None):
        self.native_fps, self.fps = native_fps, fps
        self.wins = wins  # None: one open-ended window (every output frame, count unknown in advance)
        self.win = 0  # current window
        self.k = wins[0][0] if wins else 0  # next output frame to emit
        self.base = 0  # source index of the first frame of the next chunk
        last = None if wins is None else (wins[-1][0] + wins[-1][1] - 1 if wins else -1)
        self.needed_source = None if last is None else int(source_index(last, native_fps, fps)) + 1

    def source_ranges(self) -> list[tuple[int, int]] | None:
        """Sorted, disjoint [start, stop) source index ranges the windows need (None: every frame)."""
        if self.wins is None:
            return None
        out: list[tuple[int, int]] = []
        for a, m in self.wins:
            lo = int(source_index(a, self.native_fps, self.fps))
            hi = int(source_index(a + m - 1, self.native_fps, self.fps)) + 1
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

    @property
    def done(self) -> bool:
        return self.wins is not None and self.win >= len(self.wins)

    def push(self, chunk: np.ndarray, base: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``base``: source index of ``chunk[0]`` (default: right after the previous chunk); chunks may skip
        source frames outside ``source_ranges()``, never one a window needs."""
        if base is not None:
            self.base = base
        n = len(chunk)
        end = self.base + n
        while not self.done:
            stop = self.wins[self.win][0] + self.wins[self.win][1] if self.wins is not None else None
            # output frames k.. whose source index falls in this chunk (and in the current window)
            hi = self._last_below(end, stop)
            if hi > self.k:
                src = source_index(np.arange(self.k, hi), self.native_fps, self.fps) - self.base
                if src[0] < 0:
                    raise ValueError(
                        f"output frame {self.k} needs source frame {src[0] + self.base}, "
                        f"before this chunk (starting at {self.base})"
                    )
                yield self.win, chunk[src]
                self.k = hi
            if stop is not None and self.k >= stop:
                self.win += 1
                if not self.done:
                    self.k = cast("list[Window]", self.wins)[self.win][0]  # stop is set: wins is not None
                continue
            break
        self.base = end

    def _last_below(self, end: int, stop: int | None) -> int:
        """Smallest k' >= self.k with source_index(k') >= end, capped at ``stop``."""
        if self.fps is None:
            hi = end
        else:
            hi = max(self.k, int((end - 0.5) * self.fps / self.native_fps) - 1)
            while source_index(hi, self.native_fps, self.fps) < end:
                hi += 1
            while hi > self.k and source_index(hi - 1, self.native_fps, self.fps) >= end:
                hi -= 1
        return hi if stop is None else min(hi, stop)
