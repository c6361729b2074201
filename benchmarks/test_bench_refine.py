"""The second stage (corner refinement on aligned crops) timed on its own, and both stages end to end.

Needs a two-stage manifest: the shipped model when it has a ``refine`` entry, else ``CERVISAG_REFINE_MODEL``
(a path to one); skipped otherwise. Input: one phantom film (seed 31, long side 1024), already
read (the display is built before timing, as the first stage's letterbox would not need it).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from cervisag_edge.engine.manifest import engines_dir, load_manifest


@pytest.fixture(scope="module")
def two_stage():
    from cervisag_edge import Measurer
    from cervisag_edge.tooling.phantom import render_phantom

    path = os.environ.get("CERVISAG_REFINE_MODEL") or str(engines_dir() / "cervisag_unet.json")
    if load_manifest(path, verify_sha256=False).refine is None:
        pytest.skip(f"{path} has no refine entry (set CERVISAG_REFINE_MODEL to a two-stage manifest)")
    ph = render_phantom(31, 7, out_long_side=1024)
    with Measurer(path, threads=1) as two, Measurer(path, threads=1, refine=False) as one:
        yield two, one, ph.display.astype(np.float32), tuple(ph.pixel_spacing_mm)


@pytest.mark.benchmark(group="refine")
def test_bench_stage2_only(benchmark, two_stage) -> None:
    two, one, img, sp = two_stage
    m = one.measure_array(img, sp)
    pts = np.array([[lm.x_px, lm.y_px] for lm in m.landmarks])
    vis = np.array([lm.visible for lm in m.landmarks])
    r = benchmark(two.refiner.refine, img, pts, vis)
    assert r.levels


@pytest.mark.benchmark(group="refine")
@pytest.mark.parametrize("stages", [1, 2])
def test_bench_measure_stages(benchmark, two_stage, stages: int) -> None:
    two, one, img, sp = two_stage
    m = benchmark(lambda: (two if stages == 2 else one).measure_array(img, sp))
    assert ("refine_ms" in m.timings_ms) == (stages == 2)
