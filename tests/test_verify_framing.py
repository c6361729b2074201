"""Level assignment, out-of-frame false positives and coverage in ``cervisag verify``."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, VERTEBRAE, landmark_index, vertebra_corner_indices
from cervisag_edge.tooling.verify import metrics as M
from cervisag_edge.tooling.verify.dataset import PARAMETER_KEYS, load_dataset
from cervisag_edge.tooling.verify.evaluate import ImageRecord, compute_metrics, visible_parameters

from test_verify_support import synthetic_spine_px

IDX = np.array([vertebra_corner_indices(v) for v in VERTEBRAE])  # (7, 4)
SP = (0.25, 0.25)


def bodies(pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, dtype=np.float64)[IDX][None]  # (1, 7, 4, 2)


def test_level_assignment_right_shifted_missed_and_misplaced() -> None:
    truth = synthetic_spine_px()
    vis = np.full((1, 7, 4), 2)
    exact = M.level_assignment(bodies(truth), bodies(truth), vis)
    assert (exact.n_assessed, exact.n_right, exact.percent) == (7, 7, 100.0)
    # every level one vertebra too high: C3 reported where C2 is, …; T1 where C7 is
    shifted = bodies(truth).copy()
    shifted[0, 1:] = bodies(truth)[0, :-1]
    shifted[0, 0] = np.nan
    s = M.level_assignment(shifted, bodies(truth), vis)
    assert (s.n_assessed, s.n_right, s.n_missed, s.n_misplaced) == (7, 0, 1, 6)
    # errors just under / over half the body height (the synthetic bodies are 36 px high)
    near = bodies(truth) + np.array([0.0, 17.9])
    far = bodies(truth) + np.array([0.0, 18.1])
    assert M.level_assignment(near, bodies(truth), vis).n_right == 7
    assert M.level_assignment(far, bodies(truth), vis).n_right == 0


def test_level_reported_outside_the_frame_is_wrong_and_hidden_unreported_is_not_assessed() -> None:
    truth = synthetic_spine_px()
    ref = bodies(truth).copy()
    vis = np.full((1, 7, 4), 2)
    vis[0, 5:] = 0  # C7, T1 out of frame …
    ref[0, 5:] = np.nan
    vis[0, 4] = 1  # … C6 hidden (labelled, not visible)
    pred = bodies(truth).copy()
    pred[0, 4] = np.nan  # the runtime leaves C6 out: fine
    pred[0, 5:] = bodies(truth)[0, 3] + np.array([0.0, 40.0])  # C7, T1 piled just below C5
    piled = M.level_assignment(pred, ref, vis, ref_all_mm=bodies(truth))
    assert (piled.n_assessed, piled.n_right, piled.n_misplaced) == (6, 4, 2)
    unknown = M.level_assignment(bodies(truth), ref, vis)  # reported where the reference knows no position
    assert (unknown.n_assessed, unknown.n_right, unknown.n_misplaced) == (7, 5, 2)
    named = M.level_assignment(bodies(truth), ref, vis, ref_all_mm=bodies(truth))  # right names, out of frame
    assert (named.n_assessed, named.n_right) == (7, 7)
    pred[0, 5:] = np.nan
    clean = M.level_assignment(pred, ref, vis, ref_all_mm=bodies(truth))
    assert (clean.n_assessed, clean.n_right, clean.percent) == (4, 4, 100.0)


def test_out_of_frame_counts_only_landmarks_off_the_image() -> None:
    pts = np.array([[[10.0, 10.0], [-3.0, 5.0], [50.0, 130.0], [20.0, 20.0]]])
    vis = np.array([[2, 0, 0, 0]])  # the last is unlabelled but inside: not "outside"
    reported = np.array([[True, True, False, True]])
    assert M.out_of_frame_reported_visible(reported, pts, vis, np.array([[100, 120]])) == (1, 2)
    # the v = 0 landmark inside the image (under a shutter) is counted apart
    assert M.unexposed_reported_visible(reported, pts, vis, np.array([[100, 120]])) == (1, 1)


def test_coverage_percent() -> None:
    assert M.coverage_percent(np.array([1, 0, 1, 1], bool), np.array([1, 1, 1, 0], bool)) == (pytest.approx(200 / 3), 2, 3)
    pct, n_rep, n_elig = M.coverage_percent(np.zeros(2, bool), np.zeros(2, bool))
    assert np.isnan(pct) and (n_rep, n_elig) == (0, 0)


def test_visible_parameters_follow_the_geometry_rules() -> None:
    truth = synthetic_spine_px()
    vis = np.full(NUM_LANDMARKS, 2)
    assert all(visible_parameters(truth, vis, SP).values())
    vis[landmark_index("C7_PI")] = 1  # hidden: every parameter that needs C7's inferior endplate goes
    e = visible_parameters(truth, vis, SP)
    assert not e["cobb_c2_c7_deg"] and not e["cobb_c0_c7_deg"] and not e["borden_mm"] and not e["cci_percent"]
    assert e["ccl_deg"] is False  # CCL needs all corners of C7
    vis[:] = 2
    vis[landmark_index("MCG_OCC")] = 0
    e = visible_parameters(truth, vis, SP)
    assert not e["cobb_c0_c7_deg"] and e["cobb_c1_c7_deg"]


def _record(i: int, pred: np.ndarray, truth: np.ndarray, vis: np.ndarray, pred_params: dict, all_px: np.ndarray) -> ImageRecord:
    ref_px = np.where((vis > 0)[:, None], truth, np.nan)
    err = M.radial_errors_mm(pred[None], ref_px[None], np.array([SP]), (vis > 0)[None])[0]
    return ImageRecord(i, f"{i}.png", f"{i}.png", None, pred, ref_px, vis, SP, err, pred_params,
                       {k: 1.0 for k in PARAMETER_KEYS}, ref_all_px=all_px, image_size_px=(400, 520),
                       params_eligible=visible_parameters(ref_px, vis, SP))


def test_metrics_document_and_report_carry_the_new_metrics(tmp_path) -> None:
    truth = synthetic_spine_px()
    full = {k: 1.0 for k in PARAMETER_KEYS}
    good = _record(1, truth.copy(), truth, np.full(NUM_LANDMARKS, 2), full, truth)
    # second film ends above C7: C7 and T1 lie below the image (y > 519.5) with v = 0; the runtime
    # reports T1 anyway, piled at the bottom edge, and leaves CCL out
    moved = truth.copy()
    moved[IDX[5:]] += np.array([0.0, 200.0])
    vis = np.full(NUM_LANDMARKS, 2)
    vis[IDX[5:]] = 0
    pred = truth.copy()
    pred[IDX[5]] = np.nan
    pred[IDX[6]] = np.array([200.0, 515.0])
    partial = _record(2, pred, moved, vis, {**full, "ccl_deg": None}, moved)
    doc = compute_metrics([good, partial])
    assert doc["out_of_frame_reported_visible"] == 4 and doc["n_out_of_frame"] == 8
    assert doc["unexposed_reported_visible"] == 0 and doc["n_unexposed"] == 0
    la = doc["level_assignment"]
    assert (la["n_assessed"], la["n_right"], la["n_misplaced"]) == (13, 12, 1)
    assert doc["level_accuracy_percent"] == pytest.approx(100 * 12 / 13)
    assert doc["parameters"]["ccl_deg"]["n_coverage_eligible"] == 1  # the second image cannot have it
    assert doc["parameters"]["ccl_deg"]["coverage_percent"] == 100.0
    assert doc["parameters"]["borden_mm"]["coverage_percent"] == 100.0
    json.dumps(doc)  # JSON-ready

    from cervisag_edge.tooling.verify.report import _markdown

    outcome = SimpleNamespace(metrics={**doc, "thresholds": {"checks": []}, "model": {}}, passed=True, failures=[])
    md = _markdown(outcome, {}, "")  # type: ignore[arg-type]
    assert "## Levels, framing and coverage" in md
    assert "92.31 % (12 of 13; 0 missed, 1 misplaced)" in md
    assert "| landmarks outside the image reported visible | 4 of 8 |" in md
    assert "| ccl_deg | 100.00 | 1 / 1 |" in md


def test_dataset_keeps_positions_of_out_of_frame_landmarks(tmp_path) -> None:
    truth = synthetic_spine_px()
    vis = np.full(NUM_LANDMARKS, 2)
    vis[-4:] = 0
    kps: list[float] = []
    for k in range(NUM_LANDMARKS):
        x, y = truth[k]
        kps += [0.0, 0.0, 0] if k == NUM_LANDMARKS - 1 else [float(x), float(y), int(vis[k])]
    below = truth.copy()
    below[-1] = [210.0, 600.0]
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 400, "height": 520, "pixel_spacing_mm": [0.25, 0.25]},
                   {"id": 2, "file_name": "b.png", "width": 400, "height": 520, "pixel_spacing_mm": [0.25, 0.25],
                    "landmarks_px": below.tolist()}],
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "keypoints": kps} for i in (1, 2)],
        "categories": [{"id": 1, "name": "cervical_spine", "keypoints": list(LANDMARK_NAMES)}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    a, b = load_dataset(tmp_path).items
    assert np.isnan(a.keypoints_px[-2]).all() and np.allclose(a.all_keypoints_px[-2], truth[-2])  # v = 0 with x, y kept
    assert np.isnan(a.all_keypoints_px[-1]).all()  # v = 0 at (0, 0): unknown
    np.testing.assert_allclose(b.all_keypoints_px[-1], [210.0, 600.0])


def test_coverage_with_estimates_counts_estimated_values() -> None:
    """An image whose reference shows every landmark but whose runtime estimated one (so its
    measured value is None) counts for coverage_with_estimates_percent only."""
    import dataclasses

    truth = synthetic_spine_px()
    full = {k: 1.0 for k in PARAMETER_KEYS}
    vis = np.full(NUM_LANDMARKS, 2)
    measured = _record(1, truth.copy(), truth, vis, full, truth)
    estimated_values = SimpleNamespace(parameters=SimpleNamespace(as_dict=lambda: dict(full)))
    estimated = dataclasses.replace(_record(2, truth.copy(), truth, vis, {**full, "ccl_deg": None}, truth),
                                    measurement=estimated_values)
    missing = _record(3, truth.copy(), truth, vis, {**full, "ccl_deg": None}, truth)
    doc = compute_metrics([measured, estimated, missing])
    p = doc["parameters"]["ccl_deg"]
    assert p["n_coverage_eligible"] == 3 and p["n_coverage_reported"] == 1
    assert p["coverage_percent"] == pytest.approx(100 / 3)
    assert p["n_coverage_reported_with_estimates"] == 2
    assert p["coverage_with_estimates_percent"] == pytest.approx(200 / 3)
