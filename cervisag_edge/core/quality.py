"""Per-image quality flags, each with a one-line reason (pure numpy, no I/O).

Flags (``docs/uncertainty.md`` gives the rules and the numbers measured on phantoms):

- ``not_lateral_cspine``: fewer than :data:`MIN_LEVELS` vertebral levels (C2…T1 with at least
  three corners peaking at :data:`LEVEL_EVIDENCE` or more inside the image) and fewer than
  :data:`MIN_EVIDENT_LANDMARKS` landmarks of any kind peaking at :data:`LANDMARK_EVIDENCE` (a
  cephalogram that shows C1, the dens and C2 is a lateral cervical film), or a near-uniform
  image. Such an image gets no parameters (:func:`blocks_parameters`).
- ``partial_field_of_view``: the column of levels stops near an image edge (or its extrapolated
  continuation lies outside the image) before C7 at the bottom, or the skull/C1 landmarks are
  missing with the top of the spine near an edge.
- ``low_confidence``: the median confidence of the visible landmarks is below
  :data:`LOW_MEDIAN_CONFIDENCE`, or fewer than :data:`MIN_VISIBLE` landmarks are visible.
- ``implausible_anatomy``: body heights, endplate widths or level spacings outside the ranges
  below (mm when the spacing is known, ratios to the median endplate width otherwise), or levels
  out of cranio-caudal order.
- ``spacing_unknown``: no pixel spacing; millimetre values are null.

Shape legend: K = 34 landmarks; points (K, 2) original px (x, y); ``display`` (H, W) in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .landmarks import LANDMARK_NAMES, VERTEBRAE, vertebra_corner_indices
from .visibility import edge_distance_input_px

if TYPE_CHECKING:  # pragma: no cover
    from .parameters import SagittalParameters

FLAGS: tuple[str, ...] = ("not_lateral_cspine", "partial_field_of_view", "low_confidence", "implausible_anatomy",
                          "spacing_unknown")
#: Vertebral levels (≥ 3 corners with evidence) a lateral cervical film must show.
MIN_LEVELS = 2
#: Heatmap peak that counts as evidence of a corner for ``not_lateral_cspine`` (below the model's
#: reporting threshold on purpose: a corner can be too uncertain to report yet clearly there).
LEVEL_EVIDENCE = 0.3
#: Landmarks (any of the 34) whose clear peak, inside the image, also shows a lateral cervical film
#: when too few whole levels do: a cephalogram or neck crop ending at C2/C3. Non-spine films give no
#: peak near it (pydicom-data's chest and extremity films: at most 0.44, docs/uncertainty.md).
LANDMARK_EVIDENCE = 0.6
MIN_EVIDENT_LANDMARKS = 4
#: Display images with a standard deviation below this are blank.
MIN_DISPLAY_STD = 0.02
LOW_MEDIAN_CONFIDENCE = 0.75
MIN_VISIBLE = 12
#: Physiological ranges in mm (adult cervical spine, generous): body height, endplate width
#: (anteroposterior depth) and the centroid spacing of neighbouring levels.
BODY_HEIGHT_MM = (6.0, 30.0)
ENDPLATE_WIDTH_MM = (8.0, 32.0)
LEVEL_SPACING_MM = (8.0, 35.0)
#: The same as ratios to the median endplate width, for images without a spacing.
BODY_HEIGHT_RATIO = (0.3, 2.0)
LEVEL_SPACING_RATIO = (0.5, 2.5)
_SKULL = ("MCG_PNS", "MCG_OCC", "C1_ANT", "C1_POST", "DENS_TIP", "DENS_PS")
_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}
_LEVELS = np.array([vertebra_corner_indices(v) for v in VERTEBRAE])  # (7, 4)


@dataclass(frozen=True)
class QualityFlag:
    flag: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"flag": self.flag, "reason": self.reason}


def blocks_parameters(flags: Sequence[QualityFlag]) -> bool:
    """True when the image must get no parameters (``not_lateral_cspine``)."""
    return any(f.flag == "not_lateral_cspine" for f in flags)


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.hypot(*(np.asarray(a) - np.asarray(b)).T)


def _edge_distance(p: np.ndarray, size: tuple[int, int]) -> float:
    """Distance (px) of one (2,) point to the nearest image border."""
    return float(edge_distance_input_px(np.asarray(p, dtype=np.float64)[None], size, 1.0)[0])


def _anatomy(pts: np.ndarray, complete: np.ndarray, spacing: tuple[float, float] | None) -> list[str]:
    """Problems of the complete levels' geometry (empty when plausible)."""
    lv = np.flatnonzero(complete)
    if lv.size == 0:
        return []
    scale = np.array([spacing[1], spacing[0]]) if spacing else np.ones(2)
    c = pts[_LEVELS[lv]] * scale  # (n, 4, 2): AS, PS, PI, AI
    heights = np.concatenate([_dist(c[:, 0], c[:, 3]), _dist(c[:, 1], c[:, 2])])
    widths = np.concatenate([_dist(c[:, 0], c[:, 1]), _dist(c[:, 3], c[:, 2])])
    cent = c.mean(axis=1)
    problems: list[str] = []
    if spacing:
        h_rng, w_rng, s_rng, unit = BODY_HEIGHT_MM, ENDPLATE_WIDTH_MM, LEVEL_SPACING_MM, "mm"
        ref = 1.0
    else:
        ref = float(np.median(widths))
        h_rng, w_rng, s_rng, unit = BODY_HEIGHT_RATIO, (0.0, np.inf), LEVEL_SPACING_RATIO, "× endplate width"
        if ref <= 0:
            return ["vertebral bodies of zero size"]
    def check(label: str, vals: np.ndarray, rng: tuple[float, float]) -> None:
        v = vals / ref
        bad = (v < rng[0]) | (v > rng[1])
        if bad.any():
            problems.append(f"{label} {float(v[bad][0]):.1f} {unit} outside {rng[0]:g}–{rng[1]:g}")
    check("body height", heights, h_rng)
    if spacing:
        check("endplate width", widths, w_rng)
    adjacent = np.flatnonzero(np.diff(lv) == 1)
    if adjacent.size:
        check("level spacing", _dist(cent[adjacent], cent[adjacent + 1]), s_rng)
    if lv.size >= 3:
        axis = cent[-1] - cent[0]
        proj = (cent - cent[0]) @ axis
        if np.any(np.diff(proj) <= 0):
            problems.append("levels out of cranio-caudal order")
    return problems


