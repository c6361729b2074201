"""DICOM reading: header checks before decoding, then Modality LUT, VOI and MONOCHROME1 inversion.

Colour images are converted to grey with a warning: RGB and YBR_* through pydicom's RGB
conversion, PALETTE COLOR through :func:`pydicom.pixels.apply_color_lut`, then BT.601 luma and a
robust percentile window (VOI attributes apply to grey images only).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from .. import imaging
from ..errors import InputError
from .deflate import check_deflated_size
from .image import LoadedImage, ReadLimits, finalize_display
from .spacing import dicom_spacing

__all__ = ["read_dicom", "read_dicom_header", "SUPPORTED_PHOTOMETRIC", "SUPPORTED_BITS_ALLOCATED"]

logger = logging.getLogger(__name__)

SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
SUPPORTED_BITS_ALLOCATED = (8, 16, 32)
_SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3}
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


def read_dicom_header(path: Path, name: str) -> tuple[Dataset, bool]:
    """Header without pixel data, and whether the force=True (no preamble) fallback was needed."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True), False
    except InvalidDicomError:
        pass
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{name}: not a DICOM file or truncated header ({type(exc).__name__}: {_one_line(exc)})") from None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # garbage read with force=True: whatever pydicom raises, it is not DICOM
        raise InputError(f"{name}: {NOT_DICOM}") from None
    if not _looks_like_image(ds):
        raise InputError(f"{name}: {NOT_DICOM}")
    logger.info("%s: no DICM preamble; read with force=True", name)
    return ds, True


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
    if photometric == "YBR_FULL_422":
        samples = 2  # two luma samples share one Cb and one Cr (PS3.3 C.7.6.3.1.2)
    expected = rows * columns * samples * bits // 8
    found = len(ds.PixelData)
    if found < expected:
        raise InputError(
            f"{name}: (7FE0,0010) PixelData has {found} bytes; expected {expected} "
            f"(Rows {rows} x Columns {columns} x SamplesPerPixel {samples} x BitsAllocated {bits} / 8)"
        )


def _lut_item(item: Dataset, little_endian: bool) -> tuple[np.ndarray, int, int]:
    """(LUT data (N,), first mapped value, bits per entry) of a Modality/VOI LUT Sequence item."""
    descriptor = [int(v) for v in item.LUTDescriptor]
    if len(descriptor) != 3:
        raise ValueError(f"LUTDescriptor {descriptor!r} has VM {len(descriptor)}; expected 3")
    n_entries = descriptor[0] or 65536
    first_mapped, bits = descriptor[1], descriptor[2]
    raw = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        dtype = np.uint8 if bits <= 8 and len(raw) == n_entries else np.dtype("<u2" if little_endian else ">u2")
        data = np.frombuffer(raw, dtype=dtype).astype(np.int64)
    elif isinstance(raw, (int, np.integer)):
        data = np.array([int(raw)], dtype=np.int64)
    else:
        data = np.array([int(v) for v in raw], dtype=np.int64)
    return data[:n_entries], first_mapped, bits


def _modality(ds: Dataset, stored: np.ndarray, signed: bool, little: bool, warnings: list[str]) -> np.ndarray:
    seq = ds.get("ModalityLUTSequence")
    if seq:
        data, first_mapped, _bits = _lut_item(seq[0], little)
        if signed and first_mapped > 32767:  # US descriptor value read as signed (PS3.3 C.11.1.1.1)
            first_mapped -= 65536
        return imaging.apply_lut_table(stored, data, first_mapped)
    slope, intercept = 1.0, 0.0
    try:
        if "RescaleSlope" in ds:
            slope = float(ds.RescaleSlope)
        if "RescaleIntercept" in ds:
            intercept = float(ds.RescaleIntercept)
    except (TypeError, ValueError) as exc:
        warnings.append(f"(0028,1053) RescaleSlope / (0028,1052) RescaleIntercept unreadable ({_one_line(exc)}); identity used")
        slope, intercept = 1.0, 0.0
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        warnings.append(
            f"(0028,1053) RescaleSlope {slope!r} / (0028,1052) RescaleIntercept {intercept!r} invalid; identity used"
        )
        slope, intercept = 1.0, 0.0
    return imaging.apply_rescale(stored, slope, intercept)


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _voi(ds: Dataset, values: np.ndarray, little: bool, warnings: list[str]) -> np.ndarray:
    seq = ds.get("VOILUTSequence")
    if seq:
        data, first_mapped, bits = _lut_item(seq[0], little)
        top = int(data.max()) if data.size else 0
        if top > 2**bits - 1:
            new_bits = max(1, int(top).bit_length())
            warnings.append(
                f"(0028,3002) LUTDescriptor bits {bits} too small for LUTData maximum {top}; used {new_bits}"
            )
            bits = new_bits
        return imaging.apply_voi_lut_table(values, data, first_mapped, bits)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
        try:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            if function == "SIGMOID":
                return imaging.window_sigmoid(values, center, width)
            if function == "LINEAR_EXACT":
                return imaging.window_linear_exact(values, center, width)
            if function != "LINEAR":
                warnings.append(f"(0028,1056) VOILUTFunction {function!r} is unknown; LINEAR used")
            return imaging.window_linear(values, center, width)
        except (TypeError, ValueError, IndexError) as exc:
            warnings.append(
                f"(0028,1050) WindowCenter / (0028,1051) WindowWidth unusable ({_one_line(exc)}); "
                "robust percentile window used"
            )
    else:
        warnings.append("no VOI LUT or window in the file; robust percentile window (0.5-99.5 %) used")
    return imaging.percentile_window(values, ignore_value=imaging.border_constant_value(values))


