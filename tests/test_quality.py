"""Quality flags on crafted landmark sets, and end to end on a phantom and the pydicom-data films."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, vertebra_corner_indices
from cervisag_edge.core.parameters import PARAMETER_NAMES, compute_parameters
from cervisag_edge.core.quality import FLAGS, assess, blocks_parameters

from realdata import pydicom_data_dir
from uncertainty_spine import spine_mm

_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}
SPACING = (0.1, 0.1)
SIZE = (2000, 2500)  # (W, H) px


def _px(kappa: float = 0.004) -> np.ndarray:
    """A spine in px at 0.1 mm/px, well inside a 2000 × 2500 image."""
    return spine_mm(kappa, origin=(60.0, 40.0)) / 0.1 + np.array([200.0, 200.0])


def _flags(pts: np.ndarray, vis: np.ndarray | None = None, conf: np.ndarray | None = None, spacing=SPACING, size=SIZE,
           display: np.ndarray | None = None) -> dict[str, str]:
    vis = np.ones(NUM_LANDMARKS, bool) if vis is None else vis
    conf = np.where(vis, 0.95, 0.1) if conf is None else conf
    W, H = size
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
    out = assess(pts, conf, vis & inside, inside, np.zeros(NUM_LANDMARKS, bool), None, spacing, size, display)
    return {f.flag: f.reason for f in out}


def test_a_good_spine_has_no_flags() -> None:
    assert _flags(_px()) == {}


def test_spacing_unknown_alone() -> None:
    f = _flags(_px(), spacing=None)
    assert list(f) == ["spacing_unknown"] and "pixel spacing" in f["spacing_unknown"]


def test_nothing_found_is_not_a_lateral_cspine_and_blocks_parameters() -> None:
    vis = np.zeros(NUM_LANDMARKS, bool)
    f = _flags(_px(), vis=vis)
    assert "not_lateral_cspine" in f and "0 of 7" in f["not_lateral_cspine"]
    from cervisag_edge.core.quality import QualityFlag

    assert blocks_parameters([QualityFlag("not_lateral_cspine", "x")])
    assert not blocks_parameters([QualityFlag("low_confidence", "x")])


def test_a_cephalogram_ending_at_c2_is_a_lateral_cspine() -> None:
    """One whole level is too few, but C1, the dens and C2 peaking clearly show a lateral
    cervical film (a cephalogram or neck crop that ends at C2/C3); weak peaks do not."""
    from cervisag_edge.core.landmarks import landmark_index
    from cervisag_edge.core.quality import LANDMARK_EVIDENCE, MIN_EVIDENT_LANDMARKS

    shown = [landmark_index(n) for n in ("C1_ANT", "C1_POST", "DENS_TIP", "DENS_PS", "C2_AS", "C2_PS", "C2_PI", "C2_AI")]
    vis = np.zeros(NUM_LANDMARKS, bool)
    vis[shown] = True
    assert "not_lateral_cspine" not in _flags(_px(), vis=vis)
    weak = np.where(vis, LANDMARK_EVIDENCE - 0.05, 0.1)
    assert "not_lateral_cspine" in _flags(_px(), vis=vis, conf=weak)
    few = vis.copy()
    few[shown[MIN_EVIDENT_LANDMARKS - 1:]] = False  # C2 gone too: three clear peaks
    assert "not_lateral_cspine" in _flags(_px(), vis=few)


def test_blank_image_is_not_a_lateral_cspine() -> None:
    f = _flags(_px(), display=np.full((250, 200), 0.5, np.float32))
    assert "nearly uniform" in f["not_lateral_cspine"]


def test_levels_out_of_order_are_implausible() -> None:
    pts = _px()
    c4, c5 = list(vertebra_corner_indices("C4")), list(vertebra_corner_indices("C5"))
    pts[c4], pts[c5] = pts[c5].copy(), pts[c4].copy()
    assert "out of cranio-caudal order" in _flags(pts)["implausible_anatomy"]


def test_body_height_outside_range_for_the_spacing() -> None:
    f = _flags(_px(), spacing=(0.4, 0.4))  # the same pixels at 4× the size: 56 mm bodies
    assert "body height" in f["implausible_anatomy"] and "mm" in f["implausible_anatomy"]


def test_implausible_without_spacing_uses_ratios() -> None:
    pts = _px()
    c5 = list(vertebra_corner_indices("C5"))
    pts[c5[2:]] += np.array([0.0, 400.0])  # C5 stretched to 4× its height
    f = _flags(pts, spacing=None)
    assert "body height" in f["implausible_anatomy"] and "× endplate width" in f["implausible_anatomy"]


def test_low_confidence() -> None:
    f = _flags(_px(), conf=np.full(NUM_LANDMARKS, 0.65))
    assert "median confidence 0.65" in f["low_confidence"]


def test_spine_running_off_the_bottom_is_a_partial_field_of_view() -> None:
    pts = _px()
    bottom = float(pts[_I["C5_AI"], 1]) + 40.0  # image ends 4 mm below C5
    f = _flags(pts, size=(2000, int(bottom)))
    assert "below C5" in f["partial_field_of_view"]
    assert "not_lateral_cspine" not in f


def test_skull_cut_at_the_top_is_a_partial_field_of_view() -> None:
    pts = _px() - np.array([0.0, float(_px()[_I["C2_AS"], 1]) - 30.0])  # C2 near the top edge
    f = _flags(pts)
    assert "outside the image" in f["partial_field_of_view"] and "MCG" in f["partial_field_of_view"]


def test_flags_come_in_documented_order() -> None:
    f = _flags(_px(), vis=np.zeros(NUM_LANDMARKS, bool), spacing=None)
    assert list(f) == [k for k in FLAGS if k in f] == ["not_lateral_cspine", "spacing_unknown"]


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def measurer():
    from cervisag_edge.core.measurer import Measurer

    return Measurer(threads=1)


DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo_phantom.dcm"


def test_phantom_record_has_intervals_sd_and_no_flags(measurer) -> None:
    from cervisag_edge.outputs.records import json_safe, record_ok, validate_record

    m = measurer.measure(DEMO)
    rec = record_ok(DEMO, m)
    assert validate_record(rec) == []
    d = rec["measurement"]
    json.dumps(json_safe(d), allow_nan=False)
    assert d["quality_flags"] == []
    iv = d["parameter_intervals"]
    values = d["parameters"]
    for k in PARAMETER_NAMES:
        if values[k] is not None:
            assert iv[k]["low"] <= values[k] <= iv[k]["high"]
            assert isinstance(iv[k]["estimated"], bool)
    for lm in d["landmarks"]:
        assert isinstance(lm["estimated"], bool)
        if lm["visible"] or lm["estimated"]:
            assert lm["sd_mm"] is not None and lm["sd_mm"] > 0
        if lm["estimated"]:
            assert lm["visible"] is False
    assert "uncertainty_ms" in d["timings_ms"]


def test_estimates_off_gives_the_measured_only_values(measurer) -> None:
    from cervisag_edge.core.measurer import Measurer

    on = measurer.measure(DEMO)
    off = Measurer(threads=1, estimates=False).measure(DEMO)
    assert not any(lm.estimated for lm in off.landmarks)
    for k in PARAMETER_NAMES:
        est = on.parameter_intervals.get(k, {}).get("estimated", False)
        v_on, v_off = getattr(on.parameters, k), getattr(off.parameters, k)
        if est:
            assert v_off is None and v_on is not None
        else:
            assert v_on == v_off
            assert not off.parameter_intervals.get(k, {}).get("estimated", False)
    pts = np.array([[lm.x_mm, lm.y_mm] if lm.visible else [np.nan, np.nan] for lm in off.landmarks], dtype=float)
    assert off.parameters.cci_percent == compute_parameters(pts).cci_percent


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm"])
def test_pydicom_data_films_are_not_lateral_cspines(measurer, name: str) -> None:
    folder = pydicom_data_dir()
    if folder is None:
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    m = measurer.measure(folder / name)
    flags = {f["flag"] for f in m.quality_flags}
    assert "not_lateral_cspine" in flags
    assert all(getattr(m.parameters, k) is None for k in PARAMETER_NAMES)
    assert m.parameter_intervals == {}
    assert not any(lm.visible or lm.estimated for lm in m.landmarks)  # nothing on it is believed
    assert all(lm.sd_mm is None for lm in m.landmarks)
    assert any("not a lateral cervical spine" in w and "no parameters or landmarks" in w for w in m.warnings)


def test_cli_no_estimates_option() -> None:
    import argparse

    from cervisag_edge.cli import measure

    p = argparse.ArgumentParser()
    measure.add_arguments(p)
    assert p.parse_args(["x.dcm"]).estimates is True
    assert p.parse_args(["x.dcm", "--no-estimates"]).estimates is False


def test_overlay_legend_value_with_half_interval() -> None:
    from cervisag_edge.outputs.overlay import format_value

    assert format_value(31.64, "deg") == "31.6 deg"
    assert format_value(31.64, "deg", {"low": 25.0, "high": 38.2, "estimated": False}) == "31.6 +/- 6.6 deg"
    assert format_value(3.0, "mm", {"low": 1.0, "high": 5.0, "estimated": True}) == "3.0 +/- 2.0 mm (est.)"


def test_overlay_draws_estimated_landmarks_as_amber_rings(measurer) -> None:
    from cervisag_edge.io import read_image
    from cervisag_edge.outputs.overlay import _ESTIMATED, overlay_layout, render_overlay

    img = read_image(DEMO)
    m = measurer.measure(img)
    est = [lm for lm in m.landmarks if lm.estimated]
    if not est:
        pytest.skip("the demo phantom has no estimated landmark with this model")
    rgb = render_overlay(img.display, m)
    layout = overlay_layout(*img.display.shape)
    x, y = layout.to_canvas(np.array([[est[0].x_px, est[0].y_px]]))[0]
    r = int(4 * layout.thickness_px + 6)
    patch = rgb[int(y) - r:int(y) + r + 1, int(x) - r:int(x) + r + 1].reshape(-1, 3).astype(int)
    assert np.any(np.abs(patch - np.array(_ESTIMATED)).sum(axis=1) < 40)  # the ring
    centre = rgb[int(round(y)), int(round(x))].astype(int)
    assert np.abs(centre - np.array(_ESTIMATED)).sum() > 40  # hollow
