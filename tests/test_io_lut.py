"""The table-lookup fast path of the DICOM reader gives the same display as the direct chain."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cervisag_edge import imaging
from cervisag_edge.io import read_image
from cervisag_edge.io.dicom import _LUT_MAX_ENTRIES, _grey_chain


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
    direct = _grey_chain(ds, pixels.astype(np.uint16), photometric, True, [])
    np.testing.assert_allclose(got, direct, atol=1e-6)


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
