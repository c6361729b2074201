#!/usr/bin/env python3
"""Copy a labelled phantom set with annotation marks drawn on it: a held-out "traced film" set.

    python tools/mark_phantoms.py TEST_DIR MARKED_DIR --count 120 --seed 424242

Reads the first ``--count`` images of ``TEST_DIR`` (COCO keypoints from ``cervisag phantoms``),
draws on each display image a C2 synchondrosis remnant (half of them) and an annotation tracing
(``cervisag_edge.tooling.phantom.marks``, mostly inpainted away) from the true landmark
positions, and writes 16-bit PNGs (bone bright) with an ``annotations.json`` whose images keep
their pixel spacing and labels. ``cervisag verify MARKED_DIR`` then measures a model on films
whose corners lie under marks. Never use a training seed's set: the point is a held-out check.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="labelled phantom set (annotations.json with images[].landmarks_px)")
    ap.add_argument("dst", type=Path, help="output folder")
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--seed", type=int, default=424242)
    args = ap.parse_args(argv)
    import cv2
    import numpy as np

    from cervisag_edge.io import read_image
    from cervisag_edge.tooling.phantom.marks import annotation_marks, synchondrosis

    doc = json.loads((args.src / "annotations.json").read_text())
    images = doc["images"][: args.count]
    ids = {im["id"] for im in images}
    out = copy.deepcopy(doc)
    out["images"], out["annotations"] = [], [a for a in doc["annotations"] if a["image_id"] in ids]
    args.dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for im in images:
        if "landmarks_px" not in im:
            print(f"{args.src / im['file_name']}: images[].landmarks_px missing; expected a cervisag phantoms set", file=sys.stderr)
            return 2
        disp = read_image(args.src / im["file_name"]).display.astype(np.float32)
        pts = np.asarray(im["landmarks_px"], dtype=np.float64)
        if rng.random() < 0.5:
            disp = synchondrosis(disp, pts, rng)
        disp = annotation_marks(disp, pts, rng)
        name = Path(im["file_name"]).with_suffix(".png").name
        cv2.imwrite(str(args.dst / name), np.round(np.clip(disp, 0, 1) * 65535).astype(np.uint16))
        out["images"].append({**im, "file_name": name})
    (args.dst / "annotations.json").write_text(json.dumps(out))
    print(f"wrote {len(out['images'])} marked phantoms to {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
