"""Inference alone, per backend × precision, at batch 1 and 8: PyTorch eager (the model as trained)
vs ONNX Runtime FP32 vs FP16 vs INT8 (and TensorRT where a GPU and a plan exist)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import BATCHES

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.mark.benchmark(group="inference")
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inference(benchmark, measurer_for, loaded, backend: str, precision: str, batch: int) -> None:
    m = measurer_for(backend, precision)
    x, _ = m.preprocess(loaded.display)
    xb = np.ascontiguousarray(np.repeat(x, batch, axis=0))
    m.backend.infer(xb)  # warm-up: first-call allocations are not steady state
    out = benchmark.pedantic(m.backend.infer, args=(xb,), rounds=5, iterations=1)
    assert out.shape[:2] == (batch, len(m.manifest.landmark_names)) and np.all(np.isfinite(out))
