"""JPEG 2000 decoding at a reduced resolution level, through OpenJPEG's C API (ctypes).

A JPEG 2000 codestream is a wavelet pyramid: decoding with a *resolution factor* r keeps only
the coarsest ``levels + 1 - r`` resolutions and returns an image of ceil(n / 2^r) per axis (for
an image origin at 0), skipping the code-blocks of the finer resolutions, which hold most of the
data. Neither imagecodecs' ``jpeg2k_decode`` nor pylibjpeg-openjpeg's ``decode`` exposes that
factor, so the library both link, ``libopenjp2``, is called directly: the copy shipped inside
the imagecodecs wheel (``imagecodecs.libs`` / ``.dylibs``) first, else the system's (Debian
``libopenjp2-7``). :func:`library` is None when neither is found; callers then decode at full
resolution.

:func:`decode_reduced` returns the (h, w) int32 samples of component 0, already clipped by
OpenJPEG to the codestream's precision, and the codestream's precision and signedness.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Level", "library", "library_version", "decode_reduced"]

logger = logging.getLogger(__name__)

_OPJ_CODEC_J2K = 0
#: opj_dparameters_t is about 8.3 KB in OpenJPEG 2.x (two 4096-byte paths); this buffer is larger.
_DPARAMETERS_BYTES = 1 << 14
_READ_FN = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_MSG_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)


class _Comp(ctypes.Structure):
    _fields_ = [("dx", ctypes.c_uint32), ("dy", ctypes.c_uint32), ("w", ctypes.c_uint32), ("h", ctypes.c_uint32),
                ("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("prec", ctypes.c_uint32), ("bpp", ctypes.c_uint32),
                ("sgnd", ctypes.c_uint32), ("resno_decoded", ctypes.c_uint32), ("factor", ctypes.c_uint32),
                ("data", ctypes.POINTER(ctypes.c_int32)), ("alpha", ctypes.c_uint16)]


class _Image(ctypes.Structure):
    _fields_ = [("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("x1", ctypes.c_uint32), ("y1", ctypes.c_uint32),
                ("numcomps", ctypes.c_uint32), ("color_space", ctypes.c_int), ("comps", ctypes.POINTER(_Comp)),
                ("icc_profile_buf", ctypes.c_void_p), ("icc_profile_len", ctypes.c_uint32)]


@dataclass(frozen=True)
class Level:
    """One decoded resolution level: ``samples`` (h, w) int32, the factor r it was decoded at,
    the codestream's full size (w, h), its precision in bits and whether it is signed."""

    samples: np.ndarray
    factor: int
    full_wh: tuple[int, int]
    precision: int
    signed: bool


_LOCK = threading.Lock()
_LIB: list[Any] = []  # [] not looked up yet; [None] not found; [lib] loaded


def _candidates() -> list[str]:
    out: list[str] = []
    spec = importlib.util.find_spec("imagecodecs")
    if spec is not None and spec.origin is not None:
        pkg = os.path.dirname(spec.origin)
        for folder in (pkg + ".libs", os.path.join(pkg, ".dylibs"), pkg):
            out += sorted(glob.glob(os.path.join(folder, "*openjp2*")))
    system = ctypes.util.find_library("openjp2")
    if system:
        out.append(system)
    return out


def _bind(lib: Any) -> Any:
    p, u32, i, b = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_int
    signatures = {
        "opj_version": ([], ctypes.c_char_p),
        "opj_create_decompress": ([i], p),
        "opj_set_default_decoder_parameters": ([p], None),
        "opj_setup_decoder": ([p, p], b),
        "opj_codec_set_threads": ([p, i], b),
        "opj_set_error_handler": ([p, _MSG_FN, p], b),
        "opj_stream_create": ([ctypes.c_size_t, b], p),
        "opj_stream_set_read_function": ([p, _READ_FN], None),
        "opj_stream_set_skip_function": ([p, _SKIP_FN], None),
        "opj_stream_set_seek_function": ([p, _SEEK_FN], None),
        "opj_stream_set_user_data_length": ([p, ctypes.c_uint64], None),
        "opj_read_header": ([p, p, ctypes.POINTER(ctypes.POINTER(_Image))], b),
        "opj_set_decoded_resolution_factor": ([p, u32], b),
        "opj_decode": ([p, p, ctypes.POINTER(_Image)], b),
        "opj_end_decompress": ([p, p], b),
        "opj_stream_destroy": ([p], None),
        "opj_destroy_codec": ([p], None),
        "opj_image_destroy": ([ctypes.POINTER(_Image)], None),
    }
    for name, (args, res) in signatures.items():
        fn = getattr(lib, name)  # AttributeError: too old a libopenjp2
        fn.argtypes, fn.restype = args, res
    return lib


