"""Training-step speed of the asymmetric variants against their baselines (the paper's Table 2 "s/iter").

    python -m jobs.bench.models --out docs/benchmarks/models.md [--device cuda] [--models table2,table3]

One step = forward + cross-entropy + backward + SGD (momentum 0.9, weight decay 5e-4, section 4.3) on a
random clip batch (B, 3, T, S, S). All selected models (and their baselines) are built once, warmed up,
then timed in interleaved rounds (the order reverses every round) so that drifting machine load hits
every model alike; the report gives the median and the minimum per-iteration time over all rounds.
Defaults depend on the device: cuda -> batch 16 (the paper's), 16x112x112, 10 iters x 3 rounds, all
models; cpu -> batch 2, 16x56x56, 1 iter x 4 rounds, 1 thread, the 16 models of Table 2 (a few minutes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import models
from jobs.cli import checks
from models.summary import profile_model

# the paper's Table 2 training speed (s/iter, batch 16, one unnamed GPU)
PAPER_S_PER_ITER = {
    "c3d-b5": 1.10,
    "b5-asyConv3": 0.85,
    "b5-asyConv4": 0.94,
    "b5-asyConv5": 0.94,
    "b5-asyConv34": 0.82,
    "b5-asyConv35": 0.82,
    "b5-asyConv45": 0.83,
    "b5-asyConv345": 0.81,
    "c3d-b8": 1.28,
    "b8-asyConv3": 0.99,
    "b8-asyConv4": 1.00,
    "b8-asyConv5": 1.03,
    "b8-asyConv34": 0.95,
    "b8-asyConv35": 0.97,
    "b8-asyConv45": 0.97,
    "b8-asyConv345": 0.93,
}
GROUPS = {
    "table2": list(PAPER_S_PER_ITER),
    "table3": ["c3d-b5", "b5-asyConv5", "b5-M1", "b5-M2", "b5-M3", "b5-M4"],
    "table4": ["c3d-b8", "asym3dcnn-m2", "asym3dcnn-m3", "asym3dcnn"],
    "all": models.list_models(),
}


def resolve_models(arg: str) -> list[str]:
    """Comma list of model names and group names (table2, table3, table4, all); baselines are added.
    UsageError naming --models for an unknown name."""
    names: list[str] = []
    for tok in filter(None, (t.strip() for t in arg.split(","))):
        for n in GROUPS.get(tok, [tok]):
            if n not in models.VARIANTS:
                raise checks.UsageError(
                    f"--models {n}: unknown model or group; groups: {', '.join(GROUPS)}; models: "
                    f"{', '.join(models.VARIANTS)}"
                )
            for m in (models.BASELINE.get(n), n):
                if m and m not in names:
                    names.append(m)
    return names


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def run(
    names: list[str],
    device: torch.device,
    batch: int,
    frames: int,
    size: int,
    width: float,
    iters: int,
    rounds: int,
    warmup: int,
    log=print,
) -> dict[str, dict[str, list[float]]]:
    """name -> {"wall": [...], "cpu": [...]}: seconds per step (iters x rounds values each); "cpu" is this
    process's CPU time, less sensitive than wall time to other jobs on a shared CPU."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, frames, size, size, device=device)  # (B, C, T, H, W)
    y = torch.randint(0, 101, (batch,), device=device)
    steps = {}
    for n in names:
        t0 = time.perf_counter()
        model = models.build_model(n, width=width, frames=frames, size=size).to(device).train()
        steps[n] = make_step(model, x, y)
        for _ in range(warmup):
            steps[n]()
        sync(device)
        log(f"  built + {warmup} warm-up step(s): {n} ({time.perf_counter() - t0:.1f} s)")
    times: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            for _ in range(iters):
                sync(device)
                t, c = time.perf_counter(), time.process_time()
                steps[n]()
                sync(device)
                times[n]["wall"].append(time.perf_counter() - t)
                times[n]["cpu"].append(time.process_time() - c)
        log(
            f"  round {r + 1}/{rounds} (median wall ms): "
            + ", ".join(f"{n} {1e3 * statistics.median(times[n]['wall']):.0f}" for n in names)
        )
    return times


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    desc = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        desc += (
            f"; GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
            f"cudnn.benchmark={torch.backends.cudnn.benchmark}"
        )
    return desc


