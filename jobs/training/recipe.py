"""The training recipe: lr schedule, SGD parameter groups (last FC at a higher lr), loss choice, per-epoch
sample order, RNG state capture, device choice and one training epoch (used by jobs.train).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA when available, else CPU), "cpu" or "cuda" (which must be available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but CUDA is not available")
    return torch.device(name)


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
        {
            "params": list(model.classifier.parameters()),
            "lr_mult": head_lr_mult,
            "weight_decay": weight_decay,
            "name": "classifier",
        },
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


def no_lone_last_batch(order: list[int], batch_size: int) -> list[int]:
    """Drop the last sample when it would form a batch of one (used for models with BatchNorm, which cannot
    train on a single clip); every rank's order has the same length, so all ranks drop it alike."""
    if batch_size > 1 and len(order) > 1 and len(order) % batch_size == 1:
        return order[:-1]
    return order


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


# -- loops -------------------------------------------------------------------------------------------
def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    loss_fn,
    device: torch.device,
    epoch: int,
    log: Callable[[str], None] = print,
    log_every: int = 20,
) -> dict:
    """One pass over ``loader`` ((B, C, T, H, W), (B, K) targets); returns loss and clip top-1 sums."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for step, (x, target, _) in enumerate(loader):
        x, target = x.to(device, non_blocking=True), target.to(device, non_blocking=True)
        logits = model(x)  # (B, K)
        loss = loss_fn(logits, target)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"non-finite training loss ({loss.item()}) at epoch {epoch} step {step}; "
                f"stopping (lower optim.lr or check the data); the last good checkpoint is kept"
            )
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
