"""The six cervical sagittal parameters (and extras) from 34 landmarks in millimetres.

Pure numpy, no I/O. Definitions, sign conventions and sources are in ``docs/parameters.md``.

Conventions (after facing normalisation, anterior = +x, y down):

- θ(P→A) = atan2(A.y − P.y, A.x − P.x) in degrees: tilt of a line from its posterior to its
  anterior point.
- d(Q) from a chord A→B: (Q − A)·n with u = (B − A)/|B − A|, n = (u.y, −u.x); positive anterior.
- Lordosis is positive for every parameter; angles are wrapped to (−180, 180].

Shapes: ``landmarks_mm`` is (34, 2) in :data:`cervisag_edge.core.landmarks.LANDMARK_NAMES` order,
columns (x, y) in mm; a missing landmark is a row containing NaN.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError
from .geometry import angle_from_down_deg, distance, signed_distances, tilt_deg, wrap_deg
from .landmarks import CORNERS, LANDMARK_NAMES, NUM_LANDMARKS, VERTEBRAE, vertebra_centroid

logger = logging.getLogger(__name__)

#: The six parameters of the issue, in output order.
PARAMETER_NAMES: tuple[str, ...] = (
    "borden_mm",
    "cci_percent",
    "ccl_deg",
    "cobb_c0_c7_deg",
    "cobb_c1_c7_deg",
    "cobb_c2_c7_deg",
)
PARAMETER_UNITS: Mapping[str, str] = MappingProxyType(
    {
        "borden_mm": "mm",
        "cci_percent": "%",
        "ccl_deg": "deg",
        "cobb_c0_c7_deg": "deg",
        "cobb_c1_c7_deg": "deg",
        "cobb_c2_c7_deg": "deg",
    }
)
#: Keys of :attr:`SagittalParameters.segmental_deg` (upper/lower vertebra), cranial to caudal.
SEGMENTS: tuple[str, ...] = tuple(f"{VERTEBRAE[i]}/{VERTEBRAE[i + 1].lstrip('C')}" for i in range(len(VERTEBRAE) - 1))
#: Flat keys of the extras in :meth:`SagittalParameters.as_dict` (``include_extras=True``), in order.
EXTRA_NAMES: tuple[str, ...] = (
    ("sva_c2_c7_mm", "c7_slope_deg", "t1_slope_deg", "o_c2_deg")
    + tuple(f"segmental_{s}_deg" for s in SEGMENTS)
    + tuple(f"anterior_height_{v}_mm" for v in VERTEBRAE)
    + tuple(f"posterior_height_{v}_mm" for v in VERTEBRAE)
)
EXTRA_UNITS: Mapping[str, str] = MappingProxyType({k: ("mm" if k.endswith("_mm") else "deg") for k in EXTRA_NAMES})

#: Two points closer than this (mm) do not define a line.
MIN_SEPARATION_MM = 1e-6

_INDEX = {name: i for i, name in enumerate(LANDMARK_NAMES)}
#: Posterior wall points searched by Borden's method, cranial to caudal.
BORDEN_WALL: tuple[str, ...] = tuple(f"C{k}_{c}" for k in range(2, 7) for c in ("PS", "PI")) + ("C7_PS",)
#: Anterior/posterior pairs used to decide the facing when no vertebral corner pair is present.
_FACING_FALLBACK: tuple[tuple[str, str], ...] = (("C1_ANT", "C1_POST"), ("MCG_PNS", "MCG_OCC"))
#: Heatmap peak at which a decoded landmark, reported or not, may tell the facing when the
#: reported ones cannot (:func:`facing_hint`): the evidence level of ``quality.LEVEL_EVIDENCE``.
FACING_EVIDENCE = 0.3


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SagittalParameters:
    """Cervical sagittal parameters of one radiograph (lordosis positive; mm, %, degrees).

    A value is None when a landmark it needs is missing; :attr:`unavailable` maps the
    parameter (flat key of :meth:`as_dict`) to those landmarks. Mapping fields are read-only.
    """

    borden_mm: float | None
    cci_percent: float | None
    ccl_deg: float | None
    cobb_c0_c7_deg: float | None
    cobb_c1_c7_deg: float | None
    cobb_c2_c7_deg: float | None
    sva_c2_c7_mm: float | None
    c7_slope_deg: float | None
    t1_slope_deg: float | None
    o_c2_deg: float | None
    segmental_deg: Mapping[str, float | None]
    anterior_height_mm: Mapping[str, float | None]
    posterior_height_mm: Mapping[str, float | None]
    missing: tuple[str, ...]
    unavailable: Mapping[str, tuple[str, ...]]
    facing: str

    def __post_init__(self) -> None:
        for name in ("segmental_deg", "anterior_height_mm", "posterior_height_mm"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "unavailable", _frozen({k: tuple(v) for k, v in self.unavailable.items()}))
        object.__setattr__(self, "missing", tuple(self.missing))
        if self.facing not in ("right", "left"):
            raise ValueError(f"facing must be 'right' or 'left', got {self.facing!r}")

    def __reduce__(self) -> tuple[Callable[..., SagittalParameters], tuple[Any, ...]]:
        # MappingProxyType cannot be pickled; rebuild from plain dicts.
        args = tuple(
            dict(v) if isinstance(v, Mapping) else v for v in (getattr(self, f.name) for f in fields(self))
        )
        return (self.__class__, args)

    def as_dict(self, include_extras: bool = False) -> dict[str, float | None]:
        """The six parameters in :data:`PARAMETER_NAMES` order; with ``include_extras`` also
        the flat :data:`EXTRA_NAMES` keys (e.g. ``segmental_C2/3_deg``, ``anterior_height_C3_mm``)."""
        out: dict[str, float | None] = {name: getattr(self, name) for name in PARAMETER_NAMES}
        if include_extras:
            out["sva_c2_c7_mm"] = self.sva_c2_c7_mm
            out["c7_slope_deg"] = self.c7_slope_deg
            out["t1_slope_deg"] = self.t1_slope_deg
            out["o_c2_deg"] = self.o_c2_deg
            for seg in SEGMENTS:
                out[f"segmental_{seg}_deg"] = self.segmental_deg[seg]
            for v in VERTEBRAE:
                out[f"anterior_height_{v}_mm"] = self.anterior_height_mm[v]
            for v in VERTEBRAE:
                out[f"posterior_height_{v}_mm"] = self.posterior_height_mm[v]
        return out

    def without_lengths(self) -> SagittalParameters:
        """A copy with every millimetre value (Borden, SVA, body heights) set to None, for
        images whose pixel spacing is unknown. ``unavailable`` is unchanged (it lists only
        missing landmarks)."""
        args = {f.name: getattr(self, f.name) for f in fields(self)}
        args["borden_mm"] = None
        args["sva_c2_c7_mm"] = None
        args["anterior_height_mm"] = {k: None for k in self.anterior_height_mm}
        args["posterior_height_mm"] = {k: None for k in self.posterior_height_mm}
        return SagittalParameters(**args)


class _Points:
    """Landmark lookup by name on the facing-normalised (34, 2) array; NaN rows are missing."""

    def __init__(self, pts: np.ndarray) -> None:
        self.pts = pts
        self.present = ~np.isnan(pts).any(axis=1)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.pts[_INDEX[name]]

    def missing_of(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The names in ``names`` that are missing, in :data:`LANDMARK_NAMES` order."""
        return tuple(sorted({n for n in names if not self.present[_INDEX[n]]}, key=_INDEX.__getitem__))

    def centroid(self, vertebra: str) -> np.ndarray:
        return vertebra_centroid(self.pts, vertebra)


