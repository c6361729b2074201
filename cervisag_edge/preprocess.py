"""Preprocessing: letterbox a display image into the model input, and its exact inverse.

Shapes: display image (H, W) float32 in [0, 1]; model input (H_in, W_in) float32.

Pixel centres sit at integer coordinates (x = column, y = row). ``cv2.resize`` with
``INTER_AREA``/``INTER_LINEAR`` maps a destination centre ``x_d`` to the source position
``(x_d + 0.5) / s - 0.5`` for the per-axis scale ``s = W_new / W``, so the forward transform is

    x_in = (x + 0.5) * sx - 0.5 + pad_x,    y_in = (y + 0.5) * sy - 0.5 + pad_y

with ``sx = W_new / W`` and ``sy = H_new / H`` taken from the integer resized size (not the
nominal scale), which keeps the inverse exact. Pure functions, array in and array out.
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


def normalize(input_image: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(H, W) or (N, H, W) [0,1] image → float32 ``(x − mean) / std`` (new array)."""
    if not std > 0:
        raise ValueError(f"normalisation std {std!r} must be > 0")
    return ((np.asarray(input_image, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)
