"""The gate: a site model is verified only when ``cervisag verify`` passes on the site's held-out
labelled studies with the chosen thresholds *and* it is no worse there than the model it came from:
its MRE no higher (:data:`MRE_TOLERANCE_MM`) and its share of found landmarks no lower
(:data:`FOUND_TOLERANCE_PCT`), since an MRE alone rewards a model that finds less.

Both models are measured by the runtime (ONNX Runtime, FP32) on the same held-out studies; the
candidate's metrics document is written beside its manifest and its sha256 recorded, so the
manifest says which verification it passed.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...engine.manifest import sha256_file
from ..verify import MeasurerSpec, verify
from ..verify.dataset import VerifyDataset
from ..verify.thresholds import ThresholdSet

logger = logging.getLogger(__name__)

#: the candidate's held-out MRE may exceed the base model's by at most this (mm)
MRE_TOLERANCE_MM = 0.0
#: ... and find at most this many percentage points fewer of the labelled visible landmarks
FOUND_TOLERANCE_PCT = 1.0


def found_percent(metrics: Mapping[str, Any]) -> float | None:
    """Share (%) of the labelled visible landmarks the model found (an MRE counts only those)."""
    n, missed = metrics.get("n_landmarks"), metrics.get("n_missed")
    if n is None or missed is None or n + missed == 0:
        return None
    return 100.0 * n / (n + missed)


@dataclass(frozen=True)
class GateResult:
    """``passed`` only when the thresholds pass and the candidate is no worse than the base."""

    passed: bool
    reasons: tuple[str, ...]
    base: Mapping[str, Any]
    candidate: Mapping[str, Any]
    record: Mapping[str, Any]


def _summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"mre_mm": metrics.get("mre_mm"), "sdr_percent": metrics.get("sdr_percent"),
            "n_images": metrics.get("n_images"), "n_failed": metrics.get("n_failed"),
            "found_percent": found_percent(metrics),
            "mae": {k: v.get("mae") for k, v in (metrics.get("parameters") or {}).items()},
            "icc_pooled": metrics.get("icc_pooled"), "passed_thresholds": metrics.get("passed")}


def thresholds_record(thresholds: ThresholdSet) -> dict[str, Any]:
    """Name, version and the rules of a threshold set, with the sha256 of its canonical JSON."""
    rules = [{"metric": t.metric, "op": t.op, "value": t.value, "tolerance": t.tolerance} for t in thresholds.thresholds]
    text = json.dumps({"name": thresholds.name, "version": thresholds.version, "thresholds": rules}, sort_keys=True)
    return {"name": thresholds.name, "version": thresholds.version, "rules": rules,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def run_gate(candidate_manifest: str | Path, base_manifest: str | Path, heldout: VerifyDataset, thresholds: ThresholdSet,
             out_dir: str | Path, *, threads: int | None = 1, mre_tolerance_mm: float = MRE_TOLERANCE_MM,
             base_metrics: Mapping[str, Any] | None = None) -> GateResult:
    """Verify base and candidate on ``heldout``; write ``verify_base.json`` and
    ``verify_candidate.json`` into ``out_dir``; return the verdict and the manifest record.
    ``base_metrics`` (an earlier base run on the same studies) skips measuring the base again."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if base_metrics is None:
        base_out = verify(heldout, MeasurerSpec(model=str(base_manifest), threads=threads), thresholds)
        base_metrics = dict(base_out.metrics)
    (out / "verify_base.json").write_text(json.dumps(base_metrics, indent=2, allow_nan=False) + "\n")
    cand_out = verify(heldout, MeasurerSpec(model=str(candidate_manifest), threads=threads), thresholds)
    cand_path = out / "verify_candidate.json"
    cand_path.write_text(json.dumps(cand_out.metrics, indent=2, allow_nan=False) + "\n")
    reasons = [f"threshold: {f}" for f in cand_out.failures]
    n_threshold_reasons = len(reasons)
    b_mre, c_mre = base_metrics.get("mre_mm"), cand_out.metrics.get("mre_mm")
    if c_mre is None or b_mre is None:
        reasons.append(f"held-out MRE not measurable (candidate {c_mre}, base {b_mre})")
    elif c_mre > b_mre + mre_tolerance_mm:
        reasons.append(f"held-out MRE {c_mre:.3f} mm is worse than the base model's {b_mre:.3f} mm "
                       f"(allowed +{mre_tolerance_mm:g} mm)")
    b_found, c_found = found_percent(base_metrics), found_percent(cand_out.metrics)
    if b_found is not None and (c_found or 0.0) < b_found - FOUND_TOLERANCE_PCT:
        reasons.append(f"finds {c_found or 0.0:.1f} % of the labelled visible landmarks, worse than the base model's "
                       f"{b_found:.1f} % (allowed -{FOUND_TOLERANCE_PCT:g} points)")
    passed = not reasons
    no_worse = len(reasons) == n_threshold_reasons
    cand_file = Path(candidate_manifest).with_suffix(".onnx")
    record = {
        "passed": passed,
        "no_worse_than_base": no_worse,
        "reason": "; ".join(reasons) if reasons else "thresholds passed and no worse than the base model",
        "model_file": cand_file.name,
        "model_sha256": sha256_file(cand_file) if cand_file.is_file() else None,
        "heldout": {"n_studies": len(heldout.items), "files": [it.file_name for it in heldout.items]},
        "thresholds": thresholds_record(thresholds),
        "criteria": {"thresholds": thresholds.name, "mre_not_worse_than_base_mm": mre_tolerance_mm,
                     "found_percent_not_lower_than_base_by": FOUND_TOLERANCE_PCT},
        "metrics_file": cand_path.name,
        "metrics_sha256": sha256_file(cand_path),
        "base": _summary(base_metrics),
        "candidate": _summary(cand_out.metrics),
    }
    logger.info("gate %s: candidate MRE %s mm, base %s mm", "passed" if passed else "refused", c_mre, b_mre)
    return GateResult(passed, tuple(reasons), base_metrics, dict(cand_out.metrics), record)