def _corners(vertebra: str) -> tuple[str, ...]:
    return tuple(f"{vertebra}_{c}" for c in CORNERS)


def _inf_ep(v: str) -> tuple[str, str]:
    """(posterior, anterior) of the inferior endplate of ``v``."""
    return (f"{v}_PI", f"{v}_AI")


def _sup_ep(v: str) -> tuple[str, str]:
    """(posterior, anterior) of the superior endplate of ``v``."""
    return (f"{v}_PS", f"{v}_AS")


_C1_LINE = ("C1_POST", "C1_ANT")
_MCGREGOR = ("MCG_OCC", "MCG_PNS")


def _as_array(landmarks_mm: ArrayLike) -> np.ndarray:
    try:
        pts = np.array(landmarks_mm, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"landmarks_mm: cannot be read as a float array ({exc}); expected shape ({NUM_LANDMARKS}, 2)") from None
    if pts.shape != (NUM_LANDMARKS, 2):
        raise InputError(
            f"landmarks_mm: shape {pts.shape} found, ({NUM_LANDMARKS}, 2) expected "
            f"(rows {LANDMARK_NAMES[0]} … {LANDMARK_NAMES[-1]}, columns x, y in mm)"
        )
    bad = np.isinf(pts).any(axis=1)
    if bad.any():
        names = ", ".join(f"{LANDMARK_NAMES[i]}={tuple(pts[i].tolist())}" for i in np.flatnonzero(bad))
        raise InputError(f"landmarks_mm: infinite coordinates at {names}; finite mm or NaN (missing) expected")
    return pts


