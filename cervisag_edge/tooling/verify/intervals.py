"""Scoring the 95 % parameter intervals and the estimated parameters in ``cervisag verify``.

Pure functions over the records of :mod:`cervisag_edge.tooling.verify.evaluate`. Measured parameters (every
landmark they need visible) and estimated ones (some landmark estimated, see
``docs/uncertainty.md``) are scored apart: the headline MAE/ICC of ``parameters[k]`` stays
measured-only, as before; the keys added to each ``parameters[k]`` are documented in
``docs/verify.md``:

- ``ci95_coverage_percent``: % of measured values whose interval holds the reference;
- ``ci95_mean_width``: mean high − low of those intervals (parameter units);
- ``ci95_width_over_mae``: that width over the measured MAE (a calibrated Gaussian gives 4.9);
- ``estimated``: ``{n, mae, ci95_coverage_percent, ci95_mean_width}`` of the estimated values;
- ``estimated_c7_hidden`` / ``estimated_levels_out``: the same over the estimated values of images
  in which every level C2…C6 shows a visible corner (only C7 is hidden, typically under the
  shoulders: issue 14's "C7 hidden" case) and over the rest (whole levels above C7 missing: the
  film ends higher, so the value is extrapolated further);
- ``with_estimates``: ``{n, reported_percent, mae, ci95_coverage_percent}`` over both, where
  ``reported_percent`` is the share of images with a reference that got a value at all.

and at the top level ``quality_flag_counts``: ``{flag: number of images}``.
"""
from __future__ import annotations

from typing import Any, Mapping, MutableMapping, Sequence

import numpy as np

from ...core.landmarks import LANDMARK_NAMES, vertebra_corner_indices
from .dataset import PARAMETER_KEYS


def measured_values(measurement: Any) -> dict[str, float | None]:
    """The six values of ``measurement`` with the estimated ones set to None."""
    pd = measurement.parameters.as_dict()
    iv = getattr(measurement, "parameter_intervals", {}) or {}
    return {k: (None if pd.get(k) is None or iv.get(k, {}).get("estimated") else float(pd[k])) for k in PARAMETER_KEYS}


#: The levels that must each show a visible corner for an estimated value to count as "C7 hidden".
UPPER_LEVELS: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6")


def upper_levels_shown(visible: np.ndarray) -> bool:
    """True when every level of :data:`UPPER_LEVELS` has a visible corner in the (K,) ``visible`` mask."""
    vis = np.asarray(visible, dtype=bool)
    return all(bool(vis[list(vertebra_corner_indices(level))].any()) for level in UPPER_LEVELS)


def only_c7_hidden(measurement: Any) -> bool:
    """True when every level of :data:`UPPER_LEVELS` has a visible corner in ``measurement``."""
    by_name = {lm.name: bool(lm.visible) for lm in getattr(measurement, "landmarks", ())}
    return upper_levels_shown(np.array([by_name.get(n, False) for n in LANDMARK_NAMES]))


Row = tuple[float, float, "float | None", "float | None", bool, bool]


def _rows(records: Sequence[Any], key: str) -> list[Row]:
    """(value, reference, low, high, estimated, C7 hidden only) of every successful record with a
    reference."""
    out = []
    for r in records:
        m = getattr(r, "measurement", None)
        ref = r.ref_params.get(key) if r.ok else None
        if m is None or ref is None or not np.isfinite(ref):
            continue
        v = m.parameters.as_dict().get(key)
        iv = (getattr(m, "parameter_intervals", {}) or {}).get(key)
        if v is None:
            out.append((np.nan, float(ref), None, None, False, False))
            continue
        low = None if iv is None else iv.get("low")
        high = None if iv is None else iv.get("high")
        est = bool(iv and iv.get("estimated"))
        out.append((float(v), float(ref), low, high, est, est and only_c7_hidden(m)))
    return out


