"""Train (pretrain or fine-tune) a model on a shard dataset: ``python -m jobs.train --config FILE [k=v ...]``.

A flat loop (docs/style.md §9): per epoch set the lr from the pure step schedule, train on one random clip per
training video (or ``data.max_clips_per_epoch`` of them), validate without gradients every
``eval.every`` epochs, then write ``last.pt`` (and ``best.pt`` when validation top-1 improves) in
``out_dir`` with the model spec, the resolved config, optimizer, epoch and RNG states.

* Model selection never sees the test videos: validation runs on ``data.val_fraction`` of the split's
  *training* videos, held out before training (``manifests.readers.validation``: whole UCF-101 groups, or per
  video stratified by class; seeded by ``data.val_seed``), and ``best.pt`` is the epoch with the best
  validation video top-1. ``metrics.json`` records the held-out subset (rule, counts, sha256 and ids).
  ``eval.monitor_test=true`` also scores the test videos at each validation, as ``test_*`` keys
  labelled monitoring in the log, ``metrics.json`` and the curves; they never select anything. The test
  set is meant to be scored once, by ``jobs.evaluate``.

* Resume: by default a run continues from ``out_dir/last.pt`` when it exists (``--resume CKPT`` picks
  another checkpoint, ``--no-resume`` starts over). Sample order and augmentation are functions of
  (seed, epoch, index), and the global RNG states (Python, NumPy, torch, CUDA) of *every rank* are saved
  (``rng_ranks[rank]``, gathered to rank 0) and each rank restores its own, so an interrupted + resumed
  run equals an uninterrupted one (bitwise on CPU with ``deterministic: true``), under Ray Train too.
  Resuming with a different number of workers (or from a checkpoint without ``rng_ranks``) cannot
  restore them: each rank then re-seeds from (seed, rank, epoch) and a warning says so; the sample order
  and augmentation stay exact, dropout masks differ from an uninterrupted run.
* Fine-tune: ``init_from=PRETRAINED.pt`` loads the weights; the classifier is replaced when the class
  count differs; ``optim.head_lr_mult`` scales the lr of the last FC (10 in finetune.yaml).
* Distributed: ``--workers N`` (``workers=N``) runs the same loop in N Ray Train workers with DDP (gloo
  on CPU, NCCL with ``--use-gpu``); each worker trains on every N-th sample of the epoch's order.
  Rank 0 writes the outputs, so ``out_dir`` must be on storage shared by all nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

import models
from jobs.cli import checks
from jobs.report.plots import plot_curves
from jobs.training import checkpoints, prediction, recipe
from jobs.training.config import ConfigError, TrainConfig, config_from_dict, load_config, save_config, to_dict
from jobs.training.metrics import classification_report
from jobs.training.prediction import aggregate
from manifests.readers.clips import ClipDataset


def make_datasets(cfg: TrainConfig) -> tuple[ClipDataset, ClipDataset | None, ClipDataset | None]:
    """(train, validation or None, test for monitoring or None). Validation = the held-out training videos."""
    d = cfg.data
    common = dict(
        split=d.split,
        stream=d.stream,
        clip_len=d.clip_len,
        crop=d.crop,
        mean=d.mean,
        std=d.std,
        val_fraction=d.val_fraction,
        val_group_rule=d.val_group_rule,
        val_seed=d.val_seed,
    )
    train_ds = ClipDataset(d.manifest, subset="train", mode="train", seed=cfg.seed, **common)
    val_ds = test_ds = None
    test_kw = dict(
        mode="test",
        num_clips=cfg.eval.num_clips,
        num_crops=cfg.eval.num_crops,
        max_videos=cfg.eval.max_videos,
        **common,
    )
    if cfg.eval.every and d.val_fraction > 0:
        val_ds = ClipDataset(d.manifest, subset="val", **test_kw)
    if cfg.eval.every and cfg.eval.monitor_test:
        test_ds = ClipDataset(d.manifest, subset="test", **test_kw)
    return train_ds, val_ds, test_ds


def resume_path(cfg: TrainConfig, resume: str) -> Path | None:
    """``resume``: "auto" (out_dir/last.pt if present), "never", or a checkpoint path (must exist)."""
    last = Path(cfg.out_dir) / "last.pt"
    if resume == "never":
        return None
    if resume == "auto":
        return last if last.is_file() else None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"--resume {resume}: checkpoint not found")
    return Path(resume)


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _all_reduce(values: list[float], world: int, device: torch.device) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def validate(
    model, val_ds: ClipDataset, cfg: TrainConfig, device, loss_kind: str, rank: int, world: int, prefix: str = "val"
) -> dict:
    """Video-level scores (eval.num_clips clips x eval.num_crops crops) as ``<prefix>_*`` keys; items
    split over ranks."""
    items = Subset(val_ds, range(rank, len(val_ds), world))
    loader = DataLoader(
        items,
        batch_size=cfg.eval.batch_size,
        num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    scores, videos, _ = prediction.predict(model, loader, device, loss_kind)
    if world > 1:
        parts = [None] * world
        torch.distributed.all_gather_object(parts, (scores, videos))
        scores = torch.cat([torch.from_numpy(s) for s, _ in parts]).numpy()
        videos = torch.cat([torch.from_numpy(v) for _, v in parts]).numpy()
    video_scores = aggregate(scores, videos, len(val_ds.records))
    targets = [r.labels for r in val_ds.records]
    clip_targets = [val_ds.records[v].labels for v in videos]
    rep = classification_report(video_scores, targets, val_ds.labels, multilabel=val_ds.multilabel)
    clip_rep = classification_report(scores, clip_targets, val_ds.labels)
    out = {
        f"{prefix}_video_top1": rep["top1"],
        f"{prefix}_video_top5": rep["top5"],
        f"{prefix}_clip_top1": clip_rep["top1"],
    }
    if "mAP" in rep:
        out[f"{prefix}_video_mAP"] = rep["mAP"]
    return out


def run_metrics(history: list[dict], best: float, validation: dict | None, monitor_test: bool) -> dict:
    """metrics.json: the history, the validation subset and the selection on it, test monitoring apart."""
    val_epochs = [h for h in history if h.get("val_video_top1") is not None]
    best_epoch = next((h["epoch"] for h in val_epochs if h["val_video_top1"] == best), None)
    test_epochs = [h for h in history if h.get("test_video_top1") is not None]
    return {
        "history": history,
        "val": {
            "subset": validation,
            "selection": "best.pt = epoch with the highest val_video_top1"
            if val_epochs
            else "no validation: best.pt = last epoch",
            "best_video_top1": None if best == float("-inf") else best,
            "best_epoch": best_epoch,
        },
        "test": {
            "monitoring_only": True,
            "note": "never used for selection; score the test set with jobs.evaluate",
            "last": {k: v for k, v in test_epochs[-1].items() if k.startswith("test_")},
        }
        if monitor_test and test_epochs
        else None,
        "best_val_video_top1": None if best == float("-inf") else best,
    }


def write_epoch(out: Path, payload: dict, is_best: bool, plot: bool, metrics: dict) -> None:
    """last.pt (atomic), best.pt when ``is_best``, metrics.json, and curves.png when ``plot``."""
    checkpoints.save_checkpoint(out / "last.pt", payload)
    if is_best:
        shutil.copyfile(out / "last.pt", out / "best.pt")
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(out / "metrics.json")
    if plot:  # matplotlib is slow to start: every 5 epochs and at the end
        plot_curves(payload["history"], out / "curves.png")


def gather_rng(world: int) -> list[dict]:
    """Every rank's global RNG states, indexed by rank (collective: all ranks call it)."""
    state = recipe.rng_state()
    if world == 1:
        return [state]
    states = [None] * world
    torch.distributed.all_gather_object(states, state)
    return states


