"""``cervisag measure --coco-out``: COCO keypoints pre-annotations that the training and verify
readers take back, checked against the COCO keypoint schema."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.cli.main import main
from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from cervisag_edge.outputs.coco import category, coco_from_records, keypoints_of, skeleton, validate_coco


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    pytest.importorskip("cervisag_edge.tooling.phantom", reason="phantom generator not installed")
    from cervisag_edge.tooling.phantom.dataset import generate_dataset

    root = tmp_path_factory.mktemp("coco")
    truth = generate_dataset(root / "studies", 2, 31, fmt="png", out_long_side=480, progress=False)
    out = root / "pre" / "annotations.json"
    rc = main(["-q", "measure", str(root / "studies"), "--coco-out", str(out), "--threads", "1", "--no-progress"])
    assert rc == 0
    return root, out, json.loads(truth.read_text())


def test_coco_out_is_valid_coco_keypoints_with_the_schema_category(measured: tuple[Path, Path, dict]) -> None:
    _, out, _ = measured
    doc = json.loads(out.read_text())
    assert validate_coco(doc) == []
    (cat,) = doc["categories"]
    assert cat["keypoints"] == list(LANDMARK_NAMES) and cat["skeleton"] == skeleton()
    assert len(cat["skeleton"]) == 7 * 4 and all(1 <= i <= NUM_LANDMARKS for pair in cat["skeleton"] for i in pair)
    assert len(doc["images"]) == len(doc["annotations"]) == 2
    for im, ann in zip(doc["images"], doc["annotations"]):
        assert im["width"] > 0 and im["height"] > 0 and len(im["pixel_spacing_mm"]) == 2
        vis = ann["keypoints"][2::3]
        assert set(vis) <= {0, 1, 2} and 2 in vis
        assert ann["num_keypoints"] == sum(v > 0 for v in vis)


def test_coco_out_round_trip_through_the_readers(measured: tuple[Path, Path, dict]) -> None:
    """What --coco-out writes, the verify loader and the training source read back, and the
    v = 2 points sit where the phantom's true landmarks are (same pixel convention, no rescaling)."""
    pytest.importorskip("torch", reason="the training source needs the [train] extra")
    from cervisag_edge.tooling.training.data import CocoSource
    from cervisag_edge.tooling.verify.dataset import load_dataset

    root, out, truth = measured
    ds = load_dataset(out.parent)
    assert [Path(it.path).resolve() for it in ds.items] == sorted((root / "studies").glob("*.png"))
    src = CocoSource(out.parent, long_side=240)
    sample = src[0]
    assert sample.display.shape[0] == 240 or sample.display.shape[1] == 240
    truth_by_name = {im["file_name"]: np.array(im["landmarks_px"]) for im in truth["images"]}
    errors = []
    for it in ds.items:
        true = truth_by_name[Path(it.file_name).name]
        found = it.visibility == 2
        errors += list(np.hypot(*(it.keypoints_px[found] - true[found]).T))
    assert len(errors) >= 20
    assert np.median(errors) < 6.0  # px at 480 px long side: the model finds these landmarks


def test_visibility_rules_from_the_runtime() -> None:
    lms = [{"name": n, "x_px": 10.0 + i, "y_px": 20.0, "confidence": 0.9, "visible": True, "estimated": False}
           for i, n in enumerate(LANDMARK_NAMES)]
    lms[1].update(visible=False, estimated=True, confidence=0.2)  # estimated hidden landmark: check it
    lms[2].update(visible=False, confidence=0.1)  # low-confidence peak
    lms[3].update(x_px=None, y_px=None)  # not found
    lms[4].update(x_px=-40.0)  # outside the image
    kps, n, bbox = keypoints_of({"image_size_px": [100, 80], "landmarks": lms})
    vis = kps[2::3]
    assert vis[:6] == [2, 1, 1, 0, 0, 2] and n == NUM_LANDMARKS - 2
    assert kps[9:12] == [0.0, 0.0, 0] and bbox[2] > 0 and bbox[3] > 0


def test_failed_records_are_left_out_and_schema_problems_are_named(tmp_path: Path) -> None:
    lms = [{"name": n, "x_px": 5.0, "y_px": 5.0, "confidence": 0.9, "visible": True, "estimated": False} for n in LANDMARK_NAMES]
    rec = {"file": str(tmp_path / "a.dcm"), "ok": True, "error": None,
           "measurement": {"image_size_px": [50, 60], "landmarks": lms, "pixel_spacing_mm": [0.2, 0.2], "model": {"id": "m"}}}
    doc = coco_from_records([rec, {"file": "b.dcm", "ok": False, "error": "bad", "measurement": None}], tmp_path / "x.json")
    assert validate_coco(doc) == [] and [im["file_name"] for im in doc["images"]] == ["a.dcm"]

    bad = copy.deepcopy(doc)
    bad["annotations"][0]["keypoints"][2] = 3
    assert any("visibility" in p for p in validate_coco(bad))
    bad = copy.deepcopy(doc)
    bad["annotations"][0]["keypoints"] = bad["annotations"][0]["keypoints"][:-3]
    assert any("keypoints" in p and "expected at least" in p for p in validate_coco(bad))
    bad = copy.deepcopy(doc)
    bad["annotations"][0]["num_keypoints"] = 3
    assert any("num_keypoints" in p for p in validate_coco(bad))
    bad = copy.deepcopy(doc)
    bad["annotations"][0]["image_id"] = 9
    assert any("names no image" in p for p in validate_coco(bad))
    bad = copy.deepcopy(doc)
    del bad["categories"][0]["skeleton"]
    assert any("skeleton" in p for p in validate_coco(bad))
    assert category()["name"] == "cervical_spine"


def test_coco_out_to_a_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "x.png"
    png.write_bytes(b"")
    assert main(["measure", str(png), "--coco-out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--coco-out" in err[0] and "is a folder" in err[0]
