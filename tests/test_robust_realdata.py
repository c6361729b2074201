"""Real computed radiographs that are not cervical spines (pydicom-data RG1 hand/RG3 chest CR,
MONOCHROME1, uncompressed and JPEG 2000): the measurement path must run and report the landmarks as
low-confidence rather than confident. Decoding, inversion and spacing are in test_io_realdata.py.

This checks the trained model: an untrained export may pass or fail it by chance.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from cervisag_edge import Measurer
from cervisag_edge.core.landmarks import NUM_LANDMARKS

from realdata import pydicom_data_dir


DATA = pydicom_data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="pydicom-data (package data_store) is not installed")


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with Measurer(threads=1) as m:
        yield m


@pytest.mark.parametrize("name", ["RG1_UNCR", "RG1_J2KR", "RG3_UNCR", "RG3_J2KR"])
def test_non_spine_radiograph_is_not_confident(measurer: Measurer, name: str) -> None:
    assert DATA is not None
    m = measurer.measure(DATA / f"{name}.dcm")
    conf = np.array([lm.confidence for lm in m.landmarks])
    visible = sum(lm.visible for lm in m.landmarks)
    assert len(conf) == NUM_LANDMARKS and np.all(np.isfinite(conf))
    assert float(np.median(conf)) < measurer.confidence_threshold, f"median confidence {np.median(conf):.3f}"
    assert visible < NUM_LANDMARKS // 2, f"{visible} of {NUM_LANDMARKS} landmarks reported visible on a non-spine"
    assert m.pixel_spacing_mm is None  # RG1 spacing is 0\0, RG3 has none: pixels only, never invented mm
