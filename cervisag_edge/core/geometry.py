"""Plane geometry used by :mod:`cervisag_edge.core.parameters` (pure numpy, no I/O).

Coordinates are (x, y) with x to the right and y down (image convention). After the
facing normalisation of :func:`cervisag_edge.core.parameters.compute_parameters` anterior
is +x, so the functions below carry the clinical sign conventions documented in
``docs/parameters.md``.

Shapes: a point is a (2,) array; ``points`` is (N, 2).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def wrap_deg(angle_deg: float) -> float:
    """``angle_deg`` wrapped to the half-open interval (-180, 180]."""
    wrapped = 180.0 - math.fmod(180.0 - float(angle_deg), 360.0)
    if wrapped <= -180.0:
        wrapped += 360.0
    elif wrapped > 180.0:
        wrapped -= 360.0
    return wrapped


def tilt_deg(posterior: ArrayLike, anterior: ArrayLike) -> float:
    """θ(P→A) = atan2(A.y − P.y, A.x − P.x) in degrees, wrapped to (-180, 180].

    Positive when the anterior end of the line is lower (larger y) than its posterior end.
    """
    p = np.asarray(posterior, dtype=np.float64)
    a = np.asarray(anterior, dtype=np.float64)
    return wrap_deg(math.degrees(math.atan2(a[1] - p[1], a[0] - p[0])))


def angle_from_down_deg(vector: ArrayLike) -> float:
    """ψ(v) = atan2(v.x, v.y) in degrees: the angle of ``v`` from straight down (+y),
    positive towards +x (anteriorly after facing normalisation), wrapped to (-180, 180]."""
    v = np.asarray(vector, dtype=np.float64)
    return wrap_deg(math.degrees(math.atan2(v[0], v[1])))


def signed_distances(points: ArrayLike, start: ArrayLike, end: ArrayLike) -> np.ndarray:
    """Signed distances d(Q) = (Q − A)·n of ``points`` (N, 2) from the chord A→B.

    u = (B − A)/|B − A| and n = (u.y, −u.x): for a chord running down the image (+y),
    n points to +x, so d is positive for points anterior to the chord. Returns (N,).
    The caller guarantees A ≠ B.
    """
    a = np.asarray(start, dtype=np.float64)
    b = np.asarray(end, dtype=np.float64)
    q = np.atleast_2d(np.asarray(points, dtype=np.float64))
    u = (b - a) / float(np.hypot(*(b - a)))
    n = np.array([u[1], -u[0]])
    return (q - a) @ n


def distance(p: ArrayLike, q: ArrayLike) -> float:
    """Euclidean distance |q − p| between two points."""
    d = np.asarray(q, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    return float(np.hypot(d[0], d[1]))
