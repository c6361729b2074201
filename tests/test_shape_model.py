"""The statistical shape model of the chain: fitting, conditional estimates, the hash-checked file,
and its use for estimated landmarks (flags, wider covariance, joint propagation)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cervisag_edge.core.estimation import estimate_landmarks
from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, vertebra_corner_indices
from cervisag_edge.core.parameters import PARAMETER_NAMES, compute_parameters, facing_hint
from cervisag_edge.core.propagation import propagate_linear, propagate_mc, sample_landmarks
from cervisag_edge.core.shape_model import ShapeModel, load_shape_model, procrustes, shape_model_for_manifest
from cervisag_edge.core.uncertainty import UncertaintyCalibration, sd_of, uncertain_parameters
from cervisag_edge.errors import ModelError

from uncertainty_spine import random_chain

NOISE_MM = 0.3


def _iso(sd_mm: float) -> np.ndarray:
    return np.tile(np.eye(2) * sd_mm**2, (NUM_LANDMARKS, 1, 1))


def _hide(vis: np.ndarray, *levels: str) -> list[int]:
    idx = [i for lv in levels for i in vertebra_corner_indices(lv)]
    vis[idx] = False
    return idx


@pytest.fixture(scope="module")
def model() -> ShapeModel:
    rng = np.random.default_rng(11)
    shapes = np.stack([random_chain(rng, "right" if i % 2 else "left") for i in range(400)])
    return ShapeModel.fit(shapes, {"data": "random_chain (test)"})


def test_procrustes_removes_similarity() -> None:
    rng = np.random.default_rng(0)
    base = random_chain(rng)
    moved = []
    for k in range(5):
        a = rng.uniform(0.5, 2.0) * np.exp(1j * rng.uniform(-1, 1))
        z = a * (base[:, 0] + 1j * base[:, 1]) + complex(*rng.uniform(-50, 50, 2))
        moved.append(np.stack([z.real, z.imag], -1))
    aligned, mean = procrustes(np.stack(moved))
    np.testing.assert_allclose(aligned, np.broadcast_to(mean, aligned.shape), atol=1e-9)
    assert np.sqrt(np.mean(np.sum(mean**2, axis=1))) == pytest.approx(1.0)


def test_conditional_is_closer_than_naive_extrapolation(model: ShapeModel) -> None:
    """On chains with known structure, C7/T1 from the model beat the neighbour extrapolation
    (corner positions and C2–C7 Cobb), and the stated SDs grow away from the seen levels."""
    rng = np.random.default_rng(5)
    naive_cal = UncertaintyCalibration()
    model_cal = dataclasses.replace(naive_cal, shape_model=model)
    err = {"naive": [], "model": []}
    cobb = {"naive": [], "model": []}
    q: list[float] = []  # normalised squared errors of the model's estimates (χ²₂ if honest)
    for i in range(40):
        truth = random_chain(rng, "left" if i % 3 == 0 else "right")
        obs = truth + rng.normal(0.0, NOISE_MM, truth.shape)
        vis = np.ones(NUM_LANDMARKS, bool)
        hidden = _hide(vis, "C7", "T1")
        conf = np.where(vis, 0.95, 0.0)
        ref = compute_parameters(truth).cobb_c2_c7_deg
        for name, cal in (("naive", naive_cal), ("model", model_cal)):
            est = estimate_landmarks(obs, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(NOISE_MM), cal, px_per_mm=1.0)
            assert set(np.flatnonzero(est.mask)) == set(hidden)
            err[name].append(np.hypot(*(est.points_px[hidden] - truth[hidden]).T).mean())
            full = np.where(est.mask[:, None], est.points_px, obs)
            cobb[name].append(abs(compute_parameters(full).cobb_c2_c7_deg - ref))
            if name == "model":
                assert {est.kind[k] for k in hidden} == {"model"}
                sd = sd_of(est.cov_px2[hidden])
                assert sd[4:].mean() > sd[:4].mean()  # T1 (two levels out) wider than C7
                for k in hidden:
                    e = est.points_px[k] - truth[k]
                    q.append(float(e @ np.linalg.solve(est.cov_px2[k], e)))
                assert est.joint_px2 is not None and est.joint_px2.shape == (2 * len(est.joint_index),) * 2
    assert np.mean(err["model"]) < 0.8 * np.mean(err["naive"])
    assert np.mean(cobb["model"]) < 0.8 * np.mean(cobb["naive"])
    assert 0.5 * 2 * np.log(2) < np.median(q) < 2.0 * 2 * np.log(2)  # median of χ²₂ is 2 ln 2


def test_fewest_observed_landmarks(model: ShapeModel) -> None:
    """A film showing only MIN_OBSERVED landmarks (C2's corners) still gets estimates; one fewer gets none."""
    from cervisag_edge.core.estimation import MIN_OBSERVED

    rng = np.random.default_rng(21)
    truth = random_chain(rng)
    cal = UncertaintyCalibration(shape_model=model)
    shown = list(vertebra_corner_indices("C2"))[:MIN_OBSERVED]
    for n, expect in ((MIN_OBSERVED, True), (MIN_OBSERVED - 1, False)):
        vis = np.zeros(NUM_LANDMARKS, bool)
        vis[shown[:n]] = True
        conf = np.where(vis, 0.95, 0.0)
        est = estimate_landmarks(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(NOISE_MM), cal, px_per_mm=1.0)
        assert bool(est.mask.any()) is expect
        if expect:  # C3..T1 estimated with an interval that widens down the spine
            assert est.mask[list(vertebra_corner_indices("C7"))].all()
            sd = sd_of(est.cov_px2)
            assert np.nanmean(sd[list(vertebra_corner_indices("T1"))]) > np.nanmean(sd[list(vertebra_corner_indices("C3"))])


def test_weak_anterior_peaks_tell_the_facing_for_estimates(model: ShapeModel) -> None:
    """Only posterior corners visible: no pair tells the facing, but the weak anterior peaks
    (confidence ≥ FACING_EVIDENCE inside the image) do, so the hidden corners are still estimated."""
    rng = np.random.default_rng(31)
    cal = UncertaintyCalibration(shape_model=model)
    for facing in ("right", "left"):
        truth = random_chain(rng, facing)
        vis = np.zeros(NUM_LANDMARKS, bool)
        vis[[i for i, n in enumerate(LANDMARK_NAMES) if n.endswith(("_PS", "_PI")) and n[:2] in ("C2", "C3", "C4")]] = True
        inside = np.ones(NUM_LANDMARKS, bool)
        weak = np.where(vis, 0.95, 0.5)
        hint = facing_hint(truth, weak, inside)
        assert hint == (1.0 if facing == "right" else -1.0)
        est = estimate_landmarks(truth, weak, vis, inside, _iso(NOISE_MM), cal, px_per_mm=1.0, facing_hint=hint)
        assert est.mask[list(vertebra_corner_indices("C7"))].all(), facing
        err = np.hypot(*(est.points_px[est.mask] - truth[est.mask]).T)
        assert np.median(err) < 5.0, facing  # on the right side of the spine, not mirrored
        flipped = estimate_landmarks(truth, weak, vis, inside, _iso(NOISE_MM), cal, px_per_mm=1.0, facing_hint=-hint)
        assert np.median(np.hypot(*(flipped.points_px[flipped.mask] - truth[flipped.mask]).T)) > 4 * np.median(err)
        low = np.where(vis, 0.95, 0.1)
        assert facing_hint(truth, low, inside) is None
        none = estimate_landmarks(truth, low, vis, inside, _iso(NOISE_MM), cal, px_per_mm=1.0, facing_hint=None)
        assert not none.mask.any()  # no evidence of the facing: nothing estimated


def test_weak_peak_is_used_when_consistent_and_rejected_when_far(model: ShapeModel) -> None:
    rng = np.random.default_rng(8)
    truth = random_chain(rng)
    vis = np.ones(NUM_LANDMARKS, bool)
    c7 = _hide(vis, "C7")
    conf = np.where(vis, 0.95, 0.4)
    cal = UncertaintyCalibration(estimated_scale=2.0, shape_model=model)
    decoded = truth + rng.normal(0.0, NOISE_MM, truth.shape)
    est = estimate_landmarks(decoded, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(NOISE_MM), cal, px_per_mm=1.0)
    assert {est.kind[k] for k in c7} == {"peak"}
    assert np.max(np.hypot(*(est.points_px[c7] - truth[c7]).T)) < 2.0
    far = decoded.copy()
    far[c7] += 40.0
    est_far = estimate_landmarks(far, conf, vis, np.ones(NUM_LANDMARKS, bool), _iso(NOISE_MM), cal, px_per_mm=1.0)
    assert {est_far.kind[k] for k in c7} == {"model"}


def test_estimates_keep_flags_wider_covariance_and_joint_propagation(model: ShapeModel) -> None:
    rng = np.random.default_rng(3)
    truth = random_chain(rng)
    vis = np.ones(NUM_LANDMARKS, bool)
    hidden = _hide(vis, "C6", "C7", "T1")
    conf = np.where(vis, 0.95, 0.0)
    spread = np.tile(np.eye(2) * 0.05, (NUM_LANDMARKS, 1, 1))
    measured = compute_parameters(np.where(vis[:, None], truth, np.nan))
    cal = UncertaintyCalibration(shape_model=model)
    res = uncertain_parameters(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), spread, (1.0, 1.0), measured, cal)
    assert res.estimated[hidden].all() and not res.estimated[vis].any()
    sd = sd_of(res.cov_mm2)
    assert sd[hidden].min() > sd[vis].max()
    iv = res.intervals.to_dict()
    assert iv["cobb_c2_c7_deg"]["estimated"] is True
    assert iv["cobb_c2_c7_deg"]["low"] < res.parameters.cobb_c2_c7_deg < iv["cobb_c2_c7_deg"]["high"]
    off = uncertain_parameters(truth, conf, vis, np.ones(NUM_LANDMARKS, bool), spread, (1.0, 1.0), measured, cal, estimates=False)
    assert off.parameters.cobb_c2_c7_deg is None and not off.estimated.any()


