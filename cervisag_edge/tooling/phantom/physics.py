"""Image formation: line integrals -> detector quanta -> processed, quantised stored values.

All lengths are mm at the patient plane, so a reduced-resolution render of the same phantom
has the same physics: photons per pixel scale with the detector pixel area (less relative
noise for bigger pixels), blur and scatter kernels are fixed in mm.

Shapes: (H, W) float32 maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .primitives import Grid


@dataclass(frozen=True)
class Exposure:
    """Acquisition and processing settings of one phantom (resolution independent)."""

    fluence_per_mm2: float  # unattenuated quanta per mm^2 at the detector
    magnification: float
    scatter_fraction: float  # scatter-to-primary ratio of the mean field
    scatter_sigma_mm: float
    blur_sigma_mm: float  # detector + focal-spot blur, at the patient plane
    heel: tuple[float, float]  # fractional fluence gradient per 100 mm along (x, y)
    gain_ripple: float
    gain_phase: tuple[float, float]
    electronic_noise: float  # quanta-equivalent rms per mm^2
    eq_strength: float  # large-kernel equalisation
    eq_sigma_mm: float
    sharpen: float  # edge enhancement (unsharp mask, 1 mm kernel)
    film_width: float  # tanh compression of log exposure; large = linear
    bits_stored: int


def _lowpass(img: np.ndarray, grid: Grid, sigma_mm: float, step_mm: float) -> np.ndarray:
    """Gaussian low-pass with sigma in mm computed on a coarse grid (area-downsampled)."""
    h, w = img.shape
    sr, sc = grid.spacing_mm
    hc = max(int(np.ceil(h * sr / step_mm)), 4)
    wc = max(int(np.ceil(w * sc / step_mm)), 4)
    small = cv2.resize(img, (wc, hc), interpolation=cv2.INTER_AREA)
    sy = sigma_mm * hc / (h * sr)
    sx = sigma_mm * wc / (w * sc)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def form_image(mut: np.ndarray, grid: Grid, exp: Exposure, rng: np.random.Generator) -> np.ndarray:
    """Log-exposure image (H, W) float32 (about mu*t, bigger = more attenuation) with scatter,
    quantum noise, detector blur and gain; then the vendor-like processing of a For
    Presentation image (equalisation, edge enhancement, film-like compression)."""
    h, w = mut.shape
    sr, sc = grid.spacing_mm
    area_det = (sr * exp.magnification) * (sc * exp.magnification)
    n_pix = exp.fluence_per_mm2 * area_det
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * sr - 0.5 * h * sr)[:, None] / 100.0
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * sc - 0.5 * w * sc)[None, :] / 100.0
    # in-place float32 arithmetic (each step is the same IEEE operation as the plain expression)
    f32 = np.float32
    field = f32(1.0) + f32(exp.heel[0]) * xs + f32(exp.heel[1]) * ys
    field *= f32(n_pix)
    primary = np.negative(mut)
    np.exp(primary, out=primary)
    primary *= field
    scatter = _lowpass(primary, grid, exp.scatter_sigma_mm, max(2.0, exp.scatter_sigma_mm / 6.0))
    scatter *= f32(exp.scatter_fraction)
    expected = primary
    expected += scatter
    noise_sd = np.add(expected, f32(exp.electronic_noise**2 * area_det), out=scatter)
    np.sqrt(noise_sd, out=noise_sd)
    quanta = rng.standard_normal((h, w), dtype=np.float32)
    quanta *= noise_sd
    quanta += expected
    sig_px_y = exp.blur_sigma_mm / sr
    sig_px_x = exp.blur_sigma_mm / sc
    if max(sig_px_x, sig_px_y) > 0.15:
        quanta = cv2.GaussianBlur(quanta, (0, 0), sigmaX=sig_px_x, sigmaY=sig_px_y, borderType=cv2.BORDER_REFLECT)
    gain = np.multiply(np.cos(f32(2.2) * xs + f32(exp.gain_phase[0])), np.cos(f32(1.7) * ys + f32(exp.gain_phase[1])), out=field)
    gain *= f32(exp.gain_ripple)
    gain += f32(1.0)
    quanta *= gain
    logx = np.maximum(quanta, f32(0.5), out=quanta)
    logx /= f32(n_pix)
    np.log(logx, out=logx)
    np.negative(logx, out=logx)
    if exp.eq_strength > 0:  # dynamic-range compression: attenuate the large-scale component
        low = _lowpass(logx, grid, exp.eq_sigma_mm, max(1.0, exp.eq_sigma_mm / 5.0))
        low -= f32(3.0)
        low *= f32(exp.eq_strength)
        logx -= low
    if exp.sharpen > 0:
        s_px_y, s_px_x = 1.0 / sr, 1.0 / sc
        blurred = cv2.GaussianBlur(logx, (0, 0), sigmaX=s_px_x, sigmaY=s_px_y, borderType=cv2.BORDER_REFLECT)
        np.subtract(logx, blurred, out=blurred)
        blurred *= f32(exp.sharpen)
        logx += blurred
    fw = f32(exp.film_width)
    logx -= f32(3.0)
    logx /= fw
    np.tanh(logx, out=logx)
    logx *= fw
    logx += f32(3.0)
    return logx


def quantise(resp: np.ndarray, bits_stored: int, invert: bool) -> np.ndarray:
    """Map the response (about 0..7) to stored values (uint16) using most of ``bits_stored``."""
    maxv = float(2**bits_stored - 1)
    v = (resp + np.float32(0.4)) * np.float32(maxv * 0.92 / 8.0) + np.float32(maxv * 0.02)
    v = np.clip(np.rint(v), 0.0, maxv)
    if invert:
        v = np.float32(maxv) - v
    return v.astype(np.uint16)
