"""Accuracy statistics of the verification harness: pure functions, numpy and ``math`` only.

Shapes: ``errors_mm`` arrays are (N, K) radial errors (N images, K = 34 landmarks), NaN where
a landmark is excluded (unlabelled, visibility 0) and +inf where it is labelled but the model
did not find it ("missed"). ``ratings`` for the ICC are (n, k): n targets rated by k raters.

Conventions (documented in ``docs/verify.md``):

- MRE, SD, median, P95 and max are taken over the finite errors; missed landmarks are counted
  separately (``n_missed``) and count as failures in the SDR (they are in its denominator).
- SD values use ``ddof=1`` (sample SD); the Bland–Altman limits are bias ± 1.96·SD(differences).
- ICC is ICC(2,1) = ICC(A,1): two-way random effects, absolute agreement, single measure
  (Shrout & Fleiss 1979 case 2; McGraw & Wong 1996 case 2A), with their 95 % CI.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

#: SDR radii of the paper, in mm.
SDR_RADII_MM: tuple[float, ...] = (2.0, 2.5, 3.0, 4.0)


# --------------------------------------------------------------------------- landmark errors
def radial_errors_mm(
    pred_px: np.ndarray, ref_px: np.ndarray, spacing_mm: np.ndarray, labelled: np.ndarray
) -> np.ndarray:
    """Radial landmark errors in mm.

    ``pred_px``/``ref_px``: (N, K, 2) pixel (x, y), NaN where the model found no landmark / no
    reference; ``spacing_mm``: (N, 2) (row, column) spacing; ``labelled``: (N, K) bool, the
    reference landmarks that take part (visibility 1 or 2).
    Returns (N, K): the error where labelled and predicted, +inf where labelled but not predicted
    (missed), NaN where not labelled.
    """
    pred = np.asarray(pred_px, dtype=np.float64)
    ref = np.asarray(ref_px, dtype=np.float64)
    sp = np.asarray(spacing_mm, dtype=np.float64)
    lab = np.asarray(labelled, dtype=bool) & np.all(np.isfinite(ref), axis=-1)
    if pred.shape != ref.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred_px and ref_px must both be (N, K, 2), got {pred.shape} and {ref.shape}")
    if sp.shape != (pred.shape[0], 2):
        raise ValueError(f"spacing_mm must be ({pred.shape[0]}, 2), got {sp.shape}")
    dx_mm = (pred[..., 0] - ref[..., 0]) * sp[:, None, 1]
    dy_mm = (pred[..., 1] - ref[..., 1]) * sp[:, None, 0]
    err = np.hypot(dx_mm, dy_mm)
    found = np.all(np.isfinite(pred), axis=-1)
    out = np.full(err.shape, np.nan)
    out[lab & found] = err[lab & found]
    out[lab & ~found] = np.inf
    return out


@dataclass(frozen=True)
class ErrorStats:
    """Summary of radial errors in mm. ``n`` counts the landmarks with a finite error,
    ``n_missed`` the labelled ones the model did not find; ``sdr_percent`` maps radius → %."""

    n: int
    n_missed: int
    mean_mm: float
    sd_mm: float
    median_mm: float
    p95_mm: float
    max_mm: float
    sdr_percent: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def radius_key(radius_mm: float) -> str:
    """JSON key of an SDR radius: ``2.0`` → ``"2.0"``, ``2.5`` → ``"2.5"``."""
    return f"{float(radius_mm):.1f}"


def sdr_percent(errors_mm: np.ndarray, radii_mm: Sequence[float] = SDR_RADII_MM) -> dict[str, float]:
    """Successful detection rate: % of labelled landmarks (finite or missed errors; NaN excluded)
    within each radius. NaN when nothing is labelled."""
    e = np.asarray(errors_mm, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    out: dict[str, float] = {}
    for r in radii_mm:
        out[radius_key(r)] = float(100.0 * np.mean(e <= r)) if e.size else float("nan")
    return out


def error_stats(errors_mm: np.ndarray, radii_mm: Sequence[float] = SDR_RADII_MM) -> ErrorStats:
    """:class:`ErrorStats` of any array of errors (NaN excluded, +inf counted as missed)."""
    e = np.asarray(errors_mm, dtype=np.float64).ravel()
    e = e[~np.isnan(e)]
    finite = e[np.isfinite(e)]
    nan = float("nan")
    n = int(finite.size)
    return ErrorStats(
        n=n,
        n_missed=int(e.size - n),
        mean_mm=float(finite.mean()) if n else nan,
        sd_mm=float(finite.std(ddof=1)) if n > 1 else nan,
        median_mm=float(np.median(finite)) if n else nan,
        p95_mm=float(np.percentile(finite, 95)) if n else nan,
        max_mm=float(finite.max()) if n else nan,
        sdr_percent=sdr_percent(e, radii_mm),
    )


# --------------------------------------------------------------------------- parameter agreement
@dataclass(frozen=True)
class AgreementStats:
    """Agreement of one parameter's predictions with the reference (units of the parameter).

    ``mae``/``sd``: mean and SD of |pred − ref|; ``smape`` in %; ``bias``: mean(pred − ref);
    ``loa``: Bland–Altman 95 % limits (bias ± 1.96·SD of differences); ``icc`` ICC(2,1) and
    ``icc_ci95`` its 95 % CI."""

    n: int
    mae: float
    sd: float
    smape: float
    bias: float
    loa: tuple[float, float]
    icc: float
    icc_ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loa"] = list(self.loa)
        d["icc_ci95"] = list(self.icc_ci95)
        return d


def smape_percent(pred: np.ndarray, ref: np.ndarray) -> float:
    """Symmetric MAPE in %: mean of |p − r| / ((|p| + |r|) / 2) · 100; a pair with p = r = 0 adds 0."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    den = (np.abs(p) + np.abs(r)) / 2.0
    num = np.abs(p - r)
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(100.0 * terms.mean())


