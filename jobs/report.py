"""Report figures and the Markdown report of a demo run (PNG files + report.md + summary.json).

    stream_panel(reader, group)        -> uint8 image: rows RGB / Flow / RGBF (paper Figure 5) + flow colours
    colour_wheel(size)                 -> uint8 image: the flow colour key (pipeline.flowimage.flow_to_color)
    plot_curves({run: history}, path)  training loss and accuracy of several runs on shared axes
    plot_confusions({name: (cm, names)}, path)
    write_report(out_dir, summary)     report.md that links the PNGs written beside it

Panels read the extracted shards through `pipeline.storage.ShardReader`, so they show what training sees.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline import flowimage  # noqa: E402
from pipeline.storage import ShardReader  # noqa: E402

ROWS = ("RGB", "Flow", "RGBF", "Flow (colour)")
FLOW_BOUND = 20.0  # flowimage.flow_to_image default bound, used when a shard does not record its own


def _flow_bound(reader: ShardReader, group: str) -> float:
    """The bound the shard's flow images were written with (group attrs or shard extra), else the default."""
    for src in (reader.attrs(group), reader.extra):
        for key in ("flow_bound", "bound"):
            if key in src:
                return float(src[key])
    return FLOW_BOUND


def panel_frames(reader: ShardReader, group: str, n: int = 6) -> dict[str, np.ndarray]:
    """n evenly spaced frames (same indices for every row) of a shard group: {row name: (n, H, W, 3) uint8}."""
    n_flow = reader.num_frames(group, "flow")
    if n_flow < 1:
        raise ValueError(f"{reader.path}: group {group!r} has no flow frames to show")
    idx = np.unique(np.linspace(0, n_flow - 1, min(n, n_flow)).round().astype(int))
    rows = {name: reader.read(group, stream)[idx] for name, stream in (("RGB", "rgb"), ("Flow", "flow"), ("RGBF", "rgbf"))}
    flow = flowimage.image_to_flow(rows["Flow"], _flow_bound(reader, group))  # (n, H, W, 2) pixels
    max_flow = float(np.percentile(np.linalg.norm(flow, axis=-1), 99.5)) or 1.0
    rows["Flow (colour)"] = np.stack([flowimage.flow_to_color(f, max_flow) for f in flow])
    rows["_index"] = idx
    return rows


def stream_panel(reader: ShardReader, group: str, path: str | Path, n: int = 6, title: str = "") -> Path:
    """Write a PNG with one row per stream (RGB, Flow, RGBF, flow colours) and one column per frame."""
    rows = panel_frames(reader, group, n)
    idx = rows.pop("_index")
    h, w = rows["RGB"].shape[1:3]
    fig, axes = plt.subplots(len(ROWS), len(idx), figsize=(1.5 * len(idx) * w / h + 0.6, 1.5 * len(ROWS) + 0.5),
                             squeeze=False)
    for r, name in enumerate(ROWS):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.imshow(rows[name][c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0:
                ax.set_title(f"frame {i}", fontsize=8)
    fig.suptitle(title or group, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def colour_wheel(size: int = 151) -> np.ndarray:
    """(size, size, 3) uint8: flow_to_color of the field w(x) = x - centre, saturated at the disc's edge."""
    r = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - r
    img = flowimage.flow_to_color(np.stack([xx, yy], -1), max_flow=r)
    img[np.hypot(xx, yy) > r] = 255
    return img


def save_colour_wheel(path: str | Path, size: int = 151) -> Path:
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(colour_wheel(size), extent=(-1, 1, 1, -1))
    for (x, y), label in {(1.25, 0): "right", (-1.25, 0): "left", (0, -1.12): "up", (0, 1.12): "down"}.items():
        ax.text(x, y, label, ha="center", va="center", fontsize=8)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(1.25, -1.25)
    ax.set_axis_off()
    ax.set_title("flow colour key: hue = direction,\nsaturation = speed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_curves(histories: Mapping[str, Sequence[Mapping]], path: str | Path) -> Path:
    """Train loss and accuracies per epoch for several runs ({run name: per-epoch records})."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        line, = ax_loss.plot(ep, [h["train_loss"] for h in hist], marker=".", label=name)
        ax_acc.plot(ep, [h["train_top1"] for h in hist], marker=".", color=line.get_color(),
                    label=f"{name} train clip top-1")
        val = [(h["epoch"], h["val_video_top1"]) for h in hist if h.get("val_video_top1") is not None]
        if val:
            ax_acc.plot(*zip(*val), ls="--", marker="s", ms=3, color=line.get_color(),
                        label=f"{name} test video top-1")
    ax_loss.set_title("training loss")
    ax_acc.set_title("accuracy")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusions(matrices: Mapping[str, tuple[np.ndarray, Sequence[str]]], path: str | Path) -> Path:
    """Row-normalised confusion matrices side by side ({title: (cm (K, K), class names)})."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 5), squeeze=False)
    for ax, (title, (cm, names)) in zip(axes[0], matrices.items()):
        cm = np.asarray(cm, dtype=np.float64)
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        k = len(names)
        ax.set_xticks(range(k), labels=names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), labels=names, fontsize=7)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(summary: Mapping) -> str:
    """report.md text from the demo summary (see jobs.demo.summarize for its keys)."""
    s = summary
    lines = [f"# Demo report — {s['title']}", "", s["description"], ""]
    lines += ["## Results (test split, video level)", "",
              "| model | input | top-1 | mean class acc. | test videos |", "|---|---|---|---|---|"]
    for row in s["results"]:
        lines.append(f"| {row['model']} | {row['stream']} | {_pct(row['top1'])} | "
                     f"{_pct(row.get('mean_class_accuracy'))} | {row['n']} |")
    lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timings"].items()]
    lines += ["", "## Settings", "", "```json", json.dumps(s["settings"], indent=2), "```", ""]
    for title, rel in s["figures"].items():
        lines += [f"## {title}", "", f"![{title}]({rel})", ""]
    lines += ["## Commands run", "", "```"] + [" ".join(c) for c in s["commands"]] + ["```", ""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, summary: Mapping) -> Path:
    """Write report.md and summary.json into out_dir (figures are expected there already)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    path = out_dir / "report.md"
    path.write_text(markdown(summary))
    return path
