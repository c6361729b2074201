"""Pixel decoding of one single-frame greyscale DICOM image, for every transfer syntax CR/DX archives use.

Encapsulated syntaxes are decoded with imagecodecs (BSD-3-Clause; libjpeg-turbo 3, CharLS,
OpenJPEG and its own DICOM RLE codec), which covers what pydicom's permissive plugins leave out:
JPEG Lossless (Process 14, SV1 and the other predictors) and 12-bit JPEG Extended. Native
(uncompressed) data is read by pydicom's own numpy path. When imagecodecs is absent, or fails on a
stream, pydicom's decoder plugins (pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls) are tried next.

:func:`decode_grey` returns the stored values as an (H, W) integer array; the caller applies
the Modality LUT, VOI and inversion. Only monochrome images reach it (colour is refused earlier).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, Callable

import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset

__all__ = ["decode_grey", "decoder_for", "codec_table", "DECODER_THREADS", "ENCAPSULATED_DECODERS"]

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
