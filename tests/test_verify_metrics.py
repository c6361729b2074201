"""verify.metrics against hand-computed values and published worked examples."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cervisag_edge.tooling.verify import metrics as M

# Shrout & Fleiss (1979), Table 2: 6 targets (rows) rated by 4 judges (columns).
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def test_icc_shrout_fleiss_worked_example():
    r = M.icc_2_1(SHROUT_FLEISS)
    # Published: ICC(2,1) = 0.29 (Shrout & Fleiss 1979, Table 4); exact value from their mean squares
    # BMS = 11.24, JMS = 32.49, EMS = 1.02: (11.24-1.02)/(11.24+3*1.02+4*(32.49-1.02)/6) = 0.2898.
    assert r.icc == pytest.approx(0.29, abs=0.005)
    assert r.f_value == pytest.approx(11.24 / 1.02, rel=0.01)
    # McGraw & Wong (1996) case 2A CI on this data, as printed by the R package psych (ICC2: 0.02 to 0.76).
    assert r.ci_low == pytest.approx(0.02, abs=0.006)
    assert r.ci_high == pytest.approx(0.76, abs=0.006)
    assert (r.n, r.k) == (6, 4)


def test_icc_ci_formula_matches_scipy_quantiles():
    stats = pytest.importorskip("scipy.stats", reason="scipy not installed: CI checked against own F quantiles only")
    x = SHROUT_FLEISS
    n, k = x.shape
    g = x.mean()
    msr = k * np.sum((x.mean(1) - g) ** 2) / (n - 1)
    msc = n * np.sum((x.mean(0) - g) ** 2) / (k - 1)
    mse = (np.sum((x - g) ** 2) - msr * (n - 1) - msc * (k - 1)) / ((n - 1) * (k - 1))
    icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    fs = stats.f.ppf(0.975, n - 1, v)
    fs2 = stats.f.ppf(0.975, v, n - 1)
    lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    hi = n * (fs2 * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fs2 * msr)
    r = M.icc_2_1(x)
    assert r.ci_low == pytest.approx(lo, abs=1e-8)
    assert r.ci_high == pytest.approx(hi, abs=1e-8)


@pytest.mark.parametrize("q,d1,d2", [(0.975, 5, 15), (0.95, 1, 10), (0.5, 2, 2), (0.975, 3.7, 12.4), (0.025, 40, 3), (0.99, 200, 7.5)])
def test_f_ppf_against_scipy(q, d1, d2):
    stats = pytest.importorskip("scipy.stats", reason="scipy not installed")
    assert M.f_ppf(q, d1, d2) == pytest.approx(stats.f.ppf(q, d1, d2), rel=1e-7)


def test_f_ppf_table_values():
    # Printed F tables: F(0.95; 1, 10) = 4.96, F(0.975; 5, 15) = 3.58; median of F(2, 2) is exactly 1.
    assert M.f_ppf(0.95, 1, 10) == pytest.approx(4.96, abs=0.005)
    assert M.f_ppf(0.975, 5, 15) == pytest.approx(3.58, abs=0.005)
    assert M.f_ppf(0.5, 2, 2) == pytest.approx(1.0, abs=1e-9)


def test_betainc_closed_forms():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1-x)^b
    assert M.betainc_regularized(1, 1, 0.3) == pytest.approx(0.3, abs=1e-12)
    assert M.betainc_regularized(2.5, 1, 0.7) == pytest.approx(0.7**2.5, abs=1e-12)
    assert M.betainc_regularized(1, 3, 0.2) == pytest.approx(1 - 0.8**3, abs=1e-12)
    with pytest.raises(ValueError):
        M.betainc_regularized(0, 1, 0.5)


def test_icc_perfect_and_degenerate():
    x = np.column_stack([np.arange(5.0), np.arange(5.0)])
    assert M.icc_2_1(x).icc == pytest.approx(1.0)
    assert math.isnan(M.icc_2_1(np.ones((4, 2))).icc)
    with pytest.raises(ValueError):
        M.icc_2_1(np.ones(4))


def test_icc_absolute_agreement_penalises_offset():
    ref = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # a constant offset of 1: MSR = 2*var = 5, MSC = 5*(0.5^2*2)/1 = 2.5, MSE = 0 →
    # ICC = 5 / (5 + 2*(2.5)/5) = 5/6
    r = M.icc_2_1(np.column_stack([ref, ref + 1.0]))
    assert r.icc == pytest.approx(5.0 / 6.0)


def test_pooled_icc_zscores_by_reference():
    rng = np.random.default_rng(0)
    ref = {"a": rng.normal(10, 2, 30), "b": rng.normal(1000, 300, 30)}
    pred = {k: v + rng.normal(0, 0.1 * v.std(), v.size) for k, v in ref.items()}
    pooled = M.pooled_icc(pred, ref)
    za = (np.column_stack([ref["a"], pred["a"]]) - ref["a"].mean()) / ref["a"].std(ddof=1)
    zb = (np.column_stack([ref["b"], pred["b"]]) - ref["b"].mean()) / ref["b"].std(ddof=1)
    assert pooled.icc == pytest.approx(M.icc_2_1(np.vstack([za, zb])).icc)
    assert pooled.n == 60
    # scale-free: multiplying one parameter by 1000 changes nothing
    ref2 = {"a": ref["a"] * 1000, "b": ref["b"]}
    pred2 = {"a": pred["a"] * 1000, "b": pred["b"]}
    assert M.pooled_icc(pred2, ref2).icc == pytest.approx(pooled.icc)


def test_agreement_hand_computed():
    ref = np.array([10.0, 20.0, 30.0, 40.0])
    pred = np.array([11.0, 18.0, 30.0, 44.0, ])
    a = M.agreement(pred, ref)
    # differences 1, -2, 0, 4 → |d| 1, 2, 0, 4
    assert a.n == 4
    assert a.mae == pytest.approx(7 / 4)
    assert a.sd == pytest.approx(np.std([1, 2, 0, 4], ddof=1))
    assert a.bias == pytest.approx(3 / 4)
    sd_d = np.std([1, -2, 0, 4], ddof=1)
    assert a.loa == pytest.approx((0.75 - 1.96 * sd_d, 0.75 + 1.96 * sd_d))
    # SMAPE: 1/10.5 + 2/19 + 0 + 4/42, mean, in %
    assert a.smape == pytest.approx(100 * (1 / 10.5 + 2 / 19 + 0 + 4 / 42) / 4)
    assert a.icc_ci95[0] <= a.icc <= a.icc_ci95[1]


def test_agreement_drops_nan_pairs_and_smape_zero_pair():
    a = M.agreement(np.array([1.0, np.nan, 0.0]), np.array([1.0, 5.0, 0.0]))
    assert a.n == 2
    assert a.smape == 0.0
    assert a.mae == 0.0


def test_radial_errors_visibility_and_spacing():
    ref = np.zeros((1, 3, 2))
    pred = np.array([[[3.0, 4.0], [np.nan, np.nan], [1.0, 1.0]]])
    labelled = np.array([[True, True, False]])
    spacing = np.array([[0.5, 0.2]])  # row (y) 0.5 mm, column (x) 0.2 mm
    e = M.radial_errors_mm(pred, ref, spacing, labelled)
    assert e[0, 0] == pytest.approx(math.hypot(3 * 0.2, 4 * 0.5))
    assert np.isinf(e[0, 1])  # labelled but not found: missed
    assert np.isnan(e[0, 2])  # unlabelled: excluded
    with pytest.raises(ValueError):
        M.radial_errors_mm(pred, ref[:, :2], spacing, labelled)


def test_error_stats_and_sdr_exclude_unlabelled_count_missed():
    e = np.array([1.0, 2.0, 2.5, 3.5, 5.0, np.inf, np.nan, np.nan])
    s = M.error_stats(e)
    assert s.n == 5 and s.n_missed == 1
    assert s.mean_mm == pytest.approx(14.0 / 5)
    assert s.sd_mm == pytest.approx(np.std([1, 2, 2.5, 3.5, 5], ddof=1))
    assert s.median_mm == pytest.approx(2.5)
    assert s.max_mm == pytest.approx(5.0)
    assert s.p95_mm == pytest.approx(np.percentile([1, 2, 2.5, 3.5, 5], 95))
    # 6 labelled (5 found + 1 missed): ≤2 → 2, ≤2.5 → 3, ≤3 → 3, ≤4 → 4
    assert s.sdr_percent == pytest.approx({"2.0": 200 / 6, "2.5": 50.0, "3.0": 50.0, "4.0": 400 / 6})


def test_error_stats_empty_is_nan():
    s = M.error_stats(np.array([np.nan, np.nan]))
    assert s.n == 0 and math.isnan(s.mean_mm) and math.isnan(s.sdr_percent["2.0"])
