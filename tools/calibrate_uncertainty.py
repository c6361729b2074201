"""Fit the uncertainty calibration of a model on held-out phantoms and write it into its manifest(s).

Usage (phantom sets made with ``cervisag phantoms DIR --count N --seed S``; never seed 777, the
test set)::

    python tools/calibrate_uncertainty.py --data /tmp/cal --manifest engines/cervisag_unet.json \
        [--manifest engines/cervisag_unet.fp16.json ...] [--cache /tmp/cal.npz] [--write]

Steps (``docs/uncertainty.md``):

1. Run the model on every image (read → preprocess → infer → decode → refine → shape-consistency check, as the
   Measurer does; the check is the one this run writes: ``--consistency-d2``, ``--consistency-sd-mm``,
   ``--no-consistency``) and keep
   per landmark its position, confidence, visibility and raw heatmap spread (cached with ``--cache``).
2. Landmark level: maximise the 2-D Gaussian likelihood of the visible landmarks' errors (within
   5 mm; larger ones are level confusions, left to step 4) over ``scale``, ``floor_mm`` and
   ``confidence_power``.
3. Estimated landmarks: ``estimated_scale`` from the weak-peak corners and, with a shape model
   (``--shape-model`` or the one the manifest names), ``shape_cov_scale`` for its conditional
   covariance (else ``extrapolated_sd_mm`` for the neighbour extrapolation), so that the median
   normalised squared error is that of a χ²₂ variable.
4. Parameters: ``parameter_scale[k]`` (and ``parameter_scale_estimated[k]``) = the 95th percentile of
   |error| / propagated SD, divided by 1.96, so that the 95 % intervals cover 95 % of the images
   (1 with fewer than 10 values; at least 1 with fewer than 30: few values never narrow them).

The consistency check goes into ``extra.uncertainty.consistency``; ``fit.consistency`` records what it
rejected on the calibration set (how many rejected corners lay within 2 mm of the truth: correct
ones lost, and how many beyond 5 mm: level slips caught). Without ``--write`` it prints the
calibration and its fit statistics as JSON only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("calibrate_uncertainty")

MAX_FIT_ERROR_MM = 5.0
#: A parameter's SD factor needs this many calibration values (else 1) …
MIN_SCALE_VALUES = 10
#: … and below this many it may widen the intervals but never narrow them (factor ≥ 1).
FEW_SCALE_VALUES = 30


def collect(data_dirs: list[str], manifest: str, limit: int | None, consistency: Any = "manifest") -> dict[str, np.ndarray]:
    """Run the model over the sets; arrays stacked over N images (shapes in the keys' comments).
    ``consistency``: the shape-consistency check to apply (a
    :class:`~cervisag_edge.core.consistency.ConsistencyCheck` or None); ``"manifest"``: the manifest's own."""
    from cervisag_edge.io import read_image
    from cervisag_edge.core.measurer import Measurer
    from cervisag_edge.core.uncertainty import spread_mm2
    from cervisag_edge.tooling.verify.dataset import load_dataset

    m = Measurer(model=manifest, threads=None)
    if consistency != "manifest":
        m.consistency = consistency
    rows: dict[str, list[Any]] = {k: [] for k in ("pts", "conf", "vis", "inside", "spread", "spacing", "truth", "labelled",
                                                   "ref", "size", "refined", "rejected")}
    from cervisag_edge.core.parameters import PARAMETER_NAMES

    for folder in data_dirs:
        ds = load_dataset(folder)
        doc = json.loads((Path(folder) / "annotations.json").read_text())
        full = {im["id"]: im for im in doc["images"]}
        items = ds.items[:limit] if limit else ds.items
        for n, it in enumerate(items):
            img = read_image(it.path, resize_to=m.resize_size)  # as Measurer.measure reads it
            x, tf = m.preprocess_image(img)
            hm = m.backend.infer(x)[0]
            loc = m.locate(img, hm, tf)  # both stages and the checks, the runtime's own steps
            pts, conf, vis = loc.landmarks_px, loc.confidence, loc.visible
            refined = loc.refined if loc.refined is not None else np.zeros(len(pts), dtype=bool)
            sp = img.pixel_spacing_mm or it.pixel_spacing_mm
            rows["rejected"].append(loc.reported & ~vis)
            im = full[it.image_id]
            rows["pts"].append(pts)  # (34, 2) px
            rows["conf"].append(conf)
            rows["vis"].append(vis)
            rows["inside"].append(tf.inside_original(pts))
            rows["spread"].append(spread_mm2(hm, m.codec, tf, sp))  # (34, 2, 2) mm²
            rows["spacing"].append(sp)
            rows["truth"].append(np.array(im["landmarks_px"], dtype=np.float64))  # every landmark, also out of frame
            rows["labelled"].append(it.visibility)
            rows["ref"].append([np.nan if im["parameters"].get(k) is None else im["parameters"][k] for k in PARAMETER_NAMES])
            rows["size"].append(img.size_px)
            rows["refined"].append(refined)
            if (n + 1) % 20 == 0:
                logger.info("%s: %d/%d", folder, n + 1, len(items))
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}