def test_joint_sampling_follows_the_joint_covariance() -> None:
    rng = np.random.default_rng(1)
    mean = random_chain(rng)
    idx = np.array(vertebra_corner_indices("C7"))
    a = rng.normal(size=(8, 8))
    joint = a @ a.T
    s = sample_landmarks(mean, _iso(0.1), 20000, 0, (idx, joint))
    got = np.cov(s[:, idx].reshape(len(s), -1), rowvar=False)
    np.testing.assert_allclose(got, joint, atol=0.08 * np.abs(joint).max())
    # Monte Carlo and linearisation agree with the joint term too (Cobb C2–C7, smooth)
    j = PARAMETER_NAMES.index("cobb_c2_c7_deg")
    small = (idx, joint * 0.01)
    mc = propagate_mc(mean, _iso(0.1), 1.0, n_samples=4000, seed=0, joint=small)[j]
    lin = propagate_linear(mean, _iso(0.1), 1.0, small)[j]
    assert mc == pytest.approx(lin, rel=0.1)


def _write_model(tmp_path, model: ShapeModel) -> tuple[dict, object]:
    path = tmp_path / "shape_model.json"
    path.write_text(json.dumps(model.to_dict()))
    from cervisag_edge.engine.manifest import sha256_file

    return {"file": path.name, "sha256": sha256_file(path)}, path


