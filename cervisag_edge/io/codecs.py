"""Pixel decoding of one single-frame greyscale DICOM image, for every transfer syntax CR/DX archives use.

Encapsulated syntaxes are decoded with imagecodecs (BSD-3-Clause; libjpeg-turbo 3, CharLS,
OpenJPEG and its own DICOM RLE codec), which covers what pydicom's permissive plugins leave out:
JPEG Lossless (Process 14, SV1 and the other predictors) and 12-bit JPEG Extended. Native
(uncompressed) data is read by pydicom's own numpy path. When imagecodecs is absent, or fails on a
stream, pydicom's decoder plugins (pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls) are tried next.

:func:`decode_grey` returns the stored values as an (H, W) integer array; the caller applies
the Modality LUT, VOI and inversion. Only monochrome images reach it (colour is refused earlier).
:func:`decode_level` decodes a JPEG 2000 / HTJ2K image at a reduced resolution level instead
(:mod:`.openjp2`; see :mod:`.levels`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, Callable

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset

__all__ = ["decode_grey", "decode_level", "is_multiresolution", "decoder_for", "codec_table", "DECODER_THREADS",
           "ENCAPSULATED_DECODERS"]

logger = logging.getLogger(__name__)

#: Threads given to decoders that take a thread count (OpenJPEG): all cores, at most 4.
DECODER_THREADS = max(1, min(4, os.cpu_count() or 1))

_JPEG_8 = (_uid.JPEGBaseline8Bit, _uid.JPEGExtended12Bit, _uid.JPEGLossless, _uid.JPEGLosslessSV1)
_JPEG_LS = (_uid.JPEGLSLossless, _uid.JPEGLSNearLossless)
_J2K = (_uid.JPEG2000Lossless, _uid.JPEG2000, _uid.HTJ2KLossless, _uid.HTJ2KLosslessRPCL, _uid.HTJ2K)

#: Transfer syntax → (imagecodecs function, what it wraps) for the encapsulated syntaxes.
ENCAPSULATED_DECODERS: dict[str, tuple[str, str]] = {
    **{str(ts): ("jpeg8_decode", "libjpeg-turbo 3") for ts in _JPEG_8},
    **{str(ts): ("jpegls_decode", "CharLS") for ts in _JPEG_LS},
    **{str(ts): ("jpeg2k_decode", "OpenJPEG") for ts in _J2K},
    str(_uid.RLELossless): ("dicomrle_decode", "imagecodecs DICOM RLE"),
}


def _imagecodecs() -> Any | None:
    if importlib.util.find_spec("imagecodecs") is None:
        return None
    import imagecodecs

    return imagecodecs


def decoder_for(transfer_syntax: str) -> str:
    """Name of the decoder that :func:`decode_grey` uses first for ``transfer_syntax``."""
    ts = _uid.UID(str(transfer_syntax))
    if not ts.is_encapsulated:
        return "pydicom (native)"
    entry = ENCAPSULATED_DECODERS.get(str(ts))
    if entry is not None and _imagecodecs() is not None:
        return f"imagecodecs.{entry[0]} ({entry[1]})"
    return "pydicom plugins"


def codec_table() -> list[tuple[str, str, str]]:
    """(UID, name, decoder) for every transfer syntax the reader decodes on this install."""
    syntaxes = [_uid.ImplicitVRLittleEndian, _uid.ExplicitVRLittleEndian, _uid.ExplicitVRBigEndian,
                _uid.DeflatedExplicitVRLittleEndian, *_JPEG_8, *_JPEG_LS, *_J2K, _uid.RLELossless]
    return [(str(ts), ts.name, decoder_for(ts)) for ts in syntaxes]


def _first_frame(ds: Dataset) -> bytes:
    from pydicom.encaps import get_frame

    return bytes(get_frame(ds.PixelData, 0, number_of_frames=1))


def _rle(ic: Any, data: bytes, ds: Dataset) -> np.ndarray:
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"{'>i' if signed else '>u'}{bits // 8}") if bits > 8 else np.dtype("i1" if signed else "u1")
    flat = np.frombuffer(ic.dicomrle_decode(data, dtype), dtype=dtype)
    return flat.reshape(int(ds.Rows), int(ds.Columns)).astype(dtype.newbyteorder("="))


def _imagecodecs_decode(ds: Dataset, ts: str, threads: int) -> np.ndarray | None:
    ic = _imagecodecs()
    entry = ENCAPSULATED_DECODERS.get(ts)
    if ic is None or entry is None:
        return None
    data = _first_frame(ds)
    if ts == str(_uid.RLELossless):
        return _rle(ic, data, ds)
    func: Callable[..., np.ndarray] = getattr(ic, entry[0])
    if entry[0] == "jpeg2k_decode":
        return np.asarray(func(data, numthreads=threads))
    return np.asarray(func(data))


def decode_grey(ds: Dataset, threads: int = DECODER_THREADS) -> np.ndarray:
    """(Rows, Columns) stored values of the first frame of a monochrome image, as an integer or
    float array of the file's sample type (sign from PixelRepresentation)."""
    ts = str(ds.file_meta.TransferSyntaxUID)
    arr: np.ndarray | None = None
    if _uid.UID(ts).is_encapsulated:
        try:
            arr = _imagecodecs_decode(ds, ts, threads)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a stream imagecodecs rejects may still decode with another plugin
            logger.debug("imagecodecs failed on %s (%s: %s); trying pydicom's plugins", ts, type(exc).__name__, exc)
            arr = None
    if arr is None:
        from pydicom.pixels import pixel_array

        arr = pixel_array(ds)
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    rows, columns = int(ds.Rows), int(ds.Columns)
    if arr.shape != (rows, columns):
        raise ValueError(f"decoded shape {arr.shape} does not match Rows x Columns {rows} x {columns}")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if signed and arr.dtype.kind == "u":  # the codec returned the bit pattern; masking sign-extends it
        arr = arr.view(arr.dtype.str.replace("u", "i"))
    return arr


