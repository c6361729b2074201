"""Geometry behind each measured parameter, in image pixels: what the SR (SCOORD) and the
presentation state (GSPS) draw. Pure numpy, no I/O, no DICOM.

Coordinates: the package's pixel-centre convention (the centre of pixel (row i, col j) is
(x=j, y=i)). DICOM image coordinates (SCOORD, GSPS ``PIXEL`` units) put (0, 0) at the top-left
corner of the top-left pixel, so :func:`to_dicom_image_coords` adds 0.5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.geometry import signed_distances
from ..core.landmarks import landmark_index
from ..core.parameters import BORDEN_WALL

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement

#: Cobb parameter -> (upper reference line, lower reference line), each (posterior, anterior) landmarks.
COBB_LINES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "cobb_c0_c7_deg": (("MCG_OCC", "MCG_PNS"), ("C7_PI", "C7_AI")),
    "cobb_c1_c7_deg": (("C1_POST", "C1_ANT"), ("C7_PI", "C7_AI")),
    "cobb_c2_c7_deg": (("C2_PI", "C2_AI"), ("C7_PI", "C7_AI")),
}
BORDEN_CHORD: tuple[str, str] = ("DENS_PS", "C7_PI")


@dataclass(frozen=True)
class Polyline:
    """One line of a parameter's construction. ``points_px``: (N, 2) float64 (x, y) in image px."""

    parameter: str
    role: str  # "upper endplate line", "lower endplate line", "chord", "perpendicular"
    points_px: np.ndarray


def to_dicom_image_coords(points_px: np.ndarray) -> np.ndarray:
    """(N, 2) package pixel coordinates -> (N, 2) float32 DICOM image coordinates (column, row)."""
    return (np.asarray(points_px, dtype=np.float64) + 0.5).astype(np.float32)


def _point(pts: np.ndarray, name: str) -> np.ndarray:
    return pts[landmark_index(name)]


def _finite(*points: np.ndarray) -> bool:
    return all(bool(np.all(np.isfinite(p))) for p in points)


def parameter_polylines(measurement: "Measurement") -> tuple[Polyline, ...]:
    """The lines of every parameter that has a value: both reference lines of each Cobb angle,
    Borden's chord DENS_PS→C7_PI and its perpendicular from the deepest posterior-wall point.

    The deepest point is chosen in millimetres when the spacing is known (as Borden's value is),
    else in pixels."""
    pts = measurement.landmarks_px()
    values = measurement.parameters.as_dict()
    out: list[Polyline] = []
    for key, (upper, lower) in COBB_LINES.items():
        if values.get(key) is None:
            continue
        for role, (n0, n1) in (("upper endplate line", upper), ("lower endplate line", lower)):
            a, b = _point(pts, n0), _point(pts, n1)
            if _finite(a, b):
                out.append(Polyline(key, role, np.array([a, b])))
    a, b = (_point(pts, n) for n in BORDEN_CHORD)
    wall = np.array([_point(pts, n) for n in BORDEN_WALL])
    ok = np.all(np.isfinite(wall), axis=1)
    if values.get("borden_mm") is not None and _finite(a, b) and ok.any() and np.hypot(*(b - a)) > 0:
        out.append(Polyline("borden_mm", "chord", np.array([a, b])))
        sp = measurement.pixel_spacing_mm
        scale = np.array([sp[1], sp[0]]) if sp else np.ones(2)
        depth = signed_distances(wall[ok] * scale, a * scale, b * scale)
        q = wall[ok][int(np.argmax(np.abs(depth)))]
        u = (b - a) / float(np.hypot(*(b - a)))
        foot = a + u * float((q - a) @ u)
        out.append(Polyline("borden_mm", "perpendicular", np.array([q, foot])))
    return tuple(out)
