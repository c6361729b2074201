"""Benchmark: the chain decoder of the vertebral levels against the plain argmax + DARK decode,
on the shipped model's heatmaps of the benchmark input (target: the chain adds ≤ 2 ms per image
on 2 cores; compare the two rows of group ``decode-chain``)."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.core.chain import decode_chain, load_chain_prior
from cervisag_edge.core.landmarks import VERTEBRAE

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark not installed")


@pytest.fixture(scope="module")
def model_heatmaps(loaded, measurer_for):
    m = measurer_for("onnxruntime", "fp32")
    x, _ = m.preprocess(loaded.display)
    return m.backend.infer(x)[0], m.codec


@pytest.mark.benchmark(group="decode-chain")
def test_decode_plain(benchmark, model_heatmaps) -> None:
    hm, codec = model_heatmaps
    pts, conf = benchmark(codec.decode, hm)
    assert pts.shape == (hm.shape[0], 2) and np.all(np.isfinite(conf))


@pytest.mark.benchmark(group="decode-chain")
def test_decode_chain(benchmark, model_heatmaps) -> None:
    hm, codec = model_heatmaps
    prior = load_chain_prior()
    res = benchmark(decode_chain, hm, prior, codec)
    assert res.landmarks_hm.shape == (hm.shape[0], 2)
    assert len(res.levels_found) >= 4 and set(res.levels_found) <= set(VERTEBRAE)