def _score(rows: list[Row]) -> dict[str, Any]:
    vals = [r for r in rows if np.isfinite(r[0])]
    with_iv = [r for r in vals if r[2] is not None and r[3] is not None]
    err = np.array([abs(r[0] - r[1]) for r in vals])
    cover = np.array([r[2] <= r[1] <= r[3] for r in with_iv], dtype=bool)
    width = np.array([r[3] - r[2] for r in with_iv])
    return {
        "n": len(vals),
        "mae": float(err.mean()) if err.size else None,
        "ci95_coverage_percent": float(100.0 * cover.mean()) if cover.size else None,
        "ci95_mean_width": float(width.mean()) if width.size else None,
    }


def add_interval_metrics(parameters: MutableMapping[str, MutableMapping[str, Any]], records: Sequence[Any]) -> None:
    """Add the interval and estimated-parameter keys (module docstring) to ``parameters[k]``."""
    for k in PARAMETER_KEYS:
        rows = _rows(records, k)
        measured = _score([r for r in rows if not r[4]])
        estimated_rows = [r for r in rows if r[4] and np.isfinite(r[0])]
        estimated = _score(estimated_rows)
        both = _score([r for r in rows if np.isfinite(r[0])])
        both["reported_percent"] = float(100.0 * both["n"] / len(rows)) if rows else None
        p = parameters.setdefault(k, {})
        p["ci95_coverage_percent"] = measured["ci95_coverage_percent"]
        p["ci95_mean_width"] = measured["ci95_mean_width"]
        mae = measured["mae"]
        p["ci95_width_over_mae"] = (measured["ci95_mean_width"] / mae) if mae and measured["ci95_mean_width"] is not None else None
        p["estimated"] = estimated
        p["estimated_c7_hidden"] = _score([r for r in estimated_rows if r[5]])
        p["estimated_levels_out"] = _score([r for r in estimated_rows if not r[5]])
        p["with_estimates"] = both


def quality_flag_counts(records: Sequence[Any]) -> dict[str, int]:
    """How many successful images got each quality flag (``quality_flag_counts`` in the JSON)."""
    counts: dict[str, int] = {}
    for r in records:
        m = getattr(r, "measurement", None)
        for f in (getattr(m, "quality_flags", ()) or ()) if m is not None else ():
            counts[str(f["flag"])] = counts.get(str(f["flag"]), 0) + 1
    return dict(sorted(counts.items()))


def report_lines(metrics: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the interval table for ``report.md`` (empty when nothing was scored)."""
    params = metrics.get("parameters", {})
    if not any("ci95_coverage_percent" in params.get(k, {}) for k in PARAMETER_KEYS):
        return []

    def f(v: Any, d: int = 2) -> str:
        return "–" if v is None else f"{v:.{d}f}"

    lines = ["## Intervals and estimated parameters", "",
             "| parameter | 95 % coverage (measured) | mean width | width / MAE | estimated n | estimated MAE | "
             "estimated coverage | C7 hidden: n, MAE, coverage | reported incl. estimated (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k in PARAMETER_KEYS:
        p = params.get(k, {})
        e = p.get("estimated", {})
        c7 = p.get("estimated_c7_hidden", {})
        w = p.get("with_estimates", {})
        lines.append(f"| {k} | {f(p.get('ci95_coverage_percent'), 1)} | {f(p.get('ci95_mean_width'))} | "
                     f"{f(p.get('ci95_width_over_mae'))} | {e.get('n', 0)} | {f(e.get('mae'))} | "
                     f"{f(e.get('ci95_coverage_percent'), 1)} | {c7.get('n', 0)}, {f(c7.get('mae'))}, "
                     f"{f(c7.get('ci95_coverage_percent'), 1)} | {f(w.get('reported_percent'), 1)} |")
    flags = metrics.get("quality_flag_counts")
    if flags is not None:
        lines += ["", "Quality flags: " + (", ".join(f"{k} {v}" for k, v in flags.items()) if flags else "none")]
    return lines + [""]
