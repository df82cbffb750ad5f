"""Benchmark source manifest builds: videos/s for N small files at W Ray workers.

    python -m jobs.bench.manifest --out docs/benchmarks/manifest.md [--sizes 1000 10000] [--workers 1 2]
                                  [--cache data/cache/bench_manifest] [--chunk 8] [--containment on off]
                                  [--rounds 1]

Test videos are generated once into the cache: a few tiny clips (16 frames of 64×80, mp4v via OpenCV)
are encoded, and file i is clip i mod K followed by an ISO-BMFF ``free`` box holding the file number.
A ``free`` box is a legal top-level MP4 box that players skip, so every file stays a valid video that
decodes to the same frames, while its bytes, and so its sha256, are distinct (no duplicates).
Each build is timed in phases: plan (list + annotations), Ray startup, probe+hash tasks, write version.
``--containment on off`` times each (size, workers) with the frame count decoded in the contained child
process (pipeline.contain, the default of the job) and in the task's own process, one right after the other,
in ``--rounds`` rounds of alternating order; the report gives both and the overhead of the best runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from jobs.build_manifest import inspect_on_ray
from jobs.cli import checks, cluster
from manifests.source.build import assemble, write_version
from manifests.source.builders import build_folder

NUM_BASE = 4
NUM_CLASSES = 10


def base_clip(seed: int, n: int = 16, h: int = 64, w: int = 80) -> np.ndarray:
    """(n, h, w, 3) uint8 RGB: noise background with a square moving 2 px per frame."""
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(30, 90, (1, h, w, 3), dtype=np.uint8), n, axis=0)
    for i in range(n):
        frames[i, 10:26, 4 + 2 * i : 20 + 2 * i] = 200
    return frames


def encode_mp4(path: Path, frames: np.ndarray, fps: float = 25.0) -> bytes:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames.shape[2:0:-1])
    if not vw.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open a writer")
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path.read_bytes()


def free_box(i: int) -> bytes:
    payload = f"asym3d-bench-{i:08d}".encode()
    return (8 + len(payload)).to_bytes(4, "big") + b"free" + payload


def ensure_dataset(cache: Path, n: int) -> Path:
    """<cache>/n<N>/videos/class<c>/v<i>.mp4, made once (a .done marker records completion)."""
    root = cache / f"n{n}" / "videos"
    if (root.parent / ".done").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        bases = [encode_mp4(Path(tmp) / f"base{k}.mp4", base_clip(k)) for k in range(NUM_BASE)]
    for i in range(n):
        p = root / f"class{i % NUM_CLASSES}" / f"v{i:06d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bases[i % NUM_BASE] + free_box(i))
    (root.parent / ".done").write_text(f"{n}\n")
    return root


def run_one(videos: Path, workers: int, chunk: int, contained: bool = True) -> dict:
    import ray

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    plan = build_folder(videos, None)
    t1 = time.perf_counter()
    cluster.start(None, workers)
    t2 = time.perf_counter()
    try:
        rels = [e.rel_path for e in plan.entries]
        facts = inspect_on_ray([videos / r for r in rels], chunk, progress=False, contained=contained)
    finally:
        t3 = time.perf_counter()
        ray.shutdown()
    t3b = time.perf_counter()
    records = assemble(plan, dict(zip(rels, facts)))
    with tempfile.TemporaryDirectory() as out:
        write_version(Path(out), plan, records, videos, None)
    t4 = time.perf_counter()
    statuses = {r.status for r in records}
    if statuses != {"ok"} or len({r.sha256 for r in records}) != len(records):
        raise RuntimeError(f"{videos}: benchmark videos not all ok/distinct: {statuses}")
    n = len(records)
    return {
        "n": n,
        "workers": workers,
        "contained": contained,
        "load": load,
        "kb": sum(r.size_bytes for r in records) / n / 1e3,
        "plan": t1 - t0,
        "ray_init": t2 - t1,
        "probe": t3 - t2,
        "write": t4 - t3b,
        "total": (t4 - t0) - (t3b - t3),
        "vps_probe": n / (t3 - t2),
        "vps_total": n / ((t4 - t0) - (t3b - t3)),
    }


def contain_costs(calls: int = 200) -> dict:
    """Fixed and per-call costs of pipeline.contain in this process: first call (fork server, child start,
    imports of the decoder modules), one call's round trip, one item of a batch (map), a restart."""
    from pipeline.contain import Contained
    from pipeline.decode import CONTAIN_PRELOAD

    c = Contained(("numpy",) + CONTAIN_PRELOAD)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    c.call(os.getpid)
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(calls):
        c.call(os.getpid)
    call = (time.perf_counter() - t) / calls
    t = time.perf_counter()
    c.map(os.getpid, [()] * calls, [None] * calls)
    item = (time.perf_counter() - t) / calls
    c.close()
    t = time.perf_counter()
    c.call(os.getpid)
    restart = time.perf_counter() - t
    c.close()
    return {"first": first, "call_ms": call * 1e3, "item_ms": item * 1e3, "restart": restart, "load": load}


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_video(videos: Path, n: int = 200, chunk: int = 8, rounds: int = 2) -> dict:
    """CPU seconds per video of inspect_many in this process, contained vs in-process, alternating: our
    own CPU + reaped children (the ffmpeg -i probes) + the contained child's own CPU. CPU time hardly
    depends on what else runs on the machine, unlike wall time on a shared one."""
    import resource

    from manifests.source.probe import inspect_many
    from pipeline import contain

    paths = sorted(videos.rglob("*.mp4"))[:n]
    inspect_many(paths[:chunk], contained=True)  # start the child outside the measurement
    child = contain.shared()
    out: dict[str, list[float]] = {"on": [], "off": []}
    for k in range(rounds):
        for mode in ["on", "off"] if k % 2 == 0 else ["off", "on"]:
            pid = child.proc.pid if mode == "on" and child.proc is not None else None
            c0 = (
                time.process_time()
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
                + (_proc_cpu(pid) if pid else 0.0)
            )
            for i in range(0, len(paths), chunk):
                inspect_many(paths[i : i + chunk], contained=mode == "on")
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            pid2 = child.proc.pid if mode == "on" and child.proc is not None else None
            c1 = time.process_time() + ru.ru_utime + ru.ru_stime + (_proc_cpu(pid2) if pid2 == pid and pid else 0.0)
            out[mode].append((c1 - c0) / len(paths))
    child.close()
    return {"n": len(paths), "on": out["on"], "off": out["off"], "load": os.getloadavg()[0]}


