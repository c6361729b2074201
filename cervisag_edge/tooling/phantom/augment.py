"""Clinical-processing and photometric augmentation of radiographs (one module for both the
phantom generator and training).

Every operation maps an (H, W) float32 image in [0, 1] (bone bright) to a new (H, W) float32
image in [0, 1] and never moves a pixel, so landmark labels stay valid. Randomness comes only
from the ``numpy.random.Generator`` passed in, so the same seed gives the same result.

- :func:`augment_display` — the training-time chain: each operation fires with its own
  probability (scaled by ``strength``) with parameters drawn from :data:`TRAIN`.
- :func:`heldout_display` — the held-out processing, for evaluating on an unseen style.
- :func:`process_display` — only the vendor processing part (multiscale contrast, unsharp mask,
  LUT), used by the generator to give phantoms a processed look; ``ranges=HELDOUT`` gives the
  held-out processing family, whose ranges never overlap the training ones.

The multiscale enhancement follows the published description of Agfa MUSICA: Laplacian
pyramid detail coefficients d are replaced by ``g · M · sign(d) · (|d| / M)^p`` (M the level's
robust maximum, p < 1 boosts faint detail more than strong edges), after which the pyramid is
collapsed. Strong randomisation of this kind (inversion, contrast curves, blur, pooling,
dropout, noise) is what carried synthetic-to-real transfer in SyntheX (Gao et al., Nat Mach
Intell 2023) and SynthSeg (Billot et al., MedIA 2023).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class Ranges:
    """Parameter ranges (lo, hi) of one processing family."""

    musica_levels: tuple[int, int]  # inclusive
    musica_gain: tuple[float, float]
    musica_power: tuple[float, float]
    usm_amount: tuple[float, float]
    usm_sigma_frac: tuple[float, float]  # kernel sigma as a fraction of the long side
    gamma: tuple[float, float]
    sigmoid_gain: tuple[float, float]


#: Training ranges.
TRAIN = Ranges(musica_levels=(3, 6), musica_gain=(1.0, 2.2), musica_power=(0.55, 0.9), usm_amount=(0.2, 1.2),
               usm_sigma_frac=(0.004, 0.02), gamma=(0.6, 1.7), sigmoid_gain=(3.0, 9.0))
#: Held-out processing family: deeper, flatter multiscale enhancement, a wide unsharp mask and an
#: almost linear tone curve, all outside :data:`TRAIN` (the test checks the ranges are disjoint).
HELDOUT = Ranges(musica_levels=(7, 8), musica_gain=(2.3, 2.6), musica_power=(0.4, 0.5), usm_amount=(1.3, 1.6),
                 usm_sigma_frac=(0.03, 0.045), gamma=(1.8, 2.0), sigmoid_gain=(1.5, 2.5))


def _u(rng: np.random.Generator, r: tuple[float, float], strength: float = 1.0) -> float:
    """Uniform in r; ``strength`` < 1 pulls the draw towards the range's lower end."""
    return float(r[0] + (r[1] - r[0]) * rng.random() * min(max(strength, 0.0), 1.0))


def _renorm(img: np.ndarray, lo_q: float = 0.5, hi_q: float = 99.5) -> np.ndarray:
    """Stretch the robust range (percentiles on a 1/16 subsample) to [0, 1], clipped."""
    sub = img[::4, ::4]
    lo, hi = np.percentile(sub, [lo_q, hi_q])
    out = (img - F32(lo)) * F32(1.0 / max(hi - lo, 1e-6))
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def musica(img: np.ndarray, levels: int, gain: float, power: float) -> np.ndarray:
    """Multiscale contrast enhancement: power-law gain on Laplacian pyramid details."""
    cur = img.astype(np.float32, copy=True)
    pyr, shapes = [], []
    for _ in range(levels):
        if min(cur.shape) < 8:
            break
        down = cv2.pyrDown(cur)
        up = cv2.pyrUp(down, dstsize=(cur.shape[1], cur.shape[0]))
        pyr.append(cur - up)
        shapes.append(cur.shape)
        cur = down
    for i in range(len(pyr) - 1, -1, -1):
        d = pyr[i]
        m = F32(max(float(np.percentile(np.abs(d[::4, ::4]), 99.5)), 1e-5))
        a = np.abs(d) / m
        enh = np.sign(d) * m * F32(gain) * np.power(a, F32(power))
        cur = cv2.pyrUp(cur, dstsize=(shapes[i][1], shapes[i][0])) + enh
    return _renorm(cur)


