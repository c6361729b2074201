"""Real computed radiographs from the pydicom-data package (RG1, RG3: MONOCHROME1 CR, uncompressed and
lossless JPEG 2000).

The files are located inside the installed ``data_store`` package (pydicom-data) directly, never
through ``pydicom.data.get_testdata_file``, which may try to download missing files.

Header values asserted here were printed once with pydicom (``dcmread(..., stop_before_pixels=True)``)
and checked by eye:
  RG1_*: Rows 1955, Columns 1841, BitsAllocated 16, BitsStored 15, MONOCHROME1, WindowCenter 15000,
         WindowWidth 30000, PixelSpacing "0.000\\0.000" (invalid), no ImagerPixelSpacing.
  RG3_*: Rows 1760, Columns 1760, BitsAllocated 16, BitsStored 10, MONOCHROME1, WindowCenter 550,
         WindowWidth 1024, no PixelSpacing, no ImagerPixelSpacing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from cervisag_edge.io import read_image

from realdata import pydicom_data_dir


DATA = pydicom_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="pydicom-data (package data_store) is not installed")


def _path(name: str) -> Path:
    assert DATA is not None
    return DATA / name


@pytest.mark.parametrize("stem", ["RG1", "RG3"])
def test_j2kr_equals_uncompressed(stem: str) -> None:
    unc = read_image(_path(f"{stem}_UNCR.dcm"))
    j2k = read_image(_path(f"{stem}_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.display, unc.display)
    assert j2k.dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
    raw_unc = pydicom.dcmread(_path(f"{stem}_UNCR.dcm")).pixel_array
    raw_j2k = pydicom.dcmread(_path(f"{stem}_J2KR.dcm")).pixel_array
    np.testing.assert_array_equal(raw_j2k, raw_unc)


def test_rg1_inversion_window_and_invalid_spacing() -> None:
    img = read_image(_path("RG1_UNCR.dcm"))
    assert img.size_px == (1841, 1955) and img.modality == "CR"
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("(0028,0030) PixelSpacing [0.000, 0.000]" in w for w in img.warnings)
    raw = pydicom.dcmread(_path("RG1_UNCR.dcm")).pixel_array.astype(np.float64)
    # MONOCHROME1 after LINEAR c = 15000, w = 30000: display = 1 - ((x - 14999.5) / 29999 + 0.5)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 1955, 200), rng.integers(0, 1841, 200)
    expected = 1.0 - np.clip((raw[rows, cols] - 14999.5) / 29999 + 0.5, 0, 1)
    np.testing.assert_allclose(img.display[rows, cols], expected, atol=1e-5)
    # raw range 874..26479 (printed once): the darkest raw value is the brightest display value
    assert raw.min() == 874 and raw.max() == 26479
    assert img.display.max() == pytest.approx(1 - ((874 - 14999.5) / 29999 + 0.5), abs=1e-6)
    assert img.display.min() == pytest.approx(1 - ((26479 - 14999.5) / 29999 + 0.5), abs=1e-6)


def test_rg3_window_and_missing_spacing() -> None:
    img = read_image(_path("RG3_UNCR.dcm"))
    assert img.size_px == (1760, 1760)
    assert img.pixel_spacing_mm is None and img.spacing_source == "none"
    assert any("absent" in w for w in img.warnings)
    raw = pydicom.dcmread(_path("RG3_UNCR.dcm")).pixel_array
    # raw 0 -> (0 - 549.5) / 1023 + 0.5 < 0 -> 0 -> inverted 1; raw 1023 -> 0.96285 -> 0.03715
    zero, top = np.argwhere(raw == 0)[0], np.argwhere(raw == 1023)[0]
    assert img.display[tuple(zero)] == 1.0
    assert img.display[tuple(top)] == pytest.approx(1 - ((1023 - 549.5) / 1023 + 0.5), abs=1e-6)
