"""Threshold files, pass/fail logic and regression tolerances."""
from __future__ import annotations

import json

import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.tooling.verify.thresholds import (
    RegressionTolerances,
    builtin_names,
    check,
    evaluate,
    load_thresholds,
    lookup,
    parse_thresholds,
    regression_failures,
    Threshold,
)


def _paper_passing_metrics() -> dict:
    return {
        "mre_mm": 1.0,
        "sdr_percent": {"2.0": 80.0, "2.5": 90.0, "3.0": 95.0, "4.0": 98.0},
        "parameters": {
            "borden_mm": {"mae": 1.5},
            "cci_percent": {"mae": 2.0},
            "ccl_deg": {"mae": 3.0},
            "cobb_c0_c7_deg": {"mae": 2.0},
            "cobb_c1_c7_deg": {"mae": 2.0},
            "cobb_c2_c7_deg": {"mae": 2.0},
        },
        "icc_pooled": 0.99,
    }


def test_paper2025_contents():
    t = load_thresholds("paper2025")
    assert "paper2025" in builtin_names()
    assert t.name == "paper2025" and t.version and "Eur Spine J 2025" in t.source
    got = {x.metric: (x.op, x.value) for x in t.thresholds}
    assert got == {
        "mre_mm": ("<=", 1.17),
        "sdr_percent/3.0": (">=", 94.16),
        "sdr_percent/4.0": (">=", 97.31),
        "parameters/borden_mm/mae": ("<=", 1.67),
        "parameters/cci_percent/mae": ("<=", 2.01),
        "parameters/ccl_deg/mae": ("<=", 3.22),
        "parameters/cobb_c0_c7_deg/mae": ("<=", 2.37),
        "parameters/cobb_c1_c7_deg/mae": ("<=", 2.49),
        "parameters/cobb_c2_c7_deg/mae": ("<=", 2.81),
        "icc_pooled": (">=", 0.983),
    }
    assert t.tolerances.mre_mm == 0.1
    assert t.tolerances.parameters == {k: 0.3 for k in ("ccl_deg", "cobb_c0_c7_deg", "cobb_c1_c7_deg", "cobb_c2_c7_deg")}


def test_paper2025_pass_and_each_failure():
    t = load_thresholds("paper2025")
    m = _paper_passing_metrics()
    assert all(c.passed for c in evaluate(t, m))
    m["sdr_percent"]["3.0"] = 94.0
    m["parameters"]["ccl_deg"]["mae"] = 3.3
    failed = [c.threshold.metric for c in evaluate(t, m) if not c.passed]
    assert failed == ["sdr_percent/3.0", "parameters/ccl_deg/mae"]


def test_boundary_values_pass():
    assert check(Threshold("x", "<=", 1.17), {"x": 1.17}).passed
    assert not check(Threshold("x", "<", 1.17), {"x": 1.17}).passed
    assert check(Threshold("x", ">=", 0.983), {"x": 0.983}).passed
    assert not check(Threshold("x", ">", 0.983), {"x": 0.983}).passed


def test_equality_with_tolerance_for_expected_figures():
    t = Threshold("a/b", "==", 1.25, tolerance=0.05)
    assert check(t, {"a": {"b": 1.29}}).passed
    assert not check(t, {"a": {"b": 1.31}}).passed


def test_missing_or_null_metric_fails():
    t = Threshold("icc_pooled", ">=", 0.9)
    r = check(t, {"icc_pooled": None})
    assert not r.passed and "not available" in r.message()
    assert not check(t, {}).passed
    assert lookup({"a": {"b": True}}, "a/b") is None


def test_custom_file_and_errors(tmp_path):
    p = tmp_path / "ci.json"
    p.write_text(json.dumps({"name": "ci", "version": "3", "thresholds": [
        {"metric": "n_failed", "op": "==", "value": 0},
        {"metric": "mre_mm", "op": "==", "value": 2.0, "tolerance": 0.2}],
        "regression_tolerances": {"mre_mm": 0.05, "parameters": {"borden_mm": 0.1}}}))
    t = load_thresholds(str(p))
    assert t.name == "ci" and t.version == "3"
    assert t.tolerances == RegressionTolerances(0.05, {"borden_mm": 0.1})
    assert [c.passed for c in evaluate(t, {"n_failed": 0, "mre_mm": 2.1})] == [True, True]
    with pytest.raises(InputError, match="no such threshold file"):
        load_thresholds(str(tmp_path / "absent.json"))
    with pytest.raises(InputError, match="op '~'"):
        parse_thresholds({"name": "x", "version": "1", "thresholds": [{"metric": "m", "op": "~", "value": 1}]}, "f.json")
    with pytest.raises(InputError, match="lacks the key 'version'"):
        parse_thresholds({"name": "x", "thresholds": []}, "f.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_thresholds(str(bad))


def test_regression_failures():
    tol = RegressionTolerances(0.1, {"ccl_deg": 0.3})
    ref = {"mre_mm": 1.0, "parameters": {"ccl_deg": {"mae": 2.0}}}
    assert regression_failures({"mre_mm": 1.1, "parameters": {"ccl_deg": {"mae": 2.3}}}, ref, tol) == []
    msgs = regression_failures({"mre_mm": 1.2, "parameters": {"ccl_deg": {"mae": 2.31}}}, ref, tol)
    assert len(msgs) == 2 and msgs[0].startswith("mre_mm") and msgs[1].startswith("parameters/ccl_deg/mae")
    # improvements never fail; a metric gone missing does
    assert regression_failures({"mre_mm": 0.5, "parameters": {"ccl_deg": {"mae": 1.0}}}, ref, tol) == []
    assert "not available" in regression_failures({"mre_mm": None, "parameters": {"ccl_deg": {"mae": 1}}}, ref, tol)[0]
