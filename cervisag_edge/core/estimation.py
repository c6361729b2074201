"""Estimated positions for vertebral corners the model could not see (pure numpy, no I/O).

A corner is *estimated* when it is not visible (below the confidence threshold or outside the
image) and either

- ``peak``: the heatmap still has a weak peak there (confidence ≥ ``estimate_min_confidence``,
  inside the image, e.g. C7/T1 under the shoulders) that agrees with the neighbours' prediction
  below; its covariance is the measured one times ``estimated_scale²``; or
- ``extrapolated``: the level is predicted from the two nearest complete levels: the similarity
  (rotation, scale, translation) that maps level A onto its neighbour B is applied once more to B,
  so the spacing and the change of orientation between neighbours carry on (at most
  :data:`MAX_STEPS` levels past the last complete one). Its covariance is isotropic,
  ``(extrapolated_sd_mm · steps)²`` plus that of the corner of B it came from.

With a statistical shape model (``cal.shape_model``, :mod:`cervisag_edge.core.shape_model`, the
shipped default) both are replaced by its Gaussian conditional: every hidden corner of C2…T1 is
the conditional mean given all visible landmarks (``model``), with the conditional covariance ×
``shape_cov_scale²`` plus the mean covariance of the visible landmarks (never tighter than a
measured one); a weak peak (confidence ≥ ``estimate_min_confidence``, inside the image)
whose Mahalanobis distance² from that estimate is at most :data:`PEAK_GATE_CHI2` becomes one more
observation (covariance: the measured formula × ``estimated_scale²``) and the conditional is
taken again (``peak``). The joint covariance of the estimated corners is kept for the propagation
(a whole body shifts and turns together).

Only the corners of C2…T1 are estimated; the skull and C1 landmarks never are (there is nothing
to extrapolate them from). Method: ``docs/uncertainty.md``.

Shape legend: K = 34 landmarks, L = 7 levels (C2…T1) × 4 corners (AS, PS, PI, AI). Points
(K, 2) original px (x, y); covariances (K, 2, 2) px².
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .landmarks import NUM_LANDMARKS, VERTEBRAE, vertebra_corner_indices

if TYPE_CHECKING:  # pragma: no cover
    from .uncertainty import UncertaintyCalibration

#: Levels past the last complete one that may be extrapolated.
MAX_STEPS = 3
#: A weak peak is accepted when it lies within this fraction of the neighbour's body height of
#: the extrapolated corner.
PEAK_GATE = 0.5
#: Pose the extrapolated shape on the weak peaks (≥ 3 anchors) instead of taking each peak alone.
SHAPE_FIT = True
#: Shape model: a weak peak is used when its Mahalanobis distance² from the model's estimate
#: (conditional covariance + the peak's own) is at most this (χ²₂ at 99 %).
PEAK_GATE_CHI2 = 9.21
#: Shape model: fewest visible landmarks (C2…T1 corners and skull/C1 landmarks) to estimate from
#: (4: the estimates of films showing 4–5 landmarks stay calibrated, docs/uncertainty.md §3).
MIN_OBSERVED = 4

_LEVELS = np.array([vertebra_corner_indices(v) for v in VERTEBRAE])  # (7, 4)


@dataclass(frozen=True)
class EstimatedLandmarks:
    """``points_px`` (K, 2) and ``cov_px2`` (K, 2, 2) of the estimated corners (NaN elsewhere);
    ``mask`` (K,) bool; ``kind`` (K,) ``"peak"``, ``"extrapolated"``, ``"model"`` or ``""``;
    ``steps`` (K,) int (levels from the nearest level with a visible corner). With the shape
    model, ``joint_index`` (M,) are the estimated landmarks and ``joint_px2`` (2M, 2M) their
    joint covariance (None without it)."""

    points_px: np.ndarray
    cov_px2: np.ndarray
    mask: np.ndarray
    kind: tuple[str, ...]
    steps: np.ndarray
    joint_index: np.ndarray | None = None
    joint_px2: np.ndarray | None = None


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity ``z ↦ a·z + b`` (complex) mapping ``src`` (N, 2) onto ``dst`` (N, 2)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    den = float(np.sum(np.abs(zs - ms) ** 2))
    a = complex(np.sum(np.conj(zs - ms) * (zd - md)) / den) if den > 0 else 1.0 + 0j
    return a, complex(md - a * ms)


def _apply(a: complex, b: complex, pts: np.ndarray) -> np.ndarray:
    z = a * (pts[:, 0] + 1j * pts[:, 1]) + b
    return np.stack([z.real, z.imag], axis=-1)


def _height(corners: np.ndarray) -> float:
    """Mean anterior/posterior height of a (4, 2) body (AS, PS, PI, AI)."""
    return 0.5 * float(np.hypot(*(corners[0] - corners[3])) + np.hypot(*(corners[1] - corners[2])))


def estimate_landmarks(pts_px: np.ndarray, confidence: np.ndarray, visible: np.ndarray, inside: np.ndarray,
                       cov_px2: np.ndarray, cal: "UncertaintyCalibration", *,
                       px_per_mm: float | None = None, facing_hint: float | None = None) -> EstimatedLandmarks:
    """Estimate the hidden corners of C2…T1 (see the module docstring).

    ``pts_px`` (K, 2) decoded peak positions (also where not visible); ``confidence``, ``visible``,
    ``inside`` (K,); ``cov_px2`` (K, 2, 2) measured covariances. ``px_per_mm`` converts
    ``extrapolated_sd_mm`` (default: 1 / 0.14 mm, a typical film, when unknown). ``facing_hint``
    ±1 (:func:`~cervisag_edge.core.parameters.facing_hint` of the same image) tells the shape model
    the facing when the visible landmarks cannot.
    """
    pts = np.asarray(pts_px, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    ins = np.asarray(inside, dtype=bool)
    cov = np.asarray(cov_px2, dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 2) or cov.shape != (NUM_LANDMARKS, 2, 2):
        raise ValueError(f"pts_px (K, 2) and cov_px2 (K, 2, 2) expected, got {pts.shape} and {cov.shape}")
    if getattr(cal, "shape_model", None) is not None:
        return _estimate_with_model(pts, conf, vis, ins, cov, cal, facing_hint)
    ppm = px_per_mm if px_per_mm else 1.0 / 0.14
    sd_ext = cal.extrapolated_sd_mm * ppm
    cur = np.where(vis[:, None], pts, np.nan)
    cur_cov = cov.copy()
    steps = np.zeros(NUM_LANDMARKS, dtype=np.int64)
    kind = [""] * NUM_LANDMARKS
    mask = np.zeros(NUM_LANDMARKS, dtype=bool)

    def complete(level: int) -> bool:
        return 0 <= level < len(VERTEBRAE) and bool(np.all(np.isfinite(cur[_LEVELS[level]])))

    def fill(level: int, a_level: int, b_level: int) -> None:
        idx = _LEVELS[level]
        missing = ~np.all(np.isfinite(cur[idx]), axis=1)
        if not missing.any():
            return
        A, B = cur[_LEVELS[a_level]], cur[_LEVELS[b_level]]
        a, b = similarity(A, B)
        pred = _apply(a, b, B)
        known = ~missing
        if known.sum() >= 2:  # partly seen level: move the prediction onto its seen corners
            a2, b2 = similarity(pred[known], cur[idx][known])
            pred = _apply(a2, b2, pred)
        base_steps = int(max(steps[_LEVELS[b_level]].max(), 0)) + 1
        gate = PEAK_GATE * _height(B)
        ok_peak = np.array([missing[j] and conf[idx[j]] >= cal.estimate_min_confidence and ins[idx[j]]
                            and np.hypot(*(pts[idx[j]] - pred[j])) <= gate for j in range(4)])
        anchors = known | ok_peak
        if SHAPE_FIT and ok_peak.any() and anchors.sum() >= 3:
            # the neighbour's shape, posed on the seen corners and the weak peaks: one rigid body,
            # so the noise of single weak peaks averages out
            target = np.where(known[:, None], cur[idx], pts[idx])
            a3, b3 = similarity(pred[anchors], target[anchors])
            fitted = _apply(a3, b3, pred)
        else:
            fitted = None
        for j in np.flatnonzero(missing):
            k = idx[j]
            if fitted is not None:
                cur[k] = fitted[j]
                cur_cov[k] = cov[k] * cal.estimated_scale**2
                kind[k], steps[k] = "peak", 0
            elif ok_peak[j]:
                cur[k] = pts[k]
                cur_cov[k] = cov[k] * cal.estimated_scale**2
                kind[k], steps[k] = "peak", 0
            elif base_steps <= MAX_STEPS:
                cur[k] = pred[j]
                cur_cov[k] = (sd_ext * base_steps) ** 2 * np.eye(2) + cur_cov[_LEVELS[b_level][j]]
                kind[k], steps[k] = "extrapolated", base_steps
            else:
                continue
            mask[k] = True

    n = len(VERTEBRAE)
    for level in range(2, n):  # caudal pass: C4…T1 from the two levels above
        if not complete(level) and complete(level - 1) and complete(level - 2):
            fill(level, level - 2, level - 1)
    for level in range(n - 3, -1, -1):  # cranial pass: C2… from the two levels below
        if not complete(level) and complete(level + 1) and complete(level + 2):
            fill(level, level + 2, level + 1)
    return EstimatedLandmarks(np.where(mask[:, None], cur, np.nan), np.where(mask[:, None, None], cur_cov, np.nan), mask,
                              tuple(kind), steps)


def _level_steps(visible: np.ndarray) -> np.ndarray:
    """(K,) levels from each C2…T1 corner's level to the nearest level with a visible corner."""
    seen = np.flatnonzero(visible[_LEVELS].any(axis=1))
    steps = np.zeros(NUM_LANDMARKS, dtype=np.int64)
    if len(seen):
        for lv in range(len(VERTEBRAE)):
            steps[_LEVELS[lv]] = int(np.min(np.abs(seen - lv)))
    return steps


