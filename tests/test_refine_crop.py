"""Stage-2 crop geometry (engine/crop.py): frame, affine round trip, mirror invariance, sampling."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.engine.crop import (CropGeometry, apply_affine, crop_display, frame_affine, invert_affine,
                                       vertebra_frame)
from cervisag_edge.engine.refine import _frame_corners


def _corners(rng: np.random.Generator, facing_left: bool = False) -> np.ndarray:
    """(4, 2) AS, PS, PI, AI of a tilted 15 × 12 px-ish body somewhere in a 400 × 300 image."""
    w, h = rng.uniform(40, 60), rng.uniform(30, 45)
    base = np.array([[w / 2, -h / 2], [-w / 2, -h / 2], [-w / 2, h / 2], [w / 2, h / 2]])  # anterior to +x
    if facing_left:
        base[:, 0] *= -1
    t = rng.uniform(-0.5, 0.5)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return base @ R.T + rng.uniform([120, 100], [180, 200]) + rng.normal(0, 1.5, (4, 2))


@pytest.mark.parametrize("facing_left", [False, True])
def test_point_into_crop_and_back_is_unchanged(facing_left: bool) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        fr = vertebra_frame(_corners(rng, facing_left), factor=2.0)
        M = frame_affine(fr, 96)
        pts = rng.uniform(0, 300, (50, 2))
        np.testing.assert_allclose(apply_affine(invert_affine(M), apply_affine(M, pts)), pts, atol=1e-9)
        c0 = (96 - 1) / 2
        np.testing.assert_allclose(apply_affine(M, fr.centre_px), [c0, c0], atol=1e-9)


@pytest.mark.parametrize("facing_left", [False, True])
def test_anterior_is_right_and_superior_is_up_in_the_crop(facing_left: bool) -> None:
    rng = np.random.default_rng(4)
    c = _corners(rng, facing_left)
    M = frame_affine(vertebra_frame(c, 2.0), 128)
    AS, PS, PI, AI = apply_affine(M, c)
    assert AS[0] > PS[0] + 20 and AI[0] > PI[0] + 20  # anterior on the right
    assert AS[1] < AI[1] - 15 and PS[1] < PI[1] - 15  # superior on top
    assert np.all((apply_affine(M, c) > 0) & (apply_affine(M, c) < 127))  # factor 2: the body sits inside


def test_mirrored_film_gives_the_same_crop() -> None:
    rng = np.random.default_rng(5)
    H, W = 300, 400
    img = cv_blobs(rng, H, W)
    c = _corners(rng)
    mirrored = img[:, ::-1].copy()
    c_m = c.copy()
    c_m[:, 0] = (W - 1) - c[:, 0]  # pixel-centre mirror
    a = crop_display(img, frame_affine(vertebra_frame(c, 2.0), 64), 64)
    b = crop_display(mirrored, frame_affine(vertebra_frame(c_m, 2.0), 64), 64)
    assert np.abs(a - b).max() < 1e-4


def cv_blobs(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W), np.float32)
    for _ in range(30):
        cx, cy, s = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(5, 30)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)).astype(np.float32)
    return img / img.max()


@pytest.mark.parametrize("side_scale", [0.6, 2.5])  # crop enlarges / shrinks the image (anti-aliased path)
def test_a_bright_dot_lands_where_the_affine_says(side_scale: float) -> None:
    rng = np.random.default_rng(6)
    c = _corners(rng)
    fr = vertebra_frame(c, 2.0 * side_scale)
    M = frame_affine(fr, 96)
    img = np.zeros((300, 400), np.float32)
    p = np.round(fr.centre_px + [7.0, -5.0]).astype(int)
    img[p[1] - 1 : p[1] + 2, p[0] - 1 : p[0] + 2] = 1.0
    crop = crop_display(img, M, 96)
    q = apply_affine(M, p.astype(float))
    yy, xx = np.mgrid[0:96, 0:96]
    w = crop / crop.sum()  # the dot's centroid (a plateau when the crop enlarges)
    assert abs((w * xx).sum() - q[0]) <= 0.5 and abs((w * yy).sum() - q[1]) <= 0.5


def test_outside_the_image_is_padding() -> None:
    c = np.array([[10.0, -80], [-30, -80], [-30, -50], [10, -50]])  # body well above the image
    crop = crop_display(np.ones((50, 50), np.float32), frame_affine(vertebra_frame(c, 2.0), 32), 32, pad_value=0.25)
    assert crop.shape == (32, 32) and np.all(crop == 0.25)


def test_degenerate_corners_give_no_frame() -> None:
    assert vertebra_frame(np.full((4, 2), 5.0), 2.0) is None
    assert vertebra_frame(np.array([[0, 0], [np.nan, 0], [0, 1], [1, 1]], float), 2.0) is None
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        vertebra_frame(np.zeros((3, 2)), 2.0)


def test_three_visible_corners_complete_a_parallelogram() -> None:
    c = np.array([[10.0, 0], [0, 0], [0, 8], [10, 8]])
    for j in range(4):
        vis = np.ones(4, bool)
        vis[j] = False
        broken = c.copy()
        broken[j] = [999, 999]
        np.testing.assert_allclose(_frame_corners(broken, vis), c)
    assert _frame_corners(c, np.array([True, True, False, False])) is None


def test_crop_geometry_validation() -> None:
    with pytest.raises(ValueError, match="alignment 'none'"):
        CropGeometry(96, 2.0, "none")
    with pytest.raises(ValueError, match="factor"):
        CropGeometry(96, 0.0)
    g = CropGeometry(96, 2.0)
    assert CropGeometry.from_manifest(g.to_manifest()) == g
