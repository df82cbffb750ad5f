"""Training clips of a shard dataset version as a streaming ``ray.data.Dataset`` (Ray Data / Ray Train ingestion).

    ds = clip_dataset("data/shards/LATEST", split="split1", subset="train", stream="rgbf", clip_len=16, crop=112)
    for batch in ds.iter_torch_batches(batch_size=8):     # {"clip": (B, C, T, S, S) float32, "target": (B, K), ...}
        ...

How it streams: the driver reads only the Parquet tables (``load_shards``) to count items and builds a
dataset of small index rows ``{"epoch", "index"}``; clips are read from the HDF5 shards inside Ray Data's
``map_batches`` tasks, on whichever node runs them, a few items per batch, so nothing but indices passes
through the driver and memory stays bounded by Ray Data's streaming executor. Each task process builds one
``manifests.readers.clips.ClipDataset`` (cached per process) and returns exactly its items: row (epoch e, index
i) is ``ClipDataset(...).set_epoch(e); ds[i]``, the same random clip, crop and flip as the project's own
trainer (``mode="test"`` gives the evenly spaced clips x crops of evaluation instead).

Columns: ``clip`` float32 (C, T, S, S) (train) or (K, C, T, S, S) (test), ``target`` float32
(num_classes,) multi-hot, ``label`` int64 (the first label id), ``video_index`` int64 (into the dataset's
records), ``epoch`` and ``index`` int64 (the item of ``ClipDataset``; Ray Data may reorder blocks).
``epochs=N`` makes one pass over the dataset cover N epochs (epoch, epoch+1,
...), each in its own deterministic shuffled order (``shuffle=True``), which suits a Ray Train loop that
iterates its dataset shard once; or build one dataset per epoch with ``epoch=e``.

Ray resources are the caller's (docs/style.md §2): pass ``num_cpus=``, ``concurrency=`` ... through
``map_kwargs`` to ``map_batches``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from manifests.readers.clips import ClipDataset
from manifests.versioning import resolve

_CACHE: dict[tuple, ClipDataset] = {}  # one ClipDataset per worker process and spec (its HDF5 handles stay open)


def _spec(version, split, subset, stream, mode, clip_len, crop, mean, std, num_clips, num_crops, seed) -> tuple:
    return (
        str(version),
        split,
        subset,
        stream,
        mode,
        clip_len,
        crop,
        tuple(mean),
        tuple(std),
        num_clips,
        num_crops,
        seed,
    )


def _dataset(spec: tuple) -> ClipDataset:
    key = (os.getpid(), spec)
    if key not in _CACHE:
        _CACHE[key] = _open(*spec)
    return _CACHE[key]


def _open(version, split, subset, stream, mode, clip_len, crop, mean, std, num_clips, num_crops, seed) -> ClipDataset:
    """The ClipDataset of a spec's fields (``_spec`` order)."""
    return ClipDataset(
        version,
        split,
        subset,
        stream,
        mode=mode,
        clip_len=clip_len,
        crop=crop,
        mean=mean,
        std=std,
        num_clips=num_clips,
        num_crops=num_crops,
        seed=seed,
    )


def read_clips(batch: dict[str, np.ndarray], spec: tuple) -> dict[str, np.ndarray]:
    """map_batches function: index rows {"epoch": (B,), "index": (B,)} -> clip rows (module docstring)."""
    ds = _dataset(spec)
    clips, targets, videos = [], [], []
    for epoch, index in zip(batch["epoch"].tolist(), batch["index"].tolist()):
        ds.set_epoch(epoch)
        x, t, v = ds[index]
        clips.append(x.numpy())
        targets.append(t.numpy())
        videos.append(v)
    targets_a = np.stack(targets)
    return {
        "clip": np.stack(clips),
        "target": targets_a,
        "label": targets_a.argmax(1).astype(np.int64),
        "video_index": np.asarray(videos, dtype=np.int64),
        "epoch": batch["epoch"].astype(np.int64),
        "index": batch["index"].astype(np.int64),
    }


def index_rows(n: int, epoch: int, epochs: int, shuffle: bool, seed: int) -> list[dict[str, int]]:
    """[{"epoch", "index"}] for ``epochs`` epochs of ``n`` items; each epoch permuted by rng([seed, epoch])."""
    rows = []
    for e in range(epoch, epoch + epochs):
        order = np.random.default_rng([seed, e]).permutation(n) if shuffle else np.arange(n)
        rows += [{"epoch": e, "index": int(i)} for i in order]
    return rows


def clip_dataset(
    version,
    split: str = "split1",
    subset: str = "train",
    stream: str = "rgb",
    *,
    clip_len: int = 16,
    crop: int = 112,
    mode: str | None = None,
    epoch: int = 0,
    epochs: int = 1,
    shuffle: bool | None = None,
    seed: int = 0,
    items_per_batch: int = 4,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    num_clips: int = 25,
    num_crops: int = 10,
    map_kwargs: dict[str, Any] | None = None,
):
    """A lazy ``ray.data.Dataset`` of clips of one split / subset / stream of a shard version.

    ``version``: anything ``manifests.versioning.resolve`` accepts, on storage every node can read; it is
    resolved once, here, so a ``LATEST`` that moves while the dataset streams does not change its content.
    ``shuffle`` defaults to True for ``mode="train"``. Bad arguments (unknown split or stream, empty
    subset, a crop that does not fit the frames, clip length, crops, epochs: ``clips.check_clips``) raise
    ValueError naming the argument here, on the driver, before any task runs. Needs an initialised Ray (or
    lets Ray Data start a local one, as every Ray Data call does).
    """
    import ray

    # tables only, no HDF5
    probe = _open(version, split, subset, stream, mode, clip_len, crop, mean, std, num_clips, num_crops, seed)
    if epochs < 1:
        raise ValueError(f"epochs: must be >= 1, got {epochs}")
    if items_per_batch < 1:
        raise ValueError(f"items_per_batch: must be >= 1, got {items_per_batch}")
    spec = _spec(
        resolve(version).resolve(),
        split,
        subset,
        stream,
        probe.mode,
        clip_len,
        crop,
        mean,
        std,
        num_clips,
        num_crops,
        seed,
    )
    shuffle = probe.mode == "train" if shuffle is None else shuffle
    rows = index_rows(len(probe), epoch, epochs, shuffle, seed)
    return ray.data.from_items(rows).map_batches(
        read_clips, batch_size=items_per_batch, batch_format="numpy", fn_kwargs={"spec": spec}, **(map_kwargs or {})
    )
