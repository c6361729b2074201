"""The DICOM reader's two display paths against the direct chain: the full-resolution table lookup
and the reduce-first model view (block means of stored values, then the chain)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cervisag_edge.io import imaging
from cervisag_edge.io import read_image
from cervisag_edge.io.image import area_resize
from cervisag_edge.io.pixels import _LUT_MAX_ENTRIES, grey_pixels


def _write(path: Path, pixels: np.ndarray, photometric: str, window: bool) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-100"
    if window:
        ds.WindowCenter, ds.WindowWidth = "4000", "6000"
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_lut_path_equals_direct_chain(tmp_path: Path, photometric: str) -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 4096, size=(420, 400))
    pixels[0, :5] |= 0xF000  # unused high bits set: must be masked away
    assert pixels.size > _LUT_MAX_ENTRIES
    ds = _write(tmp_path / "a.dcm", pixels, photometric, window=True)
    got = read_image(tmp_path / "a.dcm").display
    stored = (pixels & 0x0FFF).astype(np.float64) * 2.5 - 100
    expected = imaging.window_linear(stored, 4000, 6000)
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    np.testing.assert_allclose(got, expected, atol=1e-6)
    direct = grey_pixels(ds, (pixels & 0x0FFF).astype(np.uint16), photometric, True, [])._apply(pixels & 0x0FFF)
    np.testing.assert_allclose(got, direct, atol=1e-6)


@pytest.mark.parametrize(("photometric", "window", "size"), [("MONOCHROME2", True, (100, 105)), ("MONOCHROME1", True, (134, 140)),
                                                              ("MONOCHROME2", False, (77, 81))])
def test_resized_view_matches_resizing_the_display(tmp_path: Path, photometric: str, window: bool,
                                                   size: tuple[int, int]) -> None:
    """Area-resizing stored values first and then windowing equals resizing the display, except
    where a footprint straddles a clip edge; integer rounding stays below 1e-3 of the display range."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:421, 0:403]
    pixels = np.clip(1500 + 4 * x + 2 * y + rng.normal(0, 20, size=x.shape), 0, 4095).astype(np.uint16)
    _write(tmp_path / "c.dcm", pixels, photometric, window=window)
    img = read_image(tmp_path / "c.dcm")
    got = img.resized(size)
    assert got.shape == (size[1], size[0]) and got.dtype == np.float32
    expected = area_resize(np.asarray(img.display, dtype=np.float64), size)
    inside = (expected > 0.05) & (expected < 0.95)  # away from the clip edges (noise 3 sigma < 0.03) the chain is affine
    assert inside.mean() > 0.3
    assert float(np.abs(got - expected)[inside].max()) < 1e-3


def test_percentile_window_is_not_tabulated(tmp_path: Path) -> None:
    """Without a window the VOI depends on the image histogram; the result must still be the
    image's own 0.5-99.5 % window, not one computed over the table's domain."""
    rng = np.random.default_rng(6)
    pixels = np.clip(rng.normal(1000, 50, size=(420, 400)), 0, 4095).astype(np.uint16)
    pixels[:3, :3] = 4000  # a few outliers widen the domain far beyond the percentiles
    _write(tmp_path / "b.dcm", pixels, "MONOCHROME2", window=False)
    img = read_image(tmp_path / "b.dcm")
    assert any("percentile" in w for w in img.warnings)
    d = img.display
    assert np.mean(d) == pytest.approx(0.5, abs=0.05)  # centred on the bulk, not on the table domain
