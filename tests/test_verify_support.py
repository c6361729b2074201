"""Helpers of the verify tests (no tests here): a small synthetic COCO set and a fake Measurer
whose predictions are read from a sidecar file, so every expected metric can be worked out
by hand. Importable by worker processes (spawn/forkserver children inherit ``sys.path``)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cervisag_edge.errors import BackendUnavailableError, InputError
from cervisag_edge.core.landmarks import LANDMARK_NAMES, VERTEBRAE
from cervisag_edge.core.measurement import Landmark, Measurement

SIX = ("borden_mm", "cci_percent", "ccl_deg", "cobb_c0_c7_deg", "cobb_c1_c7_deg", "cobb_c2_c7_deg")
SIDECAR = ".pred.json"


def synthetic_spine_px() -> np.ndarray:
    """(34, 2) plausible lateral cervical spine, facing right, in a 400 × 520 (W × H) image."""
    pts = {
        "MCG_PNS": (300.0, 60.0),
        "MCG_OCC": (110.0, 75.0),
        "C1_ANT": (275.0, 105.0),
        "C1_POST": (125.0, 112.0),
        "DENS_TIP": (235.0, 92.0),
        "DENS_PS": (205.0, 135.0),
    }
    for k, v in enumerate(VERTEBRAE):
        cx = 230.0 - 2.5 * (k - 3) ** 2 + 4.0 * k
        cy = 170.0 + 50.0 * k
        ang = math.radians(6.0 * (k - 3))  # bodies tilt progressively: a lordotic curve
        c, s = math.cos(ang), math.sin(ang)
        for name, (dx, dy) in zip(("AS", "PS", "PI", "AI"), ((30, -18), (-30, -18), (-30, 18), (30, 18))):
            pts[f"{v}_{name}"] = (cx + c * dx - s * dy, cy + s * dx + c * dy)
    return np.array([pts[n] for n in LANDMARK_NAMES], dtype=np.float64)


@dataclass(frozen=True)
class FakeParams:
    values: dict[str, float | None]
    unavailable: dict[str, tuple[str, ...]]

    def as_dict(self, include_extras: bool = False) -> dict[str, float | None]:
        return dict(self.values)


class FakeMeasurer:
    """Reads ``<image>.pred.json``: ``{"landmarks": [[x, y] | null] * 34, "parameters": {...}}``;
    precision ``fp16`` shifts every landmark by ``fp16_shift_px`` in x; ``int8`` is unavailable."""

    def __init__(self, model: Any = None, backend: str = "onnxruntime", precision: str = "fp32", threads: Any = None):
        if precision == "int8":
            raise BackendUnavailableError("no int8 engine for the fake model")
        self.backend, self.precision = backend, precision

    def measure(self, path: str, pixel_spacing_mm: tuple[float, float] | None = None) -> Measurement:
        side = Path(str(path) + SIDECAR)
        if not side.is_file():
            raise InputError(f"{path}: cannot read image (fake: no sidecar)")
        doc = json.loads(side.read_text())
        shift = float(doc.get("fp16_shift_px", 0.0)) if self.precision == "fp16" else 0.0
        sp = pixel_spacing_mm if pixel_spacing_mm is not None else tuple(doc.get("spacing", (0.25, 0.25)))
        lms = []
        for name, p in zip(LANDMARK_NAMES, doc["landmarks"]):
            if p is None:
                lms.append(Landmark(name, float("nan"), float("nan"), None, None, 0.0, False))
            else:
                x, y = p[0] + shift, p[1]
                lms.append(Landmark(name, x, y, x * sp[1], y * sp[0], 0.9, True))
        params: Any
        if "parameters" in doc:
            params = FakeParams(dict(doc["parameters"]), {})
        else:
            from cervisag_edge.core.parameters import compute_parameters

            px = np.array([[lm.x_px, lm.y_px] if lm.visible else [np.nan, np.nan] for lm in lms])
            params = compute_parameters(px * np.array([sp[1], sp[0]]))
        return Measurement(
            source=str(path), landmarks=tuple(lms), parameters=params, pixel_spacing_mm=(float(sp[0]), float(sp[1])),
            spacing_source="user", image_size_px=(400, 520), model_id="fake:" + self.precision, model_sha256="0" * 64,
            backend=self.backend, precision=self.precision,
        )


FAKE_FACTORY = "test_verify_support:FakeMeasurer"


def write_set(
    root: Path,
    truths: list[np.ndarray],
    preds: list[list | None],
    vis: list[np.ndarray] | None = None,
    spacing: tuple[float, float] = (0.25, 0.25),
    ref_params: list[dict | None] | None = None,
    pred_params: list[dict | None] | None = None,
    fp16_shift_px: float = 0.0,
    category_order: list[str] | None = None,
) -> Path:
    """Write images (PNG), sidecars and ``annotations.json``; a ``preds`` entry None writes no
    sidecar (the fake then fails that image)."""
    root.mkdir(parents=True, exist_ok=True)
    names = list(category_order or LANDMARK_NAMES)
    order = [LANDMARK_NAMES.index(n) for n in names]
    images, anns = [], []
    for i, truth in enumerate(truths):
        fn = f"img_{i:03d}.png"
        yy, xx = np.mgrid[0:520, 0:400]
        img = (30 + 0.1 * xx + 0.05 * yy).astype(np.uint8)  # soft-tissue gradient
        for p in truth[6:].reshape(7, 4, 2):  # vertebral bodies brighter
            cv2.fillConvexPoly(img, np.round(p).astype(np.int32), 180)
        cv2.imwrite(str(root / fn), img)
        v = vis[i] if vis is not None else np.full(34, 2)
        kp: list[float] = []
        for k in order:
            x, y = (0.0, 0.0) if v[k] == 0 else truth[k]
            kp += [float(x), float(y), int(v[k])]
        entry: dict[str, Any] = {"id": i + 1, "file_name": fn, "width": 400, "height": 520,
                                 "pixel_spacing_mm": list(spacing)}
        if ref_params is not None and ref_params[i] is not None:
            entry["parameters"] = ref_params[i]
        images.append(entry)
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": kp, "num_keypoints": int((v > 0).sum())})
        if preds[i] is not None:
            side: dict[str, Any] = {"landmarks": preds[i], "fp16_shift_px": fp16_shift_px}
            if pred_params is not None and pred_params[i] is not None:
                side["parameters"] = pred_params[i]
            (root / (fn + SIDECAR)).write_text(json.dumps(side))
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "cervical_spine", "keypoints": names, "skeleton": []}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def as_list(pts: np.ndarray) -> list:
    return [None if not np.all(np.isfinite(p)) else [float(p[0]), float(p[1])] for p in pts]
