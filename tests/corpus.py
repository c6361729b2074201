"""A generated corpus of hostile and odd inputs for the robustness tests (nothing binary is committed).

Every case is built here from pydicom datasets, OpenCV encodings or raw byte manipulation. Each
:class:`Case` states the outcome class the runtime must reach — ``"ok"`` (a measurement) or
``"error"`` (a one-line error naming the file) — and why. ``bomb`` marks inputs whose header
claims far more pixels or bytes than the file holds; the tests also check memory for those.

>>> from corpus import CASES, build_case
>>> path = build_case(CASES["dicom_rle"], tmp_dir)
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = ["Case", "CASES", "build_case", "valid_dataset", "spine_like", "dicom_bytes", "header_bomb",
           "SIZE_PX", "JPEG_LOSSLESS_SKIP_REASON"]

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
#: (rows, cols) of the valid images: small, so that each measurement costs one inference.
SIZE_PX = (96, 80)
JPEG_LOSSLESS_SKIP_REASON = (
    "JPEG Lossless (Process 14, 1.2.840.10008.1.2.4.70) has no encoder in pydicom or its plugins "
    "(pylibjpeg decodes it only), so no such file can be generated"
)


def spine_like(rows: int = SIZE_PX[0], cols: int = SIZE_PX[1], bits: int = 12, seed: int = 0) -> np.ndarray:
    """(rows, cols) uint16 test image: a bright curved column of blocks on a soft-tissue gradient, with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    top = 2**bits - 1
    img = 0.15 * top + 0.25 * top * (x / max(cols - 1, 1))
    centre = cols * (0.45 + 0.08 * np.sin(np.pi * y / rows))
    block = (np.abs(x - centre) < cols * 0.12) & ((y.astype(int) // max(rows // 8, 1)) % 2 == 0)
    img = np.where(block, 0.8 * top, img) + rng.normal(0.0, 0.01 * top, size=(rows, cols))
    return np.clip(img, 0, top).astype(np.uint16)


def valid_dataset(pixels: np.ndarray | None = None, *, ts: UID = ExplicitVRLittleEndian, **attrs: Any) -> Dataset:
    """A small valid MONOCHROME2 CR image with patient identity, spacing and a window."""
    px = spine_like() if pixels is None else pixels
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = "Robust^Case"
    ds.PatientID = "RB-0001"
    for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        setattr(ds, keyword, "")  # Type 2: present, empty, as modalities send them
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.Rows, ds.Columns = px.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = px.dtype.itemsize * 8
    ds.BitsStored = 12 if px.dtype == np.uint16 else ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if px.dtype.kind == "i" else 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    for key, value in attrs.items():
        setattr(ds, key, value)
    endian = ">" if ts == ExplicitVRBigEndian else "<"
    data = px.astype(px.dtype.newbyteorder(endian)).tobytes()
    ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")
    return ds


def dicom_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    """The Part 10 encoding of ``ds`` (``preamble=False``: the bare data set, no preamble or meta)."""
    import io

    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:
        ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def _pixel_data_offset(raw: bytes) -> int:
    """Byte offset of the first pixel byte of an explicit VR little endian file (after the 12-byte header)."""
    return raw.rindex(b"\xe0\x7f\x10\x00") + 12


def header_bomb(path: Path, n_elements: int, *, deflated: bool = False) -> None:
    """A valid image whose header holds ``n_elements`` copies of one empty private element.

    Parsing time grows with ``n_elements`` while memory does not (the copies share one tag). The
    plain file is refused by ``ReadLimits.max_header_elements`` while parsing; the ``deflated``
    one (Deflated Explicit VR Little Endian, which pydicom inflates and parses out of our reader's
    sight) still parses for a long time: the study used for the per-study timeout.
    """
    element = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 0)
    if not deflated:
        raw = dicom_bytes(valid_dataset())
        cut = raw.index(b"\x08\x00\x16\x00")  # (0008,0016) SOPClassUID, first data set element
        path.write_bytes(raw[:cut] + element * n_elements + raw[cut:])
        return
    raw = dicom_bytes(valid_dataset(ts=DeflatedExplicitVRLittleEndian))
    (meta_len,) = struct.unpack("<I", raw[140:144])
    meta_end = 144 + meta_len
    body = zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    cut = body.index(b"\x08\x00\x16\x00")
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = comp.compress(body[:cut]) + comp.compress(element * n_elements) + comp.compress(body[cut:]) + comp.flush()
    path.write_bytes(raw[:meta_end] + data)


# ------------------------------------------------------------------------------------ builders


def _write(ds: Dataset) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(dicom_bytes(ds))


def _raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _truncated(where: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        raw = dicom_bytes(valid_dataset())
        offsets = {
            "preamble": 100,  # inside the 128-byte preamble, before "DICM"
            "meta": 160,  # inside the file meta group
            "header": raw.index(b"\x28\x00\x10\x00") + 3,  # inside (0028,0010) Rows
            "pixels": _pixel_data_offset(raw) + (len(raw) - _pixel_data_offset(raw)) // 2,
        }
        path.write_bytes(raw[: offsets[where]])

    return build


def _sr(path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.TextValue = "no pixels here"
    ds.ContentSequence = Sequence([item])
    path.write_bytes(dicom_bytes(ds))


def _header_only(rows: int, cols: int, n_bytes: int) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        ds = valid_dataset()
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = b"\x01" * n_bytes
        path.write_bytes(dicom_bytes(ds))

    return build


def _compressed(uid: UID, **kwargs: Any) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        ds = valid_dataset()
        ds.compress(uid, **kwargs)
        path.write_bytes(dicom_bytes(ds))

    return build


def _rgb_pixels() -> np.ndarray:
    grey = (spine_like() >> 4).astype(np.uint8)
    return np.stack([grey, grey // 2 + 60, 255 - grey], axis=-1)


def _colour(photometric: str) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        rgb = _rgb_pixels()
        if photometric == "YBR_FULL":
            from pydicom.pixels import convert_color_space

            rgb = convert_color_space(rgb, "RGB", "YBR_FULL")
        ds = valid_dataset(np.zeros(SIZE_PX, np.uint8))
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        del ds.WindowCenter, ds.WindowWidth
        ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
        path.write_bytes(dicom_bytes(ds))

    return build


def _palette(path: Path) -> None:
    index = (spine_like() >> 4).astype(np.uint8)
    ds = valid_dataset(index)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    del ds.WindowCenter, ds.WindowWidth
    ramp = (np.arange(256, dtype=np.uint16) * 257).astype("<u2")
    for colour, table in (("Red", ramp), ("Green", ramp[::-1].copy()), ("Blue", ramp // 2)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.tobytes())
    path.write_bytes(dicom_bytes(ds))


def _multiframe(path: Path) -> None:
    frames = np.stack([spine_like(seed=s) for s in range(3)])
    ds = valid_dataset()
    ds.NumberOfFrames = 3
    ds.PixelData = frames.astype("<u2").tobytes()
    path.write_bytes(dicom_bytes(ds))


def _mono1_voi_lut(path: Path) -> None:
    ds = valid_dataset(PhotometricInterpretation="MONOCHROME1")
    del ds.WindowCenter, ds.WindowWidth
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = (np.sqrt(np.arange(4096) / 4095.0) * 4095).astype("<u2").tobytes()
    item.LUTExplanation = "gamma 0.5"
    ds.VOILUTSequence = Sequence([item])
    path.write_bytes(dicom_bytes(ds))


def _spacing(value: Any) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        ds = valid_dataset()
        if value is None:
            del ds.PixelSpacing
        else:
            ds.PixelSpacing = value
        path.write_bytes(dicom_bytes(ds))

    return build


def _charset(charset: str | list[str], name: str, raw_name: bytes | None = None) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        ds = valid_dataset()
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.InstitutionName = name
        raw = dicom_bytes(ds)
        if raw_name is not None:  # replace the encoded name with raw (invalid) bytes of the same length
            encoded = pydicom.charset.encode_string(name, pydicom.charset.convert_encodings(
                [charset] if isinstance(charset, str) else charset))
            encoded += b" " * (len(encoded) % 2)
            raw = raw.replace(encoded, raw_name[: len(encoded)].ljust(len(encoded), b" "))
        path.write_bytes(raw)

    return build


def _float_pixels(path: Path) -> None:
    ds = valid_dataset()
    del ds.PixelData
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.FloatPixelData = spine_like().astype("<f4").tobytes()
    path.write_bytes(dicom_bytes(ds))


def _deflate_bomb(inflated_mib: int) -> Callable[[Path], None]:
    """A deflated DICOM whose private OB element inflates to ``inflated_mib`` MiB (+ 64 KiB) of zeros.

    After a 64 KiB block of zeros and a sync flush the compressor's window holds only zeros, so
    the raw-deflate block of one further MiB of zeros decodes to the same MiB wherever it is
    repeated: the stream is built in milliseconds and is about 1 KiB per inflated MiB.
    """

    def build(path: Path) -> None:
        raw = dicom_bytes(valid_dataset(ts=DeflatedExplicitVRLittleEndian))
        (meta_len,) = struct.unpack("<I", raw[140:144])
        meta_end = 144 + meta_len
        body = zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
        cut = body.index(b"\x08\x00\x16\x00")
        size = (64 << 10) + (inflated_mib << 20)
        comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        head = comp.compress(body[:cut] + struct.pack("<HH2s2sI", 0x0009, 0x1001, b"OB", b"\0\0", size))
        head += comp.compress(bytes(64 << 10)) + comp.flush(zlib.Z_SYNC_FLUSH)
        block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_SYNC_FLUSH)
        tail = comp.compress(body[cut:]) + comp.flush()
        path.write_bytes(raw[:meta_end] + head + block * inflated_mib + tail)

    return build


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_bomb(side: int) -> Callable[[Path], None]:
    """A PNG claiming side x side 8-bit grey whose IDAT really inflates to the full image (all zero)."""

    def build(path: Path) -> None:
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        comp = zlib.compressobj(1)
        rows_per_call = 256
        chunk = bytes((side + 1) * rows_per_call)
        parts = [comp.compress(chunk) for _ in range(side // rows_per_call)]
        parts.append(comp.compress(bytes((side + 1) * (side % rows_per_call))))
        idat = b"".join(parts) + comp.flush()
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))

    return build


def _tiff_bomb(path: Path) -> None:
    """Little-endian TIFF whose first IFD claims 100000 x 100000 pixels and holds none."""
    entries = [(256, 4, 1, 100_000), (257, 4, 1, 100_000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd)


def _jpeg_bomb(path: Path) -> None:
    """A JPEG SOF0 header claiming 65000 x 65000 pixels followed by garbage scan data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65000, 65000, 1) + b"\x01\x11\x00"
    path.write_bytes(b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + bytes(64) + b"\xff\xd9")


def _raster(ext: str, pixels: np.ndarray | None = None) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        img = (spine_like() >> 4).astype(np.uint8) if pixels is None else pixels
        ok, buf = cv2.imencode(ext, img)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {ext}")
        path.write_bytes(buf.tobytes())

    return build


def _png_truncated(path: Path) -> None:
    ok, buf = cv2.imencode(".png", (spine_like() >> 4).astype(np.uint8))
    data = buf.tobytes()
    path.write_bytes(data[: len(data) // 2])


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _missing(path: Path) -> None:
    """Nothing is written: the file does not exist."""


# ------------------------------------------------------------------------------------ the corpus


@dataclass(frozen=True)
class Case:
    """One corpus entry: ``filename`` is built by ``build(path)``; ``expect`` is "ok" or "error"."""

    name: str
    filename: str
    build: Callable[[Path], None]
    expect: str
    why: str
    bomb: bool = False
    requires: str | None = None  # an importable module the builder needs (encoders)


def _rng_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def dataset_with(**attrs: Any):
    """:func:`valid_dataset` with ``attrs`` set (a value of None deletes the element)."""
    ds = valid_dataset()
    for key, value in attrs.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def _mods(**attrs: Any) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        path.write_bytes(dicom_bytes(dataset_with(**attrs)))

    return build


def _pixels(pixels: np.ndarray, **attrs: Any) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        ds = valid_dataset(pixels)
        for key, value in attrs.items():
            setattr(ds, key, value)
        path.write_bytes(dicom_bytes(ds))

    return build


_BASE = spine_like()
_CASES: list[Case] = [
    # not images at all
    Case("empty", "empty.dcm", _raw(b""), "error", "a 0-byte file holds no image"),
    Case("random_bytes", "random.dcm", _raw(_rng_bytes(4096, 1)), "error", "no DICOM, PNG, JPEG or TIFF structure"),
    Case("random_no_suffix", "random_noext", _raw(_rng_bytes(777, 2)), "error", "no structure, no suffix"),
    Case("text", "notes.dcm", _raw(b"patient list\nnothing to see\n" * 40), "error", "plain text is not an image"),
    Case("text_as_png", "fake.png", _raw(b"this is not a PNG file at all\n" * 10), "error", "PNG suffix, no PNG signature"),
    Case("missing", "does_not_exist.dcm", _missing, "error", "the file does not exist"),
    Case("directory", "folder.dcm", _directory, "error", "a folder is not an image"),
    Case("fifo", "pipe.dcm", _fifo, "error", "a named pipe never finishes reading; refused as not a regular file"),
    # truncated DICOM
    Case("trunc_preamble", "trunc_preamble.dcm", _truncated("preamble"), "error", "cut inside the preamble"),
    Case("trunc_meta", "trunc_meta.dcm", _truncated("meta"), "error", "cut inside the file meta group"),
    Case("trunc_header", "trunc_header.dcm", _truncated("header"), "error", "cut inside (0028,0010) Rows"),
    Case("trunc_pixels", "trunc_pixels.dcm", _truncated("pixels"), "error", "half the pixel data is missing"),
    # structure and sizes
    Case("sr_no_pixels", "report_sr.dcm", _sr, "error", "an SR object has no image"),
    Case("huge_dims_little_data", "huge.dcm", _header_only(65535, 65535, 16), "error",
         "4.3 G pixels claimed: over ReadLimits.max_pixels", bomb=True),
    Case("big_dims_short_data", "big_short.dcm", _header_only(6000, 6000, 128), "error",
         "36 M pixels claimed, 128 bytes present", bomb=True),
    Case("bits_allocated_12", "ba12.dcm", _mods(BitsAllocated=12), "error", "BitsAllocated must be 8, 16 or 32"),
    Case("bits_stored_over_allocated", "bs20.dcm", _mods(BitsStored=20, HighBit=19), "error", "BitsStored > BitsAllocated"),
    Case("pixel_data_short", "short.dcm", _mods(PixelData=b"\x00" * 1000), "error", "1000 bytes for 96 x 80 x 2"),
    Case("pixel_data_long", "long.dcm", _mods(PixelData=_BASE.astype("<u2").tobytes() + bytes(512)), "ok",
         "trailing bytes after the image are padding; the image itself is complete"),
    Case("float_pixel_data", "float.dcm", _float_pixels, "error", "FloatPixelData is not a radiograph encoding"),
    Case("multiframe", "multiframe.dcm", _multiframe, "error", "a lateral radiograph is one frame"),
    Case("deflate_bomb", "deflate_bomb.dcm", _deflate_bomb(600), "error",
         "a 600 KiB deflated file inflating to 600 MiB: over ReadLimits.max_bytes", bomb=True),
    # pixel formats
    Case("signed_16", "signed16.dcm", _pixels((_BASE.astype(np.int16) - 2048), BitsStored=16, HighBit=15,
                                              WindowCenter=0, WindowWidth=4096), "ok", "signed pixels are valid"),
    Case("unsigned_8", "u8.dcm", _pixels((_BASE >> 4).astype(np.uint8), WindowCenter=128, WindowWidth=256), "ok",
         "8-bit pixels are valid"),
    Case("unsigned_32", "u32.dcm", _pixels(_BASE.astype(np.uint32) * 1000, BitsStored=32, HighBit=31,
                                           WindowCenter=2_048_000, WindowWidth=4_096_000), "ok", "32-bit pixels are valid"),
    Case("bits_stored_garbage_high_bits", "bs12.dcm", _pixels(_BASE | 0xF000), "ok",
         "bits above BitsStored 12 are masked off"),
    Case("window_width_zero", "ww0.dcm", _mods(WindowWidth=0), "ok", "an unusable window falls back to percentiles"),
    Case("rescale_slope_zero", "slope0.dcm", _mods(RescaleSlope=0, RescaleIntercept=5), "ok",
         "an invalid rescale falls back to identity"),
    # transfer syntaxes
    Case("big_endian", "big_endian.dcm", _write(valid_dataset(ts=ExplicitVRBigEndian)), "ok", "retired but decodable"),
    Case("deflated", "deflated.dcm", _write(valid_dataset(ts=DeflatedExplicitVRLittleEndian)), "ok", "deflated data set"),
    Case("implicit_no_preamble", "bare.dcm", lambda p: p.write_bytes(dicom_bytes(valid_dataset(ts=ImplicitVRLittleEndian),
                                                                                  preamble=False)),
         "ok", "no preamble or meta: read with force"),
    Case("rle", "rle.dcm", _compressed(RLELossless), "ok", "RLE Lossless"),
    Case("jpegls", "jpegls.dcm", _compressed(JPEGLSLossless), "ok", "JPEG-LS lossless", requires="jpeg_ls"),
    Case("jpeg2000", "j2k.dcm", _compressed(JPEG2000Lossless), "ok", "JPEG 2000 lossless", requires="openjpeg"),
    # colour and LUTs
    Case("rgb", "rgb.dcm", _colour("RGB"), "error", "a colour DICOM is not a projection radiograph"),
    Case("ybr_full", "ybr.dcm", _colour("YBR_FULL"), "error", "a colour DICOM is not a projection radiograph"),
    Case("palette_color", "palette.dcm", _palette, "error", "PALETTE COLOR is not a projection radiograph"),
    Case("mono1_voi_lut_sequence", "mono1_voilut.dcm", _mono1_voi_lut, "ok", "MONOCHROME1 with a VOI LUT Sequence"),
    # spacing
    Case("spacing_missing", "sp_missing.dcm", _spacing(None), "ok", "measured in pixels"),
    Case("spacing_zero", "sp_zero.dcm", _spacing([0, 0]), "ok", "invalid spacing is a warning"),
    Case("spacing_negative", "sp_neg.dcm", _spacing([-0.2, 0.2]), "ok", "invalid spacing is a warning"),
    Case("spacing_nan", "sp_nan.dcm", _spacing(["NaN", "NaN"]), "ok", "invalid spacing is a warning"),
    # character sets
    Case("utf8_name", "utf8.dcm", _charset("ISO_IR 192", "Müller^Zoë=山田^太郎"), "ok", "UTF-8 names"),
    Case("iso2022_ir87", "jis.dcm", _charset(["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"), "ok", "ISO 2022 JIS names"),
    Case("utf8_invalid_bytes", "utf8_bad.dcm", _charset("ISO_IR 192", "Abcdefgh^Ijkl", b"\xff\xfe\xc3(\xa0\xa1" * 4), "ok",
         "undecodable name bytes do not stop a measurement"),
    Case("unknown_charset", "charset_unknown.dcm", _charset("ISO_IR 999", "Plain^Name"), "ok", "unknown charset: default used"),
    # non-DICOM rasters
    Case("png", "image.png", _raster(".png"), "ok", "8-bit grey PNG"),
    Case("png_16bit", "image16.png", _raster(".png", spine_like(bits=16)), "ok", "16-bit grey PNG"),
    Case("jpeg", "image.jpg", _raster(".jpg"), "ok", "baseline JPEG"),
    Case("tiff", "image.tif", _raster(".tif"), "ok", "TIFF"),
    Case("png_1x1", "one_pixel.png", _raster(".png", np.full((1, 1), 77, np.uint8)), "ok",
         "a 1 x 1 image is tiny but valid; landmarks come out hidden"),
    Case("png_truncated", "trunc.png", _png_truncated, "error", "half the PNG is missing"),
    Case("png_bomb_40000", "bomb.png", _png_bomb(40_000), "error", "40000 x 40000 = 1.6 G pixels: over max_pixels",
         bomb=True),
    Case("tiff_bomb", "bomb.tif", _tiff_bomb, "error", "100000 x 100000 claimed", bomb=True),
    Case("jpeg_bomb", "bomb.jpg", _jpeg_bomb, "error", "65000 x 65000 claimed", bomb=True),
]
CASES: dict[str, Case] = {c.name: c for c in _CASES}


def build_case(case: Case, folder: Path) -> Path:
    """Write one case into ``folder`` (its file name is ``case.filename``) and return its path."""
    path = Path(folder) / case.filename
    case.build(path)
    return path
