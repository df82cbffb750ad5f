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


def moving_object_pair(
    background: np.ndarray,
    obj: np.ndarray,
    bg_flow: np.ndarray,
    box: tuple[int, int, int, int],
    shift: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured rectangle moving over a background that moves differently, with occlusions.

    background (H + 2m, W + 2m) float32, obj (h, w) float32 texture, bg_flow (H, W, 2) with |w| < m − 1,
    box (y, x, h, w): the object's place in I1, shift (dx, dy): its motion, so in I0 it sits at box − shift
    (integer-rounded shift keeps its texture exact). I1 = background crop with the object pasted at box;
    I0(x) = object texture inside the shifted box, background(x + bg_flow(x)) elsewhere.
    Returns (i0, i1, gt (H, W, 2), valid (H, W) bool): valid is False where the background point x + w lies
    under the object in I1 (occluded) or outside the frame."""
    h, w, _ = bg_flow.shape
    i0, i1 = warp_pair(background, bg_flow)
    y, x, oh, ow = box
    dx, dy = int(round(shift[0])), int(round(shift[1]))
    i1 = i1.copy()
    i1[y : y + oh, x : x + ow] = obj
    y0, x0 = y - dy, x - dx
    if not (
        0 <= y0 and y0 + oh <= h and 0 <= x0 and x0 + ow <= w and 0 <= y and y + oh <= h and 0 <= x and x + ow <= w
    ):
        raise ValueError(f"object box {box} shifted by {shift} leaves the {h}x{w} frame")
    i0[y0 : y0 + oh, x0 : x0 + ow] = obj
    gt = bg_flow.copy()
    gt[y0 : y0 + oh, x0 : x0 + ow] = (dx, dy)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    px, py = xs + gt[..., 0], ys + gt[..., 1]
    in_obj0 = np.zeros((h, w), bool)
    in_obj0[y0 : y0 + oh, x0 : x0 + ow] = True
    under = (px >= x - 0.5) & (px <= x + ow - 0.5) & (py >= y - 0.5) & (py <= y + oh - 0.5)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return i0, i1, gt, inside & (in_obj0 | ~under)
