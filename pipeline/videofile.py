"""Write frames to a video file with the ffmpeg binary of imageio-ffmpeg, through a pipe (no image files).

``encode_video(path, frames, codec, fps)`` feeds ``(T, H, W, 3)`` uint8 RGB frames to ffmpeg as rawvideo
rgb24 on stdin and writes ``path`` with one of ``VIDEO_CODECS`` (docs/style.md §3: a new codec is a new
entry). Every codec keeps the exact frame size (no pixel format that needs even dimensions) and is decoded
by decord, which mmaction2's ``DecordInit`` / ``DecordDecode`` use. Bytes and fidelity of each, measured on
the demo version: docs/benchmarks/export.md (``python -m jobs.bench.export``).

Bad-input policy: frames that are not ``(T >= 1, H, W, 3)`` uint8 raise ValueError; ffmpeg failing, or a
written file whose decord frame count is not T (checked where decord is installed), raise OSError naming
the file; the caller decides (jobs.export reports the video and leaves it out of the lists).
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np

from pipeline.decode import _ffmpeg_exe


@dataclasses.dataclass(frozen=True)
class VideoCodec:
    name: str
    args: tuple[str, ...]  # ffmpeg output options
    suffix: str  # container
    exact: bool  # decodes to the input RGB bit for bit
    note: str


VIDEO_CODECS = {
    "h264-rgb": VideoCodec(
        "h264-rgb",
        ("-c:v", "libx264rgb", "-preset", "medium", "-qp", "0", "-pix_fmt", "rgb24"),
        ".mp4",
        True,
        "lossless H.264 on the RGB planes (High 4:4:4 Predictive): decord gives the stored frames bit for bit",
    ),
    "h264-yuv444": VideoCodec(
        "h264-yuv444",
        ("-c:v", "libx264", "-preset", "medium", "-qp", "0", "-pix_fmt", "yuv444p"),
        ".mp4",
        False,
        "lossless H.264 in YUV 4:4:4: only the RGB -> YUV -> RGB rounding changes pixels (by up to 2 levels)",
    ),
    "h264-crf10": VideoCodec(
        "h264-crf10",
        ("-c:v", "libx264", "-preset", "medium", "-crf", "10", "-pix_fmt", "yuv444p"),
        ".mp4",
        False,
        "near-lossless H.264 (CRF 10, YUV 4:4:4, no chroma subsampling): small, lossy like a JPEG",
    ),
}
DEFAULT_CODEC = "h264-rgb"
THREADS = 1  # encoder threads per call; parallelism comes from Ray tasks (as pipeline.decode)


def decoded_count(path: str | Path) -> int | None:
    """decord's frame count of a video file (what mmaction2's DecordInit reports), or None without decord."""
    try:
        import decord
    except ImportError:
        return None
    try:
        return len(decord.VideoReader(str(path), num_threads=1))
    except (RuntimeError, decord.DECORDError) as e:  # unreadable file: ffmpeg wrote something decord rejects
        raise OSError(f"{path}: decord cannot read it ({str(e).strip().splitlines()[-1:]})") from None


def encode_video(path: str | Path, frames: np.ndarray, codec: str = DEFAULT_CODEC, fps: float = 25.0) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 RGB to ``path`` (its suffix should be the codec's); returns it."""
    spec = VIDEO_CODECS[codec]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"{path}: frames must be (T >= 1, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    cmd = [
        _ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        f"{fps:g}",
        "-i",
        "-",
        *spec.args,
        "-threads",
        str(THREADS),
        "-an",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",  # no muxer version string: the same frames give the same bytes
        str(path),
    ]
    run = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if run.returncode != 0:
        tail = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise OSError(f"{path}: ffmpeg exited with status {run.returncode}: {tail[0]}")
    n = decoded_count(path)
    if n is not None and n != t:
        raise OSError(f"{path}: decord reads {n} frames, {t} were written")
    return Path(path)
