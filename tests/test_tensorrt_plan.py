"""Plan manifests, plan checks and build_engine's pure parts (CPU); the real engine test skips without TensorRT + GPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.engine.backends.tensorrt import PLAN_FORMAT, check_plan_manifest, plan_block
from cervisag_edge.engine.resolver import gpu_available, tensorrt_available
from cervisag_edge.errors import ModelError
from cervisag_edge.engine.manifest import ModelManifest, load_manifest, sha256_file
from toolmodules import load_tool





be = load_tool("build_engine")

BLOCK = {
    "tensorrt_version": "10.13.2.6",
    "tensorrt_module": "tensorrt",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": "9.0",
    "onnx_file": "m.fp16.onnx",
    "onnx_sha256": "ab" * 32,
    "profile": {"min": [1, 1, 64, 64], "opt": [1, 1, 64, 64], "max": [4, 1, 64, 64]},
    "build_options": {"version_compatible": False, "hardware_compat": "none"},
}
HERE = dict(trt_version="10.13.2.6", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", onnx_sha256="ab" * 32)


def _with(**changes: object) -> dict:
    b = json.loads(json.dumps(BLOCK))
    for k, v in changes.items():
        if k in ("version_compatible", "hardware_compat"):
            b["build_options"][k] = v
        else:
            b[k] = v
    return b


def test_check_plan_manifest_accepts_a_matching_plan() -> None:
    check_plan_manifest(BLOCK, **HERE)


@pytest.mark.parametrize(
    "block,here,field",
    [
        (_with(tensorrt_version="10.12.0.36"), {}, "tensorrt_version"),
        (BLOCK, {"trt_version": "11.0.0.1"}, "tensorrt_version"),
        (BLOCK, {"gpu_name": "NVIDIA H200"}, "gpu_name"),
        (_with(compute_capability="8.6"), {}, "compute_capability"),
        (BLOCK, {"onnx_sha256": "cd" * 32}, "onnx_sha256"),
        ({k: v for k, v in BLOCK.items() if k != "onnx_sha256"}, {}, "onnx_sha256"),
        (_with(hardware_compat="turing+"), {}, "hardware_compat"),
    ],
)
def test_check_plan_manifest_refuses_naming_the_field(block: dict, here: dict, field: str) -> None:
    with pytest.raises(ModelError, match=field):
        check_plan_manifest(block, **{**HERE, **here})


def test_version_compatible_plan_runs_on_same_or_later_tensorrt_only() -> None:
    vc = _with(version_compatible=True)
    check_plan_manifest(vc, **{**HERE, "trt_version": "10.14.1.48"})
    check_plan_manifest(vc, **{**HERE, "trt_version": "11.0.0.114"})
    with pytest.raises(ModelError, match="tensorrt_version"):
        check_plan_manifest(vc, **{**HERE, "trt_version": "10.12.0.36"})


def test_hardware_compatible_plan_needs_ampere_or_newer_but_not_the_same_gpu() -> None:
    hc = _with(hardware_compat="ampere+")
    check_plan_manifest(hc, **{**HERE, "gpu_name": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"})
    check_plan_manifest(hc, **{**HERE, "gpu_name": "NVIDIA H200", "compute_capability": "9.0"})
    with pytest.raises(ModelError, match="compute capability >= 8.0"):
        check_plan_manifest(hc, **{**HERE, "gpu_name": "Tesla T4", "compute_capability": "7.5"})


def _onnx_manifest(tmp_path: Path) -> ModelManifest:
    onnx = tmp_path / "m.fp16.onnx"
    onnx.write_bytes(b"not really onnx but hashed")
    m = ModelManifest(
        name="m", file=onnx.name, sha256=sha256_file(onnx), precision="fp16", input_name="image",
        input_shape=(-1, 1, 64, 64), output_name="heatmaps", heatmap_shape=(32, 32), heatmap_stride=2,
        mean=0.5, std=0.25, pad_value=0.0, resize="letterbox", codec={"type": "udp-dark"},
        base_model="m.onnx", extra={"tool": "test"},
    )
    m.write(tmp_path / "m.fp16.json")
    return load_manifest(tmp_path / "m.fp16.json")


def test_plan_manifest_round_trip_and_check(tmp_path: Path) -> None:
    onnx_m = _onnx_manifest(tmp_path)
    plan, plan_json, cache = be.plan_paths(onnx_m)
    assert plan == tmp_path / "m.fp16.plan" and plan_json == tmp_path / "m.fp16.plan.json"
    assert cache == tmp_path / "m.timing.cache"
    plan.write_bytes(b"serialized engine bytes")
    opts = be.BuildOptions(max_batch=4, opt_batch=2, workspace_mib=512, version_compatible=True, hardware_compat="ampere+")
    pm = be.make_plan_manifest(
        onnx_m, plan_path=plan, plan_sha256=sha256_file(plan), trt_version="10.13.2.6", trt_module="tensorrt",
        gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", options=opts, built_at="2026-01-01T00:00:00+00:00",
    )
    pm.write(plan_json)
    loaded = load_manifest(plan_json)  # verifies the plan's sha256
    assert loaded.format == PLAN_FORMAT and loaded.file == "m.fp16.plan"
    assert (loaded.mean, loaded.std, loaded.input_shape) == (0.5, 0.25, (-1, 1, 64, 64))
    block = plan_block(loaded)
    assert block["onnx_file"] == "m.fp16.onnx" and block["onnx_sha256"] == onnx_m.sha256
    assert block["profile"] == {"min": [1, 1, 64, 64], "opt": [2, 1, 64, 64], "max": [4, 1, 64, 64]}
    assert block["build_options"]["workspace_mib"] == 512 and block["build_options"]["strongly_typed"] is True
    assert loaded.extra["tool"] == "test"
    check_plan_manifest(block, trt_version="10.14.0.1", gpu_name="NVIDIA A10", compute_capability="8.6",
                        onnx_sha256=sha256_file(tmp_path / block["onnx_file"]))
    (tmp_path / "m.fp16.onnx").write_bytes(b"a different onnx")
    with pytest.raises(ModelError, match="onnx_sha256"):
        check_plan_manifest(block, trt_version="10.14.0.1", gpu_name="x", compute_capability="9.0",
                            onnx_sha256=sha256_file(tmp_path / block["onnx_file"]))


def test_plan_block_refuses_an_onnx_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="format"):
        plan_block(_onnx_manifest(tmp_path))


def test_profile_shapes() -> None:
    assert be.profile_shapes([-1, 1, 512, 512], 8, 2) == {"min": [1, 1, 512, 512], "opt": [2, 1, 512, 512], "max": [8, 1, 512, 512]}
    assert be.profile_shapes([1, 1, 512, 512], 1)["min"] == [1, 1, 512, 512]
    with pytest.raises(ValueError, match="dynamic batch"):
        be.profile_shapes([1, 1, 512, 512], 4)
    with pytest.raises(ValueError, match="non-batch"):
        be.profile_shapes([-1, 1, -1, 512], 4)
    with pytest.raises(ValueError, match="opt batch"):
        be.profile_shapes([-1, 1, 512, 512], 4, 5)


def test_parse_args_validates() -> None:
    a = be.parse_args(["x.json", "--max-batch", "8", "--version-compatible", "--hardware-compat", "ampere+"])
    opts = be.options_from_args(a, Path("/e/m.timing.cache"))
    assert (opts.max_batch, opts.version_compatible, opts.hardware_compat, opts.timing_cache) == (8, True, "ampere+", "m.timing.cache")
    assert opts.tf32 is True and be.options_from_args(be.parse_args(["x.json", "--no-tf32"]), Path("c")).tf32 is False
    for bad in (["x.json", "--max-batch", "0"], ["x.json", "--opt-batch", "3", "--max-batch", "2"], ["x.json", "--hardware-compat", "turing+"]):
        with pytest.raises(SystemExit):
            be.parse_args(bad)


def test_parser_errors_lists_every_error() -> None:
    class Err:
        def __init__(self, i: int) -> None:
            self.i = i

        def node(self) -> int:
            return self.i

        def code(self) -> str:
            return "UNSUPPORTED_NODE"

        def desc(self) -> str:
            return f"problem {self.i}"

    class Parser:
        num_errors = 3

        def get_error(self, i: int) -> Err:
            return Err(i)

    lines = be.parser_errors(Parser())
    assert len(lines) == 3 and lines[2].startswith("node 2") and "problem 2" in lines[2]


@pytest.mark.skipif(tensorrt_available() and gpu_available(), reason="TensorRT and a GPU are present: the build would run")
def test_build_engine_without_tensorrt_or_gpu_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = be.main([str(tmp_path / "missing.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("build_engine: ") and ("TensorRT" in err or "GPU" in err or "cuda-python" in err)


def _export_tiny(tmp_path: Path) -> ModelManifest:  # pragma: no cover - GPU only
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 34, 3, 1, 1)).eval()
    onnx = tmp_path / "tiny.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, 64, 64), str(onnx), input_names=["image"], output_names=["heatmaps"],
                      dynamo=False, opset_version=17, dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}})
    m = ModelManifest(name="tiny", file="tiny.onnx", sha256=sha256_file(onnx), precision="fp32", input_name="image",
                      input_shape=(-1, 1, 64, 64), output_name="heatmaps", heatmap_shape=(32, 32), heatmap_stride=2,
                      mean=0.5, std=0.25, pad_value=0.0, resize="letterbox",
                      codec={"type": "udp-dark", "input_size": [64, 64], "heatmap_size": [32, 32], "blur_sigma": 1.0})
    m.write(tmp_path / "tiny.json")
    return load_manifest(tmp_path / "tiny.json")


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not (tensorrt_available() and gpu_available()), reason="needs TensorRT and a CUDA GPU (none on this machine)")
def test_tensorrt_backend_matches_onnxruntime(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    import onnxruntime as ort

    from cervisag_edge.engine.backends.tensorrt import TensorRTBackend
    manifest = _export_tiny(tmp_path)
    rc = be.main([str(tmp_path / "tiny.json"), "--max-batch", "2", "--no-tf32"])  # full FP32 for parity
    assert rc == 0
    pm = load_manifest(tmp_path / "tiny.plan.json")
    assert plan_block(pm)["build_options"]["tf32"] is False
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(manifest.model_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"image": x})[0]
    with TensorRTBackend(pm, cuda_graph=True, graph_batch=2) as b:
        np.testing.assert_allclose(b.infer(x), ref, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(b.infer(x[:1]), ref[:1], atol=1e-4, rtol=1e-4)  # batch 1 on the main context
        np.testing.assert_allclose(b.infer(x), ref, atol=1e-4, rtol=1e-4)  # graph replay after another batch size


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(not (tensorrt_available() and gpu_available()), reason="needs TensorRT and a CUDA GPU (none on this machine)")
def test_tensorrt_gpu_pre_and_post_processing_match_the_cpu_path(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    """infer_raw (NVRTC preprocess → TensorRT → NVRTC decode) agrees with the CPU preprocess + codec on the same plan."""
    from cervisag_edge.engine.backends.tensorrt import TensorRTBackend
    from cervisag_edge.engine.codec import UDPHeatmapCodec
    from cervisag_edge.io.imaging import window_linear
    from cervisag_edge.engine.preprocess import prepare_input

    _export_tiny(tmp_path)
    assert be.main([str(tmp_path / "tiny.json"), "--max-batch", "2", "--no-tf32"]) == 0
    pm = load_manifest(tmp_path / "tiny.plan.json")
    raw = np.random.default_rng(1).integers(0, 4096, size=(250, 200), dtype=np.uint16)
    with TensorRTBackend(pm, gpu_preprocess=True, gpu_decode=True) as b:
        got, tf = b.infer_raw(raw, slope=1.0, intercept=0.0, center=2048.0, width=4096.0, invert=False)
        x, tf_cpu = prepare_input(window_linear(raw.astype(np.float64), 2048.0, 4096.0), pm.input_hw,
                                  pad_value=pm.pad_value, mean=pm.mean, std=pm.std)
        coords, scores = UDPHeatmapCodec.from_manifest(pm.codec).decode(b.infer(x)[0])
    assert tf == tf_cpu
    np.testing.assert_allclose(got[:, 2], scores, atol=1e-3)
    close = np.linalg.norm(got[:, :2] - coords, axis=1) < 0.05
    assert close.mean() > 0.9  # a random net's flat maps may flip an argmax tie on a 1e-6 input difference
