"""Vertebrae C2–T1 in the canonical frame (x anterior, y caudal, mm): a kinematic chain of
bodies separated by discs, with posterior elements, uncinate processes and degeneration.

A vertebra's local frame has x anterior and y caudal with the origin at the body centre;
``rot(theta)`` maps it to the canonical frame (theta > 0 tilts the superior endplate so its
anterior end is lower).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parts import Part, rot, smooth_polygon

LEVELS: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1")


@dataclass(frozen=True)
class Vertebra:
    """Geometry of one vertebra: ``corners`` (4, 2) canonical AS, PS, PI, AI; ``outline`` (N, 2)."""

    name: str
    centre: np.ndarray
    theta_rad: float
    depth_mm: float
    corners: np.ndarray
    outline: np.ndarray
    dens_tip: np.ndarray | None = None
    dens_ps: np.ndarray | None = None
    dens_axis: np.ndarray | None = None


@dataclass(frozen=True)
class SpineSpec:
    """Sampled sizes and angles (mm, rad) from T1 upwards; arrays indexed C2..T1 (7)."""

    depth_mm: np.ndarray
    h_ant_mm: np.ndarray
    h_post_mm: np.ndarray
    disc_mm: np.ndarray  # (6,) C2-3 .. C7-T1 mid-disc height
    seg_rad: np.ndarray  # (6,) rotation of upper relative to lower, C2-3 .. C7-T1
    theta_t1_rad: float
    concave_sup_mm: np.ndarray
    concave_inf_mm: np.ndarray
    concave_wall_mm: np.ndarray
    dens_len_mm: float
    dens_width_mm: float
    dens_tilt_rad: float
    spinous_mm: np.ndarray
    spinous_angle_rad: np.ndarray
    osteophyte_mm: np.ndarray  # (7, 2) anterior-superior / anterior-inferior spur length
    sclerosis: np.ndarray  # (7,) endplate sclerosis factor >= 0
    dens_base_mm: float = 1.0  # C2: from the body's superior chord up to the dens base
    pillar_overlap_mm: float = -3.0  # articular pillars' front edge relative to the posterior wall (> 0 overlaps the body)


def _curve(a: np.ndarray, b: np.ndarray, inward: np.ndarray, sag_mm: float, n: int) -> np.ndarray:
    """Points from a to b (a included, b excluded) bowed by ``sag_mm`` along ``inward``; the
    bow profile (4t(1-t))^2 keeps the curve straight near both corners."""
    t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    bow = (4.0 * t * (1.0 - t)) ** 2
    return a + t * (b - a) + bow * sag_mm * inward


def body_outline(depth: float, ha: float, hp: float, cs: float, ci: float, cw: float, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Local corners (4, 2) AS, PS, PI, AI and outline (4n, 2) of a vertebral body."""
    a_s = np.array([depth / 2, -ha / 2])
    p_s = np.array([-depth / 2, -hp / 2])
    p_i = np.array([-depth / 2, hp / 2])
    a_i = np.array([depth / 2, ha / 2])
    outline = np.vstack([
        _curve(a_s, p_s, np.array([0.0, 1.0]), cs, n),
        _curve(p_s, p_i, np.array([1.0, 0.0]), 0.5 * cw, n),
        _curve(p_i, a_i, np.array([0.0, -1.0]), ci, n),
        _curve(a_i, a_s, np.array([-1.0, 0.0]), cw, n),
    ])
    return np.stack([a_s, p_s, p_i, a_i]), outline


