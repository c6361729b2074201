"""DICOM reading: one open, one parse, header checks before decoding, then a lazy display.

The file is opened once by :func:`cervisag_edge.io.read_image` and parsed once here (pixel data
as bytes); the deflate-bomb check, the header-element cap, the radiograph policy
(:mod:`.radiograph`) and the size limits all work on that one read before any pixel is decoded.
Decoding is :mod:`.codecs`; Modality LUT, VOI and inversion are :mod:`.pixels`, applied to the
small image the model needs and, only when asked for, to the full-resolution display.
"""
from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import InputError
from .capture import captured
from .codecs import decode_grey, decode_level, is_multiresolution
from .deflate import check_deflated_size
from .image import LoadedImage, PixelSource, ReadLimits, ResizeTo
from .levels import LevelPixels, level_factor
from .pixels import DisplayChain, display_chain
from .radiograph import check_radiograph, lateral_cspine_warnings
from .spacing import dicom_spacing

__all__ = ["read_dicom", "SUPPORTED_PHOTOMETRIC", "SUPPORTED_BITS_ALLOCATED"]

logger = logging.getLogger(__name__)

SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
SUPPORTED_BITS_ALLOCATED = (8, 16, 32)
_SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1}
_T = TypeVar("_T")
NOT_DICOM = "not a DICOM file (no DICM preamble / unreadable header)"


def _int_tag(ds: Dataset, keyword: str, tag: str, name: str, default: int | None = None) -> int:
    if keyword not in ds or ds[keyword].value in (None, ""):
        if default is None:
            raise InputError(f"{name}: {tag} {keyword} is missing (not an image, or the file is truncated)")
        return default
    value = ds[keyword].value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        raise InputError(f"{name}: {tag} {keyword} {list(value)!r} has VM {len(value)}; expected 1")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: {tag} {keyword} {value!r} is not an integer") from None


