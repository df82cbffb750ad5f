"""Pieces of the training loop (jobs.train) and of evaluation (jobs.evaluate).

Pure lr schedule, optimizer parameter groups (last FC at a higher lr), loss choice, per-epoch sample
order, RNG state capture, checkpoint I/O, one training epoch and a no-grad prediction pass.
"""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import models


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN/inf; training stops (the last good checkpoint stays in place)."""


# -- schedule and optimizer ------------------------------------------------------------------------
def lr_at(epoch: int, base_lr: float, step: int, gamma: float) -> float:
    """Step schedule: ``base_lr * gamma ** (epoch // step)`` (epoch counted from 0)."""
    return base_lr * gamma ** (epoch // step)


def param_groups(model: nn.Module, weight_decay: float, head_lr_mult: float) -> list[dict]:
    """Two SGD groups: the body (lr_mult 1) and ``model.classifier`` (lr_mult ``head_lr_mult``)."""
    head = {id(p) for p in model.classifier.parameters()}
    body = [p for p in model.parameters() if id(p) not in head]
    return [
        {"params": body, "lr_mult": 1.0, "weight_decay": weight_decay, "name": "body"},
        {"params": list(model.classifier.parameters()), "lr_mult": head_lr_mult,
         "weight_decay": weight_decay, "name": "classifier"},
    ]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_mult"]


# -- loss ------------------------------------------------------------------------------------------
def make_loss(kind: str, multilabel: bool) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """("bce"|"ce", loss(logits (B, K), multi-hot target (B, K))).

    ``auto``: BCE-with-logits over the labels when the dataset is multi-label (FCVID), else softmax
    cross-entropy. CE on multi-label targets uses the normalised multi-hot vector as class probabilities.
    """
    if kind == "auto":
        kind = "bce" if multilabel else "ce"
    if kind == "bce":
        return kind, lambda logits, target: F.binary_cross_entropy_with_logits(logits, target)
    if kind == "ce":
        return kind, lambda logits, target: F.cross_entropy(logits, target / target.sum(1, keepdim=True))
    raise ValueError(f"unknown loss {kind!r}")


def scores_from_logits(logits: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """Class scores used for evaluation: sigmoid for BCE-trained models, softmax otherwise."""
    return torch.sigmoid(logits) if loss_kind == "bce" else torch.softmax(logits, dim=1)


# -- sampling order --------------------------------------------------------------------------------
def epoch_indices(n: int, epoch: int, seed: int, max_items: int = 0, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's training sample order for ``epoch``: a seeded permutation of ``range(n)``, cut to
    ``max_items`` (0 = all), padded by wrapping to a multiple of ``world`` and dealt round-robin."""
    perm = np.random.default_rng([seed, 7919, epoch]).permutation(n)
    if max_items:
        perm = perm[:max_items]
    pad = (-len(perm)) % world
    perm = np.concatenate([perm, perm[:pad]]) if pad else perm
    return perm[rank::world].tolist()


# -- RNG state ---------------------------------------------------------------------------------------
def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)  # CUDA max-pool3d backward has none
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def rng_state() -> dict:
    """Global RNG states as plain types and tensors (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    kind, keys, pos, has_gauss, g = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, g))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


# -- loops -------------------------------------------------------------------------------------------
def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, loss_fn, device: torch.device,
                    epoch: int, log: Callable[[str], None] = print, log_every: int = 20) -> dict:
    """One pass over ``loader`` ((B, C, T, H, W), (B, K) targets); returns loss and clip top-1 sums."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, target, _) in enumerate(loader):
        x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
        logits = model(x)  # (B, K)
        loss = loss_fn(logits, target)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at epoch {epoch} step {step}; "
                                f"stopping (lower optim.lr or check the data); the last good checkpoint is kept")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        b = x.shape[0]
        loss_sum += loss.item() * b
        correct += int(target.gather(1, logits.argmax(1, keepdim=True)).gt(0).sum())
        seen += b
        if log_every and step % log_every == 0:
            log(f"epoch {epoch} step {step} loss {loss.item():.4f} lr {optimizer.param_groups[0]['lr']:.2e}")
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen}


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, loss_kind: str, features: bool = False):
    """Scores of every test item, averaged over its crops.

    ``loader`` yields ((B, K, C, T, H, W) crops, (B, num_classes) targets, (B,) video indices).
    Returns (scores (N, num_classes) float64, video index (N,) int64, features (N, D) or None).
    """
    model.eval()
    net = unwrap(model)
    all_scores, all_videos, all_feats = [], [], []
    for x, _, video in loader:
        b, k = x.shape[:2]
        flat = x.flatten(0, 1).to(device, non_blocking=True)  # (B*K, C, T, H, W)
        if features:  # one pass: eval-mode forward is classifier(features(x)) (dropout is identity)
            f = net.features(flat)  # (B*K, D)
            logits = net.classifier(f)
            all_feats.append(f.view(b, k, -1).mean(1).double().cpu())  # (B, D)
        else:
            logits = model(flat)  # (B*K, num_classes)
        s = scores_from_logits(logits, loss_kind).view(b, k, -1).mean(1)  # (B, num_classes)
        all_scores.append(s.double().cpu())
        all_videos.append(video.long())
    scores = torch.cat(all_scores).numpy()
    videos = torch.cat(all_videos).numpy()
    return scores, videos, (torch.cat(all_feats).numpy() if features else None)