def machine() -> list[str]:
    import subprocess

    import decord
    import imageio_ffmpeg
    import pyarrow
    import ray

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    ffv = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- CPU: {cpu}, {os.cpu_count()} cores visible; load average at start "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (machine shared with other jobs)",
        f"- Python {platform.python_version()}, Ray {ray.__version__}, decord {decord.__version__}, "
        f"pyarrow {pyarrow.__version__}, {' '.join(ffv.split()[:3])} "
        f"(imageio-ffmpeg {imageio_ffmpeg.__version__})",
    ]


def report(
    rows: list[dict], cmd: str, head: list[str], chunk: int, costs: dict | None = None, cpu: dict | None = None
) -> str:
    lines = [
        "# Source manifest build benchmark",
        "",
        *head,
        "",
        f"Command: `{cmd}`",
        "",
        f"Dataset: `folder` layout, {NUM_CLASSES} classes, tiny mp4 clips (16 frames, 64×80, "
        f"{rows[0]['kb'] if rows else 0:.1f} KB on average) made distinct by an MP4 `free` box (see "
        f"jobs/bench/manifest.py). Per video: sha256 of the bytes, `ffmpeg -i` header probe, decode "
        f"to count frames (decord). Ray tasks of {chunk} videos, at most 2 tasks per CPU in flight.",
        " Decoding contained: in the contained child process of each Ray worker (pipeline.contain, the job's "
        "default), or in-process (no containment); runs of one size and worker count one after the other.",
        "",
        "| videos | workers | decoding | load avg (1 min) | plan s | Ray start s | probe+hash s | write s | "
        "total s | videos/s (probe+hash) | videos/s (total) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['workers']} | {'contained' if r['contained'] else 'in-process'} | "
            f"{r['load']:.1f} | {r['plan']:.2f} | {r['ray_init']:.1f} | {r['probe']:.1f} "
            f"| {r['write']:.2f} | {r['total']:.1f} | {r['vps_probe']:.1f} | {r['vps_total']:.1f} |"
        )
    lines += ["", "Total excludes Ray shutdown. Load average: 1-minute, just before the run.", ""]
    pairs = sorted({(r["n"], r["workers"]) for r in rows})
    cmp = []
    for n, w in pairs:
        on = [r for r in rows if (r["n"], r["workers"], r["contained"]) == (n, w, True)]
        off = [r for r in rows if (r["n"], r["workers"], r["contained"]) == (n, w, False)]
        if on and off:
            a, b = max(x["vps_probe"] for x in on), max(x["vps_probe"] for x in off)
            cmp.append(
                f"- {n} videos, {w} workers: contained {a:.1f} videos/s, in-process {b:.1f} videos/s "
                f"(best run of each): containment costs {100 * (b / a - 1):+.1f} % time per video."
            )
    if cmp:
        lines += ["Containment overhead on the normal path (goal <= 5 %):", "", *cmp, ""]
    if costs:
        lines += [
            f"Costs of pipeline.contain measured alone (load average {costs['load']:.1f}): first call "
            f"{costs['first']:.2f} s (fork server, child start, imports of decord / ffmpeg-python; once per "
            f"Ray worker), a call's round trip {costs['call_ms']:.3f} ms, one item of a batch "
            f"{costs['item_ms']:.3f} ms, a restart after a crash or timeout {costs['restart']:.2f} s.",
            "",
        ]
    if cpu:
        on, off = min(cpu["on"]), min(cpu["off"])
        lines += [
            f"CPU time per video (load-independent; {cpu['n']} videos in one process, chunks of {chunk}, "
            f"own + ffmpeg -i + contained child CPU; load average {cpu['load']:.1f}): contained "
            + ", ".join(f"{1e3 * x:.1f}" for x in cpu["on"])
            + " ms, in-process "
            + ", ".join(f"{1e3 * x:.1f}" for x in cpu["off"])
            + f" ms; lowest of each: "
            f"{100 * (on / off - 1):+.1f} %.",
            "",
        ]
    return "\n".join(lines)


