"""Statistical shape model of the landmark chain: a Gaussian of the 34 landmarks in a normalised
frame, used to estimate hidden vertebral corners from the seen ones (pure numpy; only
:func:`load_shape_model` reads a file).

The model is fitted by ``tools/fit_shape_model.py`` on the true landmarks of *training* phantoms
(never a held-out seed) and shipped as ``engines/shape_model.json``; the model manifest names it
with its sha256 in ``extra["uncertainty"]["shape_model"]`` (see :func:`shape_model_for_manifest`).

Model. Every training shape is facing-normalised (anterior = +x) and aligned to the mean shape by
generalised Procrustes analysis of its 28 vertebral corners (similarity: rotation, scale,
translation; the skull and C1 landmarks are carried along). In that frame the 68 coordinates are
Gaussian, ``x ~ N(mean, cov)``. An image's landmarks are ``y = T(x) + noise``
with an unknown similarity T. Given the observed landmarks O (positions ``y_O``, noise
covariances ``R_O``):

1. T⁻¹ (image → model) is the least-squares similarity of the observed landmarks onto their
   mean, ``w_O = T⁻¹(y_O)``;
2. that pose comes from the seen part only (the fit aligned whole shapes), so the covariance
   gets the four similarity directions at the mean with a wide variance:
   ``cov' = cov + POSE_VARIANCE · V Vᵀ`` (V: translation x, y, rotation, scale), which
   integrates the conditional over the pose (linearised);
3. the hidden landmarks H follow the Gaussian conditional
   ``x_H | w_O ~ N(mean_H + cov'_HO G (w_O − mean_O), cov'_HH − cov'_HO G cov'_OH)``,
   ``G = (cov'_OO + |T⁻¹|² R_O + ridge)⁻¹`` (R_O: the observations' noise);
4. both are mapped back to the image with T (the covariance rotated and scaled).

The conditional covariance grows with the distance from the seen levels and with the
population's variability (curvature, head posture), so an estimate far from the seen levels is
honestly wide. Method and figures: ``docs/uncertainty.md``.

Shapes: K = 34 landmarks; points (K, 2) (x, y); covariances (K, 2, 2); the joint covariance of
M hidden landmarks (2M, 2M) in (x₀, y₀, x₁, y₁, …) order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .landmarks import LANDMARK_NAMES, NUM_LANDMARKS

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.manifest import ModelManifest

SHAPE_SCHEMA = "cervisag-shape-model/1"
#: File name of the shipped model beside the manifests in ``engines/``.
SHAPE_FILE = "shape_model.json"
#: Ridge added to the observed block (model units², the mean shape has unit RMS radius), so that
#: the directions the alignment removed stay invertible.
RIDGE = 1e-6
#: Variance (model units², i.e. rad² for the rotation) of the pose directions: wide against the
#: shape variance (~1e-3), so the pose is left to the seen landmarks.
POSE_VARIANCE = 1.0


#: The landmarks the fit aligns on: the vertebral corners C2…T1 (the skull and C1 landmarks,
#: which move with the head posture, are carried along but do not set the frame).
_CHAIN = np.array([n[:2] in ("C2", "C3", "C4", "C5", "C6", "C7", "T1") and n[2] == "_" for n in LANDMARK_NAMES])


def facing_sign(pts: np.ndarray, hint: float | None = None) -> float:
    """+1 if anterior is +x in ``pts`` (K, 2) (NaN rows missing), −1 if −x; the rule of
    :func:`cervisag_edge.core.parameters.compute_parameters` (``hint`` ±1 decides when the points
    cannot). Raises ``ValueError`` when undecidable."""
    from .parameters import _facing_sign, _Points  # the one facing rule

    return _facing_sign(_Points(np.asarray(pts, dtype=np.float64)), hint)


def _complex(p: np.ndarray) -> np.ndarray:
    return p[..., 0] + 1j * p[..., 1]


def _real(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def procrustes(shapes: np.ndarray, iterations: int = 10, use: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes analysis of N shapes (N, K, 2) → (aligned (N, K, 2), mean (K, 2)).

    Each shape is mapped onto the mean by the least-squares similarity (rotation, scale,
    translation; no reflection) of its landmarks ``use`` (K,) bool (None: all); the mean of those
    is centred with unit RMS radius. The other landmarks are carried along."""
    z = _complex(np.asarray(shapes, dtype=np.float64))
    u = np.ones(z.shape[1], dtype=bool) if use is None else np.asarray(use, dtype=bool)
    z = z - z[:, u].mean(axis=1, keepdims=True)

    def pose(ref: np.ndarray) -> np.ndarray:
        return np.sum(np.conj(z[:, u]) * ref[None, u], axis=1) / np.sum(np.abs(z[:, u]) ** 2, axis=1)

    ref = z[0] / np.sqrt(np.mean(np.abs(z[0, u]) ** 2))
    for _ in range(iterations):
        new = (pose(ref)[:, None] * z).mean(axis=0)
        new = new - new[u].mean()
        new = new / np.sqrt(np.mean(np.abs(new[u]) ** 2))
        # keep the orientation of the first shape (GPA fixes the mean only up to a rotation)
        new = new * np.exp(-1j * np.angle(np.sum(np.conj(ref[u]) * new[u])))
        if np.max(np.abs(new - ref)) < 1e-12:
            ref = new
            break
        ref = new
    return _real(pose(ref)[:, None] * z), _real(ref)


