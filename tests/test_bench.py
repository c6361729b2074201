"""cervisag_edge.tooling.latency.bench and ``cervisag bench``: percentiles, the numpy letterbox twin, machine facts,
table rendering, the JSON schema of a tiny real run."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cervisag_edge.tooling.latency import bench
from cervisag_edge.cli.main import main
from cervisag_edge.io import ReadLimits
from cervisag_edge.engine.preprocess import letterbox


# -- percentiles ---------------------------------------------------------------------------------
def test_percentile_hand_computed() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4
    assert bench.percentile(xs, 50) == pytest.approx(2.5)
    # rank 0.95 * 3 = 2.85 → 3 + 0.85 * (4 - 3)
    assert bench.percentile(xs, 95) == pytest.approx(3.85)
    assert bench.percentile(xs, 0) == 1.0 and bench.percentile(xs, 100) == 4.0
    assert bench.percentile([7.0], 95) == 7.0


def test_percentile_matches_numpy_linear() -> None:
    rng = np.random.default_rng(3)
    xs = rng.exponential(10.0, size=37)
    for q in (5, 50, 90, 95, 99):
        assert bench.percentile(list(xs), q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        bench.percentile([], 50)
    with pytest.raises(ValueError):
        bench.percentile([1.0], 101)


def test_summarize_keys_and_order() -> None:
    s = bench.summarize([10.0] * 19 + [100.0])
    assert set(s) == {"median", "p95"}
    assert s["median"] == 10.0
    # rank 0.95 * 19 = 18.05 → 10 + 0.05 * 90
    assert s["p95"] == pytest.approx(14.5)


# -- numpy preprocessing twin --------------------------------------------------------------------
def test_area_resize_integer_factor_is_block_mean() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((12, 18)).astype(np.float32)
    expected = img.reshape(4, 3, 6, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(bench.resize_numpy(img, (6, 4)), expected, rtol=1e-6)


def test_area_resize_fractional_weights_by_hand() -> None:
    # 3 → 2 samples: output 0 covers [0, 1.5) = x0 + 0.5 x1 over 1.5; output 1 covers [1.5, 3)
    row = np.array([[3.0, 6.0, 9.0]], dtype=np.float32)
    out = bench.resize_numpy(row, (2, 1))
    np.testing.assert_allclose(out, [[(3.0 + 0.5 * 6.0) / 1.5, (0.5 * 6.0 + 9.0) / 1.5]], rtol=1e-6)


@pytest.mark.parametrize("hw", [(250, 200), (2500, 2000), (100, 333), (40, 30)])
def test_letterbox_numpy_agrees_with_opencv(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.random(hw).astype(np.float32), (0, 0), 2.0) + rng.random(hw).astype(np.float32) * 0.1
    ref, tf_ref = letterbox(img, (64, 64) if hw[0] < 2000 else (512, 512), 0.0)
    out, tf = bench.letterbox_numpy(img, (64, 64) if hw[0] < 2000 else (512, 512), 0.0)
    assert tf == tf_ref and out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_resize_numpy_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        bench.resize_numpy(np.zeros((2, 2, 2)), (1, 1))
    with pytest.raises(ValueError):
        bench.resize_numpy(np.zeros((2, 2)), (0, 1))


# -- machine --------------------------------------------------------------------------------------
def test_machine_info_keys() -> None:
    info = bench.machine_info()
    for key in ("cpu_model", "cores", "gpu", "libraries", "date", "python"):
        assert key in info
    assert isinstance(info["cores"], int) and info["cores"] >= 1
    for lib in ("numpy", "opencv", "onnxruntime", "torch", "pydicom"):
        assert lib in info["libraries"]
    assert info["libraries"]["numpy"] == np.__version__
    assert info["date"][:2] == "20" and "T" in info["date"]


def test_peak_rss_sees_a_large_allocation() -> None:
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    assert block.sum() > 0
    assert bench.peak_rss_mb() >= 64.0


# -- report rendering and schema -----------------------------------------------------------------
def _run(backend: str, precision: str, infer: float, e2e: float, batch: int = 1) -> dict:
    stage = {"median": 1.0, "p95": 2.0}
    return {"backend": backend, "precision": precision, "batch": batch, "read_ms": stage, "preprocess_ms": stage,
            "inference_ms": {"median": infer, "p95": infer + 1}, "decode_ms": stage, "parameters_ms": stage,
            "end_to_end_ms": {"median": e2e, "p95": e2e + 3}, "images_per_s": 1000.0 / e2e, "cold_start_ms": 900.0,
            "peak_rss_mb": 250.0, "non_inference_share": 1 - infer / e2e}


def test_comparisons_are_ratios_of_medians() -> None:
    runs = [_run("torch", "fp32", 300.0, 330.0), _run("onnxruntime", "fp32", 100.0, 130.0),
            _run("onnxruntime", "int8", 40.0, 70.0)]
    got = {(c["faster"], c["than"]): c for c in bench.comparisons(runs)}
    assert got[("onnxruntime fp32", "torch fp32")]["inference_speedup"] == pytest.approx(3.0)
    assert got[("onnxruntime int8", "onnxruntime fp32")]["end_to_end_speedup"] == pytest.approx(130.0 / 70.0)
    assert ("onnxruntime fp16", "onnxruntime fp32") not in got


def test_render_table_rows_and_cells() -> None:
    report = {"runs": [_run("onnxruntime", "fp32", 100.0, 125.0)],
              "skipped": [{"backend": "tensorrt", "precision": "int8", "reason": "no CUDA GPU"}], "comparisons": []}
    text = bench.render_table(report)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["backend", "prec", "batch"]
    row = lines[2].split()
    assert row[:3] == ["onnxruntime", "fp32", "1"]
    assert "100.0/101.0" in row and "125.0/128.0" in row and "8.00" in row  # 1000 / 125 img/s
    assert "20.0" in row  # non-inference share 25 / 125
    assert "skipped tensorrt int8: no CUDA GPU" in text


def test_validate_report_flags_problems() -> None:
    bad = {"schema": bench.SCHEMA, "machine": {}, "runs": [{"backend": "onnxruntime", "read_ms": {"median": 3, "p95": 1}}],
           "skipped": [], "settings": {}, "input": {}}
    problems = "\n".join(bench.validate_report(bad))
    assert "machine.cpu_model missing" in problems
    assert "runs[0].read_ms median 3 > p95 1" in problems
    assert "runs[0].end_to_end_ms" in problems


def test_bench_dicom_jpeg2000_is_lossless(tmp_path: Path) -> None:
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    pixels = bench.synthetic_radiograph(1, (64, 48))
    p = bench.write_bench_dicom(pixels, tmp_path / "j.dcm", transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(p)
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(ds.pixel_array, pixels)


def test_cli_tiny_run_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dcm = bench.write_bench_dicom(bench.synthetic_radiograph(0, (300, 240)), tmp_path / "small.dcm")
    out = tmp_path / "bench.json"
    rc = main(["-q", "bench", "--repeat", "2", "--warmup", "0", "--backends", "onnxruntime", "--precisions", "fp32", "int8",
               "--batch", "1", "2", "--input", str(dcm), "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert bench.validate_report(report) == []
    fp32 = [(r["backend"], r["precision"], r["batch"]) for r in report["runs"] if r["precision"] == "fp32"]
    assert fp32 == [("onnxruntime", "fp32", 1), ("onnxruntime", "fp32", 2)]
    for r in report["runs"]:
        for key in bench.STAGE_KEYS:
            assert set(r[key]) == {"median", "p95"} and 0 <= r[key]["median"] <= r[key]["p95"]
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1000.0 / r["end_to_end_ms"]["median"])
        assert r["cold_start_ms"] == pytest.approx(r["load_ms"] + r["first_measure_ms"])
        assert r["peak_rss_mb"] > 50 and r["repeat"] == 2
        assert r["image_size_px"] == [240, 300]
        # the shipped model has a second stage: timed (0 here, nothing to refine on a synthetic film),
        # and its inference counts as inference
        assert r["refine_ms"]["median"] >= r["refine_inference_ms"]["median"] >= 0
        infer = r["inference_ms"]["median"] + r["refine_inference_ms"]["median"]
        assert r["non_inference_share"] == pytest.approx(1 - infer / r["end_to_end_ms"]["median"])
    if "int8" not in {r["precision"] for r in report["runs"]}:  # the INT8 variant may not be built yet
        assert any(s["precision"] == "int8" and "not built" in s["reason"] for s in report["skipped"])
    assert report["input"]["rows"] == 300 and report["machine"]["libraries"]["onnxruntime"]
    assert report["floors"]["gflop_per_image"] == pytest.approx(2 * report["model"]["macs_per_image"] / 1e9)
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("backend") and "onnxruntime" in table


class _FakeMeasurement:
    def __init__(self, timings: dict) -> None:
        self.timings_ms = timings


class _FakeMeasurer:
    """Stage times fixed per image, so a batch's times are known sums."""

    limits = ReadLimits()
    per_image = {"read_ms": 0.0, "preprocess_ms": 1.0, "inference_ms": 10.0, "decode_ms": 0.5, "parameters_ms": 0.25}

    def measure(self, path):
        return _FakeMeasurement({**self.per_image, "read_ms": 2.0, "total_ms": 13.75})

    def measure_batch(self, images):
        return [_FakeMeasurement(dict(self.per_image)) for _ in images]


def test_time_batches_sums_stage_times_over_the_batch(tmp_path: Path) -> None:
    dcm = bench.write_bench_dicom(bench.synthetic_radiograph(0, (40, 30)), tmp_path / "s.dcm")
    run = bench.time_batches(_FakeMeasurer(), str(dcm), batch=4, repeat=3, warmup=1)
    assert run["inference_ms"] == {"median": 40.0, "p95": 40.0}
    assert run["preprocess_ms"]["median"] == 4.0 and run["parameters_ms"]["median"] == 1.0
    assert run["end_to_end_ms"]["median"] >= run["read_ms"]["median"] > 0.0
    assert run["images_per_s"] == pytest.approx(4000.0 / run["end_to_end_ms"]["median"])
    one = bench.time_batches(_FakeMeasurer(), str(dcm), batch=1, repeat=2, warmup=0)
    assert one["read_ms"]["median"] == 2.0 and one["inference_ms"]["median"] == 10.0
    with pytest.raises(ValueError):
        bench.time_batches(_FakeMeasurer(), str(dcm), batch=0, repeat=1, warmup=0)