def report(names, times, a, device, elapsed) -> str:
    gpu = device.type == "cuda"
    clock = "wall" if gpu else "cpu"  # the clock the speed-up is computed from
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    lines = [
        "# Model training-step benchmark",
        "",
        f"Written by `python -m jobs.bench.models {' '.join(a.argv)}` on "
        f"{datetime.datetime.now().isoformat(timespec='seconds')} ({elapsed:.0f} s).",
        "",
        f"- device: **{device.type}** — {machine(device)}",
        f"- step: forward + cross-entropy + backward + SGD(momentum 0.9, wd 5e-4); batch {a.batch}, "
        f"clip 3x{a.frames}x{a.size}x{a.size}, width {a.width}",
        f"- timing: {a.warmup} warm-up step(s), then {a.rounds} interleaved round(s) of {a.iters} step(s) "
        f"per model (order reversed every round); median and minimum over the {a.rounds * a.iters} timed steps",
        f"- speed-up = baseline median / model median of the **{clock}** time"
        + ("" if gpu else " (this process's CPU time, steadier than wall time when other jobs share the CPU)")
        + '; the paper\'s "faster by 29%" is 1.29. Paper columns: Table 2 (batch 16, 16x112x112, one GPU)',
        "- params (101 classes) and MACs per clip at the benchmark clip size: the FC input follows the clip "
        "size, so below 112x112 the params are smaller than the paper's (models.summary)",
        f"- machine load average (1 min) at start / end: {a.load[0]:.2f} / {os.getloadavg()[0]:.2f}",
        "",
        "| model | baseline | params (M) | GMACs/clip | wall ms/iter (median) | wall ms/iter (min) |"
        + ("" if gpu else " CPU ms/iter (median) |")
        + " speed-up | paper s/iter | paper speed-up |",
        "|---|---|---:|---:|---:|---:|" + ("" if gpu else "---:|") + "---:|---:|---:|",
    ]
    for n in names:
        rows = profile_model(n, width=a.width, frames=a.frames, size=a.size)
        params, macs = sum(r.params for r in rows), sum(r.macs for r in rows)
        base = models.BASELINE.get(n)
        speed = f"{med[base][clock] / med[n][clock]:.2f}" if base in med else "—"
        ps = PAPER_S_PER_ITER.get(n)
        pbase = PAPER_S_PER_ITER.get(base) if base else None
        cpu_col = "" if gpu else f" {1e3 * med[n]['cpu']:.0f} |"
        lines.append(
            f"| {n} | {base or '—'} | {params / 1e6:.2f} | {macs / 1e9:.2f} | {1e3 * med[n]['wall']:.0f} | "
            f"{1e3 * min(times[n]['wall']):.0f} |{cpu_col} {speed} | {f'{ps:.2f}' if ps else '—'} | "
            f"{f'{pbase / ps:.2f}' if ps and pbase else '—'} |"
        )
    lines += [
        "",
        "Reading it: the paper's claim (Table 2: asymmetric variants 1.17-1.38x the baseline speed) was measured on a "
        "GPU at batch 16 and 16x112x112. "
        + (
            ""
            if gpu
            else "This is a CPU run at the clip and batch above, so it does not test that claim: CPU kernels "
            "(oneDNN) and GPU kernels (cuDNN) trade MACs against per-layer costs differently, and the asymmetric "
            "cascade triples the number of layers it replaces. The same script runs on CUDA when available "
            "(`--device cuda`, batch 16, "
            "16x112x112 and all models by default). "
        )
        + "See docs/models.md for the interpretation of the latest run.",
    ]
    return "\n".join(lines) + "\n"


def check_args(a: argparse.Namespace) -> None:
    """Every flag as given, before the device defaults are filled in (0 would read as 'not given') and before
    a model is built (UsageError naming the flag). The models build at any clip of >= 1 frame and pixel."""
    for name in ("--batch", "--size", "--iters", "--rounds", "--threads"):
        checks.positive_int(name, getattr(a, name[2:]), allow_none=True)
    checks.positive_int("--frames", a.frames)
    checks.positive_int("--warmup", a.warmup, minimum=0)
    if not 0 < a.width < float("inf"):
        raise checks.UsageError(f"--width {a.width:g}: must be a number > 0 (the channel width multiplier)")
    if a.out is not None:
        checks.out_file("--out", a.out)


@checks.cli("bench.models")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(
        prog="python -m jobs.bench.models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--iters", type=int, help="timed steps per model per round")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--models", help="comma list of names or groups: table2, table3, table4, all")
    ap.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads; cpu default 1 (multi-threaded steps on a shared, loaded "
        "machine are dominated by thread contention; see docs/models.md)",
    )
    ap.add_argument("--out", type=Path, help="markdown report (printed to stdout too)")
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)  # the command line the report quotes
    device = checks.torch_device("--device", a.device)
    check_args(a)
    gpu = device.type == "cuda"
    a.batch = a.batch or (16 if gpu else 2)
    a.size = a.size or (112 if gpu else 56)
    a.iters = a.iters or (10 if gpu else 1)
    a.rounds = a.rounds or (3 if gpu else 4)
    a.models = a.models or ("all" if gpu else "table2")
    a.threads = a.threads or (None if gpu else 1)
    if not resolve_models(a.models):
        raise checks.UsageError(f"--models {a.models}: no model named")
    threads_before = torch.get_num_threads()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        _bench(a, device)
    finally:
        torch.set_num_threads(threads_before)
    return 0


def _bench(a: argparse.Namespace, device: torch.device) -> None:
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
    names = resolve_models(a.models)
    a.load = os.getloadavg()
    print(
        f"benchmarking {len(names)} models on {device}: batch {a.batch}, clip 3x{a.frames}x{a.size}x{a.size}",
        flush=True,
    )
    t0 = time.perf_counter()
    times = run(
        names,
        device,
        a.batch,
        a.frames,
        a.size,
        a.width,
        a.iters,
        a.rounds,
        a.warmup,
        log=lambda s: print(s, flush=True),
    )
    text = report(names, times, a, device, time.perf_counter() - t0)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