def bland_altman(pred: np.ndarray, ref: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(bias, (lower, upper)) with bias = mean(pred − ref) and limits bias ± 1.96·SD (ddof=1)."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    if d.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    return bias, (bias - 1.96 * sd, bias + 1.96 * sd)


def agreement(pred: np.ndarray, ref: np.ndarray) -> AgreementStats:
    """All agreement statistics of paired (n,) arrays; pairs with a NaN are dropped first."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same length, got {p.shape} and {r.shape}")
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    nan = float("nan")
    ae = np.abs(p - r)
    bias, loa = bland_altman(p, r)
    icc = icc_2_1(np.column_stack([r, p])) if p.size >= 2 else IccResult(nan, nan, nan, nan, 0, 0)
    return AgreementStats(
        n=int(p.size),
        mae=float(ae.mean()) if p.size else nan,
        sd=float(ae.std(ddof=1)) if p.size > 1 else nan,
        smape=smape_percent(p, r),
        bias=bias,
        loa=loa,
        icc=icc.icc,
        icc_ci95=(icc.ci_low, icc.ci_high),
    )


# --------------------------------------------------------------------------- ICC(2,1)
@dataclass(frozen=True)
class IccResult:
    """ICC(2,1) with its 95 % CI (McGraw & Wong 1996, case 2A) and the mean squares behind it."""

    icc: float
    ci_low: float
    ci_high: float
    f_value: float  # MSR / MSE
    n: int
    k: int


def icc_2_1(ratings: np.ndarray, alpha: float = 0.05) -> IccResult:
    """ICC(2,1) of an (n, k) table (n targets × k raters), two-way random, absolute agreement.

    ICC = (MSR − MSE) / (MSR + (k−1)·MSE + k·(MSC − MSE)/n). The (1 − alpha) CI follows McGraw &
    Wong (1996) Table 7, case 2A, with Satterthwaite's degrees of freedom ``v``.
    Rows with a NaN are dropped. Degenerate tables (no variance) give NaN.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n, k) with k >= 2, got shape {x.shape}")
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    nan = float("nan")
    if n < 2:
        return IccResult(nan, nan, nan, nan, n, k)
    grand = x.mean()
    ss_rows = k * float(np.sum((x.mean(axis=1) - grand) ** 2))
    ss_cols = n * float(np.sum((x.mean(axis=0) - grand) ** 2))
    ss_total = float(np.sum((x - grand) ** 2))
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    if den <= 0 or not np.isfinite(den):
        return IccResult(nan, nan, nan, nan, n, k)
    icc = (msr - mse) / den
    f_value = msr / mse if mse > 0 else float("inf")
    lo, hi = _icc_a1_ci(icc, msr, msc, mse, n, k, alpha)
    return IccResult(float(icc), lo, hi, float(f_value), n, k)


def _icc_a1_ci(icc: float, msr: float, msc: float, mse: float, n: int, k: int, alpha: float) -> tuple[float, float]:
    if mse <= 0 or icc >= 1.0:
        return float("nan"), float("nan")
    a = k * icc / (n * (1.0 - icc))
    b = 1.0 + k * icc * (n - 1) / (n * (1.0 - icc))
    num = (a * msc + b * mse) ** 2
    den = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    v = num / den if den > 0 else float("inf")
    if not np.isfinite(v) or v <= 0:
        return float("nan"), float("nan")
    f_star = f_ppf(1.0 - alpha / 2.0, n - 1, v)  # F*(n−1, v)
    f_star2 = f_ppf(1.0 - alpha / 2.0, v, n - 1)  # F*(v, n−1)
    c = k * msc + (k * n - k - n) * mse
    lo = n * (msr - f_star * mse) / (f_star * c + n * msr)
    hi = n * (f_star2 * msr - mse) / (c + n * f_star2 * msr)
    return float(lo), float(hi)


