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
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import sornative

EPS2 = 1e-6  # ε² of the robust penalty
OMEGA = 1.99  # SOR over-relaxation
MIN_LEVEL = 15  # a pyramid level whose width or height would be <= this is not built
WARP_MODES = ("bilinear", "bicubic")
BORDER_MODES = ("mirror", "ignore")
LIGHTING_MODES = ("none", "gain")
WMEDIAN_WARPS = ("each", "last")
RANGE_TOL = 0.1  # inputs may exceed [0, 1] by this much (bicubic resampling overshoot); they are clamped


@dataclass(frozen=True)
class BroxParams:
    """Solver parameters. The field defaults are OpenCV's CUDA BroxOpticalFlow as the action-recognition tools
    (TSN dense_flow, mmaction2) call it, i.e. the `opencv` preset; `brox_params` resolves a named preset."""

    alpha: float = 0.197  # smoothness weight
    gamma: float = 50.0  # gradient-constancy weight
    scale: float = 0.8  # pyramid scale factor
    inner: int = 10  # lagged fixed-point iterations per warp
    outer: int = 77  # maximum number of pyramid levels
    solver: int = 10  # red–black SOR sweeps per fixed-point iteration
    warp: str = "bilinear"  # interpolation of I1 and its derivatives at x+w: "bilinear" (OpenCV) or "bicubic"
    border: str = "mirror"  # where x+w leaves the frame: "mirror" addressing (OpenCV) or "ignore" (no data term)
    warps: int = 1  # warps per pyramid level (each: re-warp, `inner` fixed-point iterations)
    median: int = 0  # median filter size applied to the flow after each warp (0: off; odd >= 3)
    texture: float = 0.0  # structure-texture pre-filter: I - texture·G_sigma*I (0: off; in [0, 1))
    texture_sigma: float = 3.0  # sigma in px of that pre-filter's Gaussian G_sigma, > 0
    edge: float = 0.0  # smoothness weight times exp(-edge·|∇I0|) across a link (0: off)
    omega: float = 1.99  # SOR over-relaxation, in (0, 2)
    wmedian: int = 0  # weighted median filter size (weights from I0) applied after each warp (0: off; odd >= 3)
    coarse_scale: float = 0.0  # pyramid factor below a shorter side of `coarse_below` px (0: `scale` everywhere)
    coarse_below: int = 48  # px: levels whose shorter side is under this are followed by `coarse_scale` spacing
    wmedian_skip: int = 0  # the finest this many levels get no weighted median (0: every level gets it)
    wmedian_warps: str = "each"  # after "each" warp of a level or after its "last" warp only
    lighting: str = "none"  # "gain": both frames scaled to the same high-pass contrast first (docs/flow.md)

    def __post_init__(self):
        for name in ("alpha", "gamma", "scale", "texture", "texture_sigma", "edge", "omega"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, numbers.Real) or not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number, got {val!r}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if not 0 < self.scale < 1:
            raise ValueError(f"scale must be in (0, 1), got {self.scale}")
        if not 0 <= self.texture < 1:
            raise ValueError(f"texture must be in [0, 1), got {self.texture}")
        if self.texture_sigma <= 0:
            raise ValueError(f"texture_sigma must be > 0, got {self.texture_sigma}")
        if self.edge < 0:
            raise ValueError(f"edge must be >= 0, got {self.edge}")
        if not 0 < self.omega < 2:
            raise ValueError(f"omega must be in (0, 2), got {self.omega}")
        val = self.coarse_scale
        if isinstance(val, bool) or not isinstance(val, numbers.Real) or not (val == 0 or 0 < val < 1):
            raise ValueError(f"coarse_scale must be 0 (off) or in (0, 1), got {val!r}")
        for name, choices in (
            ("warp", WARP_MODES),
            ("border", BORDER_MODES),
            ("wmedian_warps", WMEDIAN_WARPS),
            ("lighting", LIGHTING_MODES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("inner", "outer", "solver", "warps"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        for name in ("coarse_below", "wmedian_skip"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {val!r}")
        for name in ("median", "wmedian"):
            m = getattr(self, name)
            if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not (m == 0 or (m >= 3 and m % 2 == 1)):
                raise ValueError(f"{name} must be 0 (off) or an odd integer >= 3, got {m!r}")


# name -> overrides of the BroxParams defaults. "opencv": OpenCV CUDA BroxOpticalFlow as the paper's tools ran
# it. "accurate" (the default): the refinements of the first ablation in docs/flow.md, half the fixed-point
# iterations, twice the (cheap, native) SOR sweeps at ω = 1.95, where the solve is stable (ω = 1.99 amplifies
# a 1e-6 input change to ~1e-2 px). "boundary": "accurate" retuned for motion boundaries (the second
# ablation): a wider pre-filter Gaussian (σ = 10 px: it removes lighting but keeps more of the texture's
# contrast, so less smoothing bleeds flow across an actor's outline), a smaller α, and fewer, coarser levels
# (scale 0.7) with two warps of 3 fixed-point iterations each, at about the same cost; not the default: on
# held-out frames it lost a 14.6 px translation and trailed DeepFlow at the boundaries (docs/flow.md). "best":
# "accurate" with two warps per level and a 5x5 median filter after each (Sun, Roth and Black 2010).
_ACCURATE = dict(warp="bicubic", border="ignore", texture=0.5, inner=5, solver=20, omega=1.95)
PRESETS: dict[str, dict] = {
    "opencv": {},
    "accurate": _ACCURATE,
    "boundary": dict(_ACCURATE, texture_sigma=10.0, alpha=0.145, scale=0.7, warps=2, inner=3),
    "best": dict(_ACCURATE, warps=2, median=5),
}
DEFAULT_PRESET = "accurate"


def brox_params(preset: str | None = None, **overrides) -> BroxParams:
    """BroxParams of `preset` (None: DEFAULT_PRESET) with `overrides` applied. ValueError naming the preset or
    the parameter for an unknown preset, an unknown parameter or an invalid value."""
    name = DEFAULT_PRESET if preset is None else preset
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
    known = {f.name for f in fields(BroxParams)}
    for key in overrides:
        if key not in known:
            raise ValueError(f"unknown flow parameter {key!r}; known: {', '.join(sorted(known))}")
    return BroxParams(**{**PRESETS[name], **overrides})


@dataclass(frozen=True)
class FlowConfig:
    """A flow configuration resolved once (`resolve`: a preset name plus overrides) and carried typed from the
    command line to the flow stage: the preset it starts from (provenance) and every solver parameter."""

    preset: str = DEFAULT_PRESET
    params: BroxParams = field(default_factory=lambda: BroxParams(**PRESETS[DEFAULT_PRESET]))

    @classmethod
    def resolve(cls, preset: str | None = None, **overrides) -> FlowConfig:
        """ValueError naming the preset or the parameter, as `brox_params`."""
        name = DEFAULT_PRESET if preset is None else preset
        return cls(name, brox_params(name, **overrides))

    def as_dict(self) -> dict[str, Any]:
        """{"preset": name, every BroxParams field}: what configs, manifests and version.json record."""
        return {"preset": self.preset, **asdict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowConfig:
        rest = dict(d)
        return cls(rest.pop("preset"), BroxParams(**rest))


def pyramid_sizes(
    h: int, w: int, scale: float = 0.8, outer: int = 77, coarse_scale: float = 0.0, coarse_below: int = 0
) -> list[tuple[int, int]]:
    """Level sizes (h, w), finest first: each is ceil(previous · scale); stop at `outer` levels or when a
    side would be <= 15 px. The finest level is always kept, so tiny frames get a single level. With
    coarse_scale > 0, a level whose shorter side is under `coarse_below` px is followed by ceil(previous ·
    coarse_scale) instead: a non-uniform pyramid, finer spacing where the levels are small."""
    sizes = [(h, w)]
    while len(sizes) < outer:
        s = coarse_scale if coarse_scale > 0 and min(sizes[-1]) < coarse_below else scale
        lh, lw = math.ceil(sizes[-1][0] * s), math.ceil(sizes[-1][1] * s)
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
    px, py = u + xs, v + ys[:, None]  # (B, H, W) sample points in pixels
    inside = (px >= -1e-3) & (px <= w - 1 + 1e-3) & (py >= -1e-3) & (py <= h - 1 + 1e-3)
    grid = torch.stack((px * (2 / (w - 1)) - 1, py * (2 / (h - 1)) - 1), dim=-1)  # (B, H, W, 2) in [-1, 1]
    return F.grid_sample(stack, grid, mode=mode, padding_mode="reflection", align_corners=True), inside


def _smoothness(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust smoothness weights 0.5/sqrt(|∇u|²+|∇v|²+ε²) on the staggered grid from uv (B, 2, H, W).

    Returns (horizontal links (B, H, W-1) between x and x+1, vertical links (B, H-1, W) between y and y+1);
    the derivative across a link is a difference, the one along it an average of central differences."""
    p = F.pad(uv, (1, 1, 1, 1), mode="replicate")  # (B, 2, H+2, W+2)
    gx = uv[..., :, 1:] - uv[..., :, :-1]  # (B, 2, H, W-1)
    gy = (p[..., 2:, 1:-2] + p[..., 2:, 2:-1] - p[..., :-2, 1:-2] - p[..., :-2, 2:-1]) * 0.25
    hx = (gx.square_() + gy.square_()).sum(1).add_(EPS2).rsqrt_().mul_(0.5)
    gy = uv[..., 1:, :] - uv[..., :-1, :]  # (B, 2, H-1, W)
    gx = (p[..., 1:-2, 2:] + p[..., 2:-1, 2:] - p[..., 1:-2, :-2] - p[..., 2:-1, :-2]) * 0.25
    vy = (gx.square_() + gy.square_()).sum(1).add_(EPS2).rsqrt_().mul_(0.5)
    return hx, vy


def _divergence(hx: torch.Tensor, vy: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Σ_n s_n (uv_n − uv) over the 4 neighbours, for uv (B, 2, H, W) and link weights from `_smoothness`."""
    fx = hx[:, None] * (uv[..., :, 1:] - uv[..., :, :-1])  # (B, 2, H, W-1) flux across horizontal links
    fy = vy[:, None] * (uv[..., 1:, :] - uv[..., :-1, :])  # (B, 2, H-1, W)
    return F.pad(fx, (0, 1)) - F.pad(fx, (1, 0)) + F.pad(fy, (0, 0, 0, 1)) - F.pad(fy, (0, 0, 1, 0))


def _checkerboard(h: int, w: int, device) -> torch.Tensor:
    """(H, W) bool, True where (y + x) is even (the 'red' pixels)."""
    ys = torch.arange(h, device=device)[:, None]
    xs = torch.arange(w, device=device)[None, :]
    return (ys + xs) % 2 == 0


def _sor_checkerboard(
    duv: torch.Tensor,
    hx: torch.Tensor,
    vy: torch.Tensor,
    d11: torch.Tensor,
    d22: torch.Tensor,
    a12: torch.Tensor,
    rhs: torch.Tensor,
    sweeps: int,
    red: torch.Tensor,
    omega: float = OMEGA,
) -> None:
    """Red–black SOR on (d11 du + a12 dv − Σ s_n du_n = rhs_u, a12 du + d22 dv − Σ s_n dv_n = rhs_v), in place.

    duv (B, 2, H+2, W+2): the increment with a one-pixel frame (kept 0; its link weights are 0).
    hx (B, H, W-1), vy (B, H-1, W): link weights; d11, d22, a12 (B, H, W); rhs (B, 2, H, W); red (H, W) bool.
    Each colour updates du then dv at its pixels (Gauss–Seidel within the pixel), fully vectorised: the
    update is computed on the whole grid and blended by the colour mask."""
    sw = F.pad(hx, (1, 0))[:, None]  # (B, 1, H, W) weight to the west neighbour
    se = F.pad(hx, (0, 1))[:, None]
    sn = F.pad(vy, (0, 0, 1, 0))[:, None]
    ss = F.pad(vy, (0, 0, 0, 1))[:, None]
    du, dv = duv[:, 0, 1:-1, 1:-1], duv[:, 1, 1:-1, 1:-1]  # (B, H, W) views into duv
    west, east = duv[:, :, 1:-1, :-2], duv[:, :, 1:-1, 2:]
    north, south = duv[:, :, :-2, 1:-1], duv[:, :, 2:, 1:-1]
    neg_a12 = -a12
    colours = []
    for mask in (red, ~red):
        m = mask.to(d11.dtype)  # (H, W) 1 on this colour
        keep = 1 - omega * m  # du <- keep·du + k·(...)
        colours.append((keep, (omega * m) / d11, (omega * m) / d22))
    for _ in range(sweeps):
        for keep, k11, k22 in colours:
            sig = torch.addcmul(rhs, sw, west)  # (B, 2, H, W) rhs + Σ s_n duv_n
            sig.addcmul_(se, east).addcmul_(sn, north).addcmul_(ss, south)
            su, sv = sig[:, 0], sig[:, 1]
            su.addcmul_(neg_a12, dv)
            du.mul_(keep).addcmul_(k11, su)
            sv.addcmul_(neg_a12, du)
            dv.mul_(keep).addcmul_(k22, sv)


NATIVE_SOR = True  # on CPU, run the SOR sweeps and the weighted median in pipeline/_sor.c when it compiles


def _sor_for(device: torch.device):
    """The SOR routine on `device`: the native loop on CPU when it compiled, else the tensor one."""
    if device.type == "cpu" and NATIVE_SOR and sornative.available():
        return sornative.sor_native
    return _sor_checkerboard


def _median(uv: torch.Tensor, k: int) -> torch.Tensor:
    """k×k median of each flow channel, (B, 2, H, W) -> same, replicated borders (Sun, Roth and Black 2010)."""
    b, c, h, w = uv.shape
    r = k // 2
    p = F.pad(uv, (r, r, r, r), mode="replicate").reshape(b * c, 1, h + 2 * r, w + 2 * r)
    return F.unfold(p, k).median(dim=1).values.reshape(b, c, h, w)  # unfold: (B·2, k², H·W)


WMEDIAN_SIGMA_I = 0.03  # gray-value scale of the weighted median's weights (7.5/255, Sun, Roth and Black 2010)
WMEDIAN_SIGMA_S = 7.0  # spatial scale in px


def _weighted_median(uv: torch.Tensor, i0: torch.Tensor, k: int) -> torch.Tensor:
    """k×k weighted median of each flow channel (B, 2, H, W) -> same, replicated borders. The weight of a
    neighbour x' of x is exp(−|x − x'|²/2σs² − (I0(x) − I0(x'))²/2σi²): flow is taken from pixels that look
    like x, so it does not bleed across an image edge (Sun, Roth and Black 2010, without their occlusion
    factor). Sort, cumulative weight, first value past half the total: no host synchronisation."""
    b, c, h, w = uv.shape
    r = k // 2
    vals = F.unfold(F.pad(uv, (r, r, r, r), mode="replicate").reshape(b * c, 1, h + 2 * r, w + 2 * r), k)
    vals = vals.reshape(b, c, k * k, h * w)  # (B, 2, k², HW)
    nb = F.unfold(F.pad(i0[:, None], (r, r, r, r), mode="replicate"), k)  # (B, k², HW) I0 of the neighbours
    t = torch.arange(-r, r + 1, device=uv.device, dtype=uv.dtype)
    space = ((t[:, None] ** 2 + t[None, :] ** 2).reshape(k * k, 1)) * (-0.5 / WMEDIAN_SIGMA_S**2)  # (k², 1)
    wgt = torch.exp((nb - i0.reshape(b, 1, h * w)).square_().mul_(-0.5 / WMEDIAN_SIGMA_I**2).add_(space))
    sv, idx = vals.sort(dim=2)
    cum = wgt[:, None].expand(b, c, k * k, h * w).gather(2, idx).cumsum_(2)  # (B, 2, k², HW)
    pos = (cum < cum[:, :, -1:] * 0.5).sum(2, keepdim=True).clamp_(max=k * k - 1)
    return sv.gather(2, pos).reshape(b, c, h, w)


def _wmedian_native(uv: torch.Tensor, i0: torch.Tensor, k: int) -> torch.Tensor:
    return sornative.wmedian_native(uv, i0, k, WMEDIAN_SIGMA_S, WMEDIAN_SIGMA_I)


def _wmedian_for(device: torch.device, k: int):
    """The k×k weighted median on `device`: the native loop on CPU when it compiled and k <= 7 (the same
    values up to float rounding of the weight sums), else the tensor one."""
    if device.type == "cpu" and NATIVE_SOR and sornative.available() and k <= sornative.WMEDIAN_MAX_K:
        return _wmedian_native
    return _weighted_median


def _edge_links(i0: torch.Tensor, edge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Link factors exp(−edge·|∇I0|) with |∇I0| averaged over the link's two pixels: (B, H, W-1), (B, H-1, W)."""
    g = torch.sqrt(_dx(i0).square() + _dy(i0).square())  # (B, H, W)
    return (
        torch.exp(-edge * 0.5 * (g[..., :, 1:] + g[..., :, :-1])),
        torch.exp(-edge * 0.5 * (g[..., 1:, :] + g[..., :-1, :])),
    )


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """G_sigma*x for (B, H, W): separable Gaussian, radius ceil(3 sigma), replicated borders.

    Written as sums of shifted copies (one multiply and one add per tap, taps in a fixed order), not as
    ``F.conv2d``: a pair's flow must not depend on the other pairs of its batch, bit for bit (the pipelined
    extraction batches pairs of several videos), and the CPU convolution sums a batch of one in another order
    than a larger batch (up to 1.2e-7 apart; flow up to 8e-5 px apart at 48x64, 2026-12-06)."""
    r = int(math.ceil(3 * sigma))
    g = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-r, r + 1)]
    total = math.fsum(g)
    g = [v / total for v in g]
    h, w = x.shape[-2:]
    p = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]  # (B, H + 2r, W + 2r)
    rows = p[:, :, :w] * g[0]
    for k in range(1, 2 * r + 1):
        rows = rows + p[:, :, k : k + w] * g[k]
    out = rows[:, :h] * g[0]
    for k in range(1, 2 * r + 1):
        out = out + rows[:, k : k + h] * g[k]
    return out


def _prefilter(x: torch.Tensor, s: torch.Tensor, weight: float) -> torch.Tensor:
    """(x − weight·s + weight) / (1 + weight) for (B, H, W), s the blurred x: the structure-texture split."""
    return (x - weight * s + weight) * (1 / (1 + weight))


def _structure_texture(x: torch.Tensor, weight: float, sigma: float = 3.0) -> torch.Tensor:
    """x − weight·G_sigma*x for (B, H, W): removes slowly varying lighting (a Gaussian stands in for the ROF
    structure of Wedel et al. 2009), rescaled so the result spans about [0, 1] again."""
    return _prefilter(x, _gaussian(x, sigma), weight)


def _gain_factors(
    i0: torch.Tensor, i1: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """lighting="gain": factors (B, 1, 1) that scale both frames to the geometric mean of their high-pass
    contrasts (RMS of I − G*I over the frame; s0, s1 the blurred frames), so a global brightness gain between
    them is removed and the pair's contrast is kept. Tensor operations only (no host synchronisation)."""
    r0, r1 = ((x - s).square_().mean((1, 2)).add_(1e-8).sqrt_() for x, s in ((i0, s0), (i1, s1)))
    g = (r0 * r1).sqrt_()  # (B,)
    return (g / r0)[:, None, None], (g / r1)[:, None, None]


def _solve_level(
    i0: torch.Tensor, i1: torch.Tensor, uv: torch.Tensor, p: BroxParams, wmedian: bool = True
) -> torch.Tensor:
    """One pyramid level: `warps` times (warp, `inner` fixed-point iterations of `solver` SOR sweeps, optional
    median filter); returns the updated uv (B, 2, H, W). wmedian False: no weighted median on this level."""
    b, h, w = i0.shape
    ix0, iy0 = _dx(i0), _dy(i0)
    ix1, iy1 = _dx(i1), _dy(i1)
    stack = torch.stack((i1, ix1, iy1, _dx(ix1), _dy(ix1), _dy(iy1)), dim=1)  # (B, 6, H, W)
    red = _checkerboard(h, w, uv.device)
    links = _edge_links(i0, p.edge) if p.edge > 0 else None
    for k in range(p.warps):
        uv = _solve_warp(i0, ix0, iy0, stack, uv, red, links, p)
        if p.median:
            uv = _median(uv, p.median)
        if p.wmedian and wmedian and (p.wmedian_warps == "each" or k == p.warps - 1):
            uv = _wmedian_for(uv.device, p.wmedian)(uv, i0, p.wmedian)
    return uv


def _solve_warp(i0, ix0, iy0, stack, uv, red, links, p: BroxParams) -> torch.Tensor:
    """Warp I1 (and its derivatives, `stack` (B, 6, H, W)) at x+uv, then the lagged fixed point; uv + duv."""
    b, h, w = i0.shape
    ws, inside = _warp(stack, uv[:, 0], uv[:, 1], p.warp)
    ix, iy, ixx, ixy, iyy = ws[:, 1], ws[:, 2], ws[:, 3], ws[:, 4], ws[:, 5]
    iz, ixz, iyz = ws[:, 0] - i0, ix - ix0, iy - iy0
    g = p.gamma
    # data term coefficients without the robust weight (B, H, W)
    a11 = ix * ix + g * (ixx * ixx + ixy * ixy)
    a12 = ix * iy + g * (ixx * ixy + ixy * iyy)
    a22 = iy * iy + g * (ixy * ixy + iyy * iyy)
    b12 = -torch.stack(
        (ix * iz + g * (ixx * ixz + ixy * iyz), iy * iz + g * (ixy * ixz + iyy * iyz)), dim=1
    )  # (B, 2, H, W)
    if p.border == "ignore":  # no data term where x+w left the frame: smoothness fills the flow in
        m = inside.to(a11.dtype)
        a11, a12, a22, b12 = a11 * m, a12 * m, a22 * m, b12 * m[:, None]
    duv = uv.new_zeros(b, 2, h + 2, w + 2)
    inc = duv[:, :, 1:-1, 1:-1]  # (B, 2, H, W) view
    sor = _sor_for(uv.device)
    inv_alpha_half = 0.5 / p.alpha
    for _ in range(p.inner):
        du, dv = inc[:, 0], inc[:, 1]
        q0 = iz + ix * du + iy * dv
        q1 = ixz + ixx * du + ixy * dv
        q2 = iyz + ixy * du + iyy * dv
        psi = (q1.square_().add_(q2.square_())).mul_(g).addcmul_(q0, q0).add_(EPS2).rsqrt_().mul_(inv_alpha_half)
        tot = uv + inc
        hx, vy = _smoothness(tot)
        if links is not None:
            hx, vy = hx.mul_(links[0]), vy.mul_(links[1])
        ssum = F.pad(hx, (1, 0)) + F.pad(hx, (0, 1)) + F.pad(vy, (0, 0, 1, 0)) + F.pad(vy, (0, 0, 0, 1))
        rhs = _divergence(hx, vy, uv).addcmul_(psi[:, None], b12)
        sor(
            duv,
            hx,
            vy,
            torch.addcmul(ssum, psi, a11),
            torch.addcmul(ssum, psi, a22),
            psi * a12,
            rhs,
            p.solver,
            red,
            p.omega,
        )
    return uv + inc


def _solve(i0: torch.Tensor, i1: torch.Tensor, p: BroxParams) -> torch.Tensor:
    """The coarse-to-fine solve on validated (B, H, W) float32 frames, B >= 1. Tensor operations only: no host
    synchronisation and no branching on tensor values."""
    b, h, w = i0.shape
    if p.lighting == "gain":  # the pre-filter's blur is reused: G*(c·I) = c·G*I
        s0, s1 = _gaussian(i0, p.texture_sigma), _gaussian(i1, p.texture_sigma)
        c0, c1 = _gain_factors(i0, i1, s0, s1)
        i0, i1 = (_prefilter(x * c, s * c, p.texture) for x, s, c in ((i0, s0, c0), (i1, s1, c1)))
    elif p.texture > 0:
        i0, i1 = (_structure_texture(x, p.texture, p.texture_sigma) for x in (i0, i1))
    sizes = pyramid_sizes(h, w, p.scale, p.outer, p.coarse_scale, p.coarse_below)
    pyr = [torch.stack((i0, i1), dim=1)]  # (B, 2, H, W) per level
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
            uv[:, 0] *= lw / cw  # Python scalars: no host-to-device copy
            uv[:, 1] *= lh / ch
        wm = k >= p.wmedian_skip
        uv = _solve_level(pyr[k][:, 0].contiguous(), pyr[k][:, 1].contiguous(), uv, p, wm)
    assert uv is not None  # pyramid_sizes gives at least one level
    return torch.nan_to_num_(uv, nan=0.0, posinf=0.0, neginf=0.0)  # guard; never triggered in tests


def brox_flow(prev: torch.Tensor, next: torch.Tensor, preset: str | None = None, **params) -> torch.Tensor:
    """Dense flow (B, 2, H, W) float32 in pixels with prev(x) ≈ next(x + w(x)), on prev's device.

    prev, next: float tensors (B, H, W) or (B, 1, H, W), gray values in [0, 1] (within RANGE_TOL outside
    they are clamped). preset: a name in PRESETS (None: DEFAULT_PRESET); params override its fields (see
    `BroxParams`). B = 0 gives an empty result."""
    return solve_pairs(prev, next, brox_params(preset, **params))


def solve_pairs(prev: torch.Tensor, next: torch.Tensor, p: BroxParams) -> torch.Tensor:
    """`brox_flow` with resolved parameters."""
    i0, i1 = _as_batch("prev", prev), _as_batch("next", next)
    if i0.shape != i1.shape:
        raise ValueError(f"prev and next must have the same shape, got {tuple(i0.shape)} and {tuple(i1.shape)}")
    if i0.device != i1.device:
        raise ValueError(f"prev and next must be on the same device, got {i0.device} and {i1.device}")
    b, h, w = i0.shape
    if b == 0:
        return i0.new_zeros(0, 2, h, w)
    with torch.no_grad():
        return _solve(i0, i1, p)


def rgb_to_gray(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) float32 gray in [0, 1] (ITU-R BT.601 weights, as cv2)."""
    w = torch.tensor([0.299, 0.587, 0.114], device=frames.device, dtype=torch.float32)
    return (frames.float() @ w).mul_(1 / 255).clamp_(0, 1)


BYTES_PER_PIXEL = 600  # peak device memory per pixel of a pair during a solve (estimate, float32 temporaries)


def batch_for_memory(h: int, w: int, free_bytes: int, cap: int = 1024) -> int:
    """Pairs per call that fit in `free_bytes` (half of it, for headroom), at least 1, at most `cap`."""
    return int(max(1, min(cap, free_bytes // 2 // (BYTES_PER_PIXEL * h * w))))


class BroxFlow:
    """Flow stage: configured once, applied per video.

    `BroxFlow(params=None, device=None, max_batch=None)(frames uint8 (T, H, W, 3) RGB) -> np.float32
    (T-1, H, W, 2)`, flow i from frame i to frame i+1 in pixels; pairs are solved `max_batch` at a time on
    `device` (CUDA when available if None). params: resolved `BroxParams` (None: DEFAULT_PRESET's).
    max_batch None: 8 on CPU (larger batches gain nothing there, docs/benchmarks/flow.md); on CUDA as many
    as half the free memory holds (`batch_for_memory`, at most 1024)."""

    def __init__(
        self, params: BroxParams | None = None, device: str | torch.device | None = None, max_batch: int | None = None
    ):
        if params is not None and not isinstance(params, BroxParams):
            raise ValueError(f"params must be BroxParams, got {type(params).__name__}")
        self.params = params if params is not None else brox_params()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if max_batch is not None and (
            isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1
        ):
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.max_batch = None if max_batch is None else int(max_batch)
        if self.max_batch is None and self.device.type != "cuda":
            self.max_batch = 8

    def batch_size(self, h: int, w: int) -> int:
        """Pairs per call at frame size (h, w)."""
        if self.max_batch is not None:
            return self.max_batch
        free, _ = torch.cuda.mem_get_info(self.device)
        return batch_for_memory(h, w, free)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.solve_sequences([frames])[0]

    def solve_sequences(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Flow of several frame sequences at once: [(T_i, H, W, 3) uint8] -> [(T_i - 1, H, W, 2) float32].
        The pairs of every sequence are solved together, `batch_size` pairs per call, so one batch may hold
        pairs of several videos (a flow server gathers requests this way). Sequences of another frame size
        are solved in their own batches. A pair's flow does not depend on the other pairs of its batch,
        bit for bit (tested on CPU with batches of 1, 2 and 3; `jobs.bench.flow --device cuda` checks CUDA),
        so the result equals solving each sequence alone."""
        for x in seqs:
            check_frames(x)
        out = [np.empty((max(len(x) - 1, 0), *x.shape[1:3], 2), dtype=np.float32) for x in seqs]
        sizes: dict[tuple[int, int], list[int]] = {}
        for i, x in enumerate(seqs):
            if len(x) > 1:
                sizes.setdefault(x.shape[1:3], []).append(i)
        for (h, w), idx in sizes.items():
            pairs = [(i, k) for i in idx for k in range(len(seqs[i]) - 1)]  # (sequence, first frame of the pair)
            step = self.batch_size(h, w)
            for s in range(0, len(pairs), step):
                part = pairs[s : s + step]
                runs: dict[int, list[int]] = {}  # sequence -> its pairs in this batch (consecutive)
                for i, k in part:
                    runs.setdefault(i, []).append(k)
                i0, i1 = [], []
                for i, ks in runs.items():  # a run of n pairs moves n + 1 frames to the device
                    gray = rgb_to_gray(torch.from_numpy(seqs[i][ks[0] : ks[-1] + 2]).to(self.device))
                    i0.append(gray[:-1])
                    i1.append(gray[1:])
                uv = (
                    solve_pairs(torch.cat(i0), torch.cat(i1), self.params).permute(0, 2, 3, 1).cpu().numpy()
                )  # (n, H, W, 2)
                at = 0
                for i, ks in runs.items():
                    out[i][ks[0] : ks[-1] + 1] = uv[at : at + len(ks)]
                    at += len(ks)
        return out


def check_frames(frames) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3), got {frames.shape}")
