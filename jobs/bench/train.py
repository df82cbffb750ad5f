"""Training input pipeline and training-step speed: ``python -m jobs.bench.train --out docs/benchmarks/train.md``.

1. Loader: synthetic shard datasets (128x171 frames, the ``pipeline.storage`` default codec and lzf for
   comparison, written by ``jobs.demokit.shards``) read through ``ClipDataset`` (training mode: random
   16-frame clip, random corner/centre 112x112 crop and flip, normalised (C, T, H, W) float) and a
   DataLoader (batch 16) at 0/1/2 worker processes. Reported: clips/s over ``--clips`` clips after one
   warm-up batch, the latency of that first batch (worker start-up included), clips per CPU-second, and
   the CPU time of one ``ClipDataset`` item without the DataLoader.
2. Test items: one item = a clip in 10 crops (section 4.3 protocol), items/s with the most workers.
3. Training: ``jobs.training.recipe.train_one_epoch`` (forward, loss, backward, SGD) on loader batches
   for a few models at full size (16x112x112); seconds per step after one warm-up step.
Device: cuda when available (``--device``). The machine description goes into the Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

import models
from jobs.cli import checks
from jobs.demokit.shards import moving_square_shards
from jobs.training import recipe
from jobs.training.recipe import resolve_device
from manifests.readers.clips import ClipDataset
from pipeline.storage import CODECS, DEFAULT_CODEC


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(device: torch.device) -> list[str]:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}",
        f"- GPU: {gpu}; device {device}",
        f"- load average at start (1/5/15 min): {load} (the machine is shared with other jobs)",
        f"- Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"h5py {h5py.__version__}, OpenCV {cv2.__version__}",
    ]


def loader_rate(ds: ClipDataset, workers: int, batch: int, clips: int) -> tuple[float, float, float]:
    """(first-batch seconds, clips/s over the next ``clips`` clips, clips per CPU-second of this process
    and its workers over the whole run) for one DataLoader setting."""
    order = (recipe.epoch_indices(len(ds), 0, seed=0) * (1 + (clips + batch) // len(ds)))[: clips + batch]
    loader = DataLoader(
        ds, batch_size=batch, sampler=order, num_workers=workers, generator=torch.Generator().manual_seed(0)
    )
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    n = sum(x.shape[0] for x, _, _ in it)
    rate = n / (time.perf_counter() - t1)
    del it  # workers exit and are joined, so their CPU time is counted
    return t1 - t0, rate, (n + batch) / (_cpu_seconds() - cpu0)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def item_cpu_ms(ds: ClipDataset, n: int) -> float:
    """CPU milliseconds per ``ds[i]`` (training clip) in this process, after one warm-up item."""
    ds[0]
    t0 = time.process_time()
    for i in range(n):
        ds[i % len(ds)]
    return (time.process_time() - t0) / n * 1000


def train_step_time(name: str, ds: ClipDataset, device: torch.device, batch: int, steps: int, workers: int) -> float:
    """Seconds per training step of ``name`` (data from ``ds``), after one warm-up step."""
    torch.manual_seed(0)
    model = models.build_model(name, num_classes=ds.num_classes).to(device)
    opt = torch.optim.SGD(recipe.param_groups(model, 5e-4, 1.0), lr=1e-3, momentum=0.9)
    recipe.set_lr(opt, 1e-3)
    _, loss_fn = recipe.make_loss("ce", False)

    def loader(n_batches: int, epoch: int) -> DataLoader:
        """Exactly ``n_batches`` full batches: epochs' orders joined until they hold that many clips (one
        epoch of the default 48 videos holds fewer than 10 batches of 16, the CUDA default)."""
        order: list[int] = []
        while len(order) < n_batches * batch:
            order += recipe.epoch_indices(len(ds), epoch, seed=0)
            epoch += 1000  # another permutation; the first one is the order a single epoch gives
        order = order[: n_batches * batch]
        return DataLoader(ds, batch_size=batch, sampler=order, num_workers=workers, pin_memory=device.type == "cuda")

    recipe.train_one_epoch(model, loader(1, 0), opt, loss_fn, device, 0, log_every=0)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    recipe.train_one_epoch(model, loader(steps, 1), opt, loss_fn, device, 1, log_every=0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps


def write_data(root: Path, videos: int, codec: str | None) -> tuple[Path, str]:
    """Synthetic shards (40 frames of 128x171 per video) with ``codec`` (None = storage default)."""
    t0 = time.perf_counter()
    shards = moving_square_shards(
        root, num_videos=videos, num_classes=8, frames=40, height=128, width=171, shard_size=16, codec=codec
    )
    files = list((shards / "shards").glob("*.h5"))
    size = sum(p.stat().st_size for p in files) / 2**20
    name = f"{codec} (all streams)" if codec else f"default {DEFAULT_CODEC}"
    print(f"{name}: wrote {videos} videos in {time.perf_counter() - t0:.1f} s, {size:.1f} MiB", flush=True)
    return shards, f"{name}, {len(files)} shards, {size:.1f} MiB"


def check_args(args: argparse.Namespace) -> tuple[torch.device, list[int], list[str | None]]:
    """Every flag, before a shard is written or a model built: (device, DataLoader worker counts, codecs)."""
    checks.out_file("--out", args.out)
    try:
        device = resolve_device(args.device)
    except RuntimeError:
        raise checks.UsageError(f"--device {args.device}: CUDA is not available") from None
    checks.positive_int("--videos", args.videos)
    # the test-item table times --clips // 4 items (at most 64): fewer than 4 would time none
    checks.positive_int("--clips", args.clips, minimum=4)
    workers = checks.number_list("--workers", args.workers)
    for n in workers:
        checks.positive_int("--workers", n, minimum=0)
    codecs = [c.strip() for c in args.codecs.split(",")]
    for c in codecs:
        checks.choice("--codecs", c, ["default", *CODECS])
    for name in filter(None, args.models.split(",")):
        checks.choice("--models", name, models.VARIANTS)
    checks.positive_int("--train-batch", args.train_batch, allow_none=True)  # 0 would read as 'not given'
    checks.positive_int("--steps", args.steps, allow_none=True)
    if args.data is not None:
        checks.existing_dir("--data", args.data, writable=True)  # TemporaryDirectory(dir=...) needs it to exist
    return device, workers, [None if c == "default" else c for c in codecs]


@checks.cli("bench.train")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(prog="python -m jobs.bench.train", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="Markdown report path")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--videos", type=int, default=48, help="synthetic videos (40 frames each)")
    ap.add_argument("--clips", type=int, default=256, help="clips timed per loader setting")
    ap.add_argument("--workers", default="0,1,2", help="DataLoader worker counts")
    ap.add_argument("--codecs", default="default,lzf", help="shard codecs for the loader table (default = storage's)")
    ap.add_argument("--models", default="c3d-b5,asym3dcnn", help="models for the training-step timing")
    ap.add_argument("--train-batch", type=int, help="training batch (default 16 on cuda, 2 on cpu)")
    ap.add_argument("--steps", type=int, help="timed training steps (default 10 on cuda, 3 on cpu)")
    ap.add_argument("--data", help="where to write the synthetic shards (default: a temporary directory)")
    args = ap.parse_args(argv)
    device, workers, codecs = check_args(args)
    cuda = device.type == "cuda"
    batch = args.train_batch or (16 if cuda else 2)
    steps = args.steps or (10 if cuda else 3)
    lines = [
        "# Training input pipeline and step speed",
        "",
        "Machine:",
        *machine(device),
        "",
        f"Command: `python -m jobs.bench.train {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Data: {args.videos} synthetic videos (`jobs.demokit.shards`, smooth texture + moving square) x 40 "
        "frames of 128x171; training clips 16x112x112 (random start, corner/centre crop, flip, normalised "
        "float), DataLoader batch 16.",
        "",
        "## Loader (training mode, rgb stream)",
        "",
        "| shards | DataLoader workers | first batch (s) | clips/s (wall) | clips per CPU-second |",
        "|---|---:|---:|---:|---:|",
    ]
    rates: dict[tuple[str, int], float] = {}
    items: list[str] = []
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        datasets = {}
        for codec in codecs:
            shards, desc = write_data(Path(tmp) / (codec or "default"), args.videos, codec)
            ds = datasets.setdefault(codec, ClipDataset(shards, "split1", "train", "rgb", clip_len=16, crop=112))
            item_ms = item_cpu_ms(ds, 64)
            print(f"{desc}: ClipDataset item {item_ms:.1f} CPU ms", flush=True)
            items.append(f"| {desc} | {item_ms:.1f} | {1000 / item_ms:.0f} |")
            for w in workers:
                first, rate, per_cpu = loader_rate(ds, w, 16, args.clips)
                rates[(desc, w)] = rate
                print(
                    f"{desc} workers {w}: first batch {first:.2f} s, {rate:.1f} clips/s, {per_cpu:.1f} clips/CPU-s",
                    flush=True,
                )
                lines.append(f"| {desc} | {w} | {first:.2f} | {rate:.1f} | {per_cpu:.1f} |")
        lines += [
            "",
            "clips/s (wall): measured on the shared machine as it was; clips per CPU-second: "
            "throughput per fully available core (CPU time of the process and its workers over the run, "
            "batch collation included), i.e. what each idle core adds.",
            "",
            "`ClipDataset.__getitem__` alone (read + decode + crop + normalise one training clip, main "
            "process, no DataLoader):",
            "",
            "| shards | CPU ms per clip | clips per CPU-second |",
            "|---|---:|---:|",
            *items,
        ]

        ds = datasets[codecs[0]]
        test_ds = ClipDataset(ds.manifest, "split1", "train", "rgb", mode="test", clip_len=16, crop=112)
        w = max(workers)
        _, rate, _ = loader_rate(test_ds, w, 4, min(args.clips // 4, 64))
        print(f"test items (10 crops): {rate:.1f} items/s", flush=True)
        lines += [
            "",
            f"## Test items (25 clips x 10 crops protocol, {args.codecs.split(',')[0]} shards)",
            "",
            f"{w} DataLoader workers, batch 4: {rate:.1f} items/s (one item = one clip in 10 crops, "
            f"i.e. {rate * 10:.0f} crops/s).",
            "",
            f"## Training step ({device}, batch {batch}, 16x112x112, {steps} timed steps after 1 warm-up, "
            f"data from the {args.codecs.split(',')[0]} shards with {w} workers)",
            "",
            "| model | s/step | clips/s |",
            "|---|---:|---:|",
        ]
        for name in filter(None, args.models.split(",")):
            sec = train_step_time(name, ds, device, batch, steps, w)
            print(f"{name}: {sec:.2f} s/step", flush=True)
            lines.append(f"| {name} | {sec:.3f} | {batch / sec:.2f} |")
    (best_desc, best_w), best = max(rates.items(), key=lambda kv: kv[1])
    lines += [
        "",
        f"Goal >= 100 clips/s from the loader: best {best:.1f} clips/s ({best_desc}, {best_w} workers): "
        f"{'met' if best >= 100 else 'not met'} on this run.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
