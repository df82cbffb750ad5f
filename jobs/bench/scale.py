"""Extraction at dataset scale: per-stage throughput measured here, peak worker memory against video length,
a projection of wall hours / pairs / bytes for UCF-101, HMDB-51 and FCVID-170, and a check of the projection.

    python -m jobs.bench.scale --out docs/benchmarks/scale.md [--rss-seconds 20 60 180] [--check-videos 200]

Sources are generated with the ffmpeg binary of imageio-ffmpeg (lavfi ``testsrc2``: moving pattern and
counter; H.264 ultrafast, keyframe every 250 frames). Rates are reported per CPU second (process CPU time
plus that of its child processes), which is what a dedicated core delivers, and as wall rates, which on a
shared machine depend on the load (printed with every table). Every number in the written report comes from
this run; assumptions of the projection are inputs, listed as such.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jobs.cli import checks

SIZES = {"128x171": (128, 171), "256x320": (256, 320)}
SOURCES = {"320x240": (320, 240), "1280x720": (1280, 720)}
# Projection inputs that are NOT measured here (labelled as assumptions in the report)
GPU_PAIRS_PER_S_340x256 = 500.0  # the flow engine's GPU goal (docs/flow.md), not a measurement
DATASETS = {  # name: (videos, mean source frames per video, source WxH, note)
    "UCF-101": (13320, 186, "320x240", "13,320 clips, 2.48 M frames in total (about 7.0 s at 25 fps)"),
    "HMDB-51": (6766, 94, "320x240", "6,766 clips of about 94 frames (0.63 M frames, 30 fps, 240 px high)"),
    "FCVID-170": (65000, 167 * 25, "1280x720", "about 65,000 web videos of 167 s; 25 fps and 720p assumed"),
}
FLOW_SOURCE_S = 10  # seconds of the 320x240 source the flow section takes its pairs from
CALIBRATION_VIDEOS = 10  # videos timed in-process to predict the check run
CHECK_CLASSES = 10  # check_model's demo classes; each needs 2 groups of 4 clips (train, test): >= 5 videos
SECTIONS = ("decode", "flow", "rss", "check")  # --sections
RECIPE = {"fps": 25.0, "segments": 8, "segment_frames": 17, "size": "256x320"}  # the FCVID-170 pretraining recipe
CLUSTERS = {  # name: (gpus, cpu cores)
    "1 GPU (8 cores)": (1, 8),
    "8 GPUs + 64 cores": (8, 64),
    "100 CPU cores": (0, 100),
}


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_now() -> float:
    """CPU seconds of this process and its reaped children (ffmpeg, the contained decoder)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def source_path(work: Path, src: str, seconds: float) -> Path:
    """Where the generated ``src`` source of ``seconds`` lives under --work: the length is in the name, so a
    kept --work never hands a source of another length to a later run (or section)."""
    return work / f"src_{src}_{seconds:g}s.mp4"


def generate(path: Path, wh: tuple[int, int], seconds: float, fps: int = 25) -> Path:
    """A moving test pattern (lavfi testsrc2), H.264, keyframe every 250 frames; an existing ``path`` is
    reused (``source_path`` names it by its length)."""
    from pipeline.decode import _ffmpeg_exe

    if not path.exists():
        subprocess.run(
            [
                _ffmpeg_exe(),
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size={wh[0]}x{wh[1]}:rate={fps}:duration={seconds}",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "250",
                "-pix_fmt",
                "yuv420p",
                str(path),
            ],
            check=True,
        )
    return path


