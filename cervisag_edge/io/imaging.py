"""Pure pixel functions shared by the DICOM reader and the phantom generator (array in, array out).

Shapes: images are (H, W). Display images are float32 in [0, 1], bone bright (MONOCHROME2 sense).

The VOI functions follow DICOM PS3.3 C.11.2.1.2 with output range ymin = 0, ymax = 1; the
Modality LUT functions follow PS3.3 C.11.1. Nothing here reads files or datasets.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "window_linear",
    "linear_window_terms",
    "window_linear_exact",
    "window_sigmoid",
    "apply_rescale",
    "apply_lut_table",
    "apply_voi_lut_table",
    "mask_bits_stored",
    "percentile_window",
    "percentile_limits",
    "window_limits",
    "border_constant_value",
    "invert_monochrome1",
    "rgb_to_grey",
]

#: Largest number of pixels :func:`percentile_window` looks at (a regular stride subsamples bigger images).
PERCENTILE_MAX_SAMPLES = 2_000_000


def linear_window_terms(center: float, width: float) -> tuple[np.float32, np.float32]:
    """The float32 constants ``(c - 0.5, w - 1)`` of the LINEAR window; ``width`` must be >= 1.

    The one definition of the window's arithmetic: :func:`window_linear` and the fused CUDA
    preprocessing kernel (:mod:`cuda.kernels`, which gets these two numbers) both compute
    ``clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)`` in float32 with them.
    """
    if not np.isfinite(width) or width < 1:
        raise ValueError(f"window width {width!r} out of range, expected >= 1")
    return np.float32(center - 0.5), np.float32(max(width - 1.0, 1e-6))


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR VOI window (PS3.3 C.11.2.1.2.1) mapped to [0, 1].

    y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to [0, 1]. ``width`` must be >= 1.
    """
    c_minus_half, w_minus_1 = linear_window_terms(center, width)
    x = np.asarray(values, dtype=np.float32)
    y = (x - c_minus_half) / w_minus_1 + np.float32(0.5)
    return np.clip(y, 0.0, 1.0, out=y)


