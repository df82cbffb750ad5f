"""mmaction2 config files for a rawframes or videos export (written by jobs.export beside its file lists).

``config_text(spec) -> str``: one self-contained mmaction2 1.x config (mmengine 0.10 syntax, no ``_base_``, so
it needs no mmaction2 source checkout) per split and stream, accepted unchanged by mmaction2's
``tools/train.py`` / ``tools/test.py``. What it holds, and where it comes from:

* dataset: ``RawframeDataset`` over the export's lists, ``data_prefix`` the export's ``rawframes/`` folder,
  paths relative to the config file (mmengine's ``{{ fileDirname }}``), so the export can be moved whole;
  flow: ``modality='Flow'``, ``filename_tmpl='flow_{}_{:05d}.jpg'`` (mmaction2 formats ``x`` / ``y`` into it);
  a multi-label version (FCVID): ``multi_class=True, num_classes=K``. The videos format: ``VideoDataset`` over
  the ``videos/`` folder (``data_prefix=dict(video=...)``), as mmaction2's UCF-101 video configs read it.
* dataloaders: train = the split's training videos minus the held-out subset (``fit`` list), val = the
  held-out subset (``heldout``: settings are chosen on it, never on the test videos), test = the split's test
  videos (mmaction2's ``val`` list). Without a held-out subset (``--val-fraction 0``) there is no validation
  loop and train reads the ``train`` list.
* pipelines as mmaction2's own UCF-101 config writes them (``configs/recognition/c3d/..._ucf101-rgb.py``:
  ``SampleFrames`` -> decode -> ``RandomCrop`` + ``Flip`` for training, ``CenterCrop`` for val / test,
  ``FormatShape('NCTHW')``, ``PackActionInputs``), without its ``Resize``: the frames are stored at the
  version's extraction size, and the crop must fit it (checked by jobs.export). Decoding: ``RawFrameDecode``
  for rawframes, ``DecordInit`` before and ``DecordDecode`` after ``SampleFrames`` for videos (the same
  config's video pipeline).
* preprocessor: ``ActionDataPreprocessor``, RGB mean / std of ImageNet in 0..255 (mmaction2's RGB configs), flow
  mean = std = 128 per plane (its flow configs; the flow images map 0 px to 128).
* model: a small ``Recognizer3D`` (``ResNet3d`` depth 18, ``base_channels`` 16, no pretrained weights,
  ``I3DHead`` with ``num_classes``); replace ``model`` with your own.
* the rest of mmaction2's ``_base_/default_runtime.py`` (hooks, env, logging), SGD, a step schedule.
"""

from __future__ import annotations

import dataclasses
import pprint

RGB_MEAN, RGB_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]  # mmaction2's RGB configs
FLOW_MEAN, FLOW_STD = [128.0, 128.0], [128.0, 128.0]  # mmaction2's flow configs
RUNTIME = """default_scope = 'mmaction'
default_hooks = dict(
    runtime_info=dict(type='RuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20, ignore_last=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    sync_buffers=dict(type='SyncBuffersHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ActionVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
"""


@dataclasses.dataclass(frozen=True)
class ConfigSpec:
    version_id: str
    dataset: str  # list prefix
    split: str  # split name (split1)
    stream: str  # rgb | flow
    lists: dict[str, str]  # train | val | test -> list file name (beside the configs/ folder); val may be absent
    num_classes: int
    multilabel: bool
    clip_len: int
    crop: int
    frames_dir: str = "rawframes"
    format: str = "rawframes"  # rawframes | videos
    batch_size: int = 8
    epochs: int = 45
    lr: float = 0.01
    test_clips: int = 10


def _pipeline(spec: ConfigSpec, mode: str) -> list[dict]:
    clips = {"train": 1, "val": 1, "test": spec.test_clips}[mode]
    sample = dict(type="SampleFrames", clip_len=spec.clip_len, frame_interval=1, num_clips=clips)
    if mode != "train":
        sample["test_mode"] = True
    crops = (
        [dict(type="RandomCrop", size=spec.crop), dict(type="Flip", flip_ratio=0.5)]
        if mode == "train"
        else [dict(type="CenterCrop", crop_size=spec.crop)]
    )
    if spec.format == "videos":
        decode = [dict(type="DecordInit", io_backend="disk"), sample, dict(type="DecordDecode")]
    else:
        decode = [sample, dict(type="RawFrameDecode", io_backend="disk")]
    return [
        *decode,
        *crops,
        dict(type="FormatShape", input_format="NCTHW"),
        dict(type="PackActionInputs"),
    ]


