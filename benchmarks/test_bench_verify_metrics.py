"""Benchmark: scoring a 1,000-image run (the metrics, not the inference) stays cheap."""
from __future__ import annotations

import numpy as np
import pytest

import sys
from pathlib import Path

from cervisag_edge.tooling.verify.evaluate import ImageRecord, compute_metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_verify_support import SIX, synthetic_spine_px  # noqa: E402

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark not installed")


def _records(n: int) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    truth = synthetic_spine_px()
    out = []
    for i in range(n):
        pred = truth + rng.normal(0, 3, truth.shape)
        err = np.hypot(*((pred - truth) * 0.25).T)
        ref = {k: float(v) for k, v in zip(SIX, rng.normal(20, 5, 6))}
        out.append(ImageRecord(i, f"{i}.png", f"{i}.png", None, pred, truth, np.full(34, 2), (0.25, 0.25), err,
                               {k: v + rng.normal(0, 1) for k, v in ref.items()}, ref))
    return out


def test_bench_compute_metrics_1000_images(benchmark):
    records = _records(1000)
    doc = benchmark(compute_metrics, records)
    assert doc["n_images"] == 1000 and doc["n_landmarks"] == 34000
    # errors are |N(0, 3 px)| in 2-D at 0.25 mm: Rayleigh mean 3·sqrt(pi/2)·0.25 ≈ 0.94 mm
    assert doc["mre_mm"] == pytest.approx(3 * np.sqrt(np.pi / 2) * 0.25, rel=0.03)
