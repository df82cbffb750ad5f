"""HDF5 shards holding the RGB / Flow-image / RGBF streams of many videos.

Layout of one shard file (see docs/extract.md)::

    /                      attrs: format, format_version, index (JSON list of groups), extra (JSON)
    /<group>/rgb           (n_rgb, H, W, 3) uint8, stored by a codec
    /<group>/flow          (n_rgb - 1, H, W, 3)
    /<group>/rgbf          (n_rgb - 1, H, W, 3)
    /<group>               attrs: n_rgb, n_flow, height, width, sha256_<stream>, caller attrs

Each stream dataset records the codec that wrote it (``attrs["codec"]``, ``attrs["codec_opts"]``), so
a reader needs no configuration and streams of one shard may use different codecs. Codecs sit behind a
small interface (``create`` / ``append`` / ``reader`` / ``digest``) and are chosen by name from ``CODECS``
(docs/style.md §3). A video's group is written one way, by ``GroupStream`` (chunk by chunk; ``ShardWriter.add``
is one call of it for streams already in memory).

Shard files are a pure function of their content: no timestamps (``track_times=False`` on every dataset and
group), a pinned file-format range (``LIBVER``) and no run facts (timings, hosts) in ``extra``, so the same
videos and parameters give byte-identical files (``shard_sha256``) on a rerun.

Checksums are sha256 of a stream's stored *payload*: the raw uint8 array bytes for array codecs, the
length-prefixed JPEG byte strings for JPEG codecs. They are computed while writing and re-checked when
the shard is closed (re-opened from disk) before the temporary file is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

STREAMS = ("rgb", "flow", "rgbf")
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
FORMAT = "asym3d-shard"
FORMAT_VERSION = 1
LIBVER = ("earliest", "v110")  # HDF5 object formats: pinned so a library upgrade cannot change the bytes
DIGEST_FRAMES = 64  # frames read at a time when checksumming a stored stream


class ShardError(RuntimeError):
    """A shard file is missing, incomplete or fails verification; the message names the file."""


# ----------------------------------------------------------------------------------------------- codecs
@dataclasses.dataclass(frozen=True)
class ArrayCodec:
    """Frames as one chunked uint8 array (T, H, W, 3), optionally compressed by an HDF5 filter.

    One chunk holds ``chunk_frames`` frames, so reading a clip decompresses only the chunks it touches.
    """

    name: str
    compression: str | None = None  # None | "gzip" | "lzf"
    level: int | None = None  # gzip level 0-9
    chunk_frames: int = 1
    shuffle: bool = False

    def create(self, parent: h5py.Group, key: str, h: int, w: int) -> h5py.Dataset:
        """An empty resizable (0, h, w, 3) dataset, chunked by ``chunk_frames``."""
        kw: dict[str, Any] = {"chunks": (self.chunk_frames, h, w, 3)}
        if self.compression:
            kw.update(compression=self.compression, shuffle=self.shuffle)
            if self.compression == "gzip":
                kw["compression_opts"] = 4 if self.level is None else self.level
        return parent.create_dataset(
            key, shape=(0, h, w, 3), maxshape=(None, h, w, 3), dtype=np.uint8, track_times=False, **kw
        )

    def append(self, ds: h5py.Dataset, frames: np.ndarray, payload: Any) -> None:
        """Append (N, h, w, 3) frames; ``payload`` (a hashlib object) takes the stored bytes."""
        t, n = ds.shape[0], len(frames)
        frames = np.ascontiguousarray(frames)
        ds.resize(t + n, axis=0)
        ds[t : t + n] = frames
        payload.update(frames.tobytes())

    def reader(self, ds: h5py.Dataset) -> Callable[[int, int], np.ndarray]:
        """read(start, stop) -> (stop-start, H, W, 3) uint8 for dataset ``ds``."""
        return lambda start, stop: ds[start:stop]

    def digest(self, ds: h5py.Dataset) -> str:
        """sha256 of the array bytes, read DIGEST_FRAMES frames at a time (memory bounded for any length)."""
        h = hashlib.sha256()
        for s in range(0, ds.shape[0], DIGEST_FRAMES):
            h.update(np.ascontiguousarray(ds[s : s + DIGEST_FRAMES]).tobytes())
        return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class JpegCodec:
    """Each frame as JPEG bytes in a variable-length uint8 dataset of T entries.

    ``planar=False``: a colour JPEG (YCbCr, chroma subsampled), for natural images (rgb, rgbf).
    ``planar=True``: the 3 channels stacked vertically into one (3H, W) grayscale JPEG, so channels are
    never mixed or subsampled: the layout for flow images (x, y, magnitude), like mmaction2's grayscale
    flow_x / flow_y frames.
    """

    name: str
    quality: int = 95  # OpenCV's default, as in mmaction2's frame folders
    planar: bool = False

    def _encode(self, frame: np.ndarray) -> np.ndarray:
        if self.planar:
            img = np.ascontiguousarray(frame.transpose(2, 0, 1).reshape(-1, frame.shape[1]))  # (3H, W)
        else:
            img = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(self.quality)])
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
        return buf.reshape(-1)

    def create(self, parent: h5py.Group, key: str, h: int, w: int) -> h5py.Dataset:
        """An empty resizable dataset of JPEG byte strings, one per frame."""
        ds = parent.create_dataset(
            key, shape=(0,), maxshape=(None,), chunks=(256,), dtype=h5py.vlen_dtype(np.uint8), track_times=False
        )
        ds.attrs["frame_shape"] = (h, w, 3)
        return ds

    def append(self, ds: h5py.Dataset, frames: np.ndarray, payload: Any) -> None:
        """Encode and append (N, h, w, 3) frames; ``payload`` takes each length-prefixed JPEG."""
        t, n = ds.shape[0], len(frames)
        ds.resize(t + n, axis=0)
        for i in range(n):
            buf = self._encode(frames[i])
            ds[t + i] = buf
            payload.update(len(buf).to_bytes(8, "little"))
            payload.update(buf.tobytes())

    def reader(self, ds: h5py.Dataset) -> Callable[[int, int], np.ndarray]:
        """read(start, stop) -> (stop-start, H, W, 3) uint8, decoding only the frames asked for."""
        h, w, c = (int(v) for v in ds.attrs["frame_shape"])

        def read(start: int, stop: int) -> np.ndarray:
            out = np.empty((stop - start, h, w, c), dtype=np.uint8)
            for i, buf in enumerate(ds[start:stop]):
                if self.planar:
                    img = _imdecode(ds, buf, cv2.IMREAD_GRAYSCALE)  # (3H, W)
                    cv2.merge([img[k * h : (k + 1) * h] for k in range(c)], dst=out[i])
                elif _IMREAD_RGB is not None:
                    out[i] = _imdecode(ds, buf, _IMREAD_RGB)
                else:
                    cv2.cvtColor(_imdecode(ds, buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB, dst=out[i])
            return out

        return read

    def digest(self, ds: h5py.Dataset) -> str:
        h = hashlib.sha256()
        for s in range(0, ds.shape[0], DIGEST_FRAMES):
            for buf in ds[s : s + DIGEST_FRAMES]:
                h.update(len(buf).to_bytes(8, "little"))
                h.update(buf.tobytes())
        return h.hexdigest()


def _imdecode(ds: h5py.Dataset, buf: np.ndarray, flag: int) -> np.ndarray:
    img = cv2.imdecode(buf, flag)
    if img is None:
        raise ShardError(f"{ds.file.filename}: {ds.name}: a stored JPEG frame does not decode")
    return img


Codec = ArrayCodec | JpegCodec

# name -> (codec class, fixed settings). Options a codec class does not take are ignored by make_codec, so one
# option set (e.g. level=4, quality=95) can configure a per-stream mix of codecs.
CODECS: dict[str, tuple[type, dict[str, Any]]] = {
    "raw": (ArrayCodec, {"compression": None}),
    "gzip": (ArrayCodec, {"compression": "gzip"}),
    "lzf": (ArrayCodec, {"compression": "lzf"}),
    "jpeg": (JpegCodec, {"planar": False}),
    "jpeg-planar": (JpegCodec, {"planar": True}),
}
# Codec per stream when none is given, chosen from docs/benchmarks/storage.md (real footage, 128x171): RGB and
# RGBF as JPEG q95, the flow image as gzip-4 arrays (flat images: small and exact) takes ~0.9x the disk space
# of an mmaction2 JPEG frame folder and reads 16-frame clips ~4x faster on average (flow ~10x, rgb ~1.3x).
DEFAULT_CODEC: dict[str, str] = {"rgb": "jpeg", "flow": "gzip", "rgbf": "jpeg"}
CODEC_OPTIONS = {"level", "chunk_frames", "shuffle", "quality"}


def make_codec(name: str, **opts: Any) -> Codec:
    """Codec ``name`` from CODECS with the options it accepts taken from ``opts`` (others ignored)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {sorted(CODECS)}")
    unknown = set(opts) - CODEC_OPTIONS
    if unknown:
        raise ValueError(f"unknown codec options {sorted(unknown)}; known: {sorted(CODEC_OPTIONS)}")
    cls, fixed = CODECS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(name=name, **fixed, **{k: v for k, v in opts.items() if k in fields and v is not None})


