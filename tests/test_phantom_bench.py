"""Benchmarks of the phantom renderer (pytest-benchmark); also the docs gallery writer."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cervisag_edge.tooling.phantom import render_phantom
from cervisag_edge.tooling.phantom.gallery import thumbnail, write_gallery


def test_bench_render_reduced_640(benchmark) -> None:
    ph = benchmark.pedantic(render_phantom, args=(1, 0), kwargs={"out_long_side": 640}, rounds=3, iterations=1)
    assert max(ph.stored.shape) == 640


@pytest.mark.slow
def test_bench_render_full_2000x2500(benchmark) -> None:
    ph = benchmark.pedantic(render_phantom, args=(1, 0), kwargs={"size": (2000, 2500)}, rounds=2, iterations=1)
    assert ph.stored.shape == (2500, 2000)


def test_gallery_writes_small_pngs_with_landmarks(tmp_path: Path) -> None:
    paths = write_gallery(tmp_path, seed=3, long_side=128, variants=("standard", "straight"), with_landmarks=("standard",))
    assert [p.name for p in paths] == ["standard.png", "straight.png"]
    for p in paths:
        img = cv2.imread(str(p))
        assert max(img.shape[:2]) == 128 and p.stat().st_size < 40_000
    ph = render_phantom(3, 0, out_long_side=128, variant="standard")
    plain, dotted = thumbnail(ph), thumbnail(ph, True)
    assert np.array_equal(cv2.imread(str(paths[0])), dotted)
    changed = np.any(plain != dotted, axis=2)
    x, y = ph.landmarks_px[ph.visibility > 0][0]
    assert changed[int(round(y)), int(round(x))]


def test_real_reference_is_windowed_by_the_project_reader(tmp_path: Path) -> None:
    from realdata import pydicom_data_dir

    from cervisag_edge.io import read_image
    from cervisag_edge.tooling.phantom.gallery import write_real_reference

    folder = pydicom_data_dir()
    if folder is None:
        pytest.skip("pydicom-data is not installed")
    whole, crop = write_real_reference(folder / "RG1_UNCR.dcm", tmp_path, long_side=200, crop_px=64)
    a, b = cv2.imread(str(whole), cv2.IMREAD_GRAYSCALE), cv2.imread(str(crop), cv2.IMREAD_GRAYSCALE)
    assert max(a.shape) == 200 and b.shape == (64, 64)
    disp = read_image(folder / "RG1_UNCR.dcm").display
    y0, x0 = int(0.04 * disp.shape[0]), (disp.shape[1] - 64) // 2
    ref = np.rint(disp[y0:y0 + 64, x0:x0 + 64] * 255)
    assert np.abs(b.astype(float) - ref).mean() < 3.0  # JPEG, otherwise the reader's display