def unsharp(img: np.ndarray, amount: float, sigma_px: float) -> np.ndarray:
    """Unsharp masking: img + amount · (img − Gaussian(img, sigma))."""
    blur = cv2.GaussianBlur(img, (0, 0), max(sigma_px, 0.3), borderType=cv2.BORDER_REFLECT)
    out = img + F32(amount) * (img - blur)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def gamma_curve(img: np.ndarray, gamma: float) -> np.ndarray:
    return np.power(np.clip(img, 0.0, 1.0), F32(gamma)).astype(np.float32)


def sigmoid_curve(img: np.ndarray, gain: float, centre: float) -> np.ndarray:
    """Film-like S curve, rescaled so 0 and 1 map to 0 and 1."""
    def s(x):
        return 1.0 / (1.0 + np.exp(-gain * (x - centre)))
    lo, hi = s(0.0), s(1.0)
    return ((s(img.astype(np.float32)) - F32(lo)) / F32(hi - lo)).astype(np.float32)


def random_lut(img: np.ndarray, rng: np.random.Generator, knots: int = 8) -> np.ndarray:
    """A random monotone piecewise-linear LUT (a vendor look-up table)."""
    inc = rng.gamma(2.0, 1.0, knots)
    ys = np.concatenate([[0.0], np.cumsum(inc) / inc.sum()])
    xs = np.linspace(0.0, 1.0, knots + 1)
    return np.interp(img, xs, ys).astype(np.float32)


def invert(img: np.ndarray) -> np.ndarray:
    return (F32(1.0) - img).astype(np.float32)


