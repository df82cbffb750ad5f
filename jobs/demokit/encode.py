"""Encode RGB frames to a real video file (OpenCV's FFmpeg backend), checked by decoding it back.

Used by the demo dataset generator (jobs.make_demo_data) and the tests' video fixtures; both containers
are decodable by decord and by ffmpeg.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# fourcc per container: MPEG-4 Part 2 in .mp4, Motion-JPEG in .avi
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Encode (T, H, W, 3) uint8 RGB `frames` to `path` (.mp4 or .avi); raises RuntimeError naming the
    file when no writer opens or when the file does not decode back to T frames. Returns the path."""
    path = Path(path)
    fourcc = FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: unsupported container {path.suffix!r}; expected one of {sorted(FOURCC)}")
    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open a {fourcc} writer")
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:  # decode, not just demux: a frame that does not decode is not counted
        n += 1
    cap.release()
    if n != t:
        raise RuntimeError(f"{path}: wrote {t} frames but {n} decode back")
    return path
