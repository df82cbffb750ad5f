"""One shard of the extraction job, without Ray: each video streamed decode -> flow -> streams into one file.

The Ray driver (jobs.extraction.driver) runs ``build_shard`` as one Ray task per shard; everything here is
plain Python so it is testable (and benchmarkable) without Ray. A video is decoded in chunks
(``source_chunks``), sampled (pipeline.sampling), its pairs solved in fixed groups (``WindowFlow``) and its
streams appended to its HDF5 group as they come (``pipeline.storage.GroupStream``): memory is bounded by a
few chunks whatever the video's length.

Per-video bad-input policy (docs/style.md §5): a video ends in the failures table, with the stage and a reason
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
shard and, when its retries are spent, the job fails without publishing (jobs.extraction.driver). A regression must
never turn into a dataset of per-video "failures".

The shard file holds no run facts (timings, host): the summary carries them to the driver, so the same
inputs give a byte-identical file.

Decoding runs in this process's contained child (``pipeline.contain``), so a native decoder that crashes or
hangs on one file costs that file only (an expected failure, stage decode); its failure row carries
``poison`` = {kind, reason, timeout_s[, cached]} in the shard's extra, which the driver records in the
poison log (no retry: it would crash again).
"""

from __future__ import annotations

import collections
import ctypes
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from manifests.extraction.plan import ExtractConfig, ShardPlan, VideoTask, group_name
from manifests.versioning import file_digest
from pipeline import sampling
from pipeline.contain import ContainedFailure, Crashed, shared
from pipeline.decode import CONTAIN_PRELOAD, DecodeError, FrameStream, stream_close, stream_next, stream_open
from pipeline.flow import BroxFlow
from pipeline.flowimage import flow_to_image
from pipeline.rgbf import make_rgbf
from pipeline.storage import ShardError, ShardReader, ShardWriter


class Rejected(Exception):
    """A video fails the bad-input policy; ``stage`` names the rule (see the module docstring).
    ``poison`` is set for a contained decoder crash or timeout (kind, reason, timeout_s)."""

    def __init__(self, stage: str, reason: str, poison: dict[str, Any] | None = None):
        super().__init__(reason)
        self.stage, self.reason, self.poison = stage, reason, poison


# ------------------------------------------------------------------------------------------ per-video stages
def check_input(v: VideoTask) -> None:
    """The file is the one the source manifest pinned (size, then sha256), else Rejected("input")."""
    p = Path(v.path)
    try:
        if not p.is_file():
            raise Rejected("input", f"{p}: no such file")
        size = p.stat().st_size
        if v.size_bytes is not None and size != v.size_bytes:
            raise Rejected(
                "input",
                f"{p}: {size} bytes, the source manifest says {v.size_bytes} "
                f"(file changed since the manifest was built)",
            )
        if v.sha256 and file_digest(p) != v.sha256:
            raise Rejected("input", f"{p}: sha256 differs from the source manifest (file changed)")
    except OSError as e:  # unreadable (permissions, I/O error)
        raise Rejected("input", f"{p}: cannot read: {e}") from None


