"""Shared fixtures of the benchmark suite (``pytest benchmarks/``; smoke mode: ``--benchmark-disable``).

Inputs are made once per session in a temporary folder: a 2000 × 2500 16-bit DICOM, uncompressed
and JPEG 2000 lossless (the physical phantom when installed, else a synthetic radiograph).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from cervisag_edge.tooling.latency.bench import make_bench_inputs
from cervisag_edge.engine.resolver import unavailable_reason
from cervisag_edge.core.landmarks import LANDMARK_NAMES, VERTEBRAE, landmark_index

#: Batch sizes of the end-to-end and inference benchmarks.
BATCHES = (1, 8)


@pytest.fixture(scope="session")
def bench_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"uncompressed": path, "jpeg2000": path (when an encoder is installed)}."""
    return make_bench_inputs(tmp_path_factory.mktemp("bench_inputs"))


@pytest.fixture(scope="session")
def dicom_path(bench_inputs: dict[str, Path]) -> Path:
    return bench_inputs["uncompressed"]


@pytest.fixture(scope="session")
def loaded(dicom_path: Path):
    """The uncompressed input read once: a LoadedImage."""
    from cervisag_edge.io import read_image

    return read_image(dicom_path)


@pytest.fixture(scope="session")
def measurer_for() -> Iterator[Callable[[str, str], object]]:
    """``measurer_for(backend, precision)`` → a cached Measurer, or a skip naming why it cannot run."""
    from cervisag_edge.core.measurer import Measurer

    cache: dict[tuple[str, str], object] = {}

    def get(backend: str, precision: str):
        key = (backend, precision)
        if key not in cache:
            reason = unavailable_reason(backend, precision)
            if reason is not None:
                pytest.skip(f"{backend} {precision}: {reason}")
            cache[key] = Measurer(backend=backend, precision=precision)
        return cache[key]

    yield get
    for m in cache.values():
        m.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def ort(measurer_for):
    return measurer_for("onnxruntime", "fp32")


@pytest.fixture(scope="session")
def spine_landmarks_mm() -> np.ndarray:
    """(34, 2) mm: a gently lordotic spine facing right (bodies 14 mm tall, 5 mm discs, 16 mm deep)."""
    pts = np.full((len(LANDMARK_NAMES), 2), np.nan)

    def wall(s: float, depth: float = 0.0) -> np.ndarray:
        # posterior wall x(s) bends anteriorly at mid-neck; anterior points are shifted by ``depth``
        return np.array([100.0 - 0.004 * (s - 60.0) ** 2 + depth, 50.0 + s])

    for name, s, d in (("MCG_OCC", 0.0, 0.0), ("MCG_PNS", 0.0, 45.0), ("C1_POST", 12.0, 0.0), ("C1_ANT", 12.0, 30.0),
                       ("DENS_TIP", 12.0, 8.0), ("DENS_PS", 20.0, 0.0)):
        pts[landmark_index(name)] = wall(s, d)
    for k, v in enumerate(VERTEBRAE):
        top, bottom = 24.0 + 19.0 * k, 38.0 + 19.0 * k
        pts[landmark_index(f"{v}_PS")] = wall(top)
        pts[landmark_index(f"{v}_AS")] = wall(top, 16.0)
        pts[landmark_index(f"{v}_PI")] = wall(bottom)
        pts[landmark_index(f"{v}_AI")] = wall(bottom, 16.0)
    return pts
