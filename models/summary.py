"""Per-layer parameters and multiply-accumulates (MACs) of a registered model.

    python -m models.summary c3d-b8 [--num-classes 101] [--width 1] [--frames 16] [--size 112] [--batch-norm]

The model is built on the `meta` device and run once on a meta clip (1, C, T, S, S): forward hooks record
each parameterised leaf module's output shape, so even c3d-b8 costs no memory or compute. MACs of a conv
are out_elements x in_channels x kernel volume (bias adds excluded), of an FC layer in x out; pooling,
ReLU and BatchNorm are not counted. Conv groups (conv1..conv5, micro3..) are reported as in the paper's
Table 1, with their share of all conv layers.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import build_model, list_models
from .net import VideoNet


@dataclass(frozen=True)
class Row:
    name: str  # qualified module name without the body./head. prefix, e.g. "conv3a.0"
    group: str  # stage name ("conv3", "micro4"), "fc" for hidden FC layers, "classifier"
    kind: str  # Conv3d, Linear, BatchNorm3d
    kernel: str
    out_shape: tuple[int, ...]  # per clip, without the batch dimension
    params: int
    macs: int


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv3d):
        return out[0].numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    return 0


def profile(model: VideoNet) -> list[Row]:
    """Rows for every leaf module holding parameters, in execution order, for one clip of model.spec."""
    spec = model.spec
    rows: list[Row] = []
    hooks = []
    for qual, m in model.named_modules():
        if list(m.children()) or not list(m.parameters(recurse=False)):
            continue
        top, _, rest = qual.partition(".")
        if top == "body":
            child = rest.split(".")[0]
            group, short = model.stage_of[child], rest
        else:
            group, short = ("classifier" if top == "classifier" else "fc"), (rest or top)
        kernel = "x".join(map(str, m.kernel_size)) if isinstance(m, nn.Conv3d) else ""

        def hook(mod, inp, out, short=short, group=group, kernel=kernel):
            rows.append(
                Row(
                    short,
                    group,
                    type(mod).__name__,
                    kernel,
                    tuple(out.shape[1:]),
                    sum(p.numel() for p in mod.parameters(recurse=False)),
                    _macs(mod, out),
                )
            )

        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(
                torch.zeros(
                    1, spec.in_channels, spec.frames, spec.size, spec.size, device=next(model.parameters()).device
                )
            )
    finally:
        for h in hooks:
            h.remove()
    return rows


def profile_model(name: str, num_classes: int = 101, **overrides) -> list[Row]:
    """profile() of a registered model built on the meta device (cheap for any size)."""
    with torch.device("meta"):
        return profile(build_model(name, num_classes, **overrides))


def group_totals(rows: list[Row]) -> dict[str, tuple[int, int]]:
    """group -> (params, MACs), in order of appearance."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        p, m = out.get(r.group, (0, 0))
        out[r.group] = (p + r.params, m + r.macs)
    return out


def conv_totals(rows: list[Row]) -> tuple[int, int]:
    body = [r for r in rows if r.group not in ("fc", "classifier")]
    return sum(r.params for r in body), sum(r.macs for r in body)


def format_summary(name: str, rows: list[Row], spec) -> str:
    shape = f"{spec.in_channels}x{spec.frames}x{spec.size}x{spec.size}"
    lines = [
        f"{name}: num_classes={spec.num_classes} clip={shape} width={spec.width} batch_norm={spec.batch_norm}",
        "",
        f"{'layer':<36}{'kind':<12}{'kernel':<8}{'output (C,T,H,W)':<18}{'params':>12}{'MACs':>16}",
    ]
    for r in rows:
        lines.append(
            f"{r.name:<36}{r.kind:<12}{r.kernel:<8}{'x'.join(map(str, r.out_shape)):<18}{r.params:>12,}{r.macs:>16,}"
        )
    cp, cm = conv_totals(rows)
    tp, tm = sum(r.params for r in rows), sum(r.macs for r in rows)
    scale, unit = (1e9, "B") if tm >= 1e9 else (1e6, "M")
    lines += ["", f"{'group':<12}{'params':>10}{'(% conv)':>10}{'MACs':>10}{'(% conv)':>10}"]
    for g, (p, m) in group_totals(rows).items():
        share = (f"{100 * p / cp:>9.2f}%", f"{100 * m / cm:>9.2f}%") if g not in ("fc", "classifier") else ("", "")
        lines.append(f"{g:<12}{p / 1e6:>9.3f}M{share[0]:>10}{m / scale:>9.2f}{unit}{share[1]:>10}")
    lines += [
        f"{'conv total':<12}{cp / 1e6:>9.3f}M{'':>10}{cm / scale:>9.2f}{unit}",
        f"{'total':<12}{tp / 1e6:>9.3f}M{'':>10}{tm / scale:>9.2f}{unit}   ({tp:,} parameters)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=list_models(), metavar="NAME", help=", ".join(list_models()))
    ap.add_argument("--num-classes", type=int, default=101)
    ap.add_argument("--width", type=float)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--in-channels", type=int)
    ap.add_argument("--batch-norm", action="store_true", default=None)
    a = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in dict(
            width=a.width, frames=a.frames, size=a.size, in_channels=a.in_channels, batch_norm=a.batch_norm
        ).items()
        if v is not None
    }
    with torch.device("meta"):
        model = build_model(a.name, a.num_classes, **overrides)
    print(format_summary(a.name, profile(model), model.spec))


if __name__ == "__main__":
    main()
