"""The uncertainty calibration tool (tools/calibrate_uncertainty.py) finds the edge term that its
data has, and none where there is none."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _tool():
    spec = importlib.util.spec_from_file_location("calibrate_uncertainty", Path(__file__).resolve().parents[1] / "tools" / "calibrate_uncertainty.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _data(edge_scale: float, band_mm: float = 6.0, n: int = 120, seed: int = 0) -> dict[str, np.ndarray]:
    """Landmarks spread over 400 × 1000 px images at 0.1 mm; errors N(0, (0.3 mm · g(d))²) with the
    edge factor g of the runtime's model (band ``band_mm``, factor ``edge_scale`` at the border)."""
    from cervisag_edge.core.uncertainty import UncertaintyCalibration, edge_distance_mm, edge_factor

    rng = np.random.default_rng(seed)
    K = 34
    size = np.tile([400, 1000], (n, 1)).astype(np.float64)
    spacing = np.full((n, 2), 0.1)
    truth = np.stack([rng.uniform(0, 400, (n, K)), rng.uniform(0, 1000, (n, K))], -1)
    cal = UncertaintyCalibration(edge_mm=band_mm, edge_scale=edge_scale)
    g = np.stack([np.broadcast_to(edge_factor(edge_distance_mm(t, (400, 1000), (0.1, 0.1)), cal), (K,)) for t in truth])
    err_mm = rng.normal(0.0, 0.3, (n, K, 2)) * g[..., None]
    return {"pts": truth + err_mm / 0.1, "truth": truth, "conf": np.ones((n, K)), "vis": np.ones((n, K)),
            "spread": np.tile(np.eye(2), (n, K, 1, 1)), "spacing": spacing, "size": size,
            "refined": np.zeros((n, K))}


def test_fit_finds_the_edge_term():
    fit = _tool().fit_landmarks(_data(edge_scale=3.0))
    assert 4.0 <= fit["edge_mm"] <= 8.0
    assert 2.4 <= fit["edge_scale"] <= 3.7
    assert fit["nll_total_with_edge_term"] < fit["nll_total_without_edge_term"]
    # the SD away from the edge (unit spread, confidence 1): sqrt(scale² + floor²) = 0.3 mm
    assert abs(np.hypot(fit["scale"], fit["floor_mm"]) - 0.3) < 0.03


def test_fit_adds_no_edge_term_where_the_data_has_none():
    fit = _tool().fit_landmarks(_data(edge_scale=1.0))
    assert fit["edge_mm"] == 0.0 or fit["edge_scale"] < 1.2
