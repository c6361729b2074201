"""Landmark-aware image variants: annotation marks (burned in, or removed by inpainting) and the
C2 dentocentral synchondrosis remnant. Training-time augmentation shared by the generator and
the training loop, like :mod:`.augment`; unlike it, these need the landmarks to know where the
anatomy is.

Shapes: ``img`` (H, W) float32 in [0, 1] (bone bright) → (H, W) float32 in [0, 1];
``pts`` (K, 2) landmark pixels (x, y) in the 34-landmark schema (NaN where unknown). No pixel
moves, so labels stay valid; a corner under a mark keeps its label, since the bone is still
there and a reader infers it from the body's outline.

Why:

- **Annotation marks.** Teaching and research films are often traced: lines along the
  vertebral endplates and walls (cervical vertebral maturation staging traces the inferior
  borders of C2–C4 and the corners of C3–C4; Baccetti et al., Semin Orthod 2005), dots on
  landmarks, labels. Published copies either keep the marks (grey after conversion to
  grayscale) or have them removed by inpainting, which leaves smooth, texture-free patches with
  streaks along the fill direction (Telea, J Graphics Tools 2004; Navier–Stokes inpainting,
  Bertalmio et al., CVPR 2001). Both hide exactly the corners we look for; a network trained
  only on clean phantoms reads such a patch as a disc space.
- **Synchondrosis remnant.** The dentocentral (subdental) synchondrosis between the dens and
  the C2 body fuses in early childhood but stays visible as a sclerotic, slightly cupped
  line across the upper C2 body into adulthood in many patients (Gebauer et al., Radiology
  2006; Rao, AJR 1983 ("the os odontoideum and the subdental synchondrosis")); on a lateral
  film it looks like an endplate inside C2, and a network that never saw it splits C2 in two.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

F32 = np.float32
#: Index of the first corner (AS) of C2..T1 in the schema; corners AS, PS, PI, AI follow.
_C2 = 6
_LEVELS = 7


def _level(pts: np.ndarray, k: int) -> np.ndarray | None:
    """(4, 2) corners AS, PS, PI, AI of level k (0 = C2), or None when any is unknown."""
    q = pts[_C2 + 4 * k : _C2 + 4 * k + 4]
    return q if q.shape == (4, 2) and np.all(np.isfinite(q)) else None


def body_height_px(pts: np.ndarray) -> float | None:
    """Median anterior/posterior wall length of the known C3..T1 bodies (px), or None."""
    hs = []
    for k in range(1, _LEVELS):
        q = _level(pts, k)
        if q is not None:
            hs += [float(np.hypot(*(q[3] - q[0]))), float(np.hypot(*(q[2] - q[1])))]
    return float(np.median(hs)) if hs else None


def _extend(a: np.ndarray, b: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    d = b - a
    return a - lo * d, b + hi * d


def _stroke_mask(shape: tuple[int, int], pts: np.ndarray, rng: np.random.Generator, h_px: float, labels: int | None = None) -> np.ndarray:
    """(H, W) uint8 mask of a tracing: endplate and wall lines, landmark dots, and ``labels``
    stray strokes anywhere (None: 0–3 at random)."""
    mask = np.zeros(shape, np.uint8)
    thick = max(1, int(round(h_px * rng.uniform(0.06, 0.25))))
    levels = [k for k in range(_LEVELS) if _level(pts, k) is not None]
    if not levels:
        return mask
    # a tracing usually covers a run of levels from C2 (CVM: C2–C4), sometimes further down
    first = levels[0] if rng.random() < 0.7 else int(rng.choice(levels))
    run = [k for k in levels if first <= k < first + int(rng.integers(1, 6))]
    style = rng.random()
    for k in run:
        q = _level(pts, k)
        segs = []
        if style < 0.75 or k == 0:  # inferior border (the CVM trace), often past both corners
            segs.append(_extend(q[2], q[3], rng.uniform(0.0, 0.35), rng.uniform(0.0, 0.35)))
        if k > 0 and rng.random() < 0.5:  # superior border
            segs.append(_extend(q[1], q[0], rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.3)))
        if rng.random() < 0.3:  # anterior and posterior walls
            segs += [(q[0], q[3]), (q[1], q[2])]
        for a, b in segs:
            cv2.line(mask, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), 255, thick, cv2.LINE_AA)
        if rng.random() < 0.4:  # dots on the corners
            r = max(1, int(round(h_px * rng.uniform(0.05, 0.18))))
            for c in q:
                if rng.random() < 0.7:
                    cv2.circle(mask, tuple(int(round(v)) for v in c), r, 255, -1, cv2.LINE_AA)
    H, W = shape
    for _ in range(int(rng.integers(0, 4)) if labels is None else labels):  # labels and stray strokes
        x, y = rng.uniform(0, W), rng.uniform(0, H)
        ang, ln = rng.uniform(-0.4, 0.4), h_px * rng.uniform(0.5, 2.5)
        cv2.line(mask, (int(x), int(y)), (int(x + ln * math.cos(ang)), int(y + ln * math.sin(ang))), 255, thick, cv2.LINE_AA)
    return mask


def annotation_marks(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator, inpaint_p: float = 0.8,
                     labels: int | None = None) -> np.ndarray:
    """Trace the vertebrae as an annotator would (plus ``labels`` stray strokes; None: 0–3),
    then inpaint the tracing away (probability ``inpaint_p``) or leave it burned in as flat
    grey/white strokes. Returns ``img`` unchanged when no vertebra is known.
    (H, W) float32 [0, 1] → (H, W) float32 [0, 1]."""
    h_px = body_height_px(pts)
    if h_px is None or h_px < 4:
        return img
    mask = _stroke_mask(img.shape, pts, rng, h_px, labels)
    if not mask.any():
        return img
    src = np.ascontiguousarray(img, dtype=F32)
    if rng.random() < inpaint_p:
        radius = max(2.0, h_px * rng.uniform(0.1, 0.4))
        # fill from a smoothed copy: the fill is texture-free, as on published inpainted films
        # (filling from the raw noisy border streaks it with noise the films do not show)
        smooth = cv2.GaussianBlur(src, (0, 0), max(0.7, h_px * rng.uniform(0.02, 0.08)))
        # 16-bit: OpenCV's Telea fill is wrong on float32 input (errors > 1 on a smooth ramp)
        u16 = np.round(np.clip(smooth, 0.0, 1.0) * 65535.0).astype(np.uint16)
        method = cv2.INPAINT_TELEA if rng.random() < 0.6 else cv2.INPAINT_NS
        fill = cv2.inpaint(u16, mask, radius, method).astype(F32) / F32(65535.0)
        w = cv2.GaussianBlur((mask > 0).astype(F32), (0, 0), max(0.5, h_px * rng.uniform(0.01, 0.06)))
        w = np.maximum(w, (mask > 0).astype(F32))
        out = src * (1 - w) + fill * w
    else:
        alpha = cv2.GaussianBlur(mask.astype(F32) / 255.0, (0, 0), 0.6)
        out = src * (1 - alpha) + F32(rng.uniform(0.35, 1.0)) * alpha
    return np.clip(out, 0.0, 1.0).astype(F32)


def synchondrosis(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the dentocentral synchondrosis remnant: a thin, cupped, mostly sclerotic line across
    the upper C2 body, from just below its superior chord (AS–PS) to a third of the way down.
    (H, W) float32 [0, 1] → (H, W) float32 [0, 1]; unchanged when C2's corners are unknown."""
    q = _level(pts, 0)
    if q is None:
        return img
    h_px = 0.5 * (np.hypot(*(q[3] - q[0])) + np.hypot(*(q[2] - q[1])))
    if h_px < 6:
        return img
    f = rng.uniform(0.05, 0.35)
    a = q[0] + f * (q[3] - q[0])  # on the anterior wall
    b = q[1] + f * (q[2] - q[1])  # on the posterior wall
    down = (q[3] + q[2] - q[0] - q[1]) / 2
    down /= max(np.hypot(*down), 1e-6)
    t = np.linspace(0.03, 0.97, 24)[:, None]
    sag = rng.uniform(-0.02, 0.1) * h_px  # cupped: the middle lies lower
    line = a + t * (b - a) + down * (sag * 4 * t * (1 - t)) + rng.normal(0, 0.01 * h_px, size=(24, 2))
    layer = np.zeros(img.shape, F32)
    thick = max(1, int(round(h_px * rng.uniform(0.02, 0.07))))
    cv2.polylines(layer, [np.round(line).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, 0.02 * h_px))
    local = float(np.median(img[np.clip(np.round(line[:, 1]).astype(int), 0, img.shape[0] - 1),
                                np.clip(np.round(line[:, 0]).astype(int), 0, img.shape[1] - 1)]))
    delta = rng.uniform(0.04, 0.18) * (1.0 if rng.random() < 0.8 else -1.0) * max(local, 0.2)
    return np.clip(img + delta * layer, 0.0, 1.0).astype(F32)
