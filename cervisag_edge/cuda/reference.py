"""numpy twins of the CUDA kernels in :mod:`.kernels`: the oracles the GPU results are tested against.

:func:`preprocess_reference` follows the kernel's algorithm step by step (window per source
pixel, then area weights or bilinear taps, then normalisation) and is itself tested against the
CPU path (``imaging.window_linear`` + ``preprocess.letterbox`` + ``preprocess.normalize``). Needs only numpy.
:func:`decode_reference` is the CPU codec's DARK decode scaled to input px.
"""
from __future__ import annotations

import numpy as np

from .kernels import letterbox_size



def display_from_raw(raw_uint16: np.ndarray, slope: float, intercept: float, wc: float, ww: float, invert: bool) -> np.ndarray:
    """(H, W) uint16 → (H, W) float32 display in [0, 1]: rescale, LINEAR window, optional inversion."""
    if not np.isfinite(ww) or ww < 1:
        raise ValueError(f"window width {ww!r} out of range, expected >= 1")
    v = (np.asarray(raw_uint16, dtype=np.float64) * float(slope) + float(intercept)).astype(np.float32)
    y = (v - np.float32(wc - 0.5)) * np.float32(1.0 / max(ww - 1.0, 1e-6)) + np.float32(0.5)
    y = np.clip(y, 0.0, 1.0).astype(np.float32)
    return (np.float32(1.0) - y) if invert else y


def area_weights(src_n: int, dst_n: int) -> np.ndarray:
    """(dst_n, src_n) float64 area-average weights: row d covers source [d·s, (d+1)·s), s = src_n/dst_n.

    Border pixels get their fractional overlap; each row sums to 1.
    """
    if dst_n < 1 or src_n < 1:
        raise ValueError(f"sizes {src_n} → {dst_n} must be >= 1")
    inv = src_n / dst_n
    d = np.arange(dst_n, dtype=np.float64)[:, None]
    j = np.arange(src_n, dtype=np.float64)[None, :]
    lo = d * inv
    hi = np.minimum((d + 1) * inv, float(src_n))
    w = np.clip(np.minimum(j + 1, hi) - np.maximum(j, lo), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def linear_weights(src_n: int, dst_n: int) -> np.ndarray:
    """(dst_n, src_n) bilinear weights with half-pixel centres and edge clamping (cv2.INTER_LINEAR)."""
    s = (np.arange(dst_n, dtype=np.float64) + 0.5) * (src_n / dst_n) - 0.5
    s = np.clip(s, 0.0, src_n - 1)
    x0 = np.floor(s).astype(np.int64)
    x1 = np.minimum(x0 + 1, src_n - 1)
    f = s - x0
    w = np.zeros((dst_n, src_n), dtype=np.float64)
    np.add.at(w, (np.arange(dst_n), x0), 1.0 - f)
    np.add.at(w, (np.arange(dst_n), x1), f)
    return w


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
    """The float parameters the kernel receives, derived exactly as the reference uses them."""
    return {
        "slope": float(slope), "intercept": float(intercept), "c_minus_half": float(np.float32(wc - 0.5)),
        "inv_wm1": float(np.float32(1.0 / max(ww - 1.0, 1e-6))), "mean": float(mean), "inv_std": float(1.0 / std),
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