def window_linear_exact(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM LINEAR_EXACT VOI window (PS3.3 C.11.2.1.3.2) mapped to [0, 1].

    y = (x - c) / w + 0.5, clipped to [0, 1]. ``width`` must be > 0. Shape is preserved.
    """
    if not np.isfinite(width) or width <= 0:
        raise ValueError(f"window width {width!r} out of range, expected > 0")
    x = np.asarray(values, dtype=np.float64)
    y = ((x - float(center)) / float(width) + 0.5).astype(np.float32)
    return np.clip(y, 0.0, 1.0, out=y)


def window_sigmoid(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM SIGMOID VOI function (PS3.3 C.11.2.1.3.1) mapped to [0, 1].

    y = 1 / (1 + exp(-4 (x - c) / w)). ``width`` must be > 0. Shape is preserved.
    """
    if not np.isfinite(width) or width <= 0:
        raise ValueError(f"window width {width!r} out of range, expected > 0")
    x = np.asarray(values, dtype=np.float64)
    z = np.clip(-4.0 * (x - float(center)) / float(width), -700.0, 700.0)
    return (1.0 / (1.0 + np.exp(z))).astype(np.float32)


def apply_rescale(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality LUT by Rescale Slope/Intercept (PS3.3 C.11.1.1.2): output = slope * x + intercept.

    Returns float64 of the same shape (exact for 32-bit stored values).
    """
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise ValueError(f"rescale slope {slope!r} / intercept {intercept!r} must be finite")
    x = np.asarray(values, dtype=np.float64)
    return x * float(slope) + float(intercept)


def apply_lut_table(values: np.ndarray, lut: np.ndarray, first_mapped: int) -> np.ndarray:
    """Look up ``values`` in a DICOM LUT (Modality or VOI LUT Sequence item).

    Input value ``first_mapped`` maps to ``lut[0]``; values below it map to the first entry and
    values above ``first_mapped + len(lut) - 1`` to the last entry (PS3.3 C.11.1.1.1, C.11.2.1.1).
    ``values`` has any shape; ``lut`` is (N,). Returns ``lut``'s values, float64, shape of ``values``.
    """
    table = np.asarray(lut, dtype=np.float64).ravel()
    if table.size == 0:
        raise ValueError("LUT has no entries")
    x = np.asarray(values)
    if np.issubdtype(x.dtype, np.floating):
        x = np.floor(x)
    idx = np.clip(x.astype(np.int64) - int(first_mapped), 0, table.size - 1)
    return table[idx]


def apply_voi_lut_table(values: np.ndarray, lut: np.ndarray, first_mapped: int, bits: int) -> np.ndarray:
    """VOI LUT Sequence lookup mapped to [0, 1]: ``lut[x - first_mapped] / (2**bits - 1)``.

    ``bits`` is the third value of the LUT Descriptor (bits per entry). Returns float32, shape of ``values``.
    """
    if not 1 <= int(bits) <= 32:
        raise ValueError(f"LUT bits per entry {bits!r} out of range, expected 1..32")
    y = apply_lut_table(values, lut, first_mapped) / float(2 ** int(bits) - 1)
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def mask_bits_stored(raw: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep only the low ``bits_stored`` bits of integer pixels; sign-extend them when ``signed``.

    Matches pydicom's handling of unused high bits (PS3.5 8.1.1): with BitsStored = 12 the stored
    word 0xF001 is 1 (unsigned) and 0x0FFF is -1 (signed). Idempotent on already masked arrays.
    Returns int64 of the same shape.
    """
    bits = int(bits_stored)
    if not 1 <= bits <= 32:
        raise ValueError(f"bits stored {bits_stored!r} out of range, expected 1..32")
    x = np.asarray(raw)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"expected an integer array, got dtype {x.dtype}")
    mask = (1 << bits) - 1
    v = x.astype(np.int64) & mask
    if signed:
        sign_bit = 1 << (bits - 1)
        v = np.where(v & sign_bit, v - (1 << bits), v)
    return v


def border_constant_value(values: np.ndarray, min_fraction: float = 0.9) -> float | None:
    """The value of a constant collimation border, or None.

    Looks at the outermost ring of pixels of an (H, W) image. When at least ``min_fraction`` of
    them share one value and that value is the image minimum or maximum, it is returned.
    """
    x = np.asarray(values)
    if x.ndim != 2 or min(x.shape) < 3:
        return None
    ring = np.concatenate([x[0, :], x[-1, :], x[1:-1, 0], x[1:-1, -1]])
    uniq, counts = np.unique(ring, return_counts=True)
    k = int(np.argmax(counts))
    if counts[k] < min_fraction * ring.size:
        return None
    value = uniq[k]
    if value == x.min() or value == x.max():
        return float(value)
    return None


def percentile_limits(
    values: np.ndarray,
    low_pct: float = 0.5,
    high_pct: float = 99.5,
    ignore_value: float | None = None,
) -> tuple[float, float] | None:
    """The (low, high) values of the robust window of :func:`percentile_window`, or None for a
    constant image. Same sampling and border rule; ``values`` has any shape."""
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"percentiles {low_pct!r}, {high_pct!r} out of range, expected 0 <= low < high <= 100")
    flat = np.asarray(values).ravel()
    step = max(1, int(np.ceil(flat.size / PERCENTILE_MAX_SAMPLES)))
    sample = flat[::step]
    if ignore_value is not None:
        kept = sample[sample != ignore_value]
        if kept.size > 0:
            sample = kept
    sample = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample.astype(np.float64), [low_pct, high_pct])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        return None
    return float(lo), float(hi)


def window_limits(values: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """Map ``limits`` (low, high) to 0 .. 1, clipped; None (a constant image) gives zeros. float32, shape kept."""
    x = np.asarray(values)
    if limits is None:
        return np.zeros(x.shape, dtype=np.float32)
    lo, hi = limits
    y = ((x.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    y = np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(y, 0.0, 1.0, out=y)


def percentile_window(
    values: np.ndarray,
    low_pct: float = 0.5,
    high_pct: float = 99.5,
    ignore_value: float | None = None,
) -> np.ndarray:
    """Robust window: map the ``low_pct`` .. ``high_pct`` percentiles of the pixels to 0 .. 1.

    Pixels equal to ``ignore_value`` (e.g. a constant collimation border, see
    :func:`border_constant_value`) are left out of the percentile estimate. Images over
    :data:`PERCENTILE_MAX_SAMPLES` pixels are estimated from a regular stride. A constant image
    maps to all zeros. (H, W) in, float32 (H, W) in [0, 1] out.
    """
    return window_limits(values, percentile_limits(values, low_pct, high_pct, ignore_value))


def invert_monochrome1(display: np.ndarray) -> np.ndarray:
    """MONOCHROME1 to MONOCHROME2 sense after VOI: y' = 1 - y. float32, shape preserved."""
    return (np.float32(1.0) - np.asarray(display, dtype=np.float32)).astype(np.float32)


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma of an (H, W, 3) RGB array: 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601). float64 (H, W)."""
    x = np.asarray(rgb, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {x.shape}")
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
