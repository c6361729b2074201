"""Sampling one phantom from (seed, index): variant, anatomy, placement and exposure.

Independent random streams (numpy PCG64 seeded from ``SeedSequence([seed, index, k])``) keep
the anatomy identical whatever size or resolution is requested.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ...core.landmarks import LANDMARK_NAMES
from .extras import FilmExtras, film_extras, patient_extras
from .head import HeadSpec, build_head
from .parts import Part, Placement, rot
from .physics import Exposure
from .spine import SpineSpec, build_chain, vertebra_parts

#: Named variants; ``variant=None`` draws one so that any len(VARIANTS) consecutive indices cover all.
VARIANTS: tuple[str, ...] = (
    "standard", "lordotic", "kyphotic", "s-shaped", "straight", "flexion",
    "extension", "high-shoulders", "cropped-fov", "low-dose", "degenerative", "rotated",
)

TEXEL_MM = 0.12
_STREAMS = {"variant": 0, "size": 1, "anatomy": 2, "place": 3, "exposure": 4, "texture": 5, "noise": 6, "process": 7, "extras": 8}


def stream(seed: int, index: int, name: str) -> np.random.Generator:
    """The named random stream of phantom (seed, index)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, _STREAMS[name]])))


def pick_variant(seed: int, index: int) -> str:
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED]))).permutation(len(VARIANTS))
    return VARIANTS[int(perm[int(index) % len(VARIANTS)])]


@dataclass(frozen=True)
class Scene:
    """Everything resolution independent about one phantom (image mm, patient plane)."""

    variant: str
    size_px: tuple[int, int]  # full (W, H)
    spacing_mm: float  # full-resolution isotropic patient-plane spacing
    fine: list[Part]
    coarse: list[Part]
    placement: Placement
    landmarks_mm: np.ndarray  # (34, 2) image mm (origin at the top-left image corner)
    exposure: Exposure
    photometric: str
    rescale: tuple[float, float]
    collimation_mm: tuple[float, float, float, float]  # left, top, right, bottom insets
    marker: tuple[str, float, float, float] | None  # letter, x_mm, y_mm, height_mm
    osteophytes_mm: np.ndarray  # (7, 2) spur lengths, C2..T1 x (superior, inferior)
    texture: np.ndarray
    style: str = "train"
    framing: str = "cspine"
    film: FilmExtras = field(default_factory=FilmExtras)
    extras: tuple[str, ...] = ()


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


STYLES: tuple[str, ...] = ("train", "heldout")
#: Subject scale, neck soft-tissue scale and prevertebral scale: training ranges and the held-out
#: family (large patients, outside every training range).
_BODY = {"train": ((0.9, 1.1), (0.85, 1.2), (0.8, 1.3)), "heldout": ((1.12, 1.2), (1.25, 1.45), (1.35, 1.6))}
#: Random attenuation per tissue class (SynthSeg-like): bone, soft tissue, air cavities.
TISSUE_RANGES = {"bone": (0.75, 1.3), "soft": (0.8, 1.25), "air": (0.6, 1.3)}