def _estimate_with_model(pts: np.ndarray, conf: np.ndarray, vis: np.ndarray, ins: np.ndarray, cov: np.ndarray,
                         cal: "UncertaintyCalibration", hint: float | None) -> EstimatedLandmarks:
    """Hidden corners of C2…T1 from the shape model (see the module docstring)."""
    model = cal.shape_model
    target = np.zeros(NUM_LANDMARKS, dtype=bool)
    target[_LEVELS.ravel()] = True
    target &= ~vis
    empty = EstimatedLandmarks(np.full((NUM_LANDMARKS, 2), np.nan), np.full((NUM_LANDMARKS, 2, 2), np.nan),
                               np.zeros(NUM_LANDMARKS, dtype=bool), ("",) * NUM_LANDMARKS, np.zeros(NUM_LANDMARKS, dtype=np.int64))
    if not target.any() or int(vis.sum()) < MIN_OBSERVED:
        return empty
    try:
        first = model.condition(pts, cov, vis, target, hint)
    except (ValueError, np.linalg.LinAlgError):  # facing undecidable or degenerate geometry
        return empty
    peak_cov = cov * cal.estimated_scale**2
    accepted = np.zeros(NUM_LANDMARKS, dtype=bool)
    for j, k in enumerate(first.index):
        if conf[k] >= cal.estimate_min_confidence and ins[k] and np.all(np.isfinite(pts[k])):
            e = pts[k] - first.points_px[j]
            try:
                d2 = float(e @ np.linalg.solve(first.cov_px2[j] * cal.shape_cov_scale**2 + peak_cov[k], e))
            except np.linalg.LinAlgError:
                continue
            accepted[k] = d2 <= PEAK_GATE_CHI2
    res = first
    if accepted.any():
        obs_cov = np.where(accepted[:, None, None], peak_cov, cov)
        try:
            res = model.condition(pts, obs_cov, vis | accepted, target, hint)
        except (ValueError, np.linalg.LinAlgError):  # degenerate with the peaks: the estimate without them
            accepted[:] = False
    out = np.full((NUM_LANDMARKS, 2), np.nan)
    out_cov = np.full((NUM_LANDMARKS, 2, 2), np.nan)
    out[res.index] = res.points_px
    # never tighter than a typical measured landmark: the mean covariance of the visible ones
    # is added (independently per corner) to the scaled conditional covariance
    typical = np.mean(cov[vis], axis=0)
    s2 = cal.shape_cov_scale**2
    out_cov[res.index] = res.cov_px2 * s2 + typical[None]
    joint = res.joint_px2 * s2 + np.kron(np.eye(len(res.index)), typical)
    kind = tuple(("peak" if accepted[k] else "model") if target[k] else "" for k in range(NUM_LANDMARKS))
    steps = np.where(target, _level_steps(vis), 0)
    return EstimatedLandmarks(out, out_cov, target.copy(), kind, steps, res.index.copy(), joint)