def c2_outline(depth: float, hb: float, cs: float, ci: float, cw: float, dens_len: float, dens_w: float, tilt: float, base_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """C2 body with dens, local frame. Returns corners (4, 2), outline, dens tip, dens PS, dens axis.

    AS is the junction of the anterior body wall and the dens base; PS the junction of the
    posterior wall and the dens base."""
    a_i = np.array([depth / 2, hb / 2])
    p_i = np.array([-depth / 2, hb / 2])
    p_s = np.array([-depth / 2 + 1.2, -hb / 2])
    a_s = np.array([depth / 2 - 0.8, -hb / 2 + 1.5])
    up = np.array([-np.sin(tilt), -np.cos(tilt)])
    ant = np.array([np.cos(tilt), -np.sin(tilt)])
    base_c = np.array([-0.8, -hb / 2 - base_mm])
    r = dens_w / 2
    tip_c = base_c + up * (dens_len - r)
    ang = np.linspace(0.0, np.pi, 13)
    arc = tip_c + np.cos(ang)[:, None] * ant * r + np.sin(ang)[:, None] * up * r
    waist = 0.08 * dens_w
    dens_ant = [base_c + ant * (r + 1.2) + up * 1.5, base_c + ant * (r - waist) + up * (0.45 * dens_len), base_c + ant * r + up * (dens_len - r)]
    dens_post = [base_c - ant * r + up * (dens_len - r), base_c - ant * (r - waist) + up * (0.45 * dens_len), base_c - ant * (r + 1.0) + up * 1.0]
    outline = np.vstack([
        _curve(a_i, a_s, np.array([-1.0, 0.0]), cw, 8),
        np.array([a_s, *dens_ant[:2]]),
        arc[:-1],
        np.array([dens_post[0], *dens_post[1:]]),
        _curve(p_s, p_i, np.array([1.0, 0.0]), 0.5 * cw, 8),
        _curve(p_i, a_i, np.array([0.0, -1.0]), ci, 10),
    ])
    corners = np.stack([a_s, p_s, p_i, a_i])
    tip = tip_c + up * r
    dens_ps = tip_c + (np.cos(0.75 * np.pi) * ant + np.sin(0.75 * np.pi) * up) * r
    return corners, outline, tip, dens_ps, up


def build_chain(spec: SpineSpec) -> list[Vertebra]:
    """Stack the vertebrae from T1 (centre at the origin) upwards; returns C2..T1."""
    built: list[Vertebra] = []  # T1 first
    centre = np.zeros(2)
    theta = spec.theta_t1_rad
    for k in range(6, -1, -1):
        d, ha, hp = spec.depth_mm[k], spec.h_ant_mm[k], spec.h_post_mm[k]
        if built:
            below = built[-1]
            hb_ = 0.25 * (spec.h_ant_mm[k + 1] + spec.h_post_mm[k + 1])
            m = below.centre + rot(below.theta_rad) @ np.array([0.0, -hb_])
            phi = spec.seg_rad[k]
            theta = below.theta_rad + phi
            mid = below.theta_rad + 0.5 * phi
            inf_mid = m + spec.disc_mm[k] * np.array([np.sin(mid), -np.cos(mid)])
            centre = inf_mid - rot(theta) @ np.array([0.0, 0.25 * (ha + hp)])
        r = rot(theta)
        if k == 0:
            corners, outline, tip, dps, axis = c2_outline(d, 0.5 * (ha + hp), spec.concave_sup_mm[k], spec.concave_inf_mm[k], spec.concave_wall_mm[k], spec.dens_len_mm, spec.dens_width_mm, spec.dens_tilt_rad, spec.dens_base_mm)
            built.append(Vertebra(LEVELS[k], centre, theta, d, centre + corners @ r.T, centre + outline @ r.T, centre + r @ tip, centre + r @ dps, r @ axis))
        else:
            corners, outline = body_outline(d, ha, hp, spec.concave_sup_mm[k], spec.concave_inf_mm[k], spec.concave_wall_mm[k])
            built.append(Vertebra(LEVELS[k], centre, theta, d, centre + corners @ r.T, centre + outline @ r.T))
    return built[::-1]


def vertebra_parts(v: Vertebra, k: int, spec: SpineSpec, dens: dict[str, float], rng: np.random.Generator) -> list[Part]:
    """Body (textured trabecular bone + cortical rim), posterior elements, uncinates, spurs."""
    e_tr, e_c, amp = dens["trab"], dens["cort"], dens["tex_amp"]
    r = rot(v.theta_rad)
    lat = 15.0 + 1.5 * k if k < 6 else 24.0  # lateral body width (mm) along the beam
    scl = float(spec.sclerosis[k])
    parts = [Part("bone", verts=v.outline, mut=e_tr * lat + 2 * 0.5 * e_c, rim_mut=e_c * (4.2 + 2.0 * scl), rim_mm=0.55 + 0.35 * scl,
                  tex_angle_rad=v.theta_rad, tex_amp=amp, tex_offset=(float(rng.uniform(0, 200)), float(rng.uniform(0, 200))), tag=f"{v.name}_body",
                  shade_mm=4.0, shade_depth=0.45)]
    d = v.depth_mm
    hp = spec.h_post_mm[k]
    ys, yi = -0.5 * hp, 0.5 * hp
    xw = -0.5 * d
    big = 1.35 if k == 0 else (1.15 if k >= 5 else 1.0)
    if k == 0:
        ys = -0.5 * hp - 2.0

    def local(pts: list[tuple[float, float]]) -> np.ndarray:
        return v.centre + np.asarray(pts, dtype=np.float64) @ r.T

    side_z = 28.0 + 2.0 * k
    # pedicles and articular pillars: bilateral, drawn once per side at its lateral offset
    for z in (-side_z, side_z):
        parts.append(Part("bone", verts=local([(xw + 0.5, ys + 1.5), (xw - 6 * big, ys + 1.5), (xw - 6 * big, ys + 6.0), (xw + 0.5, ys + 6.0)]),
                          mut=e_c * 1.6, rim_mut=e_c * 0.8, rim_mm=0.5, z_mm=z))
        px0 = xw + spec.pillar_overlap_mm
        px1 = px0 - 10.5 * big
        g_up = 0.5 * float(spec.disc_mm[k - 1]) - 0.7 if k > 0 else 1.0  # facet joint gaps ~1.4 mm
        g_dn = 0.5 * float(spec.disc_mm[k]) - 0.7 if k < 6 else 1.0
        parts.append(Part("bone", verts=local([(px0, ys - 2.5 - g_up), (px1, ys + 4.0 - g_up), (px1, yi + 3.5 + g_dn), (px0, yi - 3.0 + g_dn)]),
                          mut=e_tr * 9.0 + e_c * 0.8, rim_mut=e_c * 1.6, rim_mm=0.5, z_mm=z,
                          tex_angle_rad=v.theta_rad, tex_amp=amp, tex_offset=(float(rng.uniform(0, 200)), float(rng.uniform(0, 200))),
                          shade_mm=3.0, shade_depth=0.4))
        if k > 0:  # uncinate process: rises above the posterior half of the superior endplate
            u0 = v.corners[1] + r @ np.array([2.6, 0.0])
            parts.append(Part("bone", verts=np.vstack([u0, u0 + r @ np.array([0.8, -2.2]), u0 + r @ np.array([4.0, -2.0]),
                                                       u0 + r @ np.array([0.45 * d, 0.4]), u0 + r @ np.array([0.4 * d, 1.4])]),
                              mut=e_c * 0.5, rim_mut=e_c * 0.4, rim_mm=0.4, z_mm=z * 0.6))
    # laminae (converging to the midline) and spinous process
    lx0, lx1 = xw - 12.0 * big, xw - 18.0 * big
    parts.append(Part("bone", verts=local([(lx0, ys + 3.0), (lx1, ys + 5.5), (lx1 - 0.5, yi + 3.0), (lx0 + 0.5, yi - 0.5)]), mut=e_c * 2.3 + e_tr * 2.0, rim_mut=e_c * 1.2, rim_mm=0.6))
    ls, ga = float(spec.spinous_mm[k]), float(spec.spinous_angle_rad[k])
    dirv = np.array([-np.cos(ga), np.sin(ga)])
    nrm = np.array([dirv[1], -dirv[0]])
    if nrm[1] > 0:
        nrm = -nrm
    base_top = np.array([lx1 + 1.5, ys + 4.5])
    base_bot = np.array([lx1 + 0.5, yi + 1.5])
    tip_h = 4.0 * big
    tip = 0.5 * (base_top + base_bot) + dirv * ls
    sp = [base_top, tip + nrm * tip_h * 0.6, tip + dirv * 1.5, tip - nrm * tip_h * 0.6, base_bot]
    parts.append(Part("bone", verts=local(smooth_polygon(np.asarray(sp), 2)), mut=e_c * 1.7 + e_tr * 4.0, rim_mut=e_c * 1.2, rim_mm=0.6,
                      tex_angle_rad=v.theta_rad + ga, tex_amp=amp, tex_offset=(float(rng.uniform(0, 200)), 0.0)))
    # anterior corner osteophytes (spurs start >= 1.3 mm from the corner so the corner edges stay clean)
    for j, (ci, sgn) in enumerate(((0, -1.0), (3, 1.0))):
        L = float(spec.osteophyte_mm[k, j])
        if L <= 0.3:
            continue
        c = v.corners[ci]
        wall = r @ np.array([0.0, -sgn])  # along the anterior wall away from the corner
        out_ = r @ np.array([1.0, 0.0])
        vert = r @ np.array([0.0, sgn])  # towards the disc
        root = c + wall * 1.4
        spur = np.vstack([root + wall * 2.5, root - out_ * 0.2, root + out_ * (0.6 * L) + vert * (0.6 * L), root + out_ * L + vert * (0.9 * L), root + out_ * 0.9 + wall * 1.5])
        parts.append(Part("bone", verts=spur, mut=e_c * 4.0, rim_mut=e_c * 1.0, rim_mm=0.4))
    return parts
