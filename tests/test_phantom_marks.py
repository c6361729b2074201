"""Landmark-aware training variants: annotation marks and the C2 synchondrosis remnant."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from cervisag_edge.core.landmarks import NUM_LANDMARKS  # noqa: E402
from cervisag_edge.tooling.phantom.marks import annotation_marks, body_height_px, synchondrosis  # noqa: E402
from cervisag_edge.tooling.training.data import AugmentConfig, apply_marks  # noqa: E402

H, W = 400, 300


def _spine() -> np.ndarray:
    """(34, 2): C2..T1 as 30×40 px boxes (C2 60 px tall) stacked with 10 px discs; rest NaN."""
    pts = np.full((NUM_LANDMARKS, 2), np.nan)
    y = 40.0
    for k in range(7):
        h = 60.0 if k == 0 else 40.0
        x_ant, x_post = 180.0, 140.0
        pts[6 + 4 * k : 10 + 4 * k] = [[x_ant, y], [x_post, y], [x_post, y + h], [x_ant, y + h]]
        y += h + 10.0
    return pts


def _ramp() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return (0.2 + 0.5 * x / W + 0.1 * y / H).astype(np.float32)


def test_body_height_is_the_median_wall_length():
    assert body_height_px(_spine()) == pytest.approx(40.0)
    assert body_height_px(np.full((NUM_LANDMARKS, 2), np.nan)) is None


def test_no_known_vertebra_leaves_the_image_alone():
    img = _ramp()
    pts = np.full((NUM_LANDMARKS, 2), np.nan)
    rng = np.random.default_rng(0)
    assert annotation_marks(img, pts, rng) is img
    assert synchondrosis(img, pts, rng) is img


@pytest.mark.parametrize("seed", range(6))
def test_inpainted_marks_are_smooth_fills_of_their_surroundings(seed):
    img = _ramp()
    out = annotation_marks(img, _spine(), np.random.default_rng(seed), inpaint_p=1.0)
    assert out.shape == img.shape and out.dtype == np.float32
    changed = np.abs(out - img) > 1e-4
    # a smooth ramp filled by inpainting stays the ramp (OpenCV's float32 Telea gives errors > 1)
    assert np.abs(out - img).max() < 0.03
    assert changed.any() or seed > 0  # at least the first draw marks something


@pytest.mark.parametrize("seed", range(6))
def test_burned_in_marks_cover_the_traced_vertebrae(seed):
    img = np.full((H, W), 0.1, np.float32)  # darker than any burned-in stroke (0.35–1.0)
    out = annotation_marks(img, _spine(), np.random.default_rng(seed), inpaint_p=0.0, labels=0)
    changed = np.abs(out - img) > 0.02
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # without stray labels every stroke lies on the bodies: endplates extended by at most 35 %
    # of their 40 px length, strokes at most 10 px thick, dots at most 7 px in radius
    assert xs.min() >= 140 - 14 - 8 and xs.max() <= 180 + 14 + 8
    assert ys.min() >= 40 - 8 and ys.max() <= 40 + 60 + 6 * 50 + 8
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_marks_are_deterministic_for_a_seed():
    a = annotation_marks(_ramp(), _spine(), np.random.default_rng(3))
    b = annotation_marks(_ramp(), _spine(), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", range(8))
def test_synchondrosis_stays_inside_the_upper_c2_body(seed):
    img = np.full((H, W), 0.5, np.float32)
    out = synchondrosis(img, _spine(), np.random.default_rng(seed))
    changed = np.abs(out - img) > 0.005
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # C2 spans x 140..180, y 40..100; the line lies in its upper 40 % (+ blur and cupping)
    assert xs.min() >= 136 and xs.max() <= 184
    assert ys.min() >= 40 and ys.max() <= 40 + 0.5 * 60


def test_apply_marks_respects_its_probabilities():
    img = _ramp()
    off = AugmentConfig(synchondrosis_p=0.0, marks_p=0.0)
    assert apply_marks(img, _spine(), np.random.default_rng(0), off) is img
    on = AugmentConfig(synchondrosis_p=1.0, marks_p=1.0)
    assert not np.array_equal(apply_marks(img, _spine(), np.random.default_rng(0), on), img)


def test_mark_phantoms_tool_writes_a_traced_copy(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from cervisag_edge.io import read_image
    from cervisag_edge.tooling.phantom.dataset import generate_dataset

    src = tmp_path / "src"
    generate_dataset(src, 2, 4242, fmt="png", out_long_side=320, progress=False)
    spec = importlib.util.spec_from_file_location("mark_phantoms", Path(__file__).resolve().parents[1] / "tools" / "mark_phantoms.py")
    tool = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(tool)  # type: ignore[union-attr]
    assert tool.main([str(src), str(tmp_path / "dst"), "--count", "2", "--seed", "1"]) == 0
    doc = json.loads((tmp_path / "dst" / "annotations.json").read_text())
    assert len(doc["images"]) == 2 and len(doc["annotations"]) == 2
    im = doc["images"][0]
    before = read_image(src / json.loads((src / "annotations.json").read_text())["images"][0]["file_name"]).display
    after = read_image(tmp_path / "dst" / im["file_name"]).display
    assert after.shape == before.shape
    assert np.abs(after - before).max() > 0.02  # something was drawn
    assert im["pixel_spacing_mm"] and im["landmarks_px"]
