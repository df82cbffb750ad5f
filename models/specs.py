"""The model family as data: frozen specs and one table of named variants (docs/style.md §6).

A network is a stack of stages (layers of kinds from models.layers.LAYERS, then a max-pool), then hidden
FC layers with ReLU and dropout, then the classifier. Channel and FC widths are the paper's, multiplied
by `width`; the FC input size follows from `frames` and `size`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from itertools import combinations
from typing import Any

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Stage:
    name: str  # "conv3"; its layers are named conv3 or conv3a, conv3b, ...
    layers: tuple[str, ...]  # layer kinds (models.layers.LAYERS), all with `out` channels
    out: int  # output channels before the width multiplier
    pool: Triple = (2, 2, 2)  # max-pool kernel = stride after the stage (T, H, W)
    pool_pad: Triple = (0, 0, 0)


@dataclass(frozen=True)
class NetSpec:
    name: str
    stages: tuple[Stage, ...]
    fc: tuple[int, ...]  # hidden FC widths before the width multiplier
    num_classes: int = 101
    in_channels: int = 3
    frames: int = 16
    size: int = 112
    width: float = 1.0  # multiplies every conv and hidden FC width
    dropout: float = 0.5
    batch_norm: bool = False  # off by default so parameter counts match the paper


OVERRIDES = tuple(f.name for f in fields(NetSpec) if f.name not in ("name", "stages"))


def spec_to_dict(spec: NetSpec) -> dict[str, Any]:
    """Plain, YAML/JSON/torch.save friendly form of a spec (checkpoints store this)."""
    return asdict(spec)


def spec_from_dict(d: dict[str, Any]) -> NetSpec:
    stages = tuple(
        Stage(**{**s, "layers": tuple(s["layers"]), "pool": tuple(s["pool"]), "pool_pad": tuple(s["pool_pad"])})
        for s in d["stages"]
    )
    return NetSpec(**{**d, "stages": stages, "fc": tuple(d["fc"])})


def _swap(base: NetSpec, name: str, stages: str, layers: tuple[str, ...]) -> NetSpec:
    """`base` with the layers of stages conv{n} (n in `stages`, e.g. "35") replaced by `layers`."""
    swapped = {f"conv{n}" for n in stages}
    return replace(
        base, name=name, stages=tuple(replace(s, layers=layers) if s.name in swapped else s for s in base.stages)
    )


_P1 = (1, 2, 2)  # first pool keeps time
_PAD5 = (0, 1, 1)  # C3D's pool5 pads space: 512 x 2x7x7 -> 512 x 1x4x4 = 8192 for fc6

# C3D (Tran et al. 2015), the paper's c3d-b8 (Fig. 6a): 8 convs, 5 pools, fc 4096-4096
C3D_B8 = NetSpec(
    "c3d-b8",
    (
        Stage("conv1", ("conv3",), 64, _P1),
        Stage("conv2", ("conv3",), 128),
        Stage("conv3", ("conv3", "conv3"), 256),
        Stage("conv4", ("conv3", "conv3"), 512),
        Stage("conv5", ("conv3", "conv3"), 512, pool_pad=_PAD5),
    ),
    fc=(4096, 4096),
)

# c3d-b5 (Fig. 6b): conv3b/4b/5b deleted, last two convs and the FC layers halved
C3D_B5 = NetSpec(
    "c3d-b5",
    (
        Stage("conv1", ("conv3",), 64, _P1),
        Stage("conv2", ("conv3",), 128),
        Stage("conv3", ("conv3",), 256),
        Stage("conv4", ("conv3",), 256),
        Stage("conv5", ("conv3",), 256, pool_pad=_PAD5),
    ),
    fc=(2048, 2048),
)


# Asymmetric 3D-CNN (section 3.3, Fig. 4): two 3x3x3 convs, MicroNets at 8x28x28, 4x14x14 and 2x7x7,
# channels doubling after each pool; FC widths are not given in the text: 2048 (docs/models.md)
def _asym3dcnn(name: str, micro: tuple[str, str, str]) -> NetSpec:
    return NetSpec(
        name,
        (
            Stage("conv1", ("conv3",), 64, _P1),
            Stage("conv2", ("conv3",), 128),
            Stage("micro3", (micro[0],), 256),
            Stage("micro4", (micro[1],), 512),
            Stage("micro5", (micro[2],), 1024, pool_pad=_PAD5),
        ),
        fc=(2048, 2048),
    )


_COMBOS = tuple("".join(c) for r in (1, 2, 3) for c in combinations("345", r))  # 3 4 5 34 35 45 345

# The one table of named variants (Tables 2-4 of the paper)
VARIANTS: dict[str, NetSpec] = {
    "c3d-b5": C3D_B5,
    **{f"b5-asyConv{c}": _swap(C3D_B5, f"b5-asyConv{c}", c, ("asym3",)) for c in _COMBOS},
    "c3d-b8": C3D_B8,
    **{f"b8-asyConv{c}": _swap(C3D_B8, f"b8-asyConv{c}", c, ("asym5",)) for c in _COMBOS},
    **{f"b5-M{i}": _swap(C3D_B5, f"b5-M{i}", "5", (f"m{i}",)) for i in (1, 2, 3, 4)},
    "asym3dcnn": _asym3dcnn("asym3dcnn", ("m2", "m2", "m3")),
    "asym3dcnn-m2": _asym3dcnn("asym3dcnn-m2", ("m2", "m2", "m2")),
    "asym3dcnn-m3": _asym3dcnn("asym3dcnn-m3", ("m3", "m3", "m3")),
}

# Each asymmetric variant's baseline, for comparisons and the benchmark
BASELINE: dict[str, str] = {
    name: ("c3d-b8" if name.startswith(("b8-", "asym3dcnn")) else "c3d-b5")
    for name in VARIANTS
    if name not in ("c3d-b5", "c3d-b8")
}
