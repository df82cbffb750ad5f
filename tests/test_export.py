"""jobs.export: mmaction2 rawframes folders and file lists, read back and checked against the shards."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from jobs import export as export_job
from manifests.readers.rawframes import MARKER, list_name, parse_list, parse_video_list
from manifests.shards import load_shards
from pipeline.storage import ShardReader

from fixtures import synthetic_shards

FLAT = ["--layout", "flat"]  # the layout of earlier releases: <out>/<video_id>/, <split>_<subset>_rawframes.txt


def _read(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return synthetic_shards(
        root, num_videos=6, num_classes=3, frames=[5, 6, 7, 5, 6, 7], multilabel=True, height=24, width=32, test_every=3
    )


def test_rawframes_round_trip(shards, tmp_path, capsys):
    out = tmp_path / "rawframes"
    args = ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--jpeg-quality", "100", "--layout", "flat"]
    rc = export_job.main(args)
    assert rc == 0
    ds = load_shards(shards)
    worst, rgb_err = {"rgb": 0, "flow": 0}, []
    for rec in ds.records:
        d = out / rec.video_id
        imgs = sorted(d.glob("img_*.jpg"))
        fx, fy = sorted(d.glob("flow_x_*.jpg")), sorted(d.glob("flow_y_*.jpg"))
        assert [p.name for p in imgs] == [f"img_{k:05d}.jpg" for k in range(1, rec.n_rgb + 1)]  # from 1
        assert len(fx) == len(fy) == rec.n_flow == rec.n_rgb - 1
        with ShardReader(rec.shard_path) as r:
            rgb, flow = r.read(rec.group, "rgb"), r.read(rec.group, "flow")
        for k, p in enumerate(imgs):
            got = cv2.cvtColor(_read(p), cv2.COLOR_BGR2RGB)
            rgb_err.append(np.abs(got.astype(int) - rgb[k]))
        for k, (px, py) in enumerate(zip(fx, fy)):
            x, y = _read(px), _read(py)
            assert x.ndim == 2 and x.shape == flow.shape[1:3]  # grayscale planes
            err = max(np.abs(x.astype(int) - flow[k, ..., 0]).max(), np.abs(y.astype(int) - flow[k, ..., 1]).max())
            worst["flow"] = max(worst["flow"], int(err))
    # quality 100, measured on these noisy synthetic frames: flow planes (grayscale) max |error| 1-2 grey
    # levels; RGB mean 1.1, 99th percentile 7, max ~30 (OpenCV's 4:2:0 chroma subsampling at sharp edges)
    rgb_err = np.stack(rgb_err)
    assert worst["flow"] <= 2 and rgb_err.mean() < 2 and np.percentile(rgb_err, 99) <= 10, worst
    # file lists: one per split, subset and stream, mmaction2 rawframe format, multi-label ids
    by_id = {r.video_id: r for r in ds.records}
    for split in ("split1", "split2"):
        for subset in ("train", "test"):
            for stream in ("rgb", "flow"):
                rows = parse_list(out / list_name(split, subset, stream))
                want = sorted(v for v, r in by_id.items() if r.splits[split] == subset)
                assert [v for v, _, _ in rows] == want
                for v, n, labels in rows:
                    assert n == (by_id[v].n_rgb if stream == "rgb" else by_id[v].n_flow)
                    assert labels == by_id[v].labels
    assert any(len(r.labels) > 1 for r in ds.records)  # multi-label lines were exercised
    marker = json.loads((out / MARKER).read_text())
    assert marker["version_id"] == ds.meta.version_id
    assert marker["jpeg_quality"] == 100 and "video_codec" not in marker  # as given; the marker of earlier releases
    assert "6 videos exported" in capsys.readouterr().err


def test_rerun_resumes_and_foreign_dirs_are_refused(shards, tmp_path, capsys):
    out = tmp_path / "rf"
    args = ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--split", "split1", "--streams", "flow"]
    assert export_job.main([*args, *FLAT]) == 0
    victim = sorted(p for p in out.iterdir() if p.is_dir())[0]
    for p in victim.iterdir():
        p.unlink()
    victim.rmdir()
    (out / ".tmp-junk-1234").mkdir()  # a killed run's partial folder
    capsys.readouterr()
    assert export_job.main([*args, *FLAT]) == 0
    err = capsys.readouterr().err
    assert "1 videos exported, 5 done earlier" in err and not (out / ".tmp-junk-1234").exists()
    assert sorted((out / victim.name).glob("flow_x_*")) and not list((out / victim.name).glob("img_*"))
    # same dir, other options: refused; a non-empty foreign dir: refused; bad split / stream / format
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("x")
    cases = [
        (["--out", str(out), "--split", "split1", *FLAT], "--out"),
        (["--out", str(foreign)], "--out"),
        (["--out", str(tmp_path / "a"), "--split", "nope"], "--split"),
        (["--out", str(tmp_path / "b"), "--streams", "rgb,depth"], "--streams"),
        (["--out", str(tmp_path / "c"), "--format", "videos", "--streams", "rgb,flow"], "--streams"),
        (["--out", str(tmp_path / "e"), "--chunk", "0"], "--chunk"),
    ]
    for args, name in cases:
        capsys.readouterr()
        assert export_job.main(["--manifest", str(shards), "--workers", "0", *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], lines
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert export_job.main(["--manifest", str(tmp_path / "none"), "--out", str(tmp_path / "d")]) == 2


@pytest.mark.slow
def test_export_on_ray(shards, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    assert export_job.main(["--manifest", str(shards), "--out", str(out), "--workers", "2", "--chunk", "2"]) == 0
    local = tmp_path / "local"
    assert export_job.main(["--manifest", str(shards), "--out", str(local), "--workers", "0"]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    for p in out.rglob("*.jpg"):
        assert np.array_equal(_read(p), _read(local / p.relative_to(out)))
    # the videos format through Ray tasks: the same files, byte for byte (the encoder is deterministic)
    args = ["--manifest", str(shards), "--format", "videos", "--out"]
    assert export_job.main([*args, str(tmp_path / "ray_v"), "--workers", "2", "--chunk", "2"]) == 0
    assert export_job.main([*args, str(tmp_path / "local_v"), "--workers", "0"]) == 0
    ray_files = {p.relative_to(tmp_path / "ray_v"): p.read_bytes() for p in (tmp_path / "ray_v").rglob("*.*")}
    local_files = {p.relative_to(tmp_path / "local_v"): p.read_bytes() for p in (tmp_path / "local_v").rglob("*.*")}
    assert ray_files == local_files and sum(p.suffix == ".mp4" for p in ray_files) == 6


def test_ids_with_whitespace_get_mmaction2_safe_folders(tmp_path):
    from manifests.shards import VideoStreams, write_shard_dataset

    rgb = np.random.default_rng(0).integers(0, 255, (4, 16, 20, 3), dtype=np.uint8)
    vids = [
        VideoStreams(v, {"rgb": rgb, "flow": rgb[1:], "rgbf": rgb[:-1]}, (i,), {"split1": "train"})
        for i, v in enumerate(["v odd name", "v_odd_name", "plain"])
    ]
    shards = write_shard_dataset(tmp_path / "s", vids, ["a", "b", "c"])
    out = tmp_path / "rf"
    assert export_job.main(["--manifest", str(shards), "--out", str(out), "--workers", "0", *FLAT]) == 0
    rows = parse_list(out / list_name("split1", "train", "rgb"))
    dirs = {d: labels for d, _, labels in rows}
    assert set(dirs) == {p.name for p in out.iterdir() if p.is_dir()} and len(dirs) == 3
    assert dirs["v_odd_name"] == (1,) and dirs["plain"] == (2,)  # the ids without whitespace keep their name
    (odd,) = set(dirs) - {"v_odd_name", "plain"}
    assert odd.startswith("v_odd_name-") and dirs[odd] == (0,) and len(list((out / odd).glob("img_*.jpg"))) == 4


def test_windowed_videos_export_one_folder_per_window(tmp_path):
    """A video stored as temporal windows (extract --segments) gets w00, w01, ... subfolders and one list
    line per window, so an mmaction2 clip never crosses the gap between two windows."""
    from manifests.shards import VideoStreams, write_shard_dataset

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 16, 20, 3), dtype=np.uint8)  # windows of 4 and 5 frames
    flow = rng.integers(1, 256, size=(7, 16, 20, 3), dtype=np.uint8)  # 3 + 4 flows, none across the gap
    videos = [
        VideoStreams(
            "v_a", {"rgb": rgb, "flow": flow, "rgbf": flow}, (0,), {"split1": "train"}, windows=((0, 4), (20, 5))
        ),
        VideoStreams("v_b", {"rgb": rgb[:5], "flow": flow[:4], "rgbf": flow[:4]}, (1,), {"split1": "test"}),
    ]
    shards = write_shard_dataset(tmp_path / "shards", videos, ["c0", "c1"], codec="lzf")
    out = tmp_path / "rawframes"
    assert (
        export_job.main(
            ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--jpeg-quality", "100", *FLAT]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "v_a").iterdir()) == ["w00", "w01"]
    for sub, first, n in (("w00", 0, 4), ("w01", 4, 5)):
        imgs = sorted((out / "v_a" / sub).glob("img_*.jpg"))
        assert [p.name for p in imgs] == [f"img_{k:05d}.jpg" for k in range(1, n + 1)]
        assert len(list((out / "v_a" / sub).glob("flow_x_*.jpg"))) == n - 1
        fx = _read(out / "v_a" / sub / "flow_x_00001.jpg")  # the window's first flow, not the previous window's
        flow_first = flow[first - (0 if sub == "w00" else 1)]
        assert np.abs(fx.astype(int) - flow_first[..., 0]).max() <= 2
    assert len(list((out / "v_b").glob("img_*.jpg"))) == 5  # one run: the flat layout
    assert parse_list(out / list_name("split1", "train", "rgb")) == [("v_a/w00", 4, (0,)), ("v_a/w01", 5, (0,))]
    assert parse_list(out / list_name("split1", "train", "flow")) == [("v_a/w00", 3, (0,)), ("v_a/w01", 4, (0,))]
    assert parse_list(out / list_name("split1", "test", "rgb")) == [("v_b", 5, (1,))]


def kind_shards(
    root, kind: str = "ucf101", classes=("Walk", "Run", "Jump"), groups: int = 4, frames: int = 6, size=(24, 32)
):
    """A shard version that names its dataset kind like jobs.extract's do: records with UCF-101 ids and source
    paths ``<Class>/<id>.avi``, ``source_dir`` pointing at a source manifest whose ``source.dataset`` is ``kind``
    (only its version.json). Split1: groups 1-2 test (as UCF-101's split1 tests the first groups), the rest train;
    split2 the other way round. Frames ``size`` (H, W)."""
    import dataclasses

    from manifests.shards import VideoStreams, publish_shards, write_shard_dataset
    from manifests.versioning import VersionMeta

    rng = np.random.default_rng(0)
    vids = []
    for c, cls in enumerate(classes):
        for g in range(1, groups + 1):
            rgb = rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)
            test = g <= 2
            splits = {"split1": "test" if test else "train", "split2": "train" if test else "test"}
            vids.append(
                VideoStreams(f"v_{cls}_g{g:02d}_c01", {"rgb": rgb, "flow": rgb[1:], "rgbf": rgb[1:]}, (c,), splits)
            )
    base = load_shards(write_shard_dataset(root / "base", vids, list(classes)))
    src = root / "source" / "src0"
    src.mkdir(parents=True)
    meta = VersionMeta("src0", "source", 1, {"dataset": kind}, None, "")
    (src / "version.json").write_text(meta.to_json())
    recs = [dataclasses.replace(r, source_rel_path=f"{r.label_names[0]}/{r.video_id}.avi") for r in base.records]
    return publish_shards(
        root / "shards",
        f"{kind}0",
        sorted({r.shard_path for r in recs}),
        recs,
        [],
        list(classes),
        source={"source_dir": str(src), "source_version": "src0"},
        parent="src0",
        codec=base.meta.extra.get("codec"),
        flow_params={"preset": "accurate", "bound": 20.0},
    )


def test_mmaction2_layout_lists_carve_label_map_and_configs(tmp_path, capsys):
    from manifests.readers.clips import ClipDataset

    shards = kind_shards(tmp_path)
    out = tmp_path / "ucf101"
    assert export_job.main(["--manifest", str(shards), "--out", str(out), "--workers", "0", "--clip-len", "4"]) == 0
    ds = load_shards(shards)
    for r in ds.records:  # level 2, as mmaction2's build_rawframes.py --level 2 writes UCF-101
        folder = out / "rawframes" / r.label_names[0] / r.video_id
        assert len(list(folder.glob("img_*.jpg"))) == r.n_rgb and len(list(folder.glob("flow_y_*.jpg"))) == r.n_flow
    assert (out / "label_map.txt").read_text().splitlines() == ds.labels
    by_dir = {f"{r.label_names[0]}/{r.video_id}": r for r in ds.records}

    def ids(name):
        rows = parse_list(out / name)
        for d, n, labels in rows:
            r = by_dir[d]
            assert labels == r.labels and n == (r.n_flow if name.endswith("_flow.txt") else r.n_rgb)
        return {by_dir[d].video_id for d, _, _ in rows}

    for k, split in (("1", "split1"), ("2", "split2")):
        train = {r.video_id for r in ds.records if r.splits[split] == "train"}
        test = {r.video_id for r in ds.records if r.splits[split] == "test"}
        val = {
            r.video_id for r in ClipDataset(shards, split, "val", crop=16, val_fraction=0.1).records
        }  # the same carve
        assert val and val < train
        for suffix in ("rawframes", "flow"):
            assert ids(f"ucf101_train_split_{k}_{suffix}.txt") == train
            assert ids(f"ucf101_val_split_{k}_{suffix}.txt") == test  # mmaction2 names the test lists "val"
            assert ids(f"ucf101_heldout_split_{k}_{suffix}.txt") == val
            assert ids(f"ucf101_fit_split_{k}_{suffix}.txt") == train - val
        for stream in ("rgb", "flow"):
            text = (out / "configs" / f"ucf101_split_{k}_{stream}.py").read_text()
            assert (
                f"ucf101_fit_split_{k}_" in text and f"ucf101_heldout_split_{k}_" in text and "'num_classes': 3" in text
            )
            assert ("flow_{}_{:05d}.jpg" in text) == (stream == "flow") and "'clip_len': 4" in text
    marker = json.loads((out / MARKER).read_text())
    assert marker["layout"] == "ucf101" and marker["val_fraction"] == 0.1
    # a rerun resumes; --layout auto resolved to ucf101 matches the marker
    capsys.readouterr()
    assert export_job.main(["--manifest", str(shards), "--out", str(out), "--workers", "0", "--clip-len", "4"]) == 0
    assert "0 videos exported, 12 done earlier" in capsys.readouterr().err


def test_bad_layouts_crops_and_foreign_exports_are_refused(tmp_path, shards, capsys):
    ucf = kind_shards(tmp_path / "u")
    hmdb = kind_shards(tmp_path / "h", kind="hmdb51")
    done = tmp_path / "done"
    assert export_job.main(["--manifest", str(hmdb), "--out", str(done), "--workers", "0", "--streams", "rgb"]) == 0
    done_v = tmp_path / "done_videos"
    assert export_job.main(["--manifest", str(hmdb), "--out", str(done_v), "--workers", "0", "--format", "videos"]) == 0
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    cases = [
        ([str(ucf), "--layout", "hmdb51"], "--layout", "does not fit this version's dataset (ucf101)"),
        ([str(ucf), "--layout", "nested"], "--layout", "unknown layout"),
        ([str(shards), "--layout", "folder"], "--layout", "no class folder"),
        ([str(ucf), "--crop", "25"], "--crop", "does not fit the frames (24x32"),
        ([str(ucf), "--clip-len", "0"], "--clip-len", ">= 1"),
        ([str(ucf), "--val-fraction", "1"], "--val-fraction", "[0, 1)"),
        ([str(ucf), "--val-group-rule", "x"], "--val-group-rule", "unknown rule"),
        ([str(ucf), "--format", "avi"], "--format", "unknown format"),
        ([str(ucf), "--out", str(done)], "--out", "holds another export"),  # another version's export
        ([str(ucf), "--format", "videos", "--out", str(done_v)], "--out", "holds another export"),
        ([str(hmdb), "--format", "videos", "--out", str(done)], "--out", "holds another export"),  # rawframes
        ([str(ucf), "--format", "videos", "--layout", "hmdb51"], "--layout", "does not fit this version's dataset"),
        ([str(ucf), "--format", "videos", "--layout", "flat"], "--layout", "rawframes layout of earlier releases"),
        ([str(ucf), "--format", "videos", "--streams", "flow"], "--streams", "mmaction2 reads flow as rawframes"),
        ([str(ucf), "--format", "videos", "--video-codec", "vp9"], "--video-codec", "unknown codec"),
        ([str(ucf), "--video-codec", "h264-rgb"], "--video-codec", "--format videos only"),
        ([str(ucf), "--format", "videos", "--jpeg-quality", "90"], "--jpeg-quality", "rawframes only"),
        ([str(ucf), "--format", "videos", "--crop", "25"], "--crop", "does not fit the frames"),
    ]
    for args, name, why in cases:
        capsys.readouterr()
        out = ["--out", str(tmp_path / "new")] if "--out" not in args else []
        assert export_job.main(["--manifest", *args, *out, "--workers", "0"]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"export: error: {name}") and why in lines[0], lines
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before  # nothing written


MM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-mm" / "bin" / "python"  # make mmaction2-env


def _video_expect(version, out: Path) -> dict:
    """{videos list name: [[video file, frames, [labels], sha256 of the stored RGB frames]]} from the version:
    files as the ucf101 (``<Class>/<id>.mp4``) or ids (``<id>.mp4``) layout names them."""
    ds = load_shards(version)
    level2 = (out / "videos" / ds.records[0].label_names[0]).is_dir()
    digest = {}
    for r in ds.records:
        with ShardReader(r.shard_path) as reader:
            rgb = reader.read(r.group, "rgb")
        path = f"{r.label_names[0]}/{r.video_id}.mp4" if level2 else f"{r.video_id}.mp4"
        digest[path] = (r.n_rgb, r.labels, hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest())
    expect = {}
    for p in out.glob("*_videos.txt"):
        rows = parse_video_list(p)
        assert all(digest[v][1] == labels for v, labels in rows), p.name
        expect[p.name] = [[v, digest[v][0], list(labels), digest[v][2]] for v, labels in rows]
    return expect


@pytest.mark.slow
def test_mmaction2_reads_every_list_and_trains_on_the_config(tmp_path, shards):
    """mmaction2 1.2.0's own RawframeDataset / VideoDataset and transforms (in .venv-mm, which `make test`
    creates) read every list of four exports (rawframes and videos; UCF-101 layout, and a multi-label version
    in the ids layout) through the generated configs: every item loads, frame dirs or video files, frame
    counts and labels match, and decord (through the config's DecordInit) decodes every video to the stored
    frames bit for bit; mmengine's Runner then trains and tests the flow config and the videos config for
    one epoch."""
    if not MM_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{MM_PYTHON} missing: `make test` creates it (make mmaction2-env)")
        pytest.skip("no .venv-mm: run `make mmaction2-env`")
    ucf = kind_shards(tmp_path / "u", size=(24, 31))  # odd width: the videos keep the exact frame size
    exports = {
        "ucf101": (ucf, "rawframes", "ucf101_split_1_flow.py"),
        "multilabel": (shards, "rawframes", None),
        "ucf101-videos": (ucf, "videos", "ucf101_split_1_videos.py"),
        "multilabel-videos": (shards, "videos", None),
    }
    for name, (version, fmt, train) in exports.items():
        out = tmp_path / name
        args = ["--manifest", str(version), "--out", str(out), "--workers", "0", "--clip-len", "4", "--format", fmt]
        assert export_job.main(args) == 0
        if fmt == "videos":
            expect = _video_expect(version, out)
        else:
            lists = [p for p in out.glob("*.txt") if p.name != "label_map.txt"]
            expect = {p.name: [[d, n, list(labels), None] for d, n, labels in parse_list(p)] for p in lists}
        assert expect and all(expect.values())
        (tmp_path / f"{name}.json").write_text(json.dumps(expect))
        cmd = [
            str(MM_PYTHON),
            str(Path(__file__).parent / "mmaction2_check.py"),
            str(out),
            str(tmp_path / f"{name}.json"),
        ]
        if train:
            cmd += ["--train", str(out / "configs" / train)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert set(summary["lists"]) == set(expect) and summary["items"] == sum(len(v) for v in expect.values())
        assert (summary["test"] is not None) == bool(train)


def _decord_frames(path) -> np.ndarray:
    decord = pytest.importorskip("decord")  # what mmaction2's DecordInit / DecordDecode read videos with
    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def test_videos_round_trip_lists_label_map_configs_and_resume(tmp_path, capsys):
    """--format videos: one mp4 per video in mmaction2's video layout (odd frame width kept), decoded by decord
    to the stored RGB frames bit for bit (also at random indices, as DecordDecode reads them); VideoDataset
    lists for train / val / fit / heldout with the same videos as the rawframes lists, label map, configs."""
    shards = kind_shards(tmp_path, frames=30, size=(24, 31))
    out = tmp_path / "ucf101"
    args = ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--clip-len", "4", "--format", "videos"]
    assert export_job.main(args) == 0
    ds = load_shards(shards)
    rng = np.random.default_rng(0)
    for r in ds.records:
        path = out / "videos" / r.label_names[0] / f"{r.video_id}.mp4"
        with ShardReader(r.shard_path) as reader:
            rgb = reader.read(r.group, "rgb")
        got = _decord_frames(path)
        assert got.shape == rgb.shape == (30, 24, 31, 3) and np.array_equal(got, rgb), r.video_id
        import decord

        idx = sorted(rng.choice(30, 8, replace=False).tolist())
        assert np.array_equal(decord.VideoReader(str(path)).get_batch(idx).asnumpy(), rgb[idx])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".asym3d-export.json", "configs", "label_map.txt", "videos"]
        + [f"ucf101_{s}_split_{k}_videos.txt" for s in ("train", "val", "fit", "heldout") for k in (1, 2)]
    )
    assert (out / "label_map.txt").read_text().splitlines() == ds.labels
    rawframes = tmp_path / "rawframes"  # the same lists as the rawframes export, one video file per folder
    assert export_job.main(["--manifest", str(shards), "--out", str(rawframes), "--workers", "0"]) == 0
    for k in (1, 2):
        for subset in ("train", "val", "fit", "heldout"):
            rows = parse_video_list(out / f"ucf101_{subset}_split_{k}_videos.txt")
            frames = parse_list(rawframes / f"ucf101_{subset}_split_{k}_rawframes.txt")
            assert rows and [(f"{d}.mp4", labels) for d, _, labels in frames] == rows
        text = (out / "configs" / f"ucf101_split_{k}_videos.py").read_text()
        assert "'VideoDataset'" in text and "'DecordInit'" in text and "'DecordDecode'" in text
        assert f"ucf101_fit_split_{k}_videos.txt" in text and "RawFrameDecode" not in text
    assert not list((out / "configs").glob("*_flow.py"))  # mmaction2 reads flow only as rawframes
    marker = json.loads((out / MARKER).read_text())
    assert marker["video_codec"] == "h264-rgb" and marker["jpeg_quality"] == 95  # as before --jpeg-quality's check
    # a rerun resumes (a killed run's temporary file is removed); another codec into the same dir is refused
    victim = out / "videos" / ds.records[0].label_names[0] / f"{ds.records[0].video_id}.mp4"
    victim.unlink()
    (out / "videos" / ".tmp-junk-1234.mp4").write_bytes(b"x")
    capsys.readouterr()
    assert export_job.main(args) == 0
    assert "1 videos exported, 11 done earlier" in capsys.readouterr().err and victim.is_file()
    assert not (out / "videos" / ".tmp-junk-1234.mp4").exists()
    assert export_job.main([*args, "--video-codec", "h264-yuv444"]) == 2
    assert "holds another export" in capsys.readouterr().err


@pytest.mark.parametrize("codec, worst", [("h264-yuv444", 2), ("h264-crf10", None)])
def test_videos_other_codecs(tmp_path, codec, worst):
    """h264-yuv444 (lossless in YUV): only RGB <-> YUV rounding, at most 2 levels; h264-crf10 (lossy): the
    frame count and size are kept."""
    shards = kind_shards(tmp_path, classes=("Walk",), groups=2, frames=12, size=(24, 31))
    out = tmp_path / "v"
    args = ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--format", "videos"]
    assert export_job.main([*args, "--video-codec", codec]) == 0
    for r in load_shards(shards).records:
        with ShardReader(r.shard_path) as reader:
            rgb = reader.read(r.group, "rgb")
        got = _decord_frames(out / "videos" / "Walk" / f"{r.video_id}.mp4")
        assert got.shape == rgb.shape
        if worst is not None:
            assert np.abs(got.astype(int) - rgb).max() <= worst


def test_windowed_videos_export_one_file_per_window(tmp_path):
    """A video stored as temporal windows gets <video>/w00.mp4, w01.mp4 (each the window's frames) and one
    list line per window, as the rawframes export gets one folder per window."""
    from manifests.shards import VideoStreams, write_shard_dataset

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 16, 20, 3), dtype=np.uint8)  # windows of 4 and 5 frames
    flow = rng.integers(1, 256, size=(7, 16, 20, 3), dtype=np.uint8)
    videos = [
        VideoStreams(
            "v_a", {"rgb": rgb, "flow": flow, "rgbf": flow}, (0,), {"split1": "train"}, windows=((0, 4), (20, 5))
        ),
        VideoStreams("v_b", {"rgb": rgb[:5], "flow": flow[:4], "rgbf": flow[:4]}, (1,), {"split1": "test"}),
    ]
    shards = write_shard_dataset(tmp_path / "shards", videos, ["c0", "c1"], codec="lzf")
    out = tmp_path / "videos"
    args = ["--manifest", str(shards), "--out", str(out), "--workers", "0", "--format", "videos", "--val-fraction", "0"]
    assert export_job.main(args) == 0
    root = out / "videos"  # layout ids (no dataset kind recorded): level 1, <video_id>
    assert sorted(p.name for p in (root / "v_a").iterdir()) == ["w00.mp4", "w01.mp4"]
    assert np.array_equal(_decord_frames(root / "v_a" / "w00.mp4"), rgb[:4])
    assert np.array_equal(_decord_frames(root / "v_a" / "w01.mp4"), rgb[4:])
    assert np.array_equal(_decord_frames(root / "v_b.mp4"), rgb[:5])
    assert parse_video_list(out / "dataset_train_split_1_videos.txt") == [("v_a/w00.mp4", (0,)), ("v_a/w01.mp4", (0,))]
    assert parse_video_list(out / "dataset_val_split_1_videos.txt") == [("v_b.mp4", (1,))]
