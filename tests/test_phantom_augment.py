"""cervisag_edge.tooling.phantom.augment: contract of the photometric augmentation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cervisag_edge.tooling.phantom.augment import HELDOUT, OPS, TRAIN, augment_display, heldout_display, process_display


def _img(seed: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:128, 0:112].astype(np.float32)
    img = 0.4 + 0.3 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.05 * np.random.default_rng(seed).standard_normal((128, 112))
    return np.clip(img, 0, 1).astype(np.float32)


def test_shape_dtype_range_and_purity() -> None:
    img = _img()
    keep = img.copy()
    for s in range(20):
        out = augment_display(img, np.random.default_rng(s))
        assert out.shape == img.shape and out.dtype == np.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    np.testing.assert_array_equal(img, keep)
    np.testing.assert_array_equal(augment_display(img, np.random.default_rng(0), strength=0.0), img)
    with pytest.raises(ValueError, match="shape"):
        augment_display(np.zeros((4, 4, 3), np.float32), np.random.default_rng(0))


def test_deterministic_per_seed() -> None:
    img = _img()
    a = augment_display(img, np.random.default_rng(3))
    b = augment_display(img, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, augment_display(img, np.random.default_rng(s))) for s in range(4, 8))


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_changes_the_image(name: str) -> None:
    img = _img()
    out = OPS[name](img, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(np.abs(out - img).mean()) > 1e-3, name


def test_heldout_ranges_do_not_overlap_training() -> None:
    for f in dataclasses.fields(TRAIN):
        a, b = getattr(TRAIN, f.name), getattr(HELDOUT, f.name)
        assert a[1] < b[0] or b[1] < a[0], f.name
    out = process_display(_img(), np.random.default_rng(0), HELDOUT)
    assert out.shape == (128, 112) and out.dtype == np.float32
    held = heldout_display(_img(), np.random.default_rng(0))
    np.testing.assert_array_equal(held, out)  # the same family, deterministic per seed
    assert float(np.abs(held - _img()).mean()) > 0.01
