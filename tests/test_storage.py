"""pipeline.storage codecs and shard files, manifests.shards tables (no Ray)."""

from __future__ import annotations

import pickle

import cv2
import h5py
import numpy as np
import pytest

from manifests.shards import FailureRecord, VideoStreams, load_shards, write_shard_dataset
from pipeline.storage import CODECS, STREAMS, ShardError, ShardReader, ShardWriter, make_codec

from videoutil import moving_square


def streams(t: int = 6, h: int = 32, w: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Smooth natural-ish frames (JPEG-friendly) for the three streams."""
    rgb = moving_square(t, h, w, seed=seed)
    rgb = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in rgb])  # smooth, like real video
    flow = np.full((t - 1, h, w, 3), 128, np.uint8)
    flow[:, 8:20, 10:30, 0] = 150
    flow[..., 2] = np.abs(flow[..., 0].astype(int) - 128).astype(np.uint8) * 2
    rgbf = (rgb[:-1] // 2 + flow // 2).astype(np.uint8)
    return {"rgb": rgb, "flow": flow, "rgbf": rgbf}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_round_trip_each_codec(tmp_path, codec):
    vids = {"a": streams(6, seed=1), "b": streams(3, seed=2)}
    path = tmp_path / "s.h5"
    with ShardWriter(path, codec=codec, quality=95, level=1) as w:
        for g, s in vids.items():
            sums = w.add(g, s, {"video_id": g, "labels": [3]})
            assert set(sums) == set(STREAMS)
    with ShardReader(path) as r:
        assert r.groups() == ["a", "b"]
        assert r.verify(full=True) == ["a", "b"]
        for g, s in vids.items():
            assert r.num_frames(g, "rgb") == len(s["rgb"]) and r.num_frames(g, "flow") == len(s["rgb"]) - 1
            assert r.attrs(g)["video_id"] == g
            for name, arr in s.items():
                got = r.read(g, name, 1, len(arr))
                assert got.dtype == np.uint8 and got.shape == arr[1:].shape
                if codec in ("raw", "gzip", "lzf"):
                    np.testing.assert_array_equal(got, arr[1:])
                else:
                    assert psnr(got, arr[1:]) > 30, (codec, name, psnr(got, arr[1:]))


def test_per_stream_codecs_and_reader_pickles(tmp_path):
    s = streams()
    path = tmp_path / "mix.h5"
    with ShardWriter(path, codec={"rgb": "jpeg", "flow": "jpeg-planar", "rgbf": "gzip"}, quality=90) as w:
        w.add("v", s)
    r = ShardReader(path)
    assert r.read("v", "rgb", 0, 2).shape == (2, 32, 40, 3)
    r2 = pickle.loads(pickle.dumps(r))  # e.g. sent to a DataLoader worker; re-opens lazily
    np.testing.assert_array_equal(r2.read("v", "rgbf"), s["rgbf"])
    with h5py.File(path, "r") as f:
        assert f["v/rgb"].attrs["codec"] == "jpeg" and f["v/flow"].attrs["codec"] == "jpeg-planar"
    r.close(), r2.close()


def test_exception_mid_write_leaves_no_shard(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(path, codec="lzf") as w:
            w.add("a", streams())
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_streams_rejected_and_nothing_written(tmp_path):
    s = streams()
    with pytest.raises(ValueError, match="flow must be"):
        with ShardWriter(tmp_path / "s.h5") as w:
            w.add("a", {**s, "flow": s["flow"][:-1]})
    with pytest.raises(ValueError, match="duplicate"):
        with ShardWriter(tmp_path / "s.h5") as w:
            w.add("a", s)
            w.add("a", s)
    with pytest.raises(ValueError, match="unknown codec"):
        ShardWriter(tmp_path / "s.h5", codec="png")
    assert list(tmp_path.iterdir()) == []


def test_verify_detects_corruption(tmp_path):
    path = tmp_path / "s.h5"
    with ShardWriter(path, codec="raw") as w:
        w.add("a", streams())
    with h5py.File(path, "r+") as f:  # flip pixels behind the writer's back
        f["a/rgb"][0, 0, 0] = f["a/rgb"][0, 0, 0] ^ 0xFF
    with ShardReader(path) as r:
        r.verify(full=False)
        with pytest.raises(ShardError, match="checksum mismatch"):
            r.verify(full=True)
    (tmp_path / "zero.h5").write_bytes(b"")
    with pytest.raises(ShardError, match="zero.h5"):
        ShardReader(tmp_path / "zero.h5").groups()
    with pytest.raises(IndexError, match="out of range"):
        ShardReader(path).read("a", "rgb", 0, 99)


def test_write_and_load_shard_dataset(tmp_path):
    vids = [
        VideoStreams(f"v{i}", streams(4 + i, seed=i), labels=(i % 2,), splits={"split1": "train" if i else "test"})
        for i in range(5)
    ]
    fails = [FailureRecord("bad", "decode", "bad.avi: cannot decode")]
    vdir = write_shard_dataset(tmp_path / "shards", vids, ["a", "b"], failures=fails, shard_size=2, codec="lzf")
    ds = load_shards(tmp_path / "shards")  # via LATEST
    assert ds.root == vdir and ds.meta.kind == "shards" and ds.labels == ["a", "b"]
    assert [r.video_id for r in ds.records] == [f"v{i}" for i in range(5)]
    assert len({r.shard_path for r in ds.records}) == 3 and all(r.shard_path.is_absolute() for r in ds.records)
    r3 = ds.records[3]
    assert (r3.n_rgb, r3.n_flow, r3.labels, r3.label_names, r3.height, r3.width) == (7, 6, (1,), ("b",), 32, 40)
    assert [r.video_id for r in ds.split("split1", "test")] == ["v0"]
    assert ds.failures == [FailureRecord("bad", "decode", "bad.avi: cannot decode")]
    with ShardReader(r3.shard_path) as r:
        np.testing.assert_array_equal(r.read(r3.group, "flow"), vids[3].streams["flow"])
    # same content -> same version id, nothing rewritten
    assert write_shard_dataset(tmp_path / "shards", vids, ["a", "b"], failures=fails, shard_size=2, codec="lzf") == vdir


def test_make_codec_options():
    assert make_codec("gzip", level=9, quality=50).level == 9  # quality is for JPEG codecs: ignored
    with pytest.raises(ValueError, match="unknown codec options"):
        make_codec("lzf", levle=3)
