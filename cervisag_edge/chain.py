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


def pair_features(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Features of consecutive bodies (see :data:`PAIR_FEATURES`).

    upper, lower: (…, 4, 2) corners (broadcastable). Returns (…, 4): the lower centre's offset
    from the upper centre along the upper body's caudal and anterior axes, divided by the mean
    height of both; the lower body's rotation relative to the upper one (rad, positive towards
    anterior); log(height_lower / height_upper).
    """
    cu, uu, au, hu = body_frames(upper)
    cl, ul, _, hl = body_frames(lower)
    d = cl - cu
    hbar = np.maximum(0.5 * (hu + hl), 1e-9)
    rot = np.arctan2(np.sum(ul * au, axis=-1), np.sum(ul * uu, axis=-1))
    ratio = np.log(np.maximum(hl, 1e-9) / np.maximum(hu, 1e-9))
    return np.stack([np.sum(d * uu, axis=-1) / hbar, np.sum(d * au, axis=-1) / hbar, rot, ratio], axis=-1)


def anchor_features(c2_corners: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Position of an anchor landmark in the C2 body's frame: (…, 2) = (caudal, anterior) / height."""
    c, u, a, h = body_frames(c2_corners)
    d = np.asarray(point, dtype=np.float64) - c
    h = np.maximum(h, 1e-9)
    return np.stack([np.sum(d * u, axis=-1) / h, np.sum(d * a, axis=-1) / h], axis=-1)


def corner_distances(corners: np.ndarray) -> np.ndarray:
    """(…, 4, 4) distances between the corners of each body."""
    c = np.asarray(corners, dtype=np.float64)
    return np.linalg.norm(c[..., :, None, :] - c[..., None, :, :], axis=-1)


def median_body_height(corners: np.ndarray) -> float:
    """Median body height over the (V, 4, 2) bodies with finite corners (the scale unit)."""
    _, _, _, h = body_frames(corners)
    h = h[np.isfinite(h) & (h > 0)]
    return float(np.median(h)) if h.size else float("nan")


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

    @property
    def levels_found(self) -> tuple[str, ...]:
        return tuple(v for v, j in zip(VERTEBRAE, self.level_candidate) if j >= 0)


