"""Golden values for the pure pixel functions, computed by hand from PS3.3 C.11.1 / C.11.2.1.2."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cervisag_edge.io import imaging


def test_window_linear_golden() -> None:
    # c = 100, w = 50: y = (x - 99.5) / 49 + 0.5; bottom edge x <= 75, top edge x > 124.
    y = imaging.window_linear(np.array([0.0, 75.0, 87.25, 100.0, 124.0, 500.0]), 100, 50)
    expected = [0.0, 0.0, 0.25, 0.5 + 0.5 / 49, 1.0, 1.0]
    np.testing.assert_allclose(y, expected, atol=1e-6)
    assert y.dtype == np.float32


def test_window_linear_rejects_width_below_one() -> None:
    with pytest.raises(ValueError, match="width"):
        imaging.window_linear(np.zeros(3), 0, 0.5)


def test_window_linear_exact_golden() -> None:
    # c = 100, w = 50: y = (x - 100) / 50 + 0.5
    y = imaging.window_linear_exact(np.array([50.0, 75.0, 87.5, 100.0, 110.0, 125.0, 200.0]), 100, 50)
    np.testing.assert_allclose(y, [0.0, 0.0, 0.25, 0.5, 0.7, 1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError):
        imaging.window_linear_exact(np.zeros(2), 0, 0)


def test_window_sigmoid_golden() -> None:
    # y = 1 / (1 + exp(-4 (x - c) / w)); c = 100, w = 50.
    x = np.array([100.0, 112.5, 87.5, 100.0 + 50.0 * math.log(3.0) / 4.0])
    y = imaging.window_sigmoid(x, 100, 50)
    np.testing.assert_allclose(y, [0.5, 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1)), 0.75], atol=1e-6)
    assert np.all(np.isfinite(imaging.window_sigmoid(np.array([-1e9, 1e9]), 0, 1)))
    with pytest.raises(ValueError):
        imaging.window_sigmoid(np.zeros(2), 0, -1)


def test_apply_rescale() -> None:
    np.testing.assert_array_equal(imaging.apply_rescale(np.array([1000, 0]), 2.0, -1024.0), [976.0, -1024.0])
    with pytest.raises(ValueError):
        imaging.apply_rescale(np.zeros(1), float("nan"), 0.0)


def test_apply_lut_table_clamps_below_and_above() -> None:
    # first mapped -1 -> entry 0; below clamps to the first entry, above to the last.
    out = imaging.apply_lut_table(np.array([-5, -1, 0, 1, 7]), np.array([10, 20, 30]), -1)
    np.testing.assert_array_equal(out, [10, 10, 20, 30, 30])


def test_apply_voi_lut_table_normalises_by_bits() -> None:
    out = imaging.apply_voi_lut_table(np.array([0, 1, 2]), np.array([0, 51, 255]), 0, 8)
    np.testing.assert_allclose(out, [0.0, 0.2, 1.0], atol=1e-7)


def test_mask_bits_stored_unsigned_and_signed() -> None:
    raw = np.array([0xF001, 0x0FFF, 0x0800, 0x07FF], dtype=np.uint16)
    np.testing.assert_array_equal(imaging.mask_bits_stored(raw, 12, signed=False), [1, 4095, 2048, 2047])
    np.testing.assert_array_equal(imaging.mask_bits_stored(raw, 12, signed=True), [1, -1, -2048, 2047])
    # idempotent on an already sign-extended array
    np.testing.assert_array_equal(imaging.mask_bits_stored(np.array([-1, -2048], np.int16), 12, True), [-1, -2048])


def test_percentile_window_golden() -> None:
    # arange(1001): the 10th and 90th percentiles are 100 and 900 (linear interpolation).
    x = np.arange(1001, dtype=np.float64).reshape(7, 143)
    y = imaging.percentile_window(x, 10, 90)
    assert y.flat[500] == pytest.approx(0.5)
    assert y.flat[100] == 0.0 and y.flat[50] == 0.0
    assert y.flat[950] == 1.0


def test_percentile_window_ignores_constant_border() -> None:
    img = np.zeros((40, 40), dtype=np.uint16)
    img[10:30, 10:30] = np.arange(1000, 1400).reshape(20, 20)
    border = imaging.border_constant_value(img)
    assert border == 0.0
    y = imaging.percentile_window(img, 0.0, 100.0, ignore_value=border)
    assert y[10, 10] == 0.0 and y[29, 29] == 1.0  # interior min 1000 -> 0, max 1399 -> 1
    assert y[10, 11] == pytest.approx(1 / 399, abs=1e-6)
    without = imaging.percentile_window(img, 0.0, 100.0)
    assert without[10, 10] > 0.7  # border zeros would have compressed the interior


def test_border_constant_value_none_for_textured_border() -> None:
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    assert imaging.border_constant_value(img) is None


def test_percentile_window_constant_image_is_zero() -> None:
    assert not imaging.percentile_window(np.full((4, 4), 7.0)).any()


def test_invert_and_grey() -> None:
    np.testing.assert_allclose(imaging.invert_monochrome1(np.array([0.0, 0.25, 1.0])), [1.0, 0.75, 0.0])
    grey = imaging.rgb_to_grey(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8))
    np.testing.assert_allclose(grey, [[76.245, 149.685, 29.07]], atol=1e-9)