def _poison_fields(rec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": rec["kind"], "reason": rec["reason"], "timeout_s": rec.get("timeout_s")}


_FLOW_CACHE: dict[tuple, BroxFlow] = {}


def flow_stage(cfg: ExtractConfig, device: str) -> BroxFlow:
    """The flow stage, built once per worker process and parameter set."""
    key = (cfg.flow.params, device)
    if key not in _FLOW_CACHE:
        _FLOW_CACHE[key] = BroxFlow(cfg.flow.params, device=device)
    return _FLOW_CACHE[key]


# ------------------------------------------------------------------------------------- streaming one video
STREAM_FRAMES = 64  # frames per decoded chunk; flow runs on multiples of the flow batch (bounded memory)
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest threshold on 64-bit systems


def bound_heap(height: int, width: int) -> bool:
    """Pin glibc's mmap threshold of this process at one chunk of frames (STREAM_FRAMES x H x W x 3 bytes, at
    most 32 MiB): a chunk's frame, flow and stream arrays are then each mapped when allocated and unmapped when
    freed. glibc's default threshold is dynamic: freeing a mapped block raises it to that block's size, after
    which arrays of that size are carved from the heap, between small long-lived blocks (HDF5, Python): the
    heap then holds hundreds of MiB of free, resident holes and its extent, with the worker's peak RSS, creeps
    up with the video's length (docs/benchmarks/scale.md). Brox's per-batch tensors are smaller and stay in the
    heap, where they are reused batch after batch (mapping them too, at a 4 MiB threshold, cost 20% more CPU
    at 256x320). Returns False where the C library has no ``mallopt`` (not glibc): nothing changes."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    nbytes = min(STREAM_FRAMES * int(height) * int(width) * 3, _MMAP_THRESHOLD_MAX)
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, nbytes))


def _poison(v: VideoTask, e: ContainedFailure) -> Rejected:
    kind = "crash" if isinstance(e, Crashed) else "timeout"
    # a timeout is reported against the video's whole limit (the calls share it), not the last call's share
    reason = e.reason if kind == "crash" or v.timeout_s is None else f"decoder timed out after {v.timeout_s:g} s"
    return Rejected("decode", f"{v.path}: {reason}", {"kind": kind, "reason": reason, "timeout_s": v.timeout_s})


def source_chunks(
    v: VideoTask,
    cfg: ExtractConfig,
    ranges: list[tuple[int, int]] | None = None,
    contained: bool = True,
    end: dict[str, Any] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decoded frames of ``v`` at ``cfg.size`` as (first source index, (N, H, W, 3) uint8) chunks of at most
    STREAM_FRAMES, from the contained child (pipeline.contain): the child holds the open decoder, each call
    returns one chunk and ``v.timeout_s`` bounds the summed time of the calls. ``ranges``: only these
    [start, stop) source frames (pipeline.decode.FrameStream); never past the frames the source manifest
    counted (``v.num_frames``). ``end``: filled, when the stream closes, with what the decoder says of it
    (``partial``: why it stopped before the end of the file). Raises Rejected("decode") (with ``poison`` for
    a crash / timeout)."""
    if v.skip:
        raise Rejected(
            "decode",
            f"{v.path}: {v.skip['reason']} (in the poison log; --retry-failed retries it)",
            {**_poison_fields(v.skip), "cached": True},
        )
    if not contained:
        fs = FrameStream(v.path, cfg.size, STREAM_FRAMES, limit=v.num_frames, ranges=ranges, resize=cfg.resize)
        try:
            yield from fs
        except DecodeError as e:
            raise Rejected("decode", str(e)) from None
        if end is not None:
            end["partial"] = fs.partial
        return
    child = shared(CONTAIN_PRELOAD)
    spent = 0.0

    def call(fn, *args):
        nonlocal spent
        left = None if v.timeout_s is None else max(v.timeout_s - spent, 1e-3)
        t = time.monotonic()
        try:
            return child.call(fn, *args, timeout=left)
        finally:
            spent += time.monotonic() - t

    token = None
    try:
        token = call(stream_open, v.path, cfg.size, STREAM_FRAMES, None, v.num_frames, ranges, cfg.resize)
        while (chunk := call(stream_next, token)) is not None:
            yield chunk
    except DecodeError as e:
        raise Rejected("decode", str(e)) from None
    except ContainedFailure as e:
        token = None  # the child is gone, and its stream with it
        raise _poison(v, e) from None
    finally:
        if token is not None:
            try:
                closed = call(stream_close, token)
            except ContainedFailure:
                closed = {}
            if end is not None:
                end["partial"] = closed.get("partial")


class WindowFlow:
    """Flow, flow image and RGBF of the frames of each window, appended to a GroupStream as they arrive.

    Pairs are solved in groups of ``step`` pairs (a multiple of the flow stage's batch), with the last frame
    of a group carried into the next, so a window is solved in exactly the batches ``BroxFlow`` would use on
    the whole window at once: the result does not depend on how decoding chunked the frames. With a flow
    service (``flow_fn.submit`` / ``.result``, jobs.extraction.flowpool.RemoteFlow) up to ``flow_fn.in_flight``
    groups are outstanding while decoding goes on; their results are written in order."""

    def __init__(self, path: str, flow_fn: BroxFlow, cfg: ExtractConfig, out):
        self.path, self.flow_fn, self.cfg, self.out = path, flow_fn, cfg, out
        batch = getattr(flow_fn, "max_batch", None) or 8  # None: BroxFlow on CUDA sizes batches per call
        self.step = batch * max(1, -(-STREAM_FRAMES // batch))
        self.win, self.buf = None, None
        # writes in the order a local flow stage makes them (rgb of a chunk, then the groups it completes), so
        # the shard file is byte-identical: ("rgb", frames) or ("flow", frames, handle of a remote request)
        self.ops: collections.deque = collections.deque()
        self.in_flight = getattr(flow_fn, "in_flight", 0) if hasattr(flow_fn, "submit") else 0
        self.n_rgb = self.n_flow = 0
        self.lengths: list[int] = []
        self.peak = 0.0

    def add(self, win: int, frames: np.ndarray) -> None:
        if win != self.win:
            self.flush()
            self.win, self.buf = win, frames[:0]
            self.lengths.append(0)
        self._queue(("rgb", frames))
        self.n_rgb += len(frames)
        self.lengths[-1] += len(frames)
        self.buf = np.concatenate([self.buf, frames]) if len(self.buf) else frames
        while len(self.buf) > self.step:
            self._flow(self.buf[: self.step + 1])
            self.buf = self.buf[self.step :]

    def flush(self) -> None:
        """Solve what is buffered and wait for every outstanding request (the end of a window or video)."""
        if self.buf is not None and len(self.buf) >= 2:
            self._flow(self.buf)
        self.buf = None
        while self.ops:
            self._write(self.ops.popleft())

    def _flow(self, frames: np.ndarray) -> None:
        self._queue(("flow", frames, self.flow_fn.submit(frames) if self.in_flight else None))

    def _queue(self, op: tuple) -> None:
        self.ops.append(op)
        if not self.in_flight:  # a local flow stage: everything now, in order
            while self.ops:
                self._write(self.ops.popleft())
            return
        # a flow service: at most in_flight requests outstanding; write what is ready at the front
        while sum(o[0] == "flow" for o in self.ops) > self.in_flight or (self.ops and self.ops[0][0] == "rgb"):
            self._write(self.ops.popleft())

    def _write(self, op: tuple) -> None:
        if op[0] == "rgb":
            self.out.append("rgb", op[1])
        else:
            self._finish(op[1], op[2])

    def _finish(self, frames: np.ndarray, handle) -> None:
        try:
            flow = self.flow_fn(frames) if handle is None else self.flow_fn.result(handle)  # (n-1, H, W, 2) px
        except ValueError as e:
            raise Rejected("flow", f"{self.path}: {e}") from None
        if not np.isfinite(flow).all():
            raise Rejected("flow", f"{self.path}: flow has NaN or inf values")
        self.peak = max(self.peak, float(np.sqrt(np.square(flow).sum(-1)).max()))
        self.out.append("flow", flow_to_image(flow, bound=self.cfg.bound))
        self.out.append("rgbf", make_rgbf(frames[:-1], flow))
        self.n_flow += len(flow)


class _Collect:
    """A GroupStream's ``append``, into memory (``streams_of``)."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)

    def append(self, stream: str, frames: np.ndarray) -> None:
        self.parts[stream].append(frames)


def streams_of(frames: np.ndarray, flow_fn: BroxFlow, cfg: ExtractConfig, path: str = "") -> dict[str, np.ndarray]:
    """{"rgb": (T,H,W,3), "flow": (T-1,H,W,3) flow image, "rgbf": (T-1,H,W,3)} of frames already in memory,
    through the same ``WindowFlow`` as ``stream_video`` (benchmarks and tests)."""
    sink = _Collect()
    acc = WindowFlow(path, flow_fn, cfg, sink)
    acc.add(0, frames)
    acc.flush()
    return {s: np.concatenate(p) for s, p in sink.parts.items()}


def _prefetch(it: Iterator[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """Run ``it`` in a thread, at most ``depth`` chunks ahead (decode overlaps a GPU's flow)."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def pump():
        try:
            for x in it:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            q.put(end)
        except BaseException as e:  # noqa: BLE001  re-raised in the consumer
            q.put(e)
        finally:
            if stop.is_set():
                it.close()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        while (x := q.get()) is not end:
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def plan_windows(v: VideoTask, cfg: ExtractConfig) -> tuple[list[sampling.Window] | None, float]:
    """The video's windows in output frames (None: every frame, count known only after decoding) and its
    native rate. Rejected("length") when it is shorter than one window, Rejected("decode") when --fps needs
    a native rate that the source manifest does not have."""
    native = v.fps or ((v.num_frames / v.duration_s) if v.num_frames and v.duration_s else None)
    if cfg.fps is not None and not native:
        raise Rejected("decode", f"{v.path}: no native frame rate in the source manifest (needed by --fps)")
    native = native or 1.0
    if cfg.segments is None:
        return None, native
    n_src = v.num_frames
    if n_src is None:  # not counted by the manifest: count by decoding (the one extra pass)
        n_src = sum(len(c) for _, c in source_chunks(v, cfg))
    t = sampling.output_count(n_src, native, cfg.fps)
    wins = sampling.windows(t, cfg.segments, cfg.segment_frames)
    at = f" at {cfg.fps:g} fps" if cfg.fps else ""
    if not wins or t < cfg.min_frames:
        raise Rejected(
            "length",
            f"{v.path}: {t} frames{at} < one window of {cfg.segment_frames} frames"
            + (f" (minimum {cfg.min_frames})" if t < cfg.min_frames else ""),
        )
    return wins, native


def stream_video(
    v: VideoTask,
    cfg: ExtractConfig,
    flow_fn: BroxFlow,
    writer: ShardWriter,
    group: str,
    contained: bool = True,
    prefetch: int = 0,
) -> dict[str, Any]:
    """Decode -> sample -> flow -> streams of one video, chunk by chunk into ``writer`` under ``group``;
    memory is bounded by a few chunks whatever the video's length. Returns the video's row (shard summary);
    on any exception the group is discarded and the exception propagates (Rejected: the bad-input policy).
    Calls ``bound_heap`` first."""
    bound_heap(*cfg.size)
    check_input(v)
    wins, native = plan_windows(v, cfg)
    sel = sampling.FrameSelector(wins, native, cfg.fps)
    out = writer.stream(group, *cfg.size)
    end: dict[str, Any] = {}
    try:
        acc = WindowFlow(v.path, flow_fn, cfg, out)
        chunks = source_chunks(v, cfg, sel.source_ranges(), contained, end)
        for base, chunk in _prefetch(chunks, prefetch) if prefetch else chunks:
            for win, frames in sel.push(chunk, base):
                acc.add(win, frames)
            if sel.done:
                break
        acc.flush()
        partial = check_partial(v, cfg, end.get("partial"), None if wins else sel.base)
        need = max(2, cfg.min_frames)
        if wins is None and acc.n_rgb < need:
            raise Rejected(
                "length", f"{v.path}: {acc.n_rgb} decoded frames < minimum {need} (n RGB frames give n-1 flows)"
            )
        if wins is not None and not sel.done:
            raise Rejected(
                "length",
                f"{v.path}: decoding stopped after {sel.base} frames; the windows need "
                f"{sel.needed_source} (the source manifest counted {v.num_frames})",
            )
        if acc.peak < cfg.static_threshold:
            raise Rejected(
                "static",
                f"{v.path}: static video: max flow magnitude {acc.peak:.3g} px < "
                f"{cfg.static_threshold} px (RGBF frames would be black)",
            )
        stored = wins if wins is not None else [(0, acc.n_rgb)]
        rate = cfg.fps or native
        marks = {"partial": partial} if partial else {}  # a whole file's group and row stay as they were
        sums = out.finish(
            {"video_id": v.video_id, "windows": [list(w) for w in stored], "fps": float(rate), **marks},
            n_flow=acc.n_flow,
        )
    except BaseException:
        out.discard()
        raise
    return video_row(v, cfg, group, acc.n_rgb, acc.n_flow, sums, stored, float(rate), partial)


def video_row(
    v: VideoTask, cfg: ExtractConfig, group: str, n_rgb: int, n_flow: int, sums: dict, windows, fps, partial
) -> dict[str, Any]:
    """A stored video's row of the shard summary (and of the shard file's index); ``partial`` only when set,
    so a whole file's row is what it always was."""
    return {
        "video_id": v.video_id,
        "group": group,
        "n_rgb": n_rgb,
        "n_flow": n_flow,
        "height": cfg.size[0],
        "width": cfg.size[1],
        "checksums": sums,
        "windows": [list(w) for w in windows],
        "fps": fps,
        **({"partial": partial} if partial else {}),
    }


def check_partial(v: VideoTask, cfg: ExtractConfig, stream_partial: str | None, decoded: int | None) -> str | None:
    """Why ``v`` holds only a prefix (the source manifest's reason, else what the decoder said now), or None.
    ``decoded``: source frames decoded when every frame was wanted (None with --segments, whose windows are
    checked on their own). Rejected("decode") when extraction got fewer frames than the source manifest
    counted (it never stores a different count), or when a partial file meets ``--partial fail``."""
    if decoded is not None and v.num_frames is not None and decoded < v.num_frames:
        why = f": {stream_partial}" if stream_partial else ""
        raise Rejected("decode", f"{v.path}: decoded {decoded} frames, the source manifest counted {v.num_frames}{why}")
    partial = v.partial or stream_partial
    if partial and cfg.partial == "fail":
        raise Rejected("decode", f"{v.path}: decodes only part-way ({partial}); --partial fail")
    return partial


# ------------------------------------------------------------------------------------------------ one shard
def build_shard(
    plan: ShardPlan,
    cfg: ExtractConfig,
    shard_dir: str,
    device: str = "cpu",
    video_retries: int = 1,
    contained: bool = True,
    flow=None,
) -> dict[str, Any]:
    """Process every video of ``plan`` and write ``<shard_dir>/<plan.name>`` (atomically), streaming each
    video through decode and flow in chunks (``stream_video``).

    Returns the shard summary (``shard_summary``). If the shard file already exists (a retried task whose
    first attempt finished) it is verified and its summary returned; nothing is written twice. ``flow``: a
    flow service (``jobs.extraction.flowpool.RemoteFlow``) that solves the pairs instead of this task. A video
    with ``reuse`` (an earlier version holds it, extracted the same way) is copied from there (``reuse_video``)
    unless its stored payloads fail their checksums; the summary counts ``reused`` by version and
    ``recomputed`` (reuse refused).
    """
    path = Path(shard_dir) / plan.name
    if path.exists():
        return read_finished(path, plan)
    t0, c0 = time.time(), time.process_time()
    # flow: a flow service (jobs.extraction.flowpool.RemoteFlow, the pipelined mode) or None (solve in this task)
    flow_fn = flow.at(plan.index) if flow is not None else flow_stage(cfg, device)
    videos, failures, reused, recomputed = [], [], collections.Counter(), 0
    prefetch = 2 if device != "cpu" or flow is not None else 0  # decode ahead while a GPU / the pool solves
    with ShardWriter(path, codec=cfg.codec, **cfg.codec_opts) as w:
        for v in plan.videos:
            if v.reuse is not None:
                row = reuse_video(v, cfg, w, group_name(v.video_id))
                if row is not None:
                    videos.append(row)
                    reused[v.reuse["version"]] += 1
                    continue
                recomputed += 1
            for attempt in range(video_retries + 1):
                try:
                    videos.append(stream_video(v, cfg, flow_fn, w, group_name(v.video_id), contained, prefetch))
                    break
                except Rejected as r:
                    failures.append(
                        {
                            "video_id": v.video_id,
                            "stage": r.stage,
                            "error": r.reason,
                            **({"poison": r.poison} if r.poison else {}),
                        }
                    )
                    break
                except OSError:  # I/O trouble is not the video's fault: Ray retries the whole shard
                    raise
                except Exception as e:  # unexpected: retry this video, then fail the task (policy above)
                    if attempt == video_retries:
                        raise RuntimeError(f"{v.path}: unexpected {type(e).__name__} while streaming: {e}") from e
        w.extra = {"assigned": [v.video_id for v in plan.videos], "videos": videos, "failures": failures}
    return {
        **shard_summary(path, w.extra),
        "seconds": round(time.time() - t0, 3),
        "cpu_s": round(time.process_time() - c0, 3),
        "reused": dict(reused),
        "recomputed": recomputed,
    }


def reuse_video(v: VideoTask, cfg: ExtractConfig, w: ShardWriter, group: str) -> dict[str, Any] | None:
    """``v``'s row, its group copied from the version ``v.reuse`` names (stored payloads byte for byte: no
    decode, no flow), or None when that group is gone or fails its checksums (the video is then computed)."""
    r = v.reuse or {}
    try:
        with ShardReader(r["shard"]) as src:
            src.verify_group(r["group"], expected=r["checksums"])
            sums = w.copy_group(src, r["group"], group, {"video_id": v.video_id})
    except (ShardError, OSError, KeyError):
        return None
    return video_row(v, cfg, group, r["n_rgb"], r["n_flow"], sums, r["windows"], r["fps"], r.get("partial"))


def shard_summary(path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """What the driver keeps per shard (no frames): file, sha256, per-video rows and failures."""
    return {
        "name": path.name,
        "path": str(path),
        "sha256": file_digest(path),
        "videos": extra["videos"],
        "failures": extra["failures"],
        "assigned": extra["assigned"],
        "seconds": extra.get("seconds", 0.0),
        "cpu_s": extra.get("cpu_s", 0.0),
    }


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
