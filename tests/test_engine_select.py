from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cervisag_edge.engine import resolver as es
from cervisag_edge.errors import BackendUnavailableError
from cervisag_edge.engine.manifest import engines_dir


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

    code = "import sys; from cervisag_edge.engine.resolver import gpu_available as g; r = g(); print(type(r).__name__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["bool", "False"]


def test_manifest_lookup_resolution(tmp_path: Path) -> None:
    """(moved from test_manifest: find_manifest is now manifest_path_for, the one naming rule)"""
    assert es.manifest_path_for(None, "onnxruntime", "fp32").name == "cervisag_unet.json"
    assert es.manifest_path_for("x", "onnxruntime", "fp16").name == "x.fp16.json"
    assert es.manifest_path_for(tmp_path / "m.onnx", "onnxruntime", "fp32") == tmp_path / "m.json"
    # the stale mapping is gone: int8 on the CPU is the int8-cpu file that tools/quantize.py writes
    assert es.manifest_path_for("x", "onnxruntime", "int8").name == "x.int8-cpu.json"
    assert es.manifest_path_for(None, "onnxruntime", "int8").is_file()
    # the torch reference reads the fp32 ONNX manifest (its extra.torch_weights names the weights)
    assert es.manifest_path_for(None, "torch", "fp32") == es.manifest_path_for(None, "onnxruntime", "fp32")


def test_plan_paths_match_the_lookup(tmp_path: Path) -> None:
    for onnx_manifest, precision in (("m.json", "fp32"), ("m.fp16.json", "fp16"), ("m.int8-trt.json", "int8")):
        plan, plan_manifest = es.plan_paths_for(tmp_path / onnx_manifest)
        assert plan_manifest == es.manifest_path_for(tmp_path / "m.onnx", "tensorrt", precision)
        assert plan.name == plan_manifest.name[: -len(".json")] and plan.suffix == ".plan"


def test_unavailable_reasons(tmp_path: Path) -> None:
    """(moved from test_bench: bench.unavailable_reason is now the resolver's)"""
    assert "fp32 only" in es.unavailable_reason("torch", "int8")
    assert "unknown backend" in es.unavailable_reason("nope", "fp32")
    assert "unknown precision" in es.unavailable_reason("onnxruntime", "int4")
    reason = es.unavailable_reason("onnxruntime", "int8", str(tmp_path / "m.onnx"))
    assert reason is not None and "m.int8-cpu.json" in reason and "tools/quantize.py" in reason
    assert es.unavailable_reason("onnxruntime", "fp32") is None  # the shipped model


def test_unavailable_reasons_name_each_missing_piece(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(es, "gpu_available", lambda: False)
    monkeypatch.setattr(es, "tensorrt_module_name", lambda: None)
    reason = es.unavailable_reason("tensorrt", "fp16", str(tmp_path / "m.onnx"))
    assert reason is not None
    parts = reason.split("; ")
    assert parts[0].startswith("no CUDA GPU")
    assert parts[1].startswith("not installed: 'tensorrt'") and "cervisag-edge[tensorrt]" in parts[1]
    assert parts[2] == "not built: m.fp16.plan.json missing (tools/build_engine.py)"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "not installed: 'torch'" in es.unavailable_reason("torch", "fp32")
    assert not es.backend_installed("onnxruntime")


def test_tensorrt_availability_is_the_tensorrt_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from cervisag_edge.engine.backends import tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "tensorrt_module_name", lambda: "tensorrt_lean")
    assert es.tensorrt_module_name() == "tensorrt_lean" and es.backend_installed("tensorrt")


def test_resolve_refuses_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailableError, match="unknown backend 'cuda'"):
        es.resolve(None, "cuda", "fp32")
    with pytest.raises(BackendUnavailableError, match="fp32 only"):
        es.resolve(None, "torch", "int8")
    r = es.resolve(None, "onnxruntime", "int8")
    assert (r.backend, r.manifest_path.name, r.reason) == ("onnxruntime", "cervisag_unet.int8-cpu.json", "requested explicitly")
    monkeypatch.setattr(es, "gpu_available", lambda: False)
    auto = es.resolve(None, "auto", "fp32")
    assert auto.backend == "onnxruntime" and "CUDA GPU" in auto.reason
