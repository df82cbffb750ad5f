"""Asymmetric 3D-CNN model family: C3D baselines, asymmetric variants, MicroNets, the full model.

model = models.build_model("b5-asyConv5", num_classes=101, width=0.125, frames=8, size=56)
logits = model(clip)            # clip (B, C, T, H, W) -> (B, num_classes)
feats = model.features(clip)    # (B, D) penultimate FC activations
model.spec                      # frozen NetSpec; models.spec_to_dict / build_from_spec round-trip it
"""

from __future__ import annotations

from dataclasses import replace

from .layers import LAYERS, AsymConv3d, ConvBlock, MicroNet, make_layer
from .net import VideoNet
from .specs import BASELINE, OVERRIDES, VARIANTS, NetSpec, Stage, spec_from_dict, spec_to_dict

__all__ = [
    "build_model",
    "build_from_spec",
    "list_models",
    "get_spec",
    "VideoNet",
    "NetSpec",
    "Stage",
    "AsymConv3d",
    "ConvBlock",
    "MicroNet",
    "LAYERS",
    "make_layer",
    "VARIANTS",
    "BASELINE",
    "OVERRIDES",
    "spec_to_dict",
    "spec_from_dict",
]


def list_models() -> list[str]:
    return list(VARIANTS)


def get_spec(name: str, num_classes: int = 101, **overrides) -> NetSpec:
    """The registered spec `name` with num_classes and overrides (see OVERRIDES) applied."""
    if name not in VARIANTS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(VARIANTS)}")
    bad = set(overrides) - set(OVERRIDES)
    if bad:
        raise TypeError(f"unknown override(s) {sorted(bad)}; allowed: {', '.join(OVERRIDES)}")
    if "fc" in overrides:
        overrides["fc"] = tuple(overrides["fc"])
    return replace(VARIANTS[name], num_classes=num_classes, **overrides)


def build_from_spec(spec: NetSpec) -> VideoNet:
    return VideoNet(spec)


def build_model(name: str, num_classes: int = 101, **overrides) -> VideoNet:
    """Build registered model `name`. Overrides: width, frames, size, dropout, batch_norm, in_channels, fc."""
    return VideoNet(get_spec(name, num_classes, **overrides))
