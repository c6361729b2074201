"""Letterbox and its inverse: synthetic peaks at known float positions map back within 0.05 px."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.engine.codec import UDPHeatmapCodec
from cervisag_edge.engine.preprocess import letterbox, letterbox_geometry, normalize


@pytest.mark.parametrize("size", [(2000, 2500), (3000, 1500), (1501, 2999), (400, 300)])
def test_transform_inverse_is_exact(size: tuple[int, int]) -> None:
    _, tf = letterbox_geometry(size, (512, 512))
    pts = np.random.default_rng(0).uniform(0, min(size), size=(50, 2))
    np.testing.assert_allclose(tf.to_original(tf.to_input(pts)), pts, atol=1e-9)


def test_peaks_map_back_through_resize_and_heatmap() -> None:
    """A Gaussian blob drawn in the original image is found (via the model-input grid and the
    codec's heatmap grid) at its original float position within 0.05 px."""
    H, W = 2500, 2000
    codec = UDPHeatmapCodec((512, 512), (256, 256), sigma=2.0)
    rng = np.random.default_rng(3)
    for _ in range(4):
        x, y = rng.uniform(200, W - 200), rng.uniform(200, H - 200)
        _, tf = letterbox_geometry((W, H), (512, 512))
        # a blob that is exactly the codec's Gaussian once resized: sigma_hm in original px
        sig_orig = 2.0 / (codec.scale_xy[0] * tf.sx)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        img = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sig_orig**2)).astype(np.float32)
        boxed, tf2 = letterbox(img, (512, 512))
        assert tf2 == tf
        # resample the input onto the heatmap grid with the UDP convention (x_in = x_hm * 511/255)
        grid = np.arange(256) / codec.scale_xy[0]
        hm = np.array([np.interp(grid, np.arange(512), row) for row in boxed])
        hm = np.array([np.interp(grid, np.arange(512), col) for col in hm.T]).T
        coords, _ = codec.decode(hm[None].astype(np.float32))
        back = tf.to_original(coords[0])
        assert np.hypot(*(back - [x, y])) < 0.05 / tf.sx  # 0.05 model-input px
        assert abs(back[0] - x) < 0.25 and abs(back[1] - y) < 0.25


def test_letterbox_centres_and_pads() -> None:
    img = np.ones((100, 50), np.float32)
    out, tf = letterbox(img, (64, 64), pad_value=-1.0)
    assert out.shape == (64, 64)
    assert tf.pad_y == 0 and tf.pad_x == 16
    assert np.all(out[:, :16] == -1.0) and np.allclose(out[:, 16:48], 1.0, atol=1e-6) and np.all(out[:, 48:] == -1.0)


def test_inside_original() -> None:
    _, tf = letterbox_geometry((100, 200), (64, 64))
    inside = tf.inside_original(np.array([[0, 0], [99.4, 199.4], [-1, 5], [50, 200.1], [np.nan, 1]]))
    assert inside.tolist() == [True, True, False, False, False]


def test_errors() -> None:
    with pytest.raises(ValueError, match="2-D"):
        letterbox(np.zeros((4, 4, 3)), (8, 8))
    with pytest.raises(ValueError, match="std"):
        normalize(np.zeros((2, 2)), 0.5, 0.0)
    with pytest.raises(ValueError, match="at least 1"):
        letterbox_geometry((0, 5), (8, 8))
