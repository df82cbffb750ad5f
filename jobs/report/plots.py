"""Every figure the project draws (PNG files), in one place.

    stream_panel(reader, group, path)   rows RGB / Flow / RGBF (paper Figure 5) + flow colours, one column per frame
    colour_wheel(size)                  -> uint8 image: the flow colour key (pipeline.flowimage.flow_to_color)
    plot_curves(histories, path)        training loss, accuracies and learning rate of one or several runs
    plot_confusion(matrices, path)      row-normalised confusion matrices side by side
    plot_class_counts / plot_histograms / plot_bars / plot_flow_magnitude
                                        dataset card figures (jobs.report.dataset_card)

Panels read the extracted shards through `pipeline.storage.ShardReader`, so they show what training sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401  (MaxNLocator for count axes)
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
    rows = {
        name: reader.read(group, stream)[idx] for name, stream in (("RGB", "rgb"), ("Flow", "flow"), ("RGBF", "rgbf"))
    }
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
    fig, axes = plt.subplots(
        len(ROWS), len(idx), figsize=(1.5 * len(idx) * w / h + 0.6, 1.5 * len(ROWS) + 0.5), squeeze=False
    )
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


def plot_curves(histories: Mapping[str, Sequence[Mapping]] | Sequence[Mapping], path: str | Path) -> Path:
    """Per-epoch training loss, accuracies and learning rate of one run (a list of per-epoch records) or of
    several runs ({run name: records}) on shared axes. Validation accuracy (``val_video_top1``) is drawn
    dashed; test accuracy (``test_video_top1``, monitoring only) dotted, when the records hold it."""
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, hist in histories.items():
        prefix = f"{name} " if name else ""
        ep = [h["epoch"] for h in hist]
        (line,) = ax_loss.plot(ep, [h["train_loss"] for h in hist], marker=".", label=name or "train")
        colour = line.get_color()
        ax_acc.plot(ep, [h["train_top1"] for h in hist], marker=".", color=colour, label=f"{prefix}train clip top-1")
        for key, style, label in (
            ("val_video_top1", "--", "val video top-1"),
            ("test_video_top1", ":", "test video top-1 (monitoring)"),
        ):
            pts = [(h["epoch"], h[key]) for h in hist if h.get(key) is not None]
            if pts:
                ax_acc.plot(*zip(*pts), ls=style, marker="s", ms=3, color=colour, label=prefix + label)
        if all("lr" in h for h in hist):
            ax_lr.plot(ep, [h["lr"] for h in hist], marker=".", color=colour, label=name or "lr")
    ax_loss.set_title("training loss")
    ax_loss.set_ylabel("loss")
    ax_acc.set_title("accuracy")
    ax_acc.set_ylabel("top-1")
    ax_acc.set_ylim(0, 1.02)
    ax_lr.set_title("learning rate")
    ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_acc, ax_lr):
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(matrices: Mapping[str, tuple[np.ndarray, Sequence[str]]], path: str | Path) -> Path:
    """Row-normalised confusion matrices side by side ({title: (cm (K, K) counts, class names)}).

    Class names are shown up to 60 classes, counts inside the cells up to 30."""
    n = len(matrices)
    k_max = max(len(names) for _, names in matrices.values())
    side = min(5.0 + 0.12 * k_max, 24.0)
    fig, axes = plt.subplots(1, n, figsize=(side * n + 0.8, side), squeeze=False)
    for ax, (title, (cm, names)) in zip(axes[0], matrices.items()):
        cm = np.asarray(cm, dtype=np.float64)
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        k = len(names)
        if k <= 60:
            fs = 7 if k <= 30 else 5
            ax.set_xticks(range(k), labels=names, rotation=90, fontsize=fs)
            ax.set_yticks(range(k), labels=names, fontsize=fs)
        if k <= 30:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(
                            j,
                            i,
                            int(cm[i, j]),
                            ha="center",
                            va="center",
                            fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black",
                        )
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title or "confusion matrix (row-normalised)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------ dataset card figures
SUBSET_COLOURS = {"train": "#4C72B0", "test": "#DD8452", "unused": "#BBBBBB"}


def _save(fig, path: str | Path, dpi: int = 100, top_in: float = 0.0) -> Path:
    """tight_layout leaving ``top_in`` inches free at the top (for a suptitle / figure legend), save, close."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0, 1, 1 - top_in / fig.get_figheight()))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_class_counts(
    counts: Mapping[str, Mapping[str, Mapping[str, int]]],
    classes: Sequence[str],
    path: str | Path,
    title: str = "videos per class and split",
) -> Path:
    """Horizontal stacked bars, one panel per split: {split: {class: {subset: videos}}}; class names shown
    up to 120 classes."""
    splits = list(counts) or ["(no split)"]
    k = len(classes)
    height = min(2.0 + 0.16 * k, 40.0)
    fig, axes = plt.subplots(1, len(splits), figsize=(3.6 * len(splits) + 1.6, height), sharey=True, squeeze=False)
    y = np.arange(k)
    for ax, split in zip(axes[0], splits):
        left = np.zeros(k)
        for subset, colour in SUBSET_COLOURS.items():
            vals = np.array([counts.get(split, {}).get(c, {}).get(subset, 0) for c in classes], dtype=float)
            if vals.any():
                ax.barh(y, vals, left=left, color=colour, label=subset, height=0.8)
                left += vals
        ax.set_title(split, fontsize=10)
        ax.set_xlabel("videos")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:  # one legend for all panels, above them (never over a bar)
        fig.legend(
            handles,
            names,
            loc="upper right",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(1, 1 - 0.02 / height),
        )
    ax0 = axes[0, 0]
    ax0.set_yticks(y, labels=classes if k <= 120 else [""] * k, fontsize=8 if k <= 30 else 6)
    ax0.set_ylim(k - 0.5, -0.5)
    ax0.set_ylabel("class")
    fig.suptitle(title, fontsize=11, x=0.02, ha="left", y=1 - 0.06 / height, va="top")
    return _save(fig, path)


