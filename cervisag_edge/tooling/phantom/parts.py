"""Anatomical parts in the canonical patient frame and their projection to image millimetres.

Canonical frame (mm): x anterior, y caudal, z lateral (towards the source is negative),
origin arbitrary. A :class:`Part` is one analytic structure; :func:`to_primitive` maps it
through a similarity transform (mirror for the facing side, rotation, translation) plus the
relative magnification of its lateral offset ``z_mm`` about the central ray, giving a
primitive of :mod:`.primitives`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .primitives import Bone, Ellipsoid, RoundSlab, Texture


@dataclass(frozen=True)
class Part:
    """One structure. ``kind``: "bone" (step outline, ``mut`` interior, cortical ``rim_mut``),
    "ellipsoid" (solid, ``mu`` per mm, ``depth_mm`` half-thickness along the beam) or
    "slab" (polygon of thickness ``depth_mm`` with rounded edges ``round_mm``).
    Geometry: ``verts`` (N, 2) or ``ellipse`` = (centre, axis_u, axis_v), canonical mm."""

    kind: str
    verts: np.ndarray | None = None
    ellipse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    mut: float = 0.0
    rim_mut: float = 0.0
    rim_mm: float = 0.0
    mu: float = 0.0
    depth_mm: float = 0.0
    round_mm: float = 1.0
    z_mm: float = 0.0
    tex_angle_rad: float | None = None
    tex_amp: float = 0.0
    tex_offset: tuple[float, float] = (0.0, 0.0)
    coarse: bool = False
    tag: str = field(default="")
    shade_mm: float = 0.0
    shade_depth: float = 0.0


def ellipse(centre: tuple[float, float] | np.ndarray, a: float, b: float, angle_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, axis_u, axis_v) of an ellipse with semi-axes a (along angle) and b."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.asarray(centre, dtype=np.float64), np.array([a * c, a * s]), np.array([-b * s, b * c])


def smooth_polygon(verts: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon (N, 2) -> (N * 2**iterations, 2)."""
    v = np.asarray(verts, dtype=np.float64)
    for _ in range(iterations):
        nxt = np.roll(v, -1, axis=0)
        v = np.stack([0.75 * v + 0.25 * nxt, 0.25 * v + 0.75 * nxt], axis=1).reshape(-1, 2)
    return v


def rot(theta_rad: float) -> np.ndarray:
    """(2, 2) rotation for y-down coordinates (positive = clockwise on screen)."""
    c, s = np.cos(theta_rad), np.sin(theta_rad)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class Placement:
    """Canonical mm -> image mm: p_img = centre_img + R @ F @ (p - pivot), then for a part at
    lateral offset z a scaling by ``mag_ratio(z)`` about the central-ray point ``ray_img``.

    ``linear`` (2, 2) = R @ F; ``sid_mm`` and ``sod_mm`` (source–object distance of the
    mid-sagittal plane) give the relative magnification of off-midline structures."""

    linear: np.ndarray
    pivot: np.ndarray
    centre_img: np.ndarray
    ray_img: np.ndarray
    sod_mm: float
    mirrored: bool

    def mag_ratio(self, z_mm: float) -> float:
        """Magnification of a plane at lateral offset z relative to the mid-sagittal plane."""
        return self.sod_mm / (self.sod_mm + z_mm)

    def points(self, pts: np.ndarray, z_mm: float = 0.0) -> np.ndarray:
        """(N, 2) canonical -> (N, 2) image mm."""
        p = np.asarray(pts, dtype=np.float64)
        q = (p - self.pivot) @ self.linear.T + self.centre_img
        if z_mm:
            q = self.ray_img + self.mag_ratio(z_mm) * (q - self.ray_img)
        return q

    def vectors(self, vec: np.ndarray, z_mm: float = 0.0) -> np.ndarray:
        v = np.asarray(vec, dtype=np.float64) @ self.linear.T
        return v * self.mag_ratio(z_mm) if z_mm else v


def to_primitive(part: Part, place: Placement, tile: np.ndarray | None, tile_mm: float):
    """The :mod:`.primitives` object of ``part`` in image mm."""
    z = part.z_mm
    verts = None if part.verts is None else place.points(part.verts, z)
    ell = None
    if part.ellipse is not None:
        c, u, v = part.ellipse
        ell = (place.points(c[None, :], z)[0], place.vectors(u, z), place.vectors(v, z))
    if part.kind == "bone":
        tex = None
        if tile is not None and part.tex_angle_rad is not None and part.tex_amp > 0:
            # image mm -> canonical -> structure-aligned texel coordinates
            k = place.mag_ratio(z)
            lin_inv = np.linalg.inv(place.linear * k)
            r = rot(-part.tex_angle_rad) / tile_mm
            a2 = r @ lin_inv
            origin_img = place.points(place.pivot[None, :], z)[0]
            off = np.array(part.tex_offset) - a2 @ origin_img + r @ place.pivot
            tex = Texture(tile=tile, affine=np.hstack([a2, off[:, None]]), amplitude=part.tex_amp)
        return Bone(mut=part.mut, rim_mut=part.rim_mut, rim_mm=part.rim_mm, verts=verts, ellipse=ell, texture=tex,
                    shade_mm=part.shade_mm, shade_depth=part.shade_depth)
    if part.kind == "ellipsoid":
        c, u, v = ell  # type: ignore[misc]
        return Ellipsoid(centre=c, axis_u=u, axis_v=v, depth_mm=part.depth_mm, mu=part.mu)
    if part.kind == "slab":
        return RoundSlab(verts=verts, depth_mm=part.depth_mm, round_mm=part.round_mm, mu=part.mu)
    raise ValueError(f"unknown part kind {part.kind!r}, expected bone, ellipsoid or slab")
