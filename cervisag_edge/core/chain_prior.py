"""Geometry features and the learned spatial prior of the chain decoder (pure numpy).

The features are shared by the runtime (:mod:`cervisag_edge.core.chain`) and the fitting tool
(``tools/fit_chain_prior.py``), so both measure the same thing. See ``docs/levels.md``.

Shapes: corners are (…, 4, 2) in (AS, PS, PI, AI) order, (x, y); V = 7 vertebrae.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .landmarks import CORNERS, VERTEBRAE, landmark_index

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.manifest import ModelManifest

PRIOR_SCHEMA = "cervisag-chain-prior/1"
#: Landmarks whose position relative to the C2 body anchors the chain.
ANCHORS: tuple[str, ...] = ("DENS_TIP", "C1_ANT")
#: Index of C2_AS; the V × C vertebra channels follow in schema order.
FIRST_CORNER = landmark_index(f"{VERTEBRAE[0]}_{CORNERS[0]}")
#: Names of the pair features (upper body frame; normalised by the mean body height).
PAIR_FEATURES: tuple[str, ...] = ("caudal_offset", "anterior_offset", "rotation_rad", "log_height_ratio")

_AS, _PS, _PI, _AI = range(4)


# ----------------------------------------------------------------------------- geometry (shared with the fit)
def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def body_frames(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames of vertebral bodies from their corners.

    corners: (…, 4, 2) in (AS, PS, PI, AI) order. Returns centre (…, 2) (corner mean), caudal
    unit vector u (…, 2) (superior → inferior endplate midpoints), anterior unit vector a (…, 2)
    (posterior → anterior wall midpoints, made orthogonal to u) and body height (…,) (mean of
    the anterior and posterior wall lengths). The frame follows the anatomy, so it is the same
    for a flipped or rotated image.
    """
    c = np.asarray(corners, dtype=np.float64)
    centre = c.mean(axis=-2)
    u = _unit(0.5 * (c[..., _PI, :] + c[..., _AI, :]) - 0.5 * (c[..., _AS, :] + c[..., _PS, :]))
    a0 = 0.5 * (c[..., _AS, :] + c[..., _AI, :]) - 0.5 * (c[..., _PS, :] + c[..., _PI, :])
    a = _unit(a0 - np.sum(a0 * u, axis=-1, keepdims=True) * u)
    height = 0.5 * (np.linalg.norm(c[..., _AS, :] - c[..., _AI, :], axis=-1) + np.linalg.norm(c[..., _PS, :] - c[..., _PI, :], axis=-1))
    return centre, u, a, height


Frames = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def pair_features(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Features of consecutive bodies (see :data:`PAIR_FEATURES`).

    upper, lower: (…, 4, 2) corners (broadcastable). Returns (…, 4): the lower centre's offset
    from the upper centre along the upper body's caudal and anterior axes, divided by the mean
    height of both; the lower body's rotation relative to the upper one (rad, positive towards
    anterior); log(height_lower / height_upper).
    """
    return pair_features_from_frames(body_frames(upper), body_frames(lower))


def pair_features_from_frames(upper: Frames, lower: Frames) -> np.ndarray:
    """:func:`pair_features` from :func:`body_frames` results (broadcastable)."""
    cu, uu, au, hu = upper
    cl, ul, _, hl = lower
    d = cl - cu
    hbar = np.maximum(0.5 * (hu + hl), 1e-9)
    rot = np.arctan2(np.sum(ul * au, axis=-1), np.sum(ul * uu, axis=-1))
    ratio = np.log(np.maximum(hl, 1e-9) / np.maximum(hu, 1e-9))
    return np.stack([np.sum(d * uu, axis=-1) / hbar, np.sum(d * au, axis=-1) / hbar, rot, ratio], axis=-1)


def anchor_features(c2_corners: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Position of an anchor landmark in the C2 body's frame: (…, 2) = (caudal, anterior) / height."""
    return anchor_features_from_frames(body_frames(c2_corners), point)


def anchor_features_from_frames(c2: Frames, point: np.ndarray) -> np.ndarray:
    """:func:`anchor_features` from a :func:`body_frames` result."""
    c, u, a, h = c2
    d = np.asarray(point, dtype=np.float64) - c
    h = np.maximum(h, 1e-9)
    return np.stack([np.sum(d * u, axis=-1) / h, np.sum(d * a, axis=-1) / h], axis=-1)


def corner_distances(corners: np.ndarray) -> np.ndarray:
    """(…, 4, 4) distances between the corners of each body."""
    c = np.asarray(corners, dtype=np.float64)
    return np.linalg.norm(c[..., :, None, :] - c[..., None, :, :], axis=-1)


