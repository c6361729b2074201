"""Fuzzing the DICOM reader and the whole measure path with hypothesis: header tag mutations and raw
byte mutations of a small valid image. Every outcome must be a LoadedImage/Measurement or a one-line
InputError naming the file. Profiles: ``ci`` (default, derandomised, bounded) and ``deep``
(``CERVISAG_FUZZ_PROFILE=deep``); findings are pinned below as ``@example``s and named tests."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from cervisag_edge import Measurer
from cervisag_edge.errors import InputError
from cervisag_edge.io import LoadedImage, ReadLimits, read_image
from cervisag_edge.core.landmarks import NUM_LANDMARKS

from corpus import dicom_bytes, spine_like, valid_dataset

settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("deep", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = os.environ.get("CERVISAG_FUZZ_PROFILE", "ci")
#: Pixel limit of the fuzz runs: mutated Rows x Columns above it are refused before decoding.
LIMITS = ReadLimits(max_pixels=4_000_000, max_bytes=16 * 1024 * 1024)

BASE_PIXELS = spine_like(24, 20)
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
                     RLELossless, JPEG2000Lossless, "1.2.840.10008.1.2.4.70", "1.2.3.4"]

_ints = st.one_of(st.integers(-3, 70_000), st.sampled_from([0, 1, 8, 12, 15, 16, 17, 32, 64, 65535, 2**31, -1]))
_text = st.one_of(st.sampled_from(["0.2\\0.2", "0\\0", "-1\\1", "NaN\\NaN", "inf\\1", "", "abc", "0.2", "1\\2\\3", "1e308\\1e-308"]),
                  st.text(max_size=12))
TAG_MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "Rows": _ints,
    "Columns": _ints,
    "BitsAllocated": _ints,
    "BitsStored": _ints,
    "HighBit": _ints,
    "PixelRepresentation": _ints,
    "SamplesPerPixel": _ints,
    "NumberOfFrames": st.one_of(_ints, st.sampled_from(["", "2.5", "x"])),
    "PhotometricInterpretation": st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                                                  "PALETTE COLOR", "HSV", "", "monochrome2", "YBR_RCT"]),
    "PixelSpacing": _text,
    "WindowCenter": _text,
    "WindowWidth": _text,
    "RescaleSlope": _text,
    "RescaleIntercept": _text,
    "VOILUTFunction": st.sampled_from(["LINEAR", "SIGMOID", "LINEAR_EXACT", "BOGUS", ""]),
    "PlanarConfiguration": _ints,
}
_DS_KEYWORDS = {"PixelSpacing", "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"}


def _set_raw(ds: Any, keyword: str, value: Any) -> None:
    """Set a value without pydicom validation (DS values are written as raw text, bad ones included)."""
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    if vr in ("DS", "IS", "CS", "LO") or isinstance(value, str):
        text = str(value).encode("latin-1", "replace")
        text += b" " * (len(text) % 2)
        ds[tag] = RawDataElement(tag, "DS" if keyword in _DS_KEYWORDS else (vr if vr in ("CS", "IS", "LO") else "LO"),
                                 len(text), text, 0, False, True)
    else:
        ds[tag] = DataElement(tag, vr, int(value) % 65536)


@st.composite
def mutated_dicom(draw: st.DrawFn) -> bytes:
    ts = draw(st.sampled_from(TRANSFER_SYNTAXES))
    ds = valid_dataset(BASE_PIXELS)
    if ts in (RLELossless, JPEG2000Lossless):
        try:
            ds.compress(ts)
        except Exception:  # an encoder plugin missing on this machine: stay uncompressed
            ts = ExplicitVRLittleEndian
    elif ts not in (ExplicitVRLittleEndian,):
        big = ts == ExplicitVRBigEndian
        ds = valid_dataset(BASE_PIXELS, ts=ExplicitVRBigEndian if big else ExplicitVRLittleEndian)
    ds.file_meta.TransferSyntaxUID = ts
    for keyword in draw(st.lists(st.sampled_from(sorted(TAG_MUTATIONS)), max_size=5, unique=True)):
        _set_raw(ds, keyword, draw(TAG_MUTATIONS[keyword]))
    try:
        raw = bytearray(dicom_bytes(ds))
    except Exception:  # pydicom refuses to encode some mutations: fall back to byte mutations only
        raw = bytearray(dicom_bytes(valid_dataset(BASE_PIXELS)))
    for kind, pos, value in draw(st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "dup", "del"]),
                                                     st.integers(0, 10**6), st.integers(0, 255)), max_size=4)):
        if not raw:
            break
        i = pos % len(raw)
        if kind == "flip":
            raw[i] ^= 1 << (value % 8)
        elif kind == "set":
            raw[i] = value
        elif kind == "cut":
            del raw[i:]
        elif kind == "dup":
            raw[i:i] = raw[i : i + value]
        else:
            del raw[i : i + value]
    return bytes(raw)


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cervisag_fuzz_") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with Measurer(threads=1, limits=LIMITS) as m:
        yield m


def _check_error(exc: InputError, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message and path.name in message, message


def _check_image(img: LoadedImage) -> None:
    assert img.display.ndim == 2 and img.display.dtype == np.float32 and img.display.size >= 1
    assert np.all(np.isfinite(img.display)) and img.display.min() >= 0.0 and img.display.max() <= 1.0
    if img.pixel_spacing_mm is not None:
        assert all(np.isfinite(v) and v > 0 for v in img.pixel_spacing_mm)


def _write(fuzz_dir: Path, data: bytes) -> Path:
    path = fuzz_dir / "fuzzed_case.dcm"
    path.write_bytes(data)
    return path


# Regression examples: each was a finding or a boundary the reader must keep handling.
_DEFLATED_NO_SPACE = dicom_bytes(valid_dataset(BASE_PIXELS, ts=DeflatedExplicitVRLittleEndian))


@settings(settings.get_profile(PROFILE))
@given(data=mutated_dicom())
@example(data=_DEFLATED_NO_SPACE[: len(_DEFLATED_NO_SPACE) // 2])  # a deflate stream cut in half
@example(data=b"\x00" * 128 + b"DICM")  # preamble and nothing else
@example(data=b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")  # meta element longer than the file
def test_reader_never_crashes(data: bytes, fuzz_dir: Path) -> None:
    path = _write(fuzz_dir, data)
    try:
        img = read_image(path, limits=LIMITS)
    except InputError as exc:
        _check_error(exc, path)
    else:
        _check_image(img)


@settings(settings.get_profile(PROFILE), max_examples=max(20, settings.get_profile(PROFILE).max_examples // 5))
@given(data=mutated_dicom())
def test_measure_path_never_crashes(data: bytes, fuzz_dir: Path, measurer: Measurer) -> None:
    path = _write(fuzz_dir, data)
    try:
        m = measurer.measure(path)
    except InputError as exc:
        _check_error(exc, path)
    else:
        assert len(m.landmarks) == NUM_LANDMARKS
        assert all(np.isfinite(lm.confidence) for lm in m.landmarks)


@settings(settings.get_profile(PROFILE), max_examples=max(50, settings.get_profile(PROFILE).max_examples // 2))
@given(data=st.binary(max_size=2048), prefix=st.sampled_from([b"", b"\x00" * 128 + b"DICM", b"\x89PNG\r\n\x1a\n",
                                                                b"\xff\xd8\xff", b"II*\x00", b"MM\x00*"]))
def test_random_bytes_never_crash(data: bytes, prefix: bytes, fuzz_dir: Path) -> None:
    path = _write(fuzz_dir, prefix + data)
    try:
        _check_image(read_image(path, limits=LIMITS))
    except InputError as exc:
        _check_error(exc, path)


def test_finding_rle_decoder_panic_is_an_input_error(fuzz_dir: Path) -> None:
    """Fuzz finding: a zeroed byte in an RLE segment makes pylibjpeg-rle panic (pyo3
    PanicException, a BaseException that escaped ``except Exception``); now a one-line InputError."""
    ds = valid_dataset(BASE_PIXELS)
    ds.compress(RLELossless)
    raw = bytearray(dicom_bytes(ds))
    raw[len(raw) - 390] = 0
    path = _write(fuzz_dir, bytes(raw))
    with pytest.raises(InputError, match="could not be decoded") as info:
        read_image(path, limits=LIMITS)
    _check_error(info.value, path)


def test_finding_deflate_bomb_refused_before_inflating(fuzz_dir: Path) -> None:
    """Finding: pydicom inflates a deflated data set whole in memory; 1 KiB of stream per MiB let a
    small file claim gigabytes. The reader now streams it and stops at ReadLimits.max_bytes."""
    from corpus import CASES, build_case

    path = build_case(CASES["deflate_bomb"], fuzz_dir)
    with pytest.raises(InputError, match="inflates to more than 16777216 bytes") as info:
        read_image(path, limits=LIMITS)
    _check_error(info.value, path)