def assess(pts_px: np.ndarray, confidence: np.ndarray, visible: np.ndarray, inside: np.ndarray,
           estimated: np.ndarray, parameters: "SagittalParameters | None", spacing_mm: tuple[float, float] | None,
           image_size_px: tuple[int, int], display: np.ndarray | None = None,
           estimated_px: np.ndarray | None = None) -> list[QualityFlag]:
    """The quality flags of one image, in :data:`FLAGS` order.

    ``pts_px`` (K, 2) decoded positions, ``confidence``/``visible``/``inside``/``estimated`` (K,);
    ``estimated_px`` (K, 2) the estimated positions (NaN where none; defaults to ``pts_px``);
    ``image_size_px`` (W, H)."""
    del parameters  # the flags judge the landmarks; parameters follow from them
    pts = np.asarray(pts_px, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    vis = np.asarray(visible, dtype=bool)
    est = np.asarray(estimated, dtype=bool)
    est_pts = pts if estimated_px is None else np.asarray(estimated_px, dtype=np.float64)
    flags: list[QualityFlag] = []
    corners_vis = vis[_LEVELS].sum(axis=1)  # (7,)
    # whether the film shows a cervical spine at all is judged on the evidence, not on the reporting
    # threshold: a level counts when three corners peak at LEVEL_EVIDENCE or more inside the image
    evidence = np.asarray(inside, dtype=bool) & (conf >= LEVEL_EVIDENCE)
    n_levels = int((evidence[_LEVELS].sum(axis=1) >= 3).sum())
    n_evident = int((np.asarray(inside, dtype=bool) & (conf >= LANDMARK_EVIDENCE)).sum())
    blank = display is not None and float(np.std(np.asarray(display)[::8, ::8])) < MIN_DISPLAY_STD  # every 8th px: 1/64 of the cost
    if (n_levels < MIN_LEVELS and n_evident < MIN_EVIDENT_LANDMARKS) or blank:
        why = ("the image is nearly uniform" if blank else
               f"only {n_levels} of {len(VERTEBRAE)} vertebral levels (C2–T1) and {n_evident} landmarks found, "
               f"{int(vis.sum())} of {len(vis)} landmarks visible")
        flags.append(QualityFlag("not_lateral_cspine", f"does not look like a lateral cervical spine radiograph: {why}"))
    complete = corners_vis == 4
    vis_pts = np.where(vis[:, None], pts, np.nan)
    if not flags and complete.any():
        heights = [np.mean(_dist(vis_pts[_LEVELS[i]][[0, 1]], vis_pts[_LEVELS[i]][[3, 2]])) for i in np.flatnonzero(complete)]
        margin = float(np.median(heights))
        parts = []
        last = int(np.flatnonzero(complete)[-1])
        if last < VERTEBRAE.index("C7"):
            beyond = _LEVELS[last + 1:].ravel()
            ext_out = bool(np.any(est[beyond] & ~_inside(est_pts[beyond], image_size_px)))
            near = min(_edge_distance(vis_pts[k], image_size_px) for k in _LEVELS[last][[2, 3]])
            if ext_out or near < margin:
                parts.append(f"levels below {VERTEBRAE[last]} are outside the image")
        skull_missing = [n for n in _SKULL if not vis[_I[n]]]
        if skull_missing:
            top = [k for k in list(map(_I.get, _SKULL)) + list(_LEVELS[:2].ravel()) if vis[k]]
            near_top = min((_edge_distance(pts[k], image_size_px) for k in top), default=0.0)
            if near_top < margin:
                parts.append(f"{', '.join(skull_missing[:3])}{' …' if len(skull_missing) > 3 else ''} outside the image")
        if parts:
            flags.append(QualityFlag("partial_field_of_view", "; ".join(parts)))
    if not any(f.flag == "not_lateral_cspine" for f in flags):
        n_vis = int(vis.sum())
        med = float(np.median(conf[vis])) if n_vis else 0.0
        if n_vis < MIN_VISIBLE or med < LOW_MEDIAN_CONFIDENCE:
            flags.append(QualityFlag("low_confidence", f"{n_vis} landmarks visible, median confidence {med:.2f} "
                                                       f"(expected >= {MIN_VISIBLE} and >= {LOW_MEDIAN_CONFIDENCE:g})"))
        problems = _anatomy(pts, complete, spacing_mm)
        if problems:
            flags.append(QualityFlag("implausible_anatomy", "; ".join(problems)))
    if spacing_mm is None:
        flags.append(QualityFlag("spacing_unknown", "no pixel spacing in the file or given by the caller; millimetre values are null"))
    return flags


def _inside(p: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    W, H = size
    with np.errstate(invalid="ignore"):
        return (p[..., 0] >= -0.5) & (p[..., 0] <= W - 0.5) & (p[..., 1] >= -0.5) & (p[..., 1] <= H - 0.5)


def flags_to_dicts(flags: Sequence[QualityFlag]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in flags]
