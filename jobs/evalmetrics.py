"""Classification metrics and plots on score arrays (numpy in, numbers/PNGs out).

Targets are label tuples per sample (one label for UCF-101/HMDB-51, one or more for FCVID). A top-k
prediction is correct when any of the k highest-scoring classes is one of the sample's labels. Per-class
accuracy and the confusion matrix use the sample's first (primary) label. For multi-label data the mean
average precision over classes (FCVID's usual metric) is reported as well.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def aggregate(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of rows (M, K) per group id (M,) -> (n_groups, K); a group without rows raises ValueError."""
    counts = np.bincount(groups, minlength=n_groups)
    if (counts == 0).any():
        raise ValueError(f"groups without scores: {np.flatnonzero(counts == 0).tolist()}")
    out = np.zeros((n_groups, scores.shape[1]), dtype=np.float64)
    np.add.at(out, groups, scores)
    return out / counts[:, None]


def topk_accuracy(scores: np.ndarray, targets: Sequence[Sequence[int]], k: int) -> float:
    """Fraction of rows of (N, K) scores whose k best classes contain one of the row's labels."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = [bool(set(t.tolist()) & set(lab)) for t, lab in zip(top, targets)]
    return float(np.mean(hits)) if hits else float("nan")


def confusion_matrix(primary: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts, rows = true (primary) class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (primary, pred), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """(K,) diagonal / row sums; NaN for classes without samples."""
    rows = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.diag(cm) / rows, np.nan)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of one class: scores (N,), positive (N,) bool; NaN when the class has no positives."""
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def mean_average_precision(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> float:
    multi_hot = np.zeros(scores.shape, dtype=bool)
    for i, labs in enumerate(targets):
        multi_hot[i, list(labs)] = True
    aps = [average_precision(scores[:, c], multi_hot[:, c]) for c in range(scores.shape[1])]
    return float(np.nanmean(aps)) if not np.all(np.isnan(aps)) else float("nan")


def classification_report(scores: np.ndarray, targets: Sequence[Sequence[int]], class_names: Sequence[str],
                          multilabel: bool = False) -> dict:
    """Top-1/top-5, per-class accuracy, confusion matrix (and mAP when multi-label) of (N, K) scores."""
    primary = np.array([t[0] for t in targets], dtype=np.int64)
    pred = scores.argmax(axis=1)
    cm = confusion_matrix(primary, pred, scores.shape[1])
    pca = per_class_accuracy(cm)
    report = {
        "n": int(len(targets)),
        "top1": topk_accuracy(scores, targets, 1),
        "top5": topk_accuracy(scores, targets, 5),
        "mean_class_accuracy": float(np.nanmean(pca)) if not np.all(np.isnan(pca)) else float("nan"),
        "per_class_accuracy": {name: (None if np.isnan(a) else float(a)) for name, a in zip(class_names, pca)},
        "confusion_matrix": cm.tolist(),
    }
    if multilabel:
        report["mAP"] = mean_average_precision(scores, targets)
    return report


def fuse_scores(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Average two {video_id: (K,) probabilities} maps over their common videos (Table 5, RGB+RGBF)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("score fusion: the two evaluations share no video ids")
    return {v: (a[v] + b[v]) / 2 for v in common}


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    side = min(4 + 0.15 * k, 24)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 60:
        ax.set_xticks(range(k), labels=class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(k), labels=class_names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Training curves from per-epoch records: train loss / accuracy, validation top-1, learning rate."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [h["train_loss"] for h in history], marker="o")
    axes[0].set_title("train loss")
    axes[1].plot(ep, [h["train_top1"] for h in history], marker="o", label="train clip top-1")
    val = [(h["epoch"], h["val_video_top1"]) for h in history if h.get("val_video_top1") is not None]
    if val:
        axes[1].plot(*zip(*val), marker="s", label="val video top-1")
    axes[1].set_title("accuracy")
    axes[1].legend()
    axes[2].plot(ep, [h["lr"] for h in history], marker="o")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
