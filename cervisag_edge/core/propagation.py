"""Propagating landmark uncertainty to the six parameters: Monte Carlo and linearisation.

Pure numpy, no I/O. :func:`cervisag_edge.core.parameters.compute_parameters` stays the one place that
defines the parameters and gives the reported values; it takes about 0.2–0.7 ms per call, far too
slow to call once per sample. :func:`six_parameters_batch` is its vectorised twin for the six
parameters only (same formulas, evaluated on S landmark sets at once);
``tests/test_uncertainty.py`` checks that the two agree to 1e-9 on random spines, so a change to
one without the other fails.

Shape legend: K = 34 landmarks, S samples, P = 6 parameters (:data:`PARAMETER_NAMES` order).
``samples_mm`` is (S, K, 2) mm (x, y) in the input's orientation (not facing-normalised);
``cov_mm2`` is (K, 2, 2). ``joint`` (optional) = (index (M,), covariance (2M, 2M) mm² in
(x₀, y₀, x₁, …) order): those M landmarks are drawn jointly from it instead (estimated corners
of one body move together), replacing their rows of ``cov_mm2``.
"""
from __future__ import annotations

import numpy as np

from .landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from .parameters import BORDEN_WALL, PARAMETER_NAMES

_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}
_WALL = np.array([_I[n] for n in BORDEN_WALL])
_CCI_MID = np.array([_I[f"C{k}_PI"] for k in range(3, 7)])
_Z975 = 1.959963984540054


def _wrap(a: np.ndarray) -> np.ndarray:
    """Degrees wrapped to (−180, 180]."""
    return 180.0 - np.mod(180.0 - a, 360.0)


def _tilt(p: np.ndarray, post: str, ant: str) -> np.ndarray:
    d = p[:, _I[ant]] - p[:, _I[post]]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0]))


def _centroid(p: np.ndarray, v: str) -> np.ndarray:
    """(S, 2) intersection of the diagonals AS–PI and PS–AI (NaN when parallel)."""
    a_s, p_s, p_i, a_i = (p[:, _I[f"{v}_{c}"]] for c in ("AS", "PS", "PI", "AI"))
    d1 = p_i - a_s
    d2 = a_i - p_s
    den = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((p_s[:, 0] - a_s[:, 0]) * d2[:, 1] - (p_s[:, 1] - a_s[:, 1]) * d2[:, 0]) / den
    return a_s + t[:, None] * d1


