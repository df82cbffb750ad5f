"""Evaluate a checkpoint with the paper's test protocol (section 4.3) and write metrics and plots.

``python -m jobs.evaluate --checkpoint runs/finetune/best.pt --manifest data/shards/LATEST --out runs/evaluate``

Every test video gives 25 evenly spaced 16-frame clips x 10 crops (centre, 4 corners and their mirror
images); the class scores (softmax, or sigmoid for a BCE-trained multi-label model) of the 10 crops are
averaged into a clip score and the 25 clip scores into the video score. Outputs in ``--out``:

* ``metrics.json``: clip and video top-1 / top-5, mean and per-class accuracy, confusion matrix (video
  level), mAP for multi-label data, the protocol and the inputs (checkpoint, shard version, stream, split);
* ``confusion.png``; ``scores.npz`` (video_ids, scores (V, K), labels (V, K) multi-hot);
* ``--fuse OTHER.pt``: the other model (e.g. the RGBF one, on its own stream) is evaluated the same way and
  the per-video scores of both are averaged (Table 5's RGB+RGBF) -> ``metrics.json["other"]`` and
  ``["fused"]``, ``confusion_fused.png``, ``scores_other.npz``, ``scores_fused.npz``;
* ``--export-features``: ``features.npz`` with the penultimate-FC activations (``model.features``)
  averaged over all clips and crops of each video -> (V, D), for a linear classifier (section 4.7).

Coverage: the split's test videos are the shard version's extracted ones plus its failures in that split
(``failures.parquet``); ``metrics.json["coverage"]`` and stdout give how many there are, how many were
evaluated and which are missing with the failure stage and reason, so results on different test sets do
not pass for comparable. Below ``--min-coverage`` (default 0.98) the job stops before evaluating, with a
one-line message and exit code 2, unless ``--allow-missing``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from jobs.cli import checks
from jobs.report.plots import plot_confusion
from jobs.training import checkpoints, prediction
from jobs.training.metrics import classification_report
from jobs.training.prediction import aggregate, fuse_scores
from jobs.training.recipe import resolve_device
from manifests.readers.clips import ClipDataset
from manifests.shards import load_shards, split_coverage


@dataclasses.dataclass
class Evaluation:
    checkpoint: str
    stream: str
    split: str
    labels: list[str]
    multilabel: bool
    video_ids: list[str]
    targets: list[tuple[int, ...]]  # labels per video
    scores: np.ndarray  # (V, K) video scores
    clip_scores: np.ndarray  # (V * num_clips, K)
    clip_video: np.ndarray  # (V * num_clips,) video index of each clip
    features: np.ndarray | None  # (V, D)


def evaluate_checkpoint(
    checkpoint: str | Path,
    manifest: str | Path,
    *,
    split: str | None = None,
    stream: str | None = None,
    num_clips: int = 25,
    num_crops: int = 10,
    batch_size: int = 4,
    num_workers: int = 2,
    max_videos: int = 0,
    device: str = "auto",
    features: bool = False,
) -> Evaluation:
    """Run the test protocol of one checkpoint on the test videos of ``split`` (default: its training split)."""
    ckpt = checkpoints.load_checkpoint(checkpoint)
    d = ckpt["config"]["data"]
    split, stream = split or d["split"], stream or d["stream"]
    ds = ClipDataset(
        manifest,
        split,
        "test",
        stream,
        mode="test",
        clip_len=d["clip_len"],
        crop=d["crop"],
        mean=d["mean"],
        std=d["std"],
        num_clips=num_clips,
        num_crops=num_crops,
        max_videos=max_videos,
    )
    if ds.labels != list(ckpt["labels"]):
        raise ValueError(
            f"{checkpoint}: trained on {len(ckpt['labels'])} classes that differ from the "
            f"{len(ds.labels)} classes of {manifest}"
        )
    dev = resolve_device(device)
    model = checkpoints.model_from_checkpoint(ckpt).to(dev)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, pin_memory=dev.type == "cuda")
    clip_scores, clip_video, feats = prediction.predict(model, loader, dev, ckpt.get("loss", "ce"), features=features)
    n = len(ds.records)
    return Evaluation(
        checkpoint=str(checkpoint),
        stream=stream,
        split=split,
        labels=ds.labels,
        multilabel=ds.multilabel,
        video_ids=[r.video_id for r in ds.records],
        targets=[tuple(r.labels) for r in ds.records],
        scores=aggregate(clip_scores, clip_video, n),
        clip_scores=clip_scores,
        clip_video=clip_video,
        features=aggregate(feats, clip_video, n) if features else None,
    )


def _multi_hot(targets, k: int) -> np.ndarray:
    out = np.zeros((len(targets), k), dtype=np.uint8)
    for i, t in enumerate(targets):
        out[i, list(t)] = 1
    return out


def report(ev: Evaluation) -> dict:
    clip_targets = [ev.targets[v] for v in ev.clip_video]
    clip = classification_report(ev.clip_scores, clip_targets, ev.labels, ev.multilabel)
    video = classification_report(ev.scores, ev.targets, ev.labels, ev.multilabel)
    keep = ("n", "top1", "top5", "mean_class_accuracy", "mAP")
    return {"clip": {k: clip[k] for k in keep if k in clip}, "video": video}


def coverage_line(cov: dict) -> str:
    """One line: "coverage: 158/160 split1 test videos evaluated (98.8%); missing 2: a (decode), b (flow)"."""
    line = (
        f"coverage: {cov['evaluated']}/{cov['videos']} {cov['split']} {cov['subset']} videos evaluated "
        f"({100 * cov['fraction']:.1f}%)"
    )
    if cov["missing"]:
        shown = ", ".join(f"{m['video_id']} ({m['stage']})" for m in cov["missing"][:5])
        more = f", ... ({len(cov['missing']) - 5} more in metrics.json)" if len(cov["missing"]) > 5 else ""
        line += f"; missing {len(cov['missing'])}: {shown}{more}"
    if cov["failures_split_unknown"]:
        line += f"; {cov['failures_split_unknown']} failures of unknown split (old shard version)"
    return line


def write_outputs(
    ev: Evaluation,
    out: Path,
    manifest: str,
    protocol: dict,
    fuse: Evaluation | None = None,
    coverage: dict | None = None,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    shards = load_shards(manifest)
    metrics = {
        "checkpoint": ev.checkpoint,
        "manifest": str(manifest),
        "shard_version": shards.meta.version_id,
        "stream": ev.stream,
        "split": ev.split,
        "protocol": protocol,
        "coverage": {**split_coverage(shards, ev.split, "test", ev.video_ids), **(coverage or {})},
        **report(ev),
    }
    np.savez(
        out / "scores.npz",
        video_ids=np.array(ev.video_ids),
        scores=ev.scores,
        labels=_multi_hot(ev.targets, len(ev.labels)),
        class_names=np.array(ev.labels),
    )
    title = f"{Path(ev.checkpoint).name} ({ev.stream}) video top-1 {metrics['video']['top1']:.3f}"
    plot_confusion({title: (np.array(metrics["video"]["confusion_matrix"]), ev.labels)}, out / "confusion.png")
    if fuse is not None:
        if fuse.labels != ev.labels:
            raise ValueError(f"--fuse {fuse.checkpoint}: its classes differ from {ev.checkpoint}'s")
        a = dict(zip(ev.video_ids, ev.scores))
        fused = fuse_scores(a, dict(zip(fuse.video_ids, fuse.scores)))
        ids = list(fused)
        targets = [ev.targets[ev.video_ids.index(v)] for v in ids]
        scores = np.stack([fused[v] for v in ids])
        rep = classification_report(scores, targets, ev.labels, ev.multilabel)
        metrics["other"] = {"checkpoint": fuse.checkpoint, "stream": fuse.stream, **report(fuse)}
        metrics["fused"] = {"streams": [ev.stream, fuse.stream], "rule": "mean of per-video scores", **rep}
        np.savez(
            out / "scores_other.npz",
            video_ids=np.array(fuse.video_ids),
            scores=fuse.scores,
            labels=_multi_hot(fuse.targets, len(fuse.labels)),
            class_names=np.array(fuse.labels),
        )
        np.savez(
            out / "scores_fused.npz",
            video_ids=np.array(ids),
            scores=scores,
            labels=_multi_hot(targets, len(ev.labels)),
            class_names=np.array(ev.labels),
        )
        title = f"fused {ev.stream}+{fuse.stream} video top-1 {rep['top1']:.3f}"
        plot_confusion({title: (np.array(rep["confusion_matrix"]), ev.labels)}, out / "confusion_fused.png")
    if ev.features is not None:
        np.savez(
            out / "features.npz",
            video_ids=np.array(ev.video_ids),
            features=ev.features.astype(np.float32),
            labels=_multi_hot(ev.targets, len(ev.labels)),
            class_names=np.array(ev.labels),
        )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def check_args(args: argparse.Namespace) -> None:
    """Values and paths before any model or data loader is built (UsageError naming the argument)."""
    checks.positive_int("--num-clips", args.num_clips)
    checks.positive_int("--batch-size", args.batch_size)
    checks.positive_int("--max-videos", args.max_videos, minimum=0)
    checks.positive_int("--num-workers", args.num_workers, minimum=0)
    if args.stream is not None:
        checks.choice("--stream", args.stream, ("rgb", "flow", "rgbf"))
    for arg, path in (("--checkpoint", args.checkpoint), ("--fuse", args.fuse)):
        if arg == "--checkpoint" or path:
            checks.existing_file(arg, path)
            try:
                checkpoints.load_checkpoint(path)
            except Exception as e:  # torch.load of a non-checkpoint raises pickle/zip errors of many types
                raise checks.UsageError(f"{arg} {path}: not a jobs.train checkpoint ({checks.one_line(e)})") from None
    vdir = checks.version("--manifest", args.manifest, "shards")
    checks.out_dir("--out", args.out)
    if args.split:
        checks.shard_split("--split", args.split, vdir)


@checks.cli("evaluate")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a jobs.train checkpoint (best.pt / last.pt)")
    ap.add_argument("--manifest", required=True, help="shard dataset version (dir, file in it or LATEST)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--stream", help="rgb | flow | rgbf (default: the checkpoint's training stream)")
    ap.add_argument("--split", help="split name (default: the checkpoint's training split); its test videos")
    ap.add_argument("--fuse", metavar="OTHER_CKPT", help="second model to fuse with (its own stream)")
    ap.add_argument("--export-features", action="store_true", help="write features.npz (model.features)")
    ap.add_argument("--num-clips", type=int, default=25)
    ap.add_argument("--num-crops", type=int, default=10, choices=(1, 5, 10))
    ap.add_argument("--max-videos", type=int, default=0, help="evaluate an evenly spread subset (0 = all)")
    ap.add_argument("--batch-size", type=int, default=4, help="clips per forward pass (x num-crops)")
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument(
        "--min-coverage",
        type=float,
        default=0.98,
        help="stop (exit 2) when a smaller fraction of the split's test videos can be evaluated "
        "(failed extraction, --max-videos); default 0.98",
    )
    ap.add_argument("--allow-missing", action="store_true", help="evaluate whatever the coverage")
    args = ap.parse_args(argv)
    check_args(args)
    checks.number_in("--min-coverage", args.min_coverage, 0.0, 1.0)
    data = checkpoints.load_checkpoint(args.checkpoint)["config"]["data"]
    split = args.split or data["split"]
    # opens no HDF5 file; the checkpoint's clip length and crop, which ClipDataset checks against the frames
    planned = ClipDataset(
        args.manifest, split, "test", clip_len=data["clip_len"], crop=data["crop"], max_videos=args.max_videos
    )
    cov = split_coverage(load_shards(args.manifest), split, "test", [r.video_id for r in planned.records])
    if cov["fraction"] < args.min_coverage and not args.allow_missing:
        raise checks.UsageError(
            f"--min-coverage {args.min_coverage}: {coverage_line(cov)}; pass --allow-missing to evaluate anyway"
        )
    common = dict(
        split=args.split,
        num_clips=args.num_clips,
        num_crops=args.num_crops,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_videos=args.max_videos,
        device=args.device,
    )
    ev = evaluate_checkpoint(
        args.checkpoint, args.manifest, stream=args.stream, features=args.export_features, **common
    )
    other = evaluate_checkpoint(args.fuse, args.manifest, **common) if args.fuse else None
    protocol = {"num_clips": args.num_clips, "num_crops": args.num_crops, "max_videos": args.max_videos}
    m = write_outputs(
        ev,
        Path(args.out),
        args.manifest,
        protocol,
        other,
        {"min_coverage": args.min_coverage, "allow_missing": args.allow_missing},
    )
    line = (
        f"{ev.stream}: clip top-1 {m['clip']['top1']:.4f}  video top-1 {m['video']['top1']:.4f} "
        f"top-5 {m['video']['top5']:.4f} ({m['video']['n']} videos)"
    )
    if "fused" in m:
        line += f"\nfused {'+'.join(m['fused']['streams'])}: video top-1 {m['fused']['top1']:.4f}"
    print(coverage_line(m["coverage"]))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
