"""Typed training configuration: dataclasses loaded from a YAML file, then ``key=value`` CLI overrides.

``load_config("jobs/configs/pretrain.yaml", ["data.manifest=data/shards/LATEST", "optim.lr=0.01"])``
Overrides use dotted keys; values are parsed as YAML scalars/lists (``optim.lr=1e-3``,
``data.mean=[0.5,0.5,0.5]``, ``model.overrides.width=0.25``) and checked against the field types.
Unknown keys and ill-typed values raise ``ConfigError`` naming the key and the source (file or CLI).
The resolved config is saved beside the checkpoints (``save_config``) and stored inside them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    manifest: str = ""  # shard dataset version: version dir, file in it, LATEST file or root with LATEST
    split: str = "split1"  # split column of the shard records; train on "train", evaluate on "test"
    val_fraction: float = 0.1  # of the split's training videos held out for validation (0 = none)
    val_group_rule: str = "auto"  # auto | none | ucf101 (hold out whole gXX groups); manifests.readers.validation
    val_seed: int = 0  # seed of the held-out draw (independent of the training seed)
    stream: str = "rgb"  # rgb | flow | rgbf
    clip_len: int = 16  # frames per clip (section 4.3: 16)
    crop: int = 112  # crop side (section 4.3: 112 from 128x171)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # on x/255, per channel
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    num_workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    max_clips_per_epoch: int = 0  # 0 = one clip per training video per epoch; else a random subset


@dataclass
class ModelConfig:
    name: str = "asym3dcnn"  # a name from models.list_models()
    overrides: dict[str, Any] = field(default_factory=dict)  # width, dropout, batch_norm, ... (frames/size
    # default to data.clip_len/data.crop)


@dataclass
class OptimConfig:
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    lr_step: int = 15  # epochs between lr drops
    lr_gamma: float = 0.2  # lr multiplier at each drop (divided by 5)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 1.0  # lr multiplier of the last FC (model.classifier); 10 when fine-tuning


@dataclass
class EvalConfig:
    """Validation on the held-out training videos (data.val_fraction) after training epochs; selects best.pt."""

    every: int = 1  # epochs between validations; 0 = never (best.pt is then the last epoch)
    num_clips: int = 5  # evenly spaced clips per video (full protocol: 25, in jobs.evaluate)
    num_crops: int = 1  # 1 (centre), 5 or 10 crops per clip
    max_videos: int = 0  # 0 = all test videos
    batch_size: int = 8  # clips per forward pass
    monitor_test: bool = False  # also score the split's test videos when validating: logged and plotted as
    # "monitoring" (test_* keys), never used to select anything


@dataclass
class TrainConfig:
    out_dir: str = "runs/train"
    init_from: str = ""  # checkpoint to fine-tune from (weights only; classifier replaced if needed)
    seed: int = 0
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    deterministic: bool = True  # torch.use_deterministic_algorithms + no cudnn benchmark
    loss: str = "auto"  # auto (bce if any training video has several labels, else ce) | ce | bce
    workers: int = 0  # Ray Train workers (DDP); 0 = a single process without Ray
    use_gpu: bool = False  # Ray Train workers each take a GPU
    log_every: int = 20  # steps between log lines
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {p} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> nested dict ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML)."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        value = yaml.safe_load(raw) if raw != "" else ""
        _set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults <- YAML file <- CLI overrides, validated into a TrainConfig."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        _build(TrainConfig, loaded, str(path))  # report file errors against the file
        tree = loaded
    tree = _merge(tree, parse_overrides(list(overrides)))
    return config_from_dict(tree, where="config" if not overrides else "config (with CLI overrides)")


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    cfg = _build(TrainConfig, data, "")
    _validate(cfg, where)
    return cfg


def _validate(cfg: TrainConfig, where: str) -> None:
    checks = [
        (cfg.data.stream in ("rgb", "flow", "rgbf"), f"data.stream must be rgb, flow or rgbf, got {cfg.data.stream!r}"),
        (cfg.loss in ("auto", "ce", "bce"), f"loss must be auto, ce or bce, got {cfg.loss!r}"),
        (cfg.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {cfg.device!r}"),
        (len(cfg.data.mean) == 3 and len(cfg.data.std) == 3, "data.mean and data.std need 3 values"),
        (all(s > 0 for s in cfg.data.std), "data.std values must be > 0"),
        (cfg.data.clip_len >= 1 and cfg.data.crop >= 1, "data.clip_len and data.crop must be >= 1"),
        (cfg.optim.epochs >= 1 and cfg.optim.batch_size >= 1, "optim.epochs and optim.batch_size must be >= 1"),
        (cfg.optim.lr > 0 and cfg.optim.lr_step >= 1, "optim.lr must be > 0 and optim.lr_step >= 1"),
        (cfg.eval.num_crops in (1, 5, 10), "eval.num_crops must be 1, 5 or 10"),
        (0 <= cfg.data.val_fraction < 1, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}"),
        (
            cfg.data.val_group_rule in ("auto", "none", "ucf101"),
            f"data.val_group_rule must be auto, none or ucf101, got {cfg.data.val_group_rule!r}",
        ),
        (cfg.workers >= 0 and cfg.data.num_workers >= 0, "workers and data.num_workers must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}: {msg}")


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``load_config``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
