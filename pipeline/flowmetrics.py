"""Optical-flow error metrics on channel-last flows (..., H, W, 2): endpoint error and Barron's angular error."""

from __future__ import annotations

import numpy as np


def _pair(flow: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flow, gt = np.asarray(flow, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if flow.shape != gt.shape or flow.shape[-1:] != (2,):
        raise ValueError(f"flow {flow.shape} and gt {gt.shape} must have the same shape (..., H, W, 2)")
    return flow, gt


def epe_map(flow: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel endpoint error |w − w_gt| (..., H, W)."""
    flow, gt = _pair(flow, gt)
    return np.sqrt(np.square(flow - gt).sum(-1))


def angular_error_map(flow: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel angular error in degrees (Barron et al. 1994): angle between (u, v, 1) and (u_gt, v_gt, 1)."""
    flow, gt = _pair(flow, gt)
    num = (flow * gt).sum(-1) + 1.0
    den = np.sqrt((np.square(flow).sum(-1) + 1.0) * (np.square(gt).sum(-1) + 1.0))
    return np.degrees(np.arccos(np.clip(num / den, -1.0, 1.0)))


def epe(flow: np.ndarray, gt: np.ndarray) -> float:
    """Mean endpoint error in pixels."""
    return float(epe_map(flow, gt).mean())


def angular_error(flow: np.ndarray, gt: np.ndarray) -> float:
    """Mean angular error in degrees."""
    return float(angular_error_map(flow, gt).mean())


# ----------------------------------------------------------------------------------- synthetic ground truth
def smooth_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w) float32 in [0, 1]: a sum of Gaussian-smoothed noise octaves (sigma 1, 2, 4, 8 px), image-like."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for sigma, amp in ((1, 0.15), (2, 0.3), (4, 0.6), (8, 1.0)):
        octave = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        img += amp * octave / octave.std()
    return (img - img.min()) / (img.max() - img.min())


def warp_pair(source: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames with exact ground truth: I1 is the centre crop of `source`, I0(x) = I1(x + w(x)).

    source (H + 2m, W + 2m) float32 gray, flow (H, W, 2) with |w| < m: the sampled points stay inside the
    source, so the flow from I0 to I1 is exactly `flow` (up to bicubic interpolation of the source).
    Returns (i0, i1), each (H, W) float32 clipped to [0, 1]."""
    import cv2

    h, w, _ = flow.shape
    m = (source.shape[0] - h) // 2
    if source.shape != (h + 2 * m, w + 2 * m) or m < 1:
        raise ValueError(f"source {source.shape} must be the flow's (H, W) {flow.shape[:2]} plus an equal margin")
    if np.abs(flow).max() >= m - 1:
        raise ValueError(f"flow reaches {np.abs(flow).max():.1f} px, beyond the source margin {m} px")
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    i0 = cv2.remap(
        source.astype(np.float32),
        xs + m + flow[..., 0].astype(np.float32),
        ys + m + flow[..., 1].astype(np.float32),
        cv2.INTER_CUBIC,
    )
    return np.clip(i0, 0, 1), np.ascontiguousarray(source[m : m + h, m : m + w], dtype=np.float32)


def flow_field(kind: str, h: int, w: int) -> np.ndarray:
    """Named smooth test flows (H, W, 2) in pixels: 'zero', 'translate' (2, −1), 'subpixel' (1.3, 0.6),
    'large' (6.5, −4.2), 'affine' (zoom + rotation about the centre), 'sine' (sinusoidal shear)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    x, y = xs - cx, ys - cy
    fields = {
        "zero": (0 * xs, 0 * xs),
        "translate": (0 * xs + 2.0, 0 * xs - 1.0),
        "subpixel": (0 * xs + 1.3, 0 * xs + 0.6),
        "large": (0 * xs + 6.5, 0 * xs - 4.2),
        "affine": (0.5 + 0.04 * x - 0.03 * y, -0.3 + 0.03 * x + 0.04 * y),
        "sine": (1.5 * np.sin(2 * np.pi * ys / h), 1.2 * np.cos(2 * np.pi * xs / w)),
    }
    if kind not in fields:
        raise ValueError(f"unknown flow kind {kind!r}; choose from {sorted(fields)}")
    return np.stack(fields[kind], -1).astype(np.float32)


def layered_pair(
    background: np.ndarray,
    texture: np.ndarray,
    bg_flow: np.ndarray,
    layers: list[tuple[np.ndarray, np.ndarray]],
    band: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Foreground layers (a rigid object or the parts of an articulated one) moving over a background that
    moves differently, with occlusion and disocclusion, and exact ground truth.

    background, texture (H + 2m, W + 2m) float32 gray: the background and the foreground's texture, both
    addressed in I1's pixel coordinates plus the margin m. bg_flow (H, W, 2), |w| < m − 1. layers: back to
    front, (mask (H, W) bool: the part's pixels in I1, A (2, 3): the part's motion, x1 = A @ (x, y, 1) maps a
    pixel x of I0 to I1). I1 = background crop with each part's texture pasted over its mask; I0(x) =
    texture(x1) for the front-most part whose mask holds x1 (nearest pixel), background(x + bg_flow(x))
    elsewhere. band: half-width in px of the boundary band.
    Returns (i0, i1, gt (H, W, 2), valid (H, W) bool, boundary (H, W) bool): valid is False where x + w
    leaves the frame or lands on a surface in front of x's in I1 (occluded); boundary marks the pixels within
    `band` px of a motion boundary of I0 (where the label background / part k changes)."""
    import cv2

    h, w, _ = bg_flow.shape
    m = (background.shape[0] - h) // 2
    if texture.shape != background.shape:
        raise ValueError(f"texture {texture.shape} must have the background's shape {background.shape}")
    i0, i1 = warp_pair(background, bg_flow)
    i1 = i1.copy()
    tex1 = texture[m : m + h, m : m + w]
    label1 = np.full((h, w), -1, np.int32)  # front-most surface of I1: -1 background, k part k
    for k, (mask, _) in enumerate(layers):
        i1[mask] = tex1[mask]
        label1[mask] = k
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gt = bg_flow.astype(np.float32).copy()
    label0 = np.full((h, w), -1, np.int32)
    for k, (mask, a) in enumerate(layers):
        x1 = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
        y1 = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
        rx, ry = np.rint(x1).astype(int), np.rint(y1).astype(int)
        ok = (rx >= 0) & (rx < w) & (ry >= 0) & (ry < h)
        on = np.zeros((h, w), bool)
        on[ok] = mask[ry[ok], rx[ok]]
        label0[on] = k
        gt[on] = np.stack((x1 - xs, y1 - ys), -1)[on]
        part = cv2.remap(texture.astype(np.float32), x1 + m, y1 + m, cv2.INTER_CUBIC)
        i0[on] = np.clip(part[on], 0, 1)
    px, py = xs + gt[..., 0], ys + gt[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    rx, ry = np.clip(np.rint(px), 0, w - 1).astype(int), np.clip(np.rint(py), 0, h - 1).astype(int)
    valid = inside & (label1[ry, rx] <= label0)  # nothing in front of x's surface at x + w in I1
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= label0[:, 1:] != label0[:, :-1]
    edge[:, :-1] |= label0[:, 1:] != label0[:, :-1]
    edge[1:] |= label0[1:] != label0[:-1]
    edge[:-1] |= label0[1:] != label0[:-1]
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    boundary = cv2.dilate(edge.astype(np.uint8), disk).astype(bool)
    return i0, i1, gt, valid, boundary