def exposure(img: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Over/under exposure: linear gain and offset, clipped (saturates like a bad exposure)."""
    return np.clip(img * F32(gain) + F32(offset), 0.0, 1.0).astype(np.float32)


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float, signal_dep: float) -> np.ndarray:
    """Additive Gaussian plus signal-dependent (quantum-like) noise; dark = more quanta lost."""
    sd = F32(sigma) + F32(signal_dep) * np.sqrt(np.clip(img, 0.0, 1.0))
    out = img + sd * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def low_dose(img: np.ndarray, rng: np.random.Generator, quanta: float) -> np.ndarray:
    """Poisson-like noise of a low-dose exposure with ``quanta`` counts at full brightness."""
    lam = (F32(1.05) - img) * F32(quanta)
    counts = lam + np.sqrt(np.maximum(lam, 0.0)) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(F32(1.05) - counts / F32(quanta), 0.0, 1.0).astype(np.float32)


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), max(sigma_px, 0.3), borderType=cv2.BORDER_REFLECT)


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Down-sample by ``factor`` (area) and back (linear): the look of a coarse detector."""
    h, w = img.shape
    small = cv2.resize(img, (max(int(w / factor), 2), max(int(h / factor), 2)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def dropout(img: np.ndarray, rng: np.random.Generator, boxes: int, max_frac: float) -> np.ndarray:
    """Coarse dropout: ``boxes`` rectangles (up to ``max_frac`` of each side) set to a random level."""
    out = img.copy()
    h, w = img.shape
    for _ in range(boxes):
        bh, bw = max(int(h * rng.uniform(0.02, max_frac)), 1), max(int(w * rng.uniform(0.02, max_frac)), 1)
        y, x = int(rng.integers(0, max(h - bh, 1))), int(rng.integers(0, max(w - bw, 1)))
        out[y:y + bh, x:x + bw] = F32(rng.random())
    return out


def process_display(img: np.ndarray, rng: np.random.Generator, ranges: Ranges = TRAIN, strength: float = 1.0) -> np.ndarray:
    """Vendor-like processing only: multiscale contrast, unsharp mask and one tone curve."""
    h, w = img.shape
    out = img.astype(np.float32, copy=False)
    held = ranges is HELDOUT
    if held or rng.random() < 0.7 * strength:
        lv = int(rng.integers(ranges.musica_levels[0], ranges.musica_levels[1] + 1))
        out = musica(out, lv, _u(rng, ranges.musica_gain), _u(rng, ranges.musica_power))
    if held or rng.random() < 0.5 * strength:
        out = unsharp(out, _u(rng, ranges.usm_amount, strength), _u(rng, ranges.usm_sigma_frac) * max(h, w))
    k = int(rng.integers(0, 4)) if not held else 1
    if k == 0 and rng.random() < strength:
        g = _u(rng, ranges.gamma)
        out = gamma_curve(out, g if rng.random() < 0.5 or held else 1.0 / g)
    elif k == 1:
        out = sigmoid_curve(out, _u(rng, ranges.sigmoid_gain), 0.5 + (0.0 if held else float(rng.uniform(-0.15, 0.15))))
    elif k == 2 and rng.random() < strength:
        out = random_lut(out, rng)
    return out.astype(np.float32, copy=False)


def augment_display(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Training-time augmentation of a display image (H, W) float32 in [0, 1], bone bright.

    Pure (the input is not changed), same shape, float32 in [0, 1], geometry unchanged.
    ``strength`` 0 returns a copy; 1 is the full SyntheX-like randomisation. Only the
    :data:`TRAIN` ranges are sampled, never :data:`HELDOUT`."""
    if img.ndim != 2:
        raise ValueError(f"augment_display: image shape {img.shape} invalid, expected (H, W)")
    out = np.clip(img.astype(np.float32), 0.0, 1.0)
    if strength <= 0:
        return out
    st = float(min(strength, 1.0))
    h, w = out.shape
    out = process_display(out, rng, TRAIN, st)
    if rng.random() < 0.3 * st:
        out = exposure(out, float(rng.uniform(0.6, 1.6)), float(rng.uniform(-0.25, 0.25)) * st)
    if rng.random() < 0.15 * st:
        out = low_dose(out, rng, float(np.exp(rng.uniform(np.log(30.0), np.log(400.0)))))
    elif rng.random() < 0.4 * st:
        out = noise(out, rng, float(rng.uniform(0.0, 0.03)) * st, float(rng.uniform(0.0, 0.04)) * st)
    if rng.random() < 0.25 * st:
        out = blur(out, float(rng.uniform(0.4, 1.6)) * max(h, w) / 448.0)
    if rng.random() < 0.2 * st:
        out = down_up(out, float(rng.uniform(2.0, 4.0)))
    if rng.random() < 0.2 * st:
        out = dropout(out, rng, int(rng.integers(1, 6)), 0.12)
    if rng.random() < 0.05 * st:
        out = invert(out)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def heldout_display(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The held-out processing family (:data:`HELDOUT`) applied to a display image, for evaluation
    only: training (:func:`augment_display`) never samples these ranges."""
    if img.ndim != 2:
        raise ValueError(f"heldout_display: image shape {img.shape} invalid, expected (H, W)")
    return process_display(np.clip(img.astype(np.float32), 0.0, 1.0), rng, HELDOUT)


#: Every operation with a typical argument set, for tests and docs: name -> f(img, rng).
OPS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "musica": lambda im, r: musica(im, 5, 1.8, 0.6),
    "unsharp": lambda im, r: unsharp(im, 1.0, 4.0),
    "gamma": lambda im, r: gamma_curve(im, 1.6),
    "sigmoid": lambda im, r: sigmoid_curve(im, 8.0, 0.5),
    "lut": lambda im, r: random_lut(im, r),
    "invert": lambda im, r: invert(im),
    "exposure": lambda im, r: exposure(im, 1.5, -0.1),
    "noise": lambda im, r: noise(im, r, 0.02, 0.03),
    "low_dose": lambda im, r: low_dose(im, r, 60.0),
    "blur": lambda im, r: blur(im, 1.5),
    "down_up": lambda im, r: down_up(im, 3.0),
    "dropout": lambda im, r: dropout(im, r, 3, 0.15),
}

__all__ = ["HELDOUT", "OPS", "Ranges", "TRAIN", "augment_display", "heldout_display", "process_display"]
