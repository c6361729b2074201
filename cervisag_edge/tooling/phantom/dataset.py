"""A phantom data set on disk: DICOM or PNG images plus ``annotations.json`` (COCO keypoints).

Keypoint coordinates use the pixel-centre convention of docs/architecture.md: the centre of
pixel (row i, column j) is at (x = j, y = i). Flags: 2 visible, 1 labelled but hidden (behind
the shoulders), 0 outside the image or the collimated field; a v = 0 keypoint keeps its true
coordinates (outside the image), so the file still says where it is.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...outputs.coco import category
from .dicomio import COMPRESSED_SYNTAXES, write_dicom, write_png
from .render import Phantom, render_phantom

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("dicom", "png")
BBOX_MARGIN_MM = 5.0


def transfer_syntax_for(index: int) -> str | None:
    """Deterministic mix of encodings: 2 of 5 files uncompressed, one each JPEG-LS, JPEG 2000, RLE."""
    k = int(index) % 5
    return None if k < 2 else COMPRESSED_SYNTAXES[k - 2]


def coco_records(ph: Phantom, image_id: int, file_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The COCO ``images`` and ``annotations`` entries of one phantom."""
    h, w = ph.stored.shape
    kps: list[float] = []
    for (x, y), v in zip(ph.landmarks_px, ph.visibility):
        kps += [round(float(x), 4), round(float(y), 4), int(v)]  # v = 0 keeps its true (out-of-frame) position
    lab = ph.visibility > 0
    sr, sc = ph.pixel_spacing_mm
    if lab.any():
        pts = ph.landmarks_px[lab]
        mx, my = BBOX_MARGIN_MM / sc, BBOX_MARGIN_MM / sr
        # same pixel-centre convention as the keypoints: the image spans [-0.5, W - 0.5]
        x0, y0 = max(pts[:, 0].min() - mx, -0.5), max(pts[:, 1].min() - my, -0.5)
        x1, y1 = min(pts[:, 0].max() + mx, w - 0.5), min(pts[:, 1].max() + my, h - 0.5)
        bbox = [round(float(x0), 3), round(float(y0), 3), round(float(x1 - x0), 3), round(float(y1 - y0), 3)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    try:
        params = {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in ph.parameters().as_dict().items()}
    except ImportError:  # geometry module not installed in this build
        params = {}
    image = {
        "id": image_id, "file_name": file_name, "width": int(w), "height": int(h),
        "pixel_spacing_mm": [float(sr), float(sc)], "imager_pixel_spacing_mm": [float(v) for v in ph.imager_pixel_spacing_mm],
        "magnification": float(ph.magnification), "parameters": params, "variant": ph.variant, "seed": ph.seed, "index": ph.index,
        "facing": ph.facing, "photometric": ph.photometric, "style": ph.style, "framing": ph.framing, "extras": list(ph.extras),
        "landmarks_px": [[round(float(x), 4), round(float(y), 4)] for x, y in ph.landmarks_px],
    }
    ann = {"id": image_id, "image_id": image_id, "category_id": 1, "keypoints": kps, "num_keypoints": int(lab.sum()),
           "bbox": bbox, "area": round(bbox[2] * bbox[3], 3), "iscrowd": 0}
    return image, ann


def _stderr_bar(done: int, total: int) -> None:
    width = 30
    fill = int(round(width * done / max(total, 1)))
    sys.stderr.write(f"\rphantoms [{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def generate_dataset(out_dir: str | Path, count: int, seed: int, *, size: tuple[int, int] | None = None, fmt: str = "dicom",
                     variant: str | None = None, progress: bool | Callable[[int, int], None] = True,
                     out_long_side: int | None = None, start: int = 0, style: str = "train", fov: str = "any") -> Path:
    """Render phantoms ``start .. start+count-1`` of set ``seed`` into ``out_dir``; returns the path
    of ``annotations.json``. ``progress``: True for a plain stderr bar, or a callable(done, total);
    ``style`` "train" or "heldout", ``fov`` "any" or "full" (see :func:`render_phantom`)."""
    from ...errors import InputError

    if fmt not in FORMATS:
        raise InputError(f"{out_dir}: format {fmt!r} not supported, expected one of {', '.join(FORMATS)}")
    if count < 1:
        raise InputError(f"{out_dir}: count {count} invalid, expected >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _stderr_bar if progress is True else (progress if callable(progress) else None)
    images, anns = [], []
    for n in range(count):
        index = start + n
        ph = render_phantom(seed, index, size=size, variant=variant, out_long_side=out_long_side, style=style, fov=fov)
        if fmt == "dicom":
            name = f"phantom_{seed}_{index:05d}.dcm"
            write_dicom(ph, out / name, transfer_syntax_for(index))
        else:
            name = f"phantom_{seed}_{index:05d}.png"
            write_png(ph, out / name)
        image, ann = coco_records(ph, n + 1, name)
        images.append(image)
        anns.append(ann)
        if report is not None:
            report(n + 1, count)
    doc = {
        "info": {"description": "cervisag-edge synthetic lateral cervical spine phantoms", "version": "1.0", "seed": seed,
                 "coordinate_convention": "pixel centre of (row i, col j) is (x=j, y=i); keypoints and bbox in pixels, image spans [-0.5, W-0.5] x [-0.5, H-0.5]",
                 "visibility": "2 visible, 1 hidden behind the shoulders, 0 outside the image or collimated field (x, y still the true position)"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [category()],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(doc, indent=1))
    logger.info("wrote %d phantoms and %s", count, path)
    return path
