"""Synthetic shard datasets written straight to HDF5 (no video, no flow): a bright square moving in a
class-specific direction over a smooth texture. Used by the training benchmark (jobs.bench.train) and, with
pixel-coordinate frames, by the tests (tests/fixtures.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from manifests.shards import VideoStreams, write_shard_dataset

DIRECTIONS = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]


def moving_frames(n: int, h: int, w: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """(n, h, w, 3) uint8: a bright square moving in DIRECTIONS[label % 8] over a smooth random texture
    with mild per-frame noise (natural-image-like, so JPEG sizes and decode times are realistic)."""
    bg = cv2.GaussianBlur(rng.integers(0, 256, size=(h, w, 3)).astype(np.float32), (0, 0), 3)
    bg = cv2.normalize(bg, None, 20, 160, cv2.NORM_MINMAX)  # (h, w, 3) float32
    noise = rng.integers(-3, 4, size=(n, h, w, 3), dtype=np.int16)
    frames = np.clip(bg.astype(np.int16)[None] + noise, 0, 255).astype(np.uint8)
    side = max(2, min(h, w) // 4)
    dy, dx = DIRECTIONS[label % len(DIRECTIONS)]
    y0, x0 = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    colour = np.array([230, 150 + 10 * (label % 8), 60], dtype=np.uint8)
    for t in range(n):
        y = (y0 + dy * t * max(1, side // 2)) % (h - side)
        x = (x0 + dx * t * max(1, side // 2)) % (w - side)
        frames[t, y : y + side, x : x + side] = colour
    return frames


def difference_streams(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stand-ins for the flow and rgbf streams of (T, H, W, 3) uint8 frames, from frame differences (not real
    flow): flow (T-1, H, W, 3) = next - previous + 128, rgbf (T-1, H, W, 3) = RGB scaled by that difference."""
    diff = (rgb[1:].astype(np.int16) - rgb[:-1] + 128).clip(0, 255).astype(np.uint8)
    rgbf = ((rgb[:-1].astype(np.uint16) * (diff // 2 + 64)) // 255).astype(np.uint8)
    return diff, rgbf


def moving_square_shards(
    root: str | Path,
    *,
    num_videos: int,
    num_classes: int,
    frames: int,
    height: int,
    width: int,
    codec: str | None = None,
    shard_size: int = 16,
    seed: int = 0,
) -> Path:
    """Write a shard dataset version of ``num_videos`` moving-square videos (all in split1 train) under
    ``root``; video i has label i % num_classes. The flow and rgbf streams are derived from the RGB frames
    (frame differences), not real flow. Returns the version directory."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(num_videos):
        rgb = moving_frames(frames, height, width, i % num_classes, rng)  # (T, H, W, 3)
        diff, rgbf = difference_streams(rgb)
        videos.append(
            VideoStreams(f"v{i:05d}", {"rgb": rgb, "flow": diff, "rgbf": rgbf}, (i % num_classes,), {"split1": "train"})
        )
    return write_shard_dataset(
        root, videos, [f"class{c}" for c in range(num_classes)], codec=codec, shard_size=shard_size
    )
