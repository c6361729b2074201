"""Image reading: ``read_image(path) -> LoadedImage`` for DICOM, PNG, JPEG and TIFF.

Every failure is an :class:`~cervisag_edge.errors.InputError` with a one-line message naming the
file, the tag or header field and the value. Size limits (:class:`ReadLimits`) are checked from
the file size and the header before any pixel is decoded.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputError
from .headers import sniff_format
from .image import SPACING_SOURCES, LoadedImage, ReadLimits, ResizeTo, display_from_array, validate_user_spacing

__all__ = ["read_image", "LoadedImage", "ReadLimits", "SUPPORTED_SUFFIXES", "SPACING_SOURCES", "display_from_array"]

logger = logging.getLogger(__name__)

#: File suffixes the reader accepts (DICOM files may also have no suffix; content decides).
SUPPORTED_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
_RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})


def read_image(
    path: str | os.PathLike[str],
    *,
    pixel_spacing_mm: tuple[float, float] | None = None,
    limits: ReadLimits | None = None,
    resize_to: ResizeTo | None = None,
) -> LoadedImage:
    """Read a DICOM, PNG, JPEG or TIFF image into a display array with its pixel spacing.

    The format is decided by the file's content (PNG/JPEG/TIFF signature, DICM preamble, or a
    DICOM header without preamble). ``pixel_spacing_mm`` (row, col) overrides the file's spacing
    (source "user"). Returns a :class:`LoadedImage` whose display is (H, W) float32 in [0, 1].

    ``resize_to(size_px) -> (W_new, H_new)``: the size the caller will ask
    :meth:`LoadedImage.resized` for, given the image's (W, H). A JPEG 2000 / HTJ2K image is then
    decoded only at the coarsest resolution level at least that large (:mod:`.levels`); its full
    resolution is decoded later, and only if the display or a larger size is asked for.
    """
    file = Path(path)
    name = str(path)
    limits = limits if limits is not None else ReadLimits()
    user = validate_user_spacing(name, pixel_spacing_mm) if pixel_spacing_mm is not None else None
    try:
        return _read(file, name, limits, user, resize_to)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # last line of defence: no raw traceback from pydicom/numpy/cv2
        message = " ".join(str(exc).split())
        raise InputError(f"{name}: unexpected {type(exc).__name__} while reading: {message}") from exc


def _read(file: Path, name: str, limits: ReadLimits, user: tuple[float, float] | None,
          resize_to: ResizeTo | None) -> LoadedImage:
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot be accessed ({type(exc).__name__}: {exc.strerror or exc})") from None
    if not file.is_file():
        raise InputError(f"{name}: is not a regular file")
    if size == 0:
        raise InputError(f"{name}: empty file (0 bytes)")
    if size > limits.max_bytes:
        raise InputError(f"{name}: file size {size} bytes exceeds the limit of {limits.max_bytes} (ReadLimits.max_bytes)")
    with open(file, "rb") as fp:  # the only open of a DICOM file: sniff, bomb checks and parse share it
        head = fp.read(132)
        fmt = sniff_format(head)
        if fmt is None and file.suffix.lower() in _RASTER_SUFFIXES:
            raise InputError(
                f"{name}: not a recognised image (no PNG, JPEG or TIFF signature; first bytes {head[:8]!r})"
            )
        if fmt not in ("png", "jpeg", "tiff"):
            from .dicom import read_dicom

            return read_dicom(fp, file, name, limits, user, resize_to)
    from .raster import read_raster

    return read_raster(file, name, fmt, limits, user)
