"""numpy twins of the CUDA kernels in :mod:`.kernels`: the oracles the GPU results are tested against.

:func:`preprocess_reference` follows the kernel's algorithm step by step (window per source
pixel, then area weights or bilinear taps, then normalisation) and is itself tested against the
CPU path (``imaging.window_linear`` + ``preprocess.letterbox`` + ``preprocess.normalize``). It
holds no math of its own: the display chain is ``imaging``'s, the letterbox geometry and the
per-axis resize weights are ``preprocess``'s (the weights are its numpy resize applied to the
identity).
:func:`decode_reference` is the CPU codec's DARK decode scaled to input px.
"""
from __future__ import annotations

import numpy as np

from ...io.imaging import apply_rescale, invert_monochrome1, linear_window_terms, window_linear
from ..preprocess import area_weights, linear_weights
from .kernels import letterbox_size

__all__ = ["area_weights", "linear_weights", "display_from_raw", "preprocess_reference", "kernel_scalars", "decode_reference"]


def display_from_raw(raw_uint16: np.ndarray, slope: float, intercept: float, wc: float, ww: float, invert: bool) -> np.ndarray:
    """(H, W) uint16 → (H, W) float32 display in [0, 1]: the CPU display chain itself.

    ``imaging.apply_rescale`` → ``imaging.window_linear`` → optional ``imaging.invert_monochrome1``:
    the oracle the kernel's ``cv_display`` implements (it multiplies by the float32 reciprocal of
    ``w - 1`` where the CPU divides: at most one float32 ulp apart).
    """
    y = window_linear(apply_rescale(np.asarray(raw_uint16), slope, intercept), wc, ww)
    return invert_monochrome1(y) if invert else y


def preprocess_reference(
    raw_uint16: np.ndarray,
    slope: float,
    intercept: float,
    wc: float,
    ww: float,
    invert: bool,
    out_hw: tuple[int, int],
    *,
    mean: float = 0.0,
    std: float = 1.0,
    pad_value: float = 0.0,
) -> np.ndarray:
    """numpy twin of the ``preprocess_u16`` kernel: (H, W) uint16 → (H_in, W_in) float32 model input.

    Letterbox geometry is :func:`kernels.letterbox_size` (= ``preprocess.letterbox_geometry``). Downscaling (either axis
    smaller) averages areas, otherwise bilinear; the pad holds ``(pad_value − mean) / std``.
    """
    raw = np.asarray(raw_uint16)
    if raw.ndim != 2:
        raise ValueError(f"raw image must be 2-D (H, W), got shape {raw.shape}")
    if not std > 0:
        raise ValueError(f"normalisation std {std!r} must be > 0")
    H, W = raw.shape
    H_in, W_in = int(out_hw[0]), int(out_hw[1])
    H_new, W_new, py, px = letterbox_size((H, W), (H_in, W_in))
    disp = display_from_raw(raw, slope, intercept, wc, ww, invert).astype(np.float64)
    area = W_new < W or H_new < H
    wy = area_weights(H, H_new) if area else linear_weights(H, H_new)
    wx = area_weights(W, W_new) if area else linear_weights(W, W_new)
    resized = wy @ disp @ wx.T
    out = np.full((H_in, W_in), pad_value, dtype=np.float64)
    out[py : py + H_new, px : px + W_new] = resized
    return ((out - mean) / std).astype(np.float32)


def kernel_scalars(slope: float, intercept: float, wc: float, ww: float, mean: float, std: float) -> dict[str, float]:
    """The float parameters the kernel receives: the window's from ``imaging.linear_window_terms``."""
    if not std > 0:
        raise ValueError(f"normalisation std {std!r} must be > 0")
    c_minus_half, w_minus_1 = linear_window_terms(wc, ww)
    return {
        "slope": float(slope), "intercept": float(intercept), "c_minus_half": float(c_minus_half),
        "inv_w_minus_1": float(np.float32(1.0) / w_minus_1), "mean": float(mean), "inv_std": float(1.0 / std),
    }


def decode_reference(heatmaps: np.ndarray, blur_sigma: float, scale_xy: tuple[float, float]) -> np.ndarray:
    """(N, K, h, w) heatmaps → (N, K, 3) float64 (x, y, score), x/y in input px = heatmap px · scale.

    Uses the CPU codec's :func:`codec.decode_dark`, the oracle of the ``decode_dark`` kernel.
    """
    from ..codec import decode_dark

    hm = np.asarray(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must have shape (N, K, h, w), got {hm.shape}")
    coords, scores = decode_dark(hm, blur_sigma=blur_sigma)
    out = np.empty(hm.shape[:2] + (3,), dtype=np.float64)
    out[..., 0] = coords[..., 0] * scale_xy[0]
    out[..., 1] = coords[..., 1] * scale_xy[1]
    out[..., 2] = scores
    return out
