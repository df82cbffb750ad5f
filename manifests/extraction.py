"""One shard of the extraction job, without Ray: plan, per-video processing and its bad-input policy.

``jobs.extract`` runs ``build_shard`` as one Ray task per shard; everything here is plain Python so it is
testable (and benchmarkable) without Ray.

Per-video bad-input policy (STYLE.md 5): a video ends in the failures table, with the stage and a reason
naming the file, when

=========  =================================================================================================
stage      reason
=========  =================================================================================================
input      file missing, or its size / sha256 differs from the source manifest (changed since it was built)
decode     ``pipeline.decode.DecodeError`` (corrupt, zero-byte, no video stream, no frame decodes); or the
           contained decoder crashed ("decoder crashed (signal N, NAME)") or ran past ``VideoTask.timeout_s``
           ("decoder timed out after S s"), or an earlier run recorded one of these (manifests.poison)
length     fewer than ``max(2, min_frames)`` decoded frames (n RGB frames give only n - 1 flows)
flow       the flow stage rejects the frames or returns non-finite values
static     max |flow| over the whole video < ``static_threshold`` px: a still shot has no motion, its RGBF
           frames would be black by the rule in ``pipeline.rgbf`` (constant magnitude -> confidence 0)
=========  =================================================================================================

Only these expected, per-video failures (``Rejected``) are recorded. Any other exception (a programming
error, an I/O error) is retried ``video_retries`` times in the task and then fails the task: Ray retries the
shard and, when its retries are spent, the job fails without publishing (jobs.extract). A regression must
never turn into a dataset of per-video "failures".

The shard file holds no run facts (timings, host): the summary carries them to the driver, so the same
inputs give a byte-identical file.

Decoding runs in this process's contained child (``pipeline.contain``), so a native decoder that crashes or
hangs on one file costs that file only (an expected failure, stage decode); its failure row carries
``poison`` = {kind, reason, timeout_s[, cached]} in the shard's extra, which the driver records in the
poison log (no retry: it would crash again).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from manifests.versioning import file_digest
from pipeline.contain import ContainedFailure, Crashed, call_contained
from pipeline.decode import CONTAIN_PRELOAD, DecodeError, decode_video
from pipeline.flow import BroxFlow
from pipeline.flowimage import flow_to_image
from pipeline.rgbf import make_rgbf
from pipeline.storage import DEFAULT_CODEC, ShardReader, ShardWriter


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the extracted content (part of the output version id)."""
    size: tuple[int, int] = (128, 171)  # (H, W) of every stream
    resize: str = "stretch"  # pipeline.decode.RESIZE_MODES: stretch (paper) | short-side-crop (keeps aspect)
    codec: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_CODEC))  # stream -> codec
    codec_opts: dict[str, Any] = dataclasses.field(default_factory=dict)  # level, quality, chunk_frames
    shard_size: int = 64  # videos per shard
    flow_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # pipeline.flow.brox_params kwargs
    bound: float = 20.0  # flow image bound in px (pipeline.flowimage.flow_to_image)
    min_frames: int = 2
    static_threshold: float = 0.05  # px
    splits: tuple[str, ...] = ()  # keep videos that are train/test in one of these splits (all if empty)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExtractConfig":
        d = json.loads(text)
        d["size"], d["splits"] = tuple(d["size"]), tuple(d["splits"])
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class VideoTask:
    """One video of a shard plan (from a source manifest row)."""
    video_id: str
    path: str  # absolute
    rel_path: str
    sha256: str | None
    size_bytes: int | None
    timeout_s: float | None = None  # decode time limit (None: none); set by the driver (jobs.extract)
    skip: dict[str, Any] | None = None  # a poison record of an earlier run: fail at once without decoding


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    index: int
    name: str  # file name, e.g. 00000.h5
    videos: tuple[VideoTask, ...]


class Rejected(Exception):
    """A video fails the bad-input policy; ``stage`` names the rule (see the module docstring).
    ``poison`` is set for a contained decoder crash or timeout (kind, reason, timeout_s)."""

    def __init__(self, stage: str, reason: str, poison: dict[str, Any] | None = None):
        super().__init__(reason)
        self.stage, self.reason, self.poison = stage, reason, poison


