"""Evaluation metrics on known scores (jobs.training.metrics) and the jobs.evaluate protocol on tiny shards."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs import evaluate as ev_mod
from jobs import train as train_mod
from jobs.training import metrics as em
from jobs.training import prediction
from jobs.training.config import load_config
from manifests.shards import FailureRecord, load_shards, split_coverage

from fixtures import synthetic_shards


def test_topk_confusion_and_per_class_on_known_scores():
    scores = np.array(
        [
            [0.7, 0.2, 0.1],  # true 0, pred 0
            [0.1, 0.3, 0.6],  # true 1, pred 2, 2nd best 1
            [0.2, 0.5, 0.3],  # true 1, pred 1
            [0.5, 0.1, 0.4],
        ]
    )  # true 2, pred 0, 2nd best 2
    targets = [(0,), (1,), (1,), (2,)]
    assert em.topk_accuracy(scores, targets, 1) == 0.5
    assert em.topk_accuracy(scores, targets, 2) == 1.0
    assert em.topk_accuracy(scores, [(0,), (2, 1), (0,), (1,)], 1) == 0.5  # multi-label: any label counts
    cm = em.confusion_matrix(np.array([0, 1, 1, 2]), scores.argmax(1), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(em.per_class_accuracy(cm), [1.0, 0.5, 0.0])
    rep = em.classification_report(scores, targets, ["a", "b", "c"])
    assert rep["top1"] == 0.5 and rep["top5"] == 1.0 and rep["mean_class_accuracy"] == pytest.approx(0.5)
    assert rep["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 0.0}


def test_aggregate_map_and_fusion():
    clip = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.4, 0.6]])
    np.testing.assert_allclose(prediction.aggregate(clip, np.array([0, 0, 1, 1]), 2), [[0.5, 0.5], [0.3, 0.7]])
    with pytest.raises(ValueError, match="groups without scores"):
        prediction.aggregate(clip, np.array([0, 0, 2, 2]), 3)
    # AP: positives ranked 1st and 3rd -> (1/1 + 2/3) / 2
    assert em.average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0], bool)) == pytest.approx(5 / 6)
    assert em.mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8]]), [(0,), (1,)]) == 1.0
    fused = prediction.fuse_scores(
        {"a": np.array([0.9, 0.1]), "b": np.array([0.2, 0.8]), "x": np.array([1.0, 0.0])},
        {"a": np.array([0.3, 0.7]), "b": np.array([0.4, 0.6])},
    )
    assert sorted(fused) == ["a", "b"]
    np.testing.assert_allclose(fused["a"], [0.6, 0.4])
    with pytest.raises(ValueError, match="share no video"):
        prediction.fuse_scores({"a": np.zeros(2)}, {"b": np.zeros(2)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two 1-epoch tiny models on the same shards: one on RGB, one on RGBF."""
    root = tmp_path_factory.mktemp("eval")
    shards = synthetic_shards(root / "shards", num_videos=12, num_classes=3, frames=[8, 9, 10, 11] * 3)
    ckpts = {}
    for stream in ("rgb", "rgbf"):
        cfg = load_config(
            "jobs/configs/finetune.yaml",
            [
                f"data.manifest={shards}",
                f"out_dir={root / stream}",
                f"data.stream={stream}",
                "model.name=c3d-b8",
                "model.overrides={width: 0.0625}",
                "data.clip_len=4",
                "data.crop=16",
                "optim.batch_size=3",
                "optim.epochs=1",
                "data.num_workers=0",
                "eval.every=0",
                "log_every=0",
                "optim.lr=0.01",
                "data.max_clips_per_epoch=3",
            ],
        )
        train_mod.fit(cfg, resume="never", log=lambda m: None)
        ckpts[stream] = root / stream / "best.pt"
    return shards, ckpts, root