def plot_histograms(
    panels: Mapping[str, tuple[Sequence[float], str]], path: str | Path, bins: int = 30, title: str = ""
) -> Path:
    """Side-by-side histograms {panel title: (values, x-axis label with unit)}, the y axis in videos; the
    median is marked. An empty value list draws a 'no data' note."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, (values, xlabel)) in zip(axes[0], panels.items()):
        v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
        if v.size:
            if np.all(v == np.round(v)) and v.max() - v.min() < bins:  # few integer values: one bar each
                edges = np.arange(v.min(), v.max() + 2) - 0.5
                ticks = np.unique(v)
                if len(ticks) <= 12:
                    ax.set_xticks(ticks)
                else:
                    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            else:
                edges = min(bins, max(1, len(np.unique(v))))
            ax.hist(v, bins=edges, color="#4C72B0", edgecolor="white")
            med = float(np.median(v))
            ax.axvline(med, color="black", ls="--", lw=1, label=f"median {med:.3g}")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{name} (n={v.size})", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("videos")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_bars(
    values: Mapping[str, float], path: str | Path, title: str, xlabel: str, annotate: Sequence[str] | None = None
) -> Path:
    """Horizontal bars {name: value} (e.g. failures per reason, bytes per stream), value written at the bar
    end (or ``annotate[i]``)."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * max(1, len(names))))
    if names:
        vals = [float(values[n]) for n in names]
        ax.barh(range(len(names)), vals, color="#C44E52" if "fail" in title.lower() else "#55A868")
        ax.set_yticks(range(len(names)), labels=names, fontsize=9)
        ax.set_ylim(len(names) - 0.5, -0.5)
        for i, v in enumerate(vals):
            ax.text(v, i, f" {annotate[i] if annotate else f'{v:g}'}", va="center", fontsize=8)
        ax.set_xlim(0, max(vals) * 1.3 or 1)
        if all(float(v).is_integer() for v in vals):  # counts
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_flow_magnitude(magnitudes: np.ndarray, bound: float, path: str | Path, title: str) -> Path:
    """Distribution of per-pixel flow magnitude |w| in pixels per frame (log-scaled counts, as most
    pixels barely move); the flow image saturates at ``bound``, marked by a line."""
    m = np.asarray(magnitudes, dtype=np.float64).ravel()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    if m.size:
        ax.hist(m, bins=np.linspace(0, bound, 61), color="#8172B2", weights=np.full(m.size, 100.0 / m.size))
        ax.set_yscale("log")
        title += (
            f"\nmean {m.mean():.2f} px, median {np.median(m):.2f} px, p99 {np.percentile(m, 99):.2f} px, "
            f"{100 * np.mean(m >= bound - 1e-6):.2f}% at the bound (dotted)"
        )
        ax.axvline(bound, color="black", ls=":", lw=1)
    ax.set_xlabel("flow magnitude |w| (pixels per frame, as stored in the flow image)")
    ax.set_ylabel("% of pixels (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
