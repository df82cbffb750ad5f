"""The embedded demo dataset: determinism, UCF-101 layout and split files, frame counts, motion sanity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from jobs import make_demo_data
from jobs.demokit import synth

SIZE = (48, 64)


def _mean_flow(frames: np.ndarray) -> np.ndarray:
    """(T-1, H, W, 2) Farneback flow between consecutive frames."""
    g = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0) for a, b in zip(g[:-1], g[1:])])


def _moving_mask(flow: np.ndarray) -> np.ndarray:
    mag = np.linalg.norm(flow, axis=-1)
    return mag > max(0.3, np.percentile(mag, 80))


def _decoded(path: Path) -> np.ndarray:
    cap, out = cv2.VideoCapture(str(path)), []
    ok, f = cap.read()
    while ok:
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        ok, f = cap.read()
    cap.release()
    return np.stack(out)


def test_render_is_deterministic_and_seed_dependent():
    a = synth.render_video("RotateCW", seed=3, group=2, clip=1, frames=12, size=SIZE)
    b = synth.render_video("RotateCW", seed=3, group=2, clip=1, frames=12, size=SIZE)
    c = synth.render_video("RotateCW", seed=4, group=2, clip=1, frames=12, size=SIZE)
    assert a.shape == (12, *SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_group_shares_appearance_clips_differ_in_motion():
    c1 = synth.render_video("Still", seed=0, group=1, clip=1, frames=4, size=SIZE, shake_px=0)
    c2 = synth.render_video("Still", seed=0, group=1, clip=2, frames=4, size=SIZE, shake_px=0)
    g2 = synth.render_video("Still", seed=0, group=2, clip=1, frames=4, size=SIZE, shake_px=0)
    same_scene = np.abs(c1[0].astype(int) - c2[0]).mean()
    other_scene = np.abs(c1[0].astype(int) - g2[0]).mean()
    assert same_scene < other_scene


@pytest.mark.parametrize(
    "name, axis, sign", [("MoveRight", 0, 1), ("MoveLeft", 0, -1), ("MoveUp", 1, -1), ("MoveDown", 1, 1)]
)
def test_translation_classes_flow_points_their_way(name, axis, sign):
    means = []  # textures such as stripes bias a single clip's flow sideways (aperture problem): average 3
    for group in (1, 2, 3):
        flow = _mean_flow(synth.render_video(name, seed=0, group=group, frames=10, size=SIZE))
        means.append(flow[_moving_mask(flow)].mean(0))
        assert sign * means[-1][axis] > 0.5, (name, group, means[-1])
    mean = np.mean(means, 0)
    assert abs(mean[axis]) > 2 * abs(mean[1 - axis]), (name, mean)


def _curl_div(flow: np.ndarray) -> tuple[float, float]:
    """Mean curl (clockwise positive, image y down) and divergence of the flow about the moving region's centre."""
    mask = _moving_mask(flow)
    t, y, x = np.nonzero(mask)
    cy, cx = y.mean(), x.mean()
    rx, ry = x - cx, y - cy
    u, v = flow[t, y, x, 0], flow[t, y, x, 1]
    return float((rx * v - ry * u).mean()), float((rx * u + ry * v).mean())


@pytest.mark.parametrize(
    "name, curl_sign, div_sign", [("RotateCW", 1, 0), ("RotateCCW", -1, 0), ("ZoomIn", 0, 1), ("ZoomOut", 0, -1)]
)
def test_rotation_and_zoom_classes(name, curl_sign, div_sign):
    curl, div = _curl_div(_mean_flow(synth.render_video(name, seed=1, group=1, frames=10, size=SIZE)))
    if curl_sign:
        assert curl_sign * curl > 2 * abs(div), (name, curl, div)
    if div_sign:
        assert div_sign * div > 2 * abs(curl), (name, curl, div)


def test_mirror_classes():
    assert synth.mirror_class("MoveRight") == "MoveLeft" and synth.mirror_class("RotateCCW") == "RotateCW"
    assert all(synth.flip_invariant(n) for n in synth.class_names("target", 8))
    assert all(synth.flip_invariant(n) for n in synth.PRETRAIN_CLASSES)
    # a mirrored MoveRight clip moves like MoveLeft
    flow = _mean_flow(synth.render_video("MoveRight", seed=0, group=2, frames=8, size=SIZE)[:, :, ::-1])
    assert flow[_moving_mask(flow)][:, 0].mean() < -0.5


def _flows(name: str) -> list[np.ndarray]:
    """Farneback flow of a clip without camera shake, in two scenes."""
    return [_mean_flow(synth.render_video(name, seed=0, group=g, frames=12, size=SIZE, shake_px=0)) for g in (1, 2)]


@pytest.mark.parametrize("name", [n for n in synth.CLASSES if n != "Still"])
def test_every_class_moves(name):
    # the same (group, clip) gives every class the same scene and object: only the motion differs
    speeds = [np.linalg.norm(f, axis=-1)[_moving_mask(f)].mean() for f in _flows(name)]
    assert min(speeds) > 0.35, (name, speeds)


