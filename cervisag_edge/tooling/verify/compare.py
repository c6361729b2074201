"""Comparing runs: precision/backend variants against the FP32 reference, and a run against a
saved baseline metrics file. Tolerances come from the threshold file's ``regression_tolerances``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import InputError
from .dataset import PARAMETER_KEYS
from .evaluate import ImageRecord
from .thresholds import RegressionTolerances, lookup, regression_failures

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


def parse_variants(
    values: Sequence[str], default_backend: str, default_precision: str, backends_only: bool = False
) -> list[tuple[str, str]]:
    """``fp16`` → (default_backend, fp16); ``tensorrt:int8`` → (tensorrt, int8); with
    ``backends_only`` a bare word is a backend at ``default_precision``. Duplicates are removed;
    the reference (default backend, fp32) is put first, added when not listed."""
    out: list[tuple[str, str]] = []
    for v in values:
        if ":" in v:
            b, _, p = v.partition(":")
        elif backends_only:
            b, p = v, default_precision
        else:
            b, p = default_backend, v
        b, p = b.strip(), p.strip().lower()
        if not b or not p:
            raise InputError(f"--compare: cannot read the variant {v!r}, expected PRECISION or BACKEND:PRECISION")
        if (b, p) not in out:
            out.append((b, p))
    ref = (default_backend, "fp32") if not backends_only else (default_backend, default_precision)
    if ref in out:
        out.remove(ref)
    return [ref] + out


@dataclass(frozen=True)
class VariantDelta:
    """A variant against the reference run. Shifts are between the two runs' landmarks, over
    the landmarks both found on images both measured; MAE/MRE deltas are variant − reference."""

    label: str
    status: str  # "compared" or "skipped"
    reason: str = ""
    n_images: int = 0
    shift_mean_px: float = float("nan")
    shift_max_px: float = float("nan")
    shift_mean_mm: float = float("nan")
    shift_max_mm: float = float("nan")
    n_detection_changed: int = 0
    mre_delta_mm: float = float("nan")
    mae_delta: Mapping[str, float] = field(default_factory=dict)
    worst_image: str | None = None
    worst_image_shift_mm: float = float("nan")
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "label": self.label,
            "status": self.status,
            "reason": self.reason,
            "n_images": self.n_images,
            "shift_mean_px": num(self.shift_mean_px),
            "shift_max_px": num(self.shift_max_px),
            "shift_mean_mm": num(self.shift_mean_mm),
            "shift_max_mm": num(self.shift_max_mm),
            "n_detection_changed": self.n_detection_changed,
            "mre_delta_mm": num(self.mre_delta_mm),
            "mae_delta": {k: num(v) for k, v in self.mae_delta.items()},
            "worst_image": self.worst_image,
            "worst_image_shift_mm": num(self.worst_image_shift_mm),
            "passed": not self.failures,
            "failures": list(self.failures),
        }


def skipped(label: str, reason: str) -> VariantDelta:
    return VariantDelta(label=label, status="skipped", reason=reason)


def compare_runs(
    label: str,
    ref_records: Sequence[ImageRecord],
    ref_metrics: Mapping[str, Any],
    var_records: Sequence[ImageRecord],
    var_metrics: Mapping[str, Any],
    tolerances: RegressionTolerances,
) -> VariantDelta:
    """Deltas of one variant run against the reference run (same dataset, same item order)."""
    if len(ref_records) != len(var_records):
        raise ValueError(f"runs differ in length: {len(ref_records)} vs {len(var_records)}")
    shifts_px: list[np.ndarray] = []
    shifts_mm: list[np.ndarray] = []
    changed = 0
    n = 0
    worst, worst_mm = None, -1.0
    for a, b in zip(ref_records, var_records):
        if not (a.ok and b.ok) or a.spacing_mm is None:
            continue
        n += 1
        fa = np.all(np.isfinite(a.pred_px), axis=1)
        fb = np.all(np.isfinite(b.pred_px), axis=1)
        changed += int(np.sum(fa != fb))
        both = fa & fb
        d = b.pred_px[both] - a.pred_px[both]
        px = np.hypot(d[:, 0], d[:, 1])
        mm = np.hypot(d[:, 0] * a.spacing_mm[1], d[:, 1] * a.spacing_mm[0])
        shifts_px.append(px)
        shifts_mm.append(mm)
        if mm.size and float(mm.max()) > worst_mm:
            worst, worst_mm = a.file_name, float(mm.max())
    all_px = np.concatenate(shifts_px) if shifts_px else np.zeros(0)
    all_mm = np.concatenate(shifts_mm) if shifts_mm else np.zeros(0)
    nan = float("nan")
    mre_delta = _delta(var_metrics, ref_metrics, "mre_mm")
    mae_delta = {k: _delta(var_metrics, ref_metrics, f"parameters/{k}/mae") for k in PARAMETER_KEYS}
    failures = tuple(regression_failures(var_metrics, ref_metrics, tolerances, label="fp32 reference"))
    return VariantDelta(
        label=label,
        status="compared",
        n_images=n,
        shift_mean_px=float(all_px.mean()) if all_px.size else nan,
        shift_max_px=float(all_px.max()) if all_px.size else nan,
        shift_mean_mm=float(all_mm.mean()) if all_mm.size else nan,
        shift_max_mm=float(all_mm.max()) if all_mm.size else nan,
        n_detection_changed=changed,
        mre_delta_mm=mre_delta,
        mae_delta=mae_delta,
        worst_image=worst,
        worst_image_shift_mm=worst_mm if worst is not None else nan,
        failures=failures,
    )


def _delta(cur: Mapping[str, Any], ref: Mapping[str, Any], path: str) -> float:
    a, b = lookup(cur, path), lookup(ref, path)
    return float("nan") if a is None or b is None else a - b


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A metrics file written earlier by ``cervisag verify --json``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: baseline metrics file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: cannot read baseline metrics: {exc}") from None
    if not isinstance(doc, dict) or "mre_mm" not in doc or "parameters" not in doc:
        raise InputError(f"{p}: not a verify metrics file (keys 'mre_mm' and 'parameters' expected)")
    return doc


def baseline_failures(current: Mapping[str, Any], baseline: Mapping[str, Any], tolerances: RegressionTolerances) -> list[str]:
    """Regressions of ``current`` beyond ``tolerances`` against a baseline metrics document."""
    return [f"regression: {m}" for m in regression_failures(current, baseline, tolerances, label="baseline")]
