"""The ``--ray`` path of the harness on a small local Ray instance (skipped without ray)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.tooling.verify import MeasurerSpec, load_dataset
from cervisag_edge.tooling.verify.harness import run_measurements

from test_verify_support import FAKE_FACTORY, as_list, synthetic_spine_px, write_set

ray = pytest.importorskip("ray", reason="ray not installed (the [ray] extra)")


@pytest.fixture(scope="module")
def local_ray():
    tests_dir = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_ray_matches_in_process(tmp_path, local_ray):
    truth = synthetic_spine_px()
    pred = truth + np.array([2.0, -1.0])
    root = write_set(tmp_path / "set", [truth, truth], [as_list(pred), None])
    items = load_dataset(root).items
    spec = MeasurerSpec(factory=FAKE_FACTORY)
    got = run_measurements(items, spec, workers=1, use_ray=True)
    assert [r.index for r in got] == [0, 1]
    assert got[0].error is None and got[1].error is not None and "cannot read image" in got[1].error
    np.testing.assert_allclose(got[0].measurement.landmarks_px(), pred)
    assert ray.is_initialized()  # an instance the caller started is left running