def codec_spec(codec: str | Mapping[str, str] | None) -> dict[str, str]:
    """Normalise a codec choice to {stream: codec name}: one name for all streams, or a per-stream map."""
    if codec is None:
        return dict(DEFAULT_CODEC)
    if isinstance(codec, str):
        return {s: codec for s in STREAMS}
    spec = dict(DEFAULT_CODEC)
    spec.update(codec)
    for s, n in spec.items():
        if s not in STREAMS or n not in CODECS:
            raise ValueError(f"bad codec mapping {s}={n}; streams {STREAMS}, codecs {sorted(CODECS)}")
    return spec


def _codec_of(ds: h5py.Dataset) -> Codec:
    return make_codec(str(ds.attrs["codec"]), **json.loads(ds.attrs["codec_opts"]))


# ------------------------------------------------------------------------------------------------ writer
def _check_streams(group: str, streams: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    """Validate {"rgb": (T,H,W,3), "flow": (T-1,H,W,3), "rgbf": (T-1,H,W,3)} uint8; return (T, H, W)."""
    if set(streams) != set(STREAMS):
        raise ValueError(f"group {group!r}: streams must be exactly {STREAMS}, got {sorted(streams)}")
    rgb = streams["rgb"]
    if rgb.dtype != np.uint8 or rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[0] < 1:
        raise ValueError(f"group {group!r}: rgb must be uint8 (T>=1, H, W, 3), got {rgb.dtype} {rgb.shape}")
    t, h, w, _ = rgb.shape
    for s in ("flow", "rgbf"):
        a = streams[s]
        if a.dtype != np.uint8 or a.shape != (t - 1, h, w, 3):
            raise ValueError(f"group {group!r}: {s} must be uint8 {(t - 1, h, w, 3)}, got {a.dtype} {a.shape}")
    return t, h, w


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """``parent.create_group(name)`` without object timestamps (h5py's create_group has no track_times)."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_char_encoding(h5py.h5t.CSET_UTF8)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), lcpl=lcpl, gcpl=gcpl))


def _valid_group_name(group: str) -> bool:
    return bool(group) and "/" not in group and not group.startswith(".") and group.isprintable()


class ShardWriter:
    """Write many videos into one shard: ``path`` appears only when the shard is complete and verified.

    Writes a uniquely named temporary sibling file (``<path>.<random>.tmp``); ``close()`` stores the
    index, re-opens the file and checks every group's checksums, fsyncs and renames it to ``path``.
    Leaving the ``with`` block by an exception deletes the temporary file, so no partial shard exists.

    >>> with ShardWriter("s.h5", codec="lzf") as w:
    ...     sums = w.add("vid1", {"rgb": rgb, "flow": flow, "rgbf": rgbf}, {"video_id": "vid1"})
    """

    def __init__(self, path: str | os.PathLike, codec: str | Mapping[str, str] | None = None, **opts: Any):
        self.path = Path(path)
        self.spec = codec_spec(codec)
        self.codecs = {s: make_codec(n, **opts) for s, n in self.spec.items()}
        self.opts = {k: v for k, v in opts.items() if v is not None}
        self.extra: dict[str, Any] = {}  # JSON-able, stored as the root attr "extra" (e.g. failures)
        self.tmp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: h5py.File | None = h5py.File(self.tmp, "w", libver=LIBVER, track_times=False)
        self._index: list[str] = []
        self._sums: dict[str, dict[str, str]] = {}

    def add(
        self, group: str, streams: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """Store one video's streams, already in memory, under ``group`` (through ``stream``); returns
        {stream: sha256 of its stored payload}."""
        t, h, w = _check_streams(group, streams)
        out = self.stream(group, h, w)
        for s in STREAMS:
            out.append(s, streams[s])
        return out.finish(attrs, n_flow=t - 1)

    def close(self) -> Path:
        """Finish the shard: write the index, verify from disk, rename into place. Returns the path."""
        if self._f is None:
            return self.path
        f, self._f = self._f, None
        try:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["index"] = json.dumps(self._index)
            f.attrs["extra"] = json.dumps(self.extra)
            f.close()
            with ShardReader(self.tmp) as r:
                r.verify(full=True, expected=self._sums)
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def copy_group(self, src: ShardReader, group: str, name: str, attrs: Mapping[str, Any]) -> dict[str, str]:
        """Copy ``group`` of another shard here as ``name``: its stored payloads byte for byte (no decode, no
        re-encode), ``attrs`` set on top of its own. The caller verifies the source first
        (``ShardReader.verify_group``); ``close`` checks the copy again. Returns its checksums."""
        f = self._check_new(name)
        try:
            f.copy(src.file[group], name)
            f[name].attrs.update(dict(attrs))
        except BaseException:
            if name in f:
                del f[name]
            raise
        sums = {s: str(f[name].attrs[f"sha256_{s}"]) for s in STREAMS}
        self._index.append(name)
        self._sums[name] = sums
        return sums

    def stream(self, group: str, height: int, width: int) -> GroupStream:
        """Start writing ``group`` frame chunk by frame chunk (bounded memory); see GroupStream."""
        self._check_new(group)
        return GroupStream(self, group, height, width)

    def _check_new(self, group: str) -> h5py.File:
        """The open file, for a new group ``group``: ShardError when the writer is closed, ValueError for a bad
        or taken group name."""
        if self._f is None:
            raise ShardError(f"{self.path}: writer is closed")
        if not _valid_group_name(group) or group in self._sums or group in self._f:
            raise ValueError(f"{self.path}: bad or duplicate group name {group!r}")
        return self._f

    def abort(self) -> None:
        """Drop the shard being written (deletes the temporary file)."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class GroupStream:
    """One video's streams appended in chunks: ``append(stream, frames)`` any number of times, then
    ``finish(attrs, n_flow=...)`` -> checksums (the same payload checksums as ``ShardWriter.add``), or
    ``discard()`` (the group is unlinked; HDF5 does not reclaim its bytes, which stay unreferenced in the
    file). Array codecs store resizable datasets chunked by ``chunk_frames``; JPEG codecs a resizable
    variable-length dataset. ``n_flow`` defaults to ``n_rgb - 1`` (one window); with several windows of
    frames it is ``n_rgb - windows``."""

    def __init__(self, writer: ShardWriter, group: str, height: int, width: int):
        self.w, self.group, self.h, self.wd = writer, group, int(height), int(width)
        self.g = _create_group(writer._f, group)
        self.ds: dict[str, h5py.Dataset] = {}
        self.hash = {s: hashlib.sha256() for s in STREAMS}
        for s in STREAMS:
            codec = writer.codecs[s]
            ds = codec.create(self.g, s, self.h, self.wd)
            ds.attrs["codec"] = codec.name
            ds.attrs["codec_opts"] = json.dumps(
                {k: v for k, v in dataclasses.asdict(codec).items() if k in CODEC_OPTIONS}
            )
            self.ds[s] = ds

    def append(self, stream: str, frames: np.ndarray) -> None:
        """Append uint8 (N, H, W, 3) frames to ``stream``."""
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.h, self.wd, 3):
            raise ValueError(
                f"group {self.group!r}: {stream} frames must be uint8 (N, {self.h}, {self.wd}, 3), "
                f"got {frames.dtype} {frames.shape}"
            )
        if len(frames):
            self.w.codecs[stream].append(self.ds[stream], frames, self.hash[stream])

    def finish(self, attrs: Mapping[str, Any] | None = None, n_flow: int | None = None) -> dict[str, str]:
        n_rgb = int(self.ds["rgb"].shape[0])
        n_flow = n_rgb - 1 if n_flow is None else int(n_flow)
        for s in ("flow", "rgbf"):
            if self.ds[s].shape[0] != n_flow:
                raise ValueError(f"group {self.group!r}: {s} has {self.ds[s].shape[0]} frames, expected {n_flow}")
        if n_rgb < 1:
            raise ValueError(f"group {self.group!r}: no rgb frames")
        sums = {s: self.hash[s].hexdigest() for s in STREAMS}
        for s in STREAMS:
            self.g.attrs[f"sha256_{s}"] = sums[s]
        self.g.attrs.update({"n_rgb": n_rgb, "n_flow": n_flow, "height": self.h, "width": self.wd})
        for k, v in (attrs or {}).items():
            self.g.attrs[k] = v if isinstance(v, (str, int, float, bool, np.integer, np.floating)) else json.dumps(v)
        self.w._index.append(self.group)
        self.w._sums[self.group] = sums
        return sums

    def discard(self) -> None:
        if self.w._f is not None and self.group in self.w._f:
            del self.w._f[self.group]


