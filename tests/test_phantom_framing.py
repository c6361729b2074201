"""Field of view: framing rates, visibility flags of out-of-frame landmarks, held-out style."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cervisag_edge.core.landmarks import landmark_index
from cervisag_edge.tooling.phantom import render_phantom
from cervisag_edge.tooling.phantom.dataset import generate_dataset
from cervisag_edge.tooling.phantom.framing import FRAMINGS
from cervisag_edge.tooling.phantom.scene import build_scene

C5 = [landmark_index(f"C5_{c}") for c in ("AS", "PS", "PI", "AI")]


@pytest.fixture(scope="module")
def renders():
    return [render_phantom(77, i, out_long_side=96) for i in range(80)]


def test_out_of_frame_rates(renders) -> None:
    some_out = np.mean([(p.visibility == 0).any() for p in renders])
    above_c5 = np.mean([bool(np.all(p.landmarks_px[C5, 1] > p.stored.shape[0] - 0.5)) for p in renders])
    assert some_out >= 0.30, some_out
    assert above_c5 >= 0.10, above_c5
    assert {p.framing for p in renders} == set(FRAMINGS)


def test_outside_landmarks_are_v0_and_shoulders_stay_v1(renders) -> None:
    n_hidden = 0
    for p in renders:
        h, w = p.stored.shape
        x, y = p.landmarks_px.T
        outside = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
        assert np.all(p.visibility[outside] == 0)
        n_hidden += int(np.sum(p.visibility == 1))
    assert n_hidden > 0  # some in-frame landmarks are hidden behind the shoulders and keep v = 1


def test_coco_keeps_true_position_of_v0(tmp_path) -> None:
    path = generate_dataset(tmp_path, 4, 12, fmt="png", variant="cropped-fov", out_long_side=96, progress=False)
    doc = json.loads(path.read_text())
    found = False
    for im, ann in zip(doc["images"], doc["annotations"]):
        kp = np.array(ann["keypoints"], dtype=float).reshape(34, 3)
        out = kp[:, 2] == 0
        np.testing.assert_allclose(kp[:, :2], np.array(im["landmarks_px"]), atol=1e-3)
        xs, ys = kp[out, 0], kp[out, 1]
        found |= bool(np.any((xs < -0.5) | (xs > im["width"] - 0.5) | (ys < -0.5) | (ys > im["height"] - 0.5)))
    assert found


def test_heldout_style_is_outside_training_and_never_default() -> None:
    from cervisag_edge.tooling.phantom.scene import _BODY

    for a, b in zip(_BODY["train"], _BODY["heldout"]):
        assert a[1] < b[0] or b[1] < a[0]
    assert all(build_scene(8, i, (200, 250), None).style == "train" for i in range(5))
    ph = render_phantom(8, 0, out_long_side=96, style="heldout")
    assert ph.style == "heldout" and ph.display.dtype == np.float32
    with pytest.raises(ValueError, match="style"):
        render_phantom(8, 0, out_long_side=96, style="nope")


def test_cli_style_heldout(tmp_path, capsys) -> None:
    from cervisag_edge.cli.main import main

    assert main(["phantoms", str(tmp_path), "--count", "2", "--long-side", "96", "--format", "png", "--style", "heldout", "--no-progress"]) == 0
    doc = json.loads((tmp_path / "annotations.json").read_text())
    assert [im["style"] for im in doc["images"]] == ["heldout", "heldout"]
    assert main(["phantoms", str(tmp_path / "t"), "--count", "1", "--long-side", "96", "--format", "png", "--no-progress"]) == 0
    assert json.loads((tmp_path / "t" / "annotations.json").read_text())["images"][0]["style"] == "train"


def test_full_field_of_view_frames_c2_to_t1() -> None:
    """``fov="full"``: every film is a C-spine film whose bottom edge lies below T1's superior
    endplate, so C2..C7 and T1's upper corners lie inside the image (a default draw cuts many)."""
    c2_t1 = [landmark_index(f"{v}_{c}") for v in ("C2", "C3", "C4", "C5", "C6", "C7") for c in ("AS", "PS", "PI", "AI")]
    t1_sup = [landmark_index("T1_AS"), landmark_index("T1_PS")]
    for i in range(30):
        p = render_phantom(78, i, out_long_side=96, fov="full")
        h, w = p.stored.shape
        y = p.landmarks_px[c2_t1 + t1_sup, 1]
        assert p.framing == "cspine", (i, p.framing)
        assert np.all(y <= h - 0.5), (i, y.max(), h)
    cut = [render_phantom(78, i, out_long_side=96) for i in range(30)]
    assert any(np.any(p.landmarks_px[c2_t1, 1] > p.stored.shape[0] - 0.5) for p in cut)
    with pytest.raises(ValueError, match="field of view"):
        render_phantom(78, 0, out_long_side=96, fov="wide")


def test_cli_fov_full(tmp_path) -> None:
    from cervisag_edge.cli.main import main

    assert main(["phantoms", str(tmp_path), "--count", "3", "--long-side", "96", "--format", "png", "--fov", "full", "--no-progress"]) == 0
    doc = json.loads((tmp_path / "annotations.json").read_text())
    kp = np.array([a["keypoints"] for a in doc["annotations"]], dtype=float).reshape(3, 34, 3)
    assert np.all(kp[:, landmark_index("C7_PS"), 2] > 0)  # in the image (visible or behind the shoulders)