# ------------------------------------------------------------------------------------------------ stages
def bench_decode(work: Path, seconds: float) -> list[dict]:
    """frames/s of decord and ffmpeg, scaling inside the decoder vs decoding full frames + cv2.resize."""
    import cv2

    from pipeline.decode import FrameStream

    rows = []
    for src, wh in SOURCES.items():
        path = generate(source_path(work, src, seconds), wh, seconds)
        for name, hw in SIZES.items():
            for backend in ("decord", "ffmpeg"):
                for how in ("in decoder", "full + cv2.resize"):
                    size = hw if how == "in decoder" else (wh[1], wh[0])
                    t, c = time.perf_counter(), cpu_now()
                    n = 0
                    for _, frames in FrameStream(path, size, backend=backend):
                        if how != "in decoder":
                            frames = np.stack(
                                [cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for f in frames]
                            )
                        n += len(frames)
                    wall, cpu = time.perf_counter() - t, cpu_now() - c
                    rows.append(
                        {
                            "source": src,
                            "size": name,
                            "backend": backend,
                            "how": how,
                            "frames": n,
                            "fps_wall": n / wall,
                            "fps_cpu": n / cpu,
                            "load": load(),
                        }
                    )
                    print(rows[-1], file=sys.stderr, flush=True)
    return rows


