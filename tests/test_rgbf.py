"""RGBF frames (eq. 7): RGB times the per-frame min-max normalised flow magnitude."""

import numpy as np
import pytest

from pipeline.rgbf import make_rgbf, motion_confidence


def test_eq7_values():
    rgb = np.full((1, 2, 3, 3), 200, np.uint8)
    rgb[0, 0, 0] = (10, 100, 250)
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, :, :, 0] = [[0, 1, 2], [3, 4, 4]]  # magnitudes 0..4
    flow[0, 1, 1] = (0, 2)  # magnitude 2
    out = make_rgbf(rgb, flow)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    conf = np.array([[0, 0.25, 0.5], [0.75, 0.5, 1.0]])
    expected = np.rint(rgb[0].astype(np.float64) * conf[..., None]).astype(np.uint8)
    assert np.array_equal(out[0], expected)
    assert out[0, 0, 0].tolist() == [0, 0, 0] and out[0, 1, 2].tolist() == [200, 200, 200]


def test_normalisation_is_per_frame():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    flow = rng.normal(size=(2, 4, 5, 2)).astype(np.float32)
    flow[1] *= 50  # a frame with much larger motion
    conf = motion_confidence(flow)
    for c in conf:
        assert c.min() == 0 and np.isclose(c.max(), 1)
    assert np.array_equal(make_rgbf(rgb[1:], flow[1:])[0], make_rgbf(rgb, flow)[1])


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_constant_magnitude_gives_black_frame(value):
    """Zero-division rule: a static shot (or a pure translation) has no motion contrast -> black RGBF."""
    rgb = np.full((2, 4, 5, 3), 180, np.uint8)
    flow = np.zeros((2, 4, 5, 2), np.float32)
    flow[0, ..., 0] = value  # frame 0: constant magnitude
    flow[1, 0, 0] = (1.0, 0.0)  # frame 1: one moving pixel
    out = make_rgbf(rgb, flow)
    assert not np.isnan(motion_confidence(flow)).any()
    assert (out[0] == 0).all()
    assert out[1, 0, 0].tolist() == [180, 180, 180] and (out[1, 1:] == 0).all()


@pytest.mark.parametrize(
    "rgb, flow, match",
    [
        (np.zeros((2, 4, 5, 3), np.float32), np.zeros((2, 4, 5, 2), np.float32), "rgb must be uint8"),
        (np.zeros((2, 4, 5, 3), np.uint8), np.zeros((2, 4, 5, 2), np.int16), "flow must be float"),
        (np.zeros((3, 4, 5, 3), np.uint8), np.zeros((2, 4, 5, 2), np.float32), "must agree"),
        (np.zeros((2, 4, 5, 3), np.uint8), np.full((2, 4, 5, 2), np.inf, np.float32), "NaN or inf"),
        (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 2), np.float32), "rgb must be uint8"),
    ],
)
def test_bad_input(rgb, flow, match):
    with pytest.raises(ValueError, match=match):
        make_rgbf(rgb, flow)


def test_empty():
    assert make_rgbf(np.zeros((0, 4, 5, 3), np.uint8), np.zeros((0, 4, 5, 2), np.float32)).shape == (0, 4, 5, 3)