@checks.cli("bench.manifest")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(
        prog="python -m jobs.bench.manifest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cache", type=Path, default=Path("data/cache/bench_manifest"))
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument(
        "--containment",
        nargs="+",
        choices=["on", "off"],
        default=["on", "off"],
        help="decode in the contained child (on, the job's default) and/or in-process (off)",
    )
    ap.add_argument("--rounds", type=int, default=1, help="rounds per (size, workers); order alternates")
    args = ap.parse_args(argv)
    checks.out_file("--out", args.out)  # every flag checked before a video is made or Ray started
    for n in args.sizes:
        checks.positive_int("--sizes", n)
    for w in args.workers:
        checks.positive_int("--workers", w)  # CPUs of the local Ray: with 0 no task ever runs
    if not all((args.cache / f"n{n}" / ".done").is_file() for n in args.sizes):  # some videos to make there
        checks.out_dir("--cache", args.cache)
    checks.positive_int("--chunk", args.chunk)
    checks.positive_int("--rounds", args.rounds)
    head = machine()
    rows = []
    for n in args.sizes:
        videos = ensure_dataset(args.cache, n)
        for w in args.workers:
            for k in range(args.rounds):
                for mode in args.containment if k % 2 == 0 else args.containment[::-1]:
                    rows.append(r := run_one(videos, w, args.chunk, contained=mode == "on"))
                    print(
                        f"{n} videos, {w} workers, containment {mode}: {r['vps_probe']:.1f} videos/s "
                        f"probe+hash, {r['total']:.1f} s total, load {r['load']:.1f}",
                        file=sys.stderr,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cmd = "python -m jobs.bench.manifest " + " ".join(sys.argv[1:] if argv is None else argv)
    costs = contain_costs() if "on" in args.containment else None
    cpu = (
        cpu_per_video(ensure_dataset(args.cache, args.sizes[0]), chunk=args.chunk)
        if set(args.containment) == {"on", "off"}
        else None
    )
    args.out.write_text(report(rows, cmd, head, args.chunk, costs, cpu))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