def bench_flow(work: Path, pairs: int) -> list[dict]:
    """Brox with default parameters, 1 thread: pairs per CPU second and per wall second, and the CPU time
    of the flow image + RGBF + shard write that follow each pair (default codecs)."""
    import torch

    from pipeline.decode import decode_video
    from pipeline.flow import DEFAULT_PRESET, BroxFlow
    from pipeline.flowimage import flow_to_image
    from pipeline.rgbf import make_rgbf
    from pipeline.storage import ShardWriter

    torch.set_num_threads(1)
    path = generate(source_path(work, "320x240", FLOW_SOURCE_S), SOURCES["320x240"], FLOW_SOURCE_S)
    rows = []
    for name, hw in SIZES.items():
        frames = decode_video(path, hw)[: pairs + 1]
        fn = BroxFlow(device="cpu")
        fn(frames[:2])  # warm-up
        t, c = time.perf_counter(), time.process_time()
        flow = fn(frames)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        # streams + write: the same pairs, repeated to 64 frames so the write is not dominated by file setup
        rep = -(-64 // len(flow))
        fl, rgb = np.concatenate([flow] * rep)[:64], np.concatenate([frames[:-1]] * rep)[:64]
        out = Path(tempfile.mkdtemp(dir=work)) / "w.h5"
        t2, c2 = time.perf_counter(), time.process_time()
        with ShardWriter(out) as w:
            g = w.stream("v", *hw)
            g.append("rgb", rgb)
            g.append("flow", flow_to_image(fl))
            g.append("rgbf", make_rgbf(rgb, fl))
            g.finish(n_flow=64)
        wall2, cpu2 = time.perf_counter() - t2, time.process_time() - c2
        nbytes = out.stat().st_size
        rows.append(
            {
                "size": name,
                "preset": DEFAULT_PRESET,
                "pairs": len(flow),
                "pairs_s_cpu": len(flow) / cpu,
                "pairs_s_wall": len(flow) / wall,
                "write_s_per_frame_cpu": cpu2 / 64,
                "write_mb_s_cpu": nbytes / 1e6 / cpu2,
                "write_mb_s_wall": nbytes / 1e6 / wall2,
                "bytes_per_frame": nbytes / 64,
                "load": load(),
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ memory
def rss_child(path: str, size: str) -> None:
    """One worker's job on one video (run in a fresh process): ``stream_video`` into a shard. Prints JSON with
    peak RSS in MB."""
    import torch

    from manifests.extraction import ExtractConfig, VideoTask, flow_stage, stream_video
    from pipeline.contain import shared
    from pipeline.flow import FlowConfig
    from pipeline.storage import ShardWriter

    torch.set_num_threads(1)
    cfg = ExtractConfig(
        size=SIZES[size],
        flow=FlowConfig.resolve(inner=1, outer=1, solver=1),
        static_threshold=0.0,
        codec={"rgb": "lzf", "flow": "lzf", "rgbf": "lzf"},
    )
    task = VideoTask("v", path, Path(path).name, None, None)
    flow = flow_stage(cfg, "cpu")
    grand = GrandchildPeak(lambda: shared().proc)
    t = time.perf_counter()
    out = Path(path).with_suffix(f".{size}.h5")
    with ShardWriter(out, codec=cfg.codec) as w:
        n = stream_video(task, cfg, flow, w, "v", contained=True)["n_rgb"]
    child = shared().proc
    decoder_mb = vm_hwm_mb(child.pid) if child is not None else 0.0
    ffmpeg_mb = grand.stop()
    shared().close()
    out.unlink()
    print(
        json.dumps(
            {
                "frames": n,
                "seconds": time.perf_counter() - t,
                "worker_mb": vm_hwm_mb("self"),
                "decoder_mb": decoder_mb,
                "ffmpeg_mb": ffmpeg_mb,
            }
        )
    )


class GrandchildPeak:
    """Largest VmHWM (MB) of any process the decoder child starts (the ffmpeg it streams from), sampled
    every ``every`` s while it runs (its peak so far: one late sample is enough). 0.0 if none ran."""

    def __init__(self, child, every: float = 0.5):
        import threading

        self.child, self.every, self.peak, self.done = child, every, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.every):
            proc = self.child()
            if proc is None:
                continue
            try:
                kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                self.peak = max([self.peak] + [vm_hwm_mb(k) for k in kids])
            except (OSError, ValueError):  # gone between listing and reading
                pass

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak


def vm_hwm_mb(pid) -> float:
    """Peak resident set (VmHWM) of a live process, MB. Not ru_maxrss: Linux carries that over fork and
    exec from the parent, so a fresh child would report its parent's peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_rss(work: Path, lengths: list[float]) -> list[dict]:
    rows = []
    for secs in lengths:
        path = generate(work / f"long_{int(secs)}s.mp4", SOURCES["1280x720"], secs)
        for size in SIZES:
            res = subprocess.run(
                [sys.executable, "-m", "jobs.bench.scale", "--rss-child", str(path), size],
                capture_output=True,
                text=True,
                env=os.environ,
            )
            if res.returncode != 0:
                raise RuntimeError(f"rss child failed: {res.stderr[-2000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append({"seconds_video": secs, "size": size, "mode": "stream", **r, "load": load()})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def rss_table(rows: list[dict]) -> list[str]:
    """Markdown lines of the memory table (also printed by a partial ``--sections rss`` run)."""
    L = [
        "| video s | frames | target | path | worker peak RSS MB | decoder child peak RSS MB | its ffmpeg peak RSS MB "
        "| wall s | load |",
        "|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ff = r.get("ffmpeg_mb")
        L.append(
            f"| {r['seconds_video']:.0f} | {r['frames']} | {r['size']} | {r['mode']} | {r['worker_mb']:.0f} | "
            f"{r['decoder_mb']:.0f} | {'-' if not ff else f'{ff:.0f}'} | {r['seconds']:.0f} | {r['load']} |"
        )
    return L


# ------------------------------------------------------------------------------------------------ model
def model_cpu_s(frames_dec: float, src: str, size: str, pairs: float, stored: float, rates: dict) -> dict:
    """CPU seconds per video by stage (decode, flow on CPU, streams + write) from the measured rates."""
    return {
        "decode": frames_dec / rates["decode"][(src, size)],
        "flow_cpu": pairs / rates["flow"][size],
        "write": stored * rates["write"][size],
    }


def gpu_rate(size: str) -> float:
    h, w = SIZES[size]
    return GPU_PAIRS_PER_S_340x256 * (340 * 256) / (h * w)  # assumption: cost scales with pixels


def project(rates: dict, bytes_per_frame: dict) -> list[dict]:
    """Wall hours, pairs and bytes per dataset x setting x cluster shape (see the report for the formulas)."""
    from pipeline import sampling

    rows = []
    settings = [(d, "every frame, 128x171", None) for d in DATASETS]
    settings += [("FCVID-170", "every frame, 256x320", None), ("FCVID-170", "recipe, 256x320", RECIPE)]
    for ds, label, recipe in settings:
        videos, frames, src, _ = DATASETS[ds]
        size = "256x320" if "256x320" in label else "128x171"
        if recipe:
            t = sampling.output_count(frames, 25.0, recipe["fps"])
            wins = sampling.windows(t, recipe["segments"], recipe["segment_frames"])
            stored = sum(m for _, m in wins)
            pairs = sum(m - 1 for _, m in wins)
            # decoding seeks to each window: keyframe interval 250 assumed -> on average 125 frames before it
            decoded = min(frames, stored + len(wins) * 125)
        else:
            stored, pairs, decoded = frames, frames - 1, frames
        cpu = model_cpu_s(decoded, src, size, pairs, stored, rates)
        total_pairs = videos * pairs
        total_bytes = videos * stored * bytes_per_frame[size]
        for cl, (gpus, cores) in CLUSTERS.items():
            if gpus:
                # --mode tasks: one shard task per GPU, decode overlapped (prefetch thread) with flow on the
                # GPU, the task's thread also makes the streams and writes them
                per_video = max(cpu["decode"], pairs / gpu_rate(size) + cpu["write"])
                today = videos * per_video / gpus
                # --mode pipelined: all other cores decode / write, GPU flow actors only solve flow
                piped = max(
                    videos * (cpu["decode"] + cpu["write"]) / max(cores - gpus, 1),
                    total_pairs / (gpus * gpu_rate(size)),
                )
            else:
                today = piped = videos * sum(cpu.values()) / cores
            rows.append(
                {
                    "dataset": ds,
                    "setting": label,
                    "cluster": cl,
                    "pairs": total_pairs,
                    "tb": total_bytes / 1e12,
                    "hours_today": today / 3600,
                    "hours_pipelined": piped / 3600,
                    "per_video_cpu": cpu,
                }
            )
    return rows


# ------------------------------------------------------------------------------------------------ check
def check_model(work: Path, n_videos: int) -> dict:
    """Predict, then measure, the wall time of jobs.extract (1 worker) on ``n_videos`` short demo videos.

    Prediction = fixed cost of a job (measured: a 2-video job) + n_videos x wall seconds per video
    (measured: stream_video in this process on CALIBRATION_VIDEOS of the videos, run right before)."""
    import torch

    from jobs.build_manifest import build_main
    from jobs.extraction.driver import extract
    from jobs.make_demo_data import make_dataset
    from manifests.extraction import ExtractConfig, flow_stage, stream_video
    from manifests.extraction.bookkeeping import select_videos
    from manifests.source.loader import load_source
    from pipeline.contain import shared
    from pipeline.flow import FlowConfig
    from pipeline.storage import ShardWriter

    torch.set_num_threads(1)  # as in a Ray task (1 CPU); more threads on a loaded machine run far slower
    flow = {"inner": 3, "outer": 3, "solver": 3}
    cfg = ExtractConfig(size=(128, 171), flow=FlowConfig.resolve(**flow), shard_size=25)
    make_dataset(
        work / "demo", classes=CHECK_CLASSES, videos_per_class=-(-n_videos // CHECK_CLASSES), frames=16, size=(128, 172)
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
    source = load_source(work / "manifests" / vid)
    tasks, _, _ = select_videos(source, cfg)
    n = len(tasks)
    # 1) per-video cost, in-process (the worker's own loop), contained decoding as in a task
    fn = flow_stage(cfg, "cpu")
    shared()
    with ShardWriter(work / "cal.h5", codec=cfg.codec) as w:
        stream_video(tasks[0], cfg, fn, w, "warm")
        t, c = time.perf_counter(), time.process_time()
        for i, v in enumerate(tasks[1 : 1 + CALIBRATION_VIDEOS]):
            stream_video(v, cfg, fn, w, f"g{i}")
        per_video = (time.perf_counter() - t) / CALIBRATION_VIDEOS
        cpu_video = (time.process_time() - c) / CALIBRATION_VIDEOS
    load_cal = load()
    # 2) fixed cost of a job (Ray start, worker and decoder child start-up): a 2-video manifest
    one = work / "one"
    make_dataset(one / "demo", classes=1, videos_per_class=2, clips_per_group=1, frames=16, size=(128, 172))
    vid1 = build_main(
        [
            "--dataset",
            "ucf101",
            "--videos",
            str(one / "demo/videos"),
            "--annotations",
            str(one / "demo/annotations"),
            "--out",
            str(one / "manifests"),
            "--workers",
            "0",
        ]
    )
    t = time.perf_counter()
    extract(one / "manifests" / vid1, one / "shards", cfg, workers=1, log=lambda m: None)
    fixed = time.perf_counter() - t - 2 * per_video
    predicted = fixed + n * per_video
    # 3) the run
    t = time.perf_counter()
    summary = extract(work / "manifests" / vid, work / "shards", cfg, workers=1, log=lambda m: None)
    measured = time.perf_counter() - t
    return {
        "videos": n,
        "ok": summary.ok,
        "failed": summary.failed,
        "per_video_s": per_video,
        "fixed_s": fixed,
        "predicted_s": predicted,
        "measured_s": measured,
        "error": (predicted - measured) / measured,
        "cpu_per_video_s": cpu_video,
        "predicted_cpu_s": n * cpu_video,
        "measured_cpu_s": summary.task_cpu_s,
        "cpu_error": (n * cpu_video - summary.task_cpu_s) / summary.task_cpu_s,
        "load_calibration": load_cal,
        "load_after": load(),
        "flow": flow,
    }


# ------------------------------------------------------------------------------------------------ report
def report(out: Path, res: dict, args) -> None:
    L = [
        "# Extraction at dataset scale: stage throughput, worker memory, projection",
        "",
        f"- date: {res['date']}; machine: {res['machine']}",
        f"- command: `python -m jobs.bench.scale --out {args.out} --rss-seconds "
        f"{' '.join(str(int(s)) for s in args.rss_seconds)} --check-videos {args.check_videos}`"
        + (
            ", assembled with `--merge` from partial runs (`--sections decode flow rss`, `--sections check`, "
            "`--rss-child`)"
            if args.merge
            else ""
        ),
        "- sources: lavfi testsrc2 (moving pattern), H.264 ultrafast, keyframe every 250 frames, 25 fps, "
        "generated by the imageio-ffmpeg binary. The machine is shared (2 cores, several other jobs): wall "
        "rates depend on the load printed in each row; per-CPU-second rates are what one dedicated core gives.",
        "",
        "## Decode (frames/s)",
        "",
        "| source | target | backend | resize | frames | frames/s per CPU s | frames/s wall | load |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for r in res["decode"]:
        L.append(
            f"| {r['source']} | {r['size']} | {r['backend']} | {r['how']} | {r['frames']} | "
            f"{r['fps_cpu']:.0f} | {r['fps_wall']:.0f} | {r['load']} |"
        )
    L += [
        "",
        "CPU time includes the ffmpeg child process. `in decoder`: decord `width/height` or ffmpeg `-s` "
        "(libswscale); `full + cv2.resize`: decode at the source size, then `cv2.resize(INTER_AREA)` per frame.",
        "",
        "## Flow and write",
        "",
        "| size | Brox pairs | pairs/s per CPU s (1 thread) | pairs/s wall | streams+write CPU ms/frame | "
        "write MB/s per CPU s | write MB/s wall | shard bytes/frame (rgb+flow+rgbf) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["flow"]:
        L.append(
            f"| {r['size']} | {r['pairs']} | {r['pairs_s_cpu']:.2f} | {r['pairs_s_wall']:.2f} | "
            f"{1000 * r['write_s_per_frame_cpu']:.1f} | {r['write_mb_s_cpu']:.1f} | {r['write_mb_s_wall']:.1f} | "
            f"{r['bytes_per_frame']:,.0f} | {r['load']} |"
        )
    L += [
        "",
        "Brox: the default preset (`pipeline.flow.DEFAULT_PRESET`, `accurate` when measured: bicubic warp, "
        "border ignore, texture 0.5, inner 5, native SOR 20 sweeps at omega 1.95), batch 8, torch 1 thread. "
        "Streams+write: flow image, RGBF and the default codecs (rgb JPEG q95, "
        "flow gzip-4, rgbf JPEG) into a shard through `GroupStream`, 64 frames.",
        "",
        "## Peak memory of one worker against video length (1280x720 source)",
        "",
        *rss_table(res["rss"]),
    ]
    L += [
        "",
        "`stream`: this code (`stream_video`: chunks of 64 frames through decode, flow, streams and the "
        "shard, decoding in the contained child; through an ffmpeg process that the child reads from a pipe "
        "when decord could hold more than `DECORD_AHEAD_MAX_BYTES` ahead, whose peak is the ffmpeg column, "
        "sampled every 0.5 s; `-`: decord streamed). `whole` (rows measured before 2026-12-05 only): the "
        "previous per-video path (decode the whole video in the child, send it back, flow on all of it, then "
        "write), removed from the code on 2026-12-05. Brox with inner=outer=solver=1 and lzf for every stream "
        "here (memory does "
        "not depend on the iteration counts or the codec: a batch's arrays have the same shapes; the run time "
        "does). Each row is a fresh process; peak "
        "RSS is `VmHWM` of /proc/PID/status of the worker and of its contained decoder child, read at the end "
        "(not `ru_maxrss`, which Linux carries over from the parent process).",
        "",
    ]
    L += [f"- {n}" for n in res.get("rss_notes", [])] + ([""] if res.get("rss_notes") else [])
    ck = res["check"]
    L += [
        "## Check of the model on this machine",
        "",
        f"`jobs.extract --workers 1` on {ck['videos']} demo videos (16 frames, 128x172 source, 128x171, Brox "
        f"{ck['flow']}): predicted {ck['predicted_s']:.0f} s = fixed {ck['fixed_s']:.0f} s (a 2-video job less 2 "
        f"videos' cost, "
        f"measured) + {ck['videos']} x {ck['per_video_s']:.2f} s per video (measured in-process on "
        f"{CALIBRATION_VIDEOS} videos "
        f"just before); measured {ck['measured_s']:.0f} s: error {100 * ck['error']:+.0f}% "
        f"({ck['ok']} ok, {ck['failed']} failed). Load: {ck['load_calibration']} at calibration, "
        f"{ck['load_after']} after the run.",
        "",
        f"CPU time (what the projection's per-CPU-second rates model; independent of the other jobs' load): "
        f"predicted {ck['predicted_cpu_s']:.0f} CPU s = {ck['videos']} x {ck['cpu_per_video_s']:.3f} CPU s per video "
        f"(the same calibration), measured {ck['measured_cpu_s']:.0f} CPU s summed over the job's shard tasks: "
        f"error {100 * ck['cpu_error']:+.0f}%.",
        "",
    ]
    L += [f"- {n}" for n in res.get("check_notes", [])] + ([""] if res.get("check_notes") else [])
    L += [
        "## Projection",
        "",
        "Inputs measured above (per CPU second), plus these **assumptions** (not measured here):",
        "",
        f"- GPU Brox: {GPU_PAIRS_PER_S_340x256:.0f} pairs/s at 340x256 per GPU, the flow engine's goal "
        f"(docs/flow.md), scaled by pixel count: {gpu_rate('128x171'):.0f} pairs/s at 128x171, "
        f"{gpu_rate('256x320'):.0f} at 256x320. **No GPU was measured in this task.**",
        *[f"- {k}: {v[3]}; source {v[2]}." for k, v in DATASETS.items()],
        f"- FCVID-170 recipe: --fps {RECIPE['fps']:g} --segments {RECIPE['segments']} --segment-frames "
        f"{RECIPE['segment_frames']} --size 256 320; decoding seeks to each window (decord), costing the "
        "window plus on average 125 frames from the keyframe before it (keyframe every 250 frames assumed).",
        "- Bytes: shard bytes per frame measured above on testsrc2 (synthetic, compresses differently from "
        "real footage; docs/benchmarks/storage.md has real-footage sizes at 128x171).",
        "- Cluster shapes: `1 GPU (8 cores)`, `8 GPUs + 64 cores`, `100 CPU cores`. `today` (`--mode tasks`): "
        "one shard task "
        "per GPU (decode in its prefetch thread overlapped with GPU flow; streams and write in the task), "
        "so wall = videos x max(decode, flow_gpu + write) / GPUs; on CPU-only clusters every core runs a "
        "task: wall = videos x (decode + flow + write) / cores. `pipelined` (`--mode pipelined`, the "
        "default with GPUs; docs/extract.md): all other cores decode and write, GPU flow actors only solve "
        "flow: wall = max(CPU work / (cores - "
        "GPUs), pairs / (GPUs x GPU rate)). Perfect scaling, no stragglers or I/O limits.",
        "",
        "| dataset | setting | cluster | flow pairs | shard TB | wall h today | wall h pipelined |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in res["projection"]:
        L.append(
            f"| {r['dataset']} | {r['setting']} | {r['cluster']} | {r['pairs']:.3g} | {r['tb']:.2f} | "
            f"{r['hours_today']:.1f} | {r['hours_pipelined']:.1f} |"
        )
    L += ["", "CPU seconds per video by stage (decode / flow on CPU / streams+write):", ""]
    seen = set()
    for r in res["projection"]:
        key = (r["dataset"], r["setting"])
        if key not in seen:
            seen.add(key)
            c = r["per_video_cpu"]
            L.append(f"- {r['dataset']}, {r['setting']}: {c['decode']:.2f} / {c['flow_cpu']:.1f} / {c['write']:.2f}")
    out.write_text("\n".join(L) + "\n")


def check_args(a: argparse.Namespace) -> list[dict] | None:
    """Every flag, before a source is generated, Ray started or a report written (UsageError naming the flag);
    with --merge, the partial runs' JSON (read here: a missing section would fail only at the report)."""
    checks.out_file("--out", a.out)
    if a.merge:
        parts = []
        for f in a.merge:
            try:
                part = json.loads(checks.existing_file("--merge", f).read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise checks.UsageError(f"--merge {f}: not JSON ({checks.one_line(e)})") from None
            if not isinstance(part, dict) or "date" not in part:
                raise checks.UsageError(f"--merge {f}: not the JSON of a partial run (no 'date')")
            parts.append(part)
        missing = [s for s in SECTIONS if not any(s in part for part in parts)]
        if missing:
            raise checks.UsageError(f"--merge: no {', '.join(missing)} section in {' '.join(a.merge)}")
        return parts
    for s in a.sections:
        checks.choice("--sections", s, SECTIONS)
    if a.work is not None:
        checks.out_dir("--work", a.work)
    whole: dict[int, float] = {}
    for secs in a.rss_seconds if "rss" in a.sections else []:  # named by whole seconds (long_<int>s.mp4), reused
        if not 1 <= secs < float("inf"):
            raise checks.UsageError(f"--rss-seconds {secs:g}: must be a number of seconds >= 1")
        if whole.setdefault(int(secs), secs) != secs:
            raise checks.UsageError(
                f"--rss-seconds {whole[int(secs)]:g} {secs:g}: both would be long_{int(secs)}s.mp4 (files are "
                "named by whole seconds and reused)"
            )
    if "decode" in a.sections and not 0.08 <= a.decode_seconds < float("inf"):  # 2 frames at 25 fps
        raise checks.UsageError(f"--decode-seconds {a.decode_seconds:g}: must be a number of seconds >= 0.08")
    if "flow" in a.sections:  # its own FLOW_SOURCE_S source at 25 fps
        checks.positive_int("--pairs", a.pairs)
        if a.pairs > FLOW_SOURCE_S * 25 - 1:
            raise checks.UsageError(
                f"--pairs {a.pairs}: the flow section's source has {FLOW_SOURCE_S * 25} frames: must be <= "
                f"{FLOW_SOURCE_S * 25 - 1}"
            )
    if "check" in a.sections and -(-a.check_videos // CHECK_CLASSES) < 5:
        raise checks.UsageError(
            f"--check-videos {a.check_videos}: the check makes {CHECK_CLASSES} demo classes of ceil(N/"
            f"{CHECK_CLASSES}) videos and needs >= 5 per class (train and test groups of 4 clips): must be >= "
            f"{4 * CHECK_CLASSES + 1}"
        )
    return None


@checks.cli("bench.scale")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(prog="python -m jobs.bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/benchmarks/scale.md")
    p.add_argument(
        "--rss-seconds",
        type=float,
        nargs="+",
        default=[10, 30, 90],
        help="lengths of the generated 1280x720 videos for the memory table",
    )
    p.add_argument("--work", help="folder for the generated sources, kept and reused (default: a temporary one)")
    p.add_argument("--decode-seconds", type=float, default=10, help="length of the decode sources")
    p.add_argument("--pairs", type=int, default=8, help="Brox pairs per size")
    p.add_argument("--check-videos", type=int, default=200)
    p.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        help="parts to run (a partial run writes only the JSON next to --out)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="write the report from the JSON files of partial runs (--sections) instead of measuring",
    )
    p.add_argument("--rss-child", nargs=2, metavar=("PATH", "SIZE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.rss_child:  # internal: bench_rss runs it in a fresh process; no other flag applies
        checks.existing_file("--rss-child PATH", a.rss_child[0])
        checks.choice("--rss-child SIZE", a.rss_child[1], SIZES)
        rss_child(*a.rss_child)
        return 0
    parts = check_args(a)
    from jobs.bench.extract import machine

    res = {"date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC", "machine": machine()}
    if parts is not None:
        res = {**res, **{k: v for part in parts for k, v in part.items()}}
        res["date"] = ", ".join(sorted({p["date"] for p in parts}))
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if a.merge:
            a.sections = []
        if "decode" in a.sections:
            res["decode"] = bench_decode(work, a.decode_seconds)
        if "flow" in a.sections:
            res["flow"] = bench_flow(work, a.pairs)
        if "rss" in a.sections:
            res["rss"] = bench_rss(work, a.rss_seconds)
        if "check" in a.sections:
            res["check"] = check_model(work, a.check_videos)
            print(res["check"], file=sys.stderr, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    if not a.merge and set(a.sections) != set(SECTIONS):
        Path(a.out).with_suffix(f".{'-'.join(a.sections)}.json").write_text(json.dumps(res, indent=1, default=str))
        if "rss" in a.sections:
            print("\n".join(rss_table(res["rss"])), file=sys.stderr)
        return 0
    rates = {
        "decode": {
            (r["source"], r["size"]): r["fps_cpu"]
            for r in res["decode"]
            if r["backend"] == "decord" and r["how"] == "in decoder"
        },
        "flow": {r["size"]: r["pairs_s_cpu"] for r in res["flow"]},
        "write": {r["size"]: r["write_s_per_frame_cpu"] for r in res["flow"]},
    }
    res["projection"] = project(rates, {r["size"]: r["bytes_per_frame"] for r in res["flow"]})
    Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    report(Path(a.out), res, a)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