# ----------------------------------------------------------------------------- candidates
def local_peaks(maps: np.ndarray, floor: float, top_m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``top_m`` 3 × 3 local maxima ≥ ``floor`` of each map.

    maps: (M, h, w). Returns ys, xs (M, m) int and values (M, m) float (−1 where a map has fewer).
    """
    M, h, w = maps.shape
    pad = np.pad(maps, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    nb = maps.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                np.maximum(nb, pad[:, dy : dy + h, dx : dx + w], out=nb)
    vals = np.where((maps >= nb) & (maps >= floor), maps, -1.0).reshape(M, -1)
    m = min(top_m, vals.shape[1])
    idx = np.argpartition(-vals, m - 1, axis=1)[:, :m]
    v = np.take_along_axis(vals, idx, axis=1)
    order = np.argsort(-v, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    v = np.take_along_axis(v, order, axis=1)
    ys, xs = np.divmod(idx, w)
    return ys, xs, v


def _hypotheses(pts: np.ndarray, vals: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Four-corner hypotheses of one level's heatmaps.

    pts: (4, m, 2) peak positions per corner map, vals (4, m) (−1 = none), ranges (4, 4, 2) in px.
    Every combination of one peak per corner map whose six corner distances all fit ``ranges``
    and whose outline AS → PS → PI → AI is a convex quadrilateral is kept. Returns (q, 4) peak
    indices per corner.
    """
    m = pts.shape[1]
    rows = np.stack(np.meshgrid(*([np.arange(m)] * 4), indexing="ij"), axis=-1).reshape(-1, 4)  # (m^4, 4)
    rows = rows[np.all(vals[np.arange(4)[None, :], rows] > 0, axis=1)]
    if not rows.size:
        return rows
    quad = pts[np.arange(4)[None, :], rows]  # (q, 4, 2)
    d = corner_distances(quad)
    ok = np.all((d >= ranges[None, ..., 0]) & (d <= ranges[None, ..., 1]) | np.eye(4, dtype=bool)[None], axis=(1, 2))
    e = np.roll(quad, -1, axis=1) - quad  # edges
    turn = e[:, :, 0] * np.roll(e, -1, axis=1)[:, :, 1] - e[:, :, 1] * np.roll(e, -1, axis=1)[:, :, 0]
    convex = np.all(turn > 0, axis=1) | np.all(turn < 0, axis=1)
    return rows[ok & convex]


@dataclass(frozen=True)
class _Candidates:
    corners: np.ndarray  # (n, 4, 2) int (x, y) peak pixels
    source: np.ndarray  # (n,) level whose heatmaps gave the peaks


def _candidates(lv: np.ndarray, s: DecoderSettings, ranges_px: np.ndarray, merge_px: float) -> _Candidates:
    V, C, h, w = lv.shape
    ys, xs, vals = local_peaks(lv.reshape(V * C, h, w), s.peak_floor, s.peaks_per_map)
    m = ys.shape[1]
    ys, xs, vals = ys.reshape(V, C, m), xs.reshape(V, C, m), vals.reshape(V, C, m)
    pts = np.stack([xs, ys], axis=-1).astype(np.float64)  # (V, C, m, 2)
    corners, source, score = [], [], []
    for level in range(V):
        rows = _hypotheses(pts[level], vals[level], ranges_px)
        if rows.size:
            corners.append(pts[level, np.arange(C)[None, :], rows])  # (q, 4, 2)
            score.append(vals[level, np.arange(C)[None, :], rows].mean(axis=1))
            source.append(np.full(len(rows), level))
    if not corners:
        return _Candidates(np.zeros((0, 4, 2)), np.zeros(0, dtype=np.int64))
    allc, src, sc = np.concatenate(corners), np.concatenate(source), np.concatenate(score)
    order = np.argsort(-sc, kind="stable")
    centres = allc.mean(axis=1)
    kept: list[int] = []
    for i in order:  # greedy: the strongest hypothesis of each physical body survives
        if not kept or np.min(np.linalg.norm(centres[kept] - centres[i], axis=1)) >= merge_px:
            kept.append(int(i))
    return _Candidates(allc[kept], src[kept])


# ----------------------------------------------------------------------------- decode
def _refine(heatmaps: np.ndarray, channels: np.ndarray, peaks_xy: np.ndarray, blur_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """DARK refinement of ``heatmaps[channels[q]]`` at the integer peak ``peaks_xy[q]``.

    Each map is cut to the DARK window around its peak (everything else zero, values above the
    peak's own lowered just below it) so that the codec's argmax lands on the chosen peak and its
    DARK patch sees exactly the original values. Returns coords (Q, 2) and scores (Q,).
    """
    Q = len(channels)
    _, h, w = heatmaps.shape
    half = len(_gaussian_kernel(blur_sigma)) // 2 + 1 if blur_sigma > 0 else 1
    work = np.zeros((Q, h, w), dtype=np.float64)
    for q in range(Q):
        x, y = int(peaks_xy[q, 0]), int(peaks_xy[q, 1])
        y0, y1, x0, x1 = max(0, y - half), min(h, y + half + 1), max(0, x - half), min(w, x + half + 1)
        win = heatmaps[channels[q], y0:y1, x0:x1].astype(np.float64)
        top = float(heatmaps[channels[q], y, x])
        win = np.minimum(win, np.nextafter(top, -np.inf))
        win[y - y0, x - x0] = top
        work[q, y0:y1, x0:x1] = win
    if Q == 0:
        return np.zeros((0, 2)), np.zeros(0)
    return decode_dark(work, blur_sigma=blur_sigma)


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
    anylevel = lv.max(axis=0)[np.arange(C)[None, :], cy, cx]  # (n, 4)
    mix = s.own_level_weight * own + (1.0 - s.own_level_weight) * anylevel[None]
    unary = s.emission_weight * -np.log(np.maximum(mix, 1e-6)).mean(axis=2)  # (V, n)
    absent = np.full(V, s.emission_weight * -np.log(s.absent_value))
    for name, g in prior.anchors.items():
        k = landmark_index(name)
        if base_conf[k] >= s.anchor_min_confidence:
            unary[0] += g.cost(anchor_features(cands.corners, base_xy[k]), g.precision(s.sd_inflation, np.array(s.anchor_min_sd)))
            absent[0] = s.anchored_absent_factor * s.emission_weight * -np.log(s.absent_value)

    centre, u, _, _ = body_frames(cands.corners)
    axis = _unit(u.sum(axis=0))
    pos = centre @ axis
    order_ok = pos[None, :] > pos[:, None]  # (n, n): j lies caudal of i along the spine
    feats = pair_features(cands.corners[:, None], cands.corners[None, :])  # (n, n, 4)
    pair = np.stack([g.cost(feats, g.precision(s.sd_inflation, np.array(s.pair_min_sd))) for g in prior.pairs])  # (V-1, n, n)
    pair = np.where(order_ok[None], pair, np.inf)

    level_choice, total = _viterbi(unary, pair, absent)
    for level, j in enumerate(level_choice):
        sl = slice(FIRST_CORNER + C * level, FIRST_CORNER + C * (level + 1))
        if j < 0:
            found[sl] = False
            conf[sl] = 0.0
    chosen = [(level, j) for level, j in enumerate(level_choice) if j >= 0]
    if chosen:
        chans = np.array([FIRST_CORNER + C * cands.source[j] + c for _, j in chosen for c in range(C)])
        peaks = np.concatenate([cands.corners[j] for _, j in chosen])
        xy, sc = _refine(hm, chans, peaks, codec.blur_sigma)
        targets = np.array([FIRST_CORNER + C * level + c for level, _ in chosen for c in range(C)])
        coords[targets] = xy
        conf[targets] = sc
    source = np.array([cands.source[j] if j >= 0 else -1 for j in level_choice], dtype=np.int64)
    return ChainResult(coords, conf, found, np.asarray(level_choice, dtype=np.int64), source, float(total), n)


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
