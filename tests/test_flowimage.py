"""Flow images (section 3.4), .flo files and the Middlebury colour wheel."""

import cv2
import numpy as np
import pytest

from pipeline import clips
from pipeline.flowimage import (
    color_wheel,
    flow_to_color,
    flow_to_image,
    image_to_flow,
    read_flo,
    write_color_png,
    write_flo,
)


def test_flow_image_mapping_and_round_trip():
    rng = np.random.default_rng(0)
    flow = rng.uniform(-25, 25, size=(3, 6, 7, 2)).astype(np.float32)
    img = flow_to_image(flow, bound=20)
    assert img.shape == (3, 6, 7, 3) and img.dtype == np.uint8
    back = image_to_flow(img, bound=20)
    assert back.shape == flow.shape and back.dtype == np.float32
    step = 20 / 127
    assert np.abs(back - np.clip(flow, -20, 20)).max() <= step / 2 + 1e-5  # half a quantisation step
    # fixed points of the mapping: -bound -> 1, +bound -> 255, 0 -> 128; beyond bound clips
    f = np.array([[[-20.0, 20.0], [0.0, 0.0], [-100.0, 100.0], [3.0, 4.0]]], np.float32)  # (1, 4, 2)
    im = flow_to_image(f, bound=20)
    assert im[0, 0].tolist() == [1, 255, 255]
    assert im[0, 1].tolist() == [128, 128, 0]
    assert im[0, 2].tolist() == [1, 255, 255]
    assert im[0, 3, 2] == round(5 / 20 * 255)  # magnitude channel: |w| / bound, saturating
    assert flow_to_image(f[None]).shape == (1, 1, 4, 3)
    assert image_to_flow(np.zeros((1, 1, 3), np.uint8), bound=20).tolist() == [[[-20.0, -20.0]]]  # 0 clips


def test_flow_image_exact_zero_and_flip_symmetry():
    zero = flow_to_image(np.zeros((2, 3, 2), np.float32), bound=8)
    assert (zero[..., :2] == 128).all()
    assert (image_to_flow(zero, bound=8) == 0).all()  # no half-step bias
    # every level and the half-way points between levels (where rounding ties are)
    u = np.concatenate([np.linspace(-9, 9, 2001), (np.arange(-127, 127) + 0.5) * 8 / 127]).astype(np.float32)
    f = np.stack([u, u[::-1]], -1)[None]  # (1, N, 2)
    q = flow_to_image(f, bound=8)[..., :2].astype(int)
    q_neg = flow_to_image(-f, bound=8)[..., :2].astype(int)
    assert ((q + q_neg) == 256).all() and q.min() >= 1 and q.max() <= 255
    # the clip-level flip (columns mirrored, channel 0 -> 256 - q) equals encoding the mirrored flow
    rng = np.random.default_rng(1)
    field = rng.uniform(-10, 10, (4, 6, 6, 2)).astype(np.float32)  # (T, H, W, 2)
    mirrored = field[:, :, ::-1] * np.array([-1, 1], np.float32)
    flipped = clips.crop(flow_to_image(field, bound=8), 0, 0, 6, flip=True, flow=True)
    np.testing.assert_array_equal(flipped[..., :2], flow_to_image(mirrored, bound=8)[..., :2])
    np.testing.assert_array_equal(
        image_to_flow(np.ascontiguousarray(flipped), bound=8)[..., 0],
        -image_to_flow(flow_to_image(field, bound=8), bound=8)[:, :, ::-1, 0],
    )


def test_flow_image_bad_input():
    with pytest.raises(ValueError, match="shape"):
        flow_to_image(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        flow_to_image(np.full((4, 5, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="floating"):
        flow_to_image(np.zeros((4, 5, 2), np.int32))
    with pytest.raises(ValueError, match="bound"):
        flow_to_image(np.zeros((4, 5, 2), np.float32), bound=0)
    with pytest.raises(ValueError, match="uint8"):
        image_to_flow(np.zeros((4, 5, 3), np.float32))


def test_flo_round_trip_and_layout(tmp_path):
    flow = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2) - 5.5
    path = write_flo(tmp_path / "a.flo", flow)
    raw = path.read_bytes()
    assert np.frombuffer(raw[:4], "<f4")[0] == np.float32(202021.25)
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [4, 3]  # width, then height
    assert np.frombuffer(raw[12:20], "<f4").tolist() == [flow[0, 0, 0], flow[0, 0, 1]]  # u, v interleaved
    assert np.array_equal(read_flo(path), flow)


def test_flo_bad_files(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(np.float32(1.0).tobytes() + np.array([2, 2], "<i4").tobytes() + bytes(32))
    with pytest.raises(ValueError, match="bad.flo.*magic"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(np.float32(202021.25).tobytes() + np.array([4, 3], "<i4").tobytes() + bytes(8))
    with pytest.raises(ValueError, match="short.flo.*4x3"):
        read_flo(short)
    tiny = tmp_path / "tiny.flo"
    tiny.write_bytes(b"abc")
    with pytest.raises(ValueError, match="tiny.flo"):
        read_flo(tiny)
    with pytest.raises(ValueError, match="one flow"):
        write_flo(tmp_path / "x.flo", np.zeros((2, 3, 4, 2), np.float32))


def test_color_wheel_and_colors(tmp_path):
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    assert wheel[0].tolist() == [255, 0, 0] and wheel[15].tolist() == [255, 255, 0]
    assert wheel[21].tolist() == [0, 255, 0] and wheel[25].tolist() == [0, 255, 255]
    assert wheel[36].tolist() == [0, 0, 255] and wheel[49].tolist() == [255, 0, 255]
    flow = np.zeros((3, 3, 2), np.float32)
    flow[0, 0] = (1, 0)
    flow[0, 1] = (-1, 0)
    flow[0, 2] = (0, 1)
    col = flow_to_color(flow)
    assert col.shape == (3, 3, 3) and col.dtype == np.uint8
    assert col[1, 1].tolist() == [255, 255, 255]  # zero flow is white
    # Middlebury key at full saturation: +x (right) -> red, -x -> wheel index 27 (cyan-blue),
    # +y (down) -> index 13.5 (between orange and yellow)
    assert col[0, 0].tolist() == [255, 0, 0]
    assert col[0, 1].tolist() == np.rint(wheel[27]).astype(int).tolist()
    assert col[0, 2].tolist() == np.rint((wheel[13] + wheel[14]) / 2).astype(int).tolist()
    assert np.array_equal(flow_to_color(flow * 2, max_flow=4), flow_to_color(flow, max_flow=2))
    path = write_color_png(tmp_path / "c.png", flow)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), col)
