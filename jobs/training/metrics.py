"""Classification metrics on score arrays (numpy in, numbers out).

Targets are label tuples per sample (one label for UCF-101/HMDB-51, one or more for FCVID). A top-k
prediction is correct when any of the k highest-scoring classes is one of the sample's labels. Per-class
accuracy and the confusion matrix use the sample's first (primary) label. For multi-label data the mean
average precision over classes (FCVID's usual metric) is reported as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def classification_report(
    scores: np.ndarray, targets: Sequence[Sequence[int]], class_names: Sequence[str], multilabel: bool = False
) -> dict:
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
