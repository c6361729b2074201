"""The visibility rule (core/visibility.py): thresholds per landmark and the frame-edge guard."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from cervisag_edge.core.visibility import VisibilityRule, edge_distance_input_px


def test_edge_distance_in_input_pixels():
    pts = np.array([[0.0, 50.0], [99.0, 50.0], [50.0, 50.0], [-3.0, 10.0], [np.nan, 1.0]])
    d = edge_distance_input_px(pts, (100, 200), scale=0.5)
    np.testing.assert_allclose(d[:4], [0.25, 0.25, 24.75, -1.25])
    assert np.isnan(d[4])


def test_codec_round_trip_and_per_landmark_override():
    codec = {"confidence_threshold": 0.7, "confidence_thresholds": {"MCG_OCC": 0.85, "C1_ANT": 0.5},
             "edge_margin_px": 8, "edge_confidence_threshold": 0.9}
    rule = VisibilityRule.from_codec(codec)
    assert rule.thresholds[LANDMARK_NAMES.index("MCG_OCC")] == 0.85
    assert rule.thresholds[LANDMARK_NAMES.index("C3_AS")] == 0.7
    assert rule.threshold == 0.7
    assert VisibilityRule.from_codec(rule.to_codec()) == rule


def test_edge_guard_needs_the_higher_threshold_near_the_border():
    rule = VisibilityRule((0.5,) * NUM_LANDMARKS, edge_margin_px=8, edge_threshold=0.9)
    conf = np.full(NUM_LANDMARKS, 0.7)
    found = np.ones(NUM_LANDMARKS, bool)
    edge = np.full(NUM_LANDMARKS, 50.0)
    edge[0], edge[1], edge[2] = 3.0, -1.0, 8.0
    conf[3], edge[3] = 0.95, 2.0
    vis = rule.visible(conf, found, edge)
    assert not vis[0]          # near the edge, below the edge threshold
    assert not vis[1]          # outside the image
    assert vis[2] and vis[3]   # at the margin; or near the edge but confident enough
    assert vis[4:].all()
    found[5] = False
    assert not rule.visible(conf, found, edge)[5]


def test_plain_rule_has_no_edge_guard():
    rule = VisibilityRule.plain(0.0)
    edge = np.full(NUM_LANDMARKS, 0.1)
    assert rule.visible(np.zeros(NUM_LANDMARKS), np.ones(NUM_LANDMARKS, bool), edge).all()
    with pytest.raises(ValueError, match="must lie in"):
        VisibilityRule.plain(1.5)


@pytest.mark.parametrize("codec, match", [
    ({"confidence_threshold": 2}, "confidence_threshold = 2.0"),
    ({"confidence_threshold": "x"}, "expected a number"),
    ({"confidence_thresholds": {"C9_AS": 0.5}}, "unknown landmark"),
    ({"confidence_thresholds": [0.5]}, "expected an object"),
    ({"edge_margin_px": -1}, "edge_margin_px"),
])
def test_bad_codec_values_are_named(codec, match):
    with pytest.raises(ValueError, match=match):
        VisibilityRule.from_codec(codec)


def test_measurer_refuses_a_manifest_with_a_bad_rule(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from cervisag_edge import Measurer
    from cervisag_edge.errors import ModelError

    from cervisag_edge.engine.manifest import load_manifest
    from cervisag_edge.tooling.adapt.model import data_files

    src = Path(__file__).resolve().parents[1] / "engines"
    for f in ("cervisag_unet.onnx", *data_files(load_manifest(src / "cervisag_unet.json"))):
        shutil.copy(src / f, tmp_path / f)
    doc = json.loads((src / "cervisag_unet.json").read_text())
    doc["codec"]["edge_confidence_threshold"] = 3
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"m\.json: codec\.edge_confidence_threshold = 3\.0"):
        Measurer(str(tmp_path / "m.json"))


def test_per_landmark_edge_guard_from_the_codec():
    """``edge_margins_px`` / ``edge_confidence_thresholds`` override the guard per landmark; the
    codec round trip keeps them; a wrong count or name is refused."""
    codec = {"confidence_threshold": 0.5, "edge_margin_px": 6, "edge_confidence_threshold": 0.97,
             "edge_margins_px": {"MCG_OCC": 10}, "edge_confidence_thresholds": {"MCG_OCC": 0.87}}
    rule = VisibilityRule.from_codec(codec)
    occ, c3 = LANDMARK_NAMES.index("MCG_OCC"), LANDMARK_NAMES.index("C3_AS")
    assert rule.edge_margin_px[occ] == 10 and rule.edge_margin_px[c3] == 6
    conf = np.full(NUM_LANDMARKS, 0.85)
    edge = np.full(NUM_LANDMARKS, 8.0)  # inside the occiput's margin (0.85 < its 0.87), outside the others'
    vis = rule.visible(conf, np.ones(NUM_LANDMARKS, bool), edge)
    assert vis[c3] and not vis[occ]
    conf[:] = 0.9
    edge[:] = 4.0  # inside every margin: 0.9 passes the occiput's 0.87, not the others' 0.97
    vis = rule.visible(conf, np.ones(NUM_LANDMARKS, bool), edge)
    assert vis[occ] and not vis[c3]
    assert VisibilityRule.from_codec(rule.to_codec()) == rule
    assert "per group" in rule.describe()
    with pytest.raises(ValueError, match="unknown landmark"):
        VisibilityRule.from_codec({"edge_margins_px": {"C9_AS": 3}})
    with pytest.raises(ValueError, match="expected 34"):
        VisibilityRule((0.5,) * NUM_LANDMARKS, edge_margin_px=(1.0, 2.0))