@dataclass(frozen=True)
class Conditional:
    """Estimate of the hidden landmarks ``index`` (M,): ``points_px`` (M, 2), per-landmark
    ``cov_px2`` (M, 2, 2) and their joint covariance ``joint_px2`` (2M, 2M), image px."""

    index: np.ndarray
    points_px: np.ndarray
    cov_px2: np.ndarray
    joint_px2: np.ndarray


@dataclass(frozen=True)
class ShapeModel:
    """Gaussian shape model: ``mean`` (K, 2) model units, ``cov`` (2K, 2K) in (x₀, y₀, x₁, …)
    order; ``source`` says how it was fitted; ``origin``/``sha256`` the file it came from."""

    mean: np.ndarray
    cov: np.ndarray
    source: Mapping[str, Any] = field(default_factory=dict)
    origin: str = "<shape model>"
    sha256: str = ""

    def __post_init__(self) -> None:
        if np.shape(self.mean) != (NUM_LANDMARKS, 2) or np.shape(self.cov) != (2 * NUM_LANDMARKS,) * 2:
            raise ValueError(f"{self.origin}: shape model mean ({NUM_LANDMARKS}, 2) and cov ({2 * NUM_LANDMARKS}, "
                             f"{2 * NUM_LANDMARKS}) expected, got {np.shape(self.mean)} and {np.shape(self.cov)}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.cov))):
            raise ValueError(f"{self.origin}: shape model has non-finite numbers")
        if not np.allclose(self.cov, np.asarray(self.cov).T, atol=1e-9):
            raise ValueError(f"{self.origin}: shape model cov is not symmetric")
        # the pose of an image is estimated from its seen landmarks only, not from the whole
        # shape as in the fit: the four similarity directions at the mean (translation x, y,
        # rotation, scale) get a wide variance, so the conditional integrates over the pose
        m = np.asarray(self.mean, dtype=np.float64)
        dirs = np.zeros((2 * NUM_LANDMARKS, 4))
        dirs[0::2, 0] = 1.0
        dirs[1::2, 1] = 1.0
        dirs[0::2, 2], dirs[1::2, 2] = -m[:, 1], m[:, 0]
        dirs[0::2, 3], dirs[1::2, 3] = m[:, 0], m[:, 1]
        object.__setattr__(self, "pose_cov", np.asarray(self.cov, dtype=np.float64) + POSE_VARIANCE * dirs @ dirs.T)

    # ------------------------------------------------------------------ fitting and files
    @classmethod
    def fit(cls, shapes: np.ndarray, source: Mapping[str, Any] | None = None) -> "ShapeModel":
        """From N ≥ 20 complete shapes (N, K, 2) in any facing (each is facing-normalised first)."""
        s = np.array(shapes, dtype=np.float64)
        if s.ndim != 3 or s.shape[1:] != (NUM_LANDMARKS, 2) or len(s) < 20 or not np.all(np.isfinite(s)):
            raise ValueError(f"shape model: at least 20 complete ({NUM_LANDMARKS}, 2) shapes expected, got {s.shape}")
        for i in range(len(s)):
            s[i, :, 0] *= facing_sign(s[i])
        aligned, mean = procrustes(s, use=_CHAIN)
        flat = aligned.reshape(len(s), -1)
        cov = np.cov(flat, rowvar=False)
        return cls(mean, 0.5 * (cov + cov.T), dict(source or {}, n_shapes=len(s)))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SHAPE_SCHEMA, "landmarks": list(LANDMARK_NAMES), "frame": "generalised Procrustes on the C2-T1 corners, anterior +x, their mean of unit RMS radius",
                "mean": self.mean.tolist(), "cov": self.cov.tolist(), "source": dict(self.source)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], origin: str = "<shape model>", sha256: str = "") -> "ShapeModel":
        if doc.get("schema") != SHAPE_SCHEMA:
            raise ValueError(f"{origin}: schema {doc.get('schema')!r} found, {SHAPE_SCHEMA!r} expected")
        if list(doc.get("landmarks", [])) != list(LANDMARK_NAMES):
            raise ValueError(f"{origin}: landmarks do not match the 34-landmark schema")
        try:
            return cls(np.asarray(doc["mean"], float), np.asarray(doc["cov"], float), dict(doc.get("source", {})), origin, sha256)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{origin}: invalid shape model: {type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ conditioning
    def condition(self, pts_px: np.ndarray, cov_px2: np.ndarray, observed: np.ndarray, hidden: np.ndarray,
                  facing_hint: float | None = None) -> Conditional:
        """Estimate the landmarks ``hidden`` (K,) bool from the ``observed`` (K,) ones.

        ``pts_px`` (K, 2) and ``cov_px2`` (K, 2, 2) (the observation noise) are read only where
        ``observed``. A landmark both observed and asked for gets its posterior (the noisy
        observation combined with the others). Needs at least 3 observed landmarks (a
        similarity has 4 parameters); raises ``ValueError`` when fewer or when the facing cannot
        be told (``facing_hint`` ±1 tells it when the observed landmarks cannot)."""
        obs, sign, A, mu_o, p, _, G = self._observed_system(pts_px, cov_px2, observed, facing_hint)
        hid = np.flatnonzero(np.asarray(hidden, dtype=bool))
        oi = np.stack([2 * obs, 2 * obs + 1], axis=1).ravel()
        hi = np.stack([2 * hid, 2 * hid + 1], axis=1).ravel()
        cov = self.pose_cov
        w = A @ p
        s_ho = cov[np.ix_(hi, oi)]
        x_h = self.mean[hid].ravel() + s_ho @ G @ (w - mu_o)
        s_hh = cov[np.ix_(hi, hi)] - s_ho @ G @ s_ho.T
        # back to the image: z = (w − d) / c, sign undone
        c = p[0] + 1j * p[1]
        d = p[2] + 1j * p[3]
        z = (x_h[0::2] + 1j * x_h[1::2] - d) / c
        pts = _real(z)
        pts[:, 0] *= sign
        inv = 1.0 / c  # linear part of the inverse map, as a 2×2 rotation-scale
        M = np.diag([sign, 1.0]) @ np.array([[inv.real, -inv.imag], [inv.imag, inv.real]])
        m = len(hid)
        big = np.kron(np.eye(m), M)
        joint = big @ (0.5 * (s_hh + s_hh.T)) @ big.T
        per = joint.reshape(m, 2, m, 2)[np.arange(m), :, np.arange(m), :]  # (m, 2, 2) diagonal blocks
        return Conditional(hid, pts, per, joint)


    def loo_d2(self, pts_px: np.ndarray, cov_px2: np.ndarray, observed: np.ndarray,
               facing_hint: float | None = None) -> np.ndarray:
        """(K,) leave-one-out consistency of each ``observed`` landmark: the squared Mahalanobis
        distance of its position from the model's prediction given all the other observed ones
        (their noise ``cov_px2`` (K, 2, 2) included); NaN where not observed. For a landmark
        that fits, d² follows χ²₂; a corner put on a neighbour's place (one body height off)
        stands out. Computed in the model frame for all landmarks at once: with
        S = cov'_OO + |T⁻¹|² R_O and g = S⁻¹ (w_O − mean_O), landmark i's residual from its
        conditional mean is (S⁻¹)_ii⁻¹ g_i with covariance (S⁻¹)_ii⁻¹, so d²_i = g_iᵀ (S⁻¹)_ii⁻¹ g_i
        (the pose comes from all observed landmarks, outlier included, which only lowers d²).
        Raises ``ValueError`` like :meth:`condition` (``facing_hint`` as there)."""
        obs, _, A, mu_o, p, _, G = self._observed_system(pts_px, cov_px2, observed, facing_hint)
        g = G @ (A @ p - mu_o)
        n = len(obs)
        blocks = G.reshape(n, 2, n, 2)[np.arange(n), :, np.arange(n), :]  # (n, 2, 2) diagonal blocks of S⁻¹
        gi = g.reshape(n, 2)
        out = np.full(NUM_LANDMARKS, np.nan)
        out[obs] = np.einsum("ni,ni->n", gi, np.linalg.solve(blocks, gi[..., None])[..., 0])
        return out

    def _observed_system(self, pts_px: np.ndarray, cov_px2: np.ndarray, observed: np.ndarray,
                         facing_hint: float | None = None) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
        """For the ``observed`` (K,) landmarks of ``pts_px`` (K, 2) with noise ``cov_px2`` (K, 2, 2):
        their indices (n,), the facing sign, the pose design A (2n, 4), the observed mean (2n,),
        the pose p (4,) posing the facing-normalised observations on the mean, |T⁻¹|² and
        G = S⁻¹ (2n, 2n). Raises ``ValueError`` for fewer than 3 or an undecidable facing."""
        observed = np.asarray(observed, dtype=bool)
        obs = np.flatnonzero(observed)
        if len(obs) < 3:
            raise ValueError(f"shape model needs at least 3 observed landmarks, got {len(obs)}")
        y = np.asarray(pts_px, dtype=np.float64)[obs].copy()
        R = np.asarray(cov_px2, dtype=np.float64)[obs].copy()
        sign = facing_sign(np.where(observed[:, None], pts_px, np.nan), facing_hint)
        y[:, 0] *= sign
        R[:, 0, 1] *= sign
        R[:, 1, 0] *= sign
        n = len(obs)
        oi = np.stack([2 * obs, 2 * obs + 1], axis=1).ravel()
        mu_o = self.mean[obs].ravel()
        # design of w = c·z + d (c, d complex) in p = (Re c, Im c, Re d, Im d)
        A = np.zeros((2 * n, 4))
        A[0::2] = np.column_stack([y[:, 0], -y[:, 1], np.ones(n), np.zeros(n)])
        A[1::2] = np.column_stack([y[:, 1], y[:, 0], np.zeros(n), np.ones(n)])
        Rb = np.zeros((n, 2, n, 2))
        Rb[np.arange(n), :, np.arange(n), :] = R  # block diagonal (2n, 2n)
        Rb = Rb.reshape(2 * n, 2 * n)
        p = np.linalg.lstsq(A, mu_o, rcond=None)[0]  # the seen landmarks posed on the mean
        c2 = float(p[0] ** 2 + p[1] ** 2)
        G = np.linalg.inv(self.pose_cov[np.ix_(oi, oi)] + c2 * Rb + RIDGE * np.eye(len(oi)))
        return obs, float(sign), A, mu_o, p, c2, G

def load_shape_model(path: str | os.PathLike[str], sha256: str | None = None) -> ShapeModel:
    """Read a model written by ``tools/fit_shape_model.py``. With ``sha256`` the file must match
    it. Any problem raises ``ValueError`` with one line naming the file."""
    from ..engine.manifest import sha256_file

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: shape model file does not exist")
    found = sha256_file(p)
    if sha256 and found != sha256:
        raise ValueError(f"{p}: sha256 {found[:16]}… does not match manifest field extra.uncertainty.shape_model.sha256 "
                         f"{str(sha256)[:16]}… (tampered or mismatched file)")
    from ..engine.manifest import read_json_object

    doc = read_json_object(p, "shape model")
    return ShapeModel.from_dict(doc, str(p), found)


def shape_model_for_manifest(spec: Any, base_dir: str | os.PathLike[str] | None) -> ShapeModel | None:
    """The shape model named by ``extra["uncertainty"]["shape_model"]`` = ``{"file": FILE,
    "sha256": HEX}`` (FILE relative to ``base_dir``, the manifest's folder; None: ``engines/``),
    or None when ``spec`` is None. A bad spec, a missing or tampered file raises ``ModelError``
    with one line naming the file."""
    from ..errors import ModelError

    if spec is None:
        return None
    if not isinstance(spec, Mapping) or "file" not in spec or "sha256" not in spec:
        raise ModelError(f"manifest field extra.uncertainty.shape_model {spec!r:.80}, expected {{'file': FILE, 'sha256': HEX}}")
    if base_dir is None:
        from ..engine.manifest import engines_dir

        base_dir = engines_dir()
    try:
        return load_shape_model(Path(base_dir) / str(spec["file"]), str(spec["sha256"]))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