def plan_shards(videos: Sequence[VideoTask], shard_size: int) -> Iterator[ShardPlan]:
    """Videos sorted by id, chunked into shards of ``shard_size``: the same inputs give the same shards."""
    ordered = sorted(videos, key=lambda v: v.video_id)
    for k in range(0, len(ordered), shard_size):
        i = k // shard_size
        yield ShardPlan(i, f"{i:05d}.h5", tuple(ordered[k:k + shard_size]))


def group_name(video_id: str) -> str:
    """HDF5 group of a video: its id when that is a safe name, else a hash of it."""
    safe = video_id and all(c.isalnum() or c in "_-." for c in video_id) and not video_id.startswith(".")
    return video_id if safe else "h_" + hashlib.sha256(video_id.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ per-video stages
def check_input(v: VideoTask) -> None:
    """The file is the one the source manifest pinned (size, then sha256), else Rejected("input")."""
    p = Path(v.path)
    try:
        if not p.is_file():
            raise Rejected("input", f"{p}: no such file")
        size = p.stat().st_size
        if v.size_bytes is not None and size != v.size_bytes:
            raise Rejected("input", f"{p}: {size} bytes, the source manifest says {v.size_bytes} "
                                    f"(file changed since the manifest was built)")
        if v.sha256 and file_digest(p) != v.sha256:
            raise Rejected("input", f"{p}: sha256 differs from the source manifest (file changed)")
    except OSError as e:  # unreadable (permissions, I/O error)
        raise Rejected("input", f"{p}: cannot read: {e}") from None


def decode(v: VideoTask, cfg: ExtractConfig, contained: bool = True) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB, or Rejected(decode | length). Decodes in the contained child unless
    ``contained`` is False (benchmarks compare the two)."""
    if v.skip:
        raise Rejected("decode", f"{v.path}: {v.skip['reason']} (recorded {v.skip.get('at')}; --retry-failed "
                                 f"retries it)", {**_poison_fields(v.skip), "cached": True})
    try:
        rgb = call_contained(decode_video, v.path, cfg.size, timeout=v.timeout_s, contained=contained,
                             preload=CONTAIN_PRELOAD, resize=cfg.resize)
    except DecodeError as e:
        raise Rejected("decode", str(e)) from None
    except ContainedFailure as e:
        kind = "crash" if isinstance(e, Crashed) else "timeout"
        raise Rejected("decode", f"{v.path}: {e.reason}", {"kind": kind, "reason": e.reason,
                                                           "timeout_s": v.timeout_s}) from None
    need = max(2, cfg.min_frames)
    if len(rgb) < need:
        raise Rejected("length", f"{v.path}: {len(rgb)} decoded frames < minimum {need} "
                                 f"(n RGB frames give n-1 flows)")
    return rgb


def make_streams(path: str, rgb: np.ndarray, flow_fn: BroxFlow, cfg: ExtractConfig) -> dict[str, np.ndarray]:
    """rgb (T,H,W,3) -> {"rgb": (T,H,W,3), "flow": (T-1,H,W,3) flow image, "rgbf": (T-1,H,W,3)}."""
    try:
        flow = flow_fn(rgb)  # (T-1, H, W, 2) float32 px
    except ValueError as e:
        raise Rejected("flow", f"{path}: {e}") from None
    if not np.isfinite(flow).all():
        raise Rejected("flow", f"{path}: flow has NaN or inf values")
    peak = float(np.sqrt(np.square(flow).sum(-1)).max())
    if peak < cfg.static_threshold:
        raise Rejected("static", f"{path}: static video: max flow magnitude {peak:.3g} px < "
                                 f"{cfg.static_threshold} px (RGBF frames would be black)")
    return {"rgb": rgb, "flow": flow_to_image(flow, bound=cfg.bound), "rgbf": make_rgbf(rgb[:-1], flow)}


def _poison_fields(rec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": rec["kind"], "reason": rec["reason"], "timeout_s": rec.get("timeout_s")}


_FLOW_CACHE: dict[str, BroxFlow] = {}


def flow_stage(cfg: ExtractConfig, device: str) -> BroxFlow:
    """The flow stage, built once per worker process and parameter set."""
    key = json.dumps([cfg.flow_params, device], sort_keys=True)
    if key not in _FLOW_CACHE:
        _FLOW_CACHE[key] = BroxFlow(device=device, **cfg.flow_params)
    return _FLOW_CACHE[key]


# ------------------------------------------------------------------------------------------------ one shard
def build_shard(plan: ShardPlan, cfg: ExtractConfig, shard_dir: str, device: str = "cpu",
                video_retries: int = 1, contained: bool = True) -> dict[str, Any]:
    """Process every video of ``plan`` and write ``<shard_dir>/<plan.name>`` (atomically).

    Returns the shard summary (``shard_summary``). If the shard file already exists (a retried task whose
    first attempt finished) it is verified and its summary returned; nothing is written twice.
    """
    path = Path(shard_dir) / plan.name
    if path.exists():
        return read_finished(path, plan)
    t0, c0 = time.time(), time.process_time()
    flow_fn = flow_stage(cfg, device)
    videos, failures = [], []
    # decode the next video while the current one's flow runs (useful when flow runs on a GPU)
    pool = ThreadPoolExecutor(1) if device != "cpu" else None

    def load(v: VideoTask) -> np.ndarray:
        check_input(v)
        return decode(v, cfg, contained)

    with ShardWriter(path, codec=cfg.codec, **cfg.codec_opts) as w:
        nxt = pool.submit(load, plan.videos[0]) if pool and plan.videos else None
        for i, v in enumerate(plan.videos):
            fut, nxt = nxt, (pool.submit(load, plan.videos[i + 1]) if pool and i + 1 < len(plan.videos) else None)
            for attempt in range(video_retries + 1):
                stage = "decode"
                try:
                    rgb = fut.result() if (fut is not None and attempt == 0) else load(v)
                    stage = "flow"
                    streams = make_streams(v.path, rgb, flow_fn, cfg)
                    stage = "store"
                    group = group_name(v.video_id)
                    sums = w.add(group, streams, {"video_id": v.video_id})
                    videos.append({"video_id": v.video_id, "group": group, "n_rgb": len(rgb),
                                   "n_flow": len(rgb) - 1, "height": cfg.size[0], "width": cfg.size[1],
                                   "checksums": sums})
                    break
                except Rejected as r:
                    failures.append({"video_id": v.video_id, "stage": r.stage, "error": r.reason,
                                     **({"poison": r.poison} if r.poison else {})})
                    break
                except OSError:  # I/O trouble is not the video's fault: Ray retries the whole shard
                    raise
                except Exception as e:  # unexpected: retry this video, then fail the task (policy above)
                    if attempt == video_retries:
                        raise RuntimeError(f"{v.path}: unexpected {type(e).__name__} in stage {stage}: {e}") from e
        w.extra = {"assigned": [v.video_id for v in plan.videos], "videos": videos, "failures": failures}
    if pool:
        pool.shutdown()
    return {**shard_summary(path, w.extra), "seconds": round(time.time() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3)}


def shard_summary(path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """What the driver keeps per shard (no frames): file, sha256, per-video rows and failures."""
    return {"name": path.name, "path": str(path), "sha256": file_digest(path), "videos": extra["videos"],
            "failures": extra["failures"], "assigned": extra["assigned"], "seconds": extra.get("seconds", 0.0),
            "cpu_s": extra.get("cpu_s", 0.0)}


def read_finished(path: Path, plan: ShardPlan, full: bool = False) -> dict[str, Any]:
    """Summary of a shard finished earlier, after checking it (structure; checksums too with ``full``) and
    that it holds exactly the videos ``plan`` assigns to it. Raises ShardError / ValueError otherwise."""
    with ShardReader(path) as r:
        groups = r.verify(full=full)
        extra = r.extra
    want = [v.video_id for v in plan.videos]
    if extra.get("assigned") != want:
        raise ValueError(f"{path}: holds a different set of videos than the plan assigns to it")
    if sorted(groups) != sorted(v["group"] for v in extra["videos"]):
        raise ValueError(f"{path}: groups do not match its own index of videos")
    return shard_summary(path, extra)