def _signed(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(S, M) signed distances of q (S, M, 2) from the chords a→b (S, 2), positive anterior."""
    u = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        u = u / np.hypot(u[:, 0], u[:, 1])[:, None]
    n = np.stack([u[:, 1], -u[:, 0]], axis=-1)
    return np.einsum("smk,sk->sm", q - a[:, None, :], n)


def six_parameters_batch(samples_mm: np.ndarray, facing_sign: float) -> np.ndarray:
    """The six parameters of each of S landmark sets: (S, K, 2) mm → (S, 6).

    ``facing_sign`` is +1 when anterior is +x in the input (``facing == "right"``), −1 otherwise;
    it is taken from the point estimate, since a sample never turns the patient around. Rows
    with a NaN landmark give NaN for every parameter that needs it.
    """
    s = np.asarray(samples_mm, dtype=np.float64)
    if s.ndim != 3 or s.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"samples_mm must have shape (S, {NUM_LANDMARKS}, 2), got {s.shape}")
    p = s.copy()
    p[..., 0] *= float(facing_sign)
    out = np.empty((p.shape[0], len(PARAMETER_NAMES)))
    c7 = _tilt(p, "C7_PI", "C7_AI")
    # Borden: the posterior-wall point farthest from the chord DENS_PS→C7_PI.
    d = _signed(p[:, _WALL], p[:, _I["DENS_PS"]], p[:, _I["C7_PI"]])
    with np.errstate(invalid="ignore"):
        pick = np.argmax(np.where(np.isnan(d), -np.inf, np.abs(d)), axis=1)
    borden = np.take_along_axis(d, pick[:, None], axis=1)[:, 0]
    out[:, 0] = np.where(np.isnan(d).any(axis=1), np.nan, borden)
    # CCI (Ishihara).
    a, b = p[:, _I["C2_PI"]], p[:, _I["C7_PI"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 1] = 100.0 * _signed(p[:, _CCI_MID], a, b).sum(axis=1) / np.hypot(*(b - a).T)
    # CCL: ψ(c3 − c2) − ψ(c7 − c6), ψ(v) = atan2(v.x, v.y).
    c2, c3, c6, c7c = (_centroid(p, v) for v in ("C2", "C3", "C6", "C7"))
    up = np.degrees(np.arctan2(*(c3 - c2).T))
    lo = np.degrees(np.arctan2(*(c7c - c6).T))
    out[:, 2] = _wrap(_wrap(up) - _wrap(lo))
    out[:, 3] = _wrap(c7 - _tilt(p, "MCG_OCC", "MCG_PNS"))
    out[:, 4] = _wrap(c7 - _tilt(p, "C1_POST", "C1_ANT"))
    out[:, 5] = _wrap(c7 - _tilt(p, "C2_PI", "C2_AI"))
    return out


def _deltas(values: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """values − centre, angles wrapped (every parameter but Borden and CCI is an angle)."""
    d = values - centre
    d[..., 2:] = _wrap(d[..., 2:])
    return d


def sample_landmarks(mean_mm: np.ndarray, cov_mm2: np.ndarray, n_samples: int, seed: int,
                     joint: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(S, K, 2) draws of independent 2-D Gaussians N(mean_k, cov_k), the ``joint`` landmarks
    from their joint Gaussian; NaN rows stay NaN.

    Deterministic for a given ``seed`` (``numpy.random.default_rng``)."""
    mean = np.asarray(mean_mm, dtype=np.float64)
    cov = np.asarray(cov_mm2, dtype=np.float64)
    if mean.shape != (NUM_LANDMARKS, 2) or cov.shape != (NUM_LANDMARKS, 2, 2):
        raise ValueError(f"mean_mm (K, 2) and cov_mm2 (K, 2, 2) expected, got {mean.shape} and {cov.shape}")
    c = np.nan_to_num(cov)
    # closed-form 2×2 Cholesky factor [[l00, 0], [l10, l11]] (far cheaper than a batched einsum)
    l00 = np.sqrt(np.maximum(c[:, 0, 0], 0.0))
    l10 = np.where(l00 > 0, c[:, 1, 0] / np.where(l00 > 0, l00, 1.0), 0.0)
    l11 = np.sqrt(np.maximum(c[:, 1, 1] - l10**2, 0.0))
    z = np.random.default_rng(seed).standard_normal((int(n_samples), NUM_LANDMARKS, 2))
    out = np.empty_like(z)
    out[..., 0] = mean[None, :, 0] + l00 * z[..., 0]
    out[..., 1] = mean[None, :, 1] + l10 * z[..., 0] + l11 * z[..., 1]
    if joint is not None and len(joint[0]):
        idx, jc = np.asarray(joint[0], dtype=np.int64), np.asarray(joint[1], dtype=np.float64)
        w, v = np.linalg.eigh(0.5 * (jc + jc.T))
        factor = v * np.sqrt(np.maximum(w, 0.0))[None]  # (2M, 2M), factor @ factor.T = jc
        zj = np.random.default_rng([seed, 1]).standard_normal((int(n_samples), 2 * len(idx)))
        out[:, idx] = mean[None, idx] + (zj @ factor.T).reshape(int(n_samples), len(idx), 2)
    return out


def propagate_mc(mean_mm: np.ndarray, cov_mm2: np.ndarray, facing_sign: float, n_samples: int = 256,
                 seed: int = 0, joint: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(6,) standard deviation of each parameter by Monte Carlo (fixed seed); NaN where a
    landmark it needs is missing."""
    mean = np.asarray(mean_mm, dtype=np.float64)
    centre = six_parameters_batch(mean[None], facing_sign)[0]
    vals = six_parameters_batch(sample_landmarks(mean, cov_mm2, n_samples, seed, joint), facing_sign)
    d = _deltas(vals, centre[None])
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.mean(d**2, axis=0) - np.mean(d, axis=0) ** 2) * np.where(np.isnan(centre), np.nan, 1.0)


def jacobian(mean_mm: np.ndarray, facing_sign: float, step_mm: float = 1e-4) -> np.ndarray:
    """(6, K, 2) central-difference derivatives of the six parameters (one batch of 4K+1 sets)."""
    mean = np.asarray(mean_mm, dtype=np.float64)
    n = NUM_LANDMARKS * 2
    eye = np.eye(n).reshape(n, NUM_LANDMARKS, 2) * step_mm
    batch = np.concatenate([mean[None] + eye, mean[None] - eye], axis=0)
    vals = six_parameters_batch(batch, facing_sign)
    d = _deltas(vals[:n], vals[n:]) / (2 * step_mm)  # (2K, 6)
    return np.nan_to_num(d).T.reshape(len(PARAMETER_NAMES), NUM_LANDMARKS, 2)


def propagate_linear(mean_mm: np.ndarray, cov_mm2: np.ndarray, facing_sign: float,
                     joint: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(6,) standard deviation of each parameter by first-order propagation σ² = Σ_k J_k C_k J_kᵀ
    (the ``joint`` landmarks: J_H C_H J_Hᵀ with their joint covariance)."""
    mean = np.asarray(mean_mm, dtype=np.float64)
    centre = six_parameters_batch(mean[None], facing_sign)[0]
    J = jacobian(mean, facing_sign)
    cov = np.nan_to_num(np.asarray(cov_mm2, dtype=np.float64))
    if joint is not None and len(joint[0]):
        idx = np.asarray(joint[0], dtype=np.int64)
        cov = cov.copy()
        cov[idx] = 0.0
        Jh = J[:, idx].reshape(len(PARAMETER_NAMES), -1)
        var = np.einsum("pki,kij,pkj->p", J, cov, J) + np.einsum("pi,ij,pj->p", Jh, np.asarray(joint[1], dtype=np.float64), Jh)
    else:
        var = np.einsum("pki,kij,pkj->p", J, cov, J)
    return np.sqrt(var) * np.where(np.isnan(centre), np.nan, 1.0)


def interval95(value: float, sd: float) -> tuple[float, float]:
    """The Gaussian 95 % interval value ± 1.96 sd."""
    return value - _Z975 * sd, value + _Z975 * sd


Z95 = _Z975
