"""RGBF frames (paper eq. 7): each RGB channel times the per-frame min–max normalised flow magnitude.

RGBF[x, y, c] = RGB[x, y, c] · (|F|[x, y] − |F|min) / (|F|max − |F|min), rounded to uint8.

Zero-division rule: when a frame's magnitude range |F|max − |F|min is <= `STATIC_EPS` px (a static shot, or a
pure translation, where the magnitude is constant), there is no evidence of where motion is relative to the
rest of the frame, so the confidence map is all 0 and the RGBF frame is black.
"""

from __future__ import annotations

import numpy as np

STATIC_EPS = 1e-6  # px; magnitude ranges at or below this count as constant


def motion_confidence(flow: np.ndarray) -> np.ndarray:
    """flow (N, H, W, 2) -> float32 (N, H, W) confidence in [0, 1] (min–max normalised magnitude per frame)."""
    mag = np.sqrt(np.square(flow.astype(np.float32)).sum(-1))  # (N, H, W)
    lo = mag.min(axis=(1, 2), keepdims=True)
    rng = mag.max(axis=(1, 2), keepdims=True) - lo
    static = rng <= STATIC_EPS
    conf = (mag - lo) / np.where(static, 1.0, rng)
    return np.where(static, 0.0, conf).astype(np.float32)


def make_rgbf(rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """rgb uint8 (N, H, W, 3) and flow float (N, H, W, 2) (flow i from frame i to i+1) -> uint8 (N, H, W, 3)."""
    rgb, flow = np.asarray(rgb), np.asarray(flow)
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be uint8 (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
    if not np.issubdtype(flow.dtype, np.floating) or flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be float (N, H, W, 2), got {flow.dtype} {flow.shape}")
    if rgb.shape[:3] != flow.shape[:3]:
        raise ValueError(f"rgb {rgb.shape} and flow {flow.shape} must agree on (N, H, W)")
    if not np.isfinite(flow).all():
        raise ValueError("flow contains NaN or inf")
    conf = motion_confidence(flow)[..., None]  # (N, H, W, 1)
    return np.rint(rgb.astype(np.float32) * conf).clip(0, 255).astype(np.uint8)
