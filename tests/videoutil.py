"""Synthetic video fixtures written by a real encoder (OpenCV's FFmpeg backend), shared by the tests."""

from __future__ import annotations

import numpy as np

from jobs.demokit.encode import write_video  # noqa: F401  (re-exported for the tests)


def moving_square(
    n: int, h: int = 64, w: int = 80, *, step: tuple[int, int] = (2, 1), size: int = 16, seed: int = 0
) -> np.ndarray:
    """(n, h, w, 3) uint8 RGB: a textured square moving by `step` (dx, dy) pixels per frame over noise."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 90, size=(h, w, 3), dtype=np.uint8)
    tex = rng.integers(120, 255, size=(size, size, 3), dtype=np.uint8)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        f = bg.copy()
        x = (4 + i * step[0]) % max(1, w - size)
        y = (4 + i * step[1]) % max(1, h - size)
        f[y : y + size, x : x + size] = tex
        frames[i] = f
    return frames
