"""Each pipeline stage timed on its own: DICOM read (and its sub-steps), preprocessing (OpenCV vs
numpy), heatmap decoding and the clinical parameters."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.io import imaging
from cervisag_edge.tooling.latency.bench import letterbox_numpy
from cervisag_edge.io import read_image
from cervisag_edge.io.image import finalize_display
from cervisag_edge.core.parameters import compute_parameters
from cervisag_edge.engine.preprocess import letterbox, normalize


# -- read and decode ---------------------------------------------------------------------------
@pytest.mark.benchmark(group="read")
@pytest.mark.parametrize("kind", ["uncompressed", "jpeg2000"])
def test_read_dicom(benchmark, bench_inputs, kind: str) -> None:
    if kind not in bench_inputs:
        pytest.skip(f"no {kind} input (JPEG 2000 encoder not installed)")
    img = benchmark(read_image, bench_inputs[kind])
    assert img.display.shape == (2500, 2000)


@pytest.mark.benchmark(group="read-steps")
@pytest.mark.parametrize("kind", ["uncompressed", "jpeg2000"])
def test_read_pixel_decode_only(benchmark, bench_inputs, kind: str) -> None:
    """pydicom parse + pixel decode, the part of ``read`` no VOI work can remove."""
    import pydicom
    from pydicom.pixels import pixel_array

    if kind not in bench_inputs:
        pytest.skip(f"no {kind} input (JPEG 2000 encoder not installed)")
    arr = benchmark(lambda: pixel_array(pydicom.dcmread(bench_inputs[kind])))
    assert arr.dtype == np.uint16 and arr.shape == (2500, 2000)


@pytest.fixture(scope="module")
def raw(dicom_path):
    import pydicom

    ds = pydicom.dcmread(dicom_path)
    return ds, ds.pixel_array


@pytest.mark.benchmark(group="read-steps")
def test_read_mask_bits(benchmark, raw) -> None:
    ds, arr = raw
    out = benchmark(imaging.mask_bits_stored, arr, int(ds.BitsStored), False)
    assert out.shape == arr.shape


@pytest.mark.benchmark(group="read-steps")
def test_read_modality_rescale(benchmark, raw) -> None:
    _, arr = raw
    out = benchmark(imaging.apply_rescale, arr.astype(np.int64), 1.0, 0.0)
    assert out.dtype == np.float64


@pytest.mark.benchmark(group="read-steps")
def test_read_voi_window(benchmark, raw) -> None:
    ds, arr = raw
    values = arr.astype(np.float64)
    out = benchmark(imaging.window_linear, values, float(ds.WindowCenter), float(ds.WindowWidth))
    assert out.dtype == np.float32 and 0.0 <= float(out.min()) <= float(out.max()) <= 1.0


@pytest.mark.benchmark(group="read-steps")
def test_read_finalize_display(benchmark, loaded) -> None:
    out = benchmark(finalize_display, np.array(loaded.display))
    assert not out.flags.writeable


# -- preprocessing -------------------------------------------------------------------------------
def _pre(fn, display, m):
    h, w = m.manifest.input_hw
    boxed, _ = fn(display, (w, h), m.manifest.pad_value)
    return normalize(boxed, m.manifest.mean, m.manifest.std)


@pytest.mark.benchmark(group="preprocess")
@pytest.mark.parametrize("impl", ["opencv", "numpy"])
def test_preprocess(benchmark, loaded, ort, impl: str) -> None:
    fn = letterbox if impl == "opencv" else letterbox_numpy
    out = benchmark(_pre, fn, loaded.display, ort)
    assert out.shape == ort.manifest.input_hw


# -- decode and parameters -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def heatmaps(loaded, ort):
    x, tf = ort.preprocess(loaded.display)
    return ort.backend.infer(x)[0], tf


@pytest.mark.benchmark(group="decode")
def test_decode_heatmaps(benchmark, heatmaps, ort) -> None:
    hm, tf = heatmaps
    pts, conf, visible = benchmark(ort.decode, hm, tf)
    assert pts.shape == (hm.shape[0], 2) and conf.shape == (hm.shape[0],)


@pytest.mark.benchmark(group="parameters")
def test_parameters(benchmark, spine_landmarks_mm) -> None:
    params = benchmark(compute_parameters, spine_landmarks_mm)
    assert params.cobb_c2_c7_deg is not None
