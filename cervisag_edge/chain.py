"""Vertebral level assignment as a chain anchored at C2 (pure numpy).

The network gives one heatmap per landmark. Decoding each heatmap by its own argmax names the
levels independently, so a model that confuses two neighbouring vertebrae can report every
vertebra one level off, or pile the levels of a short film at its edge. :func:`decode_chain`
instead decodes the seven vertebrae (C2 … T1) together:

1. *Candidates.* Local maxima of every corner heatmap (top few per map) are combined into
   vertebral-body hypotheses of four corners (AS, PS, PI, AI), one peak per corner map of the
   same level, kept when the six corner distances fit the learned range and the outline is
   convex; hypotheses of all levels' heatmaps are pooled and merged by position,
   so one physical body is one candidate, whichever level's heatmaps saw it.
2. *Scores.* Candidate ``j`` at level ``L`` costs ``w · mean_c −log(α·H_L,c + (1−α)·max_L' H_L',c)``
   at its corners (own-level evidence mixed with any-level evidence), plus, for C2, the learned
   position of the dens tip and the anterior arch of C1 relative to the C2 body (the anchor).
   Consecutive levels cost a Gaussian prior on their displacement, relative rotation and size
   ratio, expressed in the upper body's own frame (invariant to image rotation, flip and scale).
3. *Chain.* Viterbi over the seven levels picks one candidate or "not in image" per level;
   missing levels may only form a run at the top and/or the bottom (states TOP and END), each
   costing ``w · −log τ``. Candidates are ordered along the spine and every step must move
   strictly caudally in that order, so one candidate can never be given to two levels.
4. *Refinement.* The chosen corners are refined with the codec's DARK step at the chosen peak
   (:func:`cervisag_edge.codec.decode_dark` on a window around it), so where the chain picks
   each map's own argmax the result equals the plain decode.

The learned numbers live in a JSON prior (``engines/chain_prior.json``, written by
``tools/fit_chain_prior.py``); see ``docs/levels.md`` for the algorithm and references.

Shape legend: K landmarks (34), h × w heatmap, V vertebrae (7), C corners (4), n candidates,
m peaks kept per heatmap. Coordinates are (x, y) heatmap px unless a name says otherwise.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .codec import UDPHeatmapCodec, _gaussian_kernel, decode_dark
from .landmarks import CORNERS, NUM_LANDMARKS, VERTEBRAE, landmark_index

logger = logging.getLogger(__name__)

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
        from .manifest import engines_dir

        path = engines_dir() / PRIOR_FILE
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: cannot read chain prior: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: chain prior must be a JSON object")
    return ChainPrior.from_dict(doc, str(p))


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class ChainResult:
    """Decoded landmarks of one image.

    ``landmarks_hm`` (K, 2) heatmap px; ``confidence`` (K,): the heatmap value at the chosen
    peak, 0 for corners of a level the chain left out (their position is then the map's own
    argmax, for display only); ``found`` (K,) bool: False for those corners.
    ``level_candidate`` (V,): chosen candidate per level, −1 when not in the image;
    ``level_source`` (V,): the level whose heatmaps produced the chosen peaks (differs from the
    level when the chain renamed a body), −1 when absent; ``cost``: total chain cost.
    """

    landmarks_hm: np.ndarray
    confidence: np.ndarray
    found: np.ndarray
    level_candidate: np.ndarray
    level_source: np.ndarray
    cost: float
    n_candidates: int
    level_partial: np.ndarray | None = None  # (V,) bool: a level cut by the film edge, with only some corners found

    @property
    def levels_found(self) -> tuple[str, ...]:
        return tuple(v for v, j in zip(VERTEBRAE, self.level_candidate) if j >= 0)


# ----------------------------------------------------------------------------- candidates
_DY = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
_DX = np.array([-1, 0, 1, -1, 1, -1, 0, 1])


def local_peaks(maps: np.ndarray, floor: float, top_m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``top_m`` 3 × 3 local maxima ≥ ``floor`` of each map (ties: every tied pixel counts).

    maps: (M, h, w). Returns ys, xs (M, m) int and values (M, m) float (−1 where a map has fewer).
    Only pixels ≥ ``floor`` are examined, so the cost follows the heatmaps' support.
    """
    M, h, w = maps.shape
    flat = np.ascontiguousarray(maps).reshape(-1)
    idx = np.flatnonzero(flat >= floor)
    v = flat[idx]
    k, rem = np.divmod(idx, h * w)
    y, x = np.divmod(rem, w)
    # the 8 neighbours, clipped at the edges (a clipped neighbour is the pixel itself)
    ny = np.clip(y[:, None] + _DY[None, :], 0, h - 1)
    nx = np.clip(x[:, None] + _DX[None, :], 0, w - 1)
    peak = v >= flat[(k * (h * w))[:, None] + ny * w + nx].max(axis=1, initial=-np.inf)
    k, y, x, v = k[peak], y[peak], x[peak], v[peak].astype(np.float64)
    order = np.lexsort((-v, k))  # by map, strongest first
    k, y, x, v = k[order], y[order], x[order], v[order]
    rank = np.arange(len(k)) - np.searchsorted(k, k)  # position within its map
    keep = rank < top_m
    ys = np.zeros((M, top_m), dtype=np.int64)
    xs = np.zeros((M, top_m), dtype=np.int64)
    vals = np.full((M, top_m), -1.0)
    ys[k[keep], rank[keep]] = y[keep]
    xs[k[keep], rank[keep]] = x[keep]
    vals[k[keep], rank[keep]] = v[keep]
    return ys, xs, vals


