"""Landmark covariance, propagation to the parameters, estimated landmarks and the calibration."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cervisag_edge.engine.codec import UDPHeatmapCodec
from cervisag_edge.core.estimation import estimate_landmarks, similarity
from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, vertebra_corner_indices
from cervisag_edge.engine.resolver import manifest_path_for
from cervisag_edge.engine.manifest import load_manifest
from cervisag_edge.core.parameters import PARAMETER_NAMES, compute_parameters
from cervisag_edge.core.propagation import (
    jacobian,
    propagate_linear,
    propagate_mc,
    sample_landmarks,
    six_parameters_batch,
)
from cervisag_edge.core.uncertainty import (
    UncertaintyCalibration,
    heatmap_spread_hm,
    landmark_covariance,
    parameter_intervals,
    sd_of,
    uncertain_parameters,
)

from uncertainty_spine import spine_mm

_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}


def _iso(sd_mm: float) -> np.ndarray:
    return np.tile(np.eye(2) * sd_mm**2, (NUM_LANDMARKS, 1, 1))


# --------------------------------------------------------------------------- vectorised twin
@pytest.mark.parametrize("facing", ["right", "left"])
def test_batch_twin_matches_compute_parameters(facing: str) -> None:
    rng = np.random.default_rng(3)
    for kappa in (-0.004, 0.0, 0.003, 0.008):
        base = spine_mm(kappa, facing=facing)
        for _ in range(10):
            pts = base + rng.normal(0, 1.0, base.shape)
            ref = compute_parameters(pts)
            sign = 1.0 if ref.facing == "right" else -1.0
            got = six_parameters_batch(pts[None], sign)[0]
            want = np.array([getattr(ref, k) for k in PARAMETER_NAMES])
            np.testing.assert_allclose(got, want, atol=1e-9)


def test_batch_twin_missing_landmark_gives_nan_where_needed() -> None:
    pts = spine_mm()
    pts[_I["C7_AI"]] = np.nan
    ref = compute_parameters(pts)
    got = six_parameters_batch(pts[None], 1.0)[0]
    for j, k in enumerate(PARAMETER_NAMES):
        assert (getattr(ref, k) is None) == bool(np.isnan(got[j])), k


def test_batch_twin_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(S, 34, 2\)"):
        six_parameters_batch(np.zeros((34, 2)), 1.0)


# --------------------------------------------------------------------------- propagation
def test_sampling_has_the_stated_covariance_and_is_seeded() -> None:
    cov = np.tile(np.array([[1.0, 0.6], [0.6, 0.5]]), (NUM_LANDMARKS, 1, 1))
    s = sample_landmarks(spine_mm(), cov, 20000, seed=5)
    d = s[:, 7] - spine_mm()[7]
    np.testing.assert_allclose(np.cov(d.T), cov[7], atol=0.03)
    np.testing.assert_array_equal(s, sample_landmarks(spine_mm(), cov, 20000, seed=5))


def test_linearisation_matches_monte_carlo() -> None:
    pts = spine_mm()
    rng = np.random.default_rng(0)
    cov = np.array([np.diag(rng.uniform(0.1, 0.4, 2) ** 2) for _ in range(NUM_LANDMARKS)])
    mc = propagate_mc(pts, cov, 1.0, n_samples=20000, seed=1)
    lin = propagate_linear(pts, cov, 1.0)
    np.testing.assert_allclose(mc[1:], lin[1:], rtol=0.06)
    # Borden is a maximum over wall points: where several are nearly as deep, the noise picks the
    # deepest and MC (the default) is wider than the derivative of the single deepest point
    assert lin[0] <= mc[0] <= 1.2 * lin[0]


def test_jacobian_is_zero_for_unused_landmarks() -> None:
    J = jacobian(spine_mm(), 1.0)
    cobb_c2 = PARAMETER_NAMES.index("cobb_c2_c7_deg")
    used = {_I[n] for n in ("C2_PI", "C2_AI", "C7_PI", "C7_AI")}
    for k in range(NUM_LANDMARKS):
        assert (np.abs(J[cobb_c2, k]).max() > 0) == (k in used), LANDMARK_NAMES[k]


def test_intervals_cover_truth_under_synthetic_gaussian_errors() -> None:
    """Landmarks with known Gaussian errors: the 95 % intervals cover the true values 93–97 % of the time."""
    truth = spine_mm()
    true_vals = compute_parameters(truth).as_dict()
    rng = np.random.default_rng(11)
    sds = rng.uniform(0.2, 0.8, NUM_LANDMARKS)
    cov = np.array([np.eye(2) * s**2 for s in sds])
    cal = UncertaintyCalibration(n_samples=256)
    hits = {k: 0 for k in PARAMETER_NAMES}
    n = 600
    for _ in range(n):
        pred = truth + rng.normal(0, 1, truth.shape) * sds[:, None]
        p = compute_parameters(pred)
        iv = parameter_intervals(p.as_dict(), pred, cov, p.facing, {}, cal)
        for k in PARAMETER_NAMES:
            hits[k] += iv.low[k] <= true_vals[k] <= iv.high[k]
    for k in PARAMETER_NAMES:
        assert 93.0 <= 100.0 * hits[k] / n <= 97.0, (k, hits[k] / n)


def test_parameter_scale_widens_only_its_parameter() -> None:
    pts = spine_mm()
    p = compute_parameters(pts).as_dict()
    base = parameter_intervals(p, pts, _iso(0.5), "right", {}, UncertaintyCalibration())
    cal = UncertaintyCalibration(parameter_scale={"ccl_deg": 2.0})
    wide = parameter_intervals(p, pts, _iso(0.5), "right", {}, cal)
    assert wide.sd["ccl_deg"] == pytest.approx(2 * base.sd["ccl_deg"])
    assert wide.sd["cci_percent"] == pytest.approx(base.sd["cci_percent"])
    assert wide.low["ccl_deg"] < p["ccl_deg"] < wide.high["ccl_deg"]


# --------------------------------------------------------------------------- heatmap spread
def _gauss(cov_hm: np.ndarray, centre=(40.3, 51.7), amp: float = 1.0) -> np.ndarray:
    ys, xs = np.mgrid[0:96, 0:96].astype(float)
    d = np.stack([xs - centre[0], ys - centre[1]], -1)
    q = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov_hm), d)
    return amp * np.exp(-0.5 * q)


def test_spread_follows_the_peak_shape_not_its_height() -> None:
    wide_x = _gauss(np.diag([4.0, 1.0]))
    tilted = _gauss(np.array([[2.0, 1.2], [1.2, 2.0]]))
    hm = np.stack([wide_x, 0.3 * wide_x, tilted] + [wide_x] * (NUM_LANDMARKS - 3))
    c = heatmap_spread_hm(hm)
    assert c[0, 0, 0] > 2 * c[0, 1, 1]
    np.testing.assert_allclose(c[1], c[0], rtol=1e-9)
    assert c[2, 0, 1] > 0.3 * c[2, 0, 0]


def test_covariance_grows_as_confidence_falls_and_keeps_the_floor() -> None:
    spread = np.tile(np.eye(2) * 0.04, (NUM_LANDMARKS, 1, 1))
    conf = np.linspace(1.0, 0.6, NUM_LANDMARKS)
    cal = UncertaintyCalibration(scale=1.0, floor_mm=0.3, confidence_power=2.0, confidence_floor=0.6)
    sd = sd_of(landmark_covariance(spread, conf, cal))
    assert np.all(np.diff(sd) > 0)
    assert sd[0] == pytest.approx(np.sqrt(0.04 + 0.09))
    low = landmark_covariance(spread, np.full(NUM_LANDMARKS, 0.1), cal)
    np.testing.assert_allclose(low, landmark_covariance(spread, np.full(NUM_LANDMARKS, 0.6), cal))


def test_covariance_maps_heatmap_px_to_mm() -> None:
    from cervisag_edge.engine.preprocess import letterbox_geometry
    from cervisag_edge.core.uncertainty import spread_mm2

    codec = UDPHeatmapCodec((384, 384), (96, 96))
    _, tf = letterbox_geometry((1920, 1920), (384, 384))
    hm = np.stack([_gauss(np.eye(2) * 2.0)] * NUM_LANDMARKS)
    px = spread_mm2(hm, codec, tf, None)
    mm = spread_mm2(hm, codec, tf, (0.1, 0.1))
    np.testing.assert_allclose(mm, px * 0.01)
    hm_px = heatmap_spread_hm(hm)
    factor = (1 / (codec.scale_xy[0] * tf.sx)) ** 2  # about (4 · 5)² = 400
    np.testing.assert_allclose(px, hm_px * factor)
    assert 350 < factor < 450


# --------------------------------------------------------------------------- calibration
def test_calibration_round_trip_and_validation() -> None:
    cal = UncertaintyCalibration(scale=0.2, floor_mm=0.1, parameter_scale={"ccl_deg": 1.5})
    back = UncertaintyCalibration.from_manifest({"uncertainty": cal.to_manifest()})
    assert back.calibrated and dataclasses.replace(back, calibrated=False, source=cal.source) == cal
    assert not UncertaintyCalibration.from_manifest({}).calibrated
    with pytest.raises(ValueError, match="floor_mm"):
        UncertaintyCalibration(floor_mm=-1.0)
    with pytest.raises(ValueError, match="parameter_scale"):
        UncertaintyCalibration(parameter_scale={"ccl_deg": 0.0})
    with pytest.raises(ValueError, match="method"):
        UncertaintyCalibration(method="exact")


def test_shipped_manifests_carry_a_calibration() -> None:
    for precision in ("fp32", "fp16"):
        cal = UncertaintyCalibration.from_manifest(load_manifest(manifest_path_for(None, "onnxruntime", precision), verify_sha256=False))
        assert cal.calibrated, precision
        assert cal.scale > 0 and cal.extrapolated_sd_mm > 0
        assert set(cal.parameter_scale) == set(PARAMETER_NAMES)


# --------------------------------------------------------------------------- estimated landmarks
def _hide(level: str, visible: np.ndarray) -> list[int]:
    idx = list(vertebra_corner_indices(level))
    visible[idx] = False
    return idx


def test_extrapolation_is_exact_on_a_constant_curvature_spine() -> None:
    truth = spine_mm(0.006)
    vis = np.ones(NUM_LANDMARKS, bool)
    hidden = _hide("C7", vis) + _hide("T1", vis)
    conf = np.where(vis, 0.95, 0.0)
    est = estimate_landmarks(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(0.3), UncertaintyCalibration(),
                             px_per_mm=1.0)
    assert set(np.flatnonzero(est.mask)) == set(hidden)
    np.testing.assert_allclose(est.points_px[hidden], truth[hidden], atol=1e-6)
    assert {est.kind[k] for k in hidden} == {"extrapolated"}
    assert est.steps[_I["T1_AI"]] == 2 and est.steps[_I["C7_AI"]] == 1
    sd = sd_of(est.cov_px2[hidden])
    assert np.all(sd[4:] > sd[:4]) and np.all(sd > 0.3)


def test_weak_peaks_are_used_when_they_agree_with_the_neighbours() -> None:
    truth = spine_mm(0.004)
    rng = np.random.default_rng(2)
    decoded = truth + rng.normal(0, 0.3, truth.shape)
    vis = np.ones(NUM_LANDMARKS, bool)
    c7 = _hide("C7", vis)
    conf = np.where(vis, 0.95, 0.35)
    far = decoded.copy()
    far[c7] += 40.0  # peaks far from where C7 must be: not trusted
    cal = UncertaintyCalibration(estimated_scale=2.0)
    est = estimate_landmarks(decoded, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(0.3), cal, px_per_mm=1.0)
    assert {est.kind[k] for k in c7} == {"peak"}
    assert np.max(np.hypot(*(est.points_px[c7] - truth[c7]).T)) < 1.5
    np.testing.assert_allclose(est.cov_px2[c7], _iso(0.3)[c7] * 4.0)
    est_far = estimate_landmarks(far, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(0.3), cal, px_per_mm=1.0)
    assert {est_far.kind[k] for k in c7} == {"extrapolated"}


def test_upward_extrapolation_and_step_limit() -> None:
    truth = spine_mm(0.005)
    vis = np.ones(NUM_LANDMARKS, bool)
    c2 = _hide("C2", vis)
    for lv in ("C3", "C4", "C5"):  # C6, C7, T1 seen: C5…C3 extrapolated, C2 would be a 4th step
        _hide(lv, vis)
    vis[c2] = False
    conf = np.where(vis, 0.95, 0.0)
    est = estimate_landmarks(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(0.3), UncertaintyCalibration(),
                             px_per_mm=1.0)
    assert not est.mask[c2].any()
    c3 = list(vertebra_corner_indices("C3"))
    assert est.mask[c3].all() and est.steps[c3[0]] == 3
    np.testing.assert_allclose(est.points_px[c3], truth[c3], atol=1e-6)


def test_similarity_recovers_rotation_scale_translation() -> None:
    src = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 2.0]])
    a = 1.3 * np.exp(1j * 0.4)
    z = a * (src[:, 0] + 1j * src[:, 1]) + (3 - 2j)
    got_a, got_b = similarity(src, np.stack([z.real, z.imag], -1))
    assert got_a == pytest.approx(a) and got_b == pytest.approx(3 - 2j)


def _measured(pts: np.ndarray, vis: np.ndarray):
    return compute_parameters(np.where(vis[:, None], pts, np.nan))


def test_parameters_with_estimated_landmarks_are_flagged_and_get_intervals() -> None:
    truth = spine_mm(0.004)
    vis = np.ones(NUM_LANDMARKS, bool)
    _hide("C7", vis)
    _hide("T1", vis)
    conf = np.where(vis, 0.95, 0.0)
    spread = np.tile(np.eye(2) * 0.05, (NUM_LANDMARKS, 1, 1))
    measured = _measured(truth, vis)
    assert measured.cobb_c2_c7_deg is None
    cal = UncertaintyCalibration()
    res = uncertain_parameters(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), spread, (1.0, 1.0), measured, cal)
    assert res.parameters.cobb_c2_c7_deg == pytest.approx(compute_parameters(truth).cobb_c2_c7_deg, abs=1e-6)
    iv = res.intervals.to_dict()
    for k in PARAMETER_NAMES:  # every parameter needs C7
        assert iv[k]["estimated"] is True and iv[k]["low"] < iv[k]["high"]
    off = uncertain_parameters(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), spread, (1.0, 1.0), measured, cal,
                               estimates=False)
    assert off.parameters.cobb_c2_c7_deg is None and not off.estimated.any()
    assert off.intervals.to_dict() == {}


def test_measured_parameters_are_not_flagged_estimated() -> None:
    truth = spine_mm(0.004)
    vis = np.ones(NUM_LANDMARKS, bool)
    spread = np.tile(np.eye(2) * 0.05, (NUM_LANDMARKS, 1, 1))
    res = uncertain_parameters(truth, np.full(NUM_LANDMARKS, 0.95), vis, vis, spread, (1.0, 1.0),
                               _measured(truth, vis), UncertaintyCalibration())
    assert not any(v["estimated"] for v in res.intervals.to_dict().values())
    assert len(res.intervals.to_dict()) == 6


def test_refined_corners_take_their_own_scale():
    """Corners the second stage moved use ``refined_scale``; the others keep ``scale``; None: one scale."""
    from cervisag_edge.core.landmarks import NUM_LANDMARKS
    from cervisag_edge.core.uncertainty import UncertaintyCalibration, landmark_covariance

    spread = np.tile(np.eye(2), (NUM_LANDMARKS, 1, 1))
    conf = np.ones(NUM_LANDMARKS)
    refined = np.zeros(NUM_LANDMARKS, bool)
    refined[6:10] = True
    cal = UncertaintyCalibration(scale=0.4, floor_mm=0.0, refined_scale=0.1)
    cov = landmark_covariance(spread, conf, cal, refined=refined)
    np.testing.assert_allclose(cov[6:10, 0, 0], 0.01)
    np.testing.assert_allclose(cov[:6, 0, 0], 0.16)
    one = landmark_covariance(spread, conf, UncertaintyCalibration(scale=0.4, floor_mm=0.0), refined=refined)
    np.testing.assert_allclose(one[:, 0, 0], 0.16)
    back = UncertaintyCalibration.from_manifest({"uncertainty": cal.to_manifest()})
    assert back.refined_scale == 0.1
    with pytest.raises(ValueError, match="refined_scale"):
        UncertaintyCalibration(refined_scale=float("nan"))


# --------------------------------------------------------------------------- edge term
def test_edge_term_widens_landmarks_near_the_border() -> None:
    """g(d) = 1 + (edge_scale − 1)·max(0, 1 − d/edge_mm): the full factor at (and beyond) the
    border, half of it at half the band, 1 outside the band, for NaN points and without the term."""
    from cervisag_edge.core.uncertainty import edge_distance_mm, edge_factor

    cal = UncertaintyCalibration(scale=0.4, floor_mm=0.1, edge_mm=6.0, edge_scale=3.0)
    d = np.array([-1.0, 0.0, 3.0, 6.0, 20.0, np.nan])
    np.testing.assert_allclose(edge_factor(d, cal), [3.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    assert edge_factor(d, UncertaintyCalibration()) == 1.0 and edge_factor(None, cal) == 1.0
    spread = np.tile(np.eye(2), (NUM_LANDMARKS, 1, 1))
    conf = np.ones(NUM_LANDMARKS)
    edge = np.full(NUM_LANDMARKS, 50.0)
    edge[3] = 0.0
    edge[4] = 3.0
    base = landmark_covariance(spread, conf, cal)
    got = landmark_covariance(spread, conf, cal, edge_mm=edge)
    np.testing.assert_allclose(got[3], 9.0 * base[3])  # the floor is widened too
    np.testing.assert_allclose(got[4], 4.0 * base[4])
    np.testing.assert_allclose(np.delete(got, [3, 4], 0), np.delete(base, [3, 4], 0))
    # distances in mm: px to the nearest border × the pixel size; negative outside
    pts = np.array([[10.0, 500.0], [300.0, 995.0], [-20.0, 40.0]])
    np.testing.assert_allclose(edge_distance_mm(pts, (400, 1000), (0.2, 0.2)), [2.1, 0.9, -3.9])
    back = UncertaintyCalibration.from_manifest({"uncertainty": cal.to_manifest()})
    assert (back.edge_mm, back.edge_scale) == (6.0, 3.0)
    with pytest.raises(ValueError, match="edge_scale"):
        UncertaintyCalibration(edge_scale=0.5)
    with pytest.raises(ValueError, match="edge_mm"):
        UncertaintyCalibration(edge_mm=-1.0)


def test_edge_term_widens_the_intervals_of_parameters_measured_at_the_border() -> None:
    """A spine whose C7 corners lie at the bottom edge: with the image size the C2–C7 interval
    widens (its C7 corners are in the band); without it, or far from the edge, nothing changes."""
    truth = spine_mm(0.004)
    vis = np.ones(NUM_LANDMARKS, bool)
    _hide("T1", vis)
    conf = np.where(vis, 0.95, 0.0)
    spread = np.tile(np.eye(2) * 0.05, (NUM_LANDMARKS, 1, 1))
    measured = _measured(truth, vis)
    cal = UncertaintyCalibration(scale=1.0, floor_mm=0.2, edge_mm=8.0, edge_scale=4.0)
    c7 = [_I[f"C7_{c}"] for c in ("AS", "PS", "PI", "AI")]
    width = int(np.ceil(np.nanmax(truth[:, 0]) + 100))
    bottom = int(np.ceil(np.nanmax(truth[c7, 1]) + 1))  # C7's lower corners within 1 mm of the edge
    kw = dict(estimates=False)
    args = (truth, conf, vis, np.ones(NUM_LANDMARKS, bool), spread, (1.0, 1.0), measured, cal)
    near = uncertain_parameters(*args, image_size_px=(width, bottom), **kw).intervals
    far = uncertain_parameters(*args, image_size_px=(width, bottom + 400), **kw).intervals
    none = uncertain_parameters(*args, **kw).intervals
    k = "cobb_c2_c7_deg"
    assert near.high[k] - near.low[k] > 1.5 * (far.high[k] - far.low[k])
    assert far.high[k] - far.low[k] == pytest.approx(none.high[k] - none.low[k])
