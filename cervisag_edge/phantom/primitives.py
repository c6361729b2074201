"""Analytic thickness primitives and their rasterisation into line-integral maps.

Every primitive lives in *image millimetres* at the patient plane: x to the right, y down,
origin at the top-left corner of the image (the centre of pixel (row i, col j) is at
x = (j + 0.5) * col_spacing, y = (i + 0.5) * row_spacing). A primitive adds its
attenuation line integral (dimensionless mu * t) to a (H, W) float32 map, only inside its
bounding box, so rendering cost follows the structure's area.

Edge model of bone: the outline is a step (the body is a prism along the beam direction)
whose pixel coverage is computed from the signed distance to the outline, so edges are
anti-aliased and sit exactly on the outline at any resolution; a cortical band of width
``rim_mm`` just inside the outline adds the tangential projection of the cortical shell.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Grid:
    """A pixel grid: ``shape`` (H, W) and ``spacing_mm`` (row, col) at the patient plane."""

    shape: tuple[int, int]
    spacing_mm: tuple[float, float]

    @property
    def pixel_mm(self) -> float:
        return 0.5 * (self.spacing_mm[0] + self.spacing_mm[1])

    def window(self, xmin: float, xmax: float, ymin: float, ymax: float) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Rows/cols slices covering an mm box, with (h, 1) y and (1, w) x pixel-centre mm coordinates."""
        sr, sc = self.spacing_mm
        h, w = self.shape
        i0 = max(int(np.floor(ymin / sr - 0.5)), 0)
        i1 = min(int(np.ceil(ymax / sr + 0.5)), h)
        j0 = max(int(np.floor(xmin / sc - 0.5)), 0)
        j1 = min(int(np.ceil(xmax / sc + 0.5)), w)
        if i1 <= i0 or j1 <= j0:
            return None
        ys = ((np.arange(i0, i1, dtype=np.float32) + 0.5) * np.float32(sr))[:, None]
        xs = ((np.arange(j0, j1, dtype=np.float32) + 0.5) * np.float32(sc))[None, :]
        return slice(i0, i1), slice(j0, j1), xs, ys


