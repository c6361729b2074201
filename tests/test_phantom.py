"""Phantom generator: determinism, resolution consistency, display contract, physics, variants."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.io.imaging import window_linear
from cervisag_edge.core.landmarks import NUM_LANDMARKS
from cervisag_edge.tooling.phantom import VARIANTS, render_phantom
from cervisag_edge.tooling.phantom.physics import Exposure, form_image
from cervisag_edge.tooling.phantom.primitives import Grid
from cervisag_edge.tooling.phantom.scene import build_scene, pick_variant


def test_same_seed_and_index_give_identical_phantoms() -> None:
    a = render_phantom(21, 4, out_long_side=160)
    b = render_phantom(21, 4, out_long_side=160)
    assert np.array_equal(a.stored, b.stored)
    assert np.array_equal(a.display, b.display)
    assert np.array_equal(a.landmarks_px, b.landmarks_px)
    assert np.array_equal(a.visibility, b.visibility)
    assert (a.variant, a.photometric, a.bits_stored) == (b.variant, b.photometric, b.bits_stored)


def test_different_index_or_seed_gives_different_phantoms() -> None:
    a = render_phantom(21, 4, out_long_side=160, size=(1600, 2000))
    b = render_phantom(21, 5, out_long_side=160, size=(1600, 2000))
    c = render_phantom(22, 4, out_long_side=160, size=(1600, 2000))
    assert not np.allclose(a.landmarks_px, b.landmarks_px)
    assert not np.allclose(a.landmarks_px, c.landmarks_px)
    assert not np.array_equal(a.stored, b.stored)


def test_reduced_render_is_the_same_phantom_scaled_exactly() -> None:
    small = render_phantom(5, 2, out_long_side=200, size=(1800, 2400))
    large = render_phantom(5, 2, out_long_side=600, size=(1800, 2400))
    assert small.stored.shape == (200, 150) and large.stored.shape == (600, 450)
    # pixel-centre convention: x_mm = (x_px + 0.5) * spacing, the same at every resolution
    for ph in (small, large):
        assert ph.stored.shape[0] * ph.pixel_spacing_mm[0] == pytest.approx(2400 * build_scene(5, 2, (1800, 2400), None).spacing_mm)
    mm_small = (small.landmarks_px + 0.5) * np.array(small.pixel_spacing_mm[::-1])
    mm_large = (large.landmarks_px + 0.5) * np.array(large.pixel_spacing_mm[::-1])
    np.testing.assert_allclose(mm_small, mm_large, atol=1e-9)
    assert large.pixel_spacing_mm[0] == pytest.approx(small.pixel_spacing_mm[0] / 3.0)
    # the images agree once the larger one is area-averaged to the smaller grid
    import cv2

    down = cv2.resize(large.display, (150, 200), interpolation=cv2.INTER_AREA)
    assert np.corrcoef(down.ravel(), small.display.ravel())[0, 1] > 0.95


def test_output_contract_types_and_ranges() -> None:
    ph = render_phantom(3, 1, out_long_side=256)
    assert ph.stored.dtype == np.uint16 and ph.stored.ndim == 2
    assert ph.display.dtype == np.float32 and ph.display.shape == ph.stored.shape
    assert 0.0 <= float(ph.display.min()) and float(ph.display.max()) <= 1.0
    assert ph.landmarks_px.shape == (NUM_LANDMARKS, 2) and ph.landmarks_px.dtype == np.float64
    assert ph.visibility.shape == (NUM_LANDMARKS,) and ph.visibility.dtype == np.int8
    assert set(np.unique(ph.visibility)) <= {0, 1, 2}
    assert 12 <= ph.bits_stored <= 16 and int(ph.stored.max()) < 2**ph.bits_stored
    assert ph.photometric in ("MONOCHROME1", "MONOCHROME2")
    assert 1.05 <= ph.magnification <= 1.2
    np.testing.assert_allclose(np.array(ph.imager_pixel_spacing_mm), np.array(ph.pixel_spacing_mm) * ph.magnification)
    assert ph.variant in VARIANTS and (ph.seed, ph.index) == (3, 1)


def _first_with(photometric: str) -> object:
    for i in range(40):
        ph = render_phantom(9, i, out_long_side=96)
        if ph.photometric == photometric:
            return ph
    raise AssertionError(f"no {photometric} phantom in 40 indices")


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_display_is_what_a_dicom_reader_computes(photometric: str) -> None:
    ph = _first_with(photometric)
    y = window_linear(ph.stored.astype(np.float64) * ph.rescale_slope + ph.rescale_intercept, ph.window_center, ph.window_width)
    if photometric == "MONOCHROME1":
        y = 1.0 - y
    np.testing.assert_allclose(ph.display, y, atol=1e-6)
    # bone bright after display: the vertebral bodies are brighter than the prevertebral soft tissue
    lm = ph.landmarks_px
    c4 = lm[[14, 15, 16, 17]].mean(axis=0)  # C4 corners
    ant = lm[14] + (lm[14] - lm[15]) * 0.6  # in front of C4's anterior-superior corner
    val = lambda p: float(ph.display[int(round(p[1])), int(round(p[0]))])  # noqa: E731
    if ph.visibility[[14, 15, 16, 17]].min() == 2:
        assert val(c4) > val(ant)


def test_full_size_draws_sizes_and_spacing_in_range() -> None:
    sizes, spacings = [], []
    for i in range(24):
        sc = build_scene(4, i, None, None)
        sizes += list(sc.size_px)
        spacings.append(sc.spacing_mm)
    assert 600 <= min(sizes) and max(sizes) <= 3000
    assert 0.06 <= min(spacings) and max(spacings) <= 0.30
    assert max(sizes) - min(sizes) > 500  # sizes vary


def test_variants_cover_the_set_and_reject_unknown() -> None:
    drawn = {pick_variant(8, i) for i in range(len(VARIANTS))}
    assert drawn == set(VARIANTS)
    assert render_phantom(8, 0, out_long_side=64, variant="kyphotic").variant == "kyphotic"
    with pytest.raises(ValueError, match="unknown phantom variant"):
        render_phantom(8, 0, out_long_side=64, variant="banana")


def test_curvature_variants_produce_their_cobb_range() -> None:
    from cervisag_edge.core.parameters import compute_parameters

    def cobb(variant: str, i: int) -> float:
        sc = build_scene(12, i, (1500, 1500), variant)
        return float(compute_parameters(sc.landmarks_mm).as_dict()["cobb_c2_c7_deg"])

    kyph = [cobb("kyphotic", i) for i in range(4)]
    lord = [cobb("lordotic", i) for i in range(4)]
    assert max(kyph) < 0.0 < 20.0 < min(lord)


def test_both_facings_and_rotations_occur() -> None:
    facings, angles = set(), []
    for i in range(16):
        sc = build_scene(2, i, (1500, 1500), None)
        lin = sc.placement.linear
        facings.add(bool(np.linalg.det(lin) < 0))
        angles.append(np.degrees(np.arctan2(lin[1, 0], abs(lin[0, 0]))))
    assert facings == {True, False}
    assert max(abs(a) for a in angles) > 3.0 and max(abs(a) for a in angles) <= 15.0 + 1e-6


def _flat_exposure(**kw: float) -> Exposure:
    base = dict(fluence_per_mm2=2e5, magnification=1.1, scatter_fraction=0.0, scatter_sigma_mm=30.0, blur_sigma_mm=0.0,
                heel=(0.0, 0.0), gain_ripple=0.0, gain_phase=(0.0, 0.0), electronic_noise=0.0, eq_strength=0.0, eq_sigma_mm=10.0,
                sharpen=0.0, film_width=1e6, bits_stored=16)
    base.update(kw)
    return Exposure(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("spacing_mm", [0.15, 0.45])
def test_quantum_noise_follows_poisson_statistics_for_the_pixel_area(spacing_mm: float) -> None:
    mut = np.full((200, 200), 2.5, dtype=np.float32)
    exp = _flat_exposure()
    out = form_image(mut, Grid((200, 200), (spacing_mm, spacing_mm)), exp, np.random.Generator(np.random.PCG64(1)))
    # log image: mean = mu*t; sd = 1/sqrt(N), N = fluence * (pixel area at the detector) * exp(-mu*t)
    n = 2e5 * (spacing_mm * 1.1) ** 2 * np.exp(-2.5)
    assert float(out.mean()) == pytest.approx(2.5, abs=0.01)
    assert float(out.std()) == pytest.approx(1.0 / np.sqrt(n), rel=0.08)


def test_scatter_lowers_contrast_behind_thick_tissue() -> None:
    mut = np.full((300, 300), 2.0, dtype=np.float32)
    mut[100:200, 100:200] += 0.5
    grid = Grid((300, 300), (0.5, 0.5))
    no = form_image(mut, grid, _flat_exposure(fluence_per_mm2=1e9), np.random.Generator(np.random.PCG64(2)))
    yes = form_image(mut, grid, _flat_exposure(fluence_per_mm2=1e9, scatter_fraction=1.0), np.random.Generator(np.random.PCG64(2)))
    contrast = lambda im: float(im[140:160, 140:160].mean() - im[20:40, 20:40].mean())  # noqa: E731
    assert contrast(no) == pytest.approx(0.5, abs=0.01)
    assert 0.1 < contrast(yes) < 0.4


def test_polygon_signed_distance_matches_a_square_by_hand() -> None:
    from cervisag_edge.tooling.phantom.primitives import points_sdf, polygon_sdf

    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    px = np.array([5.0, 1.0, -3.0, 13.0, 14.0], dtype=np.float32)
    py = np.array([5.0, 5.0, 5.0, 14.0, 5.0], dtype=np.float32)
    # inside: distance to the nearest side; outside: negative distance (corner: Euclidean 3-4-5)
    np.testing.assert_allclose(points_sdf(px, py, square), [5.0, 1.0, -3.0, -5.0, -4.0], atol=1e-5)
    np.testing.assert_allclose(points_sdf(px, py, square, max_dist=6.0), [5.0, 1.0, -3.0, -5.0, -4.0], atol=1e-5)
    xs = np.array([[1.0, 5.0, 12.0]], dtype=np.float32)
    ys = np.array([[5.0], [-1.0]], dtype=np.float32)
    np.testing.assert_allclose(polygon_sdf(xs, ys, square), [[1.0, 5.0, -2.0], [-1.0, -1.0, -np.hypot(2.0, 1.0)]], atol=1e-5)


def test_bone_step_edge_has_half_coverage_on_the_outline() -> None:
    from cervisag_edge.tooling.phantom.primitives import Bone, render_all

    # a 20 mm square slab whose left side x = 5.05 mm falls inside pixel 50 (spacing 0.1 mm)
    sq = np.array([[5.05, 2.0], [25.05, 2.0], [25.05, 22.0], [5.05, 22.0]])
    out = render_all([Bone(mut=1.0, rim_mut=0.0, rim_mm=0.0, verts=sq)], Grid((300, 300), (0.1, 0.1)))
    row = out[120]
    # pixel j covers [0.1 j, 0.1 (j + 1)) mm: pixel 50 is exactly half inside
    assert row[49] == 0.0 and row[51] == pytest.approx(1.0) and row[50] == pytest.approx(0.5, abs=1e-4)
