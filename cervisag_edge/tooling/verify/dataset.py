"""Labelled verification sets: a folder of images plus a COCO keypoints ``annotations.json``.

The category's ``keypoints`` list must name the 34 landmarks of
:data:`cervisag_edge.core.landmarks.LANDMARK_NAMES`, in any order (CVAT and Label Studio exports
keep the order of their label configuration); keypoints are reordered by name into schema order.
Shapes: ``keypoints_px`` is (34, 2) (x, y) with NaN for visibility 0; ``visibility`` is (34,).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import InputError
from ...core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from ...core.parameters import PARAMETER_NAMES

logger = logging.getLogger(__name__)

ANNOTATIONS_FILE = "annotations.json"
PARAMETER_KEYS: tuple[str, ...] = PARAMETER_NAMES


@dataclass(frozen=True)
class VerifyItem:
    """One labelled image. ``pixel_spacing_mm`` is (row, column) from the annotations or None
    (then the image's own spacing is used); ``reference_parameters`` are the annotation's
    ``parameters`` (None when absent: computed from the landmarks once the spacing is known)."""

    image_id: int
    file_name: str
    path: str
    width: int
    height: int
    pixel_spacing_mm: tuple[float, float] | None
    keypoints_px: np.ndarray  # (34, 2), NaN where visibility 0
    visibility: np.ndarray  # (34,) int: 0, 1, 2
    reference_parameters: Mapping[str, float | None] | None
    #: (34, 2) annotated position of every landmark, also of v = 0 ones where the annotation gives
    #: it (``images[].landmarks_px``, else a v = 0 keypoint's own x, y unless both are 0); NaN where
    #: unknown. Used to tell landmarks outside the image from unlabelled ones.
    all_keypoints_px: np.ndarray | None = None


@dataclass(frozen=True)
class VerifyDataset:
    root: str
    items: tuple[VerifyItem, ...]
    category_name: str


def keypoint_order(names: Any, origin: str) -> np.ndarray:
    """Index into the category's keypoint list for each schema landmark: (34,) int.

    Raises :class:`InputError` listing unknown, missing or duplicated names."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{origin}: category 'keypoints' must be a list of landmark names, found {names!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    unknown = [n for n in names if n not in LANDMARK_NAMES]
    missing = [n for n in LANDMARK_NAMES if n not in names]
    if dup or unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown names {', '.join(unknown)}")
        if missing:
            parts.append(f"missing names {', '.join(missing)}")
        if dup:
            parts.append(f"duplicated names {', '.join(dup)}")
        raise InputError(
            f"{origin}: category keypoints do not match the 34-landmark schema: {'; '.join(parts)} "
            f"(expected {', '.join(LANDMARK_NAMES)})"
        )
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[n] for n in LANDMARK_NAMES], dtype=np.int64)


