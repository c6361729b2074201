"""Result and limit types of the image reader, and checks shared by the DICOM and raster readers."""
from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["LoadedImage", "ReadLimits", "SPACING_SOURCES", "validate_user_spacing", "block_mean", "display_from_array",
           "PixelSource"]

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

    ``max_pixels``: largest Rows x Columns accepted; ``max_bytes``: largest file size accepted;
    ``max_header_elements``: most DICOM data elements parsed before the pixel data (a header of
    millions of tiny elements is refused while parsing, before it runs long; real headers hold
    a few thousand).
    """

    max_pixels: int = 50_000_000
    max_bytes: int = 512 * 1024 * 1024
    max_header_elements: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_bytes", "max_header_elements"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReadLimits.{name} {value!r} out of range, expected a positive int")


class PixelSource(Protocol):
    """Where a lazily built display image comes from (see :class:`cervisag_edge.io.pixels.GreyPixels`)."""

    size_px: tuple[int, int]

    def display(self) -> np.ndarray: ...

    def reduced(self, factor: int) -> np.ndarray: ...


class LoadedImage:
    """One image ready for measurement (immutable).

    ``display``: (H, W) float32 in [0, 1], bone bright (MONOCHROME2 sense), read-only. For DICOM
    it is built on first access only (an overlay or a Secondary Capture asks for it); measuring
    needs :meth:`reduced` alone.
    ``pixel_spacing_mm``: (row, col) mm at the patient plane, or None when unknown.
    ``spacing_source``: one of :data:`SPACING_SOURCES`.
    ``dataset``: the DICOM header without pixel data (None for PNG/JPEG/TIFF).
    ``format``: "dicom", "png", "jpeg", "tiff" or "array".
    Give either ``display`` or ``source`` (a :class:`PixelSource`).
    """

    __slots__ = ("path", "pixel_spacing_mm", "spacing_source", "warnings", "modality", "dataset", "format",
                 "_display", "_source")

    def __init__(self, path: str, display: np.ndarray | None = None, pixel_spacing_mm: tuple[float, float] | None = None,
                 spacing_source: str = "none", warnings: tuple[str, ...] = (), modality: str | None = None,
                 dataset: Any = None, format: str = "dicom", *, source: PixelSource | None = None) -> None:
        if (display is None) == (source is None):
            raise ValueError("LoadedImage needs exactly one of display or source")
        values = dict(path=path, pixel_spacing_mm=pixel_spacing_mm, spacing_source=spacing_source,
                      warnings=tuple(warnings), modality=modality, dataset=dataset, format=format,
                      _display=display, _source=source)
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {key!r}")

    def __delattr__(self, key: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {key!r}")

    def __repr__(self) -> str:
        return (f"LoadedImage(path={self.path!r}, size_px={self.size_px}, pixel_spacing_mm={self.pixel_spacing_mm}, "
                f"spacing_source={self.spacing_source!r}, format={self.format!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    @property
    def display(self) -> np.ndarray:
        """(H, W) float32 full-resolution display image (built once, on first access)."""
        if self._display is None:
            object.__setattr__(self, "_display", finalize_display(self._source.display(), owned=True))
        return self._display

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        if self._display is None:
            return self._source.size_px
        height, width = self._display.shape[:2]
        return int(width), int(height)

    def reduced(self, factor: int) -> np.ndarray:
        """(H // factor, W // factor) float32 display of ``factor`` x ``factor`` block means (the
        last H % factor rows and W % factor columns are dropped; factor 1 is :attr:`display`).
        Reduced pixel (i, j) is centred on original pixel (factor * i + (factor - 1) / 2, ...)."""
        f = int(factor)
        if f < 1:
            raise ValueError(f"reduction factor {factor!r} must be >= 1")
        if f == 1:
            return self.display
        if self._display is None:
            return finalize_display(self._source.reduced(f), owned=True)
        return finalize_display(block_mean(self._display, f), owned=True)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """(H // f, W // f) means of f x f blocks of an (H, W) array (remainder rows/columns dropped).

    uint8/uint16/int16/float32/float64 keep their type (OpenCV's integer-factor area path: integer
    means are rounded to the nearest value); other types are averaged as float64.
    """
    a = np.asarray(image)
    f = int(factor)
    h, w = a.shape[0] // f, a.shape[1] // f
    if h < 1 or w < 1:
        raise ValueError(f"reduction factor {f} too large for an image of shape {a.shape}")
    src = a[: h * f, : w * f]
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        src = src.astype(np.float64)
    return cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)


def display_from_array(pixels: np.ndarray, source: str = "<array>") -> np.ndarray:
    """A caller's (H, W) array as a display image: float data already in [0, 1] is kept, anything
    else gets a robust 0.5–99.5 percentile window."""
    a = np.asarray(pixels)
    if a.ndim != 2 or min(a.shape) < 1:
        raise InputError(f"{source}: pixels must be a 2-D (H, W) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"{source}: pixels dtype {a.dtype} is not a real number type")
    a = a.astype(np.float32, copy=False)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{source}: pixels contain NaN or inf")
    if np.issubdtype(np.asarray(pixels).dtype, np.floating) and a.min() >= 0.0 and a.max() <= 1.0:
        return a
    lo, hi = np.percentile(a, (0.5, 99.5))
    if hi <= lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


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
