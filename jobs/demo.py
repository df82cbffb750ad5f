"""The whole pipeline end to end on the embedded demo dataset, then a report.

    python -m jobs.demo --data data/demo-run --runs runs/demo [--preset default|tiny] [--workers N] [--seed S]
                        [--validation-only] [--resume]

Stages, each run as a subprocess of the same CLI a user runs (so the demo exercises the real entry
points; every command is logged in the report and its output in <runs>/logs/<stage>.log):

 1. jobs.make_demo_data  two synthetic datasets laid out like UCF-101: a *pretrain* set and the *target*
                         set, with disjoint motion classes (jobs.demokit.synth) and different seeds
 2. jobs.build_manifest  --dataset ucf101 on each (the real UCF-101 builder and split files)
 3. jobs.extract         decode -> Brox flow -> flow images, RGBF -> HDF5 shards, on Ray
 4. jobs.train           pretrain on the pretrain set, once per input stream (RGB and RGBF); no
                         evaluation, last.pt is used
 5. jobs.train           finetune each on the target set's split1 train videos (init_from=pretrain),
                         minus one held-out group (data.val_fraction, UCF-101 group rule) that validates
                         every few epochs and selects best.pt
 6. jobs.evaluate        the finetuned best.pt (selected on validation) on split1's test videos, once,
                         RGBF fused with RGB
 7. jobs.report          report.md + PNGs (stream panels, flow colour key, curves, confusion matrices)

``--validation-only`` stops after stage 5 and prints the validation numbers: the way to compare demo
settings without looking at the test videos (docs/demo.md). ``--resume`` lets jobs.train continue (or
skip, when finished) the runs already in ``--runs`` instead of starting them over, so a
``--validation-only`` run can be completed by stages 6-7 alone.

One local Ray instance is started here and shared by stages 2-3 through RAY_ADDRESS (no repeated
start-up), and shut down at the end. Model selection never looks at the test split: the test videos are
scored once, by stage 6. See docs/demo.md for the sizes chosen and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from jobs.cli import checks, cluster

PY = sys.executable
TRAINED_STREAMS = ("rgb", "rgbf")  # the demo trains one model per stream, then fuses their scores
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclasses.dataclass(frozen=True)
class Preset:
    """Sizes of one demo run (docs/demo.md explains the defaults)."""

    classes: int = 8  # first 8 target classes: those a horizontal flip maps onto themselves
    pretrain_classes: int | None = None  # all 8 pretrain classes
    target_videos: int = 60  # per class; 12 groups of 5 clips, split1 tests groups 1-4
    pretrain_videos: int = 24  # per class; 6 groups of 4
    clips_per_group: int = 5
    pretrain_clips_per_group: int = 4
    frames: int = 20
    size: tuple[int, int] = (48, 64)
    clip_len: int = 8
    crop: int = 40
    width: float = 0.125
    model: str = "asym3dcnn"
    fc: tuple[int, ...] = ()  # no hidden FC layers (see docs/demo.md: the N(0, 0.01) FC init at this width)
    pretrain_epochs: int = 30
    finetune_epochs: int = 50
    batch_size: int = 8
    pretrain_lr: float = 0.003
    finetune_lr: float = 0.005
    lr_step: int = 100  # constant lr over these short runs
    eval_every: int = 5  # finetuning: epochs between validations (they select best.pt)
    val_fraction: float = 0.1  # of the target split1 training videos: 1 of its 8 groups (40 videos)
    test_clips: int = 5
    test_crops: int = 10
    flow_params: tuple[str, ...] = ("inner=5", "solver=5")
    seed: int = 0  # training seed (weight init, clip and crop sampling); the datasets' seeds are fixed
    bound: float = 8.0


PRESETS = {
    "default": Preset(),
    # CI: the same path end to end at the smallest sizes that run every stage (tests/test_demo.py)
    "tiny": Preset(
        classes=3,
        pretrain_classes=3,
        target_videos=6,
        pretrain_videos=4,
        clips_per_group=2,
        pretrain_clips_per_group=2,
        frames=10,
        size=(32, 44),
        clip_len=8,
        crop=28,
        pretrain_epochs=1,
        finetune_epochs=1,
        batch_size=4,
        eval_every=1,
        test_clips=2,
        test_crops=1,
        flow_params=("inner=2", "solver=2"),
    ),
}


class StageError(RuntimeError):
    pass


class Runner:
    """Runs stage commands as subprocesses, logs their output and records commands and timings."""

    def __init__(self, log_dir: Path, env: dict[str, str]):
        self.log_dir, self.env = log_dir, env
        self.commands: list[list[str]] = []
        self.timings: dict[str, float] = {}
        self.load_start = list(os.getloadavg())  # (1, 5, 15 min): the machine may be shared
        log_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, stage: str, args: list[str]) -> str:
        """Run `python -m <args>`; returns stdout; raises StageError with the log's tail on failure."""
        cmd = [PY, "-m", *args]
        self.commands.append(["python", "-m", *args])
        log = self.log_dir / f"{stage}.log"
        print(f"[demo] {stage}: python -m {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        with open(log, "w") as err:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=self.env)
        self.timings[stage] = time.perf_counter() - t0
        with open(log, "a") as f:
            f.write("\n--- stdout ---\n" + proc.stdout)
        if proc.returncode != 0:
            tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
            raise StageError(f"stage {stage!r} failed (exit {proc.returncode}): {' '.join(cmd)}\nlog {log}:\n{tail}")
        print(f"[demo] {stage}: {self.timings[stage]:.1f} s", flush=True)
        return proc.stdout


def last_line(text: str, what: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise StageError(f"{what}: printed nothing; expected a version id on its last line")
    return lines[-1]


def prepare_data(run: Runner, p: Preset, data: Path, workers: int) -> dict[str, Path]:
    """Stages 1-3 for the pretrain and target sets; returns {set name: shard dataset version dir}."""
    shards = {}
    sets = {
        "pretrain": ("pretrain", p.pretrain_classes, p.pretrain_videos, p.pretrain_clips_per_group, 1),
        "target": ("target", p.classes, p.target_videos, p.clips_per_group, 0),
    }
    for name, (class_set, classes, videos, per_group, seed) in sets.items():
        src = data / f"{name}-src"
        args = [
            "jobs.make_demo_data",
            "--out",
            str(src),
            "--class-set",
            class_set,
            "--seed",
            str(seed),
            "--videos-per-class",
            str(videos),
            "--clips-per-group",
            str(per_group),
            "--frames",
            str(p.frames),
            "--size",
            str(p.size[0]),
            str(p.size[1]),
        ]
        if classes is not None:
            args += ["--classes", str(classes)]
        run(f"generate-{name}", args)
        out = run(
            f"manifest-{name}",
            [
                "jobs.build_manifest",
                "--dataset",
                "ucf101",
                "--videos",
                str(src / "videos"),
                "--annotations",
                str(src / "annotations"),
                "--out",
                str(data / "manifests" / name),
                "--workers",
                str(workers),
            ],
        )
        manifest = data / "manifests" / name / last_line(out, "jobs.build_manifest")
        args = [
            "jobs.extract",
            "--manifest",
            str(manifest),
            "--out",
            str(data / "shards" / name),
            "--size",
            str(p.size[0]),
            str(p.size[1]),
            "--workers",
            str(workers),
            "--bound",
            str(p.bound),
        ]
        for fp in p.flow_params:
            args += ["--flow-param", fp]
        out = run(f"extract-{name}", args)
        shards[name] = data / "shards" / name / last_line(out, "jobs.extract")
    return shards


def train_and_evaluate(
    run: Runner, p: Preset, shards: dict[str, Path], runs: Path, validation_only: bool = False, resume: bool = False
) -> dict[str, Path]:
    """Stages 4-6 (4-5 with ``validation_only``); returns {stream or "fused": evaluation dir}."""
    common = [
        f"model.name={p.model}",
        f"model.overrides.width={p.width}",
        "model.overrides.batch_norm=true",
        f"model.overrides.fc=[{','.join(map(str, p.fc))}]",
        f"data.clip_len={p.clip_len}",
        f"data.crop={p.crop}",
        f"optim.batch_size={p.batch_size}",
        f"optim.lr_step={p.lr_step}",
        "data.num_workers=0",
        "eval.num_clips=2",
        "log_every=1000",
        "device=cpu",
        f"seed={p.seed}",
    ]
    fresh = [] if resume else ["--no-resume"]
    for stream in TRAINED_STREAMS:
        run(
            f"pretrain-{stream}",
            [
                "jobs.train",
                "--config",
                str(CONFIGS / "pretrain.yaml"),
                *fresh,
                f"data.manifest={shards['pretrain']}",
                f"out_dir={runs / f'pretrain-{stream}'}",
                f"data.stream={stream}",
                f"optim.epochs={p.pretrain_epochs}",
                f"optim.lr={p.pretrain_lr}",
                "data.val_fraction=0",
                "eval.every=0",
                *common,
            ],
        )
        run(
            f"finetune-{stream}",
            [
                "jobs.train",
                "--config",
                str(CONFIGS / "finetune.yaml"),
                *fresh,
                f"data.manifest={shards['target']}",
                f"out_dir={runs / f'finetune-{stream}'}",
                f"init_from={runs / f'pretrain-{stream}' / 'last.pt'}",
                f"data.stream={stream}",
                f"optim.epochs={p.finetune_epochs}",
                f"optim.lr={p.finetune_lr}",
                "optim.head_lr_mult=1.0",
                f"data.val_fraction={p.val_fraction}",
                "data.val_group_rule=ucf101",
                f"eval.every={p.eval_every}",
                *common,
            ],
        )
    if validation_only:
        return {}
    evals = {}
    proto = [
        "--num-clips",
        str(p.test_clips),
        "--num-crops",
        str(p.test_crops),
        "--num-workers",
        "0",
        "--device",
        "cpu",
    ]
    run(
        "evaluate-rgb",
        [
            "jobs.evaluate",
            "--checkpoint",
            str(runs / "finetune-rgb" / "best.pt"),
            "--manifest",
            str(shards["target"]),
            "--out",
            str(runs / "evaluate-rgb"),
            *proto,
        ],
    )
    evals["rgb"] = runs / "evaluate-rgb"
    run(
        "evaluate-rgbf",
        [
            "jobs.evaluate",
            "--checkpoint",
            str(runs / "finetune-rgbf" / "best.pt"),
            "--manifest",
            str(shards["target"]),
            "--out",
            str(runs / "evaluate-rgbf"),
            "--fuse",
            str(runs / "finetune-rgb" / "best.pt"),
            *proto,
        ],
    )
    evals["rgbf"] = runs / "evaluate-rgbf"
    return evals


def start_ray(workers: int):
    """Start a fresh local Ray instance (never join another one on the machine); returns (ray, GCS address)."""
    ray = cluster.start(None, workers)
    return ray, ray.get_runtime_context().gcs_address


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise StageError(f"{path}: expected output file is missing")
    return json.loads(path.read_text())


def make_report(
    p: Preset, shards: dict[str, Path], runs: Path, evals: dict[str, Path], run: Runner, wall: float
) -> dict:
    """Stage 7: figures + report.md + summary.json under <runs>/report; returns the summary."""
    import numpy as np

    from jobs.report import markdown, plots
    from manifests.shards import load_shards
    from pipeline.storage import ShardReader

    out = runs / "report"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    figures = {}
    target = load_shards(shards["target"])
    test = target.split("split1", "test")
    shown = {}
    for rec in test:  # one test video per class, in class order
        shown.setdefault(rec.labels[0], rec)
    for label in sorted(shown)[:4]:
        rec = shown[label]
        with ShardReader(rec.shard_path) as reader:
            plots.stream_panel(
                reader,
                rec.group,
                out / f"panel_{rec.video_id}.png",
                title=f"{rec.video_id} ({target.labels[label]}): RGB, Flow, RGBF",
            )
        figures[f"Streams of {rec.video_id} ({target.labels[label]})"] = f"panel_{rec.video_id}.png"
    plots.save_colour_wheel(out / "flow_colour_key.png")
    figures["Flow colour key"] = "flow_colour_key.png"
    histories = {
        name: _read_json(runs / name / "metrics.json")["history"]
        for name in [f"{stage}-{s}" for s in TRAINED_STREAMS for stage in ("pretrain", "finetune")]
    }
    plots.plot_curves({k: v for k, v in histories.items() if k.startswith("pretrain")}, out / "curves_pretrain.png")
    plots.plot_curves({k: v for k, v in histories.items() if k.startswith("finetune")}, out / "curves_finetune.png")
    figures["Pretraining curves (pretrain set)"] = "curves_pretrain.png"
    figures["Finetuning curves (target set; validation = one held-out training group, selects best.pt)"] = (
        "curves_finetune.png"
    )
    m_rgb, m_rgbf = _read_json(evals["rgb"] / "metrics.json"), _read_json(evals["rgbf"] / "metrics.json")
    names = target.labels
    plots.plot_confusion(
        {
            f"RGB  top-1 {m_rgb['video']['top1']:.3f}": (np.array(m_rgb["video"]["confusion_matrix"]), names),
            f"RGBF top-1 {m_rgbf['video']['top1']:.3f}": (np.array(m_rgbf["video"]["confusion_matrix"]), names),
            f"RGB+RGBF top-1 {m_rgbf['fused']['top1']:.3f}": (np.array(m_rgbf["fused"]["confusion_matrix"]), names),
        },
        out / "confusion.png",
    )
    figures["Confusion matrices (target test split, video level)"] = "confusion.png"
    results = [
        {
            "model": p.model,
            "stream": label,
            "top1": m["top1"],
            "mean_class_accuracy": m["mean_class_accuracy"],
            "n": m["n"],
        }
        for label, m in (
            ("RGB", m_rgb["video"]),
            ("RGBF", m_rgbf["video"]),
            ("RGB+RGBF (mean of scores)", m_rgbf["fused"]),
        )
    ]
    pre = {s: histories[f"pretrain-{s}"][-1] for s in TRAINED_STREAMS}
    val = validation_numbers(runs)
    run.timings["report"] = time.perf_counter() - t0
    summary = {
        "title": f"{p.model} (width {p.width}) on the synthetic motion dataset",
        "description": (
            f"Pretrained on {len(load_shards(shards['pretrain']).labels)} pretrain classes "
            f"({', '.join(load_shards(shards['pretrain']).labels)}), then finetuned on {len(names)} target classes "
            f"({', '.join(names)}); split1 of the target set holds out whole groups (scenes) for testing. "
            f"Test protocol: {p.test_clips} clips x {p.test_crops} crops per video, scores averaged; "
            f"best.pt of each finetuning run, selected on the validation group (held out of split1's training "
            f"groups); the test videos are scored once, never used to select anything."
        ),
        "results": results,
        "validation": val,
        "pretrain_final": {
            s: {k: pre[s][k] for k in ("train_loss", "train_top1") if k in pre[s]} for s in TRAINED_STREAMS
        },
        "timings": {**run.timings, "total": time.perf_counter() - wall},
        "load_average": {"start": run.load_start, "end": list(os.getloadavg())},
        "settings": {
            **dataclasses.asdict(p),
            "shards": {k: str(v) for k, v in shards.items()},
            "train_videos": len(target.split("split1", "train")),
            "test_videos": len(test),
        },
        "figures": figures,
        "commands": run.commands,
    }
    markdown.write_report(out, summary)
    return summary


def validation_numbers(runs: Path) -> dict:
    """{stream: best validation video top-1, its epoch, the validation subset size} of the finetuning runs."""
    out = {}
    for s in TRAINED_STREAMS:
        val = _read_json(runs / f"finetune-{s}" / "metrics.json")["val"]
        out[s] = {
            "best_video_top1": val["best_video_top1"],
            "best_epoch": val["best_epoch"],
            "n_val": (val["subset"] or {}).get("n_val"),
            "groups": (val["subset"] or {}).get("groups"),
        }
    return out


def print_validation(val: dict) -> None:
    for s, v in val.items():
        top1 = "n/a" if v["best_video_top1"] is None else f"{100 * v['best_video_top1']:5.1f}%"
        print(
            f"  {s.upper():<28} validation video top-1 {top1} (best epoch {v['best_epoch']}, "
            f"{v['n_val']} videos of group(s) {', '.join(v['groups'] or [])})"
        )


def print_summary(summary: dict, report_dir: Path) -> None:
    print("\n== demo summary ==")
    print_validation(summary["validation"])
    for row in summary["results"]:
        print(f"  {row['stream']:<28} video top-1 {100 * row['top1']:5.1f}%  ({row['n']} test videos)")
    print(
        f"  wall time {summary['timings']['total']:.0f} s "
        f"({', '.join(f'{k} {v:.0f}s' for k, v in summary['timings'].items() if k != 'total')})"
    )
    load = summary["load_average"]
    print(
        f"  load average (1/5/15 min) at start {' '.join(f'{x:.2f}' for x in load['start'])}, "
        f"at end {' '.join(f'{x:.2f}' for x in load['end'])}"
    )
    print(f"  report: {report_dir / 'report.md'}")


@checks.cli("demo")
def main(argv: list[str] | None = None) -> int:
    ap = checks.parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/demo-run"), help="generated videos, manifests, shards")
    ap.add_argument("--runs", type=Path, default=Path("runs/demo"), help="checkpoints, evaluations, logs, report")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray instance")
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--finetune-epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None, help="training seed (default 0); the data stay the same")
    ap.add_argument(
        "--resume", action="store_true", help="continue (or skip, if finished) the training runs already in --runs"
    )
    ap.add_argument(
        "--validation-only",
        action="store_true",
        help="stop after finetuning and print the validation numbers (the test videos are not scored)",
    )
    a = ap.parse_args(argv)
    checks.positive_int("--workers", a.workers)
    checks.positive_int("--pretrain-epochs", a.pretrain_epochs, allow_none=True)
    checks.positive_int("--finetune-epochs", a.finetune_epochs, allow_none=True)
    checks.out_dir("--data", a.data)
    checks.out_dir("--runs", a.runs)
    p = PRESETS[a.preset]
    p = dataclasses.replace(
        p,
        **{
            k: v
            for k, v in (
                ("pretrain_epochs", a.pretrain_epochs),
                ("finetune_epochs", a.finetune_epochs),
                ("seed", a.seed),
            )
            if v is not None
        },
    )
    wall = time.perf_counter()
    ray, gcs = start_ray(a.workers)
    env = {**os.environ, "RAY_ADDRESS": gcs, "OMP_NUM_THREADS": str(a.workers)}
    run = Runner(a.runs / "logs", env)
    try:
        shards = prepare_data(run, p, a.data, a.workers)
    finally:
        ray.shutdown()
    evals = train_and_evaluate(run, p, shards, a.runs, a.validation_only, a.resume)
    if a.validation_only:
        print("\n== demo validation (test videos not scored) ==")
        print_validation(validation_numbers(a.runs))
        print(
            f"  wall time {time.perf_counter() - wall:.0f} s, load average at start "
            f"{' '.join(f'{x:.2f}' for x in run.load_start)}, at end "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        return 0
    summary = make_report(p, shards, a.runs, evals, run, wall)
    print_summary(summary, a.runs / "report")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StageError as e:
        print(f"[demo] error: {e}", file=sys.stderr)
        sys.exit(1)