def median_body_height(corners: np.ndarray) -> float:
    """Median body height (as in :func:`body_frames`) over the (V, 4, 2) bodies with finite
    corners: the scale unit."""
    c = np.asarray(corners, dtype=np.float64)
    d = c[:, [_AS, _PS]] - c[:, [_AI, _PI]]  # (V, 2, 2) anterior and posterior walls
    h = np.sort(0.5 * np.hypot(d[..., 0], d[..., 1]).sum(axis=1))
    h = h[np.isfinite(h) & (h > 0)]
    n = len(h)
    return float(0.5 * (h[(n - 1) // 2] + h[n // 2])) if n else float("nan")


# ----------------------------------------------------------------------------- prior
@dataclass(frozen=True)
class GaussianPrior:
    """Gaussian of a feature vector: mean (d,), covariance (d, d); ``cost`` = ½ Mahalanobis²."""

    mean: np.ndarray
    cov: np.ndarray

    def precision(self, inflation: float, min_sd: np.ndarray) -> np.ndarray:
        cov = self.cov * inflation**2 + np.diag(np.asarray(min_sd, dtype=np.float64) ** 2)
        return np.linalg.inv(cov)

    def cost(self, x: np.ndarray, precision: np.ndarray) -> np.ndarray:
        d = np.asarray(x, dtype=np.float64) - self.mean
        return 0.5 * np.einsum("...i,ij,...j->...", d, precision, d)


@dataclass(frozen=True)
class DecoderSettings:
    """Hand-set (not learned) settings of the chain decoder; stored in the prior JSON too."""

    peaks_per_map: int = 3  # m
    peak_floor: float = 0.05  # local maxima below this are not candidates
    own_level_weight: float = 0.5  # α: own-level vs any-level heatmap evidence
    emission_weight: float = 10.0  # w
    absent_value: float = 0.3  # τ: a level "not in image" costs like a corner of this heatmap value
    anchor_min_confidence: float = 0.3  # anchors below this are not used
    anchored_absent_factor: float = 2.0  # C2 "not in image" costs this many times more when an anchor is found
    merge_radius: float = 0.35  # candidates closer than this (× body height) are one body
    scale_min_confidence: float = 0.1  # argmax corners used for the body-height estimate
    sd_inflation: float = 1.5  # prior SDs are widened by this factor …
    pair_min_sd: tuple[float, float, float, float] = (0.05, 0.05, 0.05, 0.05)  # … and floored
    anchor_min_sd: tuple[float, float] = (0.08, 0.08)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ChainPrior:
    """Learned spatial prior of the chain (from training phantoms) plus decoder settings.

    ``pairs``: one :class:`GaussianPrior` per consecutive level pair (V − 1) over
    :data:`PAIR_FEATURES`; ``anchors``: name → Gaussian of :func:`anchor_features`;
    ``corner_distance_range``: (4, 4, 2) [low, high] corner distances within a body, in units
    of the image's median body height.
    """

    pairs: tuple[GaussianPrior, ...]
    anchors: Mapping[str, GaussianPrior]
    corner_distance_range: np.ndarray
    settings: DecoderSettings = field(default_factory=DecoderSettings)
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.pairs) != len(VERTEBRAE) - 1:
            raise ValueError(f"chain prior needs {len(VERTEBRAE) - 1} level pairs, got {len(self.pairs)}")
        if np.shape(self.corner_distance_range) != (4, 4, 2):
            raise ValueError(f"corner_distance_range must be (4, 4, 2), got {np.shape(self.corner_distance_range)}")
        s = self.settings
        # precisions of the widened Gaussians, computed once: (V-1, 4, 4) and name -> (2, 2)
        object.__setattr__(self, "_pair_mean", np.stack([g.mean for g in self.pairs]))
        object.__setattr__(self, "_pair_prec", np.stack([g.precision(s.sd_inflation, np.array(s.pair_min_sd)) for g in self.pairs]))
        object.__setattr__(self, "_anchor_prec", {k: g.precision(s.sd_inflation, np.array(s.anchor_min_sd)) for k, g in self.anchors.items()})

    def pair_costs(self, feats: np.ndarray) -> np.ndarray:
        """(V-1, …) cost of pair features (…, 4) under each level pair's widened Gaussian."""
        d = feats[None] - self._pair_mean.reshape((-1,) + (1,) * (feats.ndim - 1) + (feats.shape[-1],))  # type: ignore[attr-defined]
        return 0.5 * np.einsum("l...i,lij,l...j->l...", d, self._pair_prec, d)  # type: ignore[attr-defined]

    def anchor_cost(self, name: str, feats: np.ndarray) -> np.ndarray:
        """(…,) cost of anchor features (…, 2) for anchor ``name``."""
        return self.anchors[name].cost(feats, self._anchor_prec[name])  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PRIOR_SCHEMA,
            "levels": list(VERTEBRAE),
            "pair_features": list(PAIR_FEATURES),
            "pairs": [{"upper": VERTEBRAE[i], "lower": VERTEBRAE[i + 1], "mean": g.mean.tolist(), "cov": g.cov.tolist()}
                      for i, g in enumerate(self.pairs)],
            "anchors": {k: {"mean": g.mean.tolist(), "cov": g.cov.tolist()} for k, g in self.anchors.items()},
            "corner_distance_range": np.asarray(self.corner_distance_range).tolist(),
            "decoder": self.settings.to_dict(),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], origin: str = "<chain prior>") -> "ChainPrior":
        if doc.get("schema") != PRIOR_SCHEMA:
            raise ValueError(f"{origin}: schema {doc.get('schema')!r} found, {PRIOR_SCHEMA!r} expected")
        if list(doc.get("levels", [])) != list(VERTEBRAE):
            raise ValueError(f"{origin}: levels {doc.get('levels')!r} found, {list(VERTEBRAE)} expected")
        try:
            pairs = tuple(GaussianPrior(np.asarray(p["mean"], float), np.asarray(p["cov"], float)) for p in doc["pairs"])
            anchors = {k: GaussianPrior(np.asarray(v["mean"], float), np.asarray(v["cov"], float)) for k, v in doc["anchors"].items()}
            known = DecoderSettings.__dataclass_fields__
            dec = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(doc.get("decoder", {})).items() if k in known}
            prior = cls(pairs, anchors, np.asarray(doc["corner_distance_range"], float), DecoderSettings(**dec), dict(doc.get("source", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{origin}: invalid chain prior: {type(exc).__name__}: {exc}") from None
        for g in prior.pairs:
            if g.mean.shape != (len(PAIR_FEATURES),) or g.cov.shape != (len(PAIR_FEATURES),) * 2:
                raise ValueError(f"{origin}: pair prior mean/cov must be ({len(PAIR_FEATURES)},)/({len(PAIR_FEATURES)}, {len(PAIR_FEATURES)})")
        unknown = sorted(set(prior.anchors) - set(ANCHORS))
        if unknown:
            raise ValueError(f"{origin}: unknown anchors {unknown}, expected a subset of {list(ANCHORS)}")
        return prior


#: File name of the prior beside the model manifests in ``engines/``.
PRIOR_FILE = "chain_prior.json"


def load_chain_prior(path: str | os.PathLike[str] | None = None) -> ChainPrior:
    """Read a prior written by ``tools/fit_chain_prior.py`` (None: the shipped
    ``engines/chain_prior.json``); a bad file raises ``ValueError`` naming it."""
    if path is None:
        from ..engine.manifest import engines_dir

        path = engines_dir() / PRIOR_FILE
    p = Path(path)
    from ..engine.manifest import read_json_object

    doc = read_json_object(p, "chain prior")
    return ChainPrior.from_dict(doc, str(p))


def prior_for_manifest(manifest: "ModelManifest") -> ChainPrior | None:
    """The level prior a model's manifest names, or None for per-landmark decoding.

    The manifest's ``codec.levels`` is ``{"type": "chain", "prior": FILE, "sha256": HEX}``, FILE
    relative to the manifest; a missing file or a sha256 mismatch raises ``ModelError`` naming the
    field. Models without ``codec.levels`` (older or custom ones) decode every landmark alone.
    """
    from ..errors import ModelError
    from ..engine.manifest import sha256_file

    spec = manifest.codec.get("levels")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "chain" or "prior" not in spec:
        raise ModelError(f"{manifest.model_path}: manifest field codec.levels {spec!r:.80}, expected "
                         "{'type': 'chain', 'prior': FILE, 'sha256': HEX}")
    path = manifest.model_path.parent / str(spec["prior"])
    if not path.is_file():
        raise ModelError(f"{path}: chain prior named by manifest field codec.levels.prior does not exist")
    want = spec.get("sha256")
    if want and sha256_file(path) != want:
        raise ModelError(f"{path}: sha256 does not match manifest field codec.levels.sha256")
    try:
        return load_chain_prior(path)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
