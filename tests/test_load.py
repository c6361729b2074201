"""Load: a soak of many measurements in one process keeps memory flat, and concurrent threads give
the same results as a serial run.

The soak runs ``CERVISAG_SOAK_N`` measurements (default 10 000, several minutes); it is marked
``slow`` so that CI can deselect it with ``-m "not slow"`` or shorten it with the variable.
"""
from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from cervisag_edge import Measurer

from corpus import CASES, build_case, dicom_bytes, spine_like, valid_dataset

SOAK_N = int(os.environ.get("CERVISAG_SOAK_N", "10000"))
#: Measurements before the baseline RSS is taken (allocator pools, ORT arenas and caches fill up).
WARMUP_N = 200
MAX_GROWTH = 0.05


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with Measurer(threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("load")
    paths = []
    for seed in range(4):
        path = folder / f"study{seed}.dcm"
        path.write_bytes(dicom_bytes(valid_dataset(spine_like(120, 100, seed=seed))))
        paths.append(path)
    paths.append(build_case(CASES["png"], folder))
    paths.append(build_case(CASES["jpeg2000"], folder))
    return paths


def _signature(m) -> tuple:
    """Landmarks and parameters as text (repr), so that NaN compares equal to NaN."""
    return tuple(repr((lm.x_px, lm.y_px, lm.confidence, lm.visible)) for lm in m.landmarks) + (
        repr(sorted(m.parameters.as_dict().items())),
    )


@pytest.mark.slow
def test_soak_memory_is_stable(measurer: Measurer, studies: list[Path]) -> None:
    if SOAK_N <= WARMUP_N:
        pytest.skip(f"CERVISAG_SOAK_N={SOAK_N} leaves nothing after the {WARMUP_N}-measurement warm-up")
    for i in range(WARMUP_N):
        measurer.measure(studies[i % len(studies)])
    gc.collect()
    baseline = rss_bytes()
    peak = baseline
    for i in range(SOAK_N - WARMUP_N):
        m = measurer.measure(studies[i % len(studies)])
        assert len(m.landmarks) == 34
        if i % 250 == 0:
            peak = max(peak, rss_bytes())
    gc.collect()
    final = rss_bytes()
    growth = (max(peak, final) - baseline) / baseline
    assert growth < MAX_GROWTH, f"RSS grew {growth:.1%} over {SOAK_N} measurements ({baseline >> 20} -> {max(peak, final) >> 20} MiB)"


def test_four_threads_equal_serial(measurer: Measurer, studies: list[Path]) -> None:
    work = studies * 4
    serial = [_signature(measurer.measure(p)) for p in work]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda p: _signature(measurer.measure(p)), work))
    assert threaded == serial
    assert len(set(serial)) > 1  # the studies differ, so a mix-up between threads would show


def test_four_threads_on_arrays_equal_serial(measurer: Measurer) -> None:
    arrays = [spine_like(150 + 10 * i, 110, seed=i).astype(np.float32) for i in range(8)]
    serial = [_signature(measurer.measure_array(a, (0.2, 0.2))) for a in arrays]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda a: _signature(measurer.measure_array(a, (0.2, 0.2))), arrays))
    assert threaded == serial
