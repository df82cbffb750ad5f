"""No-grad prediction over a test loader and the score arithmetic evaluation needs (crop/clip averaging,
per-video aggregation, two-stream fusion).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from jobs.training.checkpoints import unwrap


def scores_from_logits(logits: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """Class scores used for evaluation: sigmoid for BCE-trained models, softmax otherwise."""
    return torch.sigmoid(logits) if loss_kind == "bce" else torch.softmax(logits, dim=1)


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


def aggregate(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of rows (M, K) per group id (M,) -> (n_groups, K); a group without rows raises ValueError."""
    counts = np.bincount(groups, minlength=n_groups)
    if (counts == 0).any():
        raise ValueError(f"groups without scores: {np.flatnonzero(counts == 0).tolist()}")
    out = np.zeros((n_groups, scores.shape[1]), dtype=np.float64)
    np.add.at(out, groups, scores)
    return out / counts[:, None]


def fuse_scores(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Average two {video_id: (K,) probabilities} maps over their common videos (Table 5, RGB+RGBF)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("score fusion: the two evaluations share no video ids")
    return {v: (a[v] + b[v]) / 2 for v in common}