# ------------------------------------------------------------------------------------------------ reader
class ShardReader:
    """Random access to one shard. The file is opened lazily on first use and re-opened after a fork, so
    one reader may be created in a parent process and used by each DataLoader worker. Picklable."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._f: h5py.File | None = None
        self._pid: int | None = None
        self._streams: dict[tuple[str, str], tuple[h5py.Dataset, Callable]] = {}  # dataset, read(start, stop)

    @property
    def file(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():
            try:
                self._f = h5py.File(self.path, "r")
            except (OSError, ValueError) as e:
                raise ShardError(f"{self.path}: cannot open shard ({e})") from e
            self._pid = os.getpid()
            self._streams = {}
        return self._f

    def groups(self) -> list[str]:
        """Groups in the order they were written."""
        return json.loads(self.file.attrs["index"])

    @property
    def extra(self) -> dict[str, Any]:
        return json.loads(self.file.attrs.get("extra", "{}"))

    def attrs(self, group: str) -> dict[str, Any]:
        out = {}
        for k, v in self._group(group).attrs.items():
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    def num_frames(self, group: str, stream: str) -> int:
        return int(self._stream(group, stream)[0].shape[0])

    def read(self, group: str, stream: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a stream: uint8 (stop - start, H, W, 3)."""
        ds, read = self._stream(group, stream)
        n = ds.shape[0]
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise IndexError(f"{self.path}:{group}/{stream}: frames [{start}, {stop}) out of range 0..{n}")
        return read(start, stop)

    def _stream(self, group: str, stream: str) -> tuple[h5py.Dataset, Callable[[int, int], np.ndarray]]:
        _ = self.file  # (re)opens first, which clears the cache after a fork
        key = (group, stream)
        if key not in self._streams:
            ds = self._dataset(group, stream)
            self._streams[key] = (ds, _codec_of(ds).reader(ds))
        return self._streams[key]

    def verify(self, full: bool = True, expected: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
        """Check format, index, streams and frame counts; with ``full`` also recompute every checksum
        (against ``expected`` if given, else the stored ones). Returns the groups; raises ShardError."""
        f = self.file
        if f.attrs.get("format") != FORMAT or "index" not in f.attrs:
            raise ShardError(f"{self.path}: not a complete {FORMAT} file (no format/index attributes)")
        groups = self.groups()
        if sorted(groups) != sorted(f.keys()):
            raise ShardError(f"{self.path}: index {len(groups)} groups != file {len(f.keys())} groups")
        for g in groups:
            self.verify_group(g, full, expected[g] if expected is not None else None)
        return groups

    def verify_group(self, g: str, full: bool = True, expected: Mapping[str, str] | None = None) -> None:
        """``verify`` for one group: its streams and frame counts, and with ``full`` every checksum (against
        ``expected`` {stream: sha256} if given, else the stored ones). Raises ShardError."""
        if g not in self.file:
            raise ShardError(f"{self.path}: no group {g!r}")
        a = self.file[g].attrs
        for s in STREAMS:
            if s not in self.file[g]:
                raise ShardError(f"{self.path}:{g}: stream {s!r} missing")
            ds = self.file[g][s]
            want_n = a["n_rgb"] if s == "rgb" else a["n_flow"]
            if ds.shape[0] != want_n:
                raise ShardError(f"{self.path}:{g}/{s}: {ds.shape[0]} frames, expected {want_n}")
            if full:
                want = expected[s] if expected is not None else a[f"sha256_{s}"]
                got = _codec_of(ds).digest(ds)
                if got != want:
                    raise ShardError(f"{self.path}:{g}/{s}: checksum mismatch ({got[:12]} != {want[:12]})")

    def _group(self, group: str) -> h5py.Group:
        try:
            return self.file[group]
        except KeyError:
            raise KeyError(f"{self.path}: no group {group!r}") from None

    def _dataset(self, group: str, stream: str) -> h5py.Dataset:
        g = self._group(group)
        if stream not in g:
            raise KeyError(f"{self.path}:{group}: no stream {stream!r} (streams: {list(g.keys())})")
        return g[stream]

    def close(self) -> None:
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f, self._streams = None, {}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_f": None, "_pid": None, "_streams": {}}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass
