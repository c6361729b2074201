"""Preprocessing: letterbox a display image into the model input, and its exact inverse.

Shapes: display image (H, W) float32 in [0, 1]; model input (H_in, W_in) float32.

Pixel centres sit at integer coordinates (x = column, y = row). ``cv2.resize`` with
``INTER_AREA``/``INTER_LINEAR`` maps a destination centre ``x_d`` to the source position
``(x_d + 0.5) / s - 0.5`` for the per-axis scale ``s = W_new / W``, so the forward transform is

    x_in = (x + 0.5) * sx - 0.5 + pad_x,    y_in = (y + 0.5) * sy - 0.5 + pad_y

with ``sx = W_new / W`` and ``sy = H_new / H`` taken from the integer resized size (not the
nominal scale), which keeps the inverse exact. Pure functions, array in and array out.

This module is the one definition of the letterbox geometry (:func:`letterbox_geometry`) and
of the resize arithmetic (:func:`resize_numpy`, the numpy twin of the OpenCV path, and the
per-axis weight matrices :func:`area_weights` / :func:`linear_weights` derived from it); the
CUDA kernel of :mod:`cervisag_edge.engine.cuda.kernels` and its numpy twin are tested against them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np


@dataclass(frozen=True)
class LetterboxTransform:
    """Affine map between original image px and model-input px (pixel-centre convention)."""

    sx: float
    sy: float
    pad_x: float
    pad_y: float
    original_size: tuple[int, int]  # (W, H)
    input_size: tuple[int, int]  # (W_in, H_in)

    def to_input(self, pts: np.ndarray) -> np.ndarray:
        """(…, 2) original px → (…, 2) model-input px."""
        p = np.asarray(pts, dtype=np.float64)
        return np.stack([(p[..., 0] + 0.5) * self.sx - 0.5 + self.pad_x, (p[..., 1] + 0.5) * self.sy - 0.5 + self.pad_y], axis=-1)

    def to_original(self, pts: np.ndarray) -> np.ndarray:
        """(…, 2) model-input px → (…, 2) original px."""
        p = np.asarray(pts, dtype=np.float64)
        return np.stack([(p[..., 0] - self.pad_x + 0.5) / self.sx - 0.5, (p[..., 1] - self.pad_y + 0.5) / self.sy - 0.5], axis=-1)

    def inside_original(self, pts: np.ndarray) -> np.ndarray:
        """(…,) bool: the original-px points lie on the image (within its pixel area)."""
        p = np.asarray(pts, dtype=np.float64)
        W, H = self.original_size
        with np.errstate(invalid="ignore"):
            return (p[..., 0] >= -0.5) & (p[..., 0] <= W - 0.5) & (p[..., 1] >= -0.5) & (p[..., 1] <= H - 0.5)


def letterbox_geometry(original_size: tuple[int, int], input_size: tuple[int, int]) -> tuple[tuple[int, int], LetterboxTransform]:
    """The resized size (W_new, H_new) and transform for fitting ``original_size`` into ``input_size``.

    The image keeps its aspect ratio and is centred; padding splits evenly (extra pixel at the end).
    """
    W, H = int(original_size[0]), int(original_size[1])
    W_in, H_in = int(input_size[0]), int(input_size[1])
    if W < 1 or H < 1:
        raise ValueError(f"image size {(W, H)} must be at least 1×1")
    s = min(W_in / W, H_in / H)
    W_new = min(W_in, max(1, int(round(W * s))))
    H_new = min(H_in, max(1, int(round(H * s))))
    pad_x = (W_in - W_new) // 2
    pad_y = (H_in - H_new) // 2
    tf = LetterboxTransform(W_new / W, H_new / H, float(pad_x), float(pad_y), (W, H), (W_in, H_in))
    return (W_new, H_new), tf


def _cv2_resize(src: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    interp = cv2.INTER_AREA if (size[0] < src.shape[1] or size[1] < src.shape[0]) else cv2.INTER_LINEAR
    return cv2.resize(src, size, interpolation=interp)


def letterbox(image: np.ndarray, input_size: tuple[int, int], pad_value: float = 0.0,
              resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize (keeping aspect) and pad a (H, W) image into ``input_size`` (W_in, H_in).

    Downscaling uses ``INTER_AREA`` (anti-aliased), upscaling ``INTER_LINEAR``; both share the
    centre convention of :class:`LetterboxTransform`. ``resize(src, (W_new, H_new))`` replaces
    OpenCV (the benchmarks' numpy twin). Returns ((H_in, W_in) float32, transform).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {img.shape}")
    H, W = img.shape
    (W_new, H_new), tf = letterbox_geometry((W, H), input_size)
    W_in, H_in = tf.input_size
    src = img.astype(np.float32, copy=False)
    resized = (resize or _cv2_resize)(src, (W_new, H_new)) if (W_new, H_new) != (W, H) else src
    out = np.full((H_in, W_in), pad_value, dtype=np.float32)
    px, py = int(tf.pad_x), int(tf.pad_y)
    out[py : py + H_new, px : px + W_new] = resized
    return out, tf


def _area_axis(img: np.ndarray, n_new: int, axis: int) -> np.ndarray:
    """Area-average resize along ``axis`` to ``n_new`` samples, exact, by prefix sums.

    Output sample d averages the source interval [d·s, (d+1)·s), s = n/n_new, with fractional
    weights for partly covered pixels (what OpenCV's INTER_AREA does when downscaling). The
    integral of the piecewise-constant source up to position b is C(b) = P[⌊b⌋] + (b − ⌊b⌋)·x[⌊b⌋]
    with P the prefix sum, so each output is (C(b_{d+1}) − C(b_d)) / s.
    """
    x = np.moveaxis(np.asarray(img, dtype=np.float64), axis, 0)
    n = x.shape[0]
    prefix = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)], axis=0)  # (n + 1, …)
    bounds = np.arange(n_new + 1, dtype=np.float64) * (n / n_new)
    i = np.minimum(np.floor(bounds).astype(np.int64), n - 1)
    frac = (bounds - i)[:, None]
    integral = prefix[i] + frac * x[i]
    out = (integral[1:] - integral[:-1]) / (n / n_new)
    return np.moveaxis(out, 0, axis)


def _linear_axis(img: np.ndarray, n_new: int, axis: int) -> np.ndarray:
    """Bilinear resize along ``axis`` with half-pixel centres and edge clamping (INTER_LINEAR)."""
    x = np.moveaxis(np.asarray(img, dtype=np.float64), axis, 0)
    n = x.shape[0]
    src = np.clip((np.arange(n_new, dtype=np.float64) + 0.5) * (n / n_new) - 0.5, 0.0, n - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (src - i0)[:, None]
    return np.moveaxis(x[i0] * (1.0 - f) + x[i1] * f, 0, axis)


def resize_numpy(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Pure-numpy resize of a (H, W) image to ``size_wh`` (W_new, H_new): area average on axes that
    shrink, bilinear on axes that grow. Returns float32 (H_new, W_new)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {img.shape}")
    W_new, H_new = int(size_wh[0]), int(size_wh[1])
    if W_new < 1 or H_new < 1:
        raise ValueError(f"resize target {size_wh} must be at least 1×1")
    out = img.astype(np.float64)
    for axis, n_new in ((0, H_new), (1, W_new)):
        if n_new < out.shape[axis]:
            out = _area_axis(out, n_new, axis)
        elif n_new > out.shape[axis]:
            out = _linear_axis(out, n_new, axis)
    return out.astype(np.float32)


def area_weights(src_n: int, dst_n: int) -> np.ndarray:
    """(dst_n, src_n) float64 weights of the area resize of one axis (rows sum to 1).

    Row d covers source [d·s, (d+1)·s), s = src_n/dst_n, with fractional border overlaps: the
    resize of the identity, so it is :func:`_area_axis` itself and never a second formula.
    """
    if dst_n < 1 or src_n < 1:
        raise ValueError(f"sizes {src_n} → {dst_n} must be >= 1")
    return _area_axis(np.eye(src_n), dst_n, 0)


def linear_weights(src_n: int, dst_n: int) -> np.ndarray:
    """(dst_n, src_n) float64 weights of the bilinear resize of one axis (half-pixel centres, clamped edges)."""
    if dst_n < 1 or src_n < 1:
        raise ValueError(f"sizes {src_n} → {dst_n} must be >= 1")
    return _linear_axis(np.eye(src_n), dst_n, 0)


def normalize(input_image: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(H, W) or (N, H, W) [0,1] image → float32 ``(x − mean) / std`` (new array)."""
    if not std > 0:
        raise ValueError(f"normalisation std {std!r} must be > 0")
    return ((np.asarray(input_image, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)


def prepare_input(display: np.ndarray, input_hw: tuple[int, int], *, pad_value: float, mean: float, std: float
                  ) -> tuple[np.ndarray, LetterboxTransform]:
    """(H, W) display in [0, 1] → ((1, 1, H_in, W_in) float32 model input, transform).

    The runtime's preprocessing (letterbox, then normalise) as one call, so that the tools
    (``tools/quantize.py``) feed a model exactly what the Measurer does.
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    boxed, tf = letterbox(display, (w, h), pad_value)
    return normalize(boxed, mean, std)[None, None], tf