def consistency_stats(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the shape-consistency check rejected on the calibration set: the rejected corners'
    errors (against the true positions) and how many of them were right (under 2 mm)."""
    rej = data["rejected"].astype(bool) if "rejected" in data else np.zeros(data["vis"].shape, dtype=bool)
    mm = data["spacing"][:, None, ::-1]  # (N, 1, 2) (col, row) = (x, y) mm per px
    err = np.linalg.norm((data["pts"] - data["truth"]) * mm, axis=-1)
    e = err[rej]
    return {"n_rejected": int(rej.sum()), "n_visible_before": int((data["vis"].astype(bool) | rej).sum()),
            "rejected_under_2mm": int((e < 2.0).sum()), "rejected_over_5mm": int((e > 5.0).sum()),
            "rejected_error_mm": sorted(round(float(v), 2) for v in e),
            "labelled_visible_rejected": int((rej & (data["labelled"] == 2)).sum())}


def _nll(e: np.ndarray, spread: np.ndarray, conf: np.ndarray, s: float, f: float, p: float,
         g: np.ndarray | float = 1.0) -> float:
    """Mean negative log-likelihood of errors e (n, 2) mm under the landmark model (``g`` (n,):
    the edge term's SD factors)."""
    c = conf
    cov = (spread * (s**2 / c**p)[:, None, None] + f**2 * np.eye(2)) * (np.broadcast_to(g, c.shape) ** 2)[:, None, None]
    a, b, d = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
    det = a * d - b * b
    q = (d * e[:, 0] ** 2 - 2 * b * e[:, 0] * e[:, 1] + a * e[:, 1] ** 2) / det
    return float(np.mean(0.5 * q + 0.5 * np.log(det)))


def _edge_mm(data: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) each decoded landmark's distance to the image border in mm (as the runtime computes it)."""
    from cervisag_edge.core.uncertainty import edge_distance_mm

    return np.stack([edge_distance_mm(p, tuple(int(v) for v in sz), tuple(sp))
                     for p, sz, sp in zip(data["pts"], data["size"], data["spacing"])])


#: Edge-term grid: the band width (mm; 0 = no edge term) and the SD factor at the border.
EDGE_MM_GRID = (0.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0)
EDGE_SCALE_GRID = tuple(np.round(np.geomspace(1.0, 5.0, 33), 4))


def _fit_first_stage(e: np.ndarray, spread: np.ndarray, conf: np.ndarray, g: np.ndarray | float) -> tuple[float, float, float, float]:
    """(NLL, scale, floor_mm, confidence_power) by grid search, for edge factors ``g``."""
    best = (np.inf, 1.0, 0.3, 0.0)
    for p in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        for s in np.geomspace(0.02, 3.0, 40):
            for f in np.linspace(0.0, 1.0, 21):
                v = _nll(e, spread, conf, s, f, p, g)
                if v < best[0]:
                    best = (v, s, f, p)
    return best


def fit_landmarks(data: dict[str, np.ndarray]) -> dict[str, float]:
    """Grid search of (scale, floor_mm, confidence_power) on visible landmarks within 5 mm, the
    refined corners' own scale, then the edge term (``edge_mm``, ``edge_scale``) on both; the
    scales and the edge term are fitted in turn, three rounds (the edge term is kept only if it
    lowers the likelihood's NLL and at least 30 landmarks lie in its band)."""
    from cervisag_edge.core.uncertainty import UncertaintyCalibration, edge_factor

    mm = data["spacing"][:, None, ::-1]  # (N, 1, 2) column, row spacing
    e = ((data["pts"] - data["truth"]) * mm).reshape(-1, 2)
    vis = data["vis"].reshape(-1).astype(bool)
    ok = vis & np.all(np.isfinite(e), axis=1) & (np.hypot(e[:, 0], e[:, 1]) < MAX_FIT_ERROR_MM)
    refined = _refined(data).reshape(-1)
    edge_all = _edge_mm(data).reshape(-1)
    sel_r = ok & refined  # the second stage's corners: their own scale, same floor and power
    sel = ok & ~refined  # the first stage's own landmarks
    e_r, spread_r, conf_r, edge_r = e[sel_r], data["spread"].reshape(-1, 2, 2)[sel_r], data["conf"].reshape(-1)[sel_r], edge_all[sel_r]
    e, spread, conf, edge = e[sel], data["spread"].reshape(-1, 2, 2)[sel], data["conf"].reshape(-1)[sel], edge_all[sel]
    use_r = len(e_r) >= 30
    n_all = len(e) + (len(e_r) if use_r else 0)

    def round_(band: float, factor: float) -> tuple[float, dict[str, float]]:
        cal = UncertaintyCalibration(edge_mm=band, edge_scale=factor)
        g, g_r = edge_factor(edge, cal), edge_factor(edge_r, cal)
        v1, s1, f1, p1 = _fit_first_stage(e, spread, conf, g)
        fit = {"scale": float(s1), "floor_mm": float(f1), "confidence_power": float(p1), "nll": float(v1), "refined_scale": None}
        total = v1 * len(e)
        if use_r:
            v2, s2 = min((_nll(e_r, spread_r, conf_r, x, f1, p1, g_r), x) for x in np.geomspace(0.005, 3.0, 80))
            fit.update(refined_scale=float(s2), nll_refined=float(v2))
            total += v2 * len(e_r)
        return total / max(n_all, 1), fit

    def edge_search(fit: dict[str, float]) -> tuple[float, float, float]:
        best = (np.inf, 0.0, 1.0)
        for band in EDGE_MM_GRID[1:]:
            for factor in EDGE_SCALE_GRID[1:]:
                cal = UncertaintyCalibration(edge_mm=band, edge_scale=factor)
                v = _nll(e, spread, conf, fit["scale"], fit["floor_mm"], fit["confidence_power"], edge_factor(edge, cal)) * len(e)
                if use_r:
                    v += _nll(e_r, spread_r, conf_r, fit["refined_scale"], fit["floor_mm"], fit["confidence_power"],
                              edge_factor(edge_r, cal)) * len(e_r)
                if v / max(n_all, 1) < best[0]:
                    best = (v / max(n_all, 1), band, factor)
        return best

    nll0, fit0 = round_(0.0, 1.0)
    band, factor, nll_e, fit_e = 0.0, 1.0, nll0, fit0
    for _ in range(3):
        _, band, factor = edge_search(fit_e)
        nll_e, fit_e = round_(band, factor)
    n_edge = int(np.sum(edge < band) + (np.sum(edge_r < band) if use_r else 0))
    keep = nll_e < nll0 and n_edge >= 30
    fit = fit_e if keep else fit0
    iso = min(_nll(e, np.zeros_like(spread), conf, 0.0, g, 0.0) for g in np.linspace(0.05, 2.0, 80))
    out = {**fit, "nll_constant_sd": float(iso), "n_landmarks": int(len(e)), "n_refined": int(len(e_r)),
           "edge_mm": float(band) if keep else 0.0, "edge_scale": float(factor) if keep else 1.0,
           "n_edge_band": n_edge, "nll_total_without_edge_term": float(nll0), "nll_total_with_edge_term": float(nll_e)}
    logger.info("landmarks: %d errors, scale %.4f, floor %.2f mm, power %.0f (constant SD NLL %.3f); refined corners: %d, scale %s",
                len(e), out["scale"], out["floor_mm"], out["confidence_power"], iso, len(e_r), out["refined_scale"])
    logger.info("edge term: band %.1f mm, factor %.2f (%d landmarks in the band), NLL %.4f -> %.4f%s",
                band, factor, n_edge, nll0, nll_e, "" if keep else " (not kept)")
    return out


def _refined(data: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) bool: corners the second stage moved (all False in a cache made without one)."""
    r = data.get("refined")
    return np.zeros(data["conf"].shape, dtype=bool) if r is None else np.asarray(r, dtype=bool)


def _size(data: dict[str, np.ndarray], i: int) -> tuple[int, int]:
    """Image i's (W, H) in px."""
    return int(data["size"][i][0]), int(data["size"][i][1])


def run_images(data: dict[str, np.ndarray], cal: Any, estimates: bool = True) -> list[Any]:
    """:func:`cervisag_edge.core.uncertainty.uncertain_parameters` on every cached image, from the
    measured parameters as the Measurer computes them (all None when no geometry can be)."""
    from cervisag_edge.core.parameters import facing_hint, parameters_from_px
    from cervisag_edge.core.uncertainty import uncertain_parameters

    out = []
    for i in range(len(data["pts"])):
        sp = tuple(data["spacing"][i])
        vis = data["vis"][i].astype(bool)
        try:
            hint = facing_hint(data["pts"][i], data["conf"][i], data["inside"][i].astype(bool))
            measured, _, _ = parameters_from_px(data["pts"][i], vis, sp, facing_hint=hint)
            res = uncertain_parameters(data["pts"][i], data["conf"][i], vis, data["inside"][i].astype(bool),
                                       data["spread"][i], sp, measured, cal, estimates=estimates, refined=_refined(data)[i],
                                       image_size_px=_size(data, i))
        except ValueError:
            res = None
        out.append(res)
    return out


def _estimates(data: dict[str, np.ndarray], cal: Any):
    """Per image: (mm (2,), measured covariance (K, 2, 2) mm², the estimate) for every cached image."""
    from cervisag_edge.core.estimation import estimate_landmarks
    from cervisag_edge.core.parameters import facing_hint
    from cervisag_edge.core.uncertainty import image_covariance

    for i in range(len(data["pts"])):
        sp = data["spacing"][i]
        mm = np.array([sp[1], sp[0]])
        cov = image_covariance(data["pts"][i], data["spread"][i], data["conf"][i], tuple(sp), cal, refined=_refined(data)[i],
                               image_size_px=_size(data, i))
        unit = float(np.sqrt(sp[0] * sp[1]))
        inside = data["inside"][i].astype(bool)
        est = estimate_landmarks(data["pts"][i], data["conf"][i], data["vis"][i].astype(bool), inside,
                                 cov / (mm[:, None] * mm[None, :])[None], cal, px_per_mm=1.0 / unit,
                                 facing_hint=facing_hint(data["pts"][i], data["conf"][i], inside))
        yield i, mm, cov, est


def fit_estimates(data: dict[str, np.ndarray], cal: Any) -> dict[str, float]:
    """``estimated_scale`` and ``extrapolated_sd_mm`` (neighbour extrapolation) or
    ``estimated_scale`` and ``shape_cov_scale`` (shape model) from the estimated corners' errors."""
    if cal.shape_model is not None:
        return _fit_model_estimates(data, cal)
    q_peak, e2_ext = [], []
    for i, mm, cov, est in _estimates(data, cal):
        for k in np.flatnonzero(est.mask):
            e = (est.points_px[k] - data["truth"][i][k]) * mm
            if not np.all(np.isfinite(e)):
                continue
            if est.kind[k] == "peak":
                c = cov[k]  # unscaled measured covariance
                q_peak.append(float(e @ np.linalg.solve(c, e)))
            else:
                e2_ext.append(float(e @ e) / 2.0 / est.steps[k] ** 2)
    q = np.array(q_peak)
    e2 = np.array(e2_ext)
    # robust: the median of a χ²₂ variable is 2·ln 2
    est_scale = float(np.sqrt(np.median(q) / (2 * np.log(2)))) if q.size else cal.estimated_scale
    ext_sd = float(np.sqrt(np.median(e2) / np.log(2))) if e2.size else cal.extrapolated_sd_mm
    logger.info("estimated: %d peak corners (scale %.2f), %d extrapolated (sd %.2f mm per level)", q.size, est_scale, e2.size, ext_sd)
    return {"estimated_scale": max(est_scale, 1.0), "extrapolated_sd_mm": ext_sd, "n_peak": int(q.size), "n_extrapolated": int(e2.size)}


def _fit_model_estimates(data: dict[str, np.ndarray], cal: Any) -> dict[str, float]:
    """Shape model: ``estimated_scale`` from the raw errors of the weak peaks it used (measured
    covariance), then ``shape_cov_scale`` s so that the estimated corners' normalised squared
    errors under s²·C + typical (C: the conditional covariance) have the χ²₂ median 2 ln 2.
    Both are robust (medians) and iterated twice, since the peak gate depends on them."""
    med = 2 * np.log(2)
    for _ in range(2):
        q_peak: list[float] = []
        errs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (e mm, C mm², typical mm²)
        s_old = cal.shape_cov_scale
        for i, mm, cov, est in _estimates(data, cal):
            vis = data["vis"][i].astype(bool)
            typical = np.mean(cov[vis], axis=0) if vis.any() else np.zeros((2, 2))
            to_mm2 = mm[:, None] * mm[None, :]
            for k in np.flatnonzero(est.mask):
                t = data["truth"][i][k]
                e = (est.points_px[k] - t) * mm
                if not np.all(np.isfinite(e)):
                    continue
                if est.kind[k] == "peak":
                    raw = (data["pts"][i][k] - t) * mm
                    q_peak.append(float(raw @ np.linalg.solve(cov[k], raw)))
                cond = (est.cov_px2[k] * to_mm2 - typical) / max(s_old**2, 1e-12)
                errs.append((e, cond, typical))
        est_scale = max(float(np.sqrt(np.median(q_peak) / med)), 1.0) if q_peak else cal.estimated_scale

        def median_q(s: float) -> float:
            return float(np.median([e @ np.linalg.solve(s * s * c + t, e) for e, c, t in errs]))

        grid = np.geomspace(0.3, 10.0, 60)
        qs = np.array([median_q(g) for g in grid]) if errs else np.array([])
        shape_scale = float(grid[int(np.argmin(np.abs(qs - med)))]) if errs else cal.shape_cov_scale
        cal = dataclasses.replace(cal, estimated_scale=est_scale, shape_cov_scale=shape_scale)
    logger.info("estimated (shape model): %d peak corners (scale %.2f), %d corners (conditional scale %.2f)",
                len(q_peak), est_scale, len(errs), shape_scale)
    return {"estimated_scale": est_scale, "shape_cov_scale": shape_scale, "n_peak": len(q_peak), "n_estimated": len(errs)}


def fit_parameters(data: dict[str, np.ndarray], cal: Any) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Per-parameter SD factors (measured, estimated) so that 95 % of intervals cover the truth."""
    from cervisag_edge.core.parameters import PARAMETER_NAMES

    results = run_images(data, cal)
    z: dict[tuple[str, bool], list[float]] = {(k, e): [] for k in PARAMETER_NAMES for e in (False, True)}
    for res, ref in zip(results, data["ref"]):
        if res is None:
            continue
        vals = res.parameters.as_dict()
        for j, k in enumerate(PARAMETER_NAMES):
            sd = res.intervals.sd.get(k)
            if vals.get(k) is None or sd is None or not np.isfinite(ref[j]) or sd <= 0:
                continue
            z[(k, bool(res.intervals.estimated[k]))].append(abs(vals[k] - ref[j]) / sd)
    scale: dict[str, float] = {}
    scale_est: dict[str, float] = {}
    stats: dict[str, Any] = {}
    for k in PARAMETER_NAMES:
        for est, target in ((False, scale), (True, scale_est)):
            arr = np.array(z[(k, est)])
            target[k] = float(np.quantile(arr, 0.95) / 1.959963984540054) if arr.size >= MIN_SCALE_VALUES else 1.0
            if arr.size < FEW_SCALE_VALUES:  # too few values to narrow the intervals on
                target[k] = max(target[k], 1.0)
            stats[f"{k}{'_estimated' if est else ''}"] = {"n": int(arr.size), "factor": target[k]}
    return scale, scale_est, stats


def evaluate(data: dict[str, np.ndarray], cal: Any) -> dict[str, Any]:
    """Coverage, mean width, width / MAE and MAE of the intervals: measured, estimated, and the
    estimated values of images whose levels C2…C6 each show a visible corner (only C7 hidden; the
    rule of ``cervisag verify``'s ``estimated_c7_hidden``)."""
    from cervisag_edge.core.parameters import PARAMETER_NAMES
    from cervisag_edge.tooling.verify.intervals import upper_levels_shown

    results = run_images(data, cal)
    c7_only = [upper_levels_shown(v.astype(bool)) for v in data["vis"]]  # C2…C6 each show a corner
    out: dict[str, Any] = {}
    for j, k in enumerate(PARAMETER_NAMES):
        rows: dict[str, list[tuple[float, float, bool]]] = {"measured": [], "estimated": [], "estimated_c7_hidden": []}
        n_ref = 0
        for res, ref, c7 in zip(results, data["ref"], c7_only):
            if not np.isfinite(ref[j]):
                continue
            n_ref += 1
            if res is None or res.intervals.low.get(k) is None:
                continue
            v = res.parameters.as_dict()[k]
            row = (abs(v - ref[j]), res.intervals.high[k] - res.intervals.low[k], res.intervals.low[k] <= ref[j] <= res.intervals.high[k])
            est = bool(res.intervals.estimated[k])
            rows["estimated" if est else "measured"].append(row)
            if est and c7:
                rows["estimated_c7_hidden"].append(row)
        doc: dict[str, Any] = {"reported_percent_with_estimates":
                               100.0 * (len(rows["measured"]) + len(rows["estimated"])) / max(n_ref, 1)}
        for label in ("measured", "estimated", "estimated_c7_hidden"):
            a = np.array(rows[label], dtype=np.float64).reshape(-1, 3)
            mae = float(a[:, 0].mean()) if len(a) else float("nan")
            width = float(a[:, 1].mean()) if len(a) else float("nan")
            doc[label] = {"n": len(a), "mae": mae, "ci95_coverage_percent": float(100 * a[:, 2].mean()) if len(a) else None,
                          "ci95_mean_width": width, "width_over_mae": width / mae if len(a) else None}
        out[k] = doc
    return out


def main(argv: list[str] | None = None) -> int:
    from cervisag_edge.core.consistency import CHI2_2_999

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, metavar="DIR", help="phantom folder with annotations.json (repeatable)")
    ap.add_argument("--manifest", action="append", required=True, metavar="JSON",
                    help="manifest to measure with (the first) and to write the calibration into (all)")
    ap.add_argument("--cache", metavar="NPZ", help="reuse / store the per-image model outputs here")
    ap.add_argument("--limit", type=int, help="first N images of each set")
    ap.add_argument("--shape-model", metavar="JSON",
                    help="shape model for the estimated landmarks (tools/fit_shape_model.py; beside the manifests); "
                         "default: the one the first manifest names, if any")
    ap.add_argument("--write", action="store_true", help="write extra.uncertainty into the manifests")
    ap.add_argument("--consistency-d2", type=float, default=CHI2_2_999,
                    help="shape-consistency threshold on the leave-one-out d² (default: χ²₂ at 0.999)")
    ap.add_argument("--consistency-sd-mm", type=float, default=1.0, help="observation SD of the consistency check (mm)")
    ap.add_argument("--no-consistency", action="store_true", help="write no shape-consistency check")
    ap.add_argument("--evaluate", action="store_true",
                    help="score the calibration already in the first manifest on --data (held-out check; no fit, no write)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from cervisag_edge.core.uncertainty import MANIFEST_KEY, UncertaintyCalibration

    if not args.evaluate and any("777" in Path(d).name for d in args.data):
        logger.error("refusing a data folder named like the seed-777 test set; calibrate on other seeds")
        return 2
    shape, check = None, "manifest"  # --evaluate: the manifest's own calibration and check
    if not args.evaluate:
        if args.shape_model:
            from cervisag_edge.core.shape_model import load_shape_model

            shape = load_shape_model(args.shape_model)
            if any(Path(m).resolve().parent != Path(args.shape_model).resolve().parent for m in args.manifest):
                logger.error("--shape-model %s must lie beside the manifests (they name it by file name)", args.shape_model)
                return 2
        else:
            from cervisag_edge.engine.manifest import load_manifest

            shape = UncertaintyCalibration.from_manifest(load_manifest(args.manifest[0])).shape_model
        from cervisag_edge.core.consistency import ConsistencyCheck

        check = None if args.no_consistency or shape is None else ConsistencyCheck(
            shape, max_d2=args.consistency_d2, observation_sd_mm=args.consistency_sd_mm)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        data = dict(np.load(cache))
    else:
        data = collect(args.data, args.manifest[0], args.limit, consistency=check)
        if cache is not None:
            np.savez_compressed(cache, **data)
    if args.evaluate:
        from cervisag_edge.engine.manifest import load_manifest

        cal = UncertaintyCalibration.from_manifest(load_manifest(args.manifest[0]))
        print(json.dumps(evaluate(data, cal), indent=2))
        return 0
    lm = fit_landmarks(data)
    from cervisag_edge.engine.manifest import load_manifest

    threshold = float(load_manifest(args.manifest[0]).codec.get("confidence_threshold", 0.3))
    cal = UncertaintyCalibration(scale=lm["scale"], floor_mm=lm["floor_mm"], confidence_power=lm["confidence_power"],
                                 refined_scale=lm["refined_scale"], edge_mm=lm["edge_mm"], edge_scale=lm["edge_scale"],
                                 confidence_floor=threshold, shape_model=shape,
                                 consistency=None if check is None else check.to_dict())
    est = fit_estimates(data, cal)
    cal = dataclasses.replace(cal, **{k: est[k] for k in ("estimated_scale", "extrapolated_sd_mm", "shape_cov_scale") if k in est})
    scale, scale_est, pstats = fit_parameters(data, cal)
    cal = dataclasses.replace(cal, parameter_scale=scale, parameter_scale_estimated=scale_est)
    doc = cal.to_manifest()
    doc["dataset"] = (f"{len(data['pts'])} held-out phantoms ({', '.join(Path(d).name for d in args.data)}), "
                      "fitted by tools/calibrate_uncertainty.py; on phantoms (synthetic), not clinical radiographs")
    doc["fit"] = {"landmarks": lm, "estimates": est, "parameters": pstats}
    if check is not None:
        doc["fit"]["consistency"] = consistency_stats(data)
    doc["in_sample"] = evaluate(data, cal)
    print(json.dumps(doc, indent=2))
    if args.write:
        for path in args.manifest:
            raw = json.loads(Path(path).read_text())
            raw.setdefault("extra", {})[MANIFEST_KEY] = doc
            Path(path).write_text(json.dumps(raw, indent=2) + "\n")
            logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
