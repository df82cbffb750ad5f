"""Flow images (section 3.4), .flo files and the Middlebury colour wheel."""
import cv2
import numpy as np
import pytest

from pipeline.flowimage import (color_wheel, flow_to_color, flow_to_image, image_to_flow, read_flo,
                                write_color_png, write_flo)


def test_flow_image_mapping_and_round_trip():
    rng = np.random.default_rng(0)
    flow = rng.uniform(-25, 25, size=(3, 6, 7, 2)).astype(np.float32)
    img = flow_to_image(flow, bound=20)
    assert img.shape == (3, 6, 7, 3) and img.dtype == np.uint8
    back = image_to_flow(img, bound=20)
    assert back.shape == flow.shape and back.dtype == np.float32
    assert np.abs(back - np.clip(flow, -20, 20)).max() <= 20 / 127.5 / 2 + 1e-5
    # fixed points of the mapping: -bound -> 0, +bound -> 255, 0 -> 128; beyond bound clips
    f = np.array([[[-20.0, 20.0], [0.0, 0.0], [-100.0, 100.0], [3.0, 4.0]]], np.float32)   # (1, 4, 2)
    im = flow_to_image(f, bound=20)
    assert im[0, 0].tolist() == [0, 255, 255]
    assert im[0, 1].tolist() == [128, 128, 0]
    assert im[0, 2].tolist() == [0, 255, 255]
    assert im[0, 3, 2] == round(5 / 20 * 255)          # magnitude channel: |w| / bound, saturating
    assert flow_to_image(f[None]).shape == (1, 1, 4, 3)


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
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [4, 3]            # width, then height
    assert np.frombuffer(raw[12:20], "<f4").tolist() == [flow[0, 0, 0], flow[0, 0, 1]]   # u, v interleaved
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
    assert col[1, 1].tolist() == [255, 255, 255]                       # zero flow is white
    # Middlebury key at full saturation: +x (right) -> red, -x -> wheel index 27 (cyan-blue),
    # +y (down) -> index 13.5 (between orange and yellow)
    assert col[0, 0].tolist() == [255, 0, 0]
    assert col[0, 1].tolist() == np.rint(wheel[27]).astype(int).tolist()
    assert col[0, 2].tolist() == np.rint((wheel[13] + wheel[14]) / 2).astype(int).tolist()
    assert np.array_equal(flow_to_color(flow * 2, max_flow=4), flow_to_color(flow, max_flow=2))
    path = write_color_png(tmp_path / "c.png", flow)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), col)
