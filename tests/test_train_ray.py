"""Ray Train smoke run: 2 CPU workers (DDP over gloo) train one epoch of a tiny model on tiny shards."""
from __future__ import annotations

import json

import pytest
import torch

from jobs import train as train_mod
from jobs.training.config import load_config
from fixtures import synthetic_shards

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_train_two_cpu_workers(tmp_path):
    shards = synthetic_shards(tmp_path / "shards", num_videos=10, num_classes=2, frames=6, test_every=5)
    cfg = load_config("jobs/configs/pretrain.yaml", [
        f"data.manifest={shards}", f"out_dir={tmp_path / 'run'}", "model.name=c3d-b8",
        "model.overrides={width: 0.0625}", "data.clip_len=4", "data.crop=16", "optim.batch_size=2",
        "optim.epochs=1", "data.num_workers=0", "eval.num_clips=2", "log_every=0", "workers=2"])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never join another
    try:
        train_mod.train(cfg, resume="never")
    finally:
        ray.shutdown()
    run = tmp_path / "run"
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["num_classes"] == 2 and ckpt["config"]["workers"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"])  # saved unwrapped from DDP
    (record,) = json.loads((run / "metrics.json").read_text())["history"]
    assert record["train_clips"] == 8  # both workers' clips, reduced over the process group
    assert record["val_video_top1"] is not None and (run / "best.pt").is_file()
