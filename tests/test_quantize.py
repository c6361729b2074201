"""tools/quantize.py on a tiny random U-Net-like model with synthetic images (CPU, seconds)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.engine.manifest import ModelManifest, load_manifest, sha256_file
from toolmodules import load_tool

pytest.importorskip("onnxconverter_common", reason="onnxconverter-common not installed (pip install onnxconverter-common)")
torch = pytest.importorskip("torch", reason="torch is needed to export the test model")




q = load_tool("quantize")
K = len(LANDMARK_NAMES)


class TinyUNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c = torch.nn.Conv2d
        self.enc = torch.nn.Sequential(c(1, 8, 3, 2, 1), torch.nn.ReLU(), c(8, 16, 3, 1, 1), torch.nn.ReLU())
        self.down = torch.nn.Sequential(c(16, 16, 3, 2, 1), torch.nn.ReLU())
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = torch.nn.Sequential(c(32, 16, 3, 1, 1), torch.nn.ReLU())
        self.head = c(16, K, 1)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        e = self.enc(x)
        return torch.sigmoid(self.head(self.fuse(torch.cat([e, self.up(self.down(e))], 1))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    onnx = d / "tiny.onnx"
    torch.onnx.export(TinyUNet().eval(), torch.zeros(1, 1, 64, 64), str(onnx), input_names=["image"], output_names=["heatmaps"],
                      dynamo=False, opset_version=17, dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}})
    codec = {"type": "udp-dark", "sigma": 2.0, "hidden_amplitude": 0.35, "blur_sigma": 1.0, "input_size": [64, 64], "heatmap_size": [32, 32]}
    ModelManifest(name="tiny", file="tiny.onnx", sha256=sha256_file(onnx), precision="fp32", input_name="image",
                  input_shape=(-1, 1, 64, 64), output_name="heatmaps", heatmap_shape=(32, 32), heatmap_stride=2,
                  mean=0.5, std=0.25, pad_value=0.0, resize="letterbox", codec=codec).write(d / "tiny.json")
    return d / "tiny.json"


def synthetic_samples(manifest: ModelManifest, seed: int, count: int, long_side: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        img = np.clip(rng.normal(0.5, 0.2, size=(long_side, long_side * 4 // 5)), 0, 1).astype(np.float32)
        x, tf = q.preprocess_display(img, manifest)
        out.append(q.EvalSample(x, tf, (0.1, 0.1)))
    return out


def test_head_node_names_finds_the_last_conv(tiny: Path) -> None:
    heads = q.head_node_names(tiny.parent / "tiny.onnx")
    import onnx

    g = onnx.load(str(tiny.parent / "tiny.onnx")).graph
    convs = [n.name for n in g.node if n.op_type == "Conv"]
    assert heads == [convs[-1]]  # Sigmoid sits between the head Conv and the output


def test_landmark_error_mm() -> None:
    a = np.zeros((2, 3, 2))
    b = a.copy()
    b[1, 2] = [3.0, 4.0]
    assert q.landmark_error_mm(a, b) == (pytest.approx(5.0 / 6), 5.0)


def _cand(err: float, head: bool, lat: float = 10.0) -> "q.Candidate":
    return q.Candidate(Path(f"{err}{head}"), "MinMax", head, "QDQ", err, err, lat)


def test_choose_keeps_head_fp32_only_when_it_measurably_helps() -> None:
    assert q.choose([_cand(0.10, False), _cand(0.097, True)]).head_fp32 is False  # 3 % better: not worth it
    assert q.choose([_cand(0.10, False), _cand(0.05, True)]).head_fp32 is True
    assert q.choose([_cand(0.2, False), _cand(0.1, False, 5.0)]).mean_error_mm == 0.1
    with pytest.raises(ValueError):
        q.choose([])


def test_parse_args() -> None:
    a = q.parse_args(["m.json", "--variants", "int8-cpu", "--calib-methods", "MinMax,Entropy", "--head", "int8"])
    assert (a.variants, a.calib_methods, a.head_modes) == (["int8-cpu"], ["MinMax", "Entropy"], [False])
    for bad in (["m.json", "--variants", "int4"], ["m.json", "--calib-methods", "Histogram"], ["m.json", "--runs", "0"]):
        with pytest.raises(SystemExit):
            q.parse_args(bad)


def test_run_writes_three_variants_with_manifests(tiny: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto

    args = q.parse_args([str(tiny), "--calib-methods", "MinMax", "--calib-count", "3", "--eval-count", "2",
                         "--long-side", "80", "--runs", "2", "--out-dir", str(tmp_path)])
    lines: list[str] = []
    written = q.run(args, report=lines.append, samples_fn=synthetic_samples)
    assert [p.name for p in written] == ["tiny.fp16.json", "tiny.int8-trt.json", "tiny.int8-cpu.json"]
    for p in written:
        m = load_manifest(p)  # sha256 of the variant file checked here
        assert m.precision == p.name.split(".")[1] and m.base_model == "tiny.onnx"
        acc = m.extra["accuracy_vs_fp32"]
        assert 0.0 <= acc["mean_landmark_error_mm"] <= acc["max_landmark_error_mm"]
        assert m.extra["tool"]
    fp16 = onnx.load(str(tmp_path / "tiny.fp16.onnx"))
    assert fp16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # FP32 I/O kept
    assert fp16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(t.data_type == TensorProto.FLOAT16 for t in fp16.graph.initializer)

    def zero_point_types(path: Path) -> set[int]:
        g = onnx.load(str(path)).graph
        inits = {t.name: t for t in g.initializer}
        return {inits[n.input[2]].data_type for n in g.node if n.op_type == "QuantizeLinear" and n.input[2] in inits}

    trt = load_manifest(tmp_path / "tiny.int8-trt.json")
    assert zero_point_types(tmp_path / "tiny.int8-trt.onnx") == {TensorProto.INT8}  # symmetric S8 activations
    g = onnx.load(str(tmp_path / "tiny.int8-trt.onnx")).graph
    inits = {t.name: t for t in g.initializer}
    zps = [onnx.numpy_helper.to_array(inits[n.input[2]]) for n in g.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert all(np.all(z == 0) for z in zps)
    # TensorRT accepts INT8 Q/DQ only: no Conv bias quantised to INT32 behind a DequantizeLinear
    producer = {o: n for n in g.node for o in n.output}
    assert all(inits[n.input[0]].data_type == TensorProto.INT8 for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)
    assert all(n.input[2] in inits for n in g.node if n.op_type == "Conv" and len(n.input) > 2), [
        producer[n.input[2]].op_type for n in g.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] not in inits]
    assert trt.extra["quantization"]["extra_options"]["QuantizeBias"] is False
    assert trt.extra["quantization"]["activation_type"] == "QInt8"
    cpu = load_manifest(tmp_path / "tiny.int8-cpu.json")
    assert cpu.extra["quantization"]["activation_type"] == "QUInt8"
    compared = cpu.extra["calibration"]["compared"]
    assert {(c["head_fp32"], c["format"]) for c in compared} == {(False, "QDQ"), (False, "QOperator"), (True, "QDQ"), (True, "QOperator")}
    assert cpu.extra["calibration"]["seed"] == 1000 and cpu.extra["calibration"]["count"] == 3
    if cpu.extra["head_fp32"]:
        assert cpu.extra["nodes_excluded"] == q.head_node_names(tiny.parent / "tiny.onnx")
    assert any(line.startswith("fp32") for line in lines)
    # deterministic: a second run gives byte-identical INT8 files
    first = (tmp_path / "tiny.int8-trt.onnx").read_bytes()
    args2 = q.parse_args([str(tiny), "--variants", "int8-trt", "--calib-methods", "MinMax", "--head", "int8", "--calib-count", "3",
                          "--eval-count", "2", "--long-side", "80", "--runs", "2", "--out-dir", str(tmp_path / "again")])
    q.run(args2, report=lines.append, samples_fn=synthetic_samples)
    if not trt.extra["head_fp32"]:
        assert (tmp_path / "again" / "tiny.int8-trt.onnx").read_bytes() == first
