"""Synthetic video fixtures written by a real encoder (OpenCV's FFmpeg backend), shared by the tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# fourcc per container; both are decodable by decord and by ffmpeg
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def moving_square(n: int, h: int = 64, w: int = 80, *, step: tuple[int, int] = (2, 1), size: int = 16,
                  seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 RGB: a textured square moving by `step` (dx, dy) pixels per frame over noise."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(40, 90, size=(h, w, 3), dtype=np.uint8)
    tex = rng.integers(120, 255, size=(size, size, 3), dtype=np.uint8)
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        f = bg.copy()
        x = (4 + i * step[0]) % max(1, w - size)
        y = (4 + i * step[1]) % max(1, h - size)
        f[y:y + size, x:x + size] = tex
        frames[i] = f
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames to `path` (.mp4 or .avi) and check it decodes to T frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()]), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open a writer")
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    if n != t:
        raise RuntimeError(f"{path}: wrote {t} frames, read back {n}")
    return path
