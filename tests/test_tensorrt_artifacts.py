"""CPU checks of what the GPU path meets first: the shipped int8-trt ONNX, plan and engine checks, tool prerequisites.

Each test reads a real artifact (the shipped ONNX and its manifest) or runs the real check
function on the values TensorRT reports; none stands in for TensorRT or a GPU.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.engine.backends.tensorrt import LEAN_MODULE, check_engine_io, check_plan_manifest
from cervisag_edge.errors import ModelError
from cervisag_edge.engine.manifest import load_manifest
from toolmodules import load_tool

ROOT = Path(__file__).resolve().parents[1]
onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install 'cervisag-edge[quantize]')")
from onnx import TensorProto, numpy_helper  # noqa: E402

INT8_TRT = ROOT / "engines" / "cervisag_unet.int8-trt.json"




def qdq_report(path: Path) -> dict[str, object]:
    """Element types feeding every Q/DQ node of an ONNX graph and where each Conv's bias comes from."""
    g = onnx.load(str(path)).graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    dq_inputs: Counter[str] = Counter()
    zero_points: Counter[str] = Counter()
    for n in g.node:
        if n.op_type == "DequantizeLinear":
            src = n.input[0]
            if src in inits:
                dq_inputs[TensorProto.DataType.Name(inits[src].data_type)] += 1
            else:  # an activation: its type is the QuantizeLinear's zero point type
                q = producer[src]
                assert q.op_type == "QuantizeLinear", f"DQ {n.name} fed by {q.op_type}"
                dq_inputs[TensorProto.DataType.Name(inits[q.input[2]].data_type)] += 1
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = inits[n.input[2]]
            zero_points[TensorProto.DataType.Name(zp.data_type)] += 1
            assert np.all(numpy_helper.to_array(zp) == 0), f"{n.name}: zero point not 0 (TensorRT needs symmetric Q/DQ)"
    bias_from: Counter[str] = Counter()
    for n in g.node:
        if n.op_type == "Conv" and len(n.input) > 2 and n.input[2]:
            b = n.input[2]
            bias_from["initializer" if b in inits else producer[b].op_type] += 1
    return {"dq_inputs": dq_inputs, "zero_points": zero_points, "bias_from": bias_from,
            "convs": sum(n.op_type == "Conv" for n in g.node)}


def test_shipped_int8_trt_onnx_has_only_int8_qdq_and_fp32_biases() -> None:
    """Issue 18 item 1: TensorRT rejects an INT32 DequantizeLinear input (a quantised Conv bias)."""
    m = load_manifest(INT8_TRT)  # also checks the file's sha256 against the manifest
    r = qdq_report(m.model_path)
    assert r["dq_inputs"] and set(r["dq_inputs"]) == {"INT8"}, r["dq_inputs"]  # weights and activations
    assert set(r["zero_points"]) == {"INT8"}
    assert r["bias_from"] and set(r["bias_from"]) == {"initializer"}, r["bias_from"]  # no bias behind a DQ
    int32 = [t.name for t in onnx.load(str(m.model_path)).graph.initializer if t.data_type == TensorProto.INT32]
    assert not int32, f"INT32 initializers {int32[:3]}…"
    assert m.extra["quantization"]["extra_options"]["QuantizeBias"] is False


def test_quantize_tool_keeps_biases_fp32_for_tensorrt_only() -> None:
    q = load_tool("quantize")
    for method in ("MinMax", "Percentile", "Entropy"):
        trt = q.ort_extra_options("int8-trt", method)
        assert trt["QuantizeBias"] is False and trt["ActivationSymmetric"] and trt["WeightSymmetric"]
        assert "QuantizeBias" not in q.ort_extra_options("int8-cpu", method)  # ORT CPU runs INT32 biases fine
    assert q.ort_extra_options("int8-trt", "Percentile")["CalibPercentile"] == 99.999


