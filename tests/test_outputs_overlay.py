"""Overlay PNG: layout, landmark drawing, banner, legend, file output."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.outputs.overlay import (
    MAX_LONG_SIDE_PX,
    overlay_layout,
    render_overlay,
    save_overlay,
    unavailable_reason,
)
from test_outputs_support import IMAGE_H_PX, IMAGE_W_PX, make_measurement, synthetic_display


def _canvas_xy(layout, m, name):
    lm = m.landmarks[LANDMARK_NAMES.index(name)]
    x, y = layout.to_canvas(np.array([[lm.x_px, lm.y_px]]))[0]
    return int(round(x)), int(round(y))


def test_shape_dtype_and_downscale():
    display = synthetic_display(2800, 3600)  # long side 3600 -> 1600
    rgb = render_overlay(display, make_measurement())
    layout = overlay_layout(3600, 2800)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == (layout.height_px, layout.width_px)
    assert layout.image_h_px == MAX_LONG_SIDE_PX and layout.image_w_px == round(2800 * 1600 / 3600)
    assert layout.scale == pytest.approx(1600 / 3600)


def test_line_width_and_font_scale_grow_with_image():
    small, large = overlay_layout(900, 700), overlay_layout(3600, 2800)
    assert large.thickness_px > small.thickness_px
    assert large.font_scale > small.font_scale


def test_landmarks_are_coloured_and_image_elsewhere_untouched():
    m = make_measurement()
    display = synthetic_display()
    rgb = render_overlay(display, m)
    layout = overlay_layout(IMAGE_H_PX, IMAGE_W_PX)
    x, y = _canvas_xy(layout, m, "T1_AI")  # no parameter line passes through T1_AI
    r, g, b = (int(v) for v in rgb[y, x])
    assert g > 200 and r < 120 and b < 120  # solid green marker on grey anatomy
    # a far corner of the image region keeps the grey of the (resized) display
    gy, gx = layout.image_y0 + layout.image_h_px - 5, 5
    assert rgb[gy, gx, 0] == rgb[gy, gx, 1] == rgb[gy, gx, 2]
    expected = round(float(display[-1, 0]) * 255)
    assert abs(int(rgb[gy, gx, 0]) - expected) <= 2


def test_hidden_landmark_is_hollow_and_grey():
    m = make_measurement(hidden=("T1_AI",))
    rgb = render_overlay(synthetic_display(), m)
    layout = overlay_layout(IMAGE_H_PX, IMAGE_W_PX)
    x, y = _canvas_xy(layout, m, "T1_AI")
    ring = rgb[y - 12 : y + 13, x - 12 : x + 13].reshape(-1, 3).astype(int)
    assert not np.any((ring[:, 1] > 200) & (ring[:, 0] < 120))  # no solid green
    grey_ring = (np.abs(ring[:, 0] - 125) < 12) & (ring[:, 0] == ring[:, 1]) & (ring[:, 1] == ring[:, 2])
    assert grey_ring.sum() > 10


def test_low_confidence_landmark_is_a_red_ring_with_image_inside():
    m = make_measurement(low_confidence=("T1_AI",))
    display = synthetic_display()
    rgb = render_overlay(display, m)
    layout = overlay_layout(IMAGE_H_PX, IMAGE_W_PX)
    x, y = _canvas_xy(layout, m, "T1_AI")
    r, g, b = (int(v) for v in rgb[y, x])
    assert r == g == b  # centre not filled
    patch = rgb[y - 12 : y + 13, x - 12 : x + 13].reshape(-1, 3).astype(int)
    assert np.any((patch[:, 0] > 200) & (patch[:, 1] < 100))


def test_banner_is_drawn():
    rgb = render_overlay(synthetic_display(), make_measurement())
    layout = overlay_layout(IMAGE_H_PX, IMAGE_W_PX)
    banner = rgb[: layout.banner_h_px].reshape(-1, 3).astype(int)
    red_bg = (banner[:, 0] > 150) & (banner[:, 1] < 40)
    white_text = (banner.min(axis=1) > 200)
    assert red_bg.mean() > 0.6 and white_text.sum() > 200


def test_legend_panel_has_text_and_missing_value_reason():
    m = make_measurement(hidden=("C7_PI",))
    assert unavailable_reason(m, "cobb_c2_c7_deg") == "C7 hidden"
    rgb = render_overlay(synthetic_display(), m)
    layout = overlay_layout(IMAGE_H_PX, IMAGE_W_PX)
    panel = rgb[layout.image_y0 :, layout.panel_x0 :].reshape(-1, 3).astype(int)
    assert (panel.min(axis=1) > 200).sum() > 500  # white text


def test_no_spacing_reason():
    m = make_measurement(spacing_mm=None)
    assert unavailable_reason(m, "borden_mm") == "no pixel spacing"


def test_bad_display_shape_raises():
    with pytest.raises(InputError, match=r"shape \(4, 4, 3\)"):
        render_overlay(np.zeros((4, 4, 3), np.float32), make_measurement())


def test_save_overlay_writes_png(tmp_path):
    path = tmp_path / "ov.png"
    rgb = save_overlay(path, synthetic_display(700, 900), make_measurement())
    back = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, rgb)
