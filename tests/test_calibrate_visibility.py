"""The visibility threshold calibration tool (tools/calibrate_visibility.py) picks a threshold that
reports no absent landmark as visible on its calibration data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _tool():
    spec = importlib.util.spec_from_file_location("calibrate_visibility", Path(__file__).resolve().parents[1] / "tools" / "calibrate_visibility.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_threshold_sits_above_every_absent_landmark() -> None:
    rng = np.random.default_rng(0)
    conf = np.concatenate([rng.uniform(0.7, 1.0, 500), rng.uniform(0.0, 0.4, 80), rng.uniform(0.0, 0.25, 60)])
    vis = np.concatenate([np.full(500, 2), np.full(80, 1), np.full(60, 0)])
    r = _tool().choose_threshold(conf, vis, max_false_visible=0, margin=0.02)
    assert r["absent_reported_visible"] == 0
    assert abs(r["threshold"] - (conf[vis == 0].max() + 0.02)) < 1e-3
    assert r["visible_recall_percent"] == 100.0
    assert r["n_absent"] == 60 and r["n_visible"] == 500


def test_allowed_false_visible_lowers_the_threshold_past_outliers() -> None:
    conf = np.array([0.9, 0.95, 0.85, 0.76, 0.1, 0.2, 0.75])
    vis = np.array([2, 2, 2, 2, 0, 0, 0])
    tool = _tool()
    strict = tool.choose_threshold(conf, vis, 0, 0.02)
    loose = tool.choose_threshold(conf, vis, 1, 0.02)
    assert strict["threshold"] > 0.75 and strict["visible_recall_percent"] == 75.0
    assert loose["threshold"] < strict["threshold"] and loose["absent_reported_visible"] == 1
