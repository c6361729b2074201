"""Phantom generation speed (pytest-benchmark): target <= 0.3 s per 640 px image on one core."""
from __future__ import annotations

import numpy as np

from cervisag_edge.tooling.phantom import render_phantom
from cervisag_edge.tooling.phantom.augment import augment_display


def test_bench_phantom_640(benchmark) -> None:
    counter = iter(range(1000))
    ph = benchmark.pedantic(lambda: render_phantom(11, next(counter), out_long_side=640), rounds=8, iterations=1)
    assert max(ph.display.shape) == 640


def test_bench_augment_448(benchmark) -> None:
    img = render_phantom(11, 0, out_long_side=448).display
    rng = np.random.default_rng(0)
    out = benchmark.pedantic(lambda: augment_display(img, rng), rounds=30, iterations=1)
    assert out.shape == img.shape
