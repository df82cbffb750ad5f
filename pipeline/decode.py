"""Decode videos to uint8 RGB frames and probe their container headers.

Backends sit behind one small interface, chosen from the ``STREAM_BACKENDS`` table (docs/style.md §3):
``backend(path, size, chunk, ranges) -> iterator of (first index, frames (N, H, W, 3) uint8)`` that raises
``BackendFailure`` when it cannot go on. ``FrameStream`` is the one decoder every caller uses (the source
manifest's frame count, extraction, ``decode_video``): decord first, ffmpeg (the binary shipped by
imageio-ffmpeg, through a pipe) when decord fails, both giving the same frames bit for bit.

The frame count is what the decoder actually produced, never the header's claim: real files lie (a UCF-101
AVI claims 444 frames and decodes 68). Bad-input policy (docs/style.md §5): a backend that fails resumes with
the next one after the frames already emitted; when every backend stops part-way (a cut download, a corrupt
tail or a damaged region: ffmpeg runs with ``-xerror``, so it stops there rather than dropping or concealing
frames) the decodable prefix is what the file holds, and ``FrameStream.partial`` says why. The callers decide
what a partial file is worth (``--partial keep|fail``); the count and the verdict are the same in every stage
because they all decode the same way.

Probing parses ``ffmpeg -i`` stderr (imageio-ffmpeg ships no ffprobe, which ffmpeg-python's probe needs).
The probe runs the ffmpeg binary as a child process, so a crash or hang there is already contained (a signal
or ``PROBE_TIMEOUT_S`` becomes a DecodeError). In-process decoding (decord) is contained by the callers with
``pipeline.contain``, with a time limit from ``decode_timeout``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
from collections.abc import Generator
from pathlib import Path

import numpy as np

DEFAULT_SIZE = (128, 171)  # (H, W) as in C3D / the paper
DECORD_THREADS = 1  # decoder threads per call (decord and ffmpeg); parallelism comes from Ray tasks
PROBE_TIMEOUT_S = 120  # reading a header takes milliseconds; a hang means a pathological file
# decode time limit (decode_timeout): a floor, and a pessimistic throughput in decoded pixels per second
DECODE_TIMEOUT_FLOOR_S = 30.0
DECODE_PIXEL_RATE = 1e7  # source px/s; >= 4x below the slowest decode measured (docs/manifests.md)
DECODE_TIMEOUT_UNKNOWN_S = 600.0  # no usable duration / size in the header
CONTAIN_PRELOAD = ("pipeline.decode", "decord", "ffmpeg")  # what a contained decoder child imports up front


class DecodeError(RuntimeError):
    """A video could not be probed or decoded. The message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # picklable (it crosses the pipe of pipeline.contain)
        return DecodeError, (self.path, self.reason)


class BackendFailure(Exception):
    """Raised by a backend that could not decode the whole file; ``frames`` holds what it got first."""

    def __init__(self, reason: str, frames: np.ndarray | None = None):
        super().__init__(reason)
        self.reason, self.frames = reason, frames

    def __reduce__(self):
        return BackendFailure, (self.reason, self.frames)


@dataclasses.dataclass(frozen=True)
class ProbeInfo:
    """What the container header says (``header_frames`` = round(duration × fps); may be wrong)."""

    duration_s: float | None
    fps: float | None
    width: int
    height: int
    header_frames: int | None
    codec: str


@dataclasses.dataclass(frozen=True)
class Decoded:
    """Frames (T, H, W, 3) uint8 RGB, the backend that produced them, and why backends failed."""

    frames: np.ndarray
    backend: str
    note: str | None = None  # why a backend failed (the file may still be whole: the next one took over)
    partial: str | None = None  # why decoding stopped before the end: ``frames`` is the decodable prefix


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def scale_filter(size: tuple[int, int]) -> str:
    """The ffmpeg filter that scales to ``size`` (H, W) exactly as decord does (its filter graph scales with
    libswscale's bilinear mode): the ffmpeg backends then give decord's frames bit for bit (tests/test_decode.py),
    so a fallback or a long video streamed through ffmpeg (``FrameStream``) changes no pixel."""
    h, w = size
    return f"scale={w}:{h}:flags=bilinear"


def _empty(size: tuple[int, int]) -> np.ndarray:
    return np.zeros((0, size[0], size[1], 3), np.uint8)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DecodeError(path, "no such file")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty file (0 bytes)")


