"""Brox et al. 2004 optical flow, batched, in PyTorch, run the way OpenCV's CUDA BroxOpticalFlow runs it.

Energy  E(w) = ∫ Ψ(|I1(x+w)−I0(x)|² + γ|∇I1(x+w)−∇I0(x)|²) + α Ψ(|∇u|²+|∇v|²),  Ψ'(s²) = 0.5/sqrt(s²+ε²).

Coarse to fine over an area-averaged pyramid (factor `scale`, levels while both sides stay > 15 px, at most
`outer` levels, one warp per level). Per level: 5-tap derivatives {1,−8,0,8,−1}/12 with mirrored borders,
bilinear warp of I1 and its derivatives at x+w, then `inner` lagged fixed-point iterations (robust data and
smoothness weights recomputed from du, dv) each followed by `solver` red–black SOR sweeps (ω = 1.99) on the
linear system for the increment (du, dv). The flow is then upsampled bicubically to the next finer level.
See docs/flow.md for the exact discretisation.

Convention: `brox_flow(prev, next)` returns w = (u, v) in pixels with prev(x) ≈ next(x + w(x)).
All pairs of a batch are solved together; loops run over levels and iterations only.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

EPS2 = 1e-6         # ε² of the robust penalty
OMEGA = 1.99        # SOR over-relaxation
MIN_LEVEL = 15      # a pyramid level whose width or height would be <= this is not built
WARP_MODES = ("bilinear", "bicubic")
BORDER_MODES = ("mirror", "ignore")
RANGE_TOL = 1e-3    # inputs may exceed [0, 1] by this much (resampling overshoot); they are clamped


@dataclass(frozen=True)
class BroxParams:
    """Solver parameters; defaults are those of the action-recognition tools (TSN dense_flow, mmaction2)."""
    alpha: float = 0.197   # smoothness weight
    gamma: float = 50.0    # gradient-constancy weight
    scale: float = 0.8     # pyramid scale factor
    inner: int = 10        # lagged fixed-point iterations per level
    outer: int = 77        # maximum number of pyramid levels (one warp per level)
    solver: int = 10       # red–black SOR sweeps per fixed-point iteration
    warp: str = "bilinear"     # interpolation of I1 and its derivatives at x+w: "bilinear" (OpenCV) or "bicubic"
    border: str = "mirror"     # where x+w leaves the frame: "mirror" addressing (OpenCV) or "ignore" (no data term)
    sor: str = "checkerboard"  # SOR layout (same iterates): "checkerboard" masks or "polyphase" sub-images

    def __post_init__(self):
        for name in ("alpha", "gamma", "scale"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, numbers.Real) or not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number, got {val!r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if not 0 < self.scale < 1:
            raise ValueError(f"scale must be in (0, 1), got {self.scale}")
        for name, choices in (("warp", WARP_MODES), ("border", BORDER_MODES), ("sor", tuple(SOR_SOLVERS))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("inner", "outer", "solver"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")


def pyramid_sizes(h: int, w: int, scale: float = 0.8, outer: int = 77) -> list[tuple[int, int]]:
    """Level sizes (h, w), finest first: each is ceil(previous · scale); stop at `outer` levels or when a
    side would be <= 15 px. The finest level is always kept, so tiny frames get a single level."""
    sizes = [(h, w)]
    while len(sizes) < outer:
        lh, lw = math.ceil(sizes[-1][0] * scale), math.ceil(sizes[-1][1] * scale)
        if lh <= MIN_LEVEL or lw <= MIN_LEVEL:
            break
        sizes.append((lh, lw))
    return sizes


# ----------------------------------------------------------------------------------------------- input checks
def _as_batch(name: str, x) -> torch.Tensor:
    """Validate one input and return it as float32 (B, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    if x.shape[1] < 3 or x.shape[2] < 3:
        raise ValueError(f"{name}: frames must be at least 3x3 pixels, got {tuple(x.shape[1:])}")
    x = x.float()
    if x.numel():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_TOL or hi > 1 + RANGE_TOL:
            raise ValueError(f"{name} must be gray values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return x.clamp(0, 1)


# ----------------------------------------------------------------------------------------------- building blocks
def _dx(t: torch.Tensor) -> torch.Tensor:
    """x derivative of (B, H, W) with the 5-tap kernel {1, -8, 0, 8, -1}/12, mirrored borders."""
    p = F.pad(t[:, None], (2, 2, 0, 0), mode="reflect")[:, 0]
    return ((p[..., 3:-1] - p[..., 1:-3]) * 8 + p[..., :-4] - p[..., 4:]) * (1 / 12)


def _dy(t: torch.Tensor) -> torch.Tensor:
    """y derivative of (B, H, W), same kernel and borders as `_dx`."""
    p = F.pad(t[:, None], (0, 0, 2, 2), mode="reflect")[:, 0]
    return ((p[:, 3:-1] - p[:, 1:-3]) * 8 + p[:, :-4] - p[:, 4:]) * (1 / 12)


def _warp(stack: torch.Tensor, u: torch.Tensor, v: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample stack (B, C, H, W) at (x + u, y + v) with `mode` interpolation, mirror addressing outside the
    frame. Returns (warped (B, C, H, W), inside (B, H, W) bool: the sample point lies within the frame)."""
    b, _, h, w = stack.shape
    xs = torch.arange(w, device=u.device, dtype=u.dtype)
    ys = torch.arange(h, device=u.device, dtype=u.dtype)
    px, py = u + xs, v + ys[:, None]                        # (B, H, W) sample points in pixels
    inside = (px >= -1e-3) & (px <= w - 1 + 1e-3) & (py >= -1e-3) & (py <= h - 1 + 1e-3)
    grid = torch.stack((px * (2 / (w - 1)) - 1, py * (2 / (h - 1)) - 1), dim=-1)   # (B, H, W, 2) in [-1, 1]
    return F.grid_sample(stack, grid, mode=mode, padding_mode="reflection", align_corners=True), inside


def _smoothness(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust smoothness weights 0.5/sqrt(|∇u|²+|∇v|²+ε²) on the staggered grid from uv (B, 2, H, W).

    Returns (horizontal links (B, H, W-1) between x and x+1, vertical links (B, H-1, W) between y and y+1);
    the derivative across a link is a difference, the one along it an average of central differences."""
    p = F.pad(uv, (1, 1, 1, 1), mode="replicate")           # (B, 2, H+2, W+2)
    gx = uv[..., :, 1:] - uv[..., :, :-1]                   # (B, 2, H, W-1)
    gy = (p[..., 2:, 1:-2] + p[..., 2:, 2:-1] - p[..., :-2, 1:-2] - p[..., :-2, 2:-1]) * 0.25
    hx = (gx.square_() + gy.square_()).sum(1).add_(EPS2).rsqrt_().mul_(0.5)
    gy = uv[..., 1:, :] - uv[..., :-1, :]                   # (B, 2, H-1, W)
    gx = (p[..., 1:-2, 2:] + p[..., 2:-1, 2:] - p[..., 1:-2, :-2] - p[..., 2:-1, :-2]) * 0.25
    vy = (gx.square_() + gy.square_()).sum(1).add_(EPS2).rsqrt_().mul_(0.5)
    return hx, vy


def _divergence(hx: torch.Tensor, vy: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Σ_n s_n (uv_n − uv) over the 4 neighbours, for uv (B, 2, H, W) and link weights from `_smoothness`."""
    fx = hx[:, None] * (uv[..., :, 1:] - uv[..., :, :-1])   # (B, 2, H, W-1) flux across horizontal links
    fy = vy[:, None] * (uv[..., 1:, :] - uv[..., :-1, :])   # (B, 2, H-1, W)
    return F.pad(fx, (0, 1)) - F.pad(fx, (1, 0)) + F.pad(fy, (0, 0, 0, 1)) - F.pad(fy, (0, 0, 1, 0))


def _checkerboard(h: int, w: int, device) -> torch.Tensor:
    """(H, W) bool, True where (y + x) is even (the 'red' pixels)."""
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    return (ys + xs) % 2 == 0


def _sor_checkerboard(duv: torch.Tensor, hx: torch.Tensor, vy: torch.Tensor, d11: torch.Tensor, d22: torch.Tensor,
         a12: torch.Tensor, rhs: torch.Tensor, sweeps: int, red: torch.Tensor) -> None:
    """Red–black SOR on (d11 du + a12 dv − Σ s_n du_n = rhs_u, a12 du + d22 dv − Σ s_n dv_n = rhs_v), in place.

    duv (B, 2, H+2, W+2): the increment with a one-pixel frame (kept 0; its link weights are 0).
    hx (B, H, W-1), vy (B, H-1, W): link weights; d11, d22, a12 (B, H, W); rhs (B, 2, H, W); red (H, W) bool.
    Each colour updates du then dv at its pixels (Gauss–Seidel within the pixel), fully vectorised: the
    update is computed on the whole grid and blended by the colour mask."""
    sw = F.pad(hx, (1, 0))[:, None]                         # (B, 1, H, W) weight to the west neighbour
    se = F.pad(hx, (0, 1))[:, None]
    sn = F.pad(vy, (0, 0, 1, 0))[:, None]
    ss = F.pad(vy, (0, 0, 0, 1))[:, None]
    du, dv = duv[:, 0, 1:-1, 1:-1], duv[:, 1, 1:-1, 1:-1]   # (B, H, W) views into duv
    west, east = duv[:, :, 1:-1, :-2], duv[:, :, 1:-1, 2:]
    north, south = duv[:, :, :-2, 1:-1], duv[:, :, 2:, 1:-1]
    neg_a12 = -a12
    colours = []
    for mask in (red, ~red):
        m = mask.to(d11.dtype)                              # (H, W) 1 on this colour
        keep = 1 - OMEGA * m                                # du <- keep·du + k·(...)
        colours.append((keep, (OMEGA * m) / d11, (OMEGA * m) / d22))
    for _ in range(sweeps):
        for keep, k11, k22 in colours:
            sig = torch.addcmul(rhs, sw, west)              # (B, 2, H, W) rhs + Σ s_n duv_n
            sig.addcmul_(se, east).addcmul_(sn, north).addcmul_(ss, south)
            su, sv = sig[:, 0], sig[:, 1]
            su.addcmul_(neg_a12, dv)
            du.mul_(keep).addcmul_(k11, su)
            sv.addcmul_(neg_a12, du)
            dv.mul_(keep).addcmul_(k22, sv)


# Polyphase layout: the frame split into 4 sub-images by (row parity, column parity), slots ordered
# [(0,0), (1,1), (0,1), (1,0)]; red = slots 0, 1, black = slots 2, 3. Each neighbour of a slot lies in one
# other slot at a fixed offset: _NEIGHBOURS[slot] = (source slot, row offset, column offset) for W, E, N, S.
_NEIGHBOURS = (((2, 0, -1), (2, 0, 0), (3, -1, 0), (3, 0, 0)),
               ((3, 0, 0), (3, 0, 1), (2, 0, 0), (2, 1, 0)),
               ((0, 0, 0), (0, 0, 1), (1, -1, 0), (1, 0, 0)),
               ((1, 0, -1), (1, 0, 0), (0, 0, 0), (0, 1, 0)))


def _to_polyphase(x: torch.Tensor, h2: int, w2: int) -> torch.Tensor:
    """(..., H, W) -> (..., 4, H2, W2), zero-padded to (2·H2, 2·W2) first."""
    x = F.pad(x, (0, 2 * w2 - x.shape[-1], 0, 2 * h2 - x.shape[-2]))
    return torch.stack((x[..., 0::2, 0::2], x[..., 1::2, 1::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2]), dim=-3)


def _sor_polyphase(duv: torch.Tensor, hx: torch.Tensor, vy: torch.Tensor, d11: torch.Tensor, d22: torch.Tensor,
                   a12: torch.Tensor, rhs: torch.Tensor, sweeps: int, red: torch.Tensor) -> None:
    """Same sweeps as `_sor_checkerboard` (same arguments), computed only at the pixels of each colour: the
    system is rearranged into the polyphase layout, so every update touches a quarter-size sub-image.
    Half the arithmetic and memory traffic, twice the kernel launches. Padding pixels get k = 0 and stay 0."""
    b, _, hp, wp = duv.shape
    h, w = hp - 2, wp - 2
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    weights = torch.stack((F.pad(hx, (1, 0)), F.pad(hx, (0, 1)), F.pad(vy, (0, 0, 1, 0)), F.pad(vy, (0, 0, 0, 1))), 1)
    s = _to_polyphase(weights, h2, w2)                                  # (B, 4 dirs, 4 slots, H2, W2)
    k = _to_polyphase(torch.stack((OMEGA / d11, OMEGA / d22), 1), h2, w2)   # (B, 2, 4, H2, W2)
    na = _to_polyphase(-a12, h2, w2)                                    # (B, 4, H2, W2)
    r = _to_polyphase(rhs, h2, w2)                                      # (B, 2, 4, H2, W2)
    P = duv.new_zeros(b, 2, 4, h2 + 2, w2 + 2)                          # increment with a zero frame
    P[..., 1:-1, 1:-1] = _to_polyphase(duv[:, :, 1:-1, 1:-1], h2, w2)
    plan = []
    for slot, nbrs in enumerate(_NEIGHBOURS):
        views = [P[:, :, src, 1 + dr:1 + dr + h2, 1 + dc:1 + dc + w2] for src, dr, dc in nbrs]
        plan.append((P[:, :, slot, 1:-1, 1:-1], views, s[:, :, slot, None], k[:, :, slot], na[:, slot], r[:, :, slot]))
    for _ in range(sweeps):
        for slot in (0, 1, 2, 3):                                        # red slots, then black
            centre, (west, east, north, south), sw, kk, na_s, r_s = plan[slot]
            sig = torch.addcmul(r_s, sw[:, 0], west)                    # (B, 2, H2, W2)
            sig.addcmul_(sw[:, 1], east).addcmul_(sw[:, 2], north).addcmul_(sw[:, 3], south)
            du, dv = centre[:, 0], centre[:, 1]
            sig[:, 0].addcmul_(na_s, dv)
            du.mul_(1 - OMEGA).addcmul_(kk[:, 0], sig[:, 0])
            sig[:, 1].addcmul_(na_s, du)
            dv.mul_(1 - OMEGA).addcmul_(kk[:, 1], sig[:, 1])
    out = duv[:, :, 1:-1, 1:-1]
    q = P[..., 1:-1, 1:-1]
    out[..., 0::2, 0::2] = q[:, :, 0, :(h + 1) // 2, :(w + 1) // 2]
    out[..., 1::2, 1::2] = q[:, :, 1, :h // 2, :w // 2]
    out[..., 0::2, 1::2] = q[:, :, 2, :(h + 1) // 2, :w // 2]
    out[..., 1::2, 0::2] = q[:, :, 3, :h // 2, :(w + 1) // 2]


SOR_SOLVERS = {"checkerboard": _sor_checkerboard, "polyphase": _sor_polyphase}


def _solve_level(i0: torch.Tensor, i1: torch.Tensor, uv: torch.Tensor, p: BroxParams) -> torch.Tensor:
    """One pyramid level: warp once, `inner` fixed-point iterations of `solver` SOR sweeps; returns uv + duv."""
    b, h, w = i0.shape
    ix0, iy0 = _dx(i0), _dy(i0)
    ix1, iy1 = _dx(i1), _dy(i1)
    stack = torch.stack((i1, ix1, iy1, _dx(ix1), _dy(ix1), _dy(iy1)), dim=1)   # (B, 6, H, W)
    ws, inside = _warp(stack, uv[:, 0], uv[:, 1], p.warp)
    ix, iy, ixx, ixy, iyy = ws[:, 1], ws[:, 2], ws[:, 3], ws[:, 4], ws[:, 5]
    iz, ixz, iyz = ws[:, 0] - i0, ix - ix0, iy - iy0
    g = p.gamma
    # data term coefficients without the robust weight (B, H, W)
    a11 = ix * ix + g * (ixx * ixx + ixy * ixy)
    a12 = ix * iy + g * (ixx * ixy + ixy * iyy)
    a22 = iy * iy + g * (ixy * ixy + iyy * iyy)
    b12 = -torch.stack((ix * iz + g * (ixx * ixz + ixy * iyz),
                        iy * iz + g * (ixy * ixz + iyy * iyz)), dim=1)            # (B, 2, H, W)
    if p.border == "ignore":        # no data term where x+w left the frame: smoothness fills the flow in
        m = inside.to(a11.dtype)
        a11, a12, a22, b12 = a11 * m, a12 * m, a22 * m, b12 * m[:, None]
    duv = uv.new_zeros(b, 2, h + 2, w + 2)
    inc = duv[:, :, 1:-1, 1:-1]                                                   # (B, 2, H, W) view
    red = _checkerboard(h, w, uv.device)
    sor = SOR_SOLVERS[p.sor]
    inv_alpha_half = 0.5 / p.alpha
    for _ in range(p.inner):
        du, dv = inc[:, 0], inc[:, 1]
        q0 = iz + ix * du + iy * dv
        q1 = ixz + ixx * du + ixy * dv
        q2 = iyz + ixy * du + iyy * dv
        psi = (q1.square_().add_(q2.square_())).mul_(g).addcmul_(q0, q0).add_(EPS2).rsqrt_().mul_(inv_alpha_half)
        tot = uv + inc
        hx, vy = _smoothness(tot)
        ssum = F.pad(hx, (1, 0)) + F.pad(hx, (0, 1)) + F.pad(vy, (0, 0, 1, 0)) + F.pad(vy, (0, 0, 0, 1))
        rhs = _divergence(hx, vy, uv).addcmul_(psi[:, None], b12)
        sor(duv, hx, vy, torch.addcmul(ssum, psi, a11), torch.addcmul(ssum, psi, a22), psi * a12, rhs,
             p.solver, red)
    return uv + inc


def brox_flow(prev: torch.Tensor, next: torch.Tensor, **params) -> torch.Tensor:
    """Dense flow (B, 2, H, W) float32 in pixels with prev(x) ≈ next(x + w(x)), on prev's device.

    prev, next: float tensors (B, H, W) or (B, 1, H, W), gray values in [0, 1].
    params: alpha, gamma, scale, inner, outer, solver, warp, border, sor (see `BroxParams`).
    B = 0 gives an empty result."""
    p = BroxParams(**params)
    i0, i1 = _as_batch("prev", prev), _as_batch("next", next)
    if i0.shape != i1.shape:
        raise ValueError(f"prev and next must have the same shape, got {tuple(i0.shape)} and {tuple(i1.shape)}")
    if i0.device != i1.device:
        raise ValueError(f"prev and next must be on the same device, got {i0.device} and {i1.device}")
    b, h, w = i0.shape
    if b == 0:
        return i0.new_zeros(0, 2, h, w)
    with torch.no_grad():
        sizes = pyramid_sizes(h, w, p.scale, p.outer)
        pyr = [torch.stack((i0, i1), dim=1)]                                      # (B, 2, H, W) per level
        for size in sizes[1:]:
            pyr.append(F.interpolate(pyr[-1], size=size, mode="area"))
        uv = None
        for k in range(len(sizes) - 1, -1, -1):
            lh, lw = sizes[k]
            if uv is None:
                uv = i0.new_zeros(b, 2, lh, lw)
            else:
                ch, cw = uv.shape[-2:]
                uv = F.interpolate(uv, size=(lh, lw), mode="bicubic", align_corners=False)
                uv[:, 0] *= lw / cw
                uv[:, 1] *= lh / ch
            uv = _solve_level(pyr[k][:, 0], pyr[k][:, 1], uv, p)
    return uv


def rgb_to_gray(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) float32 gray in [0, 1] (ITU-R BT.601 weights, as cv2)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=frames.device, dtype=torch.float32)
    return (frames.float() @ w).mul_(1 / 255).clamp_(0, 1)


class BroxFlow:
    """Flow stage: configured once, applied per video.

    `BroxFlow(device=None, max_batch=None, **params)(frames uint8 (T, H, W, 3) RGB) -> np.float32 (T-1, H, W, 2)`,
    flow i from frame i to frame i+1 in pixels; pairs are solved `max_batch` at a time on `device` (CUDA when
    available if None). max_batch None: 8 on CPU (larger batches gain nothing there, docs/benchmarks/flow.md),
    64 on CUDA."""

    def __init__(self, device: str | torch.device | None = None, max_batch: int | None = None, **params):
        self.params = asdict(BroxParams(**params))
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if max_batch is None:
            max_batch = 64 if self.device.type == "cuda" else 8
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.max_batch = int(max_batch)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
        t, h, w, _ = frames.shape
        out = np.empty((max(t - 1, 0), h, w, 2), dtype=np.float32)
        for s in range(0, t - 1, self.max_batch):
            e = min(s + self.max_batch, t - 1)                                     # pairs s..e-1
            gray = rgb_to_gray(torch.from_numpy(frames[s:e + 1]).to(self.device))   # (n+1, H, W)
            uv = brox_flow(gray[:-1], gray[1:], **self.params)                     # (n, 2, H, W)
            out[s:e] = uv.permute(0, 2, 3, 1).cpu().numpy()
        return out
