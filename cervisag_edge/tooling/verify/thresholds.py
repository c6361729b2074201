"""Versioned threshold files and the pass/fail logic of ``cervisag verify``.

A threshold file (format in ``docs/verify.md``) names metrics of the metrics JSON by a ``/``
path (``mre_mm``, ``sdr_percent/3.0``, ``parameters/ccl_deg/mae``), a comparison and a value.
Built-in files live in ``cervisag_edge/data/thresholds_<name>.json``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ...errors import InputError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DEFAULT_THRESHOLDS = "paper2025"
OPS: tuple[str, ...] = ("<=", ">=", "<", ">", "==")


@dataclass(frozen=True)
class Threshold:
    """One check: ``metric op value`` (``==`` passes when ``|actual − value| <= tolerance``)."""

    metric: str
    op: str
    value: float
    tolerance: float = 0.0
    description: str = ""

    def describe(self) -> str:
        if self.op == "==":
            return f"{self.metric} == {self.value:g} ± {self.tolerance:g}"
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class RegressionTolerances:
    """How much worse than a reference run a run may be: ``mre_mm`` added mm of MRE, and per
    parameter the added MAE (units of the parameter)."""

    mre_mm: float = 0.1
    parameters: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ThresholdSet:
    name: str
    version: str
    source: str
    thresholds: tuple[Threshold, ...]
    tolerances: RegressionTolerances
    path: str = ""


@dataclass(frozen=True)
class CheckResult:
    threshold: Threshold
    actual: float | None
    passed: bool

    def message(self) -> str:
        shown = "not available" if self.actual is None or not math.isfinite(self.actual) else f"{self.actual:.4g}"
        return f"{self.threshold.metric} = {shown}, required {self.threshold.describe()}"


def builtin_names() -> tuple[str, ...]:
    """Names of the threshold files shipped in ``cervisag_edge/data``."""
    return tuple(sorted(p.stem[len("thresholds_"):] for p in DATA_DIR.glob("thresholds_*.json")))


def load_thresholds(name_or_path: str | Path = DEFAULT_THRESHOLDS) -> ThresholdSet:
    """A built-in threshold set by name, or a threshold file by path."""
    text = str(name_or_path)
    builtin = DATA_DIR / f"thresholds_{text}.json"
    path = builtin if builtin.is_file() else Path(text)
    if not path.is_file():
        raise InputError(
            f"{text}: no such threshold file or built-in threshold set; built-ins are {', '.join(builtin_names())}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read threshold file: {exc}") from None
    return parse_thresholds(doc, str(path))


def parse_thresholds(doc: Any, origin: str = "<thresholds>") -> ThresholdSet:
    """Validate a threshold document (the parsed JSON)."""
    if not isinstance(doc, dict):
        raise InputError(f"{origin}: threshold file must hold a JSON object, found {type(doc).__name__}")
    for key in ("name", "version", "thresholds"):
        if key not in doc:
            raise InputError(f"{origin}: threshold file lacks the key {key!r}")
    items = doc["thresholds"]
    if not isinstance(items, list):
        raise InputError(f"{origin}: 'thresholds' must be a list, found {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        where = f"{origin}: thresholds[{i}]"
        if not isinstance(item, dict) or "metric" not in item or "value" not in item:
            raise InputError(f"{where} must be an object with 'metric', 'op' and 'value', found {item!r}")
        op = item.get("op", "<=")
        if op not in OPS:
            raise InputError(f"{where}: op {op!r} is not one of {', '.join(OPS)}")
        try:
            value = float(item["value"])
            tol = float(item.get("tolerance", 0.0))
        except (TypeError, ValueError):
            raise InputError(f"{where}: value/tolerance must be numbers, found {item.get('value')!r}") from None
        out.append(Threshold(str(item["metric"]), op, value, tol, str(item.get("description", ""))))
    tol_doc = doc.get("regression_tolerances", {}) or {}
    if not isinstance(tol_doc, dict):
        raise InputError(f"{origin}: 'regression_tolerances' must be an object, found {tol_doc!r}")
    try:
        tolerances = RegressionTolerances(
            mre_mm=float(tol_doc.get("mre_mm", 0.1)),
            parameters={str(k): float(v) for k, v in (tol_doc.get("parameters") or {}).items()},
        )
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"{origin}: 'regression_tolerances' must map names to numbers, found {tol_doc!r}") from None
    return ThresholdSet(
        name=str(doc["name"]),
        version=str(doc["version"]),
        source=str(doc.get("source", "")),
        thresholds=tuple(out),
        tolerances=tolerances,
        path=origin,
    )


def lookup(metrics: Mapping[str, Any], path: str) -> float | None:
    """The number at ``a/b/c`` in a nested metrics dict; None when absent or not a number."""
    node: Any = metrics
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def check(threshold: Threshold, metrics: Mapping[str, Any]) -> CheckResult:
    """Evaluate one threshold; a missing or NaN metric fails."""
    actual = lookup(metrics, threshold.metric)
    if actual is None or not math.isfinite(actual):
        return CheckResult(threshold, actual, False)
    v, op = threshold.value, threshold.op
    ok = {
        "<=": actual <= v,
        ">=": actual >= v,
        "<": actual < v,
        ">": actual > v,
        "==": abs(actual - v) <= threshold.tolerance,
    }[op]
    return CheckResult(threshold, actual, bool(ok))


def evaluate(thresholds: ThresholdSet, metrics: Mapping[str, Any]) -> tuple[CheckResult, ...]:
    return tuple(check(t, metrics) for t in thresholds.thresholds)


def regression_failures(
    current: Mapping[str, Any], reference: Mapping[str, Any], tolerances: RegressionTolerances, label: str = "baseline"
) -> list[str]:
    """Messages for every metric of ``current`` worse than ``reference`` beyond ``tolerances``:
    MRE may grow by at most ``tolerances.mre_mm``, each listed parameter's MAE by its tolerance.
    A metric present in the reference but unavailable now is a failure too."""
    out: list[str] = []
    pairs = [("mre_mm", tolerances.mre_mm, "mm")] + [
        (f"parameters/{name}/mae", tol, "") for name, tol in tolerances.parameters.items()
    ]
    for path, tol, unit in pairs:
        ref = lookup(reference, path)
        cur = lookup(current, path)
        if ref is None or not math.isfinite(ref):
            continue
        if cur is None or not math.isfinite(cur):
            out.append(f"{path}: not available, {label} had {ref:.4g}")
            continue
        if cur - ref > tol + 1e-9:  # inclusive, robust to decimal rounding (1.1 − 1.0 > 0.1 in binary)
            out.append(f"{path}: {cur:.4g} vs {label} {ref:.4g} (+{cur - ref:.4g}{unit}, tolerance {tol:g}{unit})")
    return out