def _decord():
    """The decord module, or BackendFailure where it is not installed (the caller then tries ffmpeg)."""
    try:
        import decord
    except ImportError:
        raise BackendFailure("decord is not installed (no wheel for this platform)") from None
    return decord


# ---------------------------------------------------------------- public API
def decode_video_ex(path: str | Path, size: tuple[int, int] = DEFAULT_SIZE, backend: str | None = None) -> Decoded:
    """The whole video through ``FrameStream`` with `backend` (a STREAM_BACKENDS key) or, if None, the
    default order. A file that decodes only part-way gives its prefix with ``partial`` saying why; DecodeError
    (naming the file and every backend's reason) when no frame decodes."""
    fs = FrameStream(path, size, backend=backend)
    chunks = [c for _, c in fs]
    frames = np.concatenate(chunks) if chunks else _empty(size)
    return Decoded(frames, fs.backend or "", fs.note, fs.partial)


def decode_timeout(duration_s: float | None, fps: float | None, width: int | None, height: int | None) -> float:
    """Seconds allowed to decode a video: max(floor, frames x pixels / DECODE_PIXEL_RATE), frames =
    duration x fps (fps 30 if unknown); DECODE_TIMEOUT_UNKNOWN_S when the header gives no duration or size."""
    if not duration_s or not width or not height:
        return DECODE_TIMEOUT_UNKNOWN_S
    frames = duration_s * (fps or 30.0)
    return round(max(DECODE_TIMEOUT_FLOOR_S, frames * width * height / DECODE_PIXEL_RATE), 1)


