"""Shape consistency (core/consistency.py, ShapeModel.loo_d2): a corner on its neighbour's place is
rejected, a fitting chain keeps every landmark, and the manifest entry round-trips."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.core.consistency import CHI2_2_999, ConsistencyCheck
from cervisag_edge.core.landmarks import NUM_LANDMARKS, landmark_index, vertebra_corner_indices
from cervisag_edge.core.shape_model import ShapeModel
from cervisag_edge.core.uncertainty import UncertaintyCalibration

from uncertainty_spine import random_chain

SP = (0.1, 0.1)  # mm per px (row, col): the chains are in mm, so px = mm / 0.1


@pytest.fixture(scope="module")
def model() -> ShapeModel:
    rng = np.random.default_rng(11)
    return ShapeModel.fit(np.stack([random_chain(rng, "right" if i % 2 else "left") for i in range(400)]), {"data": "test"})


def _chain_px(seed: int, facing: str = "right") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (random_chain(rng, facing) + rng.normal(0.0, 0.3, (NUM_LANDMARKS, 2))) / 0.1


def test_clean_chains_keep_every_landmark(model: ShapeModel) -> None:
    check = ConsistencyCheck(model)
    d2_all = []
    for seed in range(20):
        pts = _chain_px(100 + seed, "left" if seed % 3 == 0 else "right")
        rejected, d2 = check.check(pts, np.ones(NUM_LANDMARKS, bool), SP)
        assert not rejected.any()
        d2_all.append(d2)
    assert np.nanmax(d2_all) < CHI2_2_999


@pytest.mark.parametrize("wrong, onto", [("C6_AI", "C7_AI"), ("C7_AS", "T1_AS"), ("C4_PS", "C3_PS")])
def test_a_corner_on_its_neighbour_is_rejected(model: ShapeModel, wrong: str, onto: str) -> None:
    pts = _chain_px(7)
    truth = pts.copy()
    pts[landmark_index(wrong)] = truth[landmark_index(onto)] + 3.0  # one level off (a few px from it)
    vis = np.ones(NUM_LANDMARKS, bool)
    rejected, d2 = ConsistencyCheck(model).check(pts, vis, SP)
    assert np.flatnonzero(rejected).tolist() == [landmark_index(wrong)]
    # the d² of the last pass (after the rejection) shows the rest fits
    assert np.nanmax(np.where(rejected, np.nan, d2)) < CHI2_2_999


def test_skull_landmarks_are_never_rejected_and_limits_hold(model: ShapeModel) -> None:
    pts = _chain_px(8)
    pts[landmark_index("MCG_OCC")] += 200.0  # 20 mm off: posture, not a level slip
    rejected, _ = ConsistencyCheck(model).check(pts, np.ones(NUM_LANDMARKS, bool), SP)
    assert not rejected[landmark_index("MCG_OCC")]
    # too few visible landmarks: nothing is judged
    pts = _chain_px(9)
    vis = np.zeros(NUM_LANDMARKS, bool)
    vis[list(vertebra_corner_indices("C2")) + list(vertebra_corner_indices("C3"))[:2]] = True
    pts[landmark_index("C3_AS")] += 150.0
    rejected, _ = ConsistencyCheck(model).check(pts, vis, SP)
    assert not rejected.any()
    # several slips: at most max_rejections go
    pts = _chain_px(10)
    for k in ("C3_AS", "C4_PS", "C5_AI", "C6_PI"):
        pts[landmark_index(k)] += np.array([0.0, 150.0])
    rejected, _ = ConsistencyCheck(model, max_rejections=2).check(pts, np.ones(NUM_LANDMARKS, bool), SP)
    assert rejected.sum() == 2


def test_spacing_scales_the_noise(model: ShapeModel) -> None:
    """The observation noise is 1 mm whatever the pixel size: a 190 px slip is a whole level at
    0.1 mm per px (rejected) but 1.9 noise SDs at 0.01 mm per px (kept)."""
    pts = _chain_px(12)
    pts[landmark_index("C5_AI")] += np.array([0.0, 190.0])  # 19 mm at 0.1 mm/px
    check = ConsistencyCheck(model)
    assert check.check(pts, np.ones(NUM_LANDMARKS, bool), SP)[0][landmark_index("C5_AI")]
    assert not check.check(pts, np.ones(NUM_LANDMARKS, bool), (0.01, 0.01))[0].any()
    # no spacing: the fallback (0.1 mm per px) applies
    assert check.check(pts, np.ones(NUM_LANDMARKS, bool), None)[0][landmark_index("C5_AI")]


def test_manifest_entry_round_trip_and_validation(model: ShapeModel) -> None:
    doc = ConsistencyCheck(model, max_d2=20.0, observation_sd_mm=0.8).to_dict()
    cal = UncertaintyCalibration(consistency=doc, shape_model=model)
    back = cal.consistency_check()
    assert back is not None and back.max_d2 == 20.0 and back.observation_sd_mm == 0.8
    assert cal.to_manifest()["consistency"] == doc
    assert UncertaintyCalibration(consistency=doc).consistency_check() is None  # no shape model: no check
    assert "consistency" not in UncertaintyCalibration().to_manifest()
    with pytest.raises(ValueError, match="max_d2"):
        UncertaintyCalibration(consistency={"max_d2": -1})
    with pytest.raises(ValueError, match="expected a number"):
        UncertaintyCalibration(consistency={"observation_sd_mm": "wide"})


def test_measurer_reports_rejected_corners_hidden_with_a_warning(model: ShapeModel) -> None:
    """The Measurer applies the check between the second stage and the parameters: rejected
    corners come out not visible, named in a warning (a tiny threshold forces rejections)."""
    from cervisag_edge import Measurer
    from cervisag_edge.tooling.phantom import render_phantom

    ph = render_phantom(4242, 0, size=(600, 750))
    with Measurer() as m:
        base = m.measure_array(ph.display, ph.pixel_spacing_mm)
        shipped = m.uncertainty.shape_model
        if shipped is None:
            pytest.skip("the shipped manifest names no shape model")
        m.consistency = ConsistencyCheck(shipped, max_d2=1e-6, max_rejections=2)
        forced = m.measure_array(ph.display, ph.pixel_spacing_mm)
    was = {lm.name for lm in base.landmarks if lm.visible}
    now = {lm.name for lm in forced.landmarks if lm.visible}
    gone = was - now
    assert len(gone) == 2 and now < was and all(n[:2] in {"C2", "C3", "C4", "C5", "C6", "C7", "T1"} for n in gone)
    assert any("not reported: inconsistent with the other landmarks" in w and all(n in w for n in gone) for w in forced.warnings)
    # a plain threshold (the calibration tools' raw view) has no check
    with Measurer(confidence_threshold=0.5) as plain:
        assert plain.consistency is None
