"""Large translations over synthetic periodic textures: how often each variant locks one period off.

    python -m jobs.bench.flowperiodic --out docs/benchmarks/flow-periodic.md [--size 171x128]
        [--periods 16,20,24,28] [--amps 0.3,0.5,0.7] [--variants "boundary;boundary, coarse_scale=0.8"]

Frames: a lattice of bars (period P px, cos > 0.8, blurred σ = 0.8 px) mixed with a smoothed-noise texture
(`smooth_texture`, weight `amp`: the non-periodic structure), translated by 10, 13 or 16 px in three
directions (9 pairs per period and weight), quantised to uint8 (`warp_pair`: exact ground truth). A pair is
solved when its mean EPE (8 px border excluded) is under 0.5 px; a lock one period off gives about P px.
One thread; synthetic frames only (no tuning or held-out frames).
"""

from __future__ import annotations

import datetime
import itertools
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from jobs.bench.flow import rows_params, wxh
from jobs.cli import checks
from pipeline.flow import solve_pairs
from pipeline.flowmetrics import epe_map, smooth_texture, warp_pair

MARGIN = 24
DEFAULT_VARIANTS = "accurate;boundary;boundary, coarse_scale=0.8;boundary, scale=0.8"


def lattice(h: int, w: int, period: int, seed: int, amp: float) -> np.ndarray:
    """(h, w) float32 in [0, 1]: bars of `period` px in x and y, mixed with a smoothed-noise texture."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    bars = ((np.cos(2 * np.pi * xs / period) > 0.8) | (np.cos(2 * np.pi * ys / period) > 0.8)).astype(np.float32)
    bars = cv2.GaussianBlur(bars, (0, 0), 0.8)
    return np.clip((1 - amp) * bars + amp * smooth_texture(h, w, seed=seed), 0, 1).astype(np.float32)


def pairs(h: int, w: int, period: int, amp: float):
    """9 translated pairs: (i0 (9, H, W), i1 (9, H, W), ground truths)."""
    i0s, i1s, gts = [], [], []
    for k, (mag, ang) in enumerate(itertools.product((10, 13, 16), (0.3, 2.2, 4.0))):
        src = lattice(h + 2 * MARGIN, w + 2 * MARGIN, period, seed=k, amp=amp)
        gt = np.broadcast_to(np.float32([mag * np.cos(ang), mag * np.sin(ang)]), (h, w, 2)).copy()
        a, b = warp_pair(src, gt)
        i0s.append(np.rint(a * 255) / 255)
        i1s.append(np.rint(b * 255) / 255)
        gts.append(gt)
    return torch.from_numpy(np.stack(i0s)).float(), torch.from_numpy(np.stack(i1s)).float(), gts


@checks.cli("bench.flowperiodic")
def main(argv=None) -> int:
    ap = checks.parser(prog="python -m jobs.bench.flowperiodic", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", default="171x128", help="WxH")
    ap.add_argument("--periods", default="16,20,24,28")
    ap.add_argument("--amps", default="0.3,0.5,0.7", help="weights of the non-periodic texture")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="';' list of rows as jobs.bench.flow --rows")
    args = ap.parse_args(argv)
    w, h = wxh("--size", args.size)  # every flag checked before any work
    periods, amps = checks.number_list("--periods", args.periods), checks.number_list("--amps", args.amps, float)
    for v in periods:
        checks.number_in("--periods", v, 4, min(w, h))
    for v in amps:
        checks.number_in("--amps", v, 0.0, 1.0)
    variants = rows_params("--variants", args.variants)
    if not variants:
        raise checks.UsageError("--variants: no rows given")
    torch.set_num_threads(1)
    grid = [(p, a) for p in periods for a in amps]
    solved = {n: 0 for n in variants}
    epe_sum = {n: 0.0 for n in variants}
    cpu = {n: 0.0 for n in variants}
    per_cell = []
    total = 0
    for period, amp in grid:
        i0, i1, gts = pairs(h, w, period, amp)
        cell = []
        for name, params in variants.items():
            c = time.process_time()
            flows = solve_pairs(i0, i1, params).permute(0, 2, 3, 1).numpy()
            cpu[name] += time.process_time() - c
            e = [float(epe_map(f, g)[8:-8, 8:-8].mean()) for f, g in zip(flows, gts)]
            solved[name] += sum(x < 0.5 for x in e)
            epe_sum[name] += sum(e)
            cell.append(sum(x < 0.5 for x in e))
        total += len(gts)
        per_cell.append((period, amp, cell))
        print(f"P={period} amp={amp}: " + ", ".join(f"{n}: {c}/9" for n, c in zip(variants, cell)), flush=True)
    lines = [
        "# Large translations over periodic textures",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average at start "
        f"{os.getloadavg()[0]:.2f}",
        f"- command: `python -m jobs.bench.flowperiodic {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- {w}x{h}, {total} pairs: lattice periods {args.periods} px, non-periodic weights {args.amps}, "
        "translations of 10, 13, 16 px",
        "",
        "| variant | solved (< 0.5 px) | mean EPE px | CPU s/pair |",
        "| --- | ---: | ---: | ---: |",
    ]
    for n in variants:
        lines.append(f"| {n} | {solved[n]} of {total} | {epe_sum[n] / total:.2f} | {cpu[n] / total:.3f} |")
    lines += ["", "Solved pairs of 9 per period and weight:", ""]
    lines += ["| period px | weight | " + " | ".join(variants) + " |", "| ---: | ---: |" + " ---: |" * len(variants)]
    lines += [f"| {p} | {a} | " + " | ".join(str(c) for c in cell) + " |" for p, a, cell in per_cell]
    lines += ["", f"Load average at end: {os.getloadavg()[0]:.2f}."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