def decode_video(
    path: str | Path, size: tuple[int, int] = DEFAULT_SIZE, backend: str | None = None, resize: str = "stretch"
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames at `size` (H, W); T counted by decoding. See decode_video_ex.

    ``resize`` (RESIZE_MODES): "stretch" scales each axis to `size` independently (the paper's 128x171,
    any aspect ratio squashed to it); "short-side-crop" scales by one factor so the frame covers `size`,
    keeping the aspect ratio, then crops the centre (the native size comes from ``probe_video``: the coded
    size; container rotation metadata is not applied).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; known: {list(RESIZE_MODES)}")
    if resize == "stretch":
        return decode_video_ex(path, size, backend).frames
    info = probe_video(path)
    if info.width <= 0 or info.height <= 0:
        raise DecodeError(path, "the header gives no frame size (needed by resize=short-side-crop)")
    (h, w), (sh, sw) = size, cover_size(size, (info.height, info.width))
    frames = decode_video_ex(path, (sh, sw), backend).frames  # (T, sh, sw, 3), sh >= h, sw >= w
    y, x = (sh - h) // 2, (sw - w) // 2
    return np.ascontiguousarray(frames[:, y : y + h, x : x + w])


RESIZE_MODES = ("stretch", "short-side-crop")
# what the stages do with a file that decodes only part-way (FrameStream.partial): keep the decodable prefix,
# marked partial, or fail the file
PARTIAL_POLICIES = ("keep", "fail")


def cover_size(size: tuple[int, int], native: tuple[int, int]) -> tuple[int, int]:
    """Smallest (H', W') with the native aspect ratio that covers `size` (H, W): H' >= H and W' >= W."""
    (h, w), (nh, nw) = size, native
    scale = max(h / nh, w / nw)
    return max(h, round(nh * scale)), max(w, round(nw * scale))


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (?P<codec>[\w-]+)(?P<rest>.*)")
_SIZE = re.compile(r"[ ,](\d{1,5})x(\d{1,5})[ ,\]]")
_RATE = re.compile(r"([\d.]+)(k?) (fps|tbr)")


def parse_ffmpeg_header(stderr: str) -> ProbeInfo | None:
    """ProbeInfo from the stderr of ``ffmpeg -i FILE`` (first video stream), or None if there is none."""
    m = _VIDEO.search(stderr)
    if not m:
        return None
    rest = m.group("rest") + " "
    size = _SIZE.search(rest)
    rates = {unit: float(v) * (1000 if k else 1) for v, k, unit in _RATE.findall(rest)}
    fps = rates.get("fps") or rates.get("tbr")
    d = _DURATION.search(stderr)
    duration = int(d.group(1)) * 3600 + int(d.group(2)) * 60 + float(d.group(3)) if d else None
    header_frames = round(duration * fps) if duration is not None and fps else None
    return ProbeInfo(
        duration,
        fps,
        int(size.group(1)) if size else 0,
        int(size.group(2)) if size else 0,
        header_frames,
        m.group("codec"),
    )


def probe_video(path: str | Path, timeout: float = PROBE_TIMEOUT_S) -> ProbeInfo:
    """Container header facts of the first video stream, parsed from ``ffmpeg -i`` stderr (a child process:
    its crash or a hang past `timeout` s is a DecodeError)."""
    path = Path(path)
    _check_file(path)
    # `ffmpeg -i FILE` with no output prints the header and exits 1 by design; we only read stderr
    try:
        res = subprocess.run(
            [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise DecodeError(path, f"ffmpeg -i did not finish within {timeout:g} s") from None
    if res.returncode < 0:
        raise DecodeError(path, f"ffmpeg -i crashed (signal {-res.returncode})")
    info = parse_ffmpeg_header(res.stderr)
    if info is None:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "output file must be specified" not in ln]
        raise DecodeError(path, f"no video stream ({_last_line(chr(10).join(lines)) or 'ffmpeg found none'})")
    return info


def _last_line(text: str) -> str:
    """Last non-empty line of a tool's message, without what differs between runs of the same file: decord's
    "[hh:mm:ss] file.cc:123: " prefixes and the memory addresses in ffmpeg's "[h264 @ 0x55a0c74510c0]"."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", text)
    text = re.sub(r" @ 0x[0-9a-fA-F]+", "", text)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


# ---------------------------------------------------------------- streaming (bounded memory)
STREAM_CHUNK = 64  # frames per chunk of a FrameStream
# decord's read-ahead (file bytes + the longest range's decoded frames, see stream_decord) above which a
# FrameStream with the default order streams through ffmpeg first (same frames: scale_filter)
DECORD_AHEAD_MAX_BYTES = 256 * 2**20
Ranges = list[tuple[int, int]]  # sorted, disjoint [start, stop) source frame ranges


class HoldsTooMuch(Exception):
    """stream_decord declines a stream (before any frame) whose read-ahead could exceed ``max_ahead`` bytes."""


def stream_decord(path: Path, size: tuple[int, int], chunk: int, ranges: Ranges | None, max_ahead: int | None = None):
    """decord, yielding (first index, frames) chunks. Sequential get_batch calls read on without seeking;
    with ``ranges`` only those frames are asked for, so decord seeks (to the keyframe before a range, then
    decodes forward) over the gaps. Raises BackendFailure.

    Memory: decord's reader thread queues compressed packets without bound while its decoder thread has no
    frame ready (in practice the rest of the file), and the decoder thread turns every queued packet into a
    frame at ``size`` while the caller is away, so between two chunks it may hold the rest of the range
    decoded. ``max_ahead``: raise HoldsTooMuch when file bytes + the longest range's frame bytes exceed it.
    After each range the decoder is stopped (``seek(0)`` clears its queues), so it never decodes past a
    range while the caller works on it."""
    decord = _decord()
    decord.logging.set_level(decord.logging.QUIET)
    h, w = size
    try:
        vr = decord.VideoReader(str(path), width=w, height=h, num_threads=DECORD_THREADS)
    except (decord.DECORDError, RuntimeError) as e:
        raise BackendFailure(f"decord cannot open: {_last_line(str(e))}") from None
    n = len(vr)
    if n == 0:
        raise BackendFailure("decord decoded no frames")
    spans = [(a, min(b, n)) for a, b in (ranges if ranges is not None else [(0, n)]) if a < min(b, n)]
    longest = max((b - a for a, b in spans), default=0)
    if max_ahead is not None and path.stat().st_size + longest * h * w * 3 > max_ahead:
        raise HoldsTooMuch(f"decord could hold {path.stat().st_size + longest * h * w * 3:,} bytes ahead")
    for i, (a, b) in enumerate(spans):
        for start in range(a, b, chunk):
            try:
                out = vr.get_batch(list(range(start, min(b, start + chunk)))).asnumpy()
            except decord.DECORDError as e:
                # not the frame index: decord's threaded decoder reports an error a varying number of frames
                # late, and a record must not differ between two runs on the same file
                raise BackendFailure(
                    f"decord failed part-way through {n} indexed frames: {_last_line(str(e))}"
                ) from None
            if start + chunk >= b and i + 1 < len(spans):
                vr.seek(0)  # stop the decoder thread and drop its queues: nothing decoded past the range
            yield start, np.ascontiguousarray(out, dtype=np.uint8)


def stream_ffmpeg(path: Path, size: tuple[int, int], chunk: int, ranges: Ranges | None):
    """ffmpeg (scaled by ffmpeg to ``size``) read from its stdout pipe ``chunk`` frames at a time, yielding
    (first index, frames); sequential (``ranges`` only tells where to stop). ``-xerror``: a frame it cannot
    decode stops it with an error (BackendFailure) instead of being dropped or concealed."""
    import tempfile

    h, w = size
    frame_bytes = h * w * 3
    stop = ranges[-1][1] if ranges else None
    cmd = [
        _ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-xerror",
        "-threads",
        str(DECORD_THREADS),
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-fps_mode",
        "passthrough",
        "-vf",
        scale_filter(size),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:",
    ]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        out = proc.stdout
        assert out is not None  # stdout=PIPE
        n, code = 0, 0
        try:
            while stop is None or n < stop:
                buf = out.read(frame_bytes * chunk)
                k = len(buf) // frame_bytes
                if k:
                    yield n, np.frombuffer(buf[: k * frame_bytes], np.uint8).reshape(k, h, w, 3).copy()
                    n += k
                if len(buf) < frame_bytes * chunk:
                    code = proc.wait()
                    break
        finally:  # also when the consumer stops early (GeneratorExit)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        if code != 0 or n == 0:
            err.seek(0)
            reason = _last_line(err.read().decode(errors="replace")) or (f"exit status {code}" if code else "no frames")
            raise BackendFailure(f"ffmpeg decoded {n} frames: {reason}")


STREAM_BACKENDS = {"decord": stream_decord, "ffmpeg": stream_ffmpeg}
# decord publishes wheels for Linux x86_64 only (pyproject.toml installs it there); elsewhere the ffmpeg pipe,
# which gives decord's frames bit for bit (scale_filter, tests/test_decode.py), is the only backend
HAVE_DECORD = importlib.util.find_spec("decord") is not None
DEFAULT_ORDER = ("decord", "ffmpeg") if HAVE_DECORD else ("ffmpeg",)


class FrameStream:
    """Iterate a video's frames as (first source index, frames (N, H, W, 3) uint8 RGB at ``size``) chunks of
    at most ``chunk`` frames: memory is bounded by a chunk whatever the video's length.

    Memory of the default order (decord, then ffmpeg): decord reads and decodes ahead of the caller
    (``stream_decord``), up to the file's bytes plus a range's frames; when that could pass
    DECORD_AHEAD_MAX_BYTES (long videos) ffmpeg streams first, through a pipe (a chunk plus the pipe's
    buffer), and decord is the fallback. The frames are the same either way (``scale_filter``).

    ``ranges`` (sorted, disjoint [start, stop) source indices) keeps only those frames (decord seeks over the
    gaps; ffmpeg decodes through them); ``limit`` stops after that many source frames. Failures: a backend
    that fails hands over to the next one of the order, which resumes after the frames already emitted
    (``note`` says why); frames are never emitted twice and never out of order, and the backends' frames are
    the same (``scale_filter``; ffmpeg runs with ``-xerror``, so past damage it stops instead of dropping a
    frame and shifting the indices). When every backend stops part-way, the stream ends after the decodable
    prefix and ``partial`` says why (the reason of the backend that emitted the last frames); when none
    produces a frame, DecodeError. After the iteration: ``count`` frames emitted, ``pos`` (one past the last
    source index emitted), ``backend`` that emitted the last of them, ``note``, ``partial``."""

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int] = DEFAULT_SIZE,
        chunk: int = STREAM_CHUNK,
        backend: str | None = None,
        limit: int | None = None,
        ranges: Ranges | None = None,
        resize: str = "stretch",
    ):
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize!r}; known: {list(RESIZE_MODES)}")
        self.path, self.size, self.chunk, self.resize = Path(path), (int(size[0]), int(size[1])), int(chunk), resize
        if limit is not None:
            ranges = [(a, min(b, limit)) for a, b in (ranges or [(0, limit)]) if a < limit]
        self.ranges = [(int(a), int(b)) for a, b in ranges] if ranges is not None else None
        self.order = (backend,) if backend else DEFAULT_ORDER
        for name in self.order:
            if name not in STREAM_BACKENDS:
                raise ValueError(f"unknown decode backend {name!r}; known: {sorted(STREAM_BACKENDS)}")
        self.count, self.pos = 0, 0
        self.backend: str | None = None
        self.note: str | None = None
        self.partial: str | None = None

    def _keep(self, base: int, frames: np.ndarray):
        """The parts of a chunk inside ``ranges`` and past ``pos``, as (first index, frames)."""
        for a, b in self.ranges if self.ranges is not None else [(0, base + len(frames))]:
            lo, hi = max(a, base, self.pos), min(b, base + len(frames))
            if lo < hi:
                yield lo, frames[lo - base : hi - base]

    def __iter__(self):
        _check_file(self.path)
        size, crop = self.size, None
        if self.resize == "short-side-crop":  # as decode_video: cover `size` keeping the aspect, crop the centre
            info = probe_video(self.path)
            if info.width <= 0 or info.height <= 0:
                raise DecodeError(self.path, "the header gives no frame size (needed by resize=short-side-crop)")
            size = cover_size(self.size, (info.height, info.width))
            crop = ((size[0] - self.size[0]) // 2, (size[1] - self.size[1]) // 2)
        for base, frames in self._decode(size):
            if crop is not None:
                y, x = crop
                frames = np.ascontiguousarray(frames[:, y : y + self.size[0], x : x + self.size[1]])
            yield base, frames

    def _rest(self) -> Ranges | None:
        """``ranges`` from ``pos`` on: what a backend that takes over still has to deliver."""
        if not self.pos:
            return self.ranges
        return [(max(a, self.pos), b) for a, b in (self.ranges or [(0, 2**62)]) if b > self.pos]

    def _decode(self, size: tuple[int, int]):
        reasons, stopped = [], []  # why each backend failed; the reasons of those that failed part-way
        end = self.ranges[-1][1] if self.ranges else None
        order, declined = list(self.order), set()
        for name in order:  # grows by one when decord declines and becomes the last fallback
            opts = {}
            if name == "decord" and len(self.order) > 1 and name not in declined:
                opts["max_ahead"] = DECORD_AHEAD_MAX_BYTES
            gen, before = None, self.count
            try:
                gen = STREAM_BACKENDS[name](self.path, size, self.chunk, self._rest(), **opts)
                for base, frames in gen:
                    for lo, part in self._keep(base, frames):
                        self.count += len(part)
                        self.pos = lo + len(part)
                        self.backend = name
                        yield lo, part
                    if end is not None and self.pos >= end:
                        break
            except HoldsTooMuch:  # a long range: stream it with ffmpeg (bounded by its pipe), decord after it
                declined.add(name)
                order.append(name)
                continue
            except BackendFailure as f:  # the next backend resumes after the frames already emitted
                reasons.append(f.reason)
                if self.count > before:
                    stopped.append(f.reason)
                continue
            finally:
                if gen is not None:
                    gen.close()
            self.note = "; ".join(reasons) or None
            return
        self.note = "; ".join(reasons)
        if self.count:  # every backend stopped: the decodable prefix is the video, ended by the last one's reason
            self.partial = stopped[-1]
        elif self.ranges != []:
            raise DecodeError(self.path, self.note)


# The streaming API a contained child serves (pipeline.contain calls module-level functions): the open
# streams live in the child process, so each call moves one chunk and a crash or hang costs the video only.
_OPEN: dict[int, tuple[FrameStream, Generator[tuple[int, np.ndarray], None, None]]] = {}


def stream_open(
    path: str,
    size: tuple[int, int],
    chunk: int = STREAM_CHUNK,
    backend: str | None = None,
    limit: int | None = None,
    ranges: Ranges | None = None,
    resize: str = "stretch",
) -> int:
    """Open a FrameStream in this process; returns its token (closes any stream left open before)."""
    for t in list(_OPEN):
        stream_close(t)
    fs = FrameStream(path, size, chunk, backend, limit, ranges, resize)
    token = id(fs)
    _OPEN[token] = (fs, iter(fs))
    return token


def stream_next(token: int) -> tuple[int, np.ndarray] | None:
    """The next (first index, frames) chunk of stream ``token``, or None at its end (DecodeError as
    FrameStream)."""
    fs, it = _OPEN[token]
    return next(it, None)


def stream_close(token: int) -> dict:
    """Close stream ``token``; returns {count, pos, backend, note, partial}."""
    entry = _OPEN.pop(token, None)
    if entry is None:
        return {}
    fs, it = entry
    it.close()
    return {"count": fs.count, "pos": fs.pos, "backend": fs.backend, "note": fs.note, "partial": fs.partial}
