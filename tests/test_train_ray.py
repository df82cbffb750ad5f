"""Ray Train: 2 CPU workers (DDP over gloo) on tiny shards: a smoke run, and resume with per-rank RNG states."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from jobs import train as train_mod
from jobs.training.config import load_config

from fixtures import synthetic_shards

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never join another
    yield ray
    ray.shutdown()


def ray_cfg(shards, out, *extra):
    return load_config(
        "jobs/configs/pretrain.yaml",
        [
            f"data.manifest={shards}",
            f"out_dir={out}",
            "model.name=c3d-b8",
            "model.overrides={width: 0.0625, dropout: 0.5}",
            "data.clip_len=4",
            "data.crop=16",
            "optim.batch_size=2",
            "optim.epochs=1",
            "data.num_workers=0",
            "eval.num_clips=2",
            "log_every=0",
            "workers=2",
            *extra,
        ],
    )


FAST = ("data.val_fraction=0.25", "eval.every=1", "optim.lr=0.05")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return synthetic_shards(tmp_path_factory.mktemp("shards"), num_videos=10, num_classes=2, frames=6, test_every=5)


@pytest.fixture(scope="module")
def one_epoch(ray_local, shards, tmp_path_factory):
    """A 2-worker run stopped after its first epoch: the out_dir."""
    out = tmp_path_factory.mktemp("ray") / "part"
    train_mod.train(ray_cfg(shards, out, "optim.epochs=1", *FAST), resume="never")
    return out


@pytest.mark.slow
def test_ray_train_two_cpu_workers(one_epoch):
    ckpt = torch.load(one_epoch / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["num_classes"] == 2 and ckpt["config"]["workers"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped from DDP
    (record,) = json.loads((one_epoch / "metrics.json").read_text())["history"]
    assert record["train_clips"] == 6  # both workers' clips (8 train videos - 2 validation), reduced
    assert record["val_video_top1"] is not None and (one_epoch / "best.pt").is_file()
    assert len(ckpt["rng_ranks"]) == 2  # each rank's own states, seeded per rank
    assert not torch.equal(ckpt["rng_ranks"][0]["torch"], ckpt["rng_ranks"][1]["torch"])


@pytest.mark.slow
def test_ray_resume_restores_every_ranks_rng(shards, one_epoch, tmp_path):
    """Interrupted after epoch 1 of 3 and resumed == uninterrupted, per epoch, with dropout drawing on each
    rank's own RNG (before: every rank restored rank 0's state and the resumed losses differed)."""
    train_mod.train(ray_cfg(shards, tmp_path / "straight", "optim.epochs=3", *FAST), resume="never")
    shutil.copytree(one_epoch, tmp_path / "part", ignore=shutil.ignore_patterns("ray"))
    train_mod.train(ray_cfg(shards, tmp_path / "part", "optim.epochs=3", *FAST), resume="auto")
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())["history"]
    b = json.loads((tmp_path / "part" / "metrics.json").read_text())["history"]
    assert len(a) == len(b) == 3 and [h["train_loss"] for h in a] == [h["train_loss"] for h in b]
    wa = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # another world size cannot restore the states: each rank re-seeds, and says so
    logs = []
    cfg = ray_cfg(shards, tmp_path / "single", "optim.epochs=2", "workers=0", *FAST)
    train_mod.fit(cfg, resume=str(one_epoch / "last.pt"), log=logs.append)
    assert any("RNG states of 2 rank(s), this run has 1" in m for m in logs)
