"""The 34-landmark schema (public API).

Every model output, annotation file and output format uses this order. Names are
anatomical (anterior/posterior, superior/inferior), never image-left/right, so a
horizontal flip of an image needs no index swap.

Shapes: ``landmarks`` arrays are (K, 2) with K = 34, columns (x, y).
"""
from __future__ import annotations

import numpy as np

SCHEMA_VERSION = "1.0"

#: Vertebrae whose body corners are landmarks, cranial to caudal.
VERTEBRAE: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1")
#: Corner order of every vertebral body: anterior-superior, posterior-superior,
#: posterior-inferior, anterior-inferior.
CORNERS: tuple[str, ...] = ("AS", "PS", "PI", "AI")

LANDMARK_NAMES: tuple[str, ...] = (
    "MCG_PNS",
    "MCG_OCC",
    "C1_ANT",
    "C1_POST",
    "DENS_TIP",
    "DENS_PS",
) + tuple(f"{v}_{c}" for v in VERTEBRAE for c in CORNERS)

NUM_LANDMARKS: int = len(LANDMARK_NAMES)

_INDEX = {name: i for i, name in enumerate(LANDMARK_NAMES)}


def landmark_index(name: str) -> int:
    """Index of landmark ``name`` in :data:`LANDMARK_NAMES`; ``KeyError`` names the bad key."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown landmark {name!r}; expected one of {', '.join(LANDMARK_NAMES)}") from None


def vertebra_corner_indices(vertebra: str) -> tuple[int, int, int, int]:
    """Indices of the (AS, PS, PI, AI) corners of ``vertebra`` (one of :data:`VERTEBRAE`)."""
    if vertebra not in VERTEBRAE:
        raise KeyError(f"unknown vertebra {vertebra!r}; expected one of {', '.join(VERTEBRAE)}")
    return tuple(_INDEX[f"{vertebra}_{c}"] for c in CORNERS)  # type: ignore[return-value]


def vertebra_corners(landmarks: np.ndarray, vertebra: str) -> np.ndarray:
    """The (4, 2) corners (AS, PS, PI, AI) of ``vertebra`` from a (34, 2) landmark array."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape ({NUM_LANDMARKS}, 2), got {pts.shape}")
    return pts[list(vertebra_corner_indices(vertebra))]


def line_intersection(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Intersection of the infinite lines p1–p2 and q1–q2; NaN where they are parallel or degenerate."""
    p1, p2, q1, q2 = (np.asarray(a, dtype=np.float64) for a in (p1, p2, q1, q2))
    d1 = p2 - p1
    d2 = q2 - q1
    den = d1[0] * d2[1] - d1[1] * d2[0]
    if not np.isfinite(den) or abs(den) < 1e-12:
        return np.array([np.nan, np.nan])
    t = ((q1[0] - p1[0]) * d2[1] - (q1[1] - p1[1]) * d2[0]) / den
    return p1 + t * d1


def vertebra_centroid(landmarks: np.ndarray, vertebra: str) -> np.ndarray:
    """Centroid of a vertebral body: the intersection of the diagonals AS–PI and PS–AI.

    Returns a (2,) array, NaN when a corner is missing or the diagonals are parallel.
    """
    a_s, p_s, p_i, a_i = vertebra_corners(landmarks, vertebra)
    return line_intersection(a_s, p_i, p_s, a_i)
