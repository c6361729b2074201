"""One verification job end to end: measure, score, check thresholds, compare, baseline.

>>> from cervisag_edge.tooling.verify import load_dataset, load_thresholds, MeasurerSpec, verify
>>> outcome = verify(load_dataset("phantoms/"), MeasurerSpec(), load_thresholds("paper2025"))
>>> outcome.passed, outcome.metrics["mre_mm"]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ...errors import BackendUnavailableError, ModelError
from .compare import VariantDelta, baseline_failures, compare_runs, skipped
from .dataset import VerifyDataset
from .evaluate import ImageRecord, build_records, compute_metrics
from .harness import MeasurerSpec, run_measurements
from .thresholds import CheckResult, ThresholdSet, evaluate

logger = logging.getLogger(__name__)

#: progress(label, done, total, failed)
LabelledProgress = Callable[[str, int, int, int], None]


@dataclass(frozen=True)
class VariantRun:
    """One backend/precision run over the set: its records, metrics and threshold checks."""

    label: str
    spec: MeasurerSpec
    records: tuple[ImageRecord, ...]
    metrics: Mapping[str, Any]
    checks: tuple[CheckResult, ...]


@dataclass(frozen=True)
class VerificationOutcome:
    """``metrics`` is the document written by ``--json`` (of the reference run, with the
    threshold verdict, the comparisons and the baseline check added); ``runs[0]`` is the
    reference run, further runs are the compared variants that could run."""

    metrics: Mapping[str, Any]
    runs: tuple[VariantRun, ...]
    comparisons: tuple[VariantDelta, ...]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reference(self) -> VariantRun:
        return self.runs[0]


def _run_one(
    dataset: VerifyDataset,
    spec: MeasurerSpec,
    thresholds: ThresholdSet,
    workers: int,
    limit: int | None,
    progress: LabelledProgress | None,
    use_ray: bool,
    ray_address: str | None,
) -> VariantRun:
    items = dataset.items[:limit] if limit else dataset.items
    cb = (lambda d, t, f: progress(spec.label, d, t, f)) if progress is not None else None
    results = run_measurements(items, spec, workers=workers, progress=cb, use_ray=use_ray, ray_address=ray_address)
    records = tuple(build_records(items, results))
    metrics = compute_metrics(records)
    first = next((r.measurement for r in records if r.measurement is not None), None)
    metrics["model"] = {
        "id": getattr(first, "model_id", None),
        "sha256": getattr(first, "model_sha256", None),
        "backend": getattr(first, "backend", spec.backend),
        "precision": getattr(first, "precision", spec.precision),
        "requested": spec.model,
        "stages": 2 if first is not None and "refine_ms" in first.timings_ms else 1,
    }
    refine_ms = [r.measurement.timings_ms["refine_ms"] for r in records
                 if r.measurement is not None and "refine_ms" in r.measurement.timings_ms]
    if refine_ms:
        metrics["model"]["refine_ms_median"] = float(sorted(refine_ms)[len(refine_ms) // 2])
    metrics["backend"] = metrics["model"]["backend"]
    metrics["precision"] = metrics["model"]["precision"]
    checks = evaluate(thresholds, metrics)
    return VariantRun(spec.label, spec, records, metrics, checks)


def verify(
    dataset: VerifyDataset,
    spec: MeasurerSpec,
    thresholds: ThresholdSet,
    *,
    workers: int = 1,
    limit: int | None = None,
    variants: Sequence[tuple[str, str]] = (),
    baseline: Mapping[str, Any] | None = None,
    progress: LabelledProgress | None = None,
    use_ray: bool = False,
    ray_address: str | None = None,
) -> VerificationOutcome:
    """Run the whole verification. ``variants`` (from :func:`compare.parse_variants`) lists
    (backend, precision) with the reference first; when empty only ``spec`` runs. A variant
    whose backend or engine is unavailable is reported as skipped. Every failed image, threshold,
    variant tolerance and baseline regression is a line of ``failures``."""
    specs = [spec.with_variant(b, p) for b, p in variants] if variants else [spec]
    ref = _run_one(dataset, specs[0], thresholds, workers, limit, progress, use_ray, ray_address)
    runs = [ref]
    comparisons: list[VariantDelta] = []
    for vspec in specs[1:]:
        try:
            run = _run_one(dataset, vspec, thresholds, workers, limit, progress, use_ray, ray_address)
        except (BackendUnavailableError, ModelError) as exc:
            logger.warning("variant %s skipped: %s", vspec.label, exc)
            comparisons.append(skipped(vspec.label, str(exc)))
            continue
        runs.append(run)
        comparisons.append(
            compare_runs(vspec.label, ref.records, ref.metrics, run.records, run.metrics, thresholds.tolerances)
        )

    failures: list[str] = []
    # failed images fail the run unless the threshold file states its own rule on n_failed
    implicit_ok = any(t.metric == "n_failed" for t in thresholds.thresholds)
    for run in runs:
        prefix = f"{run.label}: " if len(runs) > 1 else ""
        n_failed = run.metrics["n_failed"]
        if n_failed and not implicit_ok:
            failures.append(f"{prefix}{n_failed} of {run.metrics['n_images']} images failed")
        failures += [f"{prefix}{c.message()} ({thresholds.name})" for c in run.checks if not c.passed]
    for comp in comparisons:
        failures += [f"{comp.label} vs fp32 reference: {m}" for m in comp.failures]
    if baseline is not None:
        failures += baseline_failures(ref.metrics, baseline, thresholds.tolerances)

    doc = dict(ref.metrics)
    doc["thresholds"] = {
        "name": thresholds.name,
        "version": thresholds.version,
        "source": thresholds.source,
        "checks": [
            {"metric": c.threshold.metric, "op": c.threshold.op, "value": c.threshold.value,
             "tolerance": c.threshold.tolerance, "actual": c.actual, "passed": c.passed}
            for c in ref.checks
        ],
    }
    doc["comparisons"] = [c.to_dict() for c in comparisons]
    doc["variants"] = {r.label: {k: r.metrics.get(k) for k in ("mre_mm", "sdr_percent", "icc_pooled", "n_failed")}
                       for r in runs[1:]}
    doc["baseline_checked"] = baseline is not None
    doc["passed"] = not failures
    doc["failures"] = failures
    return VerificationOutcome(doc, tuple(runs), tuple(comparisons), tuple(failures))
