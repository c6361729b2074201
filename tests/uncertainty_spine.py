"""A synthetic lateral spine of constant curvature for the uncertainty tests (34 landmarks, mm).

Every body has the same shape and the levels follow one circular arc, so extrapolating a level
with the similarity between its two neighbours is exact on it.
"""
from __future__ import annotations

import numpy as np

from cervisag_edge.core.landmarks import LANDMARK_NAMES, VERTEBRAE

_I = {n: i for i, n in enumerate(LANDMARK_NAMES)}
H, G, D = 14.0, 5.0, 16.0  # body height, disc, body depth (mm)


def spine_mm(kappa_per_mm: float = 0.004, origin: tuple[float, float] = (60.0, 40.0), facing: str = "right") -> np.ndarray:
    """(34, 2) landmarks in mm; anterior is +x for ``facing="right"``."""
    def wall(s: float) -> tuple[np.ndarray, np.ndarray]:
        th = kappa_per_mm * s  # tangent angle from straight down, turning posteriorly (lordosis)
        if kappa_per_mm == 0:
            p = np.array([0.0, s])
        else:
            p = np.array([(1 - np.cos(th)) / kappa_per_mm * -1.0, np.sin(th) / kappa_per_mm])
        t = np.array([-np.sin(th), np.cos(th)])  # unit tangent (down the spine)
        n = np.array([t[1], -t[0]])  # anterior normal
        return p, n

    pts = np.full((len(LANDMARK_NAMES), 2), np.nan)
    s0 = 30.0
    for k, v in enumerate(VERTEBRAE):
        s_sup = s0 + k * (H + G)
        for name, s, ant in (("PS", s_sup, 0.0), ("AS", s_sup, D), ("PI", s_sup + H, 0.0), ("AI", s_sup + H, D)):
            p, n = wall(s)
            pts[_I[f"{v}_{name}"]] = p + ant * n
    p, n = wall(20.0)
    pts[_I["DENS_PS"]] = p + 1.0 * n
    pts[_I["DENS_TIP"]] = wall(8.0)[0] + 8.0 * wall(8.0)[1]
    p, n = wall(0.0)
    pts[_I["C1_POST"]] = p - 8.0 * n + np.array([0.0, 4.0])
    pts[_I["C1_ANT"]] = p + 20.0 * n + np.array([0.0, 6.0])
    pts[_I["MCG_OCC"]] = p - 30.0 * n + np.array([0.0, -10.0])
    pts[_I["MCG_PNS"]] = p + 45.0 * n + np.array([0.0, -18.0])
    pts = pts + np.asarray(origin)
    if facing == "left":
        pts[:, 0] = 2 * origin[0] - pts[:, 0]
    return pts
