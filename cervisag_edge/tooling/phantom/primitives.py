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
    h, w = ys.shape[0], xs.shape[1]
    px = np.broadcast_to(xs, (h, w)).reshape(-1)
    py = np.broadcast_to(ys, (h, w)).reshape(-1)
    return points_sdf(px, py, verts).reshape(h, w)


def points_sdf(px: np.ndarray, py: np.ndarray, verts: np.ndarray, max_dist: float | None = None) -> np.ndarray:
    """Signed distance (mm, positive inside) of points (P,) x, (P,) y to a polygon (N, 2);
    exact (distance to the nearest edge, inside by crossing parity), vectorised over edges.

    With ``max_dist`` (every point is known to lie within it of the outline), each chunk of
    points only considers the edges whose y-range comes that close: the nearest edge and all
    edges crossing the points' rows are among them, so the result is unchanged.
    """
    v = np.asarray(verts, dtype=np.float64)
    a = v.astype(np.float32)
    e = (np.roll(v, -1, axis=0) - v)
    ee = (e * e).sum(axis=1)
    inv_ee = np.where(ee > 0, 1.0 / np.maximum(ee, 1e-30), 0.0).astype(np.float32)
    ey = e[:, 1]
    slope = np.where(ey != 0, e[:, 0] / np.where(ey != 0, ey, 1.0), 0.0).astype(np.float32)
    e = e.astype(np.float32)
    b_y = a[:, 1] + e[:, 1]
    lo_y = np.minimum(a[:, 1], b_y)
    hi_y = np.maximum(a[:, 1], b_y)
    n_pts = px.shape[0]
    out = np.empty(n_pts, dtype=np.float32)
    chunk = max(1, 262144 // len(v)) if max_dist is None else 2048
    for s0 in range(0, n_pts, chunk):
        qx = px[s0:s0 + chunk, None]
        qy = py[s0:s0 + chunk, None]
        if max_dist is None:
            ea, ee_, ie, sl, by = a, e, inv_ee, slope, b_y
        else:
            y0, y1 = float(qy.min()) - max_dist, float(qy.max()) + max_dist
            sel = (hi_y >= y0) & (lo_y <= y1)
            ea, ee_, ie, sl, by = a[sel], e[sel], inv_ee[sel], slope[sel], b_y[sel]
        wx = qx - ea[:, 0]
        wy = qy - ea[:, 1]
        t = np.clip((wx * ee_[:, 0] + wy * ee_[:, 1]) * ie, 0.0, 1.0)
        dx = wx - t * ee_[:, 0]
        dy = wy - t * ee_[:, 1]
        d2 = (dx * dx + dy * dy).min(axis=1)
        crosses = (ea[:, 1] > qy) != (by > qy)
        left = qx < ea[:, 0] + wy * sl
        inside = (np.count_nonzero(crosses & left, axis=1) & 1).astype(bool)
        d = np.sqrt(d2)
        out[s0:s0 + chunk] = np.where(inside, d, -d)
    return out


def banded_sdf(rs: slice, cs: slice, xs: np.ndarray, ys: np.ndarray, verts: np.ndarray, grid: Grid, band_mm: float) -> np.ndarray:
    """Polygon signed distance (h, w) float32 on a grid window, exact only within ``band_mm``
    of the outline; elsewhere +/- a large value from a scanline fill (used for coverage and
    rim bands, which only need the distance near the outline)."""
    sr, sc = grid.spacing_mm
    h, w = ys.shape[0], xs.shape[1]
    vpx = np.column_stack([np.asarray(verts)[:, 0] / sc - 0.5 - cs.start, np.asarray(verts)[:, 1] / sr - 0.5 - rs.start])
    pts = np.round(vpx * 16.0).astype(np.int32).reshape(-1, 1, 2)
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    band = np.zeros((h, w), dtype=np.uint8)
    thick = 2 * int(np.ceil(band_mm / min(sr, sc))) + 1
    cv2.polylines(band, [pts], True, 1, thickness=thick, lineType=cv2.LINE_8, shift=4)
    d = np.where(mask > 0, np.float32(1e3), np.float32(-1e3)).astype(np.float32)
    ii, jj = np.nonzero(band)
    if ii.size:
        d[ii, jj] = points_sdf(xs[0, jj], ys[ii, 0], verts, max_dist=(thick + 4) * max(sr, sc))
    return d


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
    shade_mm: float = 0.0  # interior darkens by ``shade_depth`` towards the outline over this depth
    shade_depth: float = 0.0

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
            d = banded_sdf(rs, cs, xs, ys, self.verts, grid, self.rim_mm + 1.0 * grid.pixel_mm)
            if self.shade_mm > 0 and self.shade_depth > 0:
                # rounded walls: the path through the bone shortens towards the outline
                inside = (d > 0).astype(np.uint8)
                deep = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) * np.float32(grid.pixel_mm)
                deep = np.where(np.abs(d) < 1e2, np.maximum(d, 0.0), deep)
                shade = np.float32(1.0) - np.float32(self.shade_depth) * (np.float32(1.0) - np.sqrt(np.clip(deep * np.float32(1.0 / self.shade_mm), 0.0, 1.0)))
            else:
                shade = None
        else:
            c, u, w = self.ellipse  # type: ignore[misc]
            _, d, _ = ellipse_coords(xs, ys, c, u, w)
            shade = None
        inv_pix = np.float32(1.0 / grid.pixel_mm)
        cov = np.clip(d * inv_pix + np.float32(0.5), 0.0, 1.0)
        val = cov * np.float32(self.mut)
        if self.texture is not None and self.texture.amplitude > 0:
            tex = _sample_texture(self.texture, xs, ys, grid, cache)
            # the subcortical band (within 0.8 mm inside the cortex) is dense and even: fade the texture there
            tex *= np.clip((d - np.float32(self.rim_mm)) * np.float32(1.0 / 0.8), 0.0, 1.0)
            val *= np.float32(1.0) + np.float32(self.texture.amplitude) * tex
        if shade is not None:
            val *= shade
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
        sr, sc = grid.spacing_mm
        h, w = ys.shape[0], xs.shape[1]
        vpx = np.column_stack([v[:, 0] / sc - 0.5 - cs.start, v[:, 1] / sr - 0.5 - rs.start])
        mask = np.zeros((h + 2, w + 2), dtype=np.uint8)
        cv2.fillPoly(mask, [np.round((vpx + 1.0) * 16.0).astype(np.int32).reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
        d = (cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1] - np.float32(0.5)) * np.float32(grid.pixel_mm)
        band = np.zeros((h + 2, w + 2), dtype=np.uint8)  # exact distance near the outline: no staircase
        cv2.polylines(band, [np.round((vpx + 1.0) * 16.0).astype(np.int32).reshape(-1, 1, 2)], True, 1, thickness=7, lineType=cv2.LINE_8, shift=4)
        ii, jj = np.nonzero(band[1:-1, 1:-1])
        if ii.size:
            d[ii, jj] = np.maximum(points_sdf(xs[0, jj], ys[ii, 0], v, max_dist=8.0 * max(sr, sc)), 0.0)
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