def _looks_like_image(ds: Dataset) -> bool:
    try:
        return all(int(getattr(ds, kw)) > 0 for kw in ("Rows", "Columns", "BitsAllocated"))
    except Exception:  # any missing or garbage value: not an image header
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_header(ds: Dataset, name: str, limits: ReadLimits) -> tuple[str, list[str]]:
    """Refuse unsupported or oversized images from the header alone. Returns (photometric, warnings)."""
    warnings: list[str] = []
    frames = _int_tag(ds, "NumberOfFrames", "(0028,0008)", name, default=1)
    if frames > 1:
        raise InputError(f"{name}: (0028,0008) NumberOfFrames {frames} is not supported; expected 1")
    bits_allocated = _int_tag(ds, "BitsAllocated", "(0028,0100)", name)
    if bits_allocated not in SUPPORTED_BITS_ALLOCATED:
        raise InputError(f"{name}: (0028,0100) BitsAllocated {bits_allocated} is not supported; expected 8, 16 or 32")
    bits_stored = _int_tag(ds, "BitsStored", "(0028,0101)", name, default=bits_allocated)
    if not 1 <= bits_stored <= bits_allocated:
        raise InputError(f"{name}: (0028,0101) BitsStored {bits_stored} is invalid; expected 1..{bits_allocated}")
    pixel_rep = _int_tag(ds, "PixelRepresentation", "(0028,0103)", name, default=0)
    if pixel_rep not in (0, 1):
        raise InputError(f"{name}: (0028,0103) PixelRepresentation {pixel_rep} is invalid; expected 0 or 1")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = _int_tag(ds, "SamplesPerPixel", "(0028,0002)", name, default=1)
    if not photometric:
        if samples != 1:
            raise InputError(f"{name}: (0028,0004) PhotometricInterpretation is missing")
        photometric = "MONOCHROME2"
        warnings.append("(0028,0004) PhotometricInterpretation is missing; assumed MONOCHROME2")
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise InputError(
            f"{name}: (0028,0004) PhotometricInterpretation {photometric!r} is not supported; "
            f"expected {', '.join(SUPPORTED_PHOTOMETRIC)}"
        )
    if samples != _SAMPLES[photometric]:
        raise InputError(
            f"{name}: (0028,0002) SamplesPerPixel {samples} does not match PhotometricInterpretation "
            f"{photometric!r}; expected {_SAMPLES[photometric]}"
        )
    rows = _int_tag(ds, "Rows", "(0028,0010)", name)
    columns = _int_tag(ds, "Columns", "(0028,0011)", name)
    if rows < 1 or columns < 1:
        raise InputError(f"{name}: (0028,0010) Rows x (0028,0011) Columns {rows} x {columns} is invalid; expected > 0")
    if rows * columns > limits.max_pixels:
        raise InputError(
            f"{name}: (0028,0010) Rows x (0028,0011) Columns {rows} x {columns} = {rows * columns} pixels "
            f"exceeds the limit of {limits.max_pixels} (ReadLimits.max_pixels)"
        )
    return photometric, warnings


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """A dataset read with force=True may lack (0002,0010); set it from how pydicom parsed it."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        uid = ImplicitVRLittleEndian
    else:
        uid = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid


def _check_pixel_data(ds: Dataset, name: str, photometric: str) -> None:
    if "PixelData" not in ds:
        for keyword, tag in (("FloatPixelData", "(7FE0,0008)"), ("DoubleFloatPixelData", "(7FE0,0009)")):
            if keyword in ds:
                raise InputError(f"{name}: {tag} {keyword} is not supported; expected (7FE0,0010) PixelData")
        raise InputError(f"{name}: (7FE0,0010) PixelData is missing")
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if ts.is_encapsulated:
        return
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    expected = rows * columns * samples * bits // 8
    found = len(ds.PixelData)
    if found < expected:
        raise InputError(
            f"{name}: (7FE0,0010) PixelData has {found} bytes; expected {expected} "
            f"(Rows {rows} x Columns {columns} x SamplesPerPixel {samples} x BitsAllocated {bits} / 8)"
        )


class _HeaderElementLimit(InputError):
    """Raised by :class:`_CountingReader` when a header holds too many data elements."""


class _CountingReader:
    """A binary file wrapper that stops pydicom once it has made more reads than a header of
    ``max_elements`` data elements needs (pydicom reads each element in two or three calls), so
    a header of millions of elements is refused while parsing instead of after it."""

    def __init__(self, fp: BinaryIO, name: str, max_elements: int) -> None:
        self._fp = fp
        self.name = name
        self._left = 3 * max_elements + 256  # + the file meta group and the pixel data
        self._max_elements = max_elements

    def read(self, size: int = -1) -> bytes:
        self._left -= 1
        if self._left < 0:
            raise _HeaderElementLimit(
                f"{self.name}: header holds more than {self._max_elements} data elements "
                "(ReadLimits.max_header_elements); refused before parsing runs long"
            )
        return self._fp.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()

    def close(self) -> None:  # the caller owns the file
        pass


def _parse(fp: BinaryIO, name: str, limits: ReadLimits) -> tuple[Dataset, bool]:
    """The whole data set from one parse of the open file (pixel data as bytes, not decoded), and
    whether the force=True (no preamble) fallback was needed."""
    reader = _CountingReader(fp, name, limits.max_header_elements)
    try:
        fp.seek(0)
        return pydicom.dcmread(reader), False
    except _HeaderElementLimit:
        raise
    except InvalidDicomError:
        pass
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
        raise InputError(f"{name}: not a DICOM file or truncated header ({type(exc).__name__}: {_one_line(exc)})") from None
    reader = _CountingReader(fp, name, limits.max_header_elements)
    try:
        fp.seek(0)
        ds = pydicom.dcmread(reader, force=True)
    except _HeaderElementLimit:
        raise
    except Exception:  # garbage read with force=True: whatever pydicom raises, it is not DICOM
        raise InputError(f"{name}: {NOT_DICOM}") from None
    if not _looks_like_image(ds):
        raise InputError(f"{name}: {NOT_DICOM}")
    logger.info("%s: no DICM preamble; read with force=True", name)
    return ds, True


def _header_only(ds: Dataset) -> Dataset:
    """``ds`` without its pixel data (the header kept on the LoadedImage), sharing the other
    elements as parsed: ``get_item`` hands over raw elements unconverted (iterating the data set
    would convert every value, 70 ms under load on a DX header), pydicom converts each on access."""
    header = Dataset({tag: ds.get_item(tag) for tag in ds.keys() if tag.group != 0x7FE0})
    header.file_meta = ds.file_meta
    header.set_original_encoding(*ds.original_encoding, character_encoding=ds.original_character_set)
    return header


def read_dicom(fp: BinaryIO, path: Path, name: str, limits: ReadLimits,
               user_spacing: tuple[float, float] | None, resize_to: ResizeTo | None = None) -> LoadedImage:
    """Read one single-frame greyscale projection radiograph from the open file ``fp`` (opened
    once, parsed once). Raises InputError for anything it cannot measure; what pydicom and the
    decoders log is folded into that one line or into the image's warnings. ``resize_to``: see
    :func:`cervisag_edge.io.read_image` (a JPEG 2000 image is then decoded at a reduced level)."""
    with captured() as log:
        try:
            img = _read(fp, path, name, limits, user_spacing, resize_to)
        except InputError as exc:
            raise InputError(_fold(str(exc), log)) from None
    if log:
        extra = tuple(f"decoder/pydicom: {m}" for m in log)
        img = LoadedImage(path=img.path, pixel_spacing_mm=img.pixel_spacing_mm, spacing_source=img.spacing_source,
                          warnings=img.warnings + extra, modality=img.modality, dataset=img.dataset,
                          format=img.format, source=img._source)
    for message in img.warnings:
        logger.debug("%s: %s", name, message)
    return img


def _fold(message: str, log: list[str]) -> str:
    """``message`` plus the first captured log line that it does not already contain (one line)."""
    new = [m for m in log if m and m not in message]
    if not new:
        return message
    return f"{message} [decoder: {' '.join(new[0].split())}]"


def _decode_error(name: str, ds: Dataset, exc: BaseException) -> InputError:
    return InputError(
        f"{name}: (7FE0,0010) PixelData could not be decoded with transfer syntax "
        f"{ds.file_meta.TransferSyntaxUID.name!r} ({type(exc).__name__}: {_one_line(exc)})"
    )


def _decoded(name: str, ds: Dataset, decode: Callable[[], _T]) -> _T:
    """``decode()``, its failures as the one-line InputError of this file."""
    try:
        return decode()
    except (MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except InputError:
        raise
    except BaseException as exc:  # decoder plugins raise many types (pyo3 panics derive from BaseException)
        raise _decode_error(name, ds, exc) from None


def _pixel_source(ds: Dataset, name: str, chain: DisplayChain, resize_to: ResizeTo | None) -> PixelSource:
    """The image's pixels: a reduced JPEG 2000 level when ``resize_to`` asks for at most half the
    image (:mod:`.levels`), else the full resolution decoded now."""
    size_px = (int(ds.Columns), int(ds.Rows))
    if resize_to is not None and is_multiresolution(ds.file_meta.TransferSyntaxUID):
        factor = level_factor(size_px, tuple(resize_to(size_px)))
        level = _decoded(name, ds, lambda: decode_level(ds, factor)) if factor >= 1 else None
        if level is not None:
            def half() -> np.ndarray | None:  # resolution factor 1, for the second stage's windows
                got = _decoded(name, ds, lambda: decode_level(ds, 1))
                return got[0] if got is not None and got[1] == 1 else None

            return LevelPixels(chain, level[0], level[1], size_px, lambda: _decoded(name, ds, lambda: decode_grey(ds)),
                               half=half)
    return chain.pixels(_decoded(name, ds, lambda: decode_grey(ds)))


def _read(fp: BinaryIO, path: Path, name: str, limits: ReadLimits,
          user_spacing: tuple[float, float] | None, resize_to: ResizeTo | None = None) -> LoadedImage:
    check_deflated_size(fp, name, limits)
    ds, forced = _parse(fp, name, limits)
    check_radiograph(ds, name)
    photometric, warnings = _check_header(ds, name, limits)
    _ensure_transfer_syntax(ds)
    _check_pixel_data(ds, name, photometric)
    warnings.extend(lateral_cspine_warnings(ds))
    little = bool(ds.original_encoding[1]) if ds.original_encoding[1] is not None else True
    pixels = _pixel_source(ds, name, display_chain(ds, photometric, little, warnings), resize_to)
    header = _header_only(ds)
    del ds  # a LevelPixels keeps the data set (its compressed pixel data) for a full decode on demand
    if user_spacing is not None:
        spacing, source = user_spacing, "user"
    else:
        spacing, source, spacing_warnings = dicom_spacing(header)
        warnings.extend(spacing_warnings)
    modality = str(header.get("Modality", "") or "") or None
    return LoadedImage(
        path=str(path),
        pixel_spacing_mm=spacing,
        spacing_source=source,
        warnings=tuple(warnings),
        modality=modality,
        dataset=header,
        format="dicom",
        source=pixels,
    )
