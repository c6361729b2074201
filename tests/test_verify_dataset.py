"""COCO keypoint loading: schema order, name-based reordering, visibility, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.tooling.verify.dataset import keypoint_order, load_dataset, reference_parameters

from test_verify_support import synthetic_spine_px, write_set


def test_load_in_schema_order(tmp_path):
    truth = synthetic_spine_px()
    vis = np.full(34, 2)
    vis[0] = 0
    vis[5] = 1
    write_set(tmp_path, [truth], [None], vis=[vis], spacing=(0.3, 0.2))
    ds = load_dataset(tmp_path)
    (it,) = ds.items
    assert ds.category_name == "cervical_spine"
    assert it.file_name == "img_000.png" and it.path == str(tmp_path / "img_000.png")
    assert it.pixel_spacing_mm == (0.3, 0.2)
    assert np.isnan(it.keypoints_px[0]).all()
    np.testing.assert_allclose(it.keypoints_px[1:], truth[1:])
    assert it.visibility[0] == 0 and it.visibility[5] == 1 and it.visibility[6] == 2
    assert it.reference_parameters is None


def test_reordering_by_name(tmp_path):
    truth = synthetic_spine_px()
    shuffled = list(reversed(LANDMARK_NAMES))
    write_set(tmp_path, [truth], [None], category_order=shuffled)
    raw = json.loads((tmp_path / "annotations.json").read_text())
    # the file really lists the landmarks reversed: its first triple is T1_AI
    assert raw["annotations"][0]["keypoints"][:2] == list(truth[-1])
    (it,) = load_dataset(tmp_path).items
    np.testing.assert_allclose(it.keypoints_px, truth)


def test_keypoint_name_errors_list_unknown_and_missing():
    names = list(LANDMARK_NAMES)
    names[3] = "C1_BACK"
    with pytest.raises(InputError, match=r"unknown names C1_BACK; missing names C1_POST"):
        keypoint_order(names, "ann.json")
    with pytest.raises(InputError, match="duplicated names C2_AS"):
        keypoint_order(list(LANDMARK_NAMES[:-1]) + ["C2_AS"], "ann.json")
    assert list(keypoint_order(list(LANDMARK_NAMES), "x")) == list(range(34))


def _doc(tmp_path):
    write_set(tmp_path, [synthetic_spine_px()], [None])
    return json.loads((tmp_path / "annotations.json").read_text())


def _rewrite(tmp_path, doc):
    (tmp_path / "annotations.json").write_text(json.dumps(doc))


def test_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(InputError, match="annotation file not found"):
        load_dataset(tmp_path)
    doc = _doc(tmp_path)
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"][:-3]
    _rewrite(tmp_path, doc)
    with pytest.raises(InputError, match=r"img_000.png.*102 numbers.*found 99"):
        load_dataset(tmp_path)
    doc = _doc(tmp_path)
    doc["annotations"][0]["keypoints"][2] = 3
    _rewrite(tmp_path, doc)
    with pytest.raises(InputError, match="visibility must be 0, 1 or 2"):
        load_dataset(tmp_path)
    doc = _doc(tmp_path)
    doc["annotations"] = []
    _rewrite(tmp_path, doc)
    with pytest.raises(InputError, match="has no keypoint annotation"):
        load_dataset(tmp_path)
    doc = _doc(tmp_path)
    doc["images"][0]["pixel_spacing_mm"] = [0, 0.2]
    _rewrite(tmp_path, doc)
    with pytest.raises(InputError, match="pixel_spacing_mm must be positive"):
        load_dataset(tmp_path)
    doc = _doc(tmp_path)
    doc["annotations"].append(dict(doc["annotations"][0], id=99))
    _rewrite(tmp_path, doc)
    with pytest.raises(InputError, match="more than one keypoint annotation"):
        load_dataset(tmp_path)
    (tmp_path / "annotations.json").write_text("[")
    with pytest.raises(InputError, match="cannot read COCO annotations"):
        load_dataset(tmp_path)


def test_reference_parameters_given_or_computed(tmp_path):
    truth = synthetic_spine_px()
    given = {"borden_mm": 1.0, "cci_percent": 2.0, "ccl_deg": 3.0, "cobb_c0_c7_deg": 4.0,
             "cobb_c1_c7_deg": None, "cobb_c2_c7_deg": 6.0}
    write_set(tmp_path, [truth, truth], [None, None], ref_params=[given, None], spacing=(0.25, 0.5))
    a, b = load_dataset(tmp_path).items
    assert reference_parameters(a, (0.25, 0.5)) == given
    pytest.importorskip("cervisag_edge.core.parameters", reason="parameters module not built yet")
    from cervisag_edge.core.parameters import compute_parameters

    expected = compute_parameters(truth * np.array([0.5, 0.25])).as_dict()  # x by column, y by row spacing
    got = reference_parameters(b, (0.25, 0.5))
    assert got.keys() == expected.keys()
    for k in got:
        assert got[k] == pytest.approx(expected[k])