def restore_rng(ckpt: dict, cfg: TrainConfig, rank: int, world: int, say) -> None:
    """This rank's saved RNG states; with another world size (or an old checkpoint) re-seed (module doc)."""
    states = ckpt.get("rng_ranks")
    if states is None and world == 1 and "rng" in ckpt:
        states = [ckpt["rng"]]
    if states is not None and len(states) == world:
        recipe.set_rng_state(states[rank])
        return
    saved = len(states) if states is not None else "unknown"
    say(
        f"warning: checkpoint holds RNG states of {saved} rank(s), this run has {world}: re-seeding each rank "
        f"from (seed, rank, epoch); dropout masks will differ from an uninterrupted run"
    )
    recipe.seed_everything(cfg.seed * 1000003 + 7919 * ckpt["epoch"] + rank, cfg.deterministic)


def fit(cfg: TrainConfig, resume: str = "auto", rank: int = 0, world: int = 1, log=print) -> dict:
    """The training loop. Returns the last epoch's record. ``rank``/``world`` > 1 under Ray Train.

    The process-wide deterministic-algorithms setting is restored on return (in-process callers)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        return _fit(cfg, resume, rank, world, log)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _fit(cfg: TrainConfig, resume: str, rank: int, world: int, log) -> dict:
    out = Path(cfg.out_dir)
    main = rank == 0
    say = log if main else (lambda msg: None)
    recipe.seed_everything(cfg.seed + rank, cfg.deterministic)  # rank: distinct dropout masks per worker
    if world > 1:
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = recipe.resolve_device(cfg.device)
    train_ds, val_ds, test_ds = make_datasets(cfg)
    validation = train_ds.carve.summary() if train_ds.carve is not None and train_ds.carve.val else None
    loss_kind, loss_fn = recipe.make_loss(cfg.loss, train_ds.multilabel)
    overrides = checkpoints.model_overrides(cfg.model.name, cfg.model.overrides, cfg.data.clip_len, cfg.data.crop)
    model = models.build_model(cfg.model.name, num_classes=train_ds.num_classes, **overrides)
    ckpt_path = resume_path(cfg, resume)
    if cfg.init_from and ckpt_path is None:
        say(checkpoints.init_from(model, cfg.init_from, cfg.model.name, train_ds.num_classes))
    model.to(device)
    has_batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    optimizer = torch.optim.SGD(
        recipe.param_groups(model, cfg.optim.weight_decay, cfg.optim.head_lr_mult),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
    )
    start, history, best = 0, [], float("-inf")
    if ckpt_path is not None:
        ckpt = checkpoints.load_checkpoint(ckpt_path)
        diff = _config_diff(ckpt["config"], to_dict(cfg))
        if diff:
            say(f"warning: resuming {ckpt_path} with a changed config: {'; '.join(diff)}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history, best = ckpt["epoch"], ckpt["history"], ckpt["best_metric"]
        restore_rng(ckpt, cfg, rank, world, say)
        say(f"resumed from {ckpt_path} at epoch {start}")
    if world > 1:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        other_best = ckpt_path.parent / "best.pt" if ckpt_path is not None else None
        if other_best is not None and other_best.is_file() and not (out / "best.pt").exists():
            shutil.copyfile(other_best, out / "best.pt")  # resumed from another directory: keep its best
    say(
        f"{cfg.model.name} {checkpoints.spec_dict(model)['num_classes']} classes, loss {loss_kind}, "
        f"{len(train_ds)} train videos, {len(val_ds.records) if val_ds else 0} val videos "
        f"({validation['rule'] + ' rule' if validation else 'no validation'}), device {device}, world {world}"
    )
    if test_ds is not None:
        say(
            f"monitoring: {len(test_ds.records)} test videos scored at each validation (eval.monitor_test); "
            f"never used for selection"
        )
    if start >= cfg.optim.epochs:
        say(f"{ckpt_path}: already trained for {start} epochs (optim.epochs={cfg.optim.epochs}); nothing to do")
        return history[-1] if history else {}

    for epoch in range(start, cfg.optim.epochs):
        lr = recipe.lr_at(epoch, cfg.optim.lr, cfg.optim.lr_step, cfg.optim.lr_gamma)
        recipe.set_lr(optimizer, lr)
        train_ds.set_epoch(epoch)
        order = recipe.epoch_indices(len(train_ds), epoch, cfg.seed, cfg.data.max_clips_per_epoch, rank, world)
        if has_batch_norm:  # a batch of one clip cannot train BatchNorm
            order = recipe.no_lone_last_batch(order, cfg.optim.batch_size)
        loader = DataLoader(
            train_ds,
            batch_size=cfg.optim.batch_size,
            sampler=order,
            num_workers=cfg.data.num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch),
        )
        s = recipe.train_one_epoch(model, loader, optimizer, loss_fn, device, epoch, say, cfg.log_every)
        loss_sum, correct, seen = _all_reduce([s["loss_sum"], s["correct"], s["seen"]], world, device)
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / seen,
            "train_top1": correct / seen,
            "train_clips": int(seen),
        }
        last_epoch = epoch + 1 == cfg.optim.epochs
        due = cfg.eval.every and ((epoch + 1) % cfg.eval.every == 0 or last_epoch)
        if due and val_ds is not None:
            record.update(validate(model, val_ds, cfg, device, loss_kind, rank, world))
        if due and test_ds is not None:
            record.update(validate(model, test_ds, cfg, device, loss_kind, rank, world, prefix="test"))
        history.append(record)
        say(json.dumps({k: v for k, v in record.items() if not k.startswith("test_")}))
        if due and test_ds is not None:
            say(
                f"monitoring (test videos, not used for selection): epoch {epoch + 1} "
                f"test video top-1 {record['test_video_top1']:.4f}"
            )
        metric = record.get("val_video_top1")
        improved = metric is not None and metric > best
        best = metric if improved else best
        rng_ranks = gather_rng(world)  # collective: every rank sends its own states to rank 0
        if main:
            write_epoch(
                out,
                {
                    "model": checkpoints.unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "rng": rng_ranks[0],
                    "rng_ranks": rng_ranks,
                    "model_name": cfg.model.name,
                    "model_overrides": overrides,
                    "spec": checkpoints.spec_dict(model),
                    "num_classes": train_ds.num_classes,
                    "labels": train_ds.labels,
                    "multilabel": train_ds.multilabel,
                    "loss": loss_kind,
                    "config": to_dict(cfg),
                    "history": history,
                    "best_metric": best,
                    "validation": validation,
                },
                is_best=improved or val_ds is None,
                plot=last_epoch or (epoch + 1) % 5 == 0,
                metrics=run_metrics(history, best, validation, test_ds is not None),
            )
        if world > 1:
            import ray.train

            ray.train.report({k: v for k, v in record.items() if isinstance(v, (int, float))})
    return history[-1]


def _ray_worker(config: dict) -> None:
    import ray.train

    ctx = ray.train.get_context()
    fit(config_from_dict(config["cfg"]), config["resume"], ctx.get_world_rank(), ctx.get_world_size())


def fit_ray(cfg: TrainConfig, resume: str = "auto") -> None:
    """Run ``fit`` in ``cfg.workers`` Ray Train workers (DDP). Connects to a running cluster if any."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = Path(cfg.out_dir).resolve()
    cfg = config_from_dict({**to_dict(cfg), "out_dir": str(out)})
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"cfg": to_dict(cfg), "resume": resume},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": max(1, cfg.data.num_workers)}
        ),
        run_config=RunConfig(name="train", storage_path=str(out / "ray")),
    )
    trainer.fit()


