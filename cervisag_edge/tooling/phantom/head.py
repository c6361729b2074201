"""Atlas, skull base, face, mandible, airway, soft tissue and shoulders (canonical frame, mm).

The atlas rotates about a point on the dens axis by the C1–C2 angle; the skull (with palate,
teeth and mandible) rotates with the atlas plus the C0–C1 angle. Landmarks MCG_PNS, MCG_OCC,
C1_ANT and C1_POST come from the same vertices that outline the rendered parts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .parts import Part, ellipse, rot, smooth_polygon
from .spine import Vertebra

MU_SOFT = 0.024  # soft tissue, 1/mm at the effective energy
#: Cranial vault in the skull frame (origin 7 mm below the dens tip): centre, semi-axes, tilt. The
#: vertex lies about 165 mm above the hard palate and the vault's back meets the occipital squama.
VAULT_C_MM, VAULT_AB_MM, VAULT_TILT_RAD = (-8.0, -100.0), (92.0, 74.0), -0.2


@dataclass(frozen=True)
class HeadSpec:
    """Sampled head/neck shape (mm, rad)."""

    alpha12_rad: float
    alpha01_rad: float
    adi_mm: float
    pns_mm: tuple[float, float]
    occ_centre_mm: tuple[float, float]
    occ_axes_mm: tuple[float, float]
    occ_tilt_rad: float
    neck_scale: float
    prevert_scale: float
    airway_scale: float
    shoulder_top: tuple[float, float]  # y of each shoulder top, in units of vertebral levels below C2 centre
    shoulder_dx_mm: tuple[float, float]
    earrings: bool
    mandible_open_rad: float


@dataclass(frozen=True)
class HeadResult:
    parts: list[Part]
    soft: list[Part]
    shoulders: list[Part]
    landmarks: dict[str, np.ndarray]
    refs: dict[str, np.ndarray] = field(default_factory=dict)  # framing reference points (canonical mm)
    teeth: list = field(default_factory=list)  # (centre (2,), angle_rad, z_mm, upper) per tooth


def mcgregor_tangent_point(pns: np.ndarray, occiput: np.ndarray) -> np.ndarray:
    """MCG_OCC: where McGregor's line, drawn from the hard palate's posterior end ``pns`` (2,),
    touches the underside of the outer occipital contour ``occiput`` (N, 2), y caudal.

    The line from ``pns`` is turned caudally until it last touches the contour: the contour point
    whose direction from ``pns`` lies farthest below the horizontal (every other contour point is
    above the line). It depends only on the skull, not on the head's or the film's tilt; "the
    most caudal point of the occipital curve" taken in the image frame moves along the flat curve
    by about R·tilt (R ≈ 40 mm: 3 mm at 4°), which the image cannot tell (docs/phantoms.md)."""
    d = np.asarray(occiput, dtype=np.float64) - np.asarray(pns, dtype=np.float64)
    side = np.sign(np.median(d[:, 0])) or 1.0  # the occiput lies posterior of the palate, either way
    below = np.arctan2(d[:, 1], side * d[:, 0])  # angle below the horizontal, towards the occiput
    return np.asarray(occiput[int(np.argmax(below))], dtype=np.float64)


def _arc(centre: np.ndarray, a: float, b: float, tilt: float, phi0: float, phi1: float, n: int) -> np.ndarray:
    t = np.linspace(phi0, phi1, n)
    pts = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    return centre + pts @ rot(tilt).T


def build_head(spine: list[Vertebra], spec: HeadSpec, dens: dict[str, float], dens_w: float) -> HeadResult:
    """Atlas, skull, face, soft tissue and shoulders placed on the C2 of ``spine`` (C2..T1)."""
    e_c, e_tr = dens["cort"], dens["trab"]
    c2 = spine[0]
    up = c2.dens_axis  # unit vector along the dens towards its tip
    th1 = c2.theta_rad + spec.alpha12_rad
    o1 = c2.dens_tip - up * 7.0
    r1 = rot(th1)

    def l1(pts) -> np.ndarray:
        return o1 + np.asarray(pts, dtype=np.float64) @ r1.T

    parts: list[Part] = []
    lm: dict[str, np.ndarray] = {}
    # --- atlas
    ant_x = dens_w / 2 + spec.adi_mm + 3.6
    c1_ant = l1([[ant_x, -0.5]])[0]
    lm["C1_ANT"] = c1_ant
    parts.append(Part("bone", ellipse=ellipse(c1_ant, 3.6, 5.6, th1), mut=e_tr * 10 + e_c * 1.0, rim_mut=e_c * 3.0, rim_mm=0.6))
    for z in (-26.0, 26.0):
        parts.append(Part("bone", ellipse=ellipse(l1([[-3.0, 1.5]])[0], 10.5, 7.0, th1), mut=e_tr * 12 + e_c * 0.5, rim_mut=e_c * 0.5, rim_mm=0.5, z_mm=z,
                          tex_angle_rad=th1, tex_amp=dens["tex_amp"], tex_offset=(17.0, 91.0)))
    q = np.array([-27.0, -2.0])
    rt = 3.8
    ang = np.linspace(-0.5 * np.pi, 0.5 * np.pi, 11)
    tub = np.stack([q[0] - rt * np.cos(ang), q[1] + rt * np.sin(ang)], axis=1)  # top -> posterior -> bottom
    post_arch = np.vstack([[[-9.0, -3.5], [-18.0, -2.6]], tub, [[-18.0, 1.8], [-9.0, 4.2]]])
    parts.append(Part("bone", verts=l1(post_arch), mut=e_c * 2.2 + e_tr * 4, rim_mut=e_c * 1.5, rim_mm=0.6))
    lm["C1_POST"] = l1([[q[0] - rt, q[1]]])[0]
    refs: dict[str, np.ndarray] = {}
    # --- skull (rotates with the atlas plus the C0–C1 angle)
    ths = th1 + spec.alpha01_rad
    rs = rot(ths)

    def ls(pts) -> np.ndarray:
        return o1 + np.asarray(pts, dtype=np.float64) @ rs.T

    occ_c = np.array(spec.occ_centre_mm)
    ao, bo = spec.occ_axes_mm
    outer = _arc(occ_c, ao, bo, spec.occ_tilt_rad, np.deg2rad(68), np.deg2rad(215), 32)
    inner = _arc(occ_c, ao - 7.0, bo - 7.0, spec.occ_tilt_rad, np.deg2rad(72), np.deg2rad(215), 24)[::-1]
    outer_c = ls(outer)
    parts.append(Part("bone", verts=np.vstack([outer_c, ls(inner)]), mut=e_c * 5.0, rim_mut=e_c * 4.0, rim_mm=1.2,
                      tex_angle_rad=ths, tex_amp=0.5 * dens["tex_amp"], tex_offset=(3.0, 5.0)))
    occ_fine = ls(_arc(occ_c, ao, bo, spec.occ_tilt_rad, np.deg2rad(68), np.deg2rad(215), 4000))
    vault_c = ls([VAULT_C_MM])[0]
    phi = ths + VAULT_TILT_RAD
    va, vb = VAULT_AB_MM
    refs["vertex"] = vault_c - np.array([0.0, float(np.hypot(va * np.sin(phi), vb * np.cos(phi)))])
    refs["occiput_back"] = outer_c[int(np.argmin(outer_c[:, 0]))]
    refs["nose"] = ls([[132.0, -30.0]])[0]
    refs["chin"] = ls([[88.0, 66.0]])[0]
    for z in (-22.0, 22.0):  # occipital condyles on the atlas lateral masses; mastoid processes
        parts.append(Part("bone", ellipse=ellipse(ls([[-3.0, -9.0]])[0], 9.5, 4.5, ths + 0.15), mut=e_tr * 9 + e_c * 0.6, rim_mut=e_c * 1.4, rim_mm=0.7, z_mm=z,
                          tex_angle_rad=ths, tex_amp=dens["tex_amp"], tex_offset=(31.0 + z, 7.0)))
    for z in (-52.0, 52.0):
        parts.append(Part("bone", ellipse=ellipse(ls([[-20.0, -14.0]])[0], 8.0, 13.0, ths + 0.3), mut=e_tr * 6 + e_c * 0.5, rim_mut=e_c * 1.2, rim_mm=0.7, z_mm=z,
                          tex_angle_rad=ths, tex_amp=0.6 * dens["tex_amp"], tex_offset=(60.0 + z, 33.0)))
    for sgn, grow in ((1.0, 0.0), (-1.0, -6.5)):
        parts.append(Part("ellipsoid", ellipse=ellipse(vault_c, va + grow, vb + grow, phi), depth_mm=70.0 + grow, mu=sgn * e_c * 0.6))
    # skull base (temporal bones, cranial fossae): a smooth dense mass between vault and atlas
    parts.append(Part("ellipsoid", ellipse=ellipse(ls([[-4.0, -42.0]])[0], 52.0, 24.0, ths - 0.2), depth_mm=40.0, mu=e_c * 0.22))
    for z in (-48.0, 48.0):  # petrous ridge / mastoid
        parts.append(Part("bone", ellipse=ellipse(ls([[-12.0, -30.0]])[0], 17.0, 9.0, ths - 0.35), mut=e_c * 6.0, rim_mut=e_c * 1.0, rim_mm=0.8, z_mm=z,
                          tex_angle_rad=ths, tex_amp=0.2, tex_offset=(40.0 + z, 12.0)))
    parts.append(Part("bone", verts=ls([[6.0, -13.0], [-1.0, -16.0], [18.0, -52.0], [27.0, -50.0]]), mut=e_c * 3.0, rim_mut=e_c * 1.5, rim_mm=0.6))  # clivus
    parts.append(Part("ellipsoid", ellipse=ellipse(ls([[36.0, -48.0]])[0], 12.0, 9.0, ths), depth_mm=11.0, mu=-MU_SOFT))  # sphenoid sinus
    # hard palate: the posterior vertex is MCG_PNS
    px, py = spec.pns_mm
    pal = np.array([[px, py], [px + 8, py - 2.4], [px + 48, py - 4.0], [px + 51, py + 0.5], [px + 46, py + 4.5], [px + 8, py + 2.2]])
    pal_c = ls(pal)
    lm["MCG_PNS"] = pal_c[0]
    lm["MCG_OCC"] = mcgregor_tangent_point(lm["MCG_PNS"], occ_fine)
    parts.append(Part("bone", verts=pal_c, mut=e_c * 3.2, rim_mut=e_c * 2.0, rim_mm=0.7))
    parts.append(Part("ellipsoid", ellipse=ellipse(ls([[px + 33, py - 14]])[0], 34.0, 20.0, ths), depth_mm=26.0, mu=e_c * 0.22))  # maxilla
    for z in (-30.0, 30.0):
        parts.append(Part("ellipsoid", ellipse=ellipse(ls([[px + 30, py - 17]])[0], 15.0, 11.0, ths), depth_mm=13.0, mu=-MU_SOFT, z_mm=z))  # maxillary sinus
    parts.append(Part("slab", verts=ls([[px + 2, py - 3], [px + 6, py - 26], [px + 50, py - 28], [px + 52, py - 5]]), depth_mm=18.0, round_mm=6.0, mu=-0.6 * MU_SOFT))  # nasal cavity
    rm = rot(ths + spec.mandible_open_rad)
    piv = ls([[14.0, -20.0]])[0]

    def lmand(pts) -> np.ndarray:
        return piv + (np.asarray(pts, dtype=np.float64) - np.array([14.0, -20.0])) @ rm.T

    teeth: list[tuple[np.ndarray, float, float, bool]] = []
    for z in (-24.0, 24.0):  # teeth
        for t in range(6):
            cu, cl = ls([[px + 16 + 4.2 * t, py + 8.5]])[0], lmand([[px + 17 + 4.2 * t, py + 24.0]])[0]
            for c, ang, occl in ((cu, ths + 0.1, 1.0), (cl, ths - 0.1, -1.0)):
                ax = rot(ang) @ np.array([0.0, occl])  # towards the biting surface
                parts.append(Part("bone", ellipse=ellipse(c + ax * 2.8, 2.7, 3.4, ang), mut=e_c * 1.9, rim_mut=e_c * 1.2, rim_mm=0.8, z_mm=z))  # enamel crown
                parts.append(Part("bone", ellipse=ellipse(c - ax * 2.2, 1.7, 5.0, ang), mut=e_c * 0.9, rim_mut=e_c * 0.6, rim_mm=0.5, z_mm=z))  # root
            teeth += [(cu, ths + 0.1, z, True), (cl, ths - 0.1, z, False)]
    refs["ear"] = ls([[-6.0, 6.0]])[0]  # earlobe
    refs["ear_canal"] = ls([[-5.0, -45.0]])[0]  # external auditory meatus, by the petrous bone
    mand = np.array([[17.0, -24.0], [11.0, -19.0], [13.0, 5.0], [16.0, 30.0], [23.0, 40.0], [60.0, 48.0], [92.0, 54.0], [99.0, 44.0], [97.0, 30.0],
                     [80.0, 30.0], [46.0, 28.0], [38.0, 18.0], [36.0, -6.0], [30.0, -2.0], [24.0, -12.0], [21.0, -21.0]])
    mand[:, 0] += px - 32.0
    for z in (-46.0, 46.0):
        parts.append(Part("bone", verts=lmand(smooth_polygon(mand, 2)), mut=e_c * 2.6 + e_tr * 6, rim_mut=e_c * 2.8, rim_mm=1.6, z_mm=z,
                          tex_angle_rad=ths, tex_amp=0.15, tex_offset=(5.0, 60.0 + z)))
    if spec.earrings:
        for z in (-70.0, 70.0):
            c = ls([[-6.0, 6.0]])[0]
            parts.append(Part("bone", ellipse=ellipse(c, 5.0, 6.5, ths), mut=4.0, rim_mut=0.0, rim_mm=0.0, z_mm=z))
            parts.append(Part("bone", ellipse=ellipse(c, 4.0, 5.5, ths), mut=-4.0, rim_mut=0.0, rim_mm=0.0, z_mm=z))
    # hyoid (body and greater horn) in front of C3
    c3 = spine[1]
    rh = rot(c3.theta_rad)
    hb = c3.corners[0] + rh @ np.array([24.0 * spec.neck_scale, 2.0])
    parts.append(Part("bone", verts=np.vstack([hb + rh @ np.array(p) for p in ([4, -2], [-14, -9], [-16, -7], [-2, 3], [5, 3])]), mut=e_c * 2.0, rim_mut=e_c * 1.2, rim_mm=0.5))

    soft = _soft_tissue(spine, spec, ls, lm, c1_ant, outer_c)
    shoulders = _shoulders(spine, spec, dens)
    return HeadResult(parts=parts, soft=soft, shoulders=shoulders, landmarks=lm, refs=refs, teeth=teeth)


def _soft_tissue(spine: list[Vertebra], spec: HeadSpec, ls, lm: dict[str, np.ndarray], c1_ant: np.ndarray, occ_outer: np.ndarray) -> list[Part]:
    s = spec.neck_scale
    post, ant, air_p, air_a = [], [], [], []
    prevert = (4.0, 4.0, 5.0, 9.0, 13.0, 14.0, 15.0)
    width = (13.0, 12.0, 14.0, 13.0, 16.0, 17.0, 17.0)
    for k, v in enumerate(spine):
        r = rot(v.theta_rad)
        a_wall = 0.5 * (v.corners[0] + v.corners[3])
        p_wall = 0.5 * (v.corners[1] + v.corners[2])
        fwd = r @ np.array([1.0, 0.0])
        post.append(p_wall - fwd * (17.0 + (48.0 + 4.0 * k) * s))
        pv = prevert[k] * spec.prevert_scale
        air_front = pv + width[k] * spec.airway_scale
        ant.append(a_wall + fwd * max((46.0 + 3.0 * k) * s, air_front + 30.0))  # the skin stays in front of the airway
        air_p.append(a_wall + fwd * pv)
        air_a.append(a_wall + fwd * air_front)
    t1 = spine[-1]
    down = rot(t1.theta_rad) @ np.array([0.0, 1.0])
    fwd = rot(t1.theta_rad) @ np.array([1.0, 0.0])
    # airway: nasopharynx behind the palate down to the trachea
    naso_p = lm["C1_ANT"] + rot(spine[0].theta_rad) @ np.array([10.0 * spec.prevert_scale, -4.0])
    naso_top = lm["MCG_PNS"] + (naso_p - lm["MCG_PNS"]) * 0.25 + np.array([0.0, -12.0])
    airway = np.vstack([[naso_top], [naso_p], air_p, [air_p[-1] + down * 120.0], [air_a[-1] + down * 120.0], air_a[::-1],
                        [lm["MCG_PNS"] + np.array([0.0, 6.0])], [lm["MCG_PNS"] + np.array([2.0, -6.0])]])
    soft = [Part("slab", verts=airway, depth_mm=24.0 * spec.airway_scale, round_mm=6.0, mu=-MU_SOFT, tag="airway")]
    head_back = occ_outer[::-1] + (occ_outer[::-1] - occ_outer.mean(axis=0)) * 0.12
    # keep the outline simple (no self-intersection) when the occiput comes down in extension
    head_back = head_back[(head_back[:, 1] < post[0][1] - 12.0) & (head_back[:, 0] < post[0][0] + 25.0)]
    # the anterior neck line meets the chin; points above the chin would fold the outline
    chin = ls([[88.0, 66.0]])[0]
    front = [p for p in ant[::-1][:-1] if p[1] > chin[1] + 5.0] or [ant[-1]]
    # scalp over the vault: an arc 6 mm outside the vault ellipse, from the face round to the occiput
    d_ax = ls([[1.0, 0.0]])[0] - ls([[0.0, 0.0]])[0]
    skull_angle = float(np.arctan2(d_ax[1], d_ax[0]))
    scalp = ls(_arc(np.array(VAULT_C_MM), VAULT_AB_MM[0] + 6.0, VAULT_AB_MM[1] + 6.0, VAULT_TILT_RAD, np.deg2rad(-20.0), np.deg2rad(-200.0), 16))
    outline = np.vstack([
        scalp, head_back[::6], post, [post[-1] - fwd * 10 + down * 60, post[-1] - fwd * 30 + down * 250],
        [ant[-1] + fwd * 40 + down * 250, ant[-1] + fwd * 15 + down * 60], front,
        ls([[88.0, 66.0], [105.0, 64.0], [118.0, 30.0], [132.0, -30.0], [120.0, -90.0]]),
    ])
    soft.append(Part("slab", verts=outline, depth_mm=112.0 * s, round_mm=35.0, mu=MU_SOFT, coarse=True, tag="neck"))
    soft.append(Part("ellipsoid", ellipse=ellipse(ls([VAULT_C_MM])[0], VAULT_AB_MM[0] + 4.0, VAULT_AB_MM[1] + 4.0, skull_angle + VAULT_TILT_RAD), depth_mm=22.0, mu=MU_SOFT, coarse=True, tag="head"))
    return soft


def _shoulders(spine: list[Vertebra], spec: HeadSpec, dens: dict[str, float]) -> list[Part]:
    """Soft-tissue shoulder ellipsoids (tag "shoulder") and their bones; one per side."""
    e_c, e_tr = dens["cort"], dens["trab"]
    c2, t1 = spine[0], spine[-1]
    step = (t1.centre - c2.centre) / 6.0
    out = []
    for j, z in enumerate((-165.0, 165.0)):
        top = c2.centre + step * spec.shoulder_top[j] + np.array([spec.shoulder_dx_mm[j] - 12.0, 0.0])
        out.append(Part("ellipsoid", ellipse=ellipse(top + np.array([0.0, 95.0]), 75.0, 95.0, -0.12), depth_mm=50.0, mu=MU_SOFT, z_mm=z, coarse=True, tag="shoulder"))
        out.append(Part("bone", ellipse=ellipse(top + np.array([-8.0, 48.0]), 22.0, 23.0, 0.0), mut=e_tr * 20, rim_mut=e_c * 1.5, rim_mm=1.0, z_mm=z,
                        tex_angle_rad=0.0, tex_amp=dens["tex_amp"], tex_offset=(50.0, 50.0 + z)))
        a = top + np.array([-30.0, 14.0])
        b = top + np.array([70.0, 46.0])
        n = (b - a) / np.linalg.norm(b - a)
        nn = np.array([-n[1], n[0]]) * 6.0
        out.append(Part("bone", verts=np.vstack([a - nn, b - nn, b + nn + n * 4, a + nn]), mut=e_c * 4.0, rim_mut=e_c * 2.5, rim_mm=1.0, z_mm=z * 0.5))
    return out
