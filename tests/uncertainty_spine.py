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


#: Share of the total lordosis carried by each of the six segments C2/C3 … C7/T1 in
#: :func:`random_chain` (falling towards T1, so repeating the last seen segment is wrong).
SEGMENT_SHARE = np.array([0.30, 0.25, 0.20, 0.15, 0.10, 0.0])


def random_chain(rng: np.random.Generator, facing: str = "right") -> np.ndarray:
    """(34, 2) landmarks (mm) of a random spine with known structure: the total lordosis
    T ~ N(20°, 12°) is shared between the segments by :data:`SEGMENT_SHARE` (plus 1° noise each);
    bodies are rectangles (height ~ N(14, 1) mm, depth 1.15 × height); the column is placed at a
    random position, orientation (±15°) and scale (0.8–1.2). Anterior is +x for ``facing="right"``."""
    total = -np.deg2rad(rng.normal(20.0, 12.0))  # negative turn = lordosis in this frame
    seg = total * SEGMENT_SHARE + np.deg2rad(rng.normal(0.0, 1.0, 6))
    h = rng.normal(14.0, 1.0)
    d, g = 1.15 * h, 0.35 * h
    theta = np.deg2rad(rng.uniform(-15.0, 15.0))  # caudal axis angle from +y, turning anterior
    centre = np.zeros(2)
    pts = np.full((len(LANDMARK_NAMES), 2), np.nan)

    def axes(th: float) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([np.sin(th), np.cos(th)])  # caudal
        return u, np.array([u[1], -u[0]])  # anterior normal

    for k, v in enumerate(VERTEBRAE):
        u, a = axes(theta)
        for name, du, da in (("AS", -0.5, 0.5), ("PS", -0.5, -0.5), ("PI", 0.5, -0.5), ("AI", 0.5, 0.5)):
            pts[_I[f"{v}_{name}"]] = centre + du * h * u + da * d * a
        if k < 6:
            nxt = theta + seg[k]
            centre = centre + (0.5 * h + g) * u + (0.5 * h) * axes(nxt)[0]
            theta = nxt
    u0, a0 = axes(theta - np.sum(seg[:6]))  # C2's axes
    c2 = pts[[_I["C2_AS"], _I["C2_PS"], _I["C2_PI"], _I["C2_AI"]]].mean(axis=0)
    jit = lambda: rng.normal(0.0, 1.0, 2)  # noqa: E731
    pts[_I["DENS_PS"]] = c2 - 1.2 * h * u0 - 0.3 * d * a0 + jit()
    pts[_I["DENS_TIP"]] = c2 - 1.5 * h * u0 + jit()
    pts[_I["C1_POST"]] = c2 - 1.6 * h * u0 - 1.6 * d * a0 + jit()
    pts[_I["C1_ANT"]] = c2 - 1.7 * h * u0 + 0.9 * d * a0 + jit()
    pts[_I["MCG_OCC"]] = c2 - 2.6 * h * u0 - 2.5 * d * a0 + jit()
    pts[_I["MCG_PNS"]] = c2 - 2.9 * h * u0 + 2.8 * d * a0 + jit()
    scale = rng.uniform(0.8, 1.2)
    rho = np.deg2rad(rng.uniform(-15.0, 15.0))
    r = np.array([[np.cos(rho), -np.sin(rho)], [np.sin(rho), np.cos(rho)]])
    pts = (pts @ r.T) * scale + rng.uniform(50.0, 150.0, 2)
    if facing == "left":
        pts[:, 0] = 400.0 - pts[:, 0]
    return pts
