"""The second stage crops windows of a DICOM's display without building the full-resolution
display, and gets the values the full display would give (io region == display slice)."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from cervisag_edge.engine.crop import crop_display, frame_affine, vertebra_frame
from cervisag_edge.io import read_image
from cervisag_edge.tooling.phantom import render_phantom, write_dicom


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    ph = render_phantom(21, 3, size=(700, 900))
    path = write_dicom(ph, tmp_path_factory.mktemp("win") / "p.dcm", ExplicitVRLittleEndian)
    return path, ph


def test_region_equals_the_display_window_and_builds_nothing(study) -> None:
    path, _ = study
    lazy = read_image(path)
    w, h = lazy.size_px
    win = lazy.region(-5, 100, 120, 260)  # clipped at the left edge
    assert lazy._display is None  # noqa: SLF001 - the point of the test
    assert win.shape == (160, 120) and win.dtype == np.float32
    full = read_image(path).display
    np.testing.assert_array_equal(win, full[100:260, 0:120])
    np.testing.assert_array_equal(lazy.region(w - 30, h - 20, w + 10, h + 10), full[h - 20:, w - 30:])
    assert lazy.region(w + 1, 0, w + 5, 10).size == 0


def test_crops_from_windows_match_crops_from_the_display(study) -> None:
    path, ph = study
    lazy = read_image(path)
    full = read_image(path).display
    pts = np.asarray(ph.landmarks_px, dtype=np.float64)
    for level in range(7):
        corners = pts[6 + 4 * level: 10 + 4 * level]
        fr = vertebra_frame(corners, 2.0)
        if fr is None:
            continue
        for size in (96, 24):  # 24 px shrinks the image: the smoothed path
            M = frame_affine(fr, size)
            np.testing.assert_allclose(crop_display(lazy, M, size, 0.1), crop_display(full, M, size, 0.1), atol=1e-6)
    assert lazy._display is None  # noqa: SLF001


def test_measure_with_the_second_stage_never_builds_the_full_display(study) -> None:
    from cervisag_edge import Measurer

    path, _ = study
    img = read_image(path)
    with Measurer() as m:
        if m.refiner is None:
            pytest.skip("the shipped model has no second stage")
        meas = m.measure(img)
    assert meas.timings_ms.get("refine_ms") is not None
    assert img._display is None  # noqa: SLF001
