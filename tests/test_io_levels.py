"""JPEG 2000 / HTJ2K read at a reduced resolution level (io/levels.py, io/openjp2.py).

The codestreams are made at run time (imagecodecs' OpenJPEG and OpenJPH encoders) or taken from
pydicom-data's RG1/RG3 CR films (JPEG 2000 lossless and lossy); nothing binary is committed. The
level path (``read_image(..., resize_to=...)``) is compared with full decode + area resize of
the same file at the same size.

Bound on the mean absolute display difference: ``MAD_BOUND`` = 4e-3 of the display range. Measured
2026-12-01 on pydicom-data's RG1/RG3 films (lossless and lossy): 0.75e-3 to 1.8e-3 at level factor
2, 0.4e-3 to 0.7e-3 at factor 1; the low-pass of the wavelet is not the box filter of an area
resize, so the images are not identical. Noisy images differ more (5e-3 to 1.6e-2 on the
phantoms, whose pixel noise is 10 % of the window; docs/benchmarks.md), so the test images here
are the low-noise ``spine_like`` and the real films. Left uncorrected, the half-block offset of a
level (io/levels.py) gives 3.8e-3 to 4.5e-3 on the films, too close to the bound to rely on it:
:func:`test_level_keeps_the_geometry` checks the geometry directly (sub-pixel centroid).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from cervisag_edge.errors import InputError
from cervisag_edge.io import openjp2, read_image
from cervisag_edge.io.levels import LevelPixels, level_factor

from corpus import dicom_bytes, spine_like, valid_dataset
from realdata import pydicom_data_dir

imagecodecs = pytest.importorskip("imagecodecs", reason="imagecodecs (the codecs of the default install) is missing")
needs_openjp2 = pytest.mark.skipif(openjp2.library() is None,
                                   reason="no libopenjp2 (imagecodecs wheel or Debian libopenjp2-7) to decode levels")
DATA = pydicom_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="pydicom-data (package data_store) is not installed")

MAD_BOUND = 4e-3
J2K_LOSSLESS, J2K_LOSSY, HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201"


def _letterbox_384(size_px: tuple[int, int]) -> tuple[int, int]:
    w, h = size_px
    s = 384 / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _write_j2k(path: Path, pixels: np.ndarray, uid: str = J2K_LOSSLESS, **attrs: object) -> Path:
    """``pixels`` as a JPEG 2000 (lossless or lossy) or HTJ2K lossless CR file."""
    ds = valid_dataset(pixels, **attrs)
    bits = int(ds.BitsStored)
    if uid == HTJ2K_LOSSLESS:
        frame = imagecodecs.htj2k_encode(pixels, reversible=True)
    else:
        frame = imagecodecs.jpeg2k_encode(pixels, level=0 if uid == J2K_LOSSLESS else 40, codecformat="J2K",
                                          bitspersample=bits, reversible=uid == J2K_LOSSLESS)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.file_meta.TransferSyntaxUID = uid
    if uid == J2K_LOSSY:
        ds.LossyImageCompression = "01"
    path.write_bytes(dicom_bytes(ds))
    return path


@pytest.fixture(params=[1.0, 2.0], ids=["coarsest", "one-finer"])
def oversample(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """Both level choices: the coarsest level at least the letterbox size, and one level finer."""
    import cervisag_edge.io.levels as levels

    monkeypatch.setattr(levels, "LEVEL_OVERSAMPLE", request.param)
    return float(request.param)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean())


def _both(path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """(level path, full path) displays at the 384 px letterbox size, and the level image."""
    reduced = read_image(path, resize_to=_letterbox_384)
    full = read_image(path)
    size = _letterbox_384(full.size_px)
    return reduced.resized(size), full.resized(size), reduced


@pytest.mark.parametrize(("full", "size", "factor"), [
    ((2653, 2428), (384, 351), 2),   # a 2500 px DX: level 2 is 664 x 607
    ((769, 501), (384, 250), 1),     # odd sizes: ceil(769 / 2) = 385, ceil(501 / 2) = 251
    ((767, 501), (384, 250), 1),     # ceil(767 / 2) = 384 is just enough
    ((700, 700), (384, 384), 0),     # more than half: no level helps
    ((100_000, 100_000), (1, 1), 8),  # capped at MAX_LEVEL_FACTOR
])
def test_level_factor_is_the_coarsest_level_still_large_enough(full: tuple[int, int], size: tuple[int, int],
                                                               factor: int) -> None:
    assert level_factor(full, size, oversample=1.0) == factor


@needs_openjp2
@pytest.mark.parametrize("hw", [(777, 1001), (1000, 1000), (513, 640)])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_decoded_level_size_is_ceil_of_n_over_2_to_the_r(hw: tuple[int, int], factor: int) -> None:
    pixels = spine_like(*hw)
    data = imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="J2K", bitspersample=12, reversible=True)
    level = openjp2.decode_reduced(bytes(data), factor)
    assert level is not None and level.factor == factor and level.full_wh == (hw[1], hw[0])
    assert level.samples.shape == (math.ceil(hw[0] / 2**factor), math.ceil(hw[1] / 2**factor))
    assert 0 <= level.samples.min() and level.samples.max() <= 4095 and not level.signed


@needs_openjp2
def test_factor_above_the_codestream_levels_uses_the_deepest_one() -> None:
    data = imagecodecs.jpeg2k_encode(spine_like(600, 500), level=0, codecformat="J2K", bitspersample=12,
                                     reversible=True, resolutions=3)  # 2 decomposition levels
    level = openjp2.decode_reduced(bytes(data), 5)
    assert level is not None and level.factor == 2 and level.samples.shape == (150, 125)


@needs_openjp2
@pytest.mark.parametrize("uid", [J2K_LOSSLESS, J2K_LOSSY, HTJ2K_LOSSLESS])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_level_read_matches_full_decode_and_area_resize(tmp_path: Path, uid: str, photometric: str,
                                                       oversample: float) -> None:
    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1601, 1203, seed=3), uid, PhotometricInterpretation=photometric)
    small, ref, img = _both(path)
    assert isinstance(img._source, LevelPixels) and img._source.factor == (2 if oversample == 1.0 else 1)
    assert small.shape == ref.shape == (384, 289)
    assert _mad(small, ref) < MAD_BOUND
    assert abs(float(small.mean()) - float(ref.mean())) < 1e-3  # MONOCHROME1 inverted like the full path


@needs_openjp2
def test_signed_pixels_read_at_a_level(tmp_path: Path, oversample: float) -> None:
    pixels = (spine_like(1600, 1300, seed=5).astype(np.int32) - 2048).astype(np.int16)
    path = _write_j2k(tmp_path / "signed.dcm", pixels, J2K_LOSSLESS, WindowCenter=0, WindowWidth=4096)
    assert pydicom.dcmread(path, stop_before_pixels=True).PixelRepresentation == 1
    small, ref, img = _both(path)
    assert isinstance(img._source, LevelPixels)
    assert _mad(small, ref) < MAD_BOUND


@needs_openjp2
def test_level_keeps_the_geometry(tmp_path: Path, oversample: float) -> None:
    """A small bright disc lands where full decode + area resize puts it (to 0.08 output px; 0.003
    and 0.045 px measured, the rest is the wavelet's shift variance); without the half-block
    correction it would sit 1.5 full px ≈ 0.36 output px off on both axes at factor 2."""
    yy, xx = np.mgrid[0:1603, 0:1201]
    disc = np.exp(-((xx - 613.3) ** 2 + (yy - 801.7) ** 2) / (2 * 9.0**2))
    pixels = (200 + 3500 * disc).astype(np.uint16)
    path = _write_j2k(tmp_path / "disc.dcm", pixels, J2K_LOSSLESS)
    small, ref, img = _both(path)
    assert img._source.factor == (2 if oversample == 1.0 else 1)

    def centroid(a: np.ndarray) -> np.ndarray:
        w = np.clip(a - np.median(a), 0, None)
        y, x = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
        return np.array([(w * x).sum(), (w * y).sum()]) / w.sum()

    assert np.abs(centroid(small) - centroid(ref)).max() < 0.08


@needs_openjp2
def test_display_after_a_level_read_is_the_full_image(tmp_path: Path) -> None:
    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=1))
    reduced = read_image(path, resize_to=_letterbox_384)
    assert isinstance(reduced._source, LevelPixels)
    np.testing.assert_array_equal(reduced.display, read_image(path).display)
    assert reduced.resized(reduced.size_px) is reduced.display


@needs_openjp2
def test_larger_request_than_the_level_decodes_the_full_image(tmp_path: Path) -> None:
    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=2))
    reduced = read_image(path, resize_to=_letterbox_384)  # level 1 or 2
    np.testing.assert_allclose(reduced.resized((600, 800)), read_image(path).resized((600, 800)), atol=1e-6)


def test_without_libopenjp2_the_full_resolution_is_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=1))
    monkeypatch.setattr(openjp2, "library", lambda: None)
    with caplog.at_level(logging.DEBUG, logger="cervisag_edge.io.codecs"):
        img = read_image(path, resize_to=_letterbox_384)
    assert not isinstance(img._source, LevelPixels)
    assert any("decoded at full resolution" in r.getMessage() for r in caplog.records)


def test_non_j2k_syntaxes_ignore_resize_to(tmp_path: Path) -> None:
    path = tmp_path / "native.dcm"
    path.write_bytes(dicom_bytes(valid_dataset(spine_like(1000, 900))))
    assert not isinstance(read_image(path, resize_to=_letterbox_384)._source, LevelPixels)


@needs_openjp2
def test_corrupt_codestream_is_a_one_line_input_error(tmp_path: Path) -> None:
    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=1))
    ds = pydicom.dcmread(path)
    frame = bytearray(pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1))
    ds.PixelData = encapsulate([bytes(frame[:30])])  # SIZ cut short
    ds.save_as(path)
    with pytest.raises(InputError) as info:
        read_image(path, resize_to=_letterbox_384).resized((288, 384))
    assert "\n" not in str(info.value) and path.name in str(info.value) and "(7FE0,0010)" in str(info.value)


@needs_openjp2
@needs_data
@pytest.mark.parametrize("name", ["RG1_J2KR", "RG1_J2KI", "RG3_J2KR", "RG3_J2KI"])
def test_real_cr_films_read_at_a_level(name: str, oversample: float) -> None:
    small, ref, img = _both(DATA / f"{name}.dcm")
    assert isinstance(img._source, LevelPixels) and img._source.factor == (2 if oversample == 1.0 else 1)
    assert _mad(small, ref) < MAD_BOUND


def test_oversample_asks_for_a_finer_level() -> None:
    assert level_factor((2653, 2428), (384, 351), oversample=2.0) == 1  # 1327 x 1214 ≥ 768 x 702
    assert level_factor((2653, 2428), (384, 351), oversample=1.0) == 2


@needs_openjp2
def test_measurer_reads_a_j2k_path_at_its_letterbox_level(tmp_path: Path) -> None:
    from cervisag_edge import Measurer
    from cervisag_edge.engine.preprocess import letterbox_geometry

    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=4))
    with Measurer(threads=1) as m:
        h, w = m.manifest.input_hw
        assert m.resize_size((1200, 1600)) == letterbox_geometry((1200, 1600), (w, h))[0]
        result = m.measure(path)
    assert isinstance(result.study._source, LevelPixels)
    assert result.study._source.factor == level_factor((1200, 1600), m.resize_size((1200, 1600)))
    assert len(result.landmarks) == 34


@needs_openjp2
def test_windows_come_from_a_half_resolution_level_without_a_full_decode(tmp_path: Path) -> None:
    """A window for the second stage's crops is resolution factor 1 resampled onto the
    full-resolution grid: close to the full image's window once smoothed as the crops smooth
    it, and the full resolution is never decoded; read two levels down, factor 1 is decoded
    once for the windows (same values as the factor-1 read)."""
    import cv2

    path = _write_j2k(tmp_path / "cr.dcm", spine_like(1600, 1200, seed=3))
    full = read_image(path).display
    half = read_image(path, resize_to=lambda wh: (wh[0] // 4, wh[1] // 4))  # factor 1 (LEVEL_OVERSAMPLE 2)
    assert isinstance(half._source, LevelPixels) and half._source.factor == 1
    win = half.region(300, 500, 620, 820)
    assert win.shape == (320, 320) and half._source._full is None
    ref = full[500:820, 300:620]
    blur = lambda a: cv2.GaussianBlur(np.ascontiguousarray(a, np.float32), (0, 0), 1.0)  # noqa: E731
    assert _mad(blur(win), blur(ref)) < 2.5e-3  # 1.5e-3 here; one full pixel off gives 4.2e-3
    assert _mad(win, ref) < 5 * MAD_BOUND
    quarter = read_image(path, resize_to=lambda wh: (wh[0] // 8, wh[1] // 8))
    assert quarter._source.factor == 2
    np.testing.assert_allclose(quarter.region(300, 500, 620, 820), win, atol=1e-6)
    assert quarter._source._full is None and quarter._source._half is not None
