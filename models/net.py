"""One network class for the whole family, built from a NetSpec."""

from __future__ import annotations

import string
from collections import OrderedDict
from dataclasses import replace

import torch
from torch import nn

from .layers import make_layer
from .specs import NetSpec


def scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _pool(dims: list[int], kernel: tuple, pad: tuple) -> tuple[nn.MaxPool3d, list[int]]:
    """Max-pool with kernel = stride; an axis already of size 1 is left alone (short clips, small sizes)."""
    k = tuple(1 if d == 1 else ki for d, ki in zip(dims, kernel))
    p = tuple(0 if d == 1 else pi for d, pi in zip(dims, pad))
    out = [(d + 2 * pi - ki) // ki + 1 for d, ki, pi in zip(dims, k, p)]
    return nn.MaxPool3d(k, stride=k, padding=p), out


class VideoNet(nn.Module):
    """(B, C, T, H, W) clip -> (B, num_classes) logits.

    body: stages of conv layers and max-pools -> (B, C5, T', H', W')
    head: flatten -> fc6 -> ReLU -> dropout -> fc7 -> ReLU  -> (B, D)   (= features(x))
    then dropout -> classifier (the last nn.Linear) -> (B, num_classes)
    """

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        body: OrderedDict[str, nn.Module] = OrderedDict()
        cin, dims = spec.in_channels, [spec.frames, spec.size, spec.size]
        self.stage_of: dict[str, str] = {}  # body child name -> stage name (summaries)
        for i, stage in enumerate(spec.stages, start=1):
            cout = scaled(stage.out, spec.width)
            many = len(stage.layers) > 1
            for j, kind in enumerate(stage.layers):
                name = stage.name + (string.ascii_lowercase[j] if many else "")
                body[name] = make_layer(kind, cin, cout, norm=spec.batch_norm)
                self.stage_of[name] = stage.name
                cin = cout
            body[f"pool{i}"], dims = _pool(dims, stage.pool, stage.pool_pad)
            self.stage_of[f"pool{i}"] = stage.name
        if min(dims) < 1:
            raise ValueError(f"clip {spec.frames}x{spec.size}x{spec.size} is too small for {spec.name}")
        self.body = nn.Sequential(body)
        self.out_shape = (cin, *dims)  # (C5, T', H', W') after the last pool

        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten(1))
        d = cin * dims[0] * dims[1] * dims[2]
        for i, f in enumerate(spec.fc, start=6):
            f = scaled(f, spec.width)
            head[f"fc{i}"] = nn.Linear(d, f)
            head[f"relu{i}"] = nn.ReLU(inplace=True)
            if i < 5 + len(spec.fc):
                head[f"drop{i}"] = nn.Dropout(spec.dropout)
            d = f
        self.head = nn.Sequential(head)
        self.drop = nn.Dropout(spec.dropout)
        self.feature_dim = d
        self.classifier = nn.Linear(d, spec.num_classes)
        self.apply(_init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T, H, W) -> (B, D): activations of the penultimate FC layer (after its ReLU)
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.features(x)))  # (B, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """New, freshly initialised classifier for `num_classes` (fine-tuning on another dataset)."""
        p = next(self.classifier.parameters())
        self.classifier = nn.Linear(self.feature_dim, num_classes, device=p.device, dtype=p.dtype)
        _init(self.classifier)
        self.spec = replace(self.spec, num_classes=num_classes)


def _init(m: nn.Module) -> None:
    """torchvision VGG's initialisation: He (fan_out) for convs, N(0, 0.01) for FC, zero biases."""
    if isinstance(m, nn.Conv3d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.01)
    elif isinstance(m, nn.BatchNorm3d):
        nn.init.ones_(m.weight)
    else:
        return
    if m.bias is not None:
        nn.init.zeros_(m.bias)
