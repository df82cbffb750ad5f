"""What an extraction produces and from which videos: its configuration, the videos and their shards.

``ExtractConfig`` holds everything that determines the extracted content (it is part of the output version
id); ``plan_shards`` assigns videos to shards deterministically (sorted ids chunked by ``shard_size``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.flow import FlowConfig
from pipeline.storage import DEFAULT_CODEC


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Everything that determines the extracted content (part of the output version id)."""

    size: tuple[int, int] = (128, 171)  # (H, W) of every stream
    resize: str = "stretch"  # pipeline.decode.RESIZE_MODES: stretch (paper) | short-side-crop (keeps aspect)
    codec: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_CODEC))  # stream -> codec
    codec_opts: dict[str, Any] = dataclasses.field(default_factory=dict)  # level, quality, chunk_frames
    shard_size: int = 64  # videos per shard
    flow: FlowConfig = dataclasses.field(default_factory=FlowConfig)  # preset + every Brox parameter
    bound: float = 20.0  # flow image bound in px (pipeline.flowimage.flow_to_image)
    min_frames: int = 2
    static_threshold: float = 0.05  # px
    splits: tuple[str, ...] = ()  # keep videos that are train/test in one of these splits (all if empty)
    fps: float | None = None  # resample to this constant rate first (pipeline.sampling); None: native rate
    segments: int | None = None  # K windows per video (TSN-style); None: one window of every frame
    segment_frames: int | None = None  # L frames per window (L - 1 flows)
    partial: str = "keep"  # a file that decodes only part-way: keep its prefix (marked partial) | fail

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "flow": self.flow.as_dict()}

    def content_key(self) -> dict[str, Any]:
        """What decides one video's streams (``content_key``)."""
        return content_key(json.loads(self.to_json()))

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExtractConfig:
        d = json.loads(text)
        d["size"], d["splits"], d["flow"] = tuple(d["size"]), tuple(d["splits"]), FlowConfig.from_dict(d["flow"])
        return cls(**d)


def content_key(config: dict[str, Any]) -> dict[str, Any]:
    """An extraction config's JSON form (``ExtractConfig.as_dict``, or one recorded in version.json) without
    how videos are grouped and selected (shard size, splits): everything that decides one video's streams.
    Two versions with the same key and code version store a file identically."""
    return {k: v for k, v in config.items() if k not in ("shard_size", "splits")}


@dataclasses.dataclass(frozen=True)
class VideoTask:
    """One video of a shard plan (from a source manifest row)."""

    video_id: str
    path: str  # absolute
    rel_path: str
    sha256: str | None
    size_bytes: int | None
    timeout_s: float | None = None  # decode time limit (None: none); set by the driver (jobs.extraction.driver)
    skip: dict[str, Any] | None = None  # a poison record of an earlier run: fail at once without decoding
    num_frames: int | None = None  # decoded frame count of the source manifest (places --segments windows)
    fps: float | None = None  # native frame rate of the source manifest (the base of --fps)
    duration_s: float | None = None
    partial: str | None = None  # why the source manifest counted only a prefix (a cut download, corrupt data)
    # where an earlier version holds this file extracted the same way (bookkeeping.reusable): its version,
    # shard (absolute path), group, checksums, n_rgb, n_flow, windows, fps, partial; None: compute it
    reuse: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    index: int
    name: str  # file name, e.g. 00000.h5
    videos: tuple[VideoTask, ...]


def plan_shards(videos: Sequence[VideoTask], shard_size: int) -> Iterator[ShardPlan]:
    """Videos sorted by id, chunked into shards of ``shard_size``: the same inputs give the same shards."""
    ordered = sorted(videos, key=lambda v: v.video_id)
    for k in range(0, len(ordered), shard_size):
        i = k // shard_size
        yield ShardPlan(i, f"{i:05d}.h5", tuple(ordered[k : k + shard_size]))


def group_name(video_id: str) -> str:
    """HDF5 group of a video: its id when that is a safe name, else a hash of it."""
    safe = video_id and all(c.isalnum() or c in "_-." for c in video_id) and not video_id.startswith(".")
    return video_id if safe else "h_" + hashlib.sha256(video_id.encode()).hexdigest()[:16]