def test_quantize_tool_preprocesses_as_the_runtime() -> None:
    """tools/quantize.py feeds calibration exactly the runtime's preprocessing (preprocess.prepare_input)."""
    q = load_tool("quantize")
    from cervisag_edge.engine.preprocess import letterbox, normalize

    m = load_manifest(INT8_TRT)
    img = np.random.default_rng(0).random((300, 240)).astype(np.float32)
    x, tf = q.preprocess_display(img, m)
    h, w = m.input_hw
    boxed, tf2 = letterbox(img, (w, h), m.pad_value)
    np.testing.assert_array_equal(x, normalize(boxed, m.mean, m.std)[None, None])
    assert tf == tf2


BLOCK = {
    "tensorrt_version": "11.4.0.106", "tensorrt_module": "tensorrt", "gpu_name": "NVIDIA H200", "compute_capability": "9.0",
    "onnx_file": "m.onnx", "onnx_sha256": "ab" * 32, "profile": {"min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [2, 1, 8, 8]},
    "build_options": {"version_compatible": False, "hardware_compat": "none"},
}
HERE = dict(trt_version="11.4.0.106", gpu_name="NVIDIA H200", compute_capability="9.0", onnx_sha256="ab" * 32)


@pytest.mark.parametrize("options", [{"hardware_compat": "none"}, {"version_compatible": False}, {"version_compatible": "yes"}])
def test_lean_runtime_refuses_a_plan_that_is_not_version_compatible(options: dict) -> None:
    """Issue 18 item 3: tensorrt_lean loads only version-compatible plans; the error names the field."""
    block = {**BLOCK, "build_options": options}
    check_plan_manifest(block, **HERE, runtime_module="tensorrt")  # the full runtime loads it
    with pytest.raises(ModelError, match=r"build_options\.version_compatible"):
        check_plan_manifest(block, **HERE, runtime_module=LEAN_MODULE)
    check_plan_manifest({**BLOCK, "build_options": {**options, "version_compatible": True}}, **HERE, runtime_module=LEAN_MODULE)


def test_import_tensorrt_reason_says_what_installs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 item 2: without any TensorRT module the error says what the extra installs and what it cannot."""
    from cervisag_edge.engine.backends import tensorrt as be
    from cervisag_edge.engine.resolver import tensorrt_module_name
    from cervisag_edge.errors import BackendUnavailableError

    if tensorrt_module_name() is not None:
        pytest.skip(f"{tensorrt_module_name()} is installed here")
    with pytest.raises(BackendUnavailableError, match="tensorrt_lean") as exc:
        be.import_tensorrt()
    assert "NVIDIA" in str(exc.value) and "\n" not in str(exc.value)


def test_tensorrt_extra_names_a_distribution_that_provides_tensorrt_lean() -> None:
    """The [tensorrt] extra is the lean-runtime metapackage (module tensorrt_lean), not the module-less -libs wheel."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in extras["tensorrt"]]
    assert "tensorrt-lean-cu13" in names and not any(n.endswith("-libs") for n in names)


def test_lean_runtime_api_where_installed() -> None:
    lean = pytest.importorskip("tensorrt_lean", reason="tensorrt_lean not installed (pip install 'cervisag-edge[tensorrt]')")
    from cervisag_edge.engine.backends.tensorrt import import_tensorrt

    assert lean.__name__ == LEAN_MODULE and hasattr(lean, "Runtime") and hasattr(lean, "Logger")
    # every attribute TensorRTBackend uses exists in the installed runtime's bindings
    assert hasattr(lean.Logger, "WARNING") and {"FLOAT", "HALF"} <= set(lean.DataType.__members__)
    assert {"deserialize_cuda_engine", "engine_host_code_allowed"} <= set(dir(lean.Runtime))
    assert {"num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_shape",
            "create_execution_context"} <= set(dir(lean.ICudaEngine))
    assert {"set_input_shape", "set_tensor_address", "execute_async_v3"} <= set(dir(lean.IExecutionContext))
    if importlib.util.find_spec("tensorrt") is None:
        assert import_tensorrt().__name__ == LEAN_MODULE


def _io(manifest, in_dtype="FLOAT", out_dtype="FLOAT", out_shape=None, **extra):  # type: ignore[no-untyped-def]
    k = len(manifest.landmark_names)
    h, w = manifest.input_hw
    io = {manifest.input_name: ("INPUT", in_dtype, (-1, 1, h, w)),
          manifest.output_name: ("OUTPUT", out_dtype, out_shape or (-1, k, *manifest.heatmap_shape))}
    io.update(extra)
    return io


def test_check_engine_io_accepts_what_the_shipped_onnx_declares() -> None:
    """The I/O check agrees with the shipped FP16 and INT8 ONNX files' own graph inputs and outputs."""
    for variant in ("fp16", "int8-trt"):
        m = load_manifest(ROOT / "engines" / f"cervisag_unet.{variant}.json")
        g = onnx.load(str(m.model_path), load_external_data=False).graph
        names = {"FLOAT": "FLOAT", "FLOAT16": "HALF"}
        io = {}
        for vi, mode in [(v, "INPUT") for v in g.input] + [(v, "OUTPUT") for v in g.output]:
            t = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            io[vi.name] = (mode, names[TensorProto.DataType.Name(t.elem_type)], dims)
        check_engine_io(io, m, variant)


@pytest.mark.parametrize("change,match", [
    ({"in_dtype": "HALF"}, "dtype HALF"),
    ({"out_dtype": "HALF"}, "dtype HALF"),
    ({"out_shape": (-1, 33, 256, 256)}, "shape"),
    ({"out_shape": (-1, 34, 128, 128)}, "shape"),
    ({"extra_tensor": ("OUTPUT", "FLOAT", (-1, 3))}, "extra_tensor"),
])
def test_check_engine_io_refuses_naming_the_tensor(change: dict, match: str) -> None:
    """Issue 18 item 5: FP16 I/O into float32 buffers, a wrong heatmap shape or an unknown tensor are refused."""
    m = load_manifest(ROOT / "engines" / "cervisag_unet.fp16.json")
    extra = {k: v for k, v in change.items() if k == "extra_tensor"}
    kwargs = {k: v for k, v in change.items() if k != "extra_tensor"}
    io = _io(m, **kwargs, **extra)
    with pytest.raises(ModelError, match=match):
        check_engine_io(io, m, "engine")
    missing = _io(m)
    del missing[m.output_name]
    with pytest.raises(ModelError, match="output_name"):
        check_engine_io(missing, m, "engine")
    swapped = _io(m)
    swapped[m.input_name] = ("OUTPUT",) + swapped[m.input_name][1:]
    with pytest.raises(ModelError, match="expected INPUT"):
        check_engine_io(swapped, m, "engine")


def test_build_engine_prerequisite_check_survives_a_missing_cuda_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 item 8: find_spec("cuda.bindings") raises ModuleNotFoundError when there is no 'cuda' package."""
    be = load_tool("build_engine")
    for name in [m for m in sys.modules if m.startswith("cuda.")]:  # imported by earlier tests: hide them too
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cuda", None)  # exactly what Python does for an absent parent package
    with pytest.raises(ModuleNotFoundError):
        importlib.util.find_spec("cuda.bindings")  # the call the tool used to make unguarded
    assert be.module_present("cuda.bindings") is False
    reason = be.missing_prerequisite()
    assert reason is not None and "\n" not in reason


def test_device_check_without_gpu_exits_2_and_writes_its_report(tmp_path: Path) -> None:
    """device_check ends with a reason (exit 2) and still writes its JSON and Markdown, never a traceback."""
    from cervisag_edge.engine.resolver import gpu_available

    if gpu_available():
        pytest.skip("a GPU is present: device_check would run the full check")
    import subprocess

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--json", str(tmp_path / "d.json"),
                        "--markdown", str(tmp_path / "d.md"), "--no-tensorrt", "--no-pytest"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "FAIL" in r.stdout
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["checks"] and data["checks"][0]["status"] == "FAIL"
    assert (tmp_path / "d.md").read_text().startswith("Device check:")
