"""End to end on a realistic 2000 × 2500 16-bit DICOM (uncompressed and JPEG 2000): read,
preprocess, infer, decode, parameters, at batch 1 and batch 8 (ONNX Runtime, each precision built)."""
from __future__ import annotations

import pytest

from cervisag_edge.io import read_image


@pytest.mark.benchmark(group="end-to-end")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("kind", ["uncompressed", "jpeg2000"])
def test_end_to_end_batch1(benchmark, measurer_for, bench_inputs, kind: str, precision: str) -> None:
    if kind not in bench_inputs:
        pytest.skip(f"no {kind} input (JPEG 2000 encoder not installed)")
    m = measurer_for("onnxruntime", precision)
    result = benchmark.pedantic(m.measure, args=(bench_inputs[kind],), rounds=5, iterations=1, warmup_rounds=1)
    assert result.image_size_px == (2000, 2500)


@pytest.mark.benchmark(group="end-to-end")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_end_to_end_batch8(benchmark, measurer_for, dicom_path, precision: str) -> None:
    m = measurer_for("onnxruntime", precision)

    def batch8():
        return m.measure_batch([read_image(dicom_path) for _ in range(8)])

    results = benchmark.pedantic(batch8, rounds=3, iterations=1)
    assert len(results) == 8 and all(r.image_size_px == (2000, 2500) for r in results)