def _facing_sign(pts: _Points, hint: float | None = None) -> float:
    """+1 if anterior is +x in the input, −1 if it is −x (see the module docstring). ``hint``
    (±1, from :func:`facing_hint`) decides when the landmarks present cannot."""
    total = 0.0
    used = False
    for v in VERTEBRAE:
        for ant, post in ((f"{v}_AI", f"{v}_PI"), (f"{v}_AS", f"{v}_PS")):
            if not pts.missing_of((ant, post)):
                total += float(pts[ant][0] - pts[post][0])
                used = True
    if used and total != 0.0:
        return 1.0 if total > 0 else -1.0
    for ant, post in _FACING_FALLBACK:
        if not pts.missing_of((ant, post)):
            diff = float(pts[ant][0] - pts[post][0])
            if diff != 0.0:
                logger.debug("facing decided by %s vs %s (no vertebral corner pair)", ant, post)
                return 1.0 if diff > 0 else -1.0
    if hint is not None:
        if hint not in (1.0, -1.0):
            raise InputError(f"facing_hint = {hint!r}: expected +1 or -1")
        return float(hint)
    raise InputError(
        "landmarks_mm: facing cannot be determined: no vertebral AS/PS or AI/PI pair (C2…T1), "
        "C1_ANT/C1_POST or MCG_PNS/MCG_OCC pair with distinct x is present"
    )


def _lines() -> list[tuple[str, str]]:
    """Every landmark pair used as a line or chord."""
    pairs: list[tuple[str, str]] = [_C1_LINE, _MCGREGOR, ("DENS_PS", "C7_PI"), ("C2_PI", "C7_PI")]
    for v in VERTEBRAE:
        pairs += [_sup_ep(v), _inf_ep(v)]
    return pairs


def _check_degenerate(pts: _Points) -> dict[str, np.ndarray]:
    """Raise :class:`InputError` for coincident line points or degenerate vertebral bodies;
    return the centroids (2,) of the vertebrae whose four corners are present."""
    problems: list[str] = []
    for a, b in _lines():
        if not pts.missing_of((a, b)) and distance(pts[a], pts[b]) < MIN_SEPARATION_MM:
            problems.append(f"{a} and {b} coincide")
    centroids: dict[str, np.ndarray] = {}
    for v in VERTEBRAE:
        if pts.missing_of(_corners(v)):
            continue
        c = pts.centroid(v)
        if np.isnan(c).any():
            problems.append(f"diagonals {v}_AS–{v}_PI and {v}_PS–{v}_AI are parallel")
        else:
            centroids[v] = c
    for upper, lower in (("C2", "C3"), ("C6", "C7")):
        if upper in centroids and lower in centroids and distance(centroids[upper], centroids[lower]) < MIN_SEPARATION_MM:
            problems.append(f"centroids of {upper} ({', '.join(_corners(upper))}) and {lower} ({', '.join(_corners(lower))}) coincide")
    if problems:
        raise InputError(f"landmarks_mm: degenerate geometry: {'; '.join(problems)} (points closer than {MIN_SEPARATION_MM} mm or parallel)")
    return centroids


