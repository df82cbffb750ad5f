"""Run by tests/test_mmaction2.py with the mmaction2 virtualenv's Python (never imports this project):

    python tests/mmaction2_check.py EXPORT_DIR EXPECT_JSON [--train CONFIG]

Loads every config in EXPORT_DIR/configs with mmengine's ``Config.fromfile`` and builds each of its dataloaders'
datasets with mmaction2's own registry (``RawframeDataset`` or ``VideoDataset`` and their transforms,
unmodified); reads every other list in EXPORT_DIR with the dataset and test pipeline of a config of the same
kind (``*_rawframes.txt``: ``*_rgb.py``, ``*_flow.txt``: ``*_flow.py``, ``*_videos.txt``: ``*_videos.py``);
loads every item and compares frame dirs (video files), frame counts and labels with EXPECT_JSON ({list file
name: [[frame_dir or video file, frames, [labels], sha256 or null], ...]}). A video's frame count is what the
pipeline's own ``DecordInit`` reports; with a sha256 (of the stored RGB frames, uint8 (T, H, W, 3) bytes) the
frames decord decodes through that ``DecordInit`` must hash to it: the export is bit-exact in mmaction2.
``--train CONFIG`` then runs mmengine's Runner on that config for one epoch (model included). Prints one
summary line as JSON; exits 1 on the first mismatch.

The mmaction2 1.2.0 wheel lacks ``mmaction.models.localizers.drn`` (upstream issue #2714), so
``import mmaction.models`` fails; this script puts an empty stand-in module in ``sys.modules`` before the
import (the workaround docs/ecosystem.md describes); nothing on disk is changed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np


def stub_drn() -> None:
    for name in ("mmaction.models.localizers.drn", "mmaction.models.localizers.drn.drn"):
        mod = types.ModuleType(name)
        mod.__path__ = []  # a package, so the submodule import resolves
        mod.DRN = None
        sys.modules[name] = mod


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("export", type=Path)
    ap.add_argument("expect", type=Path)
    ap.add_argument("--train", default=None)
    a = ap.parse_args()
    stub_drn()
    import mmaction.datasets  # noqa: F401  registers RawframeDataset and the transforms
    from mmaction.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope("mmaction")
    expect = json.loads(a.expect.read_text())
    seen: dict[str, int] = {}

    def check(ds_cfg: dict, list_name: str) -> None:
        ds = DATASETS.build(ds_cfg)
        want = expect[list_name]
        assert len(ds) == len(want), (list_name, len(ds), len(want))
        videos = ds_cfg["type"] == "VideoDataset"
        for i, (folder, frames, labels, digest) in enumerate(want):
            info = ds.get_data_info(i)
            if videos:
                assert info["filename"] == str(Path(ds_cfg["data_prefix"]["video"]) / folder), (list_name, info)
                init = ds.pipeline.transforms[0]  # the config's DecordInit
                assert type(init).__name__ == "DecordInit", init
                opened = init(copy.deepcopy(info))
                assert opened["total_frames"] == frames, (list_name, folder, opened["total_frames"], frames)
                if digest is not None:
                    got = opened["video_reader"].get_batch(list(range(frames))).asnumpy()
                    assert hashlib.sha256(got.tobytes()).hexdigest() == digest, (list_name, folder, got.shape)
            else:
                assert info["frame_dir"] == str(Path(ds_cfg["data_prefix"]["img"]) / folder), (list_name, info)
                assert info["total_frames"] == frames, (list_name, folder, info["total_frames"], frames)
            got = info["label"]
            # multi_class: a one-hot torch tensor of num_classes; else the int label
            got = [int(j) for j in np.flatnonzero(np.asarray(got))] if getattr(got, "ndim", 0) else [int(got)]
            assert got == sorted(labels), (list_name, folder, got, labels)
            item = ds[i]  # the whole pipeline: sample, decode the JPEGs or the video, crop, format, pack
            assert item["inputs"].ndim == 5, (list_name, folder, tuple(item["inputs"].shape))
        seen[list_name] = len(ds)

    configs = sorted((a.export / "configs").glob("*.py"))
    assert configs, "no configs"
    for path in configs:
        cfg = Config.fromfile(str(path))
        for mode in ("train", "val", "test"):
            loader = cfg.get(f"{mode}_dataloader")
            if loader:
                check(loader["dataset"], Path(loader["dataset"]["ann_file"]).name)
    kinds = {"rawframes": "rgb", "flow": "flow", "videos": "videos"}  # list suffix -> config suffix
    for lst in sorted(set(expect) - set(seen)):  # lists no config uses: read with a config's test pipeline
        kind = kinds[Path(lst).stem.rsplit("_", 1)[-1]]
        cfg = Config.fromfile(str(next(p for p in configs if p.stem.endswith(kind))))
        ds_cfg = copy.deepcopy(cfg.test_dataloader["dataset"])
        ds_cfg["ann_file"] = str(a.export / lst)
        check(ds_cfg, lst)
    trained = None
    if a.train:
        import mmaction.models  # noqa: F401
        from mmengine.runner import Runner

        cfg = Config.fromfile(a.train)
        cfg.work_dir = str(a.export / "work_dir")
        cfg.train_cfg.max_epochs = 1
        for mode in ("train", "val", "test"):
            if cfg.get(f"{mode}_dataloader"):
                cfg[f"{mode}_dataloader"].update(num_workers=0, persistent_workers=False)
        runner = Runner.from_cfg(cfg)
        runner.train()
        trained = runner.test()
    print(json.dumps({"lists": seen, "items": sum(seen.values()), "configs": len(configs), "test": trained}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
