"""Cost of the parameter intervals per image (issue 14 target: ≤ 3 ms on 2 cores).

``propagate_mc`` is what the Measurer runs (256 samples, fixed seed); ``linear`` is the
first-order alternative; ``uncertain_parameters`` is the whole step after decoding (covariances,
estimated landmarks, one extra ``compute_parameters`` call, intervals), with C7 and T1 hidden.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.core.landmarks import NUM_LANDMARKS, vertebra_corner_indices
from cervisag_edge.core.parameters import compute_parameters
from cervisag_edge.core.propagation import propagate_linear, propagate_mc
from cervisag_edge.core.uncertainty import UncertaintyCalibration, uncertain_parameters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from uncertainty_spine import spine_mm  # noqa: E402

COV = np.tile(np.eye(2) * 0.25, (NUM_LANDMARKS, 1, 1))


@pytest.mark.benchmark(group="uncertainty")
def test_propagate_mc_256(benchmark) -> None:
    sd = benchmark(propagate_mc, spine_mm(), COV, 1.0, 256, 0)
    assert np.all(sd > 0)


@pytest.mark.benchmark(group="uncertainty")
def test_propagate_linear(benchmark) -> None:
    sd = benchmark(propagate_linear, spine_mm(), COV, 1.0)
    assert np.all(sd > 0)


def _hidden_c7() -> tuple:
    """(points mm, confidence, visible, spread, measured parameters) of a spine with C7 and T1 hidden."""
    pts = spine_mm()
    vis = np.ones(NUM_LANDMARKS, bool)
    vis[list(vertebra_corner_indices("C7")) + list(vertebra_corner_indices("T1"))] = False
    conf = np.where(vis, 0.95, 0.3)
    measured = compute_parameters(np.where(vis[:, None], pts, np.nan))
    spread = np.tile(np.eye(2) * 0.05, (NUM_LANDMARKS, 1, 1))
    return pts, conf, vis, spread, measured


@pytest.mark.benchmark(group="uncertainty")
def test_uncertain_parameters_with_hidden_c7(benchmark) -> None:
    pts, conf, vis, spread, measured = _hidden_c7()
    cal = UncertaintyCalibration()
    res = benchmark(uncertain_parameters, pts, conf, vis, vis | True, spread, (1.0, 1.0), measured, cal)
    assert res.intervals.estimated["cobb_c2_c7_deg"]


@pytest.mark.benchmark(group="uncertainty")
def test_uncertain_parameters_with_hidden_c7_shape_model(benchmark) -> None:
    """The same step with the shipped calibration and its shape model (section 3 of
    docs/uncertainty.md): the conditional estimate and the joint draws of the hidden corners, and
    the edge term (the image ends 10 px below the lowest landmark)."""
    from cervisag_edge.engine.manifest import engines_dir, load_manifest

    pts, conf, vis, spread, measured = _hidden_c7()
    cal = UncertaintyCalibration.from_manifest(load_manifest(engines_dir() / "cervisag_unet.json"))
    if cal.shape_model is None:
        pytest.skip("the shipped manifest names no shape model")
    size = (int(np.nanmax(pts[:, 0])) + 40, int(np.nanmax(pts[:, 1])) + 10)  # C6 near the bottom edge: the edge term too
    res = benchmark(uncertain_parameters, pts, conf, vis, vis | True, spread, (1.0, 1.0), measured, cal, image_size_px=size)
    assert res.intervals.estimated["cobb_c2_c7_deg"]
