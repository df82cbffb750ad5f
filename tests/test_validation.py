"""The validation subset carved from a split's training videos (manifests.readers.validation) and its use in
jobs.train."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from jobs import train as train_mod
from jobs.demokit.shards import moving_frames
from jobs.training.config import ConfigError, load_config
from manifests.readers.clips import ClipDataset
from manifests.readers.validation import carve, group_of, resolve_rule
from manifests.shards import VideoStreams, write_shard_dataset


@dataclasses.dataclass(frozen=True)
class Rec:
    video_id: str
    labels: tuple[int, ...]


def ucf_records(classes=4, groups=(8, 9, 10, 11, 12, 13, 14, 15, 16, 17), clips=3):
    return [Rec(f"v_C{c}_g{g:02d}_c{k:02d}", (c,)) for c in range(classes) for g in groups for k in range(1, clips + 1)]


def test_ucf101_rule_holds_out_whole_groups_deterministically():
    recs = ucf_records()
    a = carve(recs, 0.2, "auto", seed=3)
    assert a.rule == "ucf101" and group_of("v_ApplyEyeMakeup_g08_c01") == "g08"
    val_groups = {group_of(r.video_id) for r in a.val}
    train_groups = {group_of(r.video_id) for r in a.train}
    assert val_groups == set(a.groups) and not val_groups & train_groups  # a group is never on both sides
    assert len(a.val) == 24 and len(a.train) + len(a.val) == len(recs)  # 2 of 10 groups x 12 videos
    assert {r.labels[0] for r in a.val} == set(range(4))  # every class has every group
    assert carve(recs, 0.2, "ucf101", seed=3) == a  # a pure function of the inputs
    assert {carve(recs, 0.2, "ucf101", seed=s).groups for s in range(6)} != {a.groups}  # the seed matters
    s = a.summary()
    assert s["n_val"] == 24 and s["rule"] == "ucf101" and s["video_ids"] == sorted(r.video_id for r in a.val)
    assert len(s["video_ids_sha256"]) == 64


def test_per_video_rule_is_stratified_by_class():
    recs = [Rec(f"clip{i:03d}", (i % 3,)) for i in range(60)] + [Rec(f"rare{i}", (3,)) for i in range(10)]
    a = carve(recs, 0.2, "auto", seed=0)
    assert a.rule == "none" and len(a.val) == 14
    per_class = np.bincount([r.labels[0] for r in a.val], minlength=4)
    assert per_class.tolist() == [4, 4, 4, 2]  # 20% of each class
    assert not {r.video_id for r in a.val} & {r.video_id for r in a.train}
    assert carve(recs, 0.2, "none", seed=0).val == a.val and carve(recs, 0.2, "none", seed=1).val != a.val
    assert carve(recs, 0.0).val == [] and len(carve(recs, 0.0).train) == 70


def test_carve_bad_input():
    with pytest.raises(ValueError, match="val_fraction"):
        carve(ucf_records(), 1.0)
    with pytest.raises(ValueError, match="v_<Class>_gXX_cYY"):
        resolve_rule("ucf101", [Rec("clip1", (0,))])
    with pytest.raises(ValueError, match="only 1 group"):
        carve(ucf_records(groups=(8,)), 0.1, "ucf101")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_config(None, ["data.val_fraction=1.5"])
    with pytest.raises(ConfigError, match="data.val_group_rule"):
        load_config(None, ["data.val_group_rule=hmdb"])


@pytest.fixture(scope="module")
def ucf_shards(tmp_path_factory):
    """UCF-101-style ids: 3 classes x groups 1-6 x 2 clips; split1 tests groups 1-2."""
    rng = np.random.default_rng(0)
    videos = []
    for c in range(3):
        for g in range(1, 7):
            for k in (1, 2):
                rgb = moving_frames(8, 20, 26, c, rng)
                videos.append(
                    VideoStreams(
                        f"v_Class{c}_g{g:02d}_c{k:02d}",
                        {"rgb": rgb, "flow": rgb[1:], "rgbf": rgb[1:]},
                        (c,),
                        {"split1": "test" if g <= 2 else "train"},
                    )
                )
    return write_shard_dataset(tmp_path_factory.mktemp("ucf"), videos, ["Class0", "Class1", "Class2"])


def test_clip_dataset_train_val_test_are_disjoint(ucf_shards):
    kw = dict(val_fraction=0.25, val_group_rule="auto", val_seed=0, clip_len=4, crop=16)
    train = ClipDataset(ucf_shards, "split1", "train", **kw)
    val = ClipDataset(ucf_shards, "split1", "val", **kw)
    test = ClipDataset(ucf_shards, "split1", "test", **kw)
    ids = [{r.video_id for r in d.records} for d in (train, val, test)]
    assert len(ids[0]) == 18 and len(ids[1]) == 6 and len(ids[2]) == 12  # val = 1 of the 4 training groups
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len({group_of(v) for v in ids[1]}) == 1 and not {group_of(v) for v in ids[1]} & {group_of(v) for v in ids[0]}
    assert val.mode == "test" and train.mode == "train" and train.carve.summary() == val.carve.summary()
    with pytest.raises(ValueError, match="val_fraction > 0"):
        ClipDataset(ucf_shards, "split1", "val")


def test_training_selects_on_validation_and_monitors_test_apart(ucf_shards, tmp_path):
    cfg = load_config(
        "jobs/configs/pretrain.yaml",
        [
            f"data.manifest={ucf_shards}",
            f"out_dir={tmp_path / 'run'}",
            "model.name=c3d-b8",
            "model.overrides={width: 0.0625}",
            "data.clip_len=4",
            "data.crop=16",
            "optim.batch_size=3",
            "data.num_workers=0",
            "eval.num_clips=2",
            "eval.batch_size=4",
            "log_every=0",
            "optim.epochs=3",
            "optim.lr=0.01",
            "data.val_fraction=0.25",
            "eval.monitor_test=true",
            "eval.every=1",
        ],
    )
    logs = []
    train_mod.fit(cfg, resume="never", log=logs.append)
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    sub = m["val"]["subset"]
    assert sub["rule"] == "ucf101" and sub["n_val"] == 6 and sub["n_train"] == 18 and len(sub["groups"]) == 1
    assert all(v.split("_")[2] == sub["groups"][0] for v in sub["video_ids"])
    hist = m["history"]
    assert all("val_video_top1" in h and "test_video_top1" in h for h in hist)
    vals = [h["val_video_top1"] for h in hist]
    assert m["val"]["best_video_top1"] == max(vals) and m["val"]["best_epoch"] == 1 + vals.index(max(vals))
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == m["val"]["best_epoch"]
    assert m["test"]["monitoring_only"] is True and "test_video_top1" in m["test"]["last"]
    assert any(line.startswith("monitoring") and "not used for selection" in line for line in logs)
    assert not any("test_video_top1" in line for line in logs if line.startswith("{"))  # kept apart
    saved = load_config(run / "config.yaml")
    assert saved.data.val_fraction == 0.25 and saved.data.val_group_rule == "auto" and saved.eval.monitor_test
