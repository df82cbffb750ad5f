"""Flow images (paper section 3.4), Middlebury .flo files and the Middlebury colour-wheel visualisation.

Flow image mapping (`flow_to_image`), per pixel with bound b (default 20 px): 255 levels centred on 128,
  channel 0 = round(127 · clip(u / b, −1, 1)) + 128, channel 1 likewise for v   (values 1..255),
  channel 2 = round(255 · min(|w| / b, 1)) with |w| = sqrt(u² + v²) of the unclipped flow (saturates at b).
Zero flow is exactly 128 and the mapping is odd around it: −u encodes to 256 − q when u encodes to q
(``np.rint`` rounds half to even, which is symmetric), so a horizontal flip of a flow image is exact:
mirror the columns and replace channel 0 by 256 − q (``pipeline.clips.crop``). Value 0 is never written.
Inverse (`image_to_flow`, channels 0 and 1): u = (q − 128) · b / 127, clipped to [−b, b] (so a stray 0
reads as −b); one step is b / 127 px and for |u| <= b the round-trip error is <= b / 254 (half a step).
Channel 2 is redundant for decoding. (Before extraction code version extract-2 the mapping was
round(255 · (u + b) / 2b): 256 levels, zero flow decoded to +b/255 px and flipped to −b/255 px.)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FLO_MAGIC = np.float32(202021.25)


def _check_flow(flow, name: str = "flow") -> np.ndarray:
    """Return flow as float32 (..., H, W, 2); reject wrong shape, dtype or non-finite values."""
    flow = np.asarray(flow)
    if flow.ndim not in (3, 4) or flow.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (H, W, 2) or (N, H, W, 2), got {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"{name} must be a floating array, got dtype {flow.dtype}")
    if not np.isfinite(flow).all():
        raise ValueError(f"{name} contains NaN or inf")
    return flow.astype(np.float32, copy=False)


def _check_bound(bound: float) -> float:
    if not np.isfinite(bound) or bound <= 0:
        raise ValueError(f"bound must be a finite number > 0, got {bound!r}")
    return float(bound)


def flow_to_image(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """flow (N, H, W, 2) or (H, W, 2) float in pixels -> uint8 (..., H, W, 3) flow image (module docstring)."""
    flow, bound = _check_flow(flow), _check_bound(bound)
    out = np.empty(flow.shape[:-1] + (3,), dtype=np.uint8)
    xy = np.rint(np.clip(flow / np.float32(bound), -1.0, 1.0) * 127.0)  # (..., 2) in -127..127, odd in flow
    out[..., :2] = xy + 128
    mag = np.sqrt(np.square(flow).sum(-1))
    out[..., 2] = np.rint(np.minimum(mag / bound, 1.0) * 255.0)
    return out


def image_to_flow(image: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """uint8 flow image (..., H, W, 3) -> float32 flow (..., H, W, 2), the inverse of `flow_to_image` on x, y."""
    image, bound = np.asarray(image), _check_bound(bound)
    if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3) or (N, H, W, 3), got {image.dtype} {image.shape}")
    q = image[..., :2].astype(np.float32) - np.float32(128)  # (..., 2) in -128..127
    return np.clip(q * np.float32(bound / 127.0), -np.float32(bound), np.float32(bound))


def write_flo(path: str | Path, flow: np.ndarray) -> Path:
    """Write one flow field (H, W, 2) as a Middlebury .flo file (magic, width, height, u v interleaved)."""
    path, flow = Path(path), _check_flow(flow)
    if flow.ndim != 3:
        raise ValueError(f"{path}: write_flo takes one flow (H, W, 2), got {flow.shape}")
    h, w, _ = flow.shape
    with open(path, "wb") as f:
        f.write(FLO_MAGIC.tobytes())
        f.write(np.array([w, h], dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(flow, dtype="<f4").tobytes())
    return path


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury .flo file -> float32 (H, W, 2); ValueError naming the file on a bad magic or size."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise ValueError(f"{path}: not a .flo file (only {len(data)} bytes)")
    magic = np.frombuffer(data, dtype="<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise ValueError(f"{path}: bad .flo magic {magic!r}, expected 202021.25")
    w, h = (int(x) for x in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    if w <= 0 or h <= 0 or len(data) != 12 + 8 * w * h:
        raise ValueError(f"{path}: header says {w}x{h} but the file holds {len(data) - 12} bytes of flow")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(h, w, 2).astype(np.float32)


def color_wheel() -> np.ndarray:
    """Baker et al. (Middlebury) colour wheel: (55, 3) float RGB in [0, 255]; segments RY 15, YG 6, GC 4,
    CB 11, BM 13, MR 6."""
    ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6

    def ramp(n):  # 0 .. <255 in n steps, floored as in the original
        return np.floor(255 * np.arange(n) / n)

    def full(n):
        return np.full(n, 255.0)

    def zero(n):
        return np.zeros(n)

    return np.concatenate(
        [
            np.stack([full(ry), ramp(ry), zero(ry)], 1),  # red -> yellow
            np.stack([255 - ramp(yg), full(yg), zero(yg)], 1),  # yellow -> green
            np.stack([zero(gc), full(gc), ramp(gc)], 1),  # green -> cyan
            np.stack([zero(cb), 255 - ramp(cb), full(cb)], 1),  # cyan -> blue
            np.stack([ramp(bm), zero(bm), full(bm)], 1),  # blue -> magenta
            np.stack([full(mr), zero(mr), 255 - ramp(mr)], 1),  # magenta -> red
        ]
    )


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """One flow (H, W, 2) -> uint8 (H, W, 3) RGB in Middlebury colours: hue = direction, saturation = |w| /
    max_flow (default: the largest |w| in the field); |w| > max_flow is drawn darker (factor 0.75)."""
    flow = _check_flow(flow)
    if flow.ndim != 3:
        raise ValueError(f"flow_to_color takes one flow (H, W, 2), got {flow.shape}")
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    rad = np.sqrt(u * u + v * v)
    if max_flow is None:
        max_flow = float(rad.max())
    elif not np.isfinite(max_flow) or max_flow < 0:
        raise ValueError(f"max_flow must be a finite number >= 0, got {max_flow!r}")
    scale = max_flow if max_flow > 0 else 1.0
    u, v, rad = u / scale, v / scale, rad / scale
    wheel = color_wheel()
    ncols = len(wheel)
    a = np.arctan2(-v, -u) / np.pi  # (-1, 1]
    fk = (a + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    f = (fk - k0)[..., None]
    col = ((1 - f) * wheel[k0] + f * wheel[k1]) / 255.0  # (H, W, 3)
    r = rad[..., None]
    col = np.where(r <= 1, 1 - r * (1 - col), col * 0.75)
    return np.rint(col * 255).astype(np.uint8)


def write_color_png(path: str | Path, flow: np.ndarray, max_flow: float | None = None) -> Path:
    """Write `flow_to_color(flow)` as a PNG; OSError naming the file if OpenCV cannot write it."""
    path = Path(path)
    rgb = flow_to_color(flow, max_flow)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: OpenCV could not write the PNG")
    return path
