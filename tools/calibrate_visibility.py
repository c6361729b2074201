#!/usr/bin/env python3
"""Calibrate the visibility threshold of a model on labelled held-out data; write it to the manifest.

    python tools/calibrate_visibility.py engines/cervisag_unet.json CALIB_DIR [--max-false-visible 0]

``CALIB_DIR`` is a COCO keypoints set (``cervisag phantoms CALIB_DIR --count N --seed S`` with a seed
used neither for training nor for the held-out test set). Every image is measured with the
threshold at 0, so the raw heatmap peak (the confidence) of every landmark is seen. A landmark
outside the image or not labelled (COCO v = 0) must never be reported visible; hidden ones
(v = 1) should not be either. The threshold is the smallest value at which at most
``--max-false-visible`` v = 0 landmarks of the set would still be reported visible, raised by
``--margin``; the manifest's ``codec.confidence_threshold`` gets it and ``extra.visibility_calibration``
records the counts, the visible recall at that threshold and the data it came from.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("calibrate_visibility")


def raw_confidences(manifest: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N·K,) confidences (0 where the decoder put the landmark outside the image or left its level
    out) and the matching (N·K,) COCO visibility of every labelled image."""
    from cervisag_edge import Measurer
    from cervisag_edge.tooling.verify.dataset import load_dataset

    ds = load_dataset(data_dir)
    confs, vis = [], []
    with Measurer(str(manifest), confidence_threshold=0.0) as m:
        for item in ds.items:
            meas = m.measure(item.path, pixel_spacing_mm=item.pixel_spacing_mm)
            # at threshold 0 a landmark is "visible" when the decoder found it inside the image: only
            # those can be reported visible at any threshold, so the others count as confidence 0
            confs.append([lm.confidence if lm.visible else 0.0 for lm in meas.landmarks])
            vis.append(item.visibility)
    return np.asarray(confs, dtype=np.float64).ravel(), np.asarray(vis, dtype=np.int64).ravel()


def choose_threshold(conf: np.ndarray, vis: np.ndarray, max_false_visible: int = 0, margin: float = 0.02) -> dict[str, float]:
    """The smallest threshold reporting at most ``max_false_visible`` v = 0 landmarks visible, + margin."""
    absent = np.sort(conf[vis == 0])[::-1]
    if absent.size > max_false_visible:
        thr = float(absent[max_false_visible]) + margin
    else:
        thr = margin
    thr = float(min(max(thr, 0.05), 0.95))
    shown = vis == 2
    return {
        "threshold": round(thr, 4),
        "n_landmarks": int(conf.size),
        "n_visible": int(shown.sum()),
        "n_hidden": int((vis == 1).sum()),
        "n_absent": int((vis == 0).sum()),
        "visible_recall_percent": float((conf[shown] >= thr).mean() * 100) if shown.any() else float("nan"),
        "hidden_reported_visible_percent": float((conf[vis == 1] >= thr).mean() * 100) if (vis == 1).any() else 0.0,
        "absent_reported_visible": int((conf[vis == 0] >= thr).sum()),
        "absent_confidence_p99": float(np.percentile(absent, 99)) if absent.size else float("nan"),
        "visible_confidence_p01": float(np.percentile(conf[shown], 1)) if shown.any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, help="FP32 model manifest (precision variants copy its codec)")
    ap.add_argument("data", type=Path, help="COCO keypoints calibration set (never the test set)")
    ap.add_argument("--max-false-visible", type=int, default=0)
    ap.add_argument("--margin", type=float, default=0.02)
    ap.add_argument("--describe", default="", help="what the calibration set is, for the manifest")
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the manifest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    conf, vis = raw_confidences(args.manifest, args.data)
    result = choose_threshold(conf, vis, args.max_false_visible, args.margin)
    result["data"] = args.describe or str(args.data.name)
    logger.info("calibration %s", json.dumps(result))
    if args.dry_run:
        return 0
    doc = json.loads(args.manifest.read_text())
    doc["codec"]["confidence_threshold"] = result["threshold"]
    doc.setdefault("extra", {})["visibility_calibration"] = result
    args.manifest.write_text(json.dumps(doc, indent=2) + "\n")
    logger.info("wrote codec.confidence_threshold = %.4f to %s", result["threshold"], args.manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
