"""What real films carry besides anatomy: hardware, jewellery, dental work, ECG leads, collars,
cephalostat ear rods (patient-frame :class:`Part` objects) and film-frame objects (burned-in text,
rulers, ID blockers).

Probabilities per image (training style; every draw from the "extras" stream, so the anatomy is
the same with or without them): dental fillings/crowns 30 % (60 % in cephalogram framings),
necklace 8 %, ECG electrodes and leads 10 %, cervical collar 3 %, anterior plate with screws over
two or three levels 4 %, cephalostat ear rods 75 % of cephalograms (3 % otherwise); burned-in text
60 %, ruler 15 %, ID blocker 15 %. Metal has mu·t >= 1 and is never rescaled by the per-tissue
attenuation. The landmarks never move: a plated vertebra keeps its labelled corners.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .parts import Part, ellipse, rot
from .primitives import Grid

P_DENTAL, P_DENTAL_CEPH, P_NECKLACE, P_ECG, P_COLLAR, P_PLATE = 0.30, 0.60, 0.08, 0.10, 0.03, 0.04
P_EAR_RODS_CEPH, P_EAR_RODS = 0.75, 0.03
P_TEXT, P_RULER, P_BLOCKER = 0.60, 0.15, 0.15


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _ring(c: np.ndarray, r: float, w: float, mut: float, z: float, ang: float = 0.0, ecc: float = 1.0) -> list[Part]:
    return [Part("bone", ellipse=ellipse(c, r, r * ecc, ang), mut=mut, z_mm=z),
            Part("bone", ellipse=ellipse(c, r - w, (r - w) * ecc, ang), mut=-mut, z_mm=z)]


def _strip(pts: np.ndarray, width: float, mut: float, z: float, seg: int = 4) -> list[Part]:
    """A thin wire along the polyline ``pts`` (N, 2), cut into short quadrilaterals."""
    out = []
    for i in range(0, len(pts) - 1, seg):
        q = pts[i:i + seg + 1]
        if len(q) < 2:
            break
        d = np.gradient(q, axis=0)
        n = np.stack([-d[:, 1], d[:, 0]], axis=1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
        out.append(Part("bone", verts=np.vstack([q + 0.5 * width * n, (q - 0.5 * width * n)[::-1]]), mut=mut, z_mm=z))
    return out


def _dental(rng: np.random.Generator, teeth: list, parts: list[Part]) -> None:
    for j in rng.choice(len(teeth), size=min(int(rng.integers(1, 7)), len(teeth)), replace=False):
        c, ang, z, upper = teeth[int(j)]
        occl = rot(ang) @ np.array([0.0, 1.0 if upper else -1.0])  # towards the biting surface
        if rng.random() < 0.6:  # amalgam filling in the crown
            parts.append(Part("bone", ellipse=ellipse(c + occl * _u(rng, 2.5, 4.0), _u(rng, 1.0, 2.0), _u(rng, 0.9, 2.0), ang), mut=_u(rng, 2.5, 5.0), z_mm=z))
        else:  # metal crown capping the tooth
            parts.append(Part("bone", ellipse=ellipse(c + occl * 2.5, 3.0, 4.2, ang), mut=_u(rng, 1.8, 3.5), z_mm=z))


def _necklace(rng: np.random.Generator, spine: list, parts: list[Part]) -> None:
    c5, t1 = spine[3], spine[6]
    f5, f1, d1 = rot(c5.theta_rad) @ np.array([1.0, 0.0]), rot(t1.theta_rad) @ np.array([1.0, 0.0]), rot(t1.theta_rad) @ np.array([0.0, 1.0])
    back = c5.centre - f5 * _u(rng, 55.0, 75.0) + d1 * _u(rng, -10.0, 10.0)
    front = t1.corners[0] + f1 * _u(rng, 35.0, 60.0) + d1 * _u(rng, 0.0, 30.0)
    metal = rng.random() < 0.6
    r_bead, gap = _u(rng, 0.6, 1.8), _u(rng, 1.5, 4.0)
    mut = _u(rng, 1.5, 3.5) if metal else _u(rng, 0.4, 0.9)
    for z in (-45.0, 45.0):
        ctrl = 0.5 * (back + front) + d1 * _u(rng, 5.0, 25.0)
        t = np.linspace(0.0, 1.0, 400)[:, None]
        curve = (1 - t) ** 2 * back + 2 * (1 - t) * t * ctrl + t**2 * front
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
        for s in np.arange(0.0, arc[-1], 2 * r_bead + gap):
            parts.append(Part("bone", ellipse=ellipse(curve[int(np.searchsorted(arc, s)) - 1 if s > 0 else 0], r_bead, r_bead), mut=mut, z_mm=z))
    if rng.random() < 0.5:  # pendant
        parts.append(Part("bone", ellipse=ellipse(front + d1 * 6.0, _u(rng, 3.0, 7.0), _u(rng, 4.0, 9.0), _u(rng, -0.5, 0.5)), mut=_u(rng, 1.2, 3.0)))


def _ecg(rng: np.random.Generator, spine: list, parts: list[Part]) -> None:
    t1 = spine[6]
    fwd, down = rot(t1.theta_rad) @ np.array([1.0, 0.0]), rot(t1.theta_rad) @ np.array([0.0, 1.0])
    for _ in range(int(rng.integers(1, 4))):
        c = t1.centre + fwd * _u(rng, -40.0, 90.0) + down * _u(rng, 5.0, 70.0)
        z = _u(rng, -120.0, 120.0)
        parts.append(Part("bone", ellipse=ellipse(c, _u(rng, 12.0, 18.0), _u(rng, 12.0, 18.0)), mut=_u(rng, 0.08, 0.2), z_mm=z))  # foam pad
        parts.extend(_ring(c, 2.2, 0.9, _u(rng, 2.0, 3.5), z))  # snap
        heading = _u(rng, 0.0, 2 * np.pi)
        pts, p = [c], c.copy()
        for _k in range(int(rng.integers(40, 90))):
            heading += float(rng.normal(0.0, 0.12))
            p = p + 4.0 * np.array([np.cos(heading), np.sin(heading)])
            pts.append(p)
        parts.extend(_strip(np.array(pts), _u(rng, 1.0, 1.8), _u(rng, 0.5, 1.2), z))


def _collar(rng: np.random.Generator, spine: list, head_refs: dict, parts: list[Part]) -> None:
    front_in, front_out, back_in, back_out = [], [], [], []
    g_f, g_b, th = _u(rng, 45.0, 60.0), _u(rng, 70.0, 85.0), _u(rng, 6.0, 10.0)
    for k, v in enumerate(spine):
        fwd = rot(v.theta_rad) @ np.array([1.0, 0.0])
        a, p = 0.5 * (v.corners[0] + v.corners[3]), 0.5 * (v.corners[1] + v.corners[2])
        front_in.append(a + fwd * (g_f + 2.0 * k))
        front_out.append(a + fwd * (g_f + 2.0 * k + th))
        back_in.append(p - fwd * (g_b + 3.0 * k))
        back_out.append(p - fwd * (g_b + 3.0 * k + th))
    chin = head_refs["chin"]
    front = np.vstack([[chin + np.array([-10.0, 8.0])], front_in, front_out[::-1], [chin + np.array([5.0, 4.0])]])
    back = np.vstack([back_in, back_out[::-1]])
    mut = _u(rng, 0.15, 0.35)
    for poly in (front, back):
        parts.append(Part("bone", verts=poly, mut=mut, rim_mut=mut * 1.5, rim_mm=1.2))
    for _ in range(int(rng.integers(2, 6))):  # rivets
        src = front_out if rng.random() < 0.5 else back_out
        parts.append(Part("bone", ellipse=ellipse(src[int(rng.integers(0, len(src)))], 2.0, 2.0), mut=_u(rng, 1.5, 3.0), z_mm=_u(rng, -60, 60)))


def _plate(rng: np.random.Generator, spine: list, dens: dict[str, float], parts: list[Part]) -> None:
    n = int(rng.integers(2, 4))
    k0 = int(rng.integers(1, 7 - n))
    top, bot = spine[k0], spine[k0 + n]
    gap, thick = _u(rng, 0.8, 2.0), _u(rng, 1.8, 2.6)

    def wall(v, f: float) -> np.ndarray:  # point on the anterior wall, f = 0 superior .. 1 inferior
        return v.corners[0] + f * (v.corners[3] - v.corners[0])

    ft, fb = rot(top.theta_rad) @ np.array([1.0, 0.0]), rot(bot.theta_rad) @ np.array([1.0, 0.0])
    a, b = wall(top, _u(rng, 0.15, 0.35)), wall(bot, _u(rng, 0.65, 0.85))
    parts.append(Part("bone", verts=np.vstack([a + ft * gap, b + fb * gap, b + fb * (gap + thick), a + ft * (gap + thick)]), mut=_u(rng, 1.6, 2.6)))
    levels = [k0, k0 + n] + ([k0 + 1] if n == 2 and rng.random() < 0.5 else [])
    for k in levels:
        v = spine[k]
        fwd = rot(v.theta_rad) @ np.array([1.0, 0.0])
        head = 0.5 * (v.corners[0] + v.corners[3]) + fwd * (gap + thick)
        for z in (-6.0, 6.0):
            d = rot(v.theta_rad + np.deg2rad(_u(rng, -12.0, 12.0))) @ np.array([-1.0, 0.0])
            nrm = np.array([-d[1], d[0]])
            length = min(_u(rng, 12.0, 15.0), 0.85 * v.depth_mm + gap + thick)
            tip = head + d * length
            parts.append(Part("bone", verts=np.vstack([head + nrm * 2.0, tip + nrm * 1.2, tip - nrm * 1.2, head - nrm * 2.0]), mut=_u(rng, 0.9, 1.4), z_mm=z))
    for k in range(k0, k0 + n):  # interbody grafts/cages, inset 2 mm from the corners
        up, lo = spine[k], spine[k + 1]
        pts = [up.corners[3], up.corners[2], lo.corners[1], lo.corners[0]]
        ctr = np.mean(pts, axis=0)
        poly = np.array([p + 2.0 * (ctr - p) / max(np.linalg.norm(ctr - p), 1e-6) for p in pts])
        if rng.random() < 0.7:
            parts.append(Part("bone", verts=poly, mut=dens["trab"] * 15.0 * _u(rng, 0.6, 1.2), rim_mut=dens["cort"] * 1.0, rim_mm=0.5))


def patient_extras(rng: np.random.Generator, spine: list, head, framing: str, dens: dict[str, float]) -> tuple[list[Part], tuple[str, ...]]:
    """Patient-frame extras (canonical mm) and the names of those drawn."""
    parts: list[Part] = []
    names: list[str] = []
    if head.teeth and rng.random() < (P_DENTAL_CEPH if framing == "ceph" else P_DENTAL):
        _dental(rng, head.teeth, parts)
        names.append("dental")
    if rng.random() < P_NECKLACE:
        _necklace(rng, spine, parts)
        names.append("necklace")
    if rng.random() < P_ECG:
        _ecg(rng, spine, parts)
        names.append("ecg")
    if rng.random() < P_COLLAR:
        _collar(rng, spine, head.refs, parts)
        names.append("collar")
    if rng.random() < P_PLATE:
        _plate(rng, spine, dens, parts)
        names.append("plate")
    if rng.random() < (P_EAR_RODS_CEPH if framing == "ceph" else P_EAR_RODS):
        c = head.refs["ear_canal"] + rng.uniform(-4.0, 4.0, 2)
        r = _u(rng, 7.0, 10.0)
        for z in (-80.0, 80.0):
            parts.extend(_ring(c, r, _u(rng, 0.8, 1.5), _u(rng, 1.2, 2.2), z, ecc=_u(rng, 0.85, 1.0)))
            parts.append(Part("bone", verts=np.array([c + [-4.0, -r - 100.0], c + [4.0, -r - 100.0], c + [4.0, -r], c + [-4.0, -r]]), mut=_u(rng, 0.15, 0.3), z_mm=z))
        names.append("ear-rods")
    return parts, tuple(names)


@dataclass(frozen=True)
class FilmExtras:
    """Film-frame objects in image mm: text lines (string, x, y baseline, height), a ruler
    (x, y, length, vertical), unexposed ID blockers (x, y, w, h)."""

    text: tuple[tuple[str, float, float, float], ...] = ()
    ruler: tuple[float, float, float, bool] | None = None
    blockers: tuple[tuple[float, float, float, float], ...] = field(default_factory=tuple)


def _text_lines(rng: np.random.Generator) -> list[str]:
    d = rng.integers(0, 10, 12)
    pool = [f"ID {''.join(map(str, d[:8]))}", f"20{d[0]}{d[1]}-{1 + d[2] % 9:02d}-{10 + d[3] % 18:02d} {10 + d[4]:02d}:{d[5]}{d[6]}",
            "C-SPINE LAT", "LATERAL", f"kV {60 + 2 * d[7]} mAs {4 + d[8]}", "PHANTOM^CERVISAG", "STANDING", f"S {100 + 40 * d[9]}",
            f"DAP {d[10]}.{d[11]} uGym2", "CR", "DX"]
    return [pool[int(i)] for i in rng.choice(len(pool), size=int(rng.integers(1, 6)), replace=False)]


def film_extras(rng: np.random.Generator, w_mm: float, h_mm: float) -> FilmExtras:
    text: list[tuple[str, float, float, float]] = []
    if rng.random() < P_TEXT:
        hmm = _u(rng, 2.5, 5.5) * max(w_mm, h_mm) / 250.0
        for corner in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
            lines = _text_lines(rng)
            x0 = 0.03 * w_mm if corner % 2 == 0 else 0.62 * w_mm
            y0 = 0.04 * h_mm + hmm if corner < 2 else h_mm * 0.96 - len(lines) * 1.5 * hmm
            text += [(s, x0, y0 + 1.5 * hmm * i, hmm) for i, s in enumerate(lines)]
    ruler = None
    if rng.random() < P_RULER:
        vertical = rng.random() < 0.6
        length = _u(rng, 80.0, 200.0)
        if vertical:
            ruler = (_u(rng, 0.03, 0.97) * w_mm, _u(rng, 0.0, max(h_mm - length, 1.0)), length, True)
        else:
            ruler = (_u(rng, 0.0, max(w_mm - length, 1.0)), _u(rng, 0.03, 0.97) * h_mm, length, False)
    blockers = []
    if rng.random() < P_BLOCKER:
        bw, bh = _u(rng, 0.08, 0.2) * w_mm, _u(rng, 0.03, 0.08) * h_mm
        blockers.append((_u(rng, 0.0, w_mm - bw), h_mm - bh if rng.random() < 0.7 else 0.0, bw, bh))
    return FilmExtras(tuple(text), ruler, tuple(blockers))


def film_mut(fe: FilmExtras, grid: Grid) -> np.ndarray | None:
    """mu·t (H, W) of the ruler (plastic strip, metal ticks every 1/5/10 mm) and ID blockers."""
    if fe.ruler is None and not fe.blockers:
        return None
    h, w = grid.shape
    sr, sc = grid.spacing_mm
    out = np.zeros((h, w), dtype=np.float32)
    for x, y, bw, bh in fe.blockers:
        cv2.rectangle(out, (int(x / sc), int(y / sr)), (int((x + bw) / sc), int((y + bh) / sr)), 7.0, thickness=-1)
    if fe.ruler is not None:
        x, y, length, vertical = fe.ruler
        width = 12.0
        if vertical:
            cv2.rectangle(out, (int((x - width / 2) / sc), int(y / sr)), (int((x + width / 2) / sc), int((y + length) / sr)), 0.25, thickness=-1)
        else:
            cv2.rectangle(out, (int(x / sc), int((y - width / 2) / sr)), (int((x + length) / sc), int((y + width / 2) / sr)), 0.25, thickness=-1)
        ticks = np.zeros_like(out)
        for mm in range(int(length) + 1):
            tl = 5.0 if mm % 10 == 0 else (3.5 if mm % 5 == 0 else 2.0)
            if vertical:
                p0, p1 = (x - width / 2, y + mm), (x - width / 2 + tl, y + mm)
            else:
                p0, p1 = (x + mm, y - width / 2), (x + mm, y - width / 2 + tl)
            cv2.line(ticks, (int(round(p0[0] / sc)), int(round(p0[1] / sr))), (int(round(p1[0] / sc)), int(round(p1[1] / sr))), 2.0, 1, cv2.LINE_AA)
        out += ticks
    return out


def burn_text(resp: np.ndarray, fe: FilmExtras, grid: Grid) -> np.ndarray:
    """Burn the text into the processed image at a value brighter than any anatomy."""
    if not fe.text:
        return resp
    h, w = grid.shape
    sr, sc = grid.spacing_mm
    mask = np.zeros((h, w), dtype=np.uint8)
    for s, x, y, hmm in fe.text:
        scale = (hmm / sr) / 22.0
        if scale < 0.12:
            continue
        cv2.putText(mask, s, (int(x / sc), int(y / sr)), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(round(scale * 2))), cv2.LINE_AA)
    if not mask.any():
        return resp
    top = np.float32(np.percentile(resp[::4, ::4], 99.9) + 0.3)
    a = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    return resp * (np.float32(1.0) - a) + top * a


__all__ = ["FilmExtras", "burn_text", "film_extras", "film_mut", "patient_extras"]