def _spine_spec(rng: np.random.Generator, variant: str, style: str = "train") -> tuple[SpineSpec, dict[str, float], float]:
    from .anatomy import sample

    s = _u(rng, *_BODY[style][0])
    levels = ("C3", "C4", "C5", "C6", "C7", "T1")
    depth = np.array([sample(rng, "C2_body_depth_mm", s)] + [sample(rng, f"{v}_depth_mm", s) for v in levels])
    ha = np.array([sample(rng, "C2_body_h_ant_mm", s)] + [sample(rng, f"{v}_h_ant_mm", s) for v in levels])
    hp = np.array([sample(rng, "C2_body_h_post_mm", s)] + [sample(rng, f"{v}_h_post_mm", s) for v in levels])
    disc = np.asarray(sample(rng, "disc_chord_mm", s, 6))
    disc[-1] *= 0.9  # C7-T1 is the thinnest
    dens_len = sample(rng, "dens_h_mm", s)
    total = sample(rng, "C2_total_h_mm", s)
    dens_base = float(np.clip(total - 0.5 * (ha[0] + hp[0]) - dens_len, 0.5, 7.0))
    osteo = np.zeros((7, 2))
    scl = np.zeros(7)
    old = variant == "degenerative" or (variant == "standard" and rng.random() < 0.2)
    if old:
        for j in rng.choice(6, size=int(rng.integers(1, 4)), replace=False, p=np.array([1, 1, 2, 4, 4, 2]) / 14):
            disc[j] *= _u(rng, 0.3, 0.6)
            osteo[j, 1] = _u(rng, 1.0, 4.0)
            osteo[j + 1, 0] = _u(rng, 1.0, 3.5)
            scl[j] = _u(rng, 0.3, 1.5)
            scl[j + 1] = _u(rng, 0.3, 1.5)
    cobb = {"lordotic": (25.0, 50.0), "kyphotic": (-30.0, -5.0), "straight": (-4.0, 4.0), "flexion": (-20.0, 5.0),
            "extension": (25.0, 45.0)}.get(variant)
    if variant == "s-shaped":
        seg_deg = np.concatenate([-rng.uniform(5, 13, 2), rng.uniform(3, 9, 3)])
        if rng.random() < 0.5:
            seg_deg = -seg_deg[::-1]
    else:
        target = _u(rng, *cobb) if cobb else float(np.clip(rng.normal(15.0, 11.0), -15.0, 45.0))
        seg_deg = -target * rng.dirichlet(np.full(5, 2.0))
    seg = np.deg2rad(np.append(seg_deg, _u(rng, -3.0, 8.0)))
    cap = (disc - 0.8) / (0.5 * depth[:6])
    seg = np.clip(seg, -cap, cap)
    spin = np.array([sample(rng, f"{v}_spinous_mm", s) for v in ("C2", *levels)])
    spin[5] = max(spin[5], 1.05 * float(np.max(np.delete(spin, 5))))  # C7 (vertebra prominens) the longest
    spec = SpineSpec(
        depth_mm=depth, h_ant_mm=ha, h_post_mm=hp, disc_mm=disc, seg_rad=seg, theta_t1_rad=np.deg2rad(_u(rng, 15.0, 35.0)),
        concave_sup_mm=np.asarray(sample(rng, "endplate_concavity_sup_mm", 1.0, 7)), concave_inf_mm=np.asarray(sample(rng, "endplate_concavity_inf_mm", 1.0, 7)),
        concave_wall_mm=rng.uniform(0.2, 0.8, 7),
        dens_len_mm=dens_len, dens_width_mm=sample(rng, "dens_w_mm", s), dens_tilt_rad=_u(rng, 0.0, 0.25),
        spinous_mm=spin,
        spinous_angle_rad=np.array([0.35, 0.45, 0.45, 0.4, 0.35, 0.3, 0.35]) + rng.normal(0, 0.08, 7),
        osteophyte_mm=osteo, sclerosis=scl, dens_base_mm=dens_base, pillar_overlap_mm=_u(rng, -3.0, 1.0))
    dens = {"trab": _u(rng, 0.015, 0.025), "cort": _u(rng, 0.055, 0.08), "tex_amp": _u(rng, 0.18, 0.32)}
    return spec, dens, s