def polygon_sdf(xs: np.ndarray, ys: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Signed distance (mm, positive inside) from grid points to a closed polygon.

    ``xs`` (1, w), ``ys`` (h, 1), ``verts`` (N, 2) in mm; returns (h, w) float32.
    """
    v = np.asarray(verts, dtype=np.float64)
    h, w = ys.shape[0], xs.shape[1]
    best = np.full((h, w), np.inf, dtype=np.float32)
    inside = np.zeros((h, w), dtype=bool)
    n = len(v)
    for k in range(n):
        ax, ay = v[k]
        bx, by = v[(k + 1) % n]
        ex, ey = bx - ax, by - ay
        ee = ex * ex + ey * ey
        wx = xs - np.float32(ax)
        wy = ys - np.float32(ay)
        if ee > 0:
            t = np.clip((wx * np.float32(ex) + wy * np.float32(ey)) * np.float32(1.0 / ee), 0.0, 1.0)
            dx = wx - t * np.float32(ex)
            dy = wy - t * np.float32(ey)
        else:
            dx, dy = wx + 0 * wy, wy + 0 * wx
        np.minimum(best, dx * dx + dy * dy, out=best)
        if ay != by:
            crosses = (ay > ys) != (by > ys)  # (h, 1)
            xint = np.float32(ax) + (ys - np.float32(ay)) * np.float32(ex / ey)  # (h, 1)
            inside ^= crosses & (xs < xint)
    d = np.sqrt(best)
    return np.where(inside, d, -d)


def ellipse_coords(xs: np.ndarray, ys: np.ndarray, centre: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised radius r and approximate signed distance (mm, positive inside) to an ellipse.

    The ellipse is centre + alpha * axis_u + beta * axis_v with alpha^2 + beta^2 = 1
    (axis vectors in mm). Returns (r, sdf, (alpha, beta) stacked) each (h, w).
    """
    m = np.array([[axis_u[0], axis_v[0]], [axis_u[1], axis_v[1]]], dtype=np.float64)
    inv = np.linalg.inv(m)
    px = xs - np.float32(centre[0])
    py = ys - np.float32(centre[1])
    a = np.float32(inv[0, 0]) * px + np.float32(inv[0, 1]) * py
    b = np.float32(inv[1, 0]) * px + np.float32(inv[1, 1]) * py
    r = np.sqrt(a * a + b * b) + np.float32(1e-6)
    gx = (a * np.float32(inv[0, 0]) + b * np.float32(inv[1, 0])) / r
    gy = (a * np.float32(inv[0, 1]) + b * np.float32(inv[1, 1])) / r
    sdf = (np.float32(1.0) - r) / np.maximum(np.sqrt(gx * gx + gy * gy), np.float32(1e-6))
    return r, sdf, np.stack([a, b])


@dataclass(frozen=True)
class Texture:
    """Trabecular texture: a zero-mean (n, n) float32 tile at ``tile_mm`` per texel and an
    affine (2, 3) mapping image mm to texel coordinates for one structure."""

    tile: np.ndarray
    affine: np.ndarray
    amplitude: float


@dataclass(frozen=True)
class Bone:
    """A bony structure with a step outline: interior line integral ``mut`` (optionally
    textured), plus ``rim_mut`` in a band ``rim_mm`` wide inside the outline.

    ``verts`` (N, 2) mm for a polygon, or ``ellipse`` = (centre, axis_u, axis_v).
    """

    mut: float
    rim_mut: float
    rim_mm: float
    verts: np.ndarray | None = None
    ellipse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    texture: Texture | None = None

    def bounds(self) -> tuple[float, float, float, float]:
        if self.verts is not None:
            v = np.asarray(self.verts)
            return float(v[:, 0].min()), float(v[:, 0].max()), float(v[:, 1].min()), float(v[:, 1].max())
        c, u, w = self.ellipse  # type: ignore[misc]
        ex = float(np.hypot(u[0], w[0]))
        ey = float(np.hypot(u[1], w[1]))
        return float(c[0] - ex), float(c[0] + ex), float(c[1] - ey), float(c[1] + ey)

    def render(self, grid: Grid, out: np.ndarray, cache: dict | None = None) -> None:
        x0, x1, y0, y1 = self.bounds()
        pad = 2.0 * grid.pixel_mm
        win = grid.window(x0 - pad, x1 + pad, y0 - pad, y1 + pad)
        if win is None:
            return
        rs, cs, xs, ys = win
        if self.verts is not None:
            d = polygon_sdf(xs, ys, self.verts)
        else:
            c, u, w = self.ellipse  # type: ignore[misc]
            _, d, _ = ellipse_coords(xs, ys, c, u, w)
        inv_pix = np.float32(1.0 / grid.pixel_mm)
        cov = np.clip(d * inv_pix + np.float32(0.5), 0.0, 1.0)
        val = cov * np.float32(self.mut)
        if self.texture is not None and self.texture.amplitude > 0:
            val *= np.float32(1.0) + np.float32(self.texture.amplitude) * _sample_texture(self.texture, xs, ys, grid, cache)
        if self.rim_mut != 0.0 and self.rim_mm > 0:
            inner = np.clip((d - np.float32(self.rim_mm)) * inv_pix + np.float32(0.5), 0.0, 1.0)
            val += (cov - inner) * np.float32(self.rim_mut)
        out[rs, cs] += val


def _sample_texture(tex: Texture, xs: np.ndarray, ys: np.ndarray, grid: Grid, cache: dict | None) -> np.ndarray:
    a = tex.affine
    h, w = ys.shape[0], xs.shape[1]
    mx = (np.float32(a[0, 0]) * xs + np.float32(a[0, 1]) * ys + np.float32(a[0, 2])).astype(np.float32)
    my = (np.float32(a[1, 0]) * xs + np.float32(a[1, 1]) * ys + np.float32(a[1, 2])).astype(np.float32)
    mx = np.broadcast_to(mx, (h, w)).copy()
    my = np.broadcast_to(my, (h, w)).copy()
    scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))  # texels per mm
    sigma = 0.45 * grid.pixel_mm * scale  # area-average the tile to the pixel size
    key = (id(tex.tile), round(sigma, 3))
    tile = None if cache is None else cache.get(key)
    if tile is None:
        tile = tex.tile if sigma < 0.3 else cv2.GaussianBlur(tex.tile, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        if cache is not None:
            cache[key] = tile
    return cv2.remap(tile, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid (semi-axes: in-plane axis vectors and ``depth_mm`` along the beam):
    line integral ``mu * 2 * depth * sqrt(1 - r^2)``; ``mu`` may be negative (air in tissue)."""

    centre: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    depth_mm: float
    mu: float

    def render(self, grid: Grid, out: np.ndarray, cache: dict | None = None) -> None:
        ex = float(np.hypot(self.axis_u[0], self.axis_v[0]))
        ey = float(np.hypot(self.axis_u[1], self.axis_v[1]))
        win = grid.window(self.centre[0] - ex, self.centre[0] + ex, self.centre[1] - ey, self.centre[1] + ey)
        if win is None:
            return
        rs, cs, xs, ys = win
        r, _, _ = ellipse_coords(xs, ys, self.centre, self.axis_u, self.axis_v)
        chord = np.sqrt(np.clip(np.float32(1.0) - r * r, 0.0, None))
        out[rs, cs] += chord * np.float32(2.0 * self.depth_mm * self.mu)


@dataclass(frozen=True)
class RoundSlab:
    """A slab of lateral thickness ``depth_mm`` inside polygon ``verts`` (N, 2) whose edges are
    rounded with radius ``round_mm`` (circular cross-section near the outline)."""

    verts: np.ndarray
    depth_mm: float
    round_mm: float
    mu: float

    def render(self, grid: Grid, out: np.ndarray, cache: dict | None = None) -> None:
        v = np.asarray(self.verts)
        win = grid.window(v[:, 0].min(), v[:, 0].max(), v[:, 1].min(), v[:, 1].max())
        if win is None:
            return
        rs, cs, xs, ys = win
        d = polygon_sdf(xs, ys, v)
        g = np.clip(d * np.float32(1.0 / self.round_mm), 0.0, 1.0)
        chord = np.sqrt(g * (np.float32(2.0) - g))
        out[rs, cs] += chord * np.float32(self.depth_mm * self.mu)


def render_all(prims: list, grid: Grid) -> np.ndarray:
    """Sum the line integrals of ``prims`` on ``grid``; returns (H, W) float32."""
    out = np.zeros(grid.shape, dtype=np.float32)
    cache: dict = {}
    for p in prims:
        p.render(grid, out, cache)
    return out
