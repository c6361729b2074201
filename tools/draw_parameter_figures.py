"""Draw the figures of ``docs/parameters.md`` on a synthetic lordotic neck.

Usage: ``python tools/draw_parameter_figures.py [OUT_DIR]`` (default ``docs/img``). Writes
``parameters.png`` (the six parameters) and ``parameters_extras.png`` (SVA, slopes, segmental
and O–C2 angles, body heights). Needs matplotlib (the ``docs`` extra).
"""
from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np

from cervisag_edge.core.landmarks import VERTEBRAE, landmark_index, vertebra_centroid, vertebra_corners
from cervisag_edge.core.parameters import compute_parameters

logger = logging.getLogger("draw_parameter_figures")


def synthetic_neck() -> np.ndarray:
    """(34, 2) landmarks in mm of a lordotic neck facing right: posterior wall on a circle of
    radius 200 mm centred posteriorly, radial endplates, bodies 14 × 16 mm, discs 5 mm."""
    r, centre = 200.0, np.array([-130.0, 150.0])

    def at(s_mm: float, depth_mm: float) -> np.ndarray:
        phi = -0.28 + s_mm / r
        return centre + (r + depth_mm) * np.array([math.cos(phi), math.sin(phi)])

    pts = np.zeros((34, 2))
    for name, s, depth in (("MCG_OCC", -6, -4), ("MCG_PNS", -6, 48), ("C1_POST", 10, -14), ("C1_ANT", 10, 22),
                           ("DENS_TIP", 12, 9), ("DENS_PS", 18, 0)):
        pts[landmark_index(name)] = at(s, depth)
    for k, v in enumerate(VERTEBRAE):
        top = 24 + 19 * k
        for corner, s, depth in (("AS", top, 16), ("PS", top, 0), ("PI", top + 14, 0), ("AI", top + 14, 16)):
            pts[landmark_index(f"{v}_{corner}")] = at(s, depth)
    return pts


def _p(pts: np.ndarray, name: str) -> np.ndarray:
    return pts[landmark_index(name)]


def _base(ax, pts: np.ndarray, title: str) -> None:
    for v in VERTEBRAE:
        quad = vertebra_corners(pts, v)
        ax.fill(quad[:, 0], quad[:, 1], facecolor="0.88", edgecolor="0.45", linewidth=0.8)
        ax.text(*(vertebra_centroid(pts, v) + [13, 2]), v, fontsize=7, color="0.35")
    for a, b in (("C1_POST", "C1_ANT"), ("MCG_OCC", "MCG_PNS")):
        ax.plot(*np.array([_p(pts, a), _p(pts, b)]).T, color="0.75", linewidth=0.8)
    ax.plot(*np.array([_p(pts, "DENS_PS"), _p(pts, "DENS_TIP"), _p(pts, "C2_AS")]).T, color="0.6", linewidth=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.98, 0.02, "anterior →", transform=ax.transAxes, ha="right", fontsize=7, color="0.4")


def _extended(pts: np.ndarray, a: str, b: str, back: float = 8.0, fwd: float = 30.0) -> np.ndarray:
    p, q = _p(pts, a), _p(pts, b)
    u = (q - p) / np.linalg.norm(q - p)
    return np.array([p - back * u, q + fwd * u])


def _line(ax, pts, a, b, color, **kw) -> None:
    ax.plot(*_extended(pts, a, b, **kw).T, color=color, linewidth=1.6)