def compute_parameters(landmarks_mm: ArrayLike, *, facing_hint: float | None = None) -> SagittalParameters:
    """Compute :class:`SagittalParameters` from (34, 2) landmarks in mm (x right, y down).

    NaN rows are missing landmarks: each value that needs one is None and named in
    ``unavailable``. ``facing_hint`` (±1, :func:`facing_hint`) gives the facing when the
    landmarks present cannot tell it. Raises :class:`~cervisag_edge.errors.InputError` (a
    ``ValueError``) for a wrong shape, infinite values, coincident line points, degenerate
    vertebral bodies, or when the facing cannot be determined.
    """
    raw = _as_array(landmarks_mm)
    sign = _facing_sign(_Points(raw), facing_hint)
    pts_arr = raw.copy()
    pts_arr[:, 0] *= sign
    p = _Points(pts_arr)
    centroids = _check_degenerate(p)

    values: dict[str, float | None] = {}
    unavailable: dict[str, tuple[str, ...]] = {}

    def put(key: str, needs: tuple[str, ...], fn: Callable[[], float]) -> None:
        gone = p.missing_of(needs)
        if gone:
            values[key] = None
            unavailable[key] = gone
        else:
            values[key] = float(fn())

    def theta(line: tuple[str, str]) -> float:
        return tilt_deg(p[line[0]], p[line[1]])

    def angle_between(lower: tuple[str, str], upper: tuple[str, str]) -> float:
        return wrap_deg(theta(lower) - theta(upper))

    c7 = _inf_ep("C7")
    put("borden_mm", ("DENS_PS", "C7_PI") + BORDEN_WALL, lambda: _borden(p))
    cci_needs = tuple(f"C{k}_PI" for k in range(2, 8))
    put("cci_percent", cci_needs, lambda: _cci(p))
    put("ccl_deg", _corners("C2") + _corners("C3") + _corners("C6") + _corners("C7"), lambda: _ccl(centroids))
    put("cobb_c0_c7_deg", c7 + _MCGREGOR, lambda: angle_between(c7, _MCGREGOR))
    put("cobb_c1_c7_deg", c7 + _C1_LINE, lambda: angle_between(c7, _C1_LINE))
    put("cobb_c2_c7_deg", c7 + _inf_ep("C2"), lambda: angle_between(c7, _inf_ep("C2")))
    put("sva_c2_c7_mm", _corners("C2") + ("C7_PS",), lambda: centroids["C2"][0] - p["C7_PS"][0])
    put("c7_slope_deg", _sup_ep("C7"), lambda: theta(_sup_ep("C7")))
    put("t1_slope_deg", _sup_ep("T1"), lambda: theta(_sup_ep("T1")))
    put("o_c2_deg", _inf_ep("C2") + _MCGREGOR, lambda: angle_between(_inf_ep("C2"), _MCGREGOR))
    for seg, upper, lower in zip(SEGMENTS, VERTEBRAE[:-1], VERTEBRAE[1:]):
        put(
            f"segmental_{seg}_deg",
            _inf_ep(upper) + _sup_ep(lower),
            lambda u=upper, lo=lower: angle_between(_sup_ep(lo), _inf_ep(u)),
        )
    for v in VERTEBRAE:
        put(f"anterior_height_{v}_mm", (f"{v}_AS", f"{v}_AI"), lambda v=v: distance(p[f"{v}_AS"], p[f"{v}_AI"]))
        put(f"posterior_height_{v}_mm", (f"{v}_PS", f"{v}_PI"), lambda v=v: distance(p[f"{v}_PS"], p[f"{v}_PI"]))

    missing = tuple(LANDMARK_NAMES[i] for i in np.flatnonzero(~p.present))
    if missing:
        logger.debug("missing landmarks %s; unavailable %s", missing, sorted(unavailable))
    return SagittalParameters(
        borden_mm=values["borden_mm"],
        cci_percent=values["cci_percent"],
        ccl_deg=values["ccl_deg"],
        cobb_c0_c7_deg=values["cobb_c0_c7_deg"],
        cobb_c1_c7_deg=values["cobb_c1_c7_deg"],
        cobb_c2_c7_deg=values["cobb_c2_c7_deg"],
        sva_c2_c7_mm=values["sva_c2_c7_mm"],
        c7_slope_deg=values["c7_slope_deg"],
        t1_slope_deg=values["t1_slope_deg"],
        o_c2_deg=values["o_c2_deg"],
        segmental_deg={s: values[f"segmental_{s}_deg"] for s in SEGMENTS},
        anterior_height_mm={v: values[f"anterior_height_{v}_mm"] for v in VERTEBRAE},
        posterior_height_mm={v: values[f"posterior_height_{v}_mm"] for v in VERTEBRAE},
        missing=missing,
        unavailable=unavailable,
        facing="right" if sign > 0 else "left",
    )


def _borden(p: _Points) -> float:
    """Signed depth of the posterior-wall point farthest from the chord DENS_PS→C7_PI."""
    wall = np.array([p[n] for n in BORDEN_WALL])
    d = signed_distances(wall, p["DENS_PS"], p["C7_PI"])
    return float(d[int(np.argmax(np.abs(d)))])


def _cci(p: _Points) -> float:
    """Ishihara: 100 · Σ_{k=3..6} d(Ck_PI) / |C7_PI − C2_PI| from the chord C2_PI→C7_PI."""
    a, b = p["C2_PI"], p["C7_PI"]
    d = signed_distances(np.array([p[f"C{k}_PI"] for k in range(3, 7)]), a, b)
    return 100.0 * float(d.sum()) / distance(a, b)


