"""DICOM reading: VOI/Modality LUT, inversion, bit masking, spacing, and one-line errors.

Expected display values are computed by hand from PS3.3 C.11.1 / C.11.2.1.2 (see the comments).
All DICOM files are built here with pydicom; nothing binary is committed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)

from cervisag_edge.errors import InputError
from cervisag_edge.io import LoadedImage, ReadLimits, read_image

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")


def make_ds(pixels: np.ndarray | bytes, *, photometric: str = "MONOCHROME2", bits_allocated: int | None = None,
            bits_stored: int | None = None, signed: bool | None = None, rows: int | None = None,
            columns: int | None = None, samples: int = 1, ts: UID = ExplicitVRLittleEndian, **attrs: Any) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    if isinstance(pixels, np.ndarray):
        rows, columns = pixels.shape[:2]
        bits_allocated = bits_allocated or pixels.dtype.itemsize * 8
        signed = pixels.dtype.kind == "i" if signed is None else signed
        endian = ">" if ts == ExplicitVRBigEndian else "<"
        data = pixels.astype(pixels.dtype.newbyteorder(endian)).tobytes()
    else:
        data = pixels
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    return ds


def write(tmp_path: Path, ds: Dataset, name: str = "img.dcm") -> Path:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------- VOI, Modality LUT, inversion


def test_linear_window_golden(tmp_path: Path) -> None:
    # c = 100, w = 50: y = (x - 99.5) / 49 + 0.5, 0 at x <= 75, 1 at x > 124.
    px = np.array([[0, 75], [100, 124]], dtype=np.uint16)
    img = read_image(write(tmp_path, make_ds(px, WindowCenter=100, WindowWidth=50)))
    assert isinstance(img, LoadedImage)
    np.testing.assert_allclose(img.display, [[0.0, 0.0], [0.5 + 0.5 / 49, 1.0]], atol=1e-6)
    assert img.display.dtype == np.float32 and img.size_px == (2, 2)
    assert img.format == "dicom" and img.modality == "CR"
    assert "PixelData" not in img.dataset and img.dataset.Rows == 2


def test_monochrome1_is_inverted_after_voi(tmp_path: Path) -> None:
    px = np.array([[0, 75], [100, 124]], dtype=np.uint16)
    img = read_image(write(tmp_path, make_ds(px, photometric="MONOCHROME1", WindowCenter=100, WindowWidth=50)))
    np.testing.assert_allclose(img.display, [[1.0, 1.0], [0.5 - 0.5 / 49, 0.0]], atol=1e-6)


def test_rescale_then_window(tmp_path: Path) -> None:
    # stored 500, 600 -> 0.5 x - 200 = 50, 100; c = 75, w = 101: y = (x - 74.5) / 100 + 0.5 -> 0.255, 0.755
    px = np.array([[500, 600]], dtype=np.uint16)
    ds = make_ds(px, RescaleSlope=0.5, RescaleIntercept=-200, WindowCenter=75, WindowWidth=101)
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0.255, 0.755]], atol=1e-6)


def test_sigmoid_window(tmp_path: Path) -> None:
    # stored 200, 225 -> 0.5 x = 100, 112.5; c = 100, w = 50 -> 1/(1+e^0) = 0.5, 1/(1+e^-1) = 0.7310586
    px = np.array([[200, 225]], dtype=np.uint16)
    ds = make_ds(px, RescaleSlope=0.5, RescaleIntercept=0, WindowCenter=100, WindowWidth=50, VOILUTFunction="SIGMOID")
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0.5, 0.7310586]], atol=1e-6)


def test_linear_exact_and_first_of_multiple_windows(tmp_path: Path) -> None:
    # first window c = 100, w = 50 (the second would give other values): y = (x - 100) / 50 + 0.5
    px = np.array([[75, 100, 110]], dtype=np.uint16)
    ds = make_ds(px, WindowCenter=[100, 2000], WindowWidth=[50, 4000], VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0.0, 0.5, 0.7]], atol=1e-6)


def _lut_item(descriptor: list[int], data: list[int]) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = data
    return item


def test_voi_lut_sequence_wins_over_window(tmp_path: Path) -> None:
    # descriptor [4 entries, first mapped 10, 8 bits]; data / 255: 9 -> 0, 10 -> 0, 12 -> 102/255 = 0.4, 13, 20 -> 1
    px = np.array([[9, 10, 12, 13, 20]], dtype=np.uint16)
    ds = make_ds(px, WindowCenter=0, WindowWidth=10)
    ds.VOILUTSequence = Sequence([_lut_item([4, 10, 8], [0, 51, 102, 255])])
    ds["VOILUTSequence"].value[0]["LUTDescriptor"].VR = "US"
    ds["VOILUTSequence"].value[0]["LUTData"].VR = "US"
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0, 0, 0.4, 1, 1]], atol=1e-6)


def test_modality_lut_sequence(tmp_path: Path) -> None:
    # LUT [100, 200, 300] from 0; stored 5 clamps to 300; LINEAR_EXACT c = 200, w = 200: (x - 200)/200 + 0.5
    px = np.array([[0, 1, 2, 5]], dtype=np.uint16)
    ds = make_ds(px, WindowCenter=200, WindowWidth=200, VOILUTFunction="LINEAR_EXACT")
    item = _lut_item([3, 0, 16], [100, 200, 300])
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = Sequence([item])
    ds["ModalityLUTSequence"].value[0]["LUTDescriptor"].VR = "US"
    ds["ModalityLUTSequence"].value[0]["LUTData"].VR = "US"
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)


def test_bits_stored_masks_unused_high_bits(tmp_path: Path) -> None:
    # 12 of 16 bits stored; words 0xF001 and 0x0FFF mean 1 and 4095. LINEAR_EXACT c = 2048, w = 4096: y = x / 4096
    px = np.array([[0xF001, 0x0FFF]], dtype=np.uint16)
    ds = make_ds(px, bits_stored=12, WindowCenter=2048, WindowWidth=4096, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[1 / 4096, 4095 / 4096]], atol=1e-6)


def test_signed_bits_stored_sign_extension(tmp_path: Path) -> None:
    # signed 12-bit: 0x0FFF = -1, 0xF800 -> 0x800 = -2048, 0x07FF = 2047; c = 0, w = 4096: y = x / 4096 + 0.5
    px = np.array([[0x0FFF, 0xF800, 0x07FF, 0]], dtype=np.uint16)
    ds = make_ds(px, bits_stored=12, signed=True, WindowCenter=0, WindowWidth=4096, VOILUTFunction="LINEAR_EXACT")
    expected = [[0.5 - 1 / 4096, 0.0, 0.5 + 2047 / 4096, 0.5]]
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, expected, atol=1e-6)


def test_signed_16_bit_with_rescale(tmp_path: Path) -> None:
    # -1000 - 1024 = -2024 and 1000 - 1024 = -24; LINEAR_EXACT c = -1024, w = 2000: (x + 1024)/2000 + 0.5 -> 0, 1
    px = np.array([[-1000, 1000, 0]], dtype=np.int16)
    ds = make_ds(px, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=-1024, WindowWidth=2000,
                 VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(write(tmp_path, ds)).display, [[0.0, 1.0, 0.5]], atol=1e-6)


def test_8_bit_and_32_bit(tmp_path: Path) -> None:
    # 8-bit: c = 128, w = 256 exact: x / 256; 32-bit: c = 50000, w = 100000 exact: x / 100000
    px8 = np.array([[0, 64, 255]], dtype=np.uint8)
    ds8 = make_ds(px8, WindowCenter=128, WindowWidth=256, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(write(tmp_path, ds8, "a.dcm")).display, [[0, 0.25, 255 / 256]], atol=1e-6)
    px32 = np.array([[0, 25000, 100000, 75000]], dtype=np.uint32)
    ds32 = make_ds(px32, WindowCenter=50000, WindowWidth=100000, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(read_image(write(tmp_path, ds32, "b.dcm")).display, [[0, 0.25, 1, 0.75]], atol=1e-6)


@pytest.mark.parametrize("ts", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_big_endian_and_deflated_equal_little_endian(tmp_path: Path, ts: UID) -> None:
    px = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 37) % 4096
    ref = read_image(write(tmp_path, make_ds(px, WindowCenter=2048, WindowWidth=4096), "le.dcm"))
    other = read_image(write(tmp_path, make_ds(px, ts=ts, WindowCenter=2048, WindowWidth=4096), "x.dcm"))
    np.testing.assert_array_equal(other.display, ref.display)
    assert len(np.unique(ref.display)) > 30


def test_no_preamble_dicom_read_with_force(tmp_path: Path) -> None:
    ds = make_ds(np.array([[0, 75], [100, 124]], dtype=np.uint16), WindowCenter=100, WindowWidth=50)
    del ds.file_meta
    path = tmp_path / "raw.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    assert open(path, "rb").read(132)[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(path).display, [[0, 0], [0.5 + 0.5 / 49, 1]], atol=1e-6)


def test_percentile_window_when_no_voi(tmp_path: Path) -> None:
    # zero collimation border around 1000..1399; border ignored -> interior min 0, max 1 (0.5/99.5 % of 400
    # values are 1001.995 and 1397.005, so pixels 1000 and 1399 clip to 0 and 1)
    px = np.zeros((40, 40), dtype=np.uint16)
    px[10:30, 10:30] = np.arange(1000, 1400).reshape(20, 20)
    img = read_image(write(tmp_path, make_ds(px)))
    assert img.display[10, 10] == 0.0 and img.display[29, 29] == 1.0
    assert img.display[20, 10] == pytest.approx((1200 - 1001.995) / (1397.005 - 1001.995), abs=1e-5)
    assert any("percentile" in w for w in img.warnings)


def test_rgb_dicom_refused_as_colour(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]]], dtype=np.uint8)
    path = write(tmp_path, make_ds(rgb, photometric="RGB", samples=3))
    with pytest.raises(InputError, match=r"\(0028,0004\) PhotometricInterpretation 'RGB' is not a greyscale radiograph") as err:
        read_image(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_palette_color_dicom_refused_as_colour(tmp_path: Path) -> None:
    px = np.array([[0, 1, 2, 0]], dtype=np.uint8)
    ds = make_ds(px, photometric="PALETTE COLOR")
    for colour, data in (("Red", [65535, 0, 0]), ("Green", [0, 65535, 0]), ("Blue", [0, 0, 65535])):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(data, "<u2").tobytes())
    with pytest.raises(InputError, match=r"PhotometricInterpretation 'PALETTE COLOR' is not a greyscale radiograph"):
        read_image(write(tmp_path, ds))


# ---------------------------------------------------------------- spacing


def _spacing(tmp_path: Path, **attrs: Any) -> LoadedImage:
    return read_image(write(tmp_path, make_ds(np.zeros((4, 6), np.uint16), WindowCenter=0, WindowWidth=2, **attrs)))


def test_pixel_spacing_preferred_and_anisotropic(tmp_path: Path) -> None:
    img = _spacing(tmp_path, PixelSpacing=[0.2, 0.1], ImagerPixelSpacing=[0.15, 0.15],
                   EstimatedRadiographicMagnificationFactor=1.5)
    assert img.pixel_spacing_mm == (0.2, 0.1) and img.spacing_source == "PixelSpacing"
    assert img.size_px == (6, 4)


def test_imager_spacing_divided_by_magnification(tmp_path: Path) -> None:
    img = _spacing(tmp_path, ImagerPixelSpacing=[0.15, 0.12], EstimatedRadiographicMagnificationFactor=1.2)
    assert img.pixel_spacing_mm == pytest.approx((0.125, 0.1))
    assert img.spacing_source == "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor"


def test_plain_imager_spacing_warns(tmp_path: Path) -> None:
    img = _spacing(tmp_path, ImagerPixelSpacing=[0.15, 0.12])
    assert img.pixel_spacing_mm == (0.15, 0.12) and img.spacing_source == "ImagerPixelSpacing"
    assert any("detector plane" in w for w in img.warnings)


def test_invalid_pixel_spacing_falls_back_to_imager(tmp_path: Path) -> None:
    img = _spacing(tmp_path, PixelSpacing=[0, 0], ImagerPixelSpacing=[0.15, 0.15],
                   EstimatedRadiographicMagnificationFactor=-1)
    assert img.spacing_source == "ImagerPixelSpacing" and img.pixel_spacing_mm == (0.15, 0.15)
    assert any("(0028,0030) PixelSpacing [0.0, 0.0]" in w for w in img.warnings)
    assert any("(0018,1114) EstimatedRadiographicMagnificationFactor" in w and "-1" in w for w in img.warnings)


@pytest.mark.parametrize(
    ("value", "shown"),
    [([0.0, 0.2], "[0.0, 0.2]"), ([-0.1, 0.1], "[-0.1, 0.1]"), (["nan", "nan"], "nan"), ([0.1], "0.1"),
     ([0.1, 0.1, 0.1], "[0.1, 0.1, 0.1]")],
)
def test_bad_pixel_spacing_is_warning(tmp_path: Path, value: list[Any], shown: str) -> None:
    with pytest.warns(UserWarning) if "nan" in value else _nullcontext():
        img = _spacing(tmp_path, PixelSpacing=value)
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("(0028,0030) PixelSpacing" in w and shown in w for w in img.warnings)


def test_missing_and_non_numeric_spacing(tmp_path: Path) -> None:
    img = _spacing(tmp_path)
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("(0028,0030) PixelSpacing" in w and "absent" in w for w in img.warnings)
    # write a valid placeholder and patch the bytes to a non-numeric DS
    path = write(tmp_path, make_ds(np.zeros((4, 6), np.uint16), WindowCenter=0, WindowWidth=2,
                                   PixelSpacing=["9.99", "9.99"]), "bad.dcm")
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"9.99\\9.99", b"abcd\\9.99"))
    img = read_image(path)
    assert img.pixel_spacing_mm is None
    assert any("(0028,0030) PixelSpacing" in w and "abcd" in w for w in img.warnings)


def test_user_spacing_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, make_ds(np.zeros((4, 6), np.uint16), PixelSpacing=[0.2, 0.2]))
    img = read_image(path, pixel_spacing_mm=(0.3, 0.25))
    assert img.pixel_spacing_mm == (0.3, 0.25) and img.spacing_source == "user"
    with pytest.raises(InputError, match="pixel_spacing_mm argument"):
        read_image(path, pixel_spacing_mm=(0.3, -1.0))


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


# ---------------------------------------------------------------- errors


def _raises(path: Path, *fragments: str, limits: ReadLimits | None = None) -> str:
    with pytest.raises(InputError) as info:
        read_image(path, limits=limits)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_empty_random_and_text_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    _raises(empty, "empty file")
    noise = tmp_path / "noise.dcm"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _raises(noise, "not a DICOM file")
    text = tmp_path / "notes.txt"
    text.write_text("Patient notes\nnothing to see here\n" * 20)
    _raises(text, "not a DICOM file")
    fake_png = tmp_path / "fake.png"
    fake_png.write_text("hello")
    _raises(fake_png, "not a recognised image")
    _raises(tmp_path / "missing.dcm", "not found")


def test_truncated_dicom(tmp_path: Path) -> None:
    path = write(tmp_path, make_ds(np.zeros((64, 64), np.uint16), WindowCenter=0, WindowWidth=2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    _raises(path, "(7FE0,0010)")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:200])
    _raises(cut, "truncated")


def test_no_pixel_data(tmp_path: Path) -> None:
    ds = make_ds(np.zeros((4, 4), np.uint16))
    del ds.PixelData
    _raises(write(tmp_path, ds), "(7FE0,0010) PixelData is missing")


def test_short_pixel_data(tmp_path: Path) -> None:
    ds = make_ds(b"\x00" * 20, rows=4, columns=4, bits_allocated=16, signed=False)
    _raises(write(tmp_path, ds), "(7FE0,0010) PixelData has 20 bytes; expected 32")


def test_unsupported_photometric_message(tmp_path: Path) -> None:
    path = write(tmp_path, make_ds(np.zeros((4, 4), np.uint16), photometric="HSV"), "study.dcm")
    message = _raises(path)
    assert message.endswith(
        "study.dcm: (0028,0004) PhotometricInterpretation 'HSV' is not a greyscale radiograph; expected "
        "MONOCHROME1 or MONOCHROME2"
    )


def test_multi_frame_and_bits_allocated_refused(tmp_path: Path) -> None:
    ds = make_ds(np.zeros((2, 4, 4), np.uint16).reshape(8, 4), NumberOfFrames=2)
    ds.Rows = 4
    _raises(write(tmp_path, ds, "mf.dcm"), "(0028,0008) NumberOfFrames 2")
    ds1 = make_ds(b"\x00" * 2, rows=4, columns=4, bits_allocated=1, signed=False)
    _raises(write(tmp_path, ds1, "bits.dcm"), "(0028,0100) BitsAllocated 1", "expected 8, 16 or 32")


def test_max_pixels_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import Decoder

    calls: list[str] = []
    monkeypatch.setattr(Decoder, "as_array", lambda *a, **k: calls.append("decoded"))
    path = write(tmp_path, make_ds(np.zeros((100, 100), np.uint16)))
    _raises(path, "100 x 100", "max_pixels", limits=ReadLimits(max_pixels=5000))
    assert calls == []


def test_max_bytes_refused(tmp_path: Path) -> None:
    path = write(tmp_path, make_ds(np.zeros((100, 100), np.uint16)))
    _raises(path, "max_bytes", limits=ReadLimits(max_bytes=1000))
    with pytest.raises(ValueError):
        ReadLimits(max_pixels=0)


def test_unexpected_exception_becomes_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cervisag_edge.io.dicom as dicom_mod

    path = write(tmp_path, make_ds(np.zeros((4, 4), np.uint16)))

    def boom(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom at line\nsecond line")

    monkeypatch.setattr(dicom_mod, "display_chain", boom)
    _raises(path, "ZeroDivisionError", "boom at line second line")

    def oom(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(dicom_mod, "display_chain", oom)
    with pytest.raises(MemoryError):
        read_image(path)
