"""Training recipes and loop (jobs.training, jobs.train) on tiny synthetic shards."""

from __future__ import annotations

import shutil

import pytest
import torch

import models
from jobs import train as train_mod
from jobs.training import checkpoints, recipe
from jobs.training.config import ConfigError, load_config, save_config

from fixtures import synthetic_shards

TINY = [
    "model.name=c3d-b8",
    "model.overrides={width: 0.0625}",
    "data.clip_len=4",
    "data.crop=16",
    "optim.batch_size=3",
    "data.num_workers=0",
    "eval.num_clips=2",
    "eval.batch_size=4",
    "eval.every=1",
    "log_every=0",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    # 12 videos of 3 classes, 9 train / 3 test in split1, 20x26 frames
    return synthetic_shards(tmp_path_factory.mktemp("shards"), num_videos=12, num_classes=3, frames=8)


def tiny_cfg(shards, out, *extra, config="jobs/configs/pretrain.yaml"):
    return load_config(config, [f"data.manifest={shards}", f"out_dir={out}", *TINY, *extra])


def test_step_schedules_of_the_paper():
    pre = load_config("jobs/configs/pretrain.yaml").optim
    lrs = [recipe.lr_at(e, pre.lr, pre.lr_step, pre.lr_gamma) for e in range(pre.epochs)]
    assert pre.epochs == 50 and pre.batch_size == 16 and pre.momentum == 0.9 and pre.weight_decay == 5e-4
    assert lrs[0] == lrs[14] == 1e-3
    assert lrs[15] == pytest.approx(2e-4) and lrs[30] == pytest.approx(4e-5) and lrs[49] == pytest.approx(8e-6)
    ft = load_config("jobs/configs/finetune.yaml").optim
    lrs = [recipe.lr_at(e, ft.lr, ft.lr_step, ft.lr_gamma) for e in range(ft.epochs)]
    assert ft.epochs == 20 and ft.head_lr_mult == 10
    assert lrs[7] == 1e-4 and lrs[8] == pytest.approx(1e-5) and lrs[19] == pytest.approx(1e-6)


def test_config_overrides_types_and_errors(tmp_path):
    cfg = load_config(
        "jobs/configs/finetune.yaml",
        ["optim.lr=3e-3", "data.mean=[0.4,0.4,0.4]", "data.split=2", "model.overrides.dropout=0.1", "out_dir=/x/y"],
    )
    assert cfg.optim.lr == 3e-3 and cfg.data.mean == [0.4, 0.4, 0.4] and cfg.data.split == "2"
    assert cfg.model.overrides == {"dropout": 0.1} and cfg.out_dir == "/x/y" and cfg.optim.lr_step == 8
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    with pytest.raises(ConfigError, match="unknown key.*'lrr'"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="optim.epochs: expected an integer"):
        load_config(None, ["optim.epochs=ten"])
    with pytest.raises(ConfigError, match="data.stream"):
        load_config(None, ["data.stream=depth"])
    (tmp_path / "bad.yaml").write_text("optim: {momentun: 0.9}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*momentun"):
        load_config(tmp_path / "bad.yaml")


def test_epoch_indices_permute_cut_and_shard():
    a = recipe.epoch_indices(10, 0, seed=1)
    assert sorted(a) == list(range(10)) and a == recipe.epoch_indices(10, 0, seed=1) != recipe.epoch_indices(
        10, 1, seed=1
    )
    assert recipe.epoch_indices(10, 0, seed=1, max_items=4) == a[:4]
    parts = [recipe.epoch_indices(9, 3, seed=0, rank=r, world=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 5 and set(parts[0]) | set(parts[1]) == set(range(9))


def test_loss_choice():
    logits, target = torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    kind, loss = recipe.make_loss("auto", multilabel=True)
    assert kind == "bce" and loss(logits, target).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    kind, loss = recipe.make_loss("auto", multilabel=False)
    assert kind == "ce" and loss(logits[:1], target[:1]).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def _assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def first_epoch(shards, tmp_path_factory):
    """A run interrupted after its first of 2 epochs (also the pretrained model of the fine-tune test)."""
    out = tmp_path_factory.mktemp("first")
    train_mod.fit(tiny_cfg(shards, out, "optim.epochs=1", "optim.lr=0.01"), resume="never", log=lambda m: None)
    return out / "last.pt"


def test_resume_equals_uninterrupted_run(shards, first_epoch, tmp_path):
    straight = tiny_cfg(shards, tmp_path / "straight", "optim.epochs=2", "optim.lr=0.01")
    train_mod.fit(straight, resume="never", log=lambda m: None)
    # interrupted after epoch 1, then resumed (auto from out_dir/last.pt) with a DataLoader worker
    (tmp_path / "part").mkdir()
    for name in ("last.pt", "best.pt"):
        shutil.copyfile(first_epoch.parent / name, tmp_path / "part" / name)
    first = torch.load(first_epoch, weights_only=True)
    logs = []
    rest = tiny_cfg(shards, tmp_path / "part", "optim.epochs=2", "optim.lr=0.01", "data.num_workers=1")
    train_mod.fit(rest, resume="auto", log=logs.append)
    assert any("resumed from" in m and "at epoch 1" in m for m in logs)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    _assert_same_state(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["history"] == b["history"]
    assert (tmp_path / "part" / "best.pt").is_file() and (tmp_path / "part" / "curves.png").is_file()
    assert (tmp_path / "part" / "config.yaml").is_file()
    assert a["spec"] == models.specs.spec_to_dict(models.get_spec("c3d-b8", 3, width=0.0625, frames=4, size=16))
    # training moved the weights (so the equality above is not vacuous)
    assert not torch.equal(first["model"]["classifier.weight"], b["model"]["classifier.weight"])


def test_finetune_replaces_head_with_10x_lr(first_epoch, tmp_path):
    pre_ckpt = torch.load(first_epoch, weights_only=True)
    assert pre_ckpt["num_classes"] == 3
    # target dataset with 2 classes -> classifier replaced, body initialised from the pretrained weights
    target = synthetic_shards(tmp_path / "target", num_videos=6, num_classes=2, frames=6)
    model = models.build_model("c3d-b8", num_classes=2, width=0.0625, frames=4, size=16)
    msg = checkpoints.init_from(model, first_epoch, "c3d-b8", 2)
    assert "classifier replaced (3 -> 2" in msg and model.classifier.out_features == 2
    sd = model.state_dict()
    for k, v in pre_ckpt["model"].items():
        if not k.startswith("classifier."):
            assert torch.equal(sd[k], v), k
    groups = recipe.param_groups(model, 5e-4, 10.0)
    opt = torch.optim.SGD(groups, lr=1e-4, momentum=0.9)
    recipe.set_lr(opt, 1e-4)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, pytest.approx(1e-3)]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in model.classifier.parameters()}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    # the same through the fine-tune recipe
    ft = tiny_cfg(
        target, tmp_path / "ft", "optim.epochs=1", f"init_from={first_epoch}", config="jobs/configs/finetune.yaml"
    )
    logs = []
    train_mod.fit(ft, resume="auto", log=logs.append)
    assert any("classifier replaced" in m for m in logs)
    ck = torch.load(tmp_path / "ft" / "best.pt", weights_only=True)
    assert ck["num_classes"] == 2 and ck["model"]["classifier.weight"].shape[0] == 2
    assert [g["lr"] for g in ck["optimizer"]["param_groups"]] == [1e-4, pytest.approx(1e-3)]
    with pytest.raises(ValueError, match="holds model 'c3d-b8'"):
        checkpoints.init_from(
            models.build_model("c3d-b5", 2, width=0.0625, frames=8, size=32), first_epoch, "c3d-b5", 2
        )


def test_nan_loss_stops_with_clear_message(shards, tmp_path, monkeypatch, capsys):
    def nan_loss(kind, multilabel):
        return "ce", lambda logits, target: logits.sum() * float("nan")

    monkeypatch.setattr(recipe, "make_loss", nan_loss)
    rc = train_mod.main(
        ["--config", "jobs/configs/pretrain.yaml", f"data.manifest={shards}", f"out_dir={tmp_path / 'nan'}", *TINY]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "epoch 0 step 0" in err
    assert not (tmp_path / "nan" / "last.pt").exists()


def test_cli_requires_manifest(capsys):
    assert train_mod.main(["--config", "jobs/configs/pretrain.yaml"]) == 2
    assert "data.manifest is not set" in capsys.readouterr().err


def test_no_lone_last_batch():
    """A last batch of one clip is dropped (BatchNorm cannot train on it); other orders are unchanged."""
    assert recipe.no_lone_last_batch([3, 1, 4, 0, 2], 4) == [3, 1, 4, 0]
    assert recipe.no_lone_last_batch([3, 1, 4, 0, 2, 5], 4) == [3, 1, 4, 0, 2, 5]
    assert recipe.no_lone_last_batch([7], 4) == [7] and recipe.no_lone_last_batch([1, 2, 3], 1) == [1, 2, 3]
