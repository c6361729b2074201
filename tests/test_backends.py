"""Backend lifecycle (after Polygraphy): cheap constructor, activate/deactivate, a clear error on an
inactive backend, inference timed by the backend; the torch backend in the registry."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.engine.backends import backend_entry, backend_names, get_backend_class
from cervisag_edge.engine.resolver import manifest_path_for
from cervisag_edge.errors import BackendStateError, BackendUnavailableError, ModelError
from cervisag_edge.engine.manifest import load_manifest


@pytest.fixture(scope="module")
def manifest():
    return load_manifest(manifest_path_for(None, "onnxruntime", "fp32"))


def _batch(manifest, n: int = 1) -> np.ndarray:
    return np.zeros((n, 1, *manifest.input_hw), np.float32)


def test_constructor_is_cheap_and_infer_needs_activate(manifest) -> None:
    backend = get_backend_class("onnxruntime")(manifest, threads=1)
    assert not backend.is_active and not hasattr(backend, "session")
    with pytest.raises(BackendStateError, match="inactive backend.*call activate"):
        backend.infer(_batch(manifest))
    assert backend.activate() is backend and backend.is_active
    heatmaps, ms = backend.infer_timed(_batch(manifest, 2))
    assert heatmaps.shape == (2, 34, *manifest.heatmap_shape) and ms > 0 and backend.last_inference_ms == ms
    backend.deactivate()
    assert not backend.is_active
    with pytest.raises(BackendStateError):
        backend.infer(_batch(manifest))
    with backend:  # activates again, deactivates on exit
        assert backend.infer(_batch(manifest)).shape[0] == 1
    assert not backend.is_active


def test_activate_reports_model_errors(manifest, tmp_path) -> None:
    from dataclasses import replace

    broken = replace(manifest, path=str(tmp_path), file="nothing.onnx")
    backend = get_backend_class("onnxruntime")(broken)
    with pytest.raises(ModelError, match="nothing.onnx"):
        backend.activate()
    assert not backend.is_active


def test_registry_lists_torch_like_the_others() -> None:
    assert set(backend_names()) == {"onnxruntime", "tensorrt", "torch"}
    assert backend_entry("torch").precisions == ("fp32",)
    with pytest.raises(BackendUnavailableError, match="unknown backend 'nope'"):
        backend_entry("nope")


def test_torch_backend_lifecycle(manifest) -> None:
    pytest.importorskip("torch", reason="PyTorch (extra [train]) not installed")
    backend = get_backend_class("torch")(manifest, threads=1)
    assert not backend.is_active and not hasattr(backend, "model")
    with backend:
        assert backend.infer(_batch(manifest)).shape == (1, 34, *manifest.heatmap_shape)
    with pytest.raises(BackendStateError):
        backend.infer(_batch(manifest))


def test_tensorrt_backend_constructs_without_tensorrt(manifest) -> None:
    backend = get_backend_class("tensorrt")(manifest)  # cheap: nothing of TensorRT or CUDA touched
    assert not backend.is_active and backend.max_batch is None
    with pytest.raises(BackendStateError):
        backend.infer(_batch(manifest))