def _head_spec(rng: np.random.Generator, variant: str, theta_c2: float, style: str = "train") -> HeadSpec:
    from .anatomy import sample

    gaze = {"flexion": _u(rng, 12.0, 28.0), "extension": -_u(rng, 12.0, 28.0)}.get(variant, float(rng.normal(0.0, 7.0)))
    total = np.deg2rad(gaze) - theta_c2
    f = _u(rng, 0.3, 0.7)
    a12 = float(np.clip(f * total, -np.deg2rad(30), np.deg2rad(30)))
    a01 = float(np.clip(total - a12, -np.deg2rad(25), np.deg2rad(25)))
    if variant == "high-shoulders":
        tops = (_u(rng, 2.3, 4.2), _u(rng, 2.3, 4.2))
    else:
        tops = (_u(rng, 3.5, 7.0), _u(rng, 3.5, 7.0))
    return HeadSpec(
        alpha12_rad=a12, alpha01_rad=a01, adi_mm=sample(rng, "adi_mm"), pns_mm=(30.0 + _u(rng, -4, 5), -7.0 + _u(rng, -5, 5)),
        occ_centre_mm=(-42.0 + _u(rng, -5, 5), -50.0 + _u(rng, -6, 6)), occ_axes_mm=(40.0 + _u(rng, -4, 4), 42.0 + _u(rng, -4, 4)),
        occ_tilt_rad=_u(rng, -0.2, 0.2), neck_scale=_u(rng, *_BODY[style][1]), prevert_scale=_u(rng, *_BODY[style][2]), airway_scale=_u(rng, 0.7, 1.3),
        shoulder_top=tops, shoulder_dx_mm=(_u(rng, -15, 15), _u(rng, -15, 15)), earrings=bool(rng.random() < 0.15),
        mandible_open_rad=_u(rng, -0.03, 0.08))