#: Largest stored-value range converted through a lookup table (one entry per stored value).
_LUT_MAX_ENTRIES = 1 << 17


def _grey_display(ds: Dataset, arr: np.ndarray, photometric: str, little: bool, warnings: list[str]) -> np.ndarray:
    """Stored values → display. For integer pixels whose VOI does not depend on image statistics,
    the element-wise chain (mask, Modality LUT, VOI, inversion) runs once per distinct stored value
    and the image is converted by table lookup: the same numbers, without full-size temporaries."""
    if np.issubdtype(arr.dtype, np.integer) and arr.size > _LUT_MAX_ENTRIES:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < _LUT_MAX_ENTRIES:
            table_warnings: list[str] = []
            domain = np.arange(lo, hi + 1, dtype=np.int64).astype(arr.dtype)
            table = np.asarray(_grey_chain(ds, domain, photometric, little, table_warnings), dtype=np.float32)
            if not any("percentile" in w for w in table_warnings):  # statistics-free VOI only
                warnings.extend(table_warnings)
                index = arr if lo == 0 else np.subtract(arr, lo, dtype=np.int32)
                return np.take(table, index)
    return _grey_chain(ds, arr, photometric, little, warnings)


def _grey_chain(ds: Dataset, arr: np.ndarray, photometric: str, little: bool, warnings: list[str]) -> np.ndarray:
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if np.issubdtype(arr.dtype, np.integer):
        bits_stored = int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated)
        arr = imaging.mask_bits_stored(arr, bits_stored, signed)
    values = _modality(ds, arr, signed, little, warnings)
    display = _voi(ds, values, little, warnings)
    if photometric == "MONOCHROME1":
        display = imaging.invert_monochrome1(display)
    return display


def _colour_display(ds: Dataset, arr: np.ndarray, photometric: str, warnings: list[str]) -> np.ndarray:
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    grey = imaging.rgb_to_grey(arr)
    warnings.append(
        f"(0028,0004) PhotometricInterpretation {photometric!r} converted to grey (BT.601 luma) "
        "with a robust percentile window"
    )
    return imaging.percentile_window(grey, ignore_value=imaging.border_constant_value(grey))


def read_dicom(path: Path, name: str, limits: ReadLimits, user_spacing: tuple[float, float] | None) -> LoadedImage:
    """Read one single-frame DICOM image. Raises InputError for anything it cannot measure."""
    check_deflated_size(path, name, limits)
    header, forced = read_dicom_header(path, name)
    photometric, warnings = _check_header(header, name, limits)
    if forced:
        _ensure_transfer_syntax(header)
    try:
        ds = pydicom.dcmread(path, force=forced)
    except (EOFError, OSError, ValueError) as exc:
        raise InputError(f"{name}: truncated or unreadable DICOM ({type(exc).__name__}: {_one_line(exc)})") from None
    _ensure_transfer_syntax(ds)
    _check_pixel_data(ds, name, photometric)
    from pydicom.pixels import pixel_array

    try:
        arr = pixel_array(ds)
    except (MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # decoder plugins raise many types (pyo3 panics derive from BaseException)
        raise InputError(
            f"{name}: (7FE0,0010) PixelData could not be decoded with transfer syntax "
            f"{ds.file_meta.TransferSyntaxUID.name!r} ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    little = bool(ds.original_encoding[1]) if ds.original_encoding[1] is not None else True
    if _SAMPLES[photometric] == 3 or photometric == "PALETTE COLOR":
        display = _colour_display(ds, arr, photometric, warnings)
    else:
        display = _grey_display(ds, arr, photometric, little, warnings)
    if user_spacing is not None:
        spacing, source = user_spacing, "user"
    else:
        spacing, source, spacing_warnings = dicom_spacing(header)
        warnings.extend(spacing_warnings)
    for message in warnings:
        logger.warning("%s: %s", name, message)
    modality = str(header.get("Modality", "") or "") or None
    return LoadedImage(
        path=str(path),
        display=finalize_display(display, owned=True),
        pixel_spacing_mm=spacing,
        spacing_source=source,
        warnings=tuple(warnings),
        modality=modality,
        dataset=header,
        format="dicom",
    )
