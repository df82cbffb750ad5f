"""Checkpoint I/O: save atomically, load and validate, rebuild the model, initialise from a pretrained one.

A checkpoint is a dict with the weights, the model name, its overrides and spec, the class count and the
resolved config (plus optimiser, RNG states and history for resuming, written by jobs.train).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

import models


# -- models and checkpoints --------------------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def model_overrides(name: str, overrides: dict, clip_len: int, crop: int) -> dict:
    """Model overrides with ``frames``/``size`` defaulting to the data's clip length and crop."""
    out = dict(overrides)
    for key, value in (("frames", clip_len), ("size", crop)):
        if out.setdefault(key, value) != value:
            raise ValueError(f"model {name}: override {key}={out[key]} does not match the data ({value})")
    return out


def spec_dict(model: nn.Module) -> dict:
    spec = unwrap(model).spec
    return dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(vars(spec))


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save to ``path.tmp`` then rename: an interrupted save never leaves a truncated file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"model", "model_name", "model_overrides", "num_classes", "config"} - set(ckpt)
    if missing:
        raise ValueError(f"{path}: not a jobs.train checkpoint (missing {sorted(missing)})")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the network recorded in a checkpoint and load its weights."""
    model = models.build_model(ckpt["model_name"], num_classes=ckpt["num_classes"], **ckpt["model_overrides"])
    model.load_state_dict(ckpt["model"])
    return model


def init_from(model: nn.Module, path: str | Path, model_name: str, num_classes: int) -> str:
    """Load pretrained weights into ``model``; replace the classifier when the class count differs.

    Returns a one-line description. The pretrained network must be the same model (name and spec).
    """
    ckpt = load_checkpoint(path)
    if ckpt["model_name"] != model_name:
        raise ValueError(f"{path}: checkpoint holds model {ckpt['model_name']!r}, config asks for {model_name!r}")
    if "spec" in ckpt and ckpt["spec"] != _spec_without_classes(model, ckpt["num_classes"]):
        raise ValueError(f"{path}: model spec differs from the configured one: {ckpt['spec']} vs {spec_dict(model)}")
    model.reset_classifier(ckpt["num_classes"])
    model.load_state_dict(ckpt["model"])
    if ckpt["num_classes"] != num_classes:
        model.reset_classifier(num_classes)
        return f"initialised from {path}; classifier replaced ({ckpt['num_classes']} -> {num_classes} classes)"
    return f"initialised from {path} (classifier kept, {num_classes} classes)"


def _spec_without_classes(model: nn.Module, num_classes: int) -> dict:
    """The model's spec dict as it would read with ``num_classes`` (for comparing with a checkpoint)."""
    spec = spec_dict(model)
    for key in ("num_classes", "classes"):
        if key in spec:
            spec[key] = num_classes
    return spec
