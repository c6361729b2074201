"""Turning measurements and references into the metrics document of ``cervisag verify``.

Shapes: per image, ``pred_px``/``ref_px`` are (34, 2) pixel (x, y), NaN where absent;
``errors_mm`` is (34,) as in :func:`metrics.radial_errors_mm`. The keys of :func:`compute_metrics`
are documented in ``docs/verify.md``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ...core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from . import metrics as M
from .dataset import PARAMETER_KEYS, VerifyItem, reference_parameters
from ...runner import StudyResult
from .intervals import add_interval_metrics, measured_values, quality_flag_counts

logger = logging.getLogger(__name__)

METRICS_SCHEMA = "cervisag-verify/1"


@dataclass(frozen=True)
class ImageRecord:
    """One image of a run; ``error`` set (and the arrays NaN) when it failed."""

    image_id: int
    file_name: str
    path: str
    error: str | None
    pred_px: np.ndarray  # (34, 2)
    ref_px: np.ndarray  # (34, 2)
    visibility: np.ndarray  # (34,)
    spacing_mm: tuple[float, float] | None  # (row, column)
    errors_mm: np.ndarray  # (34,)
    pred_params: Mapping[str, float | None]
    ref_params: Mapping[str, float | None]
    measurement: Any = None
    ref_all_px: np.ndarray | None = None  # (34, 2) every annotated position, also out of frame (NaN unknown)
    image_size_px: tuple[int, int] | None = None  # (width, height)
    #: parameter → its landmarks are all visible (v = 2) in the reference (coverage denominator)
    params_eligible: Mapping[str, bool] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _nan_params() -> dict[str, float | None]:
    return {k: None for k in PARAMETER_KEYS}


def build_records(items: Sequence[VerifyItem], results: Sequence[StudyResult]) -> list[ImageRecord]:
    """Pair each item with its result; an image without a usable pixel spacing or reference
    becomes a failed record too."""
    if len(items) != len(results):
        raise ValueError(f"{len(items)} items but {len(results)} results")
    out = []
    for it, res in zip(items, results):
        nan_pts = np.full((NUM_LANDMARKS, 2), np.nan)
        error = res.error
        m = res.measurement
        spacing = it.pixel_spacing_mm
        pred = nan_pts
        pred_params: Mapping[str, float | None] = _nan_params()
        ref_params: Mapping[str, float | None] = _nan_params()
        if error is None and m is not None:
            if spacing is None and m.pixel_spacing_mm is not None:
                spacing = (float(m.pixel_spacing_mm[0]), float(m.pixel_spacing_mm[1]))
            if spacing is None:
                error = "no pixel spacing: the annotation has no pixel_spacing_mm and the image none either"
            else:
                pred = np.asarray(m.landmarks_px(), dtype=np.float64)
                pred_params = measured_values(m)  # estimated values are scored apart (verify/intervals.py)
                try:
                    ref_params = reference_parameters(it, spacing)
                except Exception as exc:  # reference geometry failing is reported per image
                    error = f"reference parameters: {type(exc).__name__}: {exc}"
        labelled = it.visibility > 0
        if error is None:
            errs = M.radial_errors_mm(pred[None], it.keypoints_px[None], np.array([spacing]), labelled[None])[0]
        else:
            errs = np.full(NUM_LANDMARKS, np.nan)
            pred = nan_pts
        size = (int(it.width), int(it.height)) if it.width > 0 and it.height > 0 else (
            tuple(int(v) for v in m.image_size_px) if m is not None else None)
        out.append(
            ImageRecord(
                image_id=it.image_id,
                file_name=it.file_name,
                path=it.path,
                error=error,
                pred_px=pred,
                ref_px=it.keypoints_px,
                visibility=it.visibility,
                spacing_mm=spacing,
                errors_mm=errs,
                pred_params=pred_params,
                ref_params=ref_params,
                measurement=m if error is None else None,
                ref_all_px=it.all_keypoints_px if it.all_keypoints_px is not None else it.keypoints_px,
                image_size_px=size,  # type: ignore[arg-type]
                params_eligible=visible_parameters(it.keypoints_px, it.visibility, spacing) if error is None else None,
            )
        )
    return out


def visible_parameters(ref_px: np.ndarray, visibility: np.ndarray, spacing_mm: tuple[float, float] | None) -> dict[str, bool]:
    """Parameter → whether the reference's visible (v = 2) landmarks alone define it, i.e. every
    landmark it needs is visible (the rule is :func:`compute_parameters`' own)."""
    from ...core.parameters import compute_parameters

    sp = spacing_mm or (1.0, 1.0)
    pts = np.where((np.asarray(visibility) == 2)[:, None], np.asarray(ref_px, dtype=np.float64), np.nan)
    try:
        d = compute_parameters(pts * np.array([sp[1], sp[0]])).as_dict()
    except ValueError:  # e.g. too few visible landmarks to tell the facing
        return {k: False for k in PARAMETER_KEYS}
    return {k: d.get(k) is not None for k in PARAMETER_KEYS}


def _reported_any(record: ImageRecord, key: str) -> bool:
    """Whether the record's measurement reported ``key`` at all (estimated values included)."""
    m = getattr(record, "measurement", None)
    return m is not None and m.parameters.as_dict().get(key) is not None


def framing_metrics(records: Sequence[ImageRecord]) -> dict[str, Any]:
    """Level assignment, out-of-frame false positives and per-parameter coverage of the
    successful records (keys documented in ``docs/verify.md``)."""
    from ...core.landmarks import VERTEBRAE, vertebra_corner_indices

    ok = [r for r in records if r.ok]
    idx = np.array([vertebra_corner_indices(v) for v in VERTEBRAE])  # (V, 4)
    n = len(ok)
    sp = np.array([[r.spacing_mm[1], r.spacing_mm[0]] if r.spacing_mm else [1.0, 1.0] for r in ok]).reshape(n, 1, 1, 2)
    pred = np.array([r.pred_px for r in ok]).reshape(n, NUM_LANDMARKS, 2)
    ref = np.array([r.ref_px for r in ok]).reshape(n, NUM_LANDMARKS, 2)
    full = np.array([r.ref_all_px if r.ref_all_px is not None else r.ref_px for r in ok]).reshape(n, NUM_LANDMARKS, 2)
    vis = np.array([r.visibility for r in ok]).reshape(n, NUM_LANDMARKS)
    levels = M.level_assignment(pred[:, idx] * sp, ref[:, idx] * sp, vis[:, idx], full[:, idx] * sp)
    sized = [i for i, r in enumerate(ok) if r.image_size_px is not None]
    reported = np.all(np.isfinite(pred), axis=-1)
    sizes = np.array([ok[i].image_size_px for i in sized]).reshape(len(sized), 2)
    oof_vis, oof = M.out_of_frame_reported_visible(reported[sized], full[sized], vis[sized], sizes)
    unexp_vis, unexp = M.unexposed_reported_visible(reported[sized], full[sized], vis[sized], sizes)
    coverage: dict[str, dict[str, Any]] = {}
    for k in PARAMETER_KEYS:
        elig = np.array([bool(r.params_eligible and r.params_eligible.get(k)) for r in ok], dtype=bool)
        rep = np.array([r.pred_params.get(k) is not None for r in ok], dtype=bool)
        pct, n_rep, n_elig = M.coverage_percent(rep, elig)
        # with estimates: any value reported (measured, or flagged estimated because a landmark
        # that the reference shows fell below the visibility rule)
        rep_any = rep | np.array([_reported_any(r, k) for r in ok], dtype=bool)
        pct_any, n_any, _ = M.coverage_percent(rep_any, elig)
        coverage[k] = {"coverage_percent": pct, "n_coverage_reported": n_rep, "n_coverage_eligible": n_elig,
                       "coverage_with_estimates_percent": pct_any, "n_coverage_reported_with_estimates": n_any}
    return {
        "level_accuracy_percent": levels.percent,
        "level_assignment": levels.to_dict(),
        "out_of_frame_reported_visible": oof_vis,
        "n_out_of_frame": oof,
        "unexposed_reported_visible": unexp_vis,
        "n_unexposed": unexp,
        "coverage": coverage,
    }


def _clean(v: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python, recursively."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if np.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def param_arrays(records: Sequence[ImageRecord]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(pred, ref) per parameter: (N_ok,) arrays over the successful images, NaN for None."""
    ok = [r for r in records if r.ok]

    def arr(side: str, key: str) -> np.ndarray:
        vals = [getattr(r, side).get(key) for r in ok]
        return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)

    return ({k: arr("pred_params", k) for k in PARAMETER_KEYS}, {k: arr("ref_params", k) for k in PARAMETER_KEYS})


def compute_metrics(records: Sequence[ImageRecord], radii_mm: Sequence[float] = M.SDR_RADII_MM) -> dict[str, Any]:
    """The metrics document (JSON-ready, NaN written as null) of one run."""
    ok = [r for r in records if r.ok]
    errs = np.array([r.errors_mm for r in ok]).reshape(len(ok), NUM_LANDMARKS)
    vis = np.array([r.visibility for r in ok]).reshape(len(ok), NUM_LANDMARKS)
    # The headline figures are over the visible labelled landmarks (v = 2), as a reader would place
    # them; landmarks labelled but hidden (v = 1, e.g. behind the shoulders) are scored on their
    # own, since the runtime is meant to report them as not visible rather than guess.
    all_labelled = M.error_stats(errs, radii_mm)
    visible = M.error_stats(np.where(vis == 2, errs, np.nan), radii_mm)
    hidden = M.error_stats(np.where(vis == 1, errs, np.nan), radii_mm)
    overall = visible
    vis_errs = np.where(vis == 2, errs, np.nan)
    per_landmark = {name: M.error_stats(vis_errs[:, k], radii_mm).to_dict() for k, name in enumerate(LANDMARK_NAMES)}

    pred, ref = param_arrays(records)
    params: dict[str, Any] = {}
    for k in PARAMETER_KEYS:
        a = M.agreement(pred[k], ref[k]).to_dict()
        a["n_unavailable"] = int(np.sum(~np.isfinite(pred[k]) & np.isfinite(ref[k])))
        params[k] = a
    add_interval_metrics(params, records)
    pooled = M.pooled_icc(pred, ref)
    framing = framing_metrics(records)
    for k, cov in framing.pop("coverage").items():
        params[k].update(cov)
    doc: dict[str, Any] = {
        "schema": METRICS_SCHEMA,
        "n_images": len(records),
        "n_failed": len(records) - len(ok),
        "failed_images": [{"file_name": r.file_name, "error": r.error} for r in records if not r.ok],
        "n_landmarks": overall.n,
        "n_missed": overall.n_missed,
        "mre_mm": overall.mean_mm,
        "sd_mm": overall.sd_mm,
        "median_mm": overall.median_mm,
        "p95_mm": overall.p95_mm,
        "max_mm": overall.max_mm,
        "sdr_percent": overall.sdr_percent,
        "landmarks_scored": "visible (v = 2)",
        "visible": visible.to_dict(),
        "hidden": hidden.to_dict(),
        "all_labelled": all_labelled.to_dict(),
        "per_landmark": per_landmark,
        "parameters": params,
        "icc_pooled": pooled.icc,
        "icc_pooled_ci95": [pooled.ci_low, pooled.ci_high],
        **framing,
        "quality_flag_counts": quality_flag_counts(records),
    }
    return _clean(doc)


def worst_records(records: Sequence[ImageRecord], count: int = 5) -> list[ImageRecord]:
    """The ``count`` successful images with the largest mean radial error (missed landmarks first)."""

    def key(r: ImageRecord) -> tuple[int, float]:
        e = r.errors_mm[~np.isnan(r.errors_mm)]
        missed = int(np.sum(np.isinf(e)))
        finite = e[np.isfinite(e)]
        return missed, float(finite.mean()) if finite.size else 0.0

    ok = [r for r in records if r.ok]
    return sorted(ok, key=key, reverse=True)[:count]