_NEXT = np.array([1, 2, 3, 0])
_PAIR_I, _PAIR_J = np.triu_indices(4, 1)  # the six corner pairs


def _combinations(m: int) -> np.ndarray:
    """(m⁴, 4) every choice of one peak index per corner map."""
    return np.stack(np.meshgrid(*([np.arange(m)] * 4), indexing="ij"), axis=-1).reshape(-1, 4)


_ROWS = {m: _combinations(m) for m in range(1, 6)}


def _hypotheses(pts: np.ndarray, vals: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Four-corner hypotheses of every level's heatmaps.

    pts: (V, 4, m, 2) peak positions per level and corner map, vals (V, 4, m) (−1 = none),
    ranges (4, 4, 2) in px. Every combination of one peak per corner map of a level whose six
    corner distances fit ``ranges`` and whose outline AS → PS → PI → AI is convex is kept.
    Returns the level (q,) and the peak index per corner (q, 4) of each hypothesis.
    """
    V, _, m, _ = pts.shape
    rows = _ROWS.get(m)
    if rows is None:
        rows = _combinations(m)
    flat = rows + m * np.arange(4)[None, :]  # (m^4, 4) index into the 4·m peaks of a level
    quad = pts.reshape(V, 4 * m, 2)[:, flat]  # (V, m^4, 4, 2)
    keep = np.all(vals.reshape(V, 4 * m)[:, flat] > 0, axis=2)  # (V, m^4)
    diff = quad[:, :, _PAIR_I] - quad[:, :, _PAIR_J]  # (V, m^4, 6, 2)
    d = np.hypot(diff[..., 0], diff[..., 1])
    lo, hi = ranges[_PAIR_I, _PAIR_J, 0], ranges[_PAIR_I, _PAIR_J, 1]
    keep &= np.all((d >= lo) & (d <= hi), axis=2)
    e = quad[:, :, _NEXT] - quad  # edges AS→PS, PS→PI, PI→AI, AI→AS
    en = e[:, :, _NEXT]
    turn = e[..., 0] * en[..., 1] - e[..., 1] * en[..., 0]
    keep &= np.all(turn > 0, axis=2) | np.all(turn < 0, axis=2)
    lv, q = np.nonzero(keep)
    return lv, rows[q]


@dataclass(frozen=True)
class _Candidates:
    corners: np.ndarray  # (n, 4, 2) int (x, y) peak pixels
    source: np.ndarray  # (n,) level whose heatmaps gave the peaks
    rank: np.ndarray  # (n, 4) rank of each corner's peak in its map (0 = the map's argmax)
    peaks_xy: np.ndarray  # (V, C, m, 2) every map's peaks
    peak_vals: np.ndarray  # (V, C, m), −1 = none


def _candidates(lv: np.ndarray, s: DecoderSettings, ranges_px: np.ndarray, merge_px: float) -> _Candidates:
    V, C, h, w = lv.shape
    ys, xs, vals = local_peaks(lv.reshape(V * C, h, w), s.peak_floor, s.peaks_per_map)
    m = ys.shape[1]
    vals = vals.reshape(V, C, m)
    pts = np.stack([xs, ys], axis=-1).reshape(V, C, m, 2).astype(np.float64)
    level, rows = _hypotheses(pts, vals, ranges_px)
    if not len(level):
        return _Candidates(np.zeros((0, 4, 2)), np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.int64), pts, vals)
    corner = np.arange(C)[None, :]
    allc = pts[level[:, None], corner, rows]  # (q, 4, 2)
    score = vals[level[:, None], corner, rows].mean(axis=1)
    order = np.argsort(-score, kind="stable")
    allc, level, rows = allc[order], level[order], rows[order]
    centres = allc.mean(axis=1)
    near = np.linalg.norm(centres[:, None] - centres[None], axis=-1) < merge_px  # (q, q)
    alive = np.ones(len(order), dtype=bool)
    kept: list[int] = []
    for i in range(len(order)):  # greedy: the strongest hypothesis of each physical body survives
        if alive[i]:
            kept.append(i)
            alive &= ~near[i]
    return _Candidates(allc[kept], level[kept], rows[kept], pts, vals)


# ----------------------------------------------------------------------------- decode
def _refine(heatmaps: np.ndarray, channels: np.ndarray, peaks_xy: np.ndarray, blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DARK refinement of ``heatmaps[channels[q]]`` at the integer peak ``peaks_xy[q]``.

    Each map is cut to the DARK window around its peak, with values above the peak's own lowered
    just below it, so that the codec's argmax lands on the chosen peak and its DARK patch sees
    the original values; a peak nearer the border than the window keeps the full map (zero
    outside the window) so that the codec's edge handling is the same. Returns coords (Q, 2)
    and scores (Q,).
    """
    Q = len(channels)
    _, h, w = heatmaps.shape
    half = len(_gaussian_kernel(blur_sigma)) // 2 + 1 if blur_sigma > 0 else 1
    x = peaks_xy[:, 0].astype(np.int64)
    y = peaks_xy[:, 1].astype(np.int64)
    top = heatmaps[channels, y, x].astype(np.float64)
    coords = np.zeros((Q, 2))
    scores = np.zeros(Q)
    inner = (x >= half) & (x < w - half) & (y >= half) & (y < h - half)
    offs = np.arange(-half, half + 1)
    if inner.any():
        i = np.flatnonzero(inner)
        win = heatmaps[channels[i, None, None], y[i, None, None] + offs[None, :, None], x[i, None, None] + offs[None, None, :]]
        win = np.minimum(win.astype(np.float64), np.nextafter(top[i], -np.inf)[:, None, None])
        win[:, half, half] = top[i]
        xy, sc = decode_dark(win, blur_sigma=blur_sigma)
        coords[i] = xy + np.stack([x[i] - half, y[i] - half], axis=1)
        scores[i] = sc
    for q in np.flatnonzero(~inner):
        work = np.zeros((1, h, w))
        y0, y1, x0, x1 = max(0, y[q] - half), min(h, y[q] + half + 1), max(0, x[q] - half), min(w, x[q] + half + 1)
        win = np.minimum(heatmaps[channels[q], y0:y1, x0:x1].astype(np.float64), np.nextafter(top[q], -np.inf))
        win[y[q] - y0, x[q] - x0] = top[q]
        work[0, y0:y1, x0:x1] = win
        xy, sc = decode_dark(work, blur_sigma=blur_sigma)
        coords[q], scores[q] = xy[0], sc[0]
    return coords, scores


def decode_chain(heatmaps: np.ndarray, prior: ChainPrior, codec: UDPHeatmapCodec) -> ChainResult:
    """Decode one image's heatmaps with the levels assigned as a chain (see the module docstring).

    heatmaps: (K, h, w) float, K = 34 in schema order. Landmarks other than the vertebral corners
    are decoded by the codec as usual (argmax + DARK). Returns a :class:`ChainResult` in heatmap
    px (``codec.heatmap_to_input`` maps them to the model input).
    """
    hm = np.asarray(heatmaps)
    if hm.ndim != 3 or hm.shape[0] != NUM_LANDMARKS:
        raise ValueError(f"heatmaps must have shape ({NUM_LANDMARKS}, h, w), got {hm.shape}")
    s = prior.settings
    V, C = len(VERTEBRAE), len(CORNERS)
    base_xy, base_conf = decode_dark(hm, blur_sigma=codec.blur_sigma)
    coords, conf = base_xy.copy(), base_conf.copy()
    lv = hm[FIRST_CORNER : FIRST_CORNER + V * C].reshape(V, C, *hm.shape[1:])
    found = np.ones(NUM_LANDMARKS, dtype=bool)
    none = np.full(V, -1, dtype=np.int64)

    bodies = base_xy[FIRST_CORNER : FIRST_CORNER + V * C].reshape(V, C, 2)
    trusted = base_conf[FIRST_CORNER : FIRST_CORNER + V * C].reshape(V, C).min(axis=1) >= s.scale_min_confidence
    scale = median_body_height(bodies[trusted]) if trusted.any() else float("nan")
    cands = _candidates(lv, s, prior.corner_distance_range * scale, s.merge_radius * scale) if np.isfinite(scale) else None
    if cands is None or len(cands.source) == 0:
        found[FIRST_CORNER:] = False
        conf[FIRST_CORNER:] = 0.0
        return ChainResult(coords, conf, found, none, none.copy(), float("nan"), 0)

    n = len(cands.source)
    cx, cy = cands.corners[..., 0].astype(np.int64), cands.corners[..., 1].astype(np.int64)  # (n, 4)
    own = lv[:, np.arange(C)[None, :], cy, cx]  # (V, n, 4)
    mix = s.own_level_weight * own + (1.0 - s.own_level_weight) * own.max(axis=0)  # any-level evidence: max over V
    unary = s.emission_weight * -np.log(np.maximum(mix, 1e-6)).mean(axis=2)  # (V, n)
    absent = np.full(V, s.emission_weight * -np.log(s.absent_value))
    frames = body_frames(cands.corners)
    for name in prior.anchors:
        k = landmark_index(name)
        if base_conf[k] >= s.anchor_min_confidence:
            unary[0] += prior.anchor_cost(name, anchor_features_from_frames(frames, base_xy[k]))
            absent[0] = s.anchored_absent_factor * s.emission_weight * -np.log(s.absent_value)

    centre, u = frames[0], frames[1]
    axis = _unit(u.sum(axis=0))
    pos = centre @ axis
    order_ok = pos[None, :] > pos[:, None]  # (n, n): j lies caudal of i along the spine
    feats = pair_features_from_frames(tuple(f[:, None] for f in frames), tuple(f[None, :] for f in frames))  # (n, n, 4)
    pair = prior.pair_costs(feats)  # (V-1, n, n)
    pair = np.where(order_ok[None], pair, np.inf)

    level_choice, total = _viterbi(unary, pair, absent)
    for level, j in enumerate(level_choice):
        sl = slice(FIRST_CORNER + C * level, FIRST_CORNER + C * (level + 1))
        if j < 0:
            found[sl] = False
            conf[sl] = 0.0
    chosen = [(level, j) for level, j in enumerate(level_choice) if j >= 0]
    partial = np.zeros(V, dtype=bool)
    if chosen:
        levels = np.array([lvl for lvl, _ in chosen])
        js = np.array([j for _, j in chosen])
        chans = (FIRST_CORNER + C * cands.source[js][:, None] + np.arange(C)[None, :]).ravel()
        targets = (FIRST_CORNER + C * levels[:, None] + np.arange(C)[None, :]).ravel()
        peaks = cands.corners[js].reshape(-1, 2)
        ranks = cands.rank[js].ravel()
        extra = _partial_ends(prior, cands, chosen, frames)
        if extra:
            e_tg, e_ch, e_pk, e_rk = (np.array(v) for v in zip(*extra))
            targets, chans = np.concatenate([targets, e_tg]), np.concatenate([chans, e_ch])
            peaks, ranks = np.concatenate([peaks, e_pk]), np.concatenate([ranks, e_rk])
            found[e_tg] = True
            partial[(e_tg - FIRST_CORNER) // C] = True
        argmax = ranks == 0  # the map's own argmax: the plain decode already refined it
        coords[targets[argmax]] = base_xy[chans[argmax]]
        conf[targets[argmax]] = base_conf[chans[argmax]]
        if not argmax.all():
            xy, sc = _refine(hm, chans[~argmax], peaks[~argmax], codec.blur_sigma)
            coords[targets[~argmax]] = xy
            conf[targets[~argmax]] = sc
    source = np.array([cands.source[j] if j >= 0 else -1 for j in level_choice], dtype=np.int64)
    return ChainResult(coords, conf, found, np.asarray(level_choice, dtype=np.int64), source, float(total), n, partial)


def _partial_ends(prior: ChainPrior, cands: _Candidates, chosen: list[tuple[int, int]], frames: Frames) -> list[tuple[int, int, np.ndarray, int]]:
    """Endplate corners of the level just beyond each end of the chain, for a body cut by the film.

    Below the last chain body its superior corners (AS, PS), above the first its inferior corners
    (PI, AI) are looked for in that level's own maps: the peak nearest to where the pair prior's
    mean offset puts the corner (the end body shifted by the mean offset, in its own frame),
    accepted within ``merge_radius`` body heights. Returns (target landmark, channel, peak (2,),
    rank) per corner found.
    """
    s = prior.settings
    V, C = len(VERTEBRAE), len(CORNERS)
    out: list[tuple[int, int, np.ndarray, int]] = []
    ends = ((chosen[-1], chosen[-1][0] + 1, (_AS, _PS), 1.0), (chosen[0], chosen[0][0] - 1, (_PI, _AI), -1.0))
    for (end_level, j), level, corners, sign in ends:
        if not 0 <= level < V:
            continue
        _, u, a, h = (f[j] for f in frames)
        mean = prior.pairs[min(level, end_level)].mean
        shift = sign * h * (mean[0] * u + mean[1] * a)
        for c in corners:
            want = cands.corners[j, c] + shift
            ok = cands.peak_vals[level, c] > 0
            if not ok.any():
                continue
            d = np.linalg.norm(cands.peaks_xy[level, c] - want, axis=1)
            d[~ok] = np.inf
            r = int(np.argmin(d))
            if d[r] <= s.merge_radius * h:
                out.append((FIRST_CORNER + C * level + c, FIRST_CORNER + C * level + c, cands.peaks_xy[level, c, r], r))
    return out


def _viterbi(unary: np.ndarray, pair: np.ndarray, absent: np.ndarray) -> tuple[list[int], float]:
    """Best chain over V levels: state j < n is candidate j, n is TOP (before the chain), n + 1 END.

    unary (V, n), pair (V − 1, n, n) (inf = forbidden), absent (V,) cost of TOP/END. Returns the candidate per level (−1 for
    TOP/END) and the total cost.
    """
    V, n = unary.shape
    top, end = n, n + 1
    trans = np.full((V - 1, n + 2, n + 2), np.inf)
    trans[:, :n, :n] = pair
    trans[:, :n, end] = 0.0
    trans[:, top, top] = 0.0
    trans[:, top, :n] = 0.0
    trans[:, end, end] = 0.0
    emit = np.concatenate([unary, np.repeat(absent[:, None], 2, axis=1)], axis=1)
    emit[0, end] = np.inf  # the chain cannot end before it starts (all absent = all TOP)
    cost = emit[0].copy()
    back = np.zeros((V, n + 2), dtype=np.int64)
    for level in range(1, V):
        tot = cost[:, None] + trans[level - 1]
        back[level] = np.argmin(tot, axis=0)
        cost = tot[back[level], np.arange(n + 2)] + emit[level]
    state = int(np.argmin(cost))
    total = float(cost[state])
    path = [state]
    for level in range(V - 1, 0, -1):
        state = int(back[level, state])
        path.append(state)
    path.reverse()
    return [p if p < n else -1 for p in path], total


__all__ = [
    "ANCHORS",
    "PAIR_FEATURES",
    "PRIOR_FILE",
    "ChainPrior",
    "ChainResult",
    "DecoderSettings",
    "GaussianPrior",
    "anchor_features",
    "body_frames",
    "corner_distances",
    "decode_chain",
    "load_chain_prior",
    "local_peaks",
    "median_body_height",
    "pair_features",
]
