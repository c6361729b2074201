from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cervisag_edge import engine_select as es
from cervisag_edge.errors import BackendUnavailableError
from cervisag_edge.manifest import engines_dir


@pytest.mark.parametrize(
    "backend,precision,expected",
    [
        ("onnxruntime", "int8", "int8-cpu"),
        ("tensorrt", "int8", "int8-trt"),
        ("onnxruntime", "fp16", "fp16"),
        ("tensorrt", "fp16", "fp16"),
        ("onnxruntime", "fp32", "fp32"),
        ("tensorrt", "fp32", "fp32"),
    ],
)
def test_variant_for(backend: str, precision: str, expected: str) -> None:
    assert es.variant_for(backend, precision) == expected


@pytest.mark.parametrize("backend,precision", [("onnxruntime", "int4"), ("torch2", "fp32"), ("auto", "int8")])
def test_variant_for_rejects_unknown(backend: str, precision: str) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        es.variant_for(backend, precision)


def test_manifest_path_for_names_and_paths(tmp_path: Path) -> None:
    assert es.manifest_path_for(None, "onnxruntime", "fp32") == engines_dir() / "cervisag_unet.json"
    assert es.manifest_path_for("cervisag_unet", "onnxruntime", "int8") == engines_dir() / "cervisag_unet.int8-cpu.json"
    assert es.manifest_path_for("m", "tensorrt", "int8") == engines_dir() / "m.int8-trt.plan.json"
    assert es.manifest_path_for("m", "tensorrt", "fp32") == engines_dir() / "m.fp32.plan.json"
    # a path keeps its folder and loses its variant/format suffixes
    assert es.manifest_path_for(tmp_path / "m.onnx", "onnxruntime", "fp16") == tmp_path / "m.fp16.json"
    assert es.manifest_path_for(tmp_path / "m.int8-cpu.onnx", "tensorrt", "int8") == tmp_path / "m.int8-trt.plan.json"
    assert es.manifest_path_for(tmp_path / "m.fp16.plan.json", "onnxruntime", "fp32") == tmp_path / "m.json"
    assert es.manifest_path_for(tmp_path / "m.json", "onnxruntime", "int8") == tmp_path / "m.int8-cpu.json"


def test_choose_backend_auto_prefers_tensorrt_only_when_everything_is_there() -> None:
    backend, reason = es.choose_backend("auto", gpu_available=True, tensorrt_available=True, plan_manifest_ok=True)
    assert backend == "tensorrt" and "tensorrt" in reason
    for gpu, trt, plan, word in [(False, True, True, "GPU"), (True, False, True, "TensorRT ("), (True, True, False, "plan")]:
        backend, reason = es.choose_backend("auto", gpu_available=gpu, tensorrt_available=trt, plan_manifest_ok=plan)
        assert backend == "onnxruntime"
        assert word in reason


def test_choose_backend_explicit() -> None:
    assert es.choose_backend("onnxruntime", gpu_available=True, tensorrt_available=True, plan_manifest_ok=True)[0] == "onnxruntime"
    assert es.choose_backend("tensorrt", gpu_available=True, tensorrt_available=True, plan_manifest_ok=True)[0] == "tensorrt"
    with pytest.raises(BackendUnavailableError, match="GPU.*TensorRT"):
        es.choose_backend("tensorrt", gpu_available=False, tensorrt_available=False, plan_manifest_ok=True)
    with pytest.raises(BackendUnavailableError, match="plan") as info:
        es.choose_backend("tensorrt", gpu_available=True, tensorrt_available=True, plan_manifest_ok=False)
    assert "CUDA GPU" not in str(info.value) and "TensorRT (pip" not in str(info.value)
    with pytest.raises(ValueError):
        es.choose_backend("cuda", gpu_available=True, tensorrt_available=True, plan_manifest_ok=True)


def test_tensorrt_available_matches_find_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    expected = any(real(n) is not None for n in ("tensorrt", "tensorrt_lean"))
    assert es.tensorrt_available() is expected
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt_lean" else None)
    assert es.tensorrt_available() is True
    assert es.tensorrt_module_name() == "tensorrt_lean"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert es.tensorrt_available() is False


def test_gpu_available_is_false_without_cuda_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert es.gpu_available() is False


def test_gpu_available_returns_bool_and_never_imports_torch() -> None:
    import subprocess
    import sys

    code = "import sys; from cervisag_edge.engine_select import gpu_available as g; r = g(); print(type(r).__name__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["bool", "False"]