def library() -> Any | None:
    """The loaded ``libopenjp2`` (OpenJPEG ≥ 2.3), or None when none is found (logged once)."""
    with _LOCK:
        if not _LIB:
            found = None
            for path in _candidates():
                try:
                    found = _bind(ctypes.CDLL(path))
                    logger.debug("libopenjp2 %s loaded from %s", found.opj_version().decode(), path)
                    break
                except (OSError, AttributeError) as exc:
                    logger.debug("libopenjp2 at %s not usable: %s", path, exc)
            if found is None:
                logger.debug("no libopenjp2 found; JPEG 2000 is decoded at full resolution only")
            _LIB.append(found)
        return _LIB[0]


def library_version() -> str | None:
    """OpenJPEG version of :func:`library`, or None."""
    lib = library()
    return None if lib is None else lib.opj_version().decode()


class _MemoryStream:
    """The read/skip/seek callbacks of an input opj_stream_t over ``data`` (kept alive by self)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0  # no copy of data
        self.pos = 0
        self.read = _READ_FN(self._read)
        self.skip = _SKIP_FN(self._skip)
        self.seek = _SEEK_FN(self._seek)

    def _read(self, buffer: int, size: int, _user: int) -> int:
        n = min(size, len(self.data) - self.pos)
        if n <= 0:
            return ctypes.c_size_t(-1).value
        ctypes.memmove(buffer, self.address + self.pos, n)
        self.pos += n
        return n

    def _skip(self, offset: int, _user: int) -> int:
        new = min(max(self.pos + offset, 0), len(self.data))
        moved, self.pos = new - self.pos, new
        return moved

    def _seek(self, offset: int, _user: int) -> int:
        if not 0 <= offset <= len(self.data):
            return 0
        self.pos = offset
        return 1


def decode_reduced(data: bytes, factor: int, threads: int = 1) -> Level | None:
    """Component 0 of the J2K/HTJ2K codestream ``data`` decoded at resolution factor
    ``factor`` or, when the codestream has fewer decomposition levels, at the largest factor it
    allows (never below 1). None when no libopenjp2 is loaded or the codestream is not a single
    unsubsampled component at origin 0 (the caller decodes at full resolution). Raises
    RuntimeError with OpenJPEG's message when the data does not decode."""
    lib = library()
    if lib is None or factor < 1:
        return None
    errors: list[str] = []
    on_error = _MSG_FN(lambda msg, _u: errors.append((msg or b"").decode(errors="replace").strip()))
    mem = _MemoryStream(data)
    codec = lib.opj_create_decompress(_OPJ_CODEC_J2K)
    stream = lib.opj_stream_create(1 << 20, 1)
    image = ctypes.POINTER(_Image)()
    params = ctypes.create_string_buffer(_DPARAMETERS_BYTES)
    try:
        if not codec or not stream:
            raise RuntimeError("OpenJPEG could not create a decoder")
        lib.opj_set_error_handler(codec, on_error, None)
        lib.opj_stream_set_read_function(stream, mem.read)
        lib.opj_stream_set_skip_function(stream, mem.skip)
        lib.opj_stream_set_seek_function(stream, mem.seek)
        lib.opj_stream_set_user_data_length(stream, len(data))
        lib.opj_set_default_decoder_parameters(params)
        if not lib.opj_setup_decoder(codec, params):
            raise RuntimeError("OpenJPEG decoder setup failed")
        if threads > 1:
            lib.opj_codec_set_threads(codec, int(threads))
        if not lib.opj_read_header(stream, codec, ctypes.byref(image)):
            raise RuntimeError(f"OpenJPEG could not read the codestream header: {'; '.join(errors) or 'no message'}")
        img = image.contents
        comp = img.comps[0]
        if img.numcomps != 1 or img.x0 or img.y0 or comp.dx != 1 or comp.dy != 1:
            logger.debug("J2K codestream with %d components, origin (%d, %d): decoded at full resolution",
                         img.numcomps, img.x0, img.y0)
            return None
        full_wh = (int(img.x1), int(img.y1))
        used = int(factor)
        while used >= 1 and not lib.opj_set_decoded_resolution_factor(codec, used):
            used -= 1  # the codestream has fewer decomposition levels than asked for
        if used < 1:
            logger.debug("J2K codestream has no decomposition level to drop: decoded at full resolution")
            return None
        errors.clear()
        if not lib.opj_decode(codec, stream, image) or not lib.opj_end_decompress(codec, stream):
            raise RuntimeError(f"OpenJPEG could not decode the codestream: {'; '.join(errors) or 'no message'}")
        comp = image.contents.comps[0]
        h, w = int(comp.h), int(comp.w)
        if not comp.data or (w, h) != tuple(-(-n // (1 << used)) for n in full_wh):
            raise RuntimeError(f"OpenJPEG returned {w} x {h} at factor {used} for a {full_wh[0]} x {full_wh[1]} image")
        samples = np.ctypeslib.as_array(comp.data, shape=(h, w)).copy()
        return Level(samples=samples, factor=used, full_wh=full_wh, precision=int(comp.prec), signed=bool(comp.sgnd))
    finally:
        if image:
            lib.opj_image_destroy(image)
        if stream:
            lib.opj_stream_destroy(stream)
        if codec:
            lib.opj_destroy_codec(codec)