def train(cfg: TrainConfig, resume: str = "auto", log=print) -> None:
    """Entry point for code (the demo): single process, or Ray Train when ``cfg.workers`` > 0."""
    if cfg.workers > 0:
        fit_ray(cfg, resume)
    else:
        fit(cfg, resume, log=log)


def check_config(cfg: TrainConfig, resume: str | None) -> None:
    """Paths and data choices of a config, before any model, data loader or Ray starts (UsageError)."""
    if not cfg.data.manifest:
        raise checks.UsageError("data.manifest is not set (data.manifest=PATH to a shard dataset version)")
    vdir = checks.version("data.manifest", cfg.data.manifest, "shards")
    checks.out_dir("out_dir", cfg.out_dir)
    if cfg.init_from:
        checks.existing_file("init_from", cfg.init_from)
    if resume:
        checks.existing_file("--resume", resume)
    checks.shard_split("data.split", cfg.data.split, vdir)
    if cfg.workers > 0:
        checks.ray_address("RAY_ADDRESS", os.environ.get("RAY_ADDRESS") or None)


@checks.cli("train")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="overrides: dotted keys of jobs/config.py, e.g. "
        "data.manifest=data/shards/LATEST "
        "out_dir=runs/x model.name=c3d-b5 model.overrides.width=0.25 optim.epochs=2 "
        "optim.batch_size=4 optim.lr=0.01 data.num_workers=0 data.stream=rgbf "
        "data.split=split1 data.max_clips_per_epoch=64 eval.every=0",
    )
    ap.add_argument("--config", help="YAML config (jobs/configs/pretrain.yaml, finetune.yaml)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", metavar="CKPT", help="resume from this checkpoint (default: out_dir/last.pt if present)")
    g.add_argument("--no-resume", action="store_true", help="start from scratch even if out_dir/last.pt exists")
    ap.add_argument("--workers", type=int, help="Ray Train workers (DDP); same as workers=N")
    ap.add_argument("--use-gpu", action="store_true", help="each Ray Train worker takes a GPU")
    args = ap.parse_args(argv)
    extra = list(args.overrides)
    if args.workers is not None:
        extra.append(f"workers={args.workers}")
    if args.use_gpu:
        extra.append("use_gpu=true")
    try:
        cfg = load_config(args.config, extra)
    except ConfigError as e:
        raise checks.UsageError(str(e)) from None
    check_config(cfg, args.resume)
    resume = "never" if args.no_resume else (args.resume or "auto")
    try:
        train(cfg, resume)
    except recipe.NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
