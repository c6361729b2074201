"""PNG, JPEG and TIFF reading with OpenCV after a header-only size check.

Colour images become grey (BT.601 luma, alpha dropped); 16-bit and float data keep their depth
until the robust percentile window maps them to the display range. Spacing comes from the caller
or a JSON sidecar (see :mod:`cervisag_edge.io.spacing`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from . import imaging
from ..errors import InputError
from .headers import raster_dimensions
from .image import LoadedImage, ReadLimits, finalize_display
from .spacing import sidecar_spacing

__all__ = ["read_raster"]

logger = logging.getLogger(__name__)


def _to_grey(img: np.ndarray, warnings: list[str]) -> np.ndarray:
    """(H, W) or (H, W, C) OpenCV image (BGR order) to an (H, W) grey array."""
    if img.ndim == 2:
        return img
    if img.ndim != 3:
        raise ValueError(f"unexpected image shape {img.shape}")
    channels = img.shape[2]
    if channels == 1:
        return img[..., 0]
    if channels == 2:  # grey + alpha
        return img[..., 0]
    bgr = img[..., :3]
    if np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 1], bgr[..., 2]):
        return bgr[..., 0]
    warnings.append(f"colour image ({channels} channels) converted to grey (BT.601 luma)")
    return imaging.rgb_to_grey(bgr[..., ::-1])


def read_raster(
    path: Path, name: str, fmt: str, limits: ReadLimits, user_spacing: tuple[float, float] | None
) -> LoadedImage:
    """Read a PNG, JPEG or TIFF image. Raises InputError for anything it cannot measure."""
    with open(path, "rb") as fp:
        width, height = raster_dimensions(fp, fmt, name)
    if width * height > limits.max_pixels:
        raise InputError(
            f"{name}: {fmt.upper()} header size {width} x {height} = {width * height} pixels exceeds the limit "
            f"of {limits.max_pixels} (ReadLimits.max_pixels)"
        )
    buffer = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise InputError(f"{name}: {fmt.upper()} data could not be decoded by OpenCV (corrupt or unsupported variant)")
    warnings: list[str] = []
    grey = _to_grey(img, warnings)
    display = imaging.percentile_window(grey, ignore_value=imaging.border_constant_value(grey))
    if user_spacing is not None:
        spacing, source = user_spacing, "user"
    else:
        spacing, source, spacing_warnings = sidecar_spacing(path)
        warnings.extend(spacing_warnings)
    for message in warnings:
        logger.debug("%s: %s", name, message)
    return LoadedImage(
        path=str(path),
        display=finalize_display(display),
        pixel_spacing_mm=spacing,
        spacing_source=source,
        warnings=tuple(warnings),
        modality=None,
        dataset=None,
        format=fmt,
    )
