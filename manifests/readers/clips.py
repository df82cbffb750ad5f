"""PyTorch Dataset of clips read from a shard dataset version (``manifests.shards``).

``ClipDataset(manifest, split="split1", subset="train", stream="rgb")`` keeps the records whose
``splits[split] == subset``. With ``val_fraction > 0`` a validation subset is carved from the split's
training videos (``manifests.readers.validation.carve``, by group where the rule says so): ``subset="train"``
then keeps the rest and ``subset="val"`` the held-out videos; ``self.carve`` records what was held out. Two
modes (section 4.3, details in ``pipeline.clips`` and docs/training.md):

* ``mode="train"``: item ``i`` is one random ``clip_len``-frame clip of video ``i`` with a random corner /
  centre crop and a random horizontal flip -> ``(C, T, S, S)`` float32. The randomness comes from
  ``np.random.default_rng([seed, epoch, i])`` (``set_epoch``), so a clip does not depend on the DataLoader
  worker that loads it nor on anything drawn before: resumed runs see the same clips.
* ``mode="test"``: item ``v * num_clips + c`` is clip ``c`` of the ``num_clips`` evenly spaced clips of
  video ``v``, in ``num_crops`` crops (centre, 4 corners, then the same flipped) -> ``(num_crops, C, T, S, S)``.

Every item is ``(x, target, video_index)``; ``target`` is a multi-hot float32 ``(num_classes,)`` vector
(one 1 for single-label datasets), usable by both cross-entropy (as class probabilities) and BCE.
Normalisation: ``(x / 255 - mean) / std`` per channel, default mean = std = 0.5 (values in [-1, 1]; a
flow image's "no motion" value 128 maps to ~0).

Arguments are checked against the version when the dataset is built (``check_clips``): a crop larger
than the smallest frames, a clip length below 1, a video or window without frames of the stream, an unknown
number of test crops, ``num_clips`` below 1, or mean / std of the wrong length raise ValueError naming the
argument, before any item is read. A video or window shorter than ``clip_len`` is allowed: its clip loops.

HDF5 files are opened lazily, in the process that reads them (each DataLoader worker opens its own
handles on first use; nothing is opened in ``__init__`` and handles are dropped when pickled).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from manifests.readers.validation import Carve, carve
from manifests.shards import load_shards
from pipeline import clips
from pipeline.storage import STREAMS, ShardReader


def check_clips(
    records: Sequence, stream: str, mode: str, clip_len: int, crop: int, num_clips: int, num_crops: int, mean, std
) -> None:
    """ValueError naming the argument when the clips cannot be cut from ``records`` (module docstring)."""
    if clip_len < 1:
        raise ValueError(f"clip_len: must be >= 1, got {clip_len}")
    small = min(records, key=lambda r: min(r.height, r.width))
    if not 1 <= crop <= min(small.height, small.width):
        raise ValueError(
            f"crop: {crop} does not fit the smallest frames of the subset "
            f"({small.height}x{small.width}, video {small.video_id})"
        )
    empty = [r.video_id for r in records if min(r.window_lengths(stream), default=0) < 1]
    if empty:
        raise ValueError(f"stream: {len(empty)} videos have a window without {stream} frames, e.g. {empty[0]!r}")
    if mode == "test":
        try:
            clips.ten_crop_params(crop, crop, crop, num_crops)  # the one rule for crop counts
        except ValueError as e:
            raise ValueError(f"num_crops: {e}") from None
    if mode == "test" and num_clips < 1:
        raise ValueError(f"num_clips: must be >= 1, got {num_clips}")
    for name, v in (("mean", mean), ("std", std)):
        if len(v) != 3 or (name == "std" and not all(v)):
            raise ValueError(f"{name}: needs 3 values per channel{' (non-zero)' if name == 'std' else ''}, got {v}")


class ClipDataset(Dataset):
    def __init__(
        self,
        manifest,
        split: str = "split1",
        subset: str = "train",
        stream: str = "rgb",
        *,
        mode: str | None = None,
        clip_len: int = 16,
        crop: int = 112,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        num_clips: int = 25,
        num_crops: int = 10,
        max_videos: int = 0,
        seed: int = 0,
        val_fraction: float = 0.0,
        val_group_rule: str = "auto",
        val_seed: int = 0,
    ):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        self.mode = mode or ("train" if subset == "train" else "test")
        if self.mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {self.mode!r}")
        shards = load_shards(manifest)
        self.manifest = str(manifest)
        self.labels: list[str] = list(shards.labels)
        self.num_classes = len(self.labels)
        known = {s for r in shards.records for s in r.splits}
        if split not in known:
            raise ValueError(f"{manifest}: no split {split!r} in the shard records (have {sorted(known)})")
        if subset not in ("train", "val", "test"):
            raise ValueError(f"subset must be train, val or test, got {subset!r}")
        if subset == "val" and not val_fraction:
            raise ValueError("subset='val' needs val_fraction > 0")
        records = [r for r in shards.records if r.splits.get(split) == ("test" if subset == "test" else "train")]
        self.carve: Carve | None = None
        if subset != "test" and records:
            self.carve = carve(records, val_fraction, val_group_rule, val_seed)
            records = self.carve.val if subset == "val" else self.carve.train
        if not records:
            raise ValueError(f"{manifest}: no videos with {split} == {subset!r}")
        if max_videos and max_videos < len(records):  # evenly spread subset, deterministic
            records = [records[i] for i in np.linspace(0, len(records) - 1, max_videos).round().astype(int)]
        check_clips(records, stream, self.mode, clip_len, crop, num_clips, num_crops, mean, std)
        self.records = records
        # multi-label is a property of the dataset (all its records), so train and test agree on the loss
        self.multilabel = any(len(r.labels) > 1 for r in shards.records)
        self.split, self.subset, self.stream = split, subset, stream
        self.clip_len, self.crop_size = clip_len, crop
        self.mean, self.std = tuple(mean), tuple(std)
        self.num_clips, self.num_crops = num_clips, num_crops
        self.seed, self.epoch = seed, 0
        self._readers: dict[str, ShardReader] = {}
        self._pid: int | None = None

    # -- bookkeeping -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records) * (self.num_clips if self.mode == "test" else 1)

    def __getstate__(self):  # never ship open HDF5 handles to workers / Ray actors
        state = dict(self.__dict__)
        state["_readers"], state["_pid"] = {}, None
        return state

    def _reader(self, path: str) -> ShardReader:
        if self._pid != os.getpid():  # forked worker: the parent's handles are not ours
            self._readers, self._pid = {}, os.getpid()
        if path not in self._readers:
            self._readers[path] = ShardReader(path)
        return self._readers[path]

    def num_frames(self, i: int) -> int:
        r = self.records[i]
        return r.n_rgb if self.stream == "rgb" else r.n_flow

    def target(self, i: int) -> torch.Tensor:
        t = torch.zeros(self.num_classes, dtype=torch.float32)
        t[list(self.records[i].labels)] = 1.0
        return t

    def windows(self, i: int) -> list[int]:
        """Frames of this stream per window of video i (one window unless extracted with --segments)."""
        return self.records[i].window_lengths(self.stream)

    def _frames(self, i: int, window: int, start: int) -> np.ndarray:
        """(clip_len, H, W, 3) uint8 frames of video i from ``start`` within ``window`` (looped within the
        window when it is shorter than the clip): a clip never crosses the gap between two windows."""
        r, lengths = self.records[i], self.windows(i)
        n, offset = lengths[window], sum(lengths[:window])
        if n < 1:
            raise ValueError(f"{r.shard_path}:{r.group}: video {r.video_id} has no {self.stream} frames")
        reader = self._reader(str(r.shard_path))
        if n >= start + self.clip_len:
            return reader.read(r.group, self.stream, offset + start, offset + start + self.clip_len)
        whole = reader.read(r.group, self.stream, offset, offset + n)
        return whole[clips.clip_indices(n, start, self.clip_len)]

    # -- items -------------------------------------------------------------------------------------
    def __getitem__(self, index: int):
        flow = self.stream == "flow"
        if self.mode == "train":
            rng = np.random.default_rng([self.seed, self.epoch, index])
            window, start = clips.window_random_start(self.windows(index), self.clip_len, rng)
            frames = self._frames(index, window, start)  # (T, H, W, 3)
            y, x, flip = clips.random_crop_params(frames.shape[1], frames.shape[2], self.crop_size, rng)
            clip = clips.crop(frames, y, x, self.crop_size, flip, flow=flow)
            xt = torch.from_numpy(clips.normalize(clip, self.mean, self.std))  # (C, T, S, S)
            return xt, self.target(index), index
        video, c = divmod(index, self.num_clips)
        window, start = clips.window_test_starts(self.windows(video), self.clip_len, self.num_clips)[c]
        frames = self._frames(video, window, start)
        params = clips.ten_crop_params(frames.shape[1], frames.shape[2], self.crop_size, self.num_crops)
        crops = [
            clips.normalize(clips.crop(frames, y, x, self.crop_size, f, flow=flow), self.mean, self.std)
            for y, x, f in params
        ]
        return torch.from_numpy(np.stack(crops)), self.target(video), video  # (K, C, T, S, S)