def draw_six(pts: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    par = compute_parameters(pts)
    fig, axes = plt.subplots(2, 3, figsize=(9.6, 8.0))
    red, blue, green = "#c0392b", "#2874a6", "#239b56"

    ax = axes[0, 0]
    _base(ax, pts, f"Borden depth = {par.borden_mm:.1f} mm")
    chord = np.array([_p(pts, "DENS_PS"), _p(pts, "C7_PI")])
    ax.plot(*chord.T, color=blue, linewidth=1.6)
    wall = ["C2_PS", "C2_PI", "C3_PS", "C3_PI", "C4_PS", "C4_PI", "C5_PS", "C5_PI", "C6_PS", "C6_PI", "C7_PS"]
    w = np.array([_p(pts, n) for n in wall])
    ax.plot(*w.T, "o", color=red, markersize=2.5)
    u = (chord[1] - chord[0]) / np.linalg.norm(chord[1] - chord[0])
    n = np.array([u[1], -u[0]])
    d = (w - chord[0]) @ n
    k = int(np.argmax(np.abs(d)))
    ax.annotate("", xy=w[k], xytext=w[k] - d[k] * n, arrowprops={"arrowstyle": "<->", "color": red})

    ax = axes[0, 1]
    _base(ax, pts, f"CCI (Ishihara) = {par.cci_percent:.1f} %")
    a, b = _p(pts, "C2_PI"), _p(pts, "C7_PI")
    ax.plot(*np.array([a, b]).T, color=blue, linewidth=1.6)
    u = (b - a) / np.linalg.norm(b - a)
    n = np.array([u[1], -u[0]])
    for kk in range(3, 7):
        q = _p(pts, f"C{kk}_PI")
        ax.plot([q[0], q[0] - ((q - a) @ n) * n[0]], [q[1], q[1] - ((q - a) @ n) * n[1]], color=red, linewidth=1.4)
    ax.text(0.03, 0.97, "100·Σ d(C3..C6 PI) / |C2PI–C7PI|", transform=ax.transAxes, fontsize=7, va="top")

    ax = axes[0, 2]
    _base(ax, pts, f"CCL (centroids) = {par.ccl_deg:.1f}°")
    c = {v: vertebra_centroid(pts, v) for v in ("C2", "C3", "C6", "C7")}
    for v, col in (("C2", green), ("C6", green)):
        lo = "C3" if v == "C2" else "C7"
        seg = np.array([c[v], c[lo]])
        u = (seg[1] - seg[0]) / np.linalg.norm(seg[1] - seg[0])
        ax.plot(*np.array([seg[0] - 10 * u, seg[1] + 25 * u]).T, color=col, linewidth=1.6)
        ax.plot(*seg.T, "o", color=red, markersize=3)

    for ax, title, upper, col in (
        (axes[1, 0], f"Cobb C0–C7 (McGregor) = {par.cobb_c0_c7_deg:.1f}°", ("MCG_OCC", "MCG_PNS"), blue),
        (axes[1, 1], f"Cobb C1–C7 = {par.cobb_c1_c7_deg:.1f}°", ("C1_POST", "C1_ANT"), blue),
        (axes[1, 2], f"Cobb C2–C7 = {par.cobb_c2_c7_deg:.1f}°", ("C2_PI", "C2_AI"), blue),
    ):
        _base(ax, pts, title)
        _line(ax, pts, *upper, col)
        _line(ax, pts, "C7_PI", "C7_AI", red)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    plt.close(fig)


def draw_extras(pts: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    par = compute_parameters(pts)
    red, blue, green = "#c0392b", "#2874a6", "#239b56"
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 4.6))

    ax = axes[0]
    _base(ax, pts, f"C2–C7 SVA = {par.sva_c2_c7_mm:.1f} mm")
    c2 = vertebra_centroid(pts, "C2")
    c7 = _p(pts, "C7_PS")
    ax.plot([c2[0], c2[0]], [c2[1], c7[1] + 10], color=blue, linestyle="--", linewidth=1.2)
    ax.plot([c7[0], c7[0]], [c2[1] - 10, c7[1] + 10], color="0.5", linestyle=":", linewidth=1.0)
    ax.annotate("", xy=(c2[0], c7[1]), xytext=c7, arrowprops={"arrowstyle": "<->", "color": red})
    ax.plot(*c2, "o", color=red, markersize=3)

    ax = axes[1]
    _base(ax, pts, f"C7 slope {par.c7_slope_deg:.1f}°, T1 slope {par.t1_slope_deg:.1f}°")
    for a, b, col in (("C7_PS", "C7_AS", green), ("T1_PS", "T1_AS", red)):
        _line(ax, pts, a, b, col)
        p = _p(pts, a)
        ax.plot([p[0] - 5, p[0] + 45], [p[1], p[1]], color="0.5", linestyle=":", linewidth=1.0)

    ax = axes[2]
    seg = ", ".join(f"{v:.1f}" for v in par.segmental_deg.values())
    _base(ax, pts, f"O–C2 {par.o_c2_deg:.1f}°; segmental (disc) angles\n{seg}°")
    _line(ax, pts, "MCG_OCC", "MCG_PNS", blue)
    _line(ax, pts, "C2_PI", "C2_AI", blue)
    _line(ax, pts, "C4_PI", "C4_AI", red, back=4, fwd=15)
    _line(ax, pts, "C5_PS", "C5_AS", red, back=4, fwd=15)
    for v in ("C6",):
        for a, b in (("AS", "AI"), ("PS", "PI")):
            ax.plot(*np.array([_p(pts, f"{v}_{a}"), _p(pts, f"{v}_{b}")]).T, color=green, linewidth=2.0)
    ax.text(0.03, 0.03, "C6 heights (green)", transform=ax.transAxes, fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="docs/img", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pts = synthetic_neck()
    draw_six(pts, args.out_dir / "parameters.png")
    draw_extras(pts, args.out_dir / "parameters_extras.png")
    for name in ("parameters.png", "parameters_extras.png"):
        path = args.out_dir / name
        logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