def test_model_file_round_trip_and_hash_check(tmp_path, model: ShapeModel) -> None:
    spec, path = _write_model(tmp_path, model)
    loaded = shape_model_for_manifest(spec, tmp_path)
    np.testing.assert_allclose(loaded.mean, model.mean)
    np.testing.assert_allclose(loaded.cov, model.cov)
    assert loaded.sha256 == spec["sha256"]
    doc = json.loads(path.read_text())
    doc["mean"][30][0] += 0.01  # tampered
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError) as exc:
        shape_model_for_manifest(spec, tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "sha256" in msg
    path.unlink()
    with pytest.raises(ModelError, match="does not exist"):
        shape_model_for_manifest(spec, tmp_path)
    with pytest.raises(ModelError, match="shape_model"):
        shape_model_for_manifest({"file": "x.json"}, tmp_path)


def test_model_file_validation(tmp_path, model: ShapeModel) -> None:
    doc = model.to_dict()
    doc["schema"] = "other/1"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="schema"):
        load_shape_model(p)
    doc = model.to_dict()
    doc["cov"] = doc["cov"][:10]
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=str(p)):
        load_shape_model(p)
    with pytest.raises(ValueError, match="at least 20"):
        ShapeModel.fit(np.zeros((5, NUM_LANDMARKS, 2)))
    assert len(LANDMARK_NAMES) == NUM_LANDMARKS


def test_calibration_round_trip_names_the_model(tmp_path, model: ShapeModel) -> None:
    spec, path = _write_model(tmp_path, model)

    class _Manifest:
        model_path = tmp_path / "model.onnx"
        extra = {"uncertainty": {"scale": 0.2, "shape_cov_scale": 1.3, "shape_model": spec}}

    cal = UncertaintyCalibration.from_manifest(_Manifest())
    assert cal.shape_model is not None and cal.shape_cov_scale == pytest.approx(1.3)
    out = cal.to_manifest()
    assert out["shape_model"] == spec and "calibrated" not in out
    json.dumps(out)


def test_fit_tool_refuses_held_out_seeds_and_writes_a_loadable_model(tmp_path, monkeypatch, model: ShapeModel) -> None:
    from toolmodules import load_tool

    tool = load_tool("fit_shape_model")
    for seed in tool.HELD_OUT_SEEDS:
        assert tool.main(["--seed", str(seed), "--count", "20", "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    # the tool on a cached set of landmark sets (no scenes built): the cache key must match
    shapes = np.stack([random_chain(np.random.default_rng(i)) for i in range(25)])
    cache = tmp_path / "shapes.npz"
    np.savez_compressed(cache, key=np.array([1, 0, 25]), shapes=shapes)
    monkeypatch.setattr("os.nice", lambda n: 0)
    out = tmp_path / "shape_model.json"
    assert tool.main(["--seed", "1", "--count", "25", "--shapes-cache", str(cache), "--out", str(out)]) == 0
    loaded = load_shape_model(out)
    assert loaded.source["phantom_seed"] == 1 and loaded.source["n_shapes"] == 25
    np.testing.assert_allclose(loaded.mean, ShapeModel.fit(shapes).mean, atol=1e-12)
