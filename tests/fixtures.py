"""Synthetic shard datasets for the tests (the moving-square frames come from jobs.demokit.shards).

Frames are made so that a network can learn the class (a bright square moving in a class-specific
direction over noise), or, with ``coords=True``, so that every pixel tells where it came from
(channel 0 = row, 1 = column, 2 = frame index + 30 * video number; exact for <= 8 videos of <= 30
frames) for exact crop/flip checks.
Written with ``manifests.shards.write_shard_dataset`` (the storage codec default unless given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jobs.demokit.shards import difference_streams, moving_frames
from manifests.shards import FailureRecord, VideoStreams, write_shard_dataset


def coord_frames(n: int, h: int, w: int, video: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 with pixel (t, y, x) = (y, x, t + 30 * video)."""
    t, y, x = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([y, x, t + 30 * video], axis=-1).astype(np.uint8)


def synthetic_shards(
    root: str | Path,
    *,
    num_videos: int = 8,
    num_classes: int = 2,
    frames: int | Sequence[int] = 10,
    height: int = 20,
    width: int = 26,
    coords: bool = False,
    multilabel: bool = False,
    test_every: int = 4,
    codec: str | None = None,
    shard_size: int = 8,
    seed: int = 0,
    failures: Sequence[FailureRecord] = (),
) -> Path:
    """Write a shard dataset version under ``root``; returns the version directory.

    Video i has label i % num_classes (plus (i + 1) % num_classes when ``multilabel`` and i is even),
    ``frames`` (or ``frames[i]``) RGB frames, split1 = test for every ``test_every``-th video, else train.
    The flow and rgbf streams are derived from the RGB frames (frame differences), not real flow.
    ``failures`` are written to the version's failures table as given.
    """
    rng = np.random.default_rng(seed)
    labels = [f"class{c}" for c in range(num_classes)]
    videos = []
    for i in range(num_videos):
        n = frames[i] if isinstance(frames, Sequence) else frames
        lab = (i % num_classes,)
        if multilabel and i % 2 == 0:
            lab = lab + ((i + 1) % num_classes,)
        rgb = coord_frames(n, height, width, i) if coords else moving_frames(n, height, width, lab[0], rng)
        diff, rgbf = difference_streams(rgb)  # (n-1, H, W, 3) each
        rgbf = rgb[:-1] if coords else rgbf
        split = "test" if i % test_every == test_every - 1 else "train"
        videos.append(
            VideoStreams(
                f"v{i:03d}",
                {"rgb": rgb, "flow": diff if not coords else rgb[1:], "rgbf": rgbf},
                lab,
                {"split1": split, "split2": "train" if split == "test" else "test"},
            )
        )
    return write_shard_dataset(root, videos, labels, codec=codec, shard_size=shard_size, failures=failures)
