"""COCO keypoints: the one definition of the category, and predictions written as pre-annotations.

``cervisag measure --coco-out FILE`` writes the model's landmarks in the COCO keypoints format
(https://cocodataset.org/#format-data) so that an annotation tool (CVAT, Label Studio) imports
them as pre-annotations; the corrected export is what ``cervisag adapt --data`` and
``cervisag verify`` read (docs/adaptation.md).

Conventions (the same as the phantom sets, docs/architecture.md): the centre of pixel (row i,
column j) is (x = j, y = i); keypoints are ``[x, y, v] * 34`` in the order of
:data:`~cervisag_edge.core.landmarks.LANDMARK_NAMES`. Visibility from the runtime:

* ``v = 2``: the landmark was found (visible, confidence at or above the model's threshold);
* ``v = 1``: it has a position but was not found as visible (estimated hidden landmark, or a
  low-confidence peak): the annotator should check it;
* ``v = 0``: no position (or a position outside the image); ``x = y = 0`` when there is none.

``images[].file_name`` is the study's path relative to the COCO file's folder (absolute when it
lies on another drive), so that the folder of the file is the dataset root.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, VERTEBRAE, vertebra_corner_indices
from .records import json_safe, validate_record

logger = logging.getLogger(__name__)

CATEGORY_ID = 1
CATEGORY_NAME = "cervical_spine"
#: Margin of the box around the labelled landmarks, in pixels of the stored image.
BBOX_MARGIN_PX = 20.0


def skeleton() -> list[list[int]]:
    """COCO skeleton (1-based keypoint indices): the four body edges of every vertebra."""
    out = []
    for v in VERTEBRAE:
        a_s, p_s, p_i, a_i = vertebra_corner_indices(v)
        out += [[a_s + 1, p_s + 1], [p_s + 1, p_i + 1], [p_i + 1, a_i + 1], [a_i + 1, a_s + 1]]
    return out


def category() -> dict[str, Any]:
    """The keypoint category every COCO file of this project carries."""
    return {"id": CATEGORY_ID, "name": CATEGORY_NAME, "supercategory": "spine", "keypoints": list(LANDMARK_NAMES),
            "skeleton": skeleton()}


_NUM = {"type": "number"}
#: JSON-Schema of a COCO keypoints file as far as the format defines it (plus our image fields),
#: checked by :func:`validate_coco`; the keypoint count is fixed at 3 × 34.
COCO_KEYPOINTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["images", "annotations", "categories"],
    "properties": {
        "info": {"type": "object"},
        "licenses": {"type": "array"},
        "images": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "file_name", "width", "height"],
            "properties": {"id": {"type": "integer", "minimum": 1}, "file_name": {"type": "string"},
                           "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
                           "pixel_spacing_mm": {"type": ["array", "null"], "minItems": 2, "maxItems": 2,
                                                "items": {"type": "number", "exclusiveMinimum": 0}}}}},
        "annotations": {"type": "array", "items": {
            "type": "object", "required": ["id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox", "area", "iscrowd"],
            "properties": {"id": {"type": "integer", "minimum": 1}, "image_id": {"type": "integer", "minimum": 1},
                           "category_id": {"type": "integer"},
                           "keypoints": {"type": "array", "minItems": 3 * NUM_LANDMARKS, "maxItems": 3 * NUM_LANDMARKS, "items": _NUM},
                           "num_keypoints": {"type": "integer", "minimum": 0},
                           "bbox": {"type": "array", "minItems": 4, "maxItems": 4, "items": _NUM},
                           "area": {"type": "number", "minimum": 0}, "iscrowd": {"type": "integer", "minimum": 0},
                           "score": _NUM}}},
        "categories": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "name", "keypoints", "skeleton"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "supercategory": {"type": "string"},
                           "keypoints": {"type": "array", "items": {"type": "string"}},
                           "skeleton": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                                                     "items": {"type": "integer", "minimum": 1}}}}}},
    },
}


def validate_coco(doc: Any) -> list[str]:
    """Problems of a COCO keypoints document (empty when valid): the schema above, then the
    rules a schema cannot say (visibility values, ids that refer, skeleton within the keypoints)."""
    problems = validate_record(doc, COCO_KEYPOINTS_SCHEMA)
    if problems:
        return problems
    cats = {c["id"]: c for c in doc["categories"]}
    image_ids = [im["id"] for im in doc["images"]]
    if len(set(image_ids)) != len(image_ids):
        problems.append("$.images: image ids are not unique")
    for c in doc["categories"]:
        n = len(c["keypoints"])
        bad = [pair for pair in c["skeleton"] if max(pair) > n]
        if bad:
            problems.append(f"$.categories[id={c['id']}].skeleton: {bad} refer past its {n} keypoints")
    for i, a in enumerate(doc["annotations"]):
        where = f"$.annotations[{i}]"
        if a["image_id"] not in set(image_ids):
            problems.append(f"{where}.image_id: {a['image_id']} names no image")
        if a["category_id"] not in cats:
            problems.append(f"{where}.category_id: {a['category_id']} names no category")
        vis = a["keypoints"][2::3]
        if any(v not in (0, 1, 2) for v in vis):
            problems.append(f"{where}.keypoints: visibility must be 0, 1 or 2, found {sorted(set(vis))}")
        elif a["num_keypoints"] != sum(1 for v in vis if v > 0):
            problems.append(f"{where}.num_keypoints: {a['num_keypoints']}, expected {sum(1 for v in vis if v > 0)} (keypoints with v > 0)")
    return problems


def _file_name(path: str, root: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).resolve().as_posix()


def keypoints_of(measurement: Mapping[str, Any]) -> tuple[list[float], int, list[float]]:
    """(``[x, y, v] * 34``, number with v > 0, bbox [x, y, w, h]) of one measurement record's landmarks."""
    w, h = measurement["image_size_px"]
    kps: list[float] = []
    xs, ys = [], []
    for lm in measurement["landmarks"]:
        x, y = lm.get("x_px"), lm.get("y_px")
        inside = x is not None and y is not None and -0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5
        if not inside:
            kps += [0.0, 0.0, 0]
            continue
        v = 2 if lm.get("visible") and not lm.get("estimated") else 1
        kps += [round(float(x), 3), round(float(y), 3), v]
        xs.append(float(x))
        ys.append(float(y))
    if xs:
        x0, y0 = max(min(xs) - BBOX_MARGIN_PX, -0.5), max(min(ys) - BBOX_MARGIN_PX, -0.5)
        x1, y1 = min(max(xs) + BBOX_MARGIN_PX, w - 0.5), min(max(ys) + BBOX_MARGIN_PX, h - 0.5)
        bbox = [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    return kps, len(xs), bbox


def coco_from_records(records: Iterable[Mapping[str, Any]], out_path: str | Path) -> dict[str, Any]:
    """The COCO keypoints document of the measured records (failed ones are left out): one image
    and one annotation per study, ``score`` the mean confidence of the landmarks with v = 2."""
    root = Path(out_path).parent
    images, anns = [], []
    model = None
    for rec in records:
        m = rec.get("measurement")
        if not rec.get("ok") or not m:
            continue
        n = len(images) + 1
        w, h = (int(v) for v in m["image_size_px"])
        kps, n_kp, bbox = keypoints_of(m)
        confs = [lm["confidence"] for lm in m["landmarks"] if lm.get("visible") and lm.get("confidence") is not None]
        images.append({"id": n, "file_name": _file_name(str(rec["file"]), root), "width": w, "height": h,
                       "pixel_spacing_mm": m.get("pixel_spacing_mm"), "spacing_source": m.get("spacing_source")})
        anns.append({"id": n, "image_id": n, "category_id": CATEGORY_ID, "keypoints": kps, "num_keypoints": n_kp,
                     "bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0,
                     "score": round(sum(confs) / len(confs), 4) if confs else 0.0})
        model = model or m.get("model")
    return {
        "info": {"description": "cervisag-edge pre-annotations (model predictions: correct them before use)",
                 "version": "1.0", "model": json_safe(model),
                 "coordinate_convention": "pixel centre of (row i, col j) is (x=j, y=i); the image spans [-0.5, W-0.5] x [-0.5, H-0.5]",
                 "visibility": "2 found by the model, 1 estimated or low confidence (check it), 0 no position in the image"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [category()],
    }


def write_coco(records: Iterable[Mapping[str, Any]], out_path: str | Path) -> Path:
    """Write :func:`coco_from_records` to ``out_path`` (via ``<name>.tmp`` and a rename); returns the path."""
    path = Path(out_path)
    doc = coco_from_records(records, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    logger.info("wrote %d pre-annotations to %s", len(doc["images"]), path)
    return path
