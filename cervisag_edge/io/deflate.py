"""Deflate-bomb guard for DICOM files in the Deflated Explicit VR Little Endian transfer syntax.

pydicom inflates a deflated data set whole, in memory, before it parses a single element, so a
1 MiB file can claim gigabytes. :func:`check_deflated_size` streams the data set through zlib in
bounded chunks and refuses it once the inflated size passes ``ReadLimits.max_bytes``, before
pydicom sees the file. Memory stays at one chunk whatever the stream claims.
"""
from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from ..errors import InputError
from .image import ReadLimits

__all__ = ["check_deflated_size", "DEFLATED_TS"]

DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_CHUNK_BYTES = 1 << 16
_OUT_BYTES = 1 << 20


def _meta_end(fp: BinaryIO) -> tuple[str, int] | None:
    """(transfer syntax UID, byte offset of the data set) from the Part 10 file meta group of the
    open file ``fp``, or None when it has no DICM preamble or its meta group cannot be walked
    (pydicom decides then). Leaves ``fp`` at an unspecified position."""
    fp.seek(0)
    if fp.read(132)[128:132] != b"DICM":
        return None
    offset, uid = 132, ""
    for _ in range(256):  # a meta group has about a dozen elements
        head = fp.read(8)
        if len(head) < 8:
            return None
        group, element = struct.unpack("<HH", head[:4])
        if group != 0x0002:
            return uid, offset
        vr = head[4:6]
        if vr in _LONG_VRS:
            extra = fp.read(4)
            if len(extra) < 4:
                return None
            (length,) = struct.unpack("<I", extra)
            header = 12
        else:
            (length,) = struct.unpack("<H", head[6:8])
            header = 8
        value = fp.read(length) if element == 0x0010 and length < 256 else None
        if value is not None:
            uid = value.rstrip(b"\x00 ").decode("ascii", "replace")
        else:
            fp.seek(length, 1)
        offset += header + length
    return None


def check_deflated_size(fp: BinaryIO, name: str, limits: ReadLimits) -> None:
    """Raise InputError when the deflated data set of the open file ``fp`` inflates to more than
    ``limits.max_bytes``. Does nothing for other transfer syntaxes; rewinds ``fp`` to 0."""
    try:
        _check(fp, name, limits)
    finally:
        fp.seek(0)


def _check(fp: BinaryIO, name: str, limits: ReadLimits) -> None:
    found = _meta_end(fp)
    if found is None or found[0] != DEFLATED_TS:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    fp.seek(found[1])
    try:
        while not inflater.eof:
            chunk = fp.read(_CHUNK_BYTES)
            if not chunk:
                break
            while chunk:
                total += len(inflater.decompress(chunk, _OUT_BYTES))
                chunk = inflater.unconsumed_tail
                if total > limits.max_bytes:
                    raise InputError(
                        f"{name}: (0002,0010) TransferSyntaxUID Deflated Explicit VR Little Endian data set "
                        f"inflates to more than {limits.max_bytes} bytes (ReadLimits.max_bytes); refused as a "
                        "decompression bomb"
                    )
    except zlib.error as exc:
        raise InputError(f"{name}: deflated data set is corrupt (zlib: {exc})") from None
