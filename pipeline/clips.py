"""Clip sampling and spatial crops for training and testing (paper section 4.3), as pure functions.

Temporal sampling
    * Training: one clip of ``clip_len`` consecutive frames at a uniformly random start.
    * Testing: ``num_clips`` (25) clips whose starts are evenly spaced over ``[0, n - clip_len]``
      (``round(linspace(...))``), so the first clip starts at frame 0 and the last one ends at the last frame.
    * Short videos (``n < clip_len``): the video is *looped* — frame indices are taken modulo ``n``
      (0, 1, ..., n-1, 0, 1, ...); every clip of such a video starts at 0. Looping keeps the motion
      statistics of real frames (padding with a repeated last frame would create a frozen tail).

Windows (extraction with ``--segments``, ``pipeline.sampling``): a video's frames are several runs of
consecutive frames with gaps between them; a clip never spans two runs. The clip starts of all windows
(``max(n_w - clip_len, 0) + 1`` each) are laid end to end: training draws one uniformly among them, testing
takes ``num_clips`` evenly spaced ones (``round(linspace)`` over that axis). A window shorter than the clip
is looped within itself. With one window both rules are exactly the ones above (same random draws).

Spatial crops (frames stored at 128x171, crops 112x112)
    Five positions: ``center`` ((H-s)//2, (W-s)//2) and the four corners ``tl``, ``tr``, ``bl``, ``br``.
    * Training ("corner cropping", mmaction2 MultiScaleCrop with a single scale 1.0 and fixed offsets):
      a position chosen uniformly among the five, then a horizontal flip with probability 0.5. The same
      crop and flip apply to every frame of the clip.
    * Testing: the ten standard crops — the five positions, then the same five flipped (in that order).

Horizontal flip of a *flow image* (``pipeline.flowimage``: channel 0 encodes the x displacement u as
``q = round(127 * clip(u / bound, -1, 1)) + 128``, odd around 128) also negates the x displacement:
channel 0 becomes ``256 - q``, exactly the encoding of ``-u`` (a 0, never written, becomes 255). RGB and
RGBF frames are plain images and are only mirrored.
"""

from __future__ import annotations

import numpy as np

POSITIONS = ("center", "tl", "tr", "bl", "br")


def clip_indices(n_frames: int, start: int, clip_len: int) -> np.ndarray:
    """Frame indices (clip_len,) of the clip starting at ``start``; looped modulo n for short videos."""
    if n_frames < 1:
        raise ValueError(f"cannot sample a clip from a video with {n_frames} frames")
    return (start + np.arange(clip_len)) % n_frames


def random_start(n_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """Uniform clip start in ``[0, n - clip_len]`` (0 when the video is shorter than the clip)."""
    return int(rng.integers(0, max(n_frames - clip_len, 0) + 1))


def evenly_spaced_starts(n_frames: int, clip_len: int, num_clips: int = 25) -> np.ndarray:
    """Starts (num_clips,) of evenly spaced test clips (all 0 when the video is shorter than the clip)."""
    last = max(n_frames - clip_len, 0)
    return np.round(np.linspace(0, last, num_clips)).astype(np.int64)


def _locate(lengths: list[int], clip_len: int, pos: int) -> tuple[int, int]:
    """(window, start) of position ``pos`` on the axis of all windows' clip starts."""
    for w, n in enumerate(lengths):
        k = max(n - clip_len, 0) + 1
        if pos < k:
            return w, pos
        pos -= k
    raise IndexError(f"clip start position out of range for windows {lengths}")


def window_random_start(lengths: list[int], clip_len: int, rng: np.random.Generator) -> tuple[int, int]:
    """Training: (window, start in it), uniform over every clip start of every window (module docstring)."""
    if len(lengths) == 1:
        return 0, random_start(lengths[0], clip_len, rng)
    total = sum(max(n - clip_len, 0) + 1 for n in lengths)
    return _locate(lengths, clip_len, int(rng.integers(0, total)))


def window_test_starts(lengths: list[int], clip_len: int, num_clips: int = 25) -> list[tuple[int, int]]:
    """Testing: ``num_clips`` (window, start) pairs evenly spaced over all windows' clip starts."""
    if len(lengths) == 1:
        return [(0, int(s)) for s in evenly_spaced_starts(lengths[0], clip_len, num_clips)]
    total = sum(max(n - clip_len, 0) + 1 for n in lengths)
    return [_locate(lengths, clip_len, int(p)) for p in np.round(np.linspace(0, total - 1, num_clips))]


def crop_offset(height: int, width: int, size: int, position: str) -> tuple[int, int]:
    """(y, x) top-left corner of a ``size``x``size`` crop at ``position`` (one of POSITIONS)."""
    if size > height or size > width:
        raise ValueError(f"crop {size} larger than frame {height}x{width}")
    if position == "center":
        return (height - size) // 2, (width - size) // 2
    if position not in POSITIONS:
        raise ValueError(f"unknown crop position {position!r}; expected one of {POSITIONS}")
    y = 0 if position[0] == "t" else height - size
    x = 0 if position[1] == "l" else width - size
    return y, x


def crop(clip: np.ndarray, y: int, x: int, size: int, flip: bool, flow: bool = False) -> np.ndarray:
    """Crop (T, H, W, C) uint8 to (T, size, size, C); ``flip`` mirrors horizontally (see module doc).

    Returns a view of ``clip`` (no copy; ``normalize`` makes the one copy) except for flipped flow."""
    out = clip[:, y : y + size, x : x + size]
    if flip:
        out = out[:, :, ::-1]
        if flow:
            out = out.copy()
            out[..., 0] = np.minimum(256 - out[..., 0].astype(np.int16), 255)  # -u; 0 (unused) -> 255
    return out


def random_crop_params(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int, bool]:
    """Training crop: (y, x, flip) with a position uniform over POSITIONS and a flip with p=0.5."""
    position = POSITIONS[int(rng.integers(len(POSITIONS)))]
    y, x = crop_offset(height, width, size, position)
    return y, x, bool(rng.integers(2))


def ten_crop_params(height: int, width: int, size: int, num_crops: int = 10) -> list[tuple[int, int, bool]]:
    """Test crops: the five positions unflipped, then flipped; ``num_crops`` in {1, 5, 10} keeps a prefix
    (1 = centre only, 5 = unflipped positions)."""
    if num_crops not in (1, 5, 10):
        raise ValueError(f"num_crops must be 1, 5 or 10, got {num_crops}")
    params = [(*crop_offset(height, width, size, p), f) for f in (False, True) for p in POSITIONS]
    return params[:num_crops]


def normalize(clip: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(T, H, W, C) uint8 (any strides, e.g. a flipped crop view) -> (C, T, H, W) float32:
    ``(x / 255 - mean) / std`` per channel, computed as ``x * a + b`` straight into the output planes."""
    out = np.empty((clip.shape[3], *clip.shape[:3]), dtype=np.float32)  # (C, T, H, W)
    for c in range(clip.shape[3]):
        np.multiply(clip[..., c], np.float32(1 / (255 * std[c])), out=out[c], dtype=np.float32)
        out[c] += np.float32(-mean[c] / std[c])
    return out
