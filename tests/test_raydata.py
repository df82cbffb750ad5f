"""manifests.readers.raydata.clip_dataset on a local Ray instance: rows equal ClipDataset items, shards are read in
tasks (never on the driver), batches feed torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from manifests.readers.clips import ClipDataset
from manifests.readers.raydata import clip_dataset, index_rows
from pipeline import storage

from fixtures import synthetic_shards

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never join another
    yield
    ray.shutdown()


def test_index_rows_cover_every_item_once_per_epoch():
    rows = index_rows(5, epoch=3, epochs=2, shuffle=True, seed=0)
    for e in (3, 4):
        assert sorted(r["index"] for r in rows if r["epoch"] == e) == list(range(5))
    assert rows[:5] == index_rows(5, epoch=3, epochs=1, shuffle=True, seed=0)  # an epoch's order is its own
    assert index_rows(5, 0, 1, False, 0) == [{"epoch": 0, "index": i} for i in range(5)]


@pytest.mark.slow
def test_clips_match_clip_dataset(tmp_path, local_ray, monkeypatch):
    shards = synthetic_shards(
        tmp_path / "s",
        num_videos=8,
        num_classes=2,
        frames=[6, 9, 7, 12, 8, 10, 5, 11],
        coords=True,
        height=20,
        width=26,
    )

    def no_driver_reads(*a, **k):
        raise AssertionError("a shard was read on the driver")

    monkeypatch.setattr(storage.ShardReader, "read", no_driver_reads)  # worker processes are unaffected
    ds = clip_dataset(
        shards, "split1", "train", "flow", clip_len=4, crop=16, epoch=2, epochs=2, seed=7, items_per_batch=3
    )
    rows = ds.take_all()
    monkeypatch.undo()
    ref = ClipDataset(shards, "split1", "train", "flow", clip_len=4, crop=16, seed=7)
    assert sorted((r["epoch"], r["index"]) for r in rows) == [(e, i) for e in (2, 3) for i in range(len(ref))]
    for r in rows:
        ref.set_epoch(int(r["epoch"]))
        x, t, v = ref[int(r["index"])]
        assert np.array_equal(r["clip"], x.numpy()) and np.array_equal(r["target"], t.numpy())
        assert r["video_index"] == v and r["label"] == int(t.argmax())
    # test mode: evenly spaced clips x crops, in item order when not shuffled
    test = clip_dataset(shards, "split1", "test", "rgb", clip_len=4, crop=16, num_clips=2, num_crops=5)
    ref_t = ClipDataset(shards, "split1", "test", "rgb", clip_len=4, crop=16, num_clips=2, num_crops=5)
    batches = list(test.iter_torch_batches(batch_size=3))
    got = {int(i): c for b in batches for i, c in zip(b["index"], b["clip"])}
    assert len(got) == len(ref_t) and batches[0]["clip"].dtype == torch.float32
    for i, c in got.items():
        assert torch.equal(c, ref_t[i][0]) and c.shape == (5, 3, 4, 16, 16)


def test_bad_arguments_fail_on_the_driver(tmp_path):
    shards = synthetic_shards(tmp_path / "s", num_videos=4, frames=5)
    with pytest.raises(ValueError, match="split"):
        clip_dataset(shards, "split9", "train", "rgb")
    with pytest.raises(ValueError, match="stream"):
        clip_dataset(shards, "split1", "train", "depth")


@pytest.mark.slow
def test_ray_train_ingests_clip_dataset(tmp_path, local_ray):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def _train_loop(config):
        """Ray Train worker: its dataset shard feeds SGD steps of a tiny network (nested, so pickled by
        value: the workers cannot import this test module)."""
        import json

        import ray.train

        from models import build_model

        model = build_model("c3d-b8", num_classes=2, width=0.0625, frames=4, size=16)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        clips = 0
        for batch in ray.train.get_dataset_shard("train").iter_torch_batches(batch_size=2):
            loss = torch.nn.functional.cross_entropy(model(batch["clip"]), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clips += len(batch["label"])
        with open(config["out"], "w") as f:  # Ray Train 2.x keeps only metrics reported with a checkpoint
            json.dump({"clips": clips, "loss": float(loss)}, f)

    shards = synthetic_shards(tmp_path / "s", num_videos=6, num_classes=2, frames=6, test_every=3)
    ds = clip_dataset(shards, "split1", "train", "rgbf", clip_len=4, crop=16, epochs=2)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"out": str(tmp_path / "m.json")},
        datasets={"train": ds},
        scaling_config=ScalingConfig(num_workers=1),
        run_config=RunConfig(name="raydata", storage_path=str(tmp_path / "ray")),
    )
    trainer.fit()
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["clips"] == 2 * 4 and np.isfinite(metrics["loss"])  # 4 train videos x 2 epochs