def pooled_icc(pred: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> IccResult:
    """ICC(2,1) over the (reference, prediction) pairs of several parameters pooled together.

    Each parameter's pairs are first z-scored with that parameter's *reference* mean and SD
    (ddof=1) so that parameters in mm, % and degrees share a scale; parameters with fewer than
    two reference values or zero reference SD are left out. Pairs with a NaN are dropped.
    """
    rows: list[np.ndarray] = []
    for name, r in ref.items():
        r = np.asarray(r, dtype=np.float64).ravel()
        p = np.asarray(pred[name], dtype=np.float64).ravel()
        keep = np.isfinite(r) & np.isfinite(p)
        r, p = r[keep], p[keep]
        if r.size < 2:
            continue
        mu, sd = r.mean(), r.std(ddof=1)
        if not sd > 0:
            continue
        rows.append(np.column_stack([(r - mu) / sd, (p - mu) / sd]))
    if not rows:
        nan = float("nan")
        return IccResult(nan, nan, nan, nan, 0, 2)
    return icc_2_1(np.vstack(rows))


# --------------------------------------------------------------------------- F distribution
def betainc_regularized(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    Evaluated with the classical continued fraction (modified Lentz), using the symmetry
    I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly (x > (a+1)/(a+b+2)).
    """
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a > 0 and b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def _beta_cf(a: float, b: float, x: float, max_iter: int = 1000, eps: float = 1e-15) -> float:
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            delta = c * d
            h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def f_cdf(x: float, d1: float, d2: float) -> float:
    """CDF of the F(d1, d2) distribution (d1, d2 > 0, may be non-integer)."""
    if x <= 0:
        return 0.0
    if math.isinf(x):
        return 1.0
    return betainc_regularized(d1 / 2.0, d2 / 2.0, d1 * x / (d1 * x + d2))


def f_ppf(q: float, d1: float, d2: float) -> float:
    """Quantile of F(d1, d2): the x with ``f_cdf(x) = q``, found by bisection (relative 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if math.isinf(d2):
        d2 = 1e12
    lo, hi = 0.0, 1.0
    while f_cdf(hi, d1, d2) < q:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            return float("inf")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f_cdf(mid, d1, d2) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(hi, 1e-300):
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- levels, framing, coverage
@dataclass(frozen=True)
class LevelStats:
    """Level assignment of the vertebral bodies C2 … T1 (see :func:`level_assignment`).

    ``n_assessed`` bodies were judged, ``n_right`` were at the right level; of the wrong ones,
    ``n_missed`` were in view but not reported and ``n_misplaced`` were reported somewhere else
    (including levels reported where the reference has no labelled corner)."""

    n_assessed: int
    n_right: int
    n_missed: int
    n_misplaced: int
    percent: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def body_heights(corners: np.ndarray) -> np.ndarray:
    """(…,) body height: the mean of the anterior (AS–AI) and posterior (PS–PI) wall lengths of
    (…, 4, 2) corners in (AS, PS, PI, AI) order; NaN where a corner is NaN."""
    c = np.asarray(corners, dtype=np.float64)
    return 0.5 * (np.linalg.norm(c[..., 0, :] - c[..., 3, :], axis=-1) + np.linalg.norm(c[..., 1, :] - c[..., 2, :], axis=-1))


def level_assignment(pred_mm: np.ndarray, ref_mm: np.ndarray, visibility: np.ndarray, ref_all_mm: np.ndarray | None = None) -> LevelStats:
    """Share of vertebral bodies assigned to the right level.

    ``pred_mm``: (N, V, 4, 2) predicted corners, NaN where the runtime reports them not visible;
    ``ref_mm``: (N, V, 4, 2) reference corners (NaN where unlabelled); ``visibility``: (N, V, 4);
    ``ref_all_mm``: optional (N, V, 4, 2) positions of every corner, also out of frame, used for
    the body height of a body cut by the film edge.
    A body is assessed when all four corners are visible in the reference (v = 2) or the runtime
    reports at least one of its corners. It is right when it is reported and the mean error of its
    reported corners against their reference positions (labelled, else from ``ref_all_mm``: this
    judges the level's name; reporting a corner that lies outside the image is counted by
    :func:`out_of_frame_reported_visible`) is below half the true body height; a reported body
    without any reference position is wrong. The height is the reference body's own (from
    ``ref_all_mm`` when its labelled corners are incomplete), else the median height of the
    image's other bodies; a body without either is not assessed.
    """
    pred = np.asarray(pred_mm, dtype=np.float64)
    ref = np.asarray(ref_mm, dtype=np.float64)
    vis = np.asarray(visibility)
    if pred.shape != ref.shape or pred.ndim != 4 or pred.shape[2:] != (4, 2) or vis.shape != pred.shape[:3]:
        raise ValueError(f"pred_mm/ref_mm must be (N, V, 4, 2) and visibility (N, V, 4), got {pred.shape}, {ref.shape}, {vis.shape}")
    full = ref if ref_all_mm is None else np.where(np.isfinite(ref), ref, np.asarray(ref_all_mm, dtype=np.float64))
    height = body_heights(full)  # (N, V)
    with np.errstate(all="ignore"):
        fallback = np.nanmedian(np.where(np.isfinite(height), height, np.nan), axis=1, keepdims=True) if height.size else height
    height = np.where(np.isfinite(height), height, np.broadcast_to(fallback, height.shape))
    reported = np.all(np.isfinite(pred), axis=-1)  # (N, V, 4)
    in_view = np.all(vis == 2, axis=-1)
    any_rep = reported.any(axis=-1)
    assessed = (in_view | any_rep) & np.isfinite(height)
    both = reported & np.all(np.isfinite(full), axis=-1)
    err = np.where(both, np.linalg.norm(np.nan_to_num(pred - full), axis=-1), 0.0)
    n_both = both.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_err = np.where(n_both > 0, err.sum(axis=-1) / np.maximum(n_both, 1), np.inf)
    right = assessed & any_rep & (mean_err < height / 2.0)
    n = int(assessed.sum())
    return LevelStats(
        n_assessed=n,
        n_right=int(right.sum()),
        n_missed=int((assessed & ~any_rep).sum()),
        n_misplaced=int((assessed & any_rep & ~right).sum()),
        percent=float(100.0 * right.sum() / n) if n else float("nan"),
    )


def out_of_frame_reported_visible(reported: np.ndarray, ref_all_px: np.ndarray, visibility: np.ndarray,
                                  size_px: np.ndarray) -> tuple[int, int]:
    """(landmarks outside the image that the runtime reports visible, landmarks outside the image).

    ``reported``: (N, K) bool; ``ref_all_px``: (N, K, 2) annotated positions of every landmark (NaN
    where unknown); ``visibility``: (N, K); ``size_px``: (N, 2) image (width, height). A landmark
    is outside when its visibility is 0 and its position lies off the image's pixel area
    [-0.5, W - 0.5] × [-0.5, H - 0.5] (pixel-centre convention).
    """
    rep = np.asarray(reported, dtype=bool)
    p = np.asarray(ref_all_px, dtype=np.float64)
    out = _off_image(p, size_px) & np.all(np.isfinite(p), axis=-1) & (np.asarray(visibility) == 0)
    return int((out & rep).sum()), int(out.sum())


def unexposed_reported_visible(reported: np.ndarray, ref_all_px: np.ndarray, visibility: np.ndarray,
                               size_px: np.ndarray) -> tuple[int, int]:
    """(landmarks inside the image but not visible in the reference (v = 0: under a collimator
    shutter) that the runtime reports visible, such landmarks). Arguments as
    :func:`out_of_frame_reported_visible`."""
    rep = np.asarray(reported, dtype=bool)
    p = np.asarray(ref_all_px, dtype=np.float64)
    inside = ~_off_image(p, size_px) & np.all(np.isfinite(p), axis=-1) & (np.asarray(visibility) == 0)
    return int((inside & rep).sum()), int(inside.sum())


def _off_image(p: np.ndarray, size_px: np.ndarray) -> np.ndarray:
    """(N, K) bool: (N, K, 2) positions off the pixel area [-0.5, W - 0.5] × [-0.5, H - 0.5]."""
    sz = np.asarray(size_px, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (p[..., 0] < -0.5) | (p[..., 0] > sz[:, None, 0] - 0.5) | (p[..., 1] < -0.5) | (p[..., 1] > sz[:, None, 1] - 0.5)


def coverage_percent(reported: np.ndarray, eligible: np.ndarray) -> tuple[float, int, int]:
    """(% of eligible images where the parameter was reported, n reported, n eligible); (N,) bools.
    NaN when no image is eligible."""
    e = np.asarray(eligible, dtype=bool)
    r = np.asarray(reported, dtype=bool) & e
    n = int(e.sum())
    return (float(100.0 * r.sum() / n) if n else float("nan")), int(r.sum()), n
