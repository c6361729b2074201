"""Result and limit types of the image reader, and checks shared by the DICOM and raster readers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["LoadedImage", "ReadLimits", "SPACING_SOURCES", "validate_user_spacing"]

#: Values of :attr:`LoadedImage.spacing_source`, best first.
SPACING_SOURCES = (
    "user",
    "PixelSpacing",
    "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor",
    "ImagerPixelSpacing",
    "sidecar",
    "none",
)


@dataclass(frozen=True)
class ReadLimits:
    """Refusal thresholds checked before any pixel is decoded (decompression-bomb guard).

    ``max_pixels``: largest Rows x Columns accepted; ``max_bytes``: largest file size accepted.
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReadLimits.{name} {value!r} out of range, expected a positive int")


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """One image ready for measurement.

    ``display``: (H, W) float32 in [0, 1], bone bright (MONOCHROME2 sense), read-only.
    ``pixel_spacing_mm``: (row, col) mm at the patient plane, or None when unknown.
    ``spacing_source``: one of :data:`SPACING_SOURCES`.
    ``dataset``: the DICOM header without pixel data (None for PNG/JPEG/TIFF).
    ``format``: "dicom", "png", "jpeg" or "tiff".
    """

    path: str
    display: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str
    warnings: tuple[str, ...] = ()
    modality: str | None = None
    dataset: Any = field(default=None, repr=False)
    format: str = "dicom"

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        height, width = self.display.shape[:2]
        return int(width), int(height)


def validate_user_spacing(name: str, spacing: object) -> tuple[float, float]:
    """Check a caller-given (row, col) spacing in mm: two finite numbers > 0, else InputError."""
    try:
        values = tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(
            f"{name}: pixel_spacing_mm argument {spacing!r} is invalid; expected (row, col) in mm, two numbers > 0"
        ) from None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(
            f"{name}: pixel_spacing_mm argument {spacing!r} is invalid; expected (row, col) in mm, two numbers > 0"
        )
    return values[0], values[1]


def finalize_display(display: np.ndarray, owned: bool = False) -> np.ndarray:
    """float32 (H, W), values clipped to [0, 1], contiguous and read-only.

    ``owned``: the caller hands the array over (it was made for this image), so it may be
    clipped in place instead of copied."""
    out = np.ascontiguousarray(display, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"display must be (H, W), got shape {out.shape}")
    if (out is display and not owned) or not out.flags.writeable:  # never modify a caller's array
        out = out.copy()
    if not np.isfinite(out).all():  # rare: checking is far cheaper than nan_to_num on every image
        np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    out.flags.writeable = False
    return out