def is_multiresolution(transfer_syntax: str) -> bool:
    """Whether ``transfer_syntax`` is a JPEG 2000 / HTJ2K one (its codestream holds resolution levels)."""
    return str(transfer_syntax) in {str(ts) for ts in _J2K}


def decode_level(ds: Dataset, factor: int, threads: int = DECODER_THREADS) -> tuple[np.ndarray, int] | None:
    """(stored values (ceil(Rows / 2^r), ceil(Columns / 2^r)), r) of the first frame of a JPEG 2000
    or HTJ2K image decoded at resolution factor r = ``factor`` (or the largest its codestream
    allows), with the sample type :func:`decode_grey` gives. None, with a debug log, when the
    level cannot stand for the image (no libopenjp2, no level to drop, several components or a
    sign unlike PixelRepresentation): the caller then decodes the full resolution. Raises when
    the codestream does not decode."""
    from . import openjp2

    ts = str(ds.file_meta.TransferSyntaxUID)
    if not is_multiresolution(ts):
        return None
    if openjp2.library() is None:
        logger.debug("no libopenjp2: %s decoded at full resolution", _uid.UID(ts).name)
        return None
    level = openjp2.decode_reduced(_first_frame(ds), factor, threads)
    if level is None:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    if level.full_wh != (columns, rows):
        raise ValueError(f"codestream size {level.full_wh[0]} x {level.full_wh[1]} does not match "
                         f"Columns x Rows {columns} x {rows}")
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored", bits_allocated) or bits_allocated)
    if level.signed != signed:
        logger.debug("J2K signed %s against PixelRepresentation %d: full resolution decoded", level.signed, int(signed))
        return None
    # OpenJPEG clips to the codestream precision; a codestream wider than BitsStored (OpenJPH writes
    # 16 bits for 12-bit data) is clipped to BitsStored, where the low-pass may overshoot at the ends
    top = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
    bottom = -(1 << (bits_stored - 1)) if signed else 0
    samples = level.samples
    if level.precision > bits_stored:
        samples = np.clip(samples, bottom, top, out=samples)
    kind = "i" if signed else "u"
    dtype = np.dtype(f"{kind}{bits_allocated // 8}") if bits_allocated in (8, 16) else np.dtype(np.int32)
    return samples.astype(dtype), level.factor
