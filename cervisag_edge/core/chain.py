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
   (:func:`cervisag_edge.engine.codec.decode_dark` on a window around it), so where the chain picks
   each map's own argmax the result equals the plain decode.

The learned numbers live in a JSON prior (``engines/chain_prior.json``, written by
``tools/fit_chain_prior.py``); see ``docs/levels.md`` for the algorithm and references.

Shape legend: K landmarks (34), h × w heatmap, V vertebrae (7), C corners (4), n candidates,
m peaks kept per heatmap. Coordinates are (x, y) heatmap px unless a name says otherwise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .chain_prior import (
    _AI,
    _AS,
    _PI,
    _PS,
    ANCHORS,
    FIRST_CORNER,
    PAIR_FEATURES,
    PRIOR_FILE,
    ChainPrior,
    DecoderSettings,
    Frames,
    GaussianPrior,
    _unit,
    anchor_features,
    anchor_features_from_frames,
    body_frames,
    corner_distances,
    load_chain_prior,
    median_body_height,
    pair_features,
    pair_features_from_frames,
)
from ..engine.codec import UDPHeatmapCodec, decode_dark, gaussian_taps
from .landmarks import CORNERS, NUM_LANDMARKS, VERTEBRAE, landmark_index

logger = logging.getLogger(__name__)

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
    half = len(gaussian_taps(blur_sigma)) // 2 + 1 if blur_sigma > 0 else 1
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
