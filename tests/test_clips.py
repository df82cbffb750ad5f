"""Clip sampling and crop geometry (pipeline.clips) and the shard-backed ClipDataset (manifests.readers.clips)."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch

from manifests.readers.clips import ClipDataset
from pipeline import clips

from fixtures import coord_frames, synthetic_shards

H, W, S, T = 20, 26, 16, 4
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))  # dataset output = raw pixel values


def test_crop_offsets_centre_and_corners():
    assert clips.crop_offset(H, W, S, "center") == (2, 5)
    assert clips.crop_offset(H, W, S, "tl") == (0, 0)
    assert clips.crop_offset(H, W, S, "tr") == (0, 10)
    assert clips.crop_offset(H, W, S, "bl") == (4, 0)
    assert clips.crop_offset(H, W, S, "br") == (4, 10)
    assert clips.crop_offset(128, 171, 112, "center") == (8, 29)
    with pytest.raises(ValueError, match="larger than frame"):
        clips.crop_offset(H, W, 21, "tl")
    with pytest.raises(ValueError, match="unknown crop position"):
        clips.crop_offset(H, W, S, "middle")


def test_crop_and_flip_exact_pixels():
    frames = coord_frames(T, H, W)  # pixel = (y, x, t)
    out = clips.crop(frames, 4, 10, S, flip=False)
    assert out.shape == (T, S, S, 3)
    assert (out[2, 0, 0] == [4, 10, 2]).all() and (out[1, S - 1, S - 1] == [19, 25, 1]).all()
    flipped = clips.crop(frames, 4, 10, S, flip=True)
    assert (flipped[0, 0, 0] == [4, 25, 0]).all()  # mirrored: left column = crop's right column
    assert (flipped[0, 3, S - 1] == [7, 10, 0]).all()
    flow = clips.crop(frames, 4, 10, S, flip=True, flow=True)
    assert (flow[0, 0, 0] == [256 - 4, 25, 0]).all()  # x displacement negated (256 - q)
    assert (frames[0, 4, 10] == [4, 10, 0]).all()  # input untouched


def test_ten_crops_order():
    params = clips.ten_crop_params(H, W, S)
    assert params == [
        (2, 5, False),
        (0, 0, False),
        (0, 10, False),
        (4, 0, False),
        (4, 10, False),
        (2, 5, True),
        (0, 0, True),
        (0, 10, True),
        (4, 0, True),
        (4, 10, True),
    ]
    assert clips.ten_crop_params(H, W, S, 1) == [(2, 5, False)]
    with pytest.raises(ValueError):
        clips.ten_crop_params(H, W, S, 3)


def test_evenly_spaced_test_starts():
    starts = clips.evenly_spaced_starts(100, 16, 25)
    assert starts.shape == (25,) and starts[0] == 0 and starts[-1] == 84
    assert np.all(np.diff(starts) >= 3) and np.all(np.diff(starts) <= 4)
    np.testing.assert_array_equal(clips.evenly_spaced_starts(40, 16, 25), np.round(np.linspace(0, 24, 25)))
    np.testing.assert_array_equal(clips.evenly_spaced_starts(10, 16, 25), np.zeros(25))


def test_short_videos_loop():
    np.testing.assert_array_equal(clips.clip_indices(3, 0, 7), [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(clips.clip_indices(10, 4, 4), [4, 5, 6, 7])
    rng = np.random.default_rng(0)
    assert {clips.random_start(3, 16, rng) for _ in range(20)} == {0}
    assert {clips.random_start(20, 16, rng) for _ in range(200)} == {0, 1, 2, 3, 4}


def test_random_crops_cover_positions_and_flips():
    rng = np.random.default_rng(0)
    seen = {clips.random_crop_params(H, W, S, rng) for _ in range(400)}
    assert seen == {(y, x, f) for y, x, f in clips.ten_crop_params(H, W, S)}


def test_normalize_layout():
    clip = coord_frames(T, H, W)
    x = clips.normalize(clip, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # (C, T, H, W)
    assert x.shape == (3, T, H, W) and x.dtype == np.float32
    assert x[0, 1, 7, 3] == pytest.approx(7 / 255 * 2 - 1) and x[1, 1, 7, 3] == pytest.approx(3 / 255 * 2 - 1)


@pytest.fixture(scope="module")
def coord_shards(tmp_path_factory):
    # 8 videos: v003 and v007 are test videos; v001 is short (3 frames)
    return synthetic_shards(
        tmp_path_factory.mktemp("shards"),
        num_videos=8,
        num_classes=3,
        coords=True,
        frames=[10, 3, 10, 12, 10, 10, 10, 20],
        height=H,
        width=W,
        codec="lzf",
    )  # lossless: pixel values are checked exactly


def _raw(x: torch.Tensor) -> np.ndarray:
    return x.round().to(torch.int64).numpy()


def test_train_items_are_exact_crops(coord_shards):
    ds = ClipDataset(coord_shards, "split1", "train", "rgb", clip_len=T, crop=S, **RAW)
    assert len(ds) == 6 and not ds.multilabel and ds.num_classes == 3
    for i in range(len(ds)):
        x, target, idx = ds[i]
        assert x.shape == (3, T, S, S) and x.dtype == torch.float32 and idx == i
        video = int(ds.records[i].video_id[1:])
        assert target.tolist() == [1.0 if c == video % 3 else 0.0 for c in range(3)]
        c = _raw(x)
        n = ds.num_frames(i)
        t = c[2, :, 0, 0] - 30 * video  # frame indices of the clip
        np.testing.assert_array_equal(t, clips.clip_indices(n, int(t[0]), T))
        y0, xs = c[0, 0, 0, 0], c[1, 0, 0, :]
        assert (y0, xs.min()) in {(0, 0), (0, 10), (4, 0), (4, 10), (2, 5)}
        assert np.all(np.diff(xs) == 1) or np.all(np.diff(xs) == -1)  # plain or mirrored columns
        np.testing.assert_array_equal(c[0, 0, :, 0], np.arange(y0, y0 + S))
    # same (seed, epoch, index) -> same clip; another epoch -> (almost surely) other clips
    a = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(a, torch.stack([ds[i][0] for i in range(len(ds))]))
    ds.set_epoch(1)
    assert not torch.equal(a, torch.stack([ds[i][0] for i in range(len(ds))]))


def test_short_video_is_looped(coord_shards):
    ds = ClipDataset(coord_shards, "split1", "train", "rgb", clip_len=T + 3, crop=S, **RAW)
    i = [r.video_id for r in ds.records].index("v001")
    c = _raw(ds[i][0])
    np.testing.assert_array_equal(c[2, :, 0, 0] - 30, [0, 1, 2, 0, 1, 2, 0])


def test_test_items_25_clips_10_crops(coord_shards):
    ds = ClipDataset(coord_shards, "split1", "test", "flow", clip_len=T, crop=S, **RAW)
    assert ds.mode == "test" and [r.video_id for r in ds.records] == ["v003", "v007"]
    assert len(ds) == 2 * 25
    v7 = 1
    n = ds.num_frames(v7)  # flow stream: n_rgb - 1
    assert n == 19
    starts = clips.evenly_spaced_starts(n, T, 25)
    for c in (0, 7, 24):
        x, target, video = ds[v7 * 25 + c]
        assert x.shape == (10, 3, T, S, S) and video == v7 and target.argmax() == 7 % 3
        raw = _raw(x)
        # flow frame i holds rgb frame i + 1 in these shards
        np.testing.assert_array_equal(raw[0, 2, :, 0, 0] - 30 * 7 - 1, np.arange(starts[c], starts[c] + T))
        for k, (y, x0, flip) in enumerate(clips.ten_crop_params(H, W, S)):
            col = raw[k, 1, 0, 0, :]
            rows = raw[k, 0, 0, :, 0]
            if flip:
                np.testing.assert_array_equal(col, np.arange(x0 + S - 1, x0 - 1, -1))
                np.testing.assert_array_equal(rows, np.minimum(256 - np.arange(y, y + S), 255))  # flow x negated
            else:
                np.testing.assert_array_equal(col, np.arange(x0, x0 + S))
                np.testing.assert_array_equal(rows, np.arange(y, y + S))


def test_dataset_is_lazy_and_picklable(coord_shards):
    ds = ClipDataset(coord_shards, "split1", "train", "rgbf", clip_len=T, crop=S)
    assert ds._readers == {}  # nothing opened in __init__
    ds[0]
    assert len(ds._readers) == 1
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._readers == {}
    assert torch.equal(clone[0][0], ds[0][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, sampler=[0, 1, 2, 3, 4, 5])
    batches = list(loader)
    assert batches[0][0].shape == (3, 3, T, S, S)
    assert torch.equal(batches[1][0][0], ds[3][0])


def test_dataset_errors_name_the_problem(coord_shards, tmp_path):
    with pytest.raises(ValueError, match="no split 'split9'"):
        ClipDataset(coord_shards, "split9", "train")
    with pytest.raises(ValueError, match="stream"):
        ClipDataset(coord_shards, "split1", "train", "depth")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ClipDataset(tmp_path, "split1", "train")


def test_multilabel_targets_are_multi_hot(tmp_path):
    shards = synthetic_shards(tmp_path, num_videos=4, num_classes=3, frames=5, multilabel=True, codec="lzf")
    ds = ClipDataset(shards, "split1", "train", "rgb", clip_len=T, crop=S)
    assert ds.multilabel
    assert ds.target(0).tolist() == [1.0, 1.0, 0.0] and ds.target(1).tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "subset, kw, arg",
    [
        ("train", {"crop": 112}, "crop: 112 does not fit the smallest frames of the subset (20x26"),
        ("train", {"crop": 0}, "crop: 0"),
        ("train", {"clip_len": 0}, "clip_len: must be >= 1"),
        ("test", {"num_crops": 3, "crop": 16}, "num_crops: num_crops must be 1, 5 or 10"),
        ("test", {"num_clips": 0, "crop": 16}, "num_clips: must be >= 1"),
        ("train", {"std": (0.5, 0.0, 0.5), "crop": 16}, "std: needs 3 values"),
        ("train", {"split": "split9", "crop": 16}, "no split 'split9'"),
    ],
)
def test_arguments_are_checked_against_the_version_when_built(tmp_path, subset, kw, arg):
    """One ValueError naming the argument from the constructor, not from the first item (and, through it, from
    raydata.clip_dataset on the driver)."""
    from manifests.readers.raydata import clip_dataset

    shards = synthetic_shards(tmp_path / "s", num_videos=4, frames=6)  # frames 20x26
    kw = {"split": "split1", **kw}
    split = kw.pop("split")
    with pytest.raises(ValueError) as e:
        ClipDataset(shards, split, subset, "rgb", **kw)
    assert arg in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=re.escape(arg)):
        clip_dataset(shards, split, subset, "rgb", **{"crop": 112, **kw})  # no Ray started: it fails on the driver
