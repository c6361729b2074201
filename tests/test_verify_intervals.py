"""Interval coverage and estimated-parameter scoring of ``cervisag verify`` (verify/intervals.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pytest

from cervisag_edge.core.parameters import PARAMETER_NAMES
from cervisag_edge.tooling.verify.intervals import add_interval_metrics, measured_values, report_lines


@dataclass(frozen=True)
class _Params:
    values: Mapping[str, float | None]

    def as_dict(self) -> dict[str, float | None]:
        return {k: self.values.get(k) for k in PARAMETER_NAMES}


@dataclass(frozen=True)
class _M:
    parameters: _Params
    parameter_intervals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    landmarks: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Lm:
    name: str
    visible: bool


@dataclass(frozen=True)
class _Rec:
    measurement: _M | None
    ref_params: Mapping[str, float | None]
    ok: bool = True


def _rec(value: float | None, ref: float, half: float, estimated: bool = False, key: str = "ccl_deg") -> _Rec:
    iv = {} if value is None else {key: {"low": value - half, "high": value + half, "estimated": estimated}}
    return _Rec(_M(_Params({key: value}), iv), {key: ref})


def test_coverage_width_and_estimated_apart() -> None:
    recs = [_rec(10.0, 10.5, 1.0), _rec(10.0, 12.0, 1.0), _rec(20.0, 21.0, 2.0, estimated=True), _rec(None, 5.0, 0.0)]
    params: dict[str, dict[str, Any]] = {k: {} for k in PARAMETER_NAMES}
    add_interval_metrics(params, recs)
    p = params["ccl_deg"]
    assert p["ci95_coverage_percent"] == pytest.approx(50.0)
    assert p["ci95_mean_width"] == pytest.approx(2.0)
    assert p["ci95_width_over_mae"] == pytest.approx(2.0 / 1.25)
    assert p["estimated"] == {"n": 1, "mae": 1.0, "ci95_coverage_percent": 100.0, "ci95_mean_width": 4.0}
    w = p["with_estimates"]
    assert w["n"] == 3 and w["reported_percent"] == pytest.approx(75.0)
    assert params["borden_mm"]["ci95_coverage_percent"] is None
    lines = report_lines({"parameters": params})
    assert any(line.startswith("| ccl_deg | 50.0 |") for line in lines)


def _shown(levels: str) -> tuple[_Lm, ...]:
    """One visible corner (AS) on each level named in ``levels`` ("23456"), the rest hidden."""
    return tuple(_Lm(f"C{v}_{c}", c == "AS" and str(v) in levels) for v in range(2, 8) for c in ("AS", "PS", "PI", "AI"))


def test_estimated_split_c7_hidden_and_levels_out() -> None:
    key = "cobb_c2_c7_deg"
    iv = lambda v, h: {key: {"low": v - h, "high": v + h, "estimated": True}}  # noqa: E731
    c7 = _Rec(_M(_Params({key: 20.0}), iv(20.0, 3.0), _shown("23456")), {key: 22.0})  # C2..C6 shown: C7 hidden
    c7b = _Rec(_M(_Params({key: 10.0}), iv(10.0, 1.0), _shown("234567")), {key: 14.0})  # C7 shown too
    out = _Rec(_M(_Params({key: 30.0}), iv(30.0, 5.0), _shown("234")), {key: 40.0})  # C5, C6 missing
    params: dict[str, dict[str, Any]] = {}
    add_interval_metrics(params, [c7, c7b, out])
    p = params[key]
    assert p["estimated"]["n"] == 3
    assert p["estimated_c7_hidden"] == {"n": 2, "mae": 3.0, "ci95_coverage_percent": 50.0, "ci95_mean_width": 4.0}
    assert p["estimated_levels_out"] == {"n": 1, "mae": 10.0, "ci95_coverage_percent": 0.0, "ci95_mean_width": 10.0}
    assert any(line.startswith(f"| {key} |") and "| 2, 3.00, 50.0 |" in line for line in report_lines({"parameters": params}))


def test_measured_values_drop_estimated() -> None:
    m = _M(_Params({"ccl_deg": 3.0, "cci_percent": 7.0}), {"ccl_deg": {"low": 1, "high": 5, "estimated": True},
                                                        "cci_percent": {"low": 5, "high": 9, "estimated": False}})
    v = measured_values(m)
    assert v["ccl_deg"] is None and v["cci_percent"] == 7.0 and v["borden_mm"] is None


def test_failed_records_are_skipped() -> None:
    params: dict[str, dict[str, Any]] = {}
    add_interval_metrics(params, [_Rec(None, {"ccl_deg": 1.0}, ok=False)])
    assert params["ccl_deg"]["with_estimates"]["reported_percent"] is None


def test_quality_flag_counts() -> None:
    from cervisag_edge.tooling.verify.intervals import quality_flag_counts

    m1 = _M(_Params({}))
    object.__setattr__(m1, "quality_flags", ({"flag": "low_confidence", "reason": "r"},))
    m2 = _M(_Params({}))
    object.__setattr__(m2, "quality_flags", ({"flag": "low_confidence", "reason": "r"}, {"flag": "spacing_unknown", "reason": "r"}))
    recs = [_Rec(m1, {}), _Rec(m2, {}), _Rec(None, {}, ok=False)]
    assert quality_flag_counts(recs) == {"low_confidence": 2, "spacing_unknown": 1}
    assert "Quality flags: low_confidence 2, spacing_unknown 1" in "\n".join(
        report_lines({"parameters": {"ccl_deg": {"ci95_coverage_percent": 1.0}}, "quality_flag_counts": quality_flag_counts(recs)}))


def test_upper_levels_shown_needs_a_corner_of_every_level_c2_to_c6() -> None:
    from cervisag_edge.core.landmarks import NUM_LANDMARKS, landmark_index
    from cervisag_edge.tooling.verify.intervals import upper_levels_shown

    vis = np.zeros(NUM_LANDMARKS, dtype=bool)
    for level, corner in (("C2", "PI"), ("C3", "AS"), ("C4", "PS"), ("C5", "AI"), ("C6", "PS")):
        vis[landmark_index(f"{level}_{corner}")] = True
    assert upper_levels_shown(vis)  # one corner per level is enough; C7 need not show
    vis[landmark_index("C4_PS")] = False
    assert not upper_levels_shown(vis)  # C4 has none
    vis[landmark_index("C7_AS")] = True
    assert not upper_levels_shown(vis)  # C7 does not stand in for C4
