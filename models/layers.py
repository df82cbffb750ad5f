"""Layer kinds of the family, each reached by name through LAYERS (docs/style.md §7).

Every kind is a callable ``(in_channels, out_channels, *, norm) -> nn.Module`` that keeps the clip size
(stride 1, "same" padding) and ends with a ReLU. Shapes are (B, C, T, H, W) throughout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import cast

import torch
from torch import nn

Kernel = tuple[int, int, int]


class ConvBlock(nn.Sequential):
    """Conv3d (stride 1, same padding) -> [BatchNorm3d] -> ReLU. (B, Cin, T, H, W) -> (B, Cout, T, H, W)."""

    def __init__(self, cin: int, cout: int, kernel: int | Kernel = 3, *, norm: bool = False):
        k = cast(Kernel, (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel))
        pad = cast(Kernel, tuple(s // 2 for s in k))
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv=nn.Conv3d(cin, cout, k, padding=pad, bias=not norm))
        if norm:
            layers["bn"] = nn.BatchNorm3d(cout)
        layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class AsymConv3d(nn.Sequential):
    """Asymmetric one-directional 3D convolution (paper eq. 3-6, Fig. 1c / 2).

    The cascade (1 x k x 1) -> (1 x 1 x k) -> (t x 1 x 1) along height, width, then time; the intermediate
    widths D = M equal the output width N. Its receptive field equals one t x k x k convolution, so k=3, t=3
    replaces one 3x3x3 conv and k=5, t=3 replaces a group of two 3x3x3 convs (receptive field 5x5x5 in
    space; the temporal 3 is the paper's choice, section 3.1). Every conv of the cascade is followed by a
    ReLU (and BatchNorm when norm=True), as each is a conv layer of its own (section 3.1: "24 asymmetric
    3D convolutional layers"). (B, Cin, T, H, W) -> (B, Cout, T, H, W).
    """

    def __init__(self, cin: int, cout: int, k: int = 3, t: int = 3, *, norm: bool = False):
        super().__init__(
            OrderedDict(
                height=ConvBlock(cin, cout, (1, k, 1), norm=norm),  # eq. 3
                width=ConvBlock(cout, cout, (1, 1, k), norm=norm),  # eq. 4
                time=ConvBlock(cout, cout, (t, 1, 1), norm=norm),  # eq. 5
            )
        )


class MicroNet(nn.Module):
    """Local multi-branch 3D network (section 3.2, Fig. 3), Inception style; see docs/models.md.

    left:   1x1x1 reduce -> `left` kind   (M1/M3: two 3x3x3 convs, M2/M4: asym k=5, t=3)
    middle: 1x1x1 reduce -> `middle` kind (M1/M2: one 3x3x3 conv,  M3/M4: asym k=3, t=3)
    right:  1x1x1
    The branch outputs are concatenated along channels: (B, Cin, T, H, W) -> (B, Cout, T, H, W).
    Branch widths are fractions of Cout, fixed for Cout=256 in WIDTHS_256 (chosen so that b5-M1..M4 land
    on the parameter counts of the paper's Table 3).
    """

    # (left reduce, left out, middle reduce, middle out); the right 1x1x1 takes the rest of Cout
    WIDTHS_256 = (16, 32, 112, 96)

    def __init__(self, cin: int, cout: int, *, left: str, middle: str, norm: bool = False):
        super().__init__()
        r1, d, r2, m = (max(1, round(w * cout / 256)) for w in self.WIDTHS_256)
        e = cout - d - m
        if e < 1:
            raise ValueError(f"MicroNet needs out_channels >= 4, got {cout}")
        self.left = nn.Sequential(
            OrderedDict(reduce=ConvBlock(cin, r1, 1, norm=norm), body=make_layer(left, r1, d, norm=norm))
        )
        self.middle = nn.Sequential(
            OrderedDict(reduce=ConvBlock(cin, r2, 1, norm=norm), body=make_layer(middle, r2, m, norm=norm))
        )
        self.right = ConvBlock(cin, e, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, Cin, T, H, W) -> (B, d + m + e = Cout, T, H, W)
        return torch.cat([self.left(x), self.middle(x), self.right(x)], dim=1)


def _conv3x2(cin: int, cout: int, *, norm: bool = False) -> nn.Module:
    """Two stacked 3x3x3 convs (the group that asym k=5, t=3 replaces)."""
    return nn.Sequential(OrderedDict(a=ConvBlock(cin, cout, 3, norm=norm), b=ConvBlock(cout, cout, 3, norm=norm)))


LayerFactory = Callable[..., nn.Module]

# name -> callable(in_channels, out_channels, *, norm) -> module keeping (T, H, W)
LAYERS: dict[str, LayerFactory] = {
    "conv3": partial(ConvBlock, kernel=3),
    "conv3x2": _conv3x2,
    "asym3": partial(AsymConv3d, k=3, t=3),
    "asym5": partial(AsymConv3d, k=5, t=3),
    "m1": partial(MicroNet, left="conv3x2", middle="conv3"),
    "m2": partial(MicroNet, left="asym5", middle="conv3"),
    "m3": partial(MicroNet, left="conv3x2", middle="asym3"),
    "m4": partial(MicroNet, left="asym5", middle="asym3"),
}


def make_layer(kind: str, cin: int, cout: int, *, norm: bool = False) -> nn.Module:
    try:
        factory = LAYERS[kind]
    except KeyError:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(LAYERS)}") from None
    return factory(cin, cout, norm=norm)
