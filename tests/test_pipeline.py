"""The Measurer on arrays and files: structure, units, errors, backends (model-agnostic checks)."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge import Measurer
from cervisag_edge.engine.backends import backend_names, get_backend_class
from cervisag_edge.engine.backends.onnxruntime import resolve_providers
from cervisag_edge.errors import BackendUnavailableError, InputError, ModelError
from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.engine.resolver import backend_installed
from cervisag_edge.core.parameters import coincident
from cervisag_edge.core.measurer import STAGES, display_from_array


@pytest.fixture(scope="module")
def measurer() -> Measurer:
    return Measurer(threads=1)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:900, 0:700]
    return (0.4 + 0.3 * np.sin(xx / 40.0) * np.cos(yy / 55.0) + 0.05 * rng.random((900, 700))).astype(np.float32)


def test_measurement_structure(measurer: Measurer, image: np.ndarray) -> None:
    m = measurer.measure_array(image, (0.15, 0.12))
    assert [lm.name for lm in m.landmarks] == list(LANDMARK_NAMES)
    assert m.image_size_px == (700, 900)
    assert m.model_sha256 == measurer.manifest.sha256 and m.model_id == "cervisag_unet:fp32"
    assert set(STAGES) <= set(m.timings_ms)
    assert m.timings_ms["total_ms"] >= m.timings_ms["inference_ms"] > 0
    for lm, thr in zip(m.landmarks, measurer.visibility.thresholds):
        assert lm.x_mm == pytest.approx(lm.x_px * 0.12) and lm.y_mm == pytest.approx(lm.y_px * 0.15)
        assert np.isfinite(lm.confidence)
        if lm.visible:
            assert lm.confidence >= thr
            assert -0.5 <= lm.x_px <= 699.5 and -0.5 <= lm.y_px <= 899.5
    d = m.to_dict()
    assert d["pixel_spacing_mm"] == [0.15, 0.12] and d["spacing_source"] == "user"
    assert len(d["landmarks"]) == 34


def test_no_spacing_gives_null_millimetres(measurer: Measurer, image: np.ndarray) -> None:
    m = measurer.measure_array(image)
    assert m.pixel_spacing_mm is None and m.spacing_source == "none"
    assert all(lm.x_mm is None and lm.y_mm is None for lm in m.landmarks)
    assert m.parameters.borden_mm is None and m.parameters.sva_c2_c7_mm is None
    assert any("no pixel spacing" in w for w in m.warnings)


def test_batch_equals_single(measurer: Measurer, image: np.ndarray) -> None:
    from cervisag_edge.io import LoadedImage

    imgs = [LoadedImage(path=f"a{i}", display=np.ascontiguousarray(np.roll(image, 37 * i, axis=1)), pixel_spacing_mm=(0.2, 0.2),
                        spacing_source="user") for i in range(3)]
    batch = measurer.measure_batch(imgs)
    for im, b in zip(imgs, batch):
        s = measurer.measure(im)
        np.testing.assert_allclose([[l.x_px, l.y_px] for l in s.landmarks], [[l.x_px, l.y_px] for l in b.landmarks], atol=1e-3)


def test_bad_arrays_raise_input_error(measurer: Measurer) -> None:
    with pytest.raises(InputError, match=r"2-D \(H, W\)"):
        measurer.measure_array(np.zeros((4, 4, 3)))
    with pytest.raises(InputError, match="NaN or inf"):
        measurer.measure_array(np.full((40, 40), np.nan))
    with pytest.raises(InputError, match="pixel_spacing_mm"):
        measurer.measure_array(np.zeros((40, 40), np.float32), (0.0, 0.1))


def test_display_from_array() -> None:
    f = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    assert display_from_array(f) is not None and np.array_equal(display_from_array(f), f)
    u = (np.arange(10000, dtype=np.uint16) * 6).reshape(100, 100)
    d = display_from_array(u)
    assert d.dtype == np.float32 and d.min() == 0.0 and d.max() == 1.0
    assert d[50, 50] == pytest.approx((5050 * 6 - np.percentile(u, 0.5)) / (np.percentile(u, 99.5) - np.percentile(u, 0.5)), abs=1e-5)


def test_coincident_landmarks_are_dropped() -> None:
    pts = np.array([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.0, 5.0]])
    vis = np.array([True, True, True, False])
    assert coincident(pts, vis).tolist() == [True, True, False, False]


def test_backend_input_validation(measurer: Measurer) -> None:
    b = measurer.backend
    h, w = measurer.manifest.input_hw
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        b.infer(np.zeros((1, 1, h, w)))
    with pytest.raises(ValueError, match=rf"expected \(N, 1, {h}, {w}\)"):
        b.infer(np.zeros((1, 1, h // 2, w), np.float32))
    with pytest.raises(TypeError, match="numpy array"):
        b.infer([1, 2, 3])  # type: ignore[arg-type]
    out = b.infer(np.zeros((2, 1, h, w), np.float32))
    assert out.shape == (2, 34, *measurer.manifest.heatmap_shape) and out.dtype == np.float32


def test_registry_and_providers() -> None:
    assert {"onnxruntime", "tensorrt", "torch"} <= set(backend_names())
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'"):
        get_backend_class("nope")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])
    assert resolve_providers(["cuda"], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if not backend_installed("tensorrt"):
        with pytest.raises(BackendUnavailableError, match="tensorrt"):
            Measurer(backend="tensorrt")


def test_auto_falls_back_to_onnxruntime_without_gpu(image: np.ndarray) -> None:
    from cervisag_edge.engine.resolver import gpu_available, tensorrt_available

    if gpu_available() and tensorrt_available():
        pytest.skip("a GPU and TensorRT are present: auto may pick TensorRT")
    assert Measurer(backend="auto", threads=1).backend_name == "onnxruntime"


def test_missing_precision_variant_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="manifest not found"):
        Measurer(tmp_path / "nothing.onnx")


def test_torch_backend_matches_onnxruntime(measurer: Measurer) -> None:
    pytest.importorskip("torch", reason="PyTorch (extra [train]) not installed")
    t = Measurer(backend="torch", threads=1)
    x = np.random.default_rng(1).normal(0, 1, (1, 1, *measurer.manifest.input_hw)).astype(np.float32)
    np.testing.assert_allclose(t.backend.infer(x), measurer.backend.infer(x), atol=2e-4)