def test_evaluate_protocol_fusion_and_features(trained, capsys):
    shards, ckpts, root = trained
    out = root / "out"
    rc = ev_mod.main(
        [
            "--checkpoint",
            str(ckpts["rgb"]),
            "--manifest",
            str(shards),
            "--out",
            str(out),
            "--fuse",
            str(ckpts["rgbf"]),
            "--export-features",
            "--num-workers",
            "0",
            "--num-clips",
            "5",
        ]
    )  # 25 x 10 indices: tests/test_clips.py
    assert rc == 0 and "fused rgb+rgbf" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["stream"] == "rgb" and m["other"]["stream"] == "rgbf" and m["protocol"]["num_clips"] == 5
    assert m["protocol"]["num_crops"] == 10 and m["video"]["n"] == 3 and m["clip"]["n"] == 3 * 5
    for name in (
        "confusion.png",
        "confusion_fused.png",
        "scores.npz",
        "scores_other.npz",
        "scores_fused.npz",
        "features.npz",
    ):
        assert (out / name).is_file(), name
    a, f = np.load(out / "scores.npz"), np.load(out / "scores_fused.npz")
    assert list(a["video_ids"]) == ["v003", "v007", "v011"]
    np.testing.assert_allclose(a["scores"].sum(1), 1.0)  # softmax averaged over 5 clips x 10 crops
    # the fused scores are the mean of both models' video scores
    b = np.load(out / "scores_other.npz")
    assert not np.array_equal(a["scores"], b["scores"])
    np.testing.assert_allclose(f["scores"], (a["scores"] + b["scores"]) / 2)
    top1 = np.mean(f["scores"].argmax(1) == f["labels"].argmax(1))
    assert m["fused"]["top1"] == pytest.approx(top1)
    feats = np.load(out / "features.npz")
    assert feats["features"].shape == (3, 256) and np.isfinite(feats["features"]).all()


def test_evaluate_video_score_is_mean_of_clip_scores(trained):
    shards, ckpts, _ = trained
    ev = ev_mod.evaluate_checkpoint(ckpts["rgb"], shards, num_clips=4, num_crops=5, num_workers=0)
    assert ev.clip_scores.shape == (12, 3)
    np.testing.assert_allclose(ev.scores[1], ev.clip_scores[ev.clip_video == 1].mean(0))
    with pytest.raises(ValueError, match="classes that differ"):
        ev_mod.evaluate_checkpoint(
            ckpts["rgb"],
            synthetic_shards(shards.parent.parent / "two", num_videos=4, num_classes=2, frames=6),
            num_workers=0,
        )


def test_evaluate_reports_coverage_and_stops_below_threshold(trained, tmp_path, capsys):
    shards, ckpts, _ = trained
    fails = [
        FailureRecord(
            "v_bad",
            "decode",
            "v_bad.avi: no frame decodes",
            "v_bad.avi",
            "00001.h5",
            {"split1": "test", "split2": "train"},
        ),
        FailureRecord("v_trainbad", "flow", "v_trainbad.avi: NaN flow", splits={"split1": "train"}),
        FailureRecord("v_old", "static", "v_old.avi: static", splits={}),
    ]  # a schema-1 row
    lossy = synthetic_shards(
        tmp_path / "lossy", num_videos=12, num_classes=3, frames=[8, 9, 10, 11] * 3, failures=fails
    )
    assert load_shards(lossy).failures[0].splits == {"split1": "test", "split2": "train"}  # round trip
    cov = split_coverage(load_shards(lossy), "split1", "test", ["v003", "v007", "v011"])
    assert (cov["videos"], cov["evaluated"], cov["failures_split_unknown"]) == (4, 3, 1)
    assert cov["missing"] == [{"video_id": "v_bad", "stage": "decode", "error": "v_bad.avi: no frame decodes"}]
    args = [
        "--checkpoint",
        str(ckpts["rgb"]),
        "--manifest",
        str(lossy),
        "--num-workers",
        "0",
        "--num-clips",
        "2",
        "--num-crops",
        "1",
    ]
    assert ev_mod.main([*args, "--out", str(tmp_path / "a")]) == 2  # 3/4 < 0.98: stops before evaluating
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--min-coverage 0.98" in err and "3/4 split1 test" in err
    assert "v_bad (decode)" in err and "--allow-missing" in err and not (tmp_path / "a").exists()
    assert ev_mod.main([*args, "--out", str(tmp_path / "b"), "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "coverage: 3/4 split1 test videos evaluated (75.0%); missing 1: v_bad (decode)" in out
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())["coverage"]
    assert m["videos"] == 4 and m["evaluated"] == 3 and m["fraction"] == 0.75 and m["allow_missing"] is True
    assert m["missing"][0]["error"] == "v_bad.avi: no frame decodes"
    # a subset (--max-videos) is missing videos too; a lower threshold accepts it
    assert ev_mod.main([*args, "--out", str(tmp_path / "c"), "--max-videos", "2", "--min-coverage", "0.5"]) == 0
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())["coverage"]
    assert m["evaluated"] == 2 and [x["stage"] for x in m["missing"]] == ["not evaluated", "decode"]