def test_still_does_not_move_without_camera_shake():
    assert max(np.linalg.norm(f, axis=-1).max() for f in _flows("Still")) < 0.3


def test_class_sets_are_disjoint_and_bad_names_are_rejected():
    assert not set(synth.TARGET_CLASSES) & set(synth.PRETRAIN_CLASSES)
    with pytest.raises(ValueError, match="Jump"):
        synth.render_video("Jump")
    with pytest.raises(ValueError, match="classes=99"):
        synth.class_names("target", 99)


def _dataset(root: Path, **kw) -> dict:
    args = dict(seed=5, classes=3, videos_per_class=6, clips_per_group=2, frames=9, size=SIZE)
    return make_demo_data.make_dataset(root, **{**args, **kw})


def test_layout_split_files_and_frame_counts(tmp_path):
    s = _dataset(tmp_path)
    names = s["classes"]
    assert names == synth.class_names("target", 3) and s["groups"] == 3
    videos = sorted(p.relative_to(tmp_path / "videos").as_posix() for p in (tmp_path / "videos").rglob("*.mp4"))
    assert len(videos) == 18
    assert "MoveUp/v_MoveUp_g03_c02.mp4" in videos
    ann = tmp_path / "annotations"
    raw = (ann / "classInd.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 3 and raw.count(b"\n") == 3
    assert raw.decode().splitlines() == [f"{i} {n}" for i, n in enumerate(names, 1)]
    for k in (1, 2, 3):
        train_raw = (ann / f"trainlist{k:02d}.txt").read_bytes()
        test_raw = (ann / f"testlist{k:02d}.txt").read_bytes()
        assert train_raw.count(b"\r\n") == train_raw.count(b"\n") > 0
        assert test_raw.count(b"\r\n") == test_raw.count(b"\n") > 0
        train = [line.split(" ") for line in train_raw.decode().splitlines()]
        test = test_raw.decode().splitlines()
        assert all(len(t) == 2 and int(t[1]) == names.index(t[0].split("/")[0]) + 1 for t in train)
        assert all(" " not in t for t in test)
        assert sorted([t[0] for t in train] + test) == videos  # a partition of the videos
        test_groups = {t.split("_g")[1][:2] for t in test}
        train_groups = {t[0].split("_g")[1][:2] for t in train}
        assert test_groups and not test_groups & train_groups  # split by group, like UCF-101
    first = _decoded(tmp_path / "videos" / videos[0])
    assert first.shape == (9, *SIZE, 3)
    # lossy codec, but close to the rendered frames
    cls, rest = videos[0].split("/")
    g, c = int(rest.split("_g")[1][:2]), int(rest.split("_c")[1][:2])
    ref = synth.render_video(cls, seed=5, group=g, clip=c, frames=9, size=SIZE)
    assert np.abs(first.astype(int) - ref).mean() < 12


def test_encoded_bytes_are_deterministic(tmp_path):
    def digests(root):
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    _dataset(tmp_path / "a", classes=2, videos_per_class=4)
    _dataset(tmp_path / "b", classes=2, videos_per_class=4)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")


def test_decoded_video_keeps_motion_direction(tmp_path):
    _dataset(tmp_path, classes=1, videos_per_class=4, frames=10)  # class 1 is MoveUp
    flow = _mean_flow(_decoded(tmp_path / "videos/MoveUp/v_MoveUp_g01_c01.mp4"))
    assert flow[_moving_mask(flow)][:, 1].mean() < -0.5


@pytest.mark.parametrize(
    "kw, match", [({"size": (48, 63)}, "even"), ({"videos_per_class": 2}, "2 groups"), ({"ext": ".mkv"}, "ext")]
)
def test_bad_arguments_are_named(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _dataset(tmp_path, **kw)


def test_cli_writes_dataset(tmp_path):
    rc = make_demo_data.main(
        [
            "--out",
            str(tmp_path),
            "--classes",
            "2",
            "--videos-per-class",
            "4",
            "--clips-per-group",
            "2",
            "--frames",
            "6",
            "--size",
            "32",
            "48",
        ]
    )
    assert rc == 0
    assert len(list((tmp_path / "videos").rglob("*.mp4"))) == 8
    assert (tmp_path / "synth.json").is_file()


def test_write_video_round_trip_and_errors(tmp_path):
    from jobs.demokit.encode import write_video
    from pipeline.decode import decode_video

    frames = synth.render_video("MoveUp", frames=6, size=(32, 48))
    for ext in (".mp4", ".avi"):
        path = write_video(tmp_path / f"clip{ext}", frames)
        back = decode_video(path, size=(32, 48))
        assert back.shape == frames.shape
        assert np.abs(back.astype(int) - frames.astype(int)).mean() < 12  # lossy, but the same picture
    with pytest.raises(ValueError, match=r"clip\.mkv: unsupported container"):
        write_video(tmp_path / "clip.mkv", frames)
    assert not (tmp_path / "clip.mkv").exists()
