"""Result and limit types of the image reader, and checks shared by the DICOM and raster readers."""
from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["LoadedImage", "ReadLimits", "SPACING_SOURCES", "validate_user_spacing", "area_resize", "display_from_array",
           "PixelSource", "ResizeTo"]

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


#: A reader's caller's rule for the size (W_new, H_new) it will ask :meth:`LoadedImage.resized`
#: for, given the image's (W, H) (the Measurer's letterbox size).
ResizeTo = Callable[[tuple[int, int]], tuple[int, int]]


class PixelSource(Protocol):
    """Where a lazily built display image comes from (see :class:`cervisag_edge.io.pixels.GreyPixels`)."""

    size_px: tuple[int, int]

    def display(self) -> np.ndarray: ...

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray: ...

    def resized(self, size_wh: tuple[int, int]) -> np.ndarray: ...


class LoadedImage:
    """One image ready for measurement (immutable).

    ``display``: (H, W) float32 in [0, 1], bone bright (MONOCHROME2 sense), read-only. For DICOM
    it is built on first access only (an overlay or a Secondary Capture asks for it); measuring
    needs :meth:`resized` alone.
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
        """Pickles with the display built (the pixel source holds closures): the copy is eager."""
        state = {k: getattr(self, k) for k in self.__slots__ if k not in ("_display", "_source")}
        return {**state, "_display": self.display, "_source": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    @property
    def display(self) -> np.ndarray:
        """(H, W) float32 full-resolution display image (built once, on first access)."""
        if self._display is None:
            object.__setattr__(self, "_display", finalize_display(self._source.display(), owned=True))
        return self._display

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """(y1 − y0, x1 − x0) float32 display of the window [x0, x1) × [y0, y1) (clipped to the
        image), equal to ``display[y0:y1, x0:x1]``; for DICOM only that window's stored values are
        converted, so the full-resolution display is still not built (the second stage's crops)."""
        w, h = self.size_px
        x0, x1 = max(0, int(x0)), min(w, int(x1))
        y0, y1 = max(0, int(y0)), min(h, int(y1))
        if x1 <= x0 or y1 <= y0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0)), dtype=np.float32)
        if self._display is not None:
            return self._display[y0:y1, x0:x1]
        return finalize_display(self._source.region(x0, y0, x1, y1), owned=True)

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        if self._display is None:
            return self._source.size_px
        height, width = self._display.shape[:2]
        return int(width), int(height)

    def resized(self, size_wh: tuple[int, int]) -> np.ndarray:
        """(H_new, W_new) float32 display area-resized (OpenCV ``INTER_AREA``) from full resolution
        to ``size_wh`` = (W_new, H_new), pixel centres as in :mod:`cervisag_edge.engine.preprocess`. For
        DICOM the stored values are resized first and converted after (see :mod:`.pixels`), so
        the full-resolution display is never built for it."""
        w_new, h_new = int(size_wh[0]), int(size_wh[1])
        if w_new < 1 or h_new < 1:
            raise ValueError(f"size {size_wh!r} must be at least 1 x 1")
        if (w_new, h_new) == self.size_px:
            return self.display
        if self._display is None:
            return finalize_display(self._source.resized((w_new, h_new)), owned=True)
        return finalize_display(area_resize(self._display, (w_new, h_new)), owned=True)


def area_resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """An (H, W) array resized to ``size_wh`` (W_new, H_new): ``INTER_AREA`` when shrinking,
    ``INTER_LINEAR`` when enlarging (the letterbox's rule). uint8/uint16/int16/float32/float64
    keep their type (integer results are rounded to the nearest value); others become float64."""
    a = np.asarray(image)
    if a.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        a = a.astype(np.float64)
    w_new, h_new = int(size_wh[0]), int(size_wh[1])
    interp = cv2.INTER_AREA if (w_new < a.shape[1] or h_new < a.shape[0]) else cv2.INTER_LINEAR
    return cv2.resize(a, (w_new, h_new), interpolation=interp)


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