def _ccl(centroids: Mapping[str, np.ndarray]) -> float:
    """Centroid lordosis: ψ(c3 − c2) − ψ(c7 − c6)."""
    upper = angle_from_down_deg(centroids["C3"] - centroids["C2"])
    lower = angle_from_down_deg(centroids["C7"] - centroids["C6"])
    return wrap_deg(upper - lower)


__all__ = [
    "PARAMETER_NAMES",
    "PARAMETER_UNITS",
    "EXTRA_NAMES",
    "EXTRA_UNITS",
    "SEGMENTS",
    "BORDEN_WALL",
    "MIN_SEPARATION_MM",
    "SagittalParameters",
    "compute_parameters",
]


# -- postprocessing of model landmarks ---------------------------------------------------------
def coincident(pts: np.ndarray, visible: np.ndarray, min_px: float = 0.5) -> np.ndarray:
    """(K,) bool: visible landmarks lying within ``min_px`` of another visible one. Two anatomical
    points never coincide, so such a pair means the model confused them; both are dropped.

    ``pts`` (K, 2) pixel coordinates; ``visible`` (K,) bool."""
    p = np.where(visible[:, None], pts, np.nan)
    d = np.hypot(p[:, None, 0] - p[None, :, 0], p[:, None, 1] - p[None, :, 1])
    np.fill_diagonal(d, np.inf)
    with np.errstate(invalid="ignore"):
        return np.any(d < min_px, axis=1)


def unavailable_parameters(missing: tuple[str, ...]) -> SagittalParameters:
    """A result with every value None, for images where no geometry could be computed."""
    args: dict[str, object] = {f.name: None for f in fields(SagittalParameters)}
    args.update(segmental_deg={k: None for k in SEGMENTS}, anterior_height_mm={v: None for v in VERTEBRAE},
                posterior_height_mm={v: None for v in VERTEBRAE}, missing=missing,
                unavailable={name: missing for name in PARAMETER_NAMES}, facing="right")
    return SagittalParameters(**args)  # type: ignore[arg-type]


def facing_hint(landmarks_px: np.ndarray, confidence: np.ndarray, inside: np.ndarray) -> float | None:
    """±1: the facing told by every decoded landmark with a heatmap peak of at least
    :data:`FACING_EVIDENCE` inside the image, reported visible or not (the same rule as
    :func:`compute_parameters`); None when even these cannot tell it.

    A film whose reported landmarks are all posterior corners (anterior ones below the reporting
    threshold) still shows which way the patient faces: the weak anterior peaks lie on one side.
    ``landmarks_px`` (34, 2); ``confidence``/``inside`` (34,)."""
    use = (np.asarray(confidence, dtype=np.float64) >= FACING_EVIDENCE) & np.asarray(inside, dtype=bool)
    pts = np.where(use[:, None], np.asarray(landmarks_px, dtype=np.float64), np.nan)
    try:
        return _facing_sign(_Points(pts))
    except InputError:
        return None


def parameters_from_px(landmarks_px: np.ndarray, visible: np.ndarray, pixel_spacing_mm: tuple[float, float] | None,
                       *, facing_hint: float | None = None) -> tuple[SagittalParameters, np.ndarray, str | None]:
    """Parameters of model landmarks in image pixels: ``(parameters, visible, problem)``.

    ``landmarks_px`` (34, 2) image px; ``visible`` (34,) bool; ``pixel_spacing_mm`` (row, col) or
    None (millimetre values then None); ``facing_hint`` as in :func:`compute_parameters`.
    Coincident pairs are dropped from ``visible`` first. When no geometry can be computed the
    parameters are all None and ``problem`` says why."""
    visible = visible & ~coincident(landmarks_px, visible)
    pts = np.where(visible[:, None], landmarks_px, np.nan)
    try:
        if pixel_spacing_mm is not None:
            mm = pts * np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]])
            return compute_parameters(mm, facing_hint=facing_hint), visible, None
        return compute_parameters(pts, facing_hint=facing_hint).without_lengths(), visible, None
    except ValueError as exc:  # no usable geometry (e.g. too few landmarks to tell the facing)
        missing = tuple(n for n, v in zip(LANDMARK_NAMES, visible) if not v)
        return unavailable_parameters(missing), visible, f"parameters not computed: {exc}"