def _dataloader(spec: ConfigSpec, mode: str) -> dict:
    videos = spec.format == "videos"
    dataset = dict(
        type="VideoDataset" if videos else "RawframeDataset",
        ann_file=f"{{{{ fileDirname }}}}/../{spec.lists[mode]}",
        data_prefix={"video" if videos else "img": f"{{{{ fileDirname }}}}/../{spec.frames_dir}"},
        pipeline=_pipeline(spec, mode),
    )
    if spec.stream == "flow":
        dataset.update(modality="Flow", filename_tmpl="flow_{}_{:05d}.jpg")
    elif not videos:  # a video has no file template (its frames count from 0, VideoDataset's start_index)
        dataset.update(filename_tmpl="img_{:05d}.jpg")
    if spec.multilabel:
        dataset.update(multi_class=True, num_classes=spec.num_classes)
    if mode != "train":
        dataset["test_mode"] = True
    return dict(
        batch_size=spec.batch_size if mode != "test" else 1,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type="DefaultSampler", shuffle=mode == "train"),
        dataset=dataset,
    )


def config_text(spec: ConfigSpec) -> str:
    """The config file's text (module docstring)."""
    flow = spec.stream == "flow"
    head = dict(type="I3DHead", num_classes=spec.num_classes, in_channels=128, spatial_type="avg", dropout_ratio=0.5)
    if spec.multilabel:
        head.update(multi_class=True, loss_cls=dict(type="BCELossWithLogits"), average_clips="score")
    else:
        head.update(average_clips="prob")
    model = dict(
        type="Recognizer3D",
        backbone=dict(
            type="ResNet3d",
            depth=18,
            base_channels=16,
            pretrained=None,
            pretrained2d=False,
            in_channels=2 if flow else 3,
            conv1_kernel=(3, 7, 7),
            inflate=(1, 1, 1, 1),
        ),
        cls_head=head,
        data_preprocessor=dict(
            type="ActionDataPreprocessor",
            mean=FLOW_MEAN if flow else RGB_MEAN,
            std=FLOW_STD if flow else RGB_STD,
            format_shape="NCTHW",
        ),
    )
    metric = (
        dict(type="AccMetric", metric_list=("mean_average_precision",)) if spec.multilabel else dict(type="AccMetric")
    )
    has_val = "val" in spec.lists
    parts = {
        "model": model,
        "train_dataloader": _dataloader(spec, "train"),
        "val_dataloader": _dataloader(spec, "val") if has_val else None,
        "test_dataloader": _dataloader(spec, "test"),
        "val_evaluator": metric if has_val else None,
        "test_evaluator": metric,
        "train_cfg": dict(
            type="EpochBasedTrainLoop", max_epochs=spec.epochs, val_begin=1, val_interval=1 if has_val else 10**9
        ),
        "val_cfg": dict(type="ValLoop") if has_val else None,
        "test_cfg": dict(type="TestLoop"),
        "optim_wrapper": dict(
            optimizer=dict(type="SGD", lr=spec.lr, momentum=0.9, weight_decay=5e-4),
            clip_grad=dict(max_norm=40, norm_type=2),
        ),
        "param_scheduler": [
            dict(type="MultiStepLR", begin=0, end=spec.epochs, by_epoch=True, milestones=[20, 40], gamma=0.1)
        ],
        "auto_scale_lr": dict(enable=False, base_batch_size=spec.batch_size),
    }
    lines = [
        f"# mmaction2 config written by jobs.export for shard version {spec.version_id}: {spec.dataset} {spec.split},",
        f"# {spec.stream}, {spec.num_classes} classes. Run: python tools/train.py THIS_FILE (mmaction2 1.2.0).",
        "# Paths are relative to this file ({{ fileDirname }}); replace `model` with your own network.",
        RUNTIME,
    ]
    lines += [f"{k} = {pprint.pformat(v, width=100, sort_dicts=False)}" for k, v in parts.items()]
    return "\n".join(lines) + "\n"
