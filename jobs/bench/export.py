"""Benchmark jobs.export: bytes on disk and fidelity of the rawframes and videos formats against the shards.

    python -m jobs.bench.export --manifest SHARDS --out docs/benchmarks/export.md [--work DIR]

On one shard version (the docs use the demo's target version) it measures, one after the other:

* the HDF5 version: bytes on disk (``du``, counting blocks), file content bytes, stored payload per stream;
* the rawframes export (``jobs.export``, defaults: RGB + flow JPEGs at quality 95, ``--workers 0``): bytes
  on disk of the RGB frames, the flow planes and the whole export; RGB fidelity of the JPEGs (OpenCV);
* the videos export once per ``pipeline.videofile.VIDEO_CODECS`` entry (``--format videos --video-codec C``):
  bytes on disk, time, and fidelity of every video decoded by decord (as mmaction2's ``DecordDecode``) against
  the stored RGB frames: frame count, max / mean absolute difference, PSNR, videos decoded bit for bit;
* flow as video (not an export format: mmaction2 reads flow only as rawframes): the flow images of every video
  encoded with the default codec, to record what it would take.

Fidelity is against the frames the version stores (the shards' RGB may itself be JPEG-coded). Sizes are
decimal MB (10^6 bytes). The report records the date, the machine and the load average.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from jobs import export as export_job
from jobs.cli import checks
from jobs.report.dataset_card import stored_bytes
from manifests.readers.rawframes import RGB_TMPL, ExportOptions, make_plan
from manifests.readers.videos import VIDEOS_DIR
from manifests.shards import KIND as SHARDS_KIND
from manifests.shards import ShardDataset, load_shards
from pipeline.storage import ShardReader
from pipeline.videofile import DEFAULT_CODEC, VIDEO_CODECS, encode_video


def du(*paths: Path) -> int:
    """Bytes on disk (``du -scB1``: allocated blocks, directories included)."""
    names = "".join(f"{p}\0" for p in paths)
    run = subprocess.run(["du", "-scB1", "--files0-from=-"], input=names, capture_output=True, text=True, check=True)
    return int(run.stdout.strip().splitlines()[-1].split()[0])


def content(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Errors:
    """Absolute differences of decoded frames against the stored ones, accumulated per video."""

    def __init__(self) -> None:
        self.sq = self.abs = self.n = 0.0
        self.worst, self.exact, self.videos, self.count_ok = 0, 0, 0, 0

    def add(self, got: np.ndarray, want: np.ndarray) -> None:
        self.videos += 1
        if got.shape != want.shape:
            return
        self.count_ok += 1
        d = np.abs(got.astype(np.int16) - want.astype(np.int16))
        self.sq += float((d.astype(np.float64) ** 2).sum())
        self.abs += float(d.sum())
        self.n += d.size
        self.worst = max(self.worst, int(d.max()))
        self.exact += int(d.max() == 0)

    def row(self) -> dict:
        mse = self.sq / max(self.n, 1)
        return {
            "frames ok": f"{self.count_ok}/{self.videos}",
            "max": self.worst,
            "mean": f"{self.abs / max(self.n, 1):.3f}",
            "psnr": "exact" if mse == 0 else f"{10 * np.log10(255**2 / mse):.1f} dB",
            "bit-exact": f"{self.exact}/{self.videos}",
        }


def stored(ds: ShardDataset, stream: str):
    """(record, its stored frames of ``stream``) per video."""
    for r in ds.records:
        with ShardReader(r.shard_path) as reader:
            yield r, reader.read(r.group, stream)


def decord_frames(path: Path) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def run_export(manifest: str, out: Path, opts: dict) -> float:
    t0 = time.perf_counter()
    summary = export_job.export(manifest, out, opts, workers=0, log=lambda m: None)
    if summary["errors"]:
        raise RuntimeError(f"export to {out}: {summary['errors']} videos failed")
    return time.perf_counter() - t0


def bench(manifest: str, work: Path, log=print) -> dict:
    ds = load_shards(manifest)
    res: dict = {"version": ds.meta.version_id, "videos": len(ds.records), "load_start": load()}
    frames = sum(r.n_rgb for r in ds.records)
    h, w = ds.records[0].height, ds.records[0].width
    res["frames"], res["size"] = frames, f"{h}x{w}"
    files = [p for p in ds.root.rglob("*") if p.is_file()]
    per_stream = {s: 0 for s in ("rgb", "flow", "rgbf")}
    for r in ds.records:
        with ShardReader(r.shard_path) as reader:
            for s in per_stream:
                per_stream[s] += stored_bytes(reader, r.group, s)
    res["hdf5"] = {"disk": du(ds.root), "content": content(files), "streams": per_stream}
    log(f"hdf5 {res['hdf5']}")

    raw = work / "rawframes"
    secs = run_export(manifest, raw, {"format": "rawframes"})
    jpgs = list((raw / "rawframes").rglob("*.jpg"))
    rgb_files = [p for p in jpgs if p.name.startswith("img_")]
    flow_files = [p for p in jpgs if p.name.startswith("flow_")]
    err = Errors()
    names = make_plan(ds, ExportOptions(version_id=ds.meta.version_id))[0].names
    for r, rgb in stored(ds, "rgb"):
        d = raw / "rawframes" / names[r.video_id]
        got = [cv2.imread(str(d / RGB_TMPL.format(k + 1)), cv2.IMREAD_COLOR) for k in range(r.n_rgb)]
        err.add(np.stack([cv2.cvtColor(g, cv2.COLOR_BGR2RGB) for g in got]), rgb)
    res["rawframes"] = {
        "seconds": secs,
        "disk": du(raw),
        "rgb_disk": du(*rgb_files),
        "rgb_content": content(rgb_files),
        "flow_disk": du(*flow_files),
        "flow_content": content(flow_files),
        "files": len(jpgs),
        "fidelity": err.row(),
    }
    log(f"rawframes {res['rawframes']} load {load()}")

    res["codecs"] = {}
    for codec in VIDEO_CODECS:
        out = work / f"videos-{codec}"
        secs = run_export(manifest, out, {"format": "videos", "video_codec": codec})
        vids = [p for p in (out / VIDEOS_DIR).rglob("*") if p.is_file()]
        err = Errors()
        plan = make_plan(ds, ExportOptions(version_id=ds.meta.version_id, format="videos", video_codec=codec))[0]
        for r, rgb in stored(ds, "rgb"):
            err.add(decord_frames(out / VIDEOS_DIR / plan.entry(r)), rgb)
        res["codecs"][codec] = {
            "seconds": secs,
            "disk": du(out),
            "videos_disk": du(out / VIDEOS_DIR),
            "content": content(vids),
            "fidelity": err.row(),
        }
        log(f"videos {codec} {res['codecs'][codec]} load {load()}")

    flow_dir = work / "flow-videos"  # what a lossless flow video would take (not exported)
    flow_dir.mkdir(parents=True, exist_ok=True)
    err = Errors()
    for r, flow in stored(ds, "flow"):
        p = encode_video(flow_dir / f"{r.video_id}{VIDEO_CODECS[DEFAULT_CODEC].suffix}", flow, DEFAULT_CODEC)
        err.add(decord_frames(p), flow)
    flows = list(flow_dir.iterdir())
    res["flow_video"] = {"disk": du(flow_dir), "content": content(flows), "fidelity": err.row()}
    log(f"flow video {res['flow_video']}")
    res["load_end"] = load()
    return res


def mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def report(res: dict, command: str) -> str:
    import decord
    import imageio_ffmpeg

    hdf = res["hdf5"]
    raw = res["rawframes"]
    ffv = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout
    lines = [
        "# Export size and fidelity benchmark",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores (machine shared "
        f"with other jobs); load average at start {res['load_start']}, at end {res['load_end']}",
        f"- Python {platform.python_version()}, decord {decord.__version__}, {' '.join(ffv.split()[:3])} "
        f"(imageio-ffmpeg {imageio_ffmpeg.__version__})",
        "",
        f"Command: `{command}`",
        "",
        f"Version `{res['version']}`: {res['videos']} videos, {res['frames']} RGB frames at {res['size']}. "
        "Bytes on disk are `du` (allocated blocks, directories included); content is the files' sizes. "
        "Fidelity: every video's frames as read back (decord for videos, as mmaction2's DecordDecode; OpenCV for "
        "the JPEGs) against the RGB frames the version stores; max / mean absolute difference in grey levels.",
        "",
        "| what | streams | on disk MB | content MB | x HDF5 on disk | frames ok | max | mean | PSNR | bit-exact "
        "| export s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| HDF5 shard version | RGB, flow, RGBF | {mb(hdf['disk'])} | {mb(hdf['content'])} | 1.00 | | | | | | |",
        f"| rawframes export (JPEG q95) | RGB + flow | {mb(raw['disk'])} | "
        f"{mb(raw['rgb_content'] + raw['flow_content'])} | {raw['disk'] / hdf['disk']:.2f} | | | | | | "
        f"{raw['seconds']:.1f} |",
    ]
    f = raw["fidelity"]
    lines.append(
        f"| rawframes, RGB JPEGs only | RGB | {mb(raw['rgb_disk'])} | {mb(raw['rgb_content'])} | "
        f"{raw['rgb_disk'] / hdf['disk']:.2f} | {f['frames ok']} | {f['max']} | {f['mean']} | {f['psnr']} | "
        f"{f['bit-exact']} | |"
    )
    lines.append(
        f"| rawframes, flow JPEGs only | flow | {mb(raw['flow_disk'])} | {mb(raw['flow_content'])} | "
        f"{raw['flow_disk'] / hdf['disk']:.2f} | | | | | | |"
    )
    for codec, v in res["codecs"].items():
        f = v["fidelity"]
        lines.append(
            f"| videos export, `{codec}`{' (default)' if codec == DEFAULT_CODEC else ''} | RGB | {mb(v['disk'])} | "
            f"{mb(v['content'])} | {v['disk'] / hdf['disk']:.2f} | {f['frames ok']} | {f['max']} | {f['mean']} | "
            f"{f['psnr']} | {f['bit-exact']} | {v['seconds']:.1f} |"
        )
    fv = res["flow_video"]
    f = fv["fidelity"]
    lines += [
        f"| flow as `{DEFAULT_CODEC}` video (not exported) | flow | {mb(fv['disk'])} | {mb(fv['content'])} | "
        f"{fv['disk'] / hdf['disk']:.2f} | {f['frames ok']} | {f['max']} | {f['mean']} | {f['psnr']} | "
        f"{f['bit-exact']} | |",
        "",
        "HDF5 stored payload per stream (MB): "
        + ", ".join(f"{s} {mb(n)}" for s, n in hdf["streams"].items())
        + ". Codecs: "
        + "; ".join(f"`{c.name}`: {c.note}" for c in VIDEO_CODECS.values())
        + ".",
        "",
    ]
    return "\n".join(lines)


@checks.cli("bench.export")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(prog="python -m jobs.bench.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True, help="shard version (the docs: the demo's target version)")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/export.md"))
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    a = ap.parse_args(argv)
    checks.version("--manifest", a.manifest, SHARDS_KIND)  # every flag checked before an export starts
    checks.out_file("--out", a.out)
    if a.work is not None:
        checks.existing_dir("--work", a.work, writable=True)  # TemporaryDirectory(dir=...) needs it to exist
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=a.work) as work:
        res = bench(a.manifest, Path(work), log)
    command = "python -m jobs.bench.export " + " ".join(argv if argv is not None else sys.argv[1:])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report(res, command))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
