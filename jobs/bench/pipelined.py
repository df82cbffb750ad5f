"""The pipelined extraction (``jobs.extract --mode pipelined``) against per-shard tasks (``--mode tasks``),
side by side in one run.

    python -m jobs.bench.pipelined --out docs/benchmarks/pipelined.md [--videos 32] [--frames 40]
        [--size 128 171] [--rounds 2] [--flow-param k=v ...] [--shard-size 4]

Synthetic demo videos (jobs.make_demo_data) and their source manifest are made once; then the two modes run
alternately (tasks, pipelined, tasks, ...) ``--rounds`` times each on a fresh local Ray cluster of the
machine's cores (GPUs too, when present: with a GPU the tasks mode runs one task per GPU, the pipelined one
a flow actor per GPU and a shard task per remaining core). Every run extracts the same videos into a fresh
directory; the shard files are checked to be byte-identical across modes. Brox runs with the default
preset unless --flow-param says otherwise.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from jobs.bench.extract import check_run_args, flow_config, machine, make_source
from jobs.bench.scale import load
from jobs.cli import checks
from jobs.extraction import flowpool
from jobs.extraction.driver import extract
from manifests.extraction import ExtractConfig
from manifests.shards import load_shards


def run_modes(source: Path, work: Path, cfg: ExtractConfig, rounds: int, log) -> list[dict]:
    rows = []
    for r in range(rounds):
        for mode in ("tasks", "pipelined"):
            out = work / f"out-{mode}-{r}"
            lines: list[str] = []
            la = load()
            t = time.time()
            s = extract(source, out, cfg, mode=mode, log=lines.append)
            wall = time.time() - t
            shards = {rec.video_id: rec.shard_sha256 for rec in load_shards(s.path).records}
            rows.append(
                {
                    "mode": mode,
                    "round": r,
                    "wall_s": wall,
                    "ray_init_s": s.ray_init_s,
                    "shards_s": s.shards_s,
                    "task_cpu_s": s.task_cpu_s,
                    "ok": s.ok,
                    "failed": s.failed,
                    "load_before": la,
                    "load_after": load(),
                    "pool": flowpool.describe(s.flow_stats, s.shards_s) if s.flow_stats else "",
                    "layout": next((x for x in lines if "tasks at a time" in x), "").replace("extract: ", ""),
                    "shards": shards,
                }
            )
            log(f"{mode} round {r}: wall {wall:.1f} s, shards {s.shards_s:.1f} s, ok {s.ok}, load {la}")
    return rows


def report(rows: list[dict], cfg: ExtractConfig, args, cmd: str) -> str:
    by = {m: [r for r in rows if r["mode"] == m] for m in ("tasks", "pipelined")}
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "shards_s")} for m, rs in by.items()}
    same = all(r["shards"] == rows[0]["shards"] for r in rows)
    videos = rows[0]["ok"] + rows[0]["failed"]
    L = [
        "# Pipelined extraction against per-shard tasks",
        "",
        f"- machine: {machine()}",
        f"- command: `{cmd}`",
        f"- input: {videos} synthetic demo videos of {args.frames} frames (jobs.make_demo_data), extracted at "
        f"{cfg.size[0]}x{cfg.size[1]}, shards of {cfg.shard_size} videos, Brox preset "
        f"`{cfg.flow.preset}`" + (f" with {args.flow_param}" if args.flow_param else "") + ".",
        f"- each mode {args.rounds} times, alternating, each on a fresh local Ray cluster (`ray.init` counted in "
        f"the wall time, not in the shard phase).",
        "",
        "| run | mode | layout | wall s | shard phase s | task CPU s | load before -> after |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        lay = r["layout"].split("at a time, ")[-1] if r["layout"] else ""
        L.append(
            f"| {i + 1} | {r['mode']} | {lay} | {r['wall_s']:.1f} | {r['shards_s']:.1f} | "
            f"{r['task_cpu_s']:.1f} | {r['load_before']} -> {r['load_after']} |"
        )
    ratio_w = med["pipelined"]["wall_s"] / med["tasks"]["wall_s"]
    ratio_s = med["pipelined"]["shards_s"] / med["tasks"]["shards_s"]
    L += [
        "",
        f"**Pipelined / tasks** (medians): shard phase {ratio_s:.3f}, whole run {ratio_w:.3f} "
        f"(below 1: the pipelined mode is faster).",
        f"Shard files byte-identical across all runs and both modes: {'yes' if same else '**NO**'}.",
        "",
    ]
    pools = [r["pool"] for r in rows if r["pool"]]
    if pools:
        L += ["Flow pool of each pipelined run (from the job log):", ""] + [f"- {p}" for p in pools] + [""]
    L += [
        "Task CPU s counts the shard tasks' own process CPU; in the pipelined mode the Brox solves run in "
        "the flow actors, so it holds decoding, flow images, RGBF, codecs and writing only.",
        "",
    ]
    return "\n".join(L)


@checks.cli("bench.pipelined")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(prog="python -m jobs.bench.pipelined", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/benchmarks/pipelined.md")
    p.add_argument(
        "--videos",
        type=int,
        default=48,
        help="demo videos, 6 per class up to 12 classes (48: 8 classes of 6); 5, 6 or >= 9 (a class needs >= 5)",
    )
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--size", type=int, nargs=2, default=[128, 171])
    p.add_argument("--shard-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--flow-param", action="append", default=[], metavar="K=V")
    p.add_argument("--work", default=None, help="work dir (default: a temporary one, removed)")
    a = p.parse_args(argv)
    checks.out_file("--out", a.out)  # every flag checked before a video is generated or Ray started
    check_run_args(a)
    flow = flow_config(a.flow_param)
    cfg = ExtractConfig(size=tuple(a.size), shard_size=a.shard_size, flow=flow)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        work = Path(tmp)
        source = make_source(work, a.videos, a.frames)
        rows = run_modes(source, work, cfg, a.rounds, log)
    cmd = "python -m jobs.bench.pipelined " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(report(rows, cfg, a, cmd))
    log(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