def parse_keypoints(values: Any, order: np.ndarray, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """COCO ``[x, y, v] * 34`` (category order) → ((34, 2) px with NaN for v = 0, (34,) v)."""
    if not isinstance(values, list) or len(values) != 3 * NUM_LANDMARKS:
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise InputError(f"{origin}: 'keypoints' must hold {3 * NUM_LANDMARKS} numbers (x, y, v per landmark), found {n}")
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(NUM_LANDMARKS, 3)[order]
    except (TypeError, ValueError):
        raise InputError(f"{origin}: 'keypoints' must be numbers") from None
    vis = arr[:, 2].astype(np.int64)
    if not np.all(np.isin(vis, (0, 1, 2))) or not np.array_equal(vis, arr[:, 2]):
        raise InputError(f"{origin}: keypoint visibility must be 0, 1 or 2, found {sorted(set(arr[:, 2].tolist()))}")
    pts = arr[:, :2].copy()
    pts[vis == 0] = np.nan
    if not np.all(np.isfinite(pts[vis > 0])):
        raise InputError(f"{origin}: labelled keypoints (v 1 or 2) must have finite coordinates")
    return pts, vis


def all_positions(values: Any, order: np.ndarray, image: Mapping[str, Any]) -> np.ndarray:
    """(34, 2) position of every landmark (see :attr:`VerifyItem.all_keypoints_px`); the keypoints
    are already validated by :func:`parse_keypoints`."""
    arr = np.asarray(values, dtype=np.float64).reshape(NUM_LANDMARKS, 3)[order]
    pts = arr[:, :2].copy()
    pts[(arr[:, 2] == 0) & (pts[:, 0] == 0) & (pts[:, 1] == 0)] = np.nan
    extra = image.get("landmarks_px")
    if extra is not None:
        try:
            full = np.asarray(extra, dtype=np.float64)
        except (TypeError, ValueError):
            full = None
        if full is not None and full.shape == (NUM_LANDMARKS, 2):
            pts = np.where(np.isfinite(full), full, pts)
    return pts


def _spacing(value: Any, origin: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{origin}: pixel_spacing_mm must be [row, column] in mm, found {value!r}") from None
    if not (row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col)):
        raise InputError(f"{origin}: pixel_spacing_mm must be positive, found {value!r}")
    return row, col


def _parameters(value: Any, origin: str) -> dict[str, float | None] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{origin}: 'parameters' must be an object of the six parameters, found {value!r}")
    out: dict[str, float | None] = {}
    for key in PARAMETER_KEYS:
        v = value.get(key)
        try:
            out[key] = None if v is None else float(v)
        except (TypeError, ValueError):
            raise InputError(f"{origin}: parameters.{key} must be a number or null, found {v!r}") from None
    return out


def _pick_category(categories: Any, origin: str) -> dict[str, Any]:
    if not isinstance(categories, list) or not categories:
        raise InputError(f"{origin}: 'categories' must list at least one keypoint category")
    with_kp = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    if len(with_kp) == 1:
        return with_kp[0]
    named = [c for c in with_kp if c.get("name") == "cervical_spine"]
    if len(named) == 1:
        return named[0]
    raise InputError(
        f"{origin}: expected one keypoint category (preferably named 'cervical_spine'), found "
        f"{[c.get('name') for c in with_kp] if with_kp else 'none with keypoints'}"
    )


def load_dataset(folder: str | Path, annotations: str | Path | None = None) -> VerifyDataset:
    """Read ``folder/annotations.json`` (or ``annotations``); image paths are relative to ``folder``."""
    root = Path(folder)
    ann_path = Path(annotations) if annotations is not None else root / ANNOTATIONS_FILE
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    if not ann_path.is_file():
        raise InputError(f"{ann_path}: annotation file not found (a COCO keypoints {ANNOTATIONS_FILE} is expected)")
    from ...engine.manifest import read_json_object

    doc = read_json_object(ann_path, "COCO annotations", error=InputError)
    origin = str(ann_path)
    category = _pick_category(doc.get("categories"), origin)
    order = keypoint_order(category.get("keypoints"), f"{origin}: category {category.get('name')!r}")
    cat_id = category.get("id")

    anns: dict[Any, dict[str, Any]] = {}
    for ann in doc.get("annotations") or []:
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise InputError(f"{origin}: every annotation needs an 'image_id', found {ann!r:.80}")
        if cat_id is not None and ann.get("category_id", cat_id) != cat_id:
            continue
        if ann["image_id"] in anns:
            raise InputError(f"{origin}: image_id {ann['image_id']} has more than one keypoint annotation, expected one")
        anns[ann["image_id"]] = ann

    items = []
    images = doc.get("images")
    if not isinstance(images, list) or not images:
        raise InputError(f"{origin}: 'images' must list at least one image")
    for img in images:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise InputError(f"{origin}: every image needs 'id' and 'file_name', found {img!r:.80}")
        where = f"{origin}: image {img['file_name']!r}"
        ann = anns.get(img["id"])
        if ann is None:
            raise InputError(f"{where} (id {img['id']}) has no keypoint annotation")
        pts, vis = parse_keypoints(ann.get("keypoints"), order, where)
        items.append(
            VerifyItem(
                image_id=int(img["id"]),
                file_name=str(img["file_name"]),
                path=str(root / str(img["file_name"])),
                width=int(img.get("width", 0) or 0),
                height=int(img.get("height", 0) or 0),
                pixel_spacing_mm=_spacing(img.get("pixel_spacing_mm"), where),
                keypoints_px=pts,
                visibility=vis,
                reference_parameters=_parameters(img.get("parameters"), where),
                all_keypoints_px=all_positions(ann.get("keypoints"), order, img),
            )
        )
    logger.debug("loaded %d labelled images from %s", len(items), ann_path)
    return VerifyDataset(root=str(root), items=tuple(items), category_name=str(category.get("name", "")))


def reference_parameters(item: VerifyItem, spacing_mm: tuple[float, float]) -> dict[str, float | None]:
    """The item's reference parameters: the annotation's own, else computed from its labelled
    landmarks (visibility 1 or 2) with mm = px × spacing (x by the column, y by the row spacing)."""
    if item.reference_parameters is not None:
        return dict(item.reference_parameters)
    from ...core.parameters import compute_parameters

    mm = item.keypoints_px * np.array([spacing_mm[1], spacing_mm[0]], dtype=np.float64)
    d = compute_parameters(mm).as_dict()
    return {k: (None if d.get(k) is None else float(d[k])) for k in PARAMETER_KEYS}