def _texture(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    """Periodic (n, n) trabecular tile at TEXEL_MM per texel, zero mean, unit SD: a network of thin
    bright struts (the zero crossings of band-passed noise, so the struts connect) — vertical rods
    (along the body's cranio-caudal axis) 0.6–1 mm apart, fainter horizontal plates, fine grain."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]

    def band(white: np.ndarray, sx: float, sy: float) -> np.ndarray:
        # anisotropic Gaussian band-pass (difference of Gaussians) by FFT: periodic, so the tile wraps
        f2 = (fx * sx) ** 2 + (fy * sy) ** 2
        spec = np.fft.rfft2(white) * (np.exp(-2.0 * np.pi**2 * f2) - np.exp(-2.0 * np.pi**2 * f2 * 4.0))
        out = np.fft.irfft2(spec, s=(n, n))
        return out / out.std()

    white = rng.standard_normal((n, n))
    w2 = rng.standard_normal((n, n))
    rods = np.exp(-(band(white, 3.0, 6.0) / 0.4) ** 2)  # struts where the band-passed field crosses zero
    plates = np.exp(-(band(w2, 6.0, 3.0) / 0.35) ** 2)
    grain = band(rng.standard_normal((n, n)), 0.8, 0.8)
    t = rods + 0.55 * plates + 0.15 * grain
    return ((t - t.mean()) / t.std()).astype(np.float32)


def _tissue_scaled(parts: list[Part], f: dict[str, float]) -> list[Part]:
    """Per-tissue attenuation: bone (mut, rim) x f["bone"], soft tissue x f["soft"], air x f["air"];
    metal (mut >= 1 per mm, earrings) unchanged."""
    out = []
    for p in parts:
        if p.kind == "bone":
            if abs(p.mut) >= 1.0:
                out.append(p)
            else:
                out.append(replace(p, mut=p.mut * f["bone"], rim_mut=p.rim_mut * f["bone"]))
        else:
            out.append(replace(p, mu=p.mu * (f["soft"] if p.mu > 0 else f["air"])))
    return out


def _frame_refs(spine: list, head_refs: dict[str, np.ndarray], lm: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    def mid(v, a: int, b: int) -> np.ndarray:
        return 0.5 * (v.corners[a] + v.corners[b])

    c3, c5, c6, c7, t1 = spine[1], spine[3], spine[4], spine[5], spine[6]
    return {**head_refs, "C1": lm["C1_ANT"], "PNS": lm["MCG_PNS"], "C1_POST": lm["C1_POST"], "C3c": c3.centre, "C3i": mid(c3, 2, 3),
            "C5c": c5.centre, "C5i": mid(c5, 2, 3), "C6c": c6.centre, "T1i": mid(t1, 2, 3), "T2": t1.centre + (t1.centre - c7.centre),
            "spine_ant": spine[2].corners[0] + 10.0 * (spine[2].corners[0] - spine[2].corners[1]) / np.linalg.norm(spine[2].corners[0] - spine[2].corners[1]),
            "spine_post": spine[2].centre - 55.0 * (spine[2].corners[0] - spine[2].corners[1]) / np.linalg.norm(spine[2].corners[0] - spine[2].corners[1])}


def build_scene(seed: int, index: int, size: tuple[int, int] | None, variant: str | None, style: str = "train",
                fov: str = "any") -> Scene:
    """Sample the phantom; ``size`` is the full (W, H) in px (None: drawn from the seed);
    ``style`` "train" or "heldout" (anatomy and processing outside the training ranges);
    ``fov`` "any" or "full" (:data:`framing.FOVS`: "full" always frames the whole C-spine)."""
    from .framing import plan_frame

    if style not in STYLES:
        raise ValueError(f"unknown phantom style {style!r}, expected one of {', '.join(STYLES)}")
    if variant is None:
        variant = pick_variant(seed, index)
    elif variant not in VARIANTS:
        raise ValueError(f"unknown phantom variant {variant!r}, expected one of {', '.join(VARIANTS)}")
    ra = stream(seed, index, "anatomy")
    spec, dens, _ = _spine_spec(ra, variant, style)
    # orient the column: the C7->C2 centre line leans forward by a few degrees
    trial = build_chain(spec)
    axis = trial[0].centre - trial[5].centre
    lean = np.deg2rad(float(np.clip(ra.normal(4.0, 6.0), -12.0, 20.0)))
    spec = replace(spec, theta_t1_rad=spec.theta_t1_rad + lean - float(np.arctan2(axis[0], -axis[1])))
    spine = build_chain(spec)
    hs = _head_spec(ra, variant, spine[0].theta_rad, style)
    parts: list[Part] = []
    for k, v in enumerate(spine):
        parts.extend(vertebra_parts(v, k, spec, dens, ra))
    head = build_head(spine, hs, dens, spec.dens_width_mm)
    parts.extend(head.parts)
    canon = {**head.landmarks, "DENS_TIP": spine[0].dens_tip, "DENS_PS": spine[0].dens_ps}
    for v in spine:
        for c, p in zip(("AS", "PS", "PI", "AI"), v.corners):
            canon[f"{v.name}_{c}"] = p
    lm_canon = np.array([canon[n] for n in LANDMARK_NAMES], dtype=np.float64)
    tissue = {k: _u(ra, *r) for k, r in TISSUE_RANGES.items()}

    rp = stream(seed, index, "place")
    mag = _u(rp, 1.05, 1.2)
    sid = _u(rp, 1500.0, 1800.0)
    rho = np.deg2rad(rp.choice([-1.0, 1.0]) * _u(rp, 8.0, 15.0) if variant == "rotated" else float(np.clip(rp.normal(0.0, 4.0), -15, 15)))
    mirrored = bool(rp.random() < 0.5)
    lin = rot(rho) @ np.diag([-1.0 if mirrored else 1.0, 1.0])
    frame = plan_frame(rp, _frame_refs(spine, head.refs, head.landmarks), lin, cropped=variant == "cropped-fov", fov=fov)
    if size is None:
        rs = stream(seed, index, "size")
        long_side = int(rs.integers(1500, 3001))
        asp = float(np.clip(frame.aspect, 0.55, 1.8))
        size = (long_side, max(int(round(long_side / asp)), 600)) if asp > 1.0 else (max(int(round(long_side * asp)), 600), long_side)
    w, h = int(size[0]), int(size[1])
    spacing = float(np.clip(max((frame.bottom - frame.top) / h, (frame.right - frame.left) / w), 0.06, 0.30))
    img_w_mm, img_h_mm = w * spacing, h * spacing
    qc = np.array([0.5 * (frame.left + frame.right), 0.5 * (frame.top + frame.bottom)])
    aim = np.linalg.solve(lin, qc)
    centre_img = np.array([0.5 * img_w_mm, 0.5 * img_h_mm])
    place = Placement(linear=lin, pivot=aim, centre_img=centre_img, ray_img=centre_img + rp.uniform(-20, 20, 2), sod_mm=sid / mag, mirrored=mirrored)
    insets = tuple(float(_u(rp, 3.0, 40.0) if rp.random() < 0.3 else 0.0) for _ in range(4))
    marker = None
    if rp.random() < 0.7:
        letter = "R" if rp.random() < 0.5 else "L"
        hm = _u(rp, 8.0, 14.0)
        mx = _u(rp, 0.06, 0.22) * img_w_mm if rp.random() < 0.5 else _u(rp, 0.78, 0.94) * img_w_mm
        my = _u(rp, 0.05, 0.15) * img_h_mm if rp.random() < 0.6 else _u(rp, 0.85, 0.95) * img_h_mm
        marker = (letter, mx, my, hm)

    re = stream(seed, index, "exposure")
    low = variant == "low-dose"
    fluence = float(np.exp(re.uniform(np.log(3e4), np.log(9e4)))) if low else float(np.exp(re.uniform(np.log(2e5), np.log(8e5))))
    focal = _u(re, 0.6, 1.2) * (mag - 1.0) / 2.355
    det = _u(re, 0.06, 0.12)
    exposure = Exposure(
        fluence_per_mm2=fluence, magnification=mag, scatter_fraction=_u(re, 0.3, 1.2), scatter_sigma_mm=_u(re, 25.0, 60.0),
        blur_sigma_mm=float(np.hypot(det, focal) / mag), heel=(float(re.normal(0, 0.03)), float(re.normal(0, 0.03))),
        gain_ripple=_u(re, 0.0, 0.01), gain_phase=(_u(re, 0, 6.28), _u(re, 0, 6.28)), electronic_noise=_u(re, 2.0, 8.0),
        eq_strength=_u(re, 0.3, 0.75), eq_sigma_mm=_u(re, 8.0, 25.0), sharpen=_u(re, 0.0, 0.7),
        film_width=_u(re, 1.5, 4.0) if re.random() < 0.5 else 50.0, bits_stored=int(re.choice([12, 12, 14, 15, 16])))
    photometric = "MONOCHROME1" if re.random() < 0.3 else "MONOCHROME2"
    rescale = [(1.0, 0.0), (1.0, 0.0), (0.5, 0.0), (2.0, -1024.0)][int(re.integers(0, 4))]

    rx = stream(seed, index, "extras")
    extra_parts, extra_names = patient_extras(rx, spine, head, frame.name, dens)
    film = film_extras(rx, img_w_mm, img_h_mm)
    names = extra_names + (("text",) if film.text else ()) + (("ruler",) if film.ruler else ()) + (("marker",) if marker else ())
    every = _tissue_scaled(parts + extra_parts + head.soft + head.shoulders, tissue)
    fine = [p for p in every if not p.coarse]
    coarse = [p for p in every if p.coarse]
    return Scene(variant=variant, size_px=(w, h), spacing_mm=spacing, fine=fine, coarse=coarse, placement=place,
                 landmarks_mm=place.points(lm_canon), exposure=exposure, photometric=photometric, rescale=rescale,
                 collimation_mm=insets, marker=marker, osteophytes_mm=spec.osteophyte_mm.copy(),
                 texture=_texture(stream(seed, index, "texture")), style=style, framing=frame.name, film=film, extras=names)


def shoulder_chord_mm(scene: Scene, pts_mm: np.ndarray) -> np.ndarray:
    """Total soft-tissue path (mm) through the shoulders at image points (N, 2) mm."""
    from .parts import to_primitive

    total = np.zeros(len(pts_mm))
    for p in scene.coarse:
        if p.tag != "shoulder":
            continue
        e = to_primitive(p, scene.placement, None, TEXEL_MM)
        m = np.array([[e.axis_u[0], e.axis_v[0]], [e.axis_u[1], e.axis_v[1]]])
        ab = np.linalg.solve(m, (np.asarray(pts_mm) - e.centre).T)
        r2 = (ab**2).sum(axis=0)
        total += 2.0 * e.depth_mm * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    return total


__all__ = ["STYLES", "TISSUE_RANGES", "VARIANTS", "Scene", "build_scene", "pick_variant", "shoulder_chord_mm", "stream"]
