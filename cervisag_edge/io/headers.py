"""Cheap header parsing: file-type sniffing and PNG/JPEG/TIFF dimensions without decoding pixels.

These functions read only a few header bytes so that a decompression bomb (e.g. a PNG whose
IHDR claims 40000 x 40000 pixels) is refused before any pixel buffer is allocated.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

from ..errors import InputError

__all__ = ["sniff_format", "raster_dimensions"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


def sniff_format(head: bytes) -> str | None:
    """Format from the first 132 bytes of a file: "png", "jpeg", "tiff", "dicom" (DICM preamble) or None."""
    # DICM first: a DICOM preamble may itself hold a TIFF header (dual-personality files, PS3.10 7.5).
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def raster_dimensions(fp: BinaryIO, fmt: str, name: str) -> tuple[int, int]:
    """(width, height) from the header of a PNG, JPEG or TIFF file open in binary mode."""
    try:
        if fmt == "png":
            return _png_dimensions(fp, name)
        if fmt == "jpeg":
            return _jpeg_dimensions(fp, name)
        if fmt == "tiff":
            return _tiff_dimensions(fp, name)
    except struct.error:
        raise InputError(f"{name}: truncated {fmt.upper()} header") from None
    raise ValueError(f"unknown raster format {fmt!r}")


def _read_exact(fp: BinaryIO, n: int, name: str, what: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise InputError(f"{name}: truncated {what}")
    return data


def _png_dimensions(fp: BinaryIO, name: str) -> tuple[int, int]:
    fp.seek(0)
    head = _read_exact(fp, 24, name, "PNG header (IHDR)")
    if head[12:16] != b"IHDR":
        raise InputError(f"{name}: PNG first chunk {head[12:16]!r} is not b'IHDR'")
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        raise InputError(f"{name}: PNG IHDR size {width} x {height} is invalid; expected > 0")
    return int(width), int(height)


def _jpeg_dimensions(fp: BinaryIO, name: str) -> tuple[int, int]:
    fp.seek(2)  # after SOI
    while True:
        byte = fp.read(1)
        if not byte:
            raise InputError(f"{name}: JPEG has no start-of-frame (SOF) marker")
        if byte != b"\xff":
            raise InputError(f"{name}: JPEG marker expected, found byte 0x{byte[0]:02X}")
        marker = 0xFF
        while marker == 0xFF:  # fill bytes
            nxt = fp.read(1)
            if not nxt:
                raise InputError(f"{name}: JPEG has no start-of-frame (SOF) marker")
            marker = nxt[0]
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker in (0xD9, 0xDA):
            raise InputError(f"{name}: JPEG has no start-of-frame (SOF) marker before the scan")
        (length,) = struct.unpack(">H", _read_exact(fp, 2, name, "JPEG segment"))
        if length < 2:
            raise InputError(f"{name}: JPEG segment 0xFF{marker:02X} length {length} is invalid")
        if marker in _JPEG_SOF:
            _precision, height, width = struct.unpack(">BHH", _read_exact(fp, 5, name, "JPEG SOF segment"))
            if width == 0 or height == 0:
                raise InputError(f"{name}: JPEG SOF size {width} x {height} is not supported; expected > 0")
            return int(width), int(height)
        fp.seek(length - 2, 1)


def _tiff_dimensions(fp: BinaryIO, name: str) -> tuple[int, int]:
    fp.seek(0)
    head = _read_exact(fp, 8, name, "TIFF header")
    endian = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(endian + "H", head[2:4])
    if magic == 42:
        (ifd_offset,) = struct.unpack(endian + "I", head[4:8])
        count_fmt, entry_size, value_size = "H", 12, 4
    else:  # BigTIFF (43): 8-byte offsets
        rest = _read_exact(fp, 8, name, "BigTIFF header")
        (ifd_offset,) = struct.unpack(endian + "Q", rest)
        count_fmt, entry_size, value_size = "Q", 20, 8
    fp.seek(ifd_offset)
    count_size = struct.calcsize(count_fmt)
    (n_entries,) = struct.unpack(endian + count_fmt, _read_exact(fp, count_size, name, "TIFF IFD"))
    if n_entries > 4096:
        raise InputError(f"{name}: TIFF IFD entry count {n_entries} is implausible")
    table = _read_exact(fp, n_entries * entry_size, name, "TIFF IFD")
    sizes: dict[int, int] = {}
    for i in range(n_entries):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, typ = struct.unpack(endian + "HH", entry[:4])
        if tag not in (256, 257):
            continue
        value = entry[entry_size - value_size :]
        if typ == 3:  # SHORT
            (sizes[tag],) = struct.unpack(endian + "H", value[:2])
        elif typ == 4:  # LONG
            (sizes[tag],) = struct.unpack(endian + "I", value[:4])
        elif typ == 16 and value_size == 8:  # LONG8
            (sizes[tag],) = struct.unpack(endian + "Q", value)
        else:
            raise InputError(f"{name}: TIFF tag {tag} has field type {typ}; expected SHORT, LONG or LONG8")
    if 256 not in sizes or 257 not in sizes:
        raise InputError(f"{name}: TIFF first IFD lacks ImageWidth (256) or ImageLength (257)")
    width, height = sizes[256], sizes[257]
    if width == 0 or height == 0:
        raise InputError(f"{name}: TIFF size {width} x {height} is invalid; expected > 0")
    return int(width), int(height)
