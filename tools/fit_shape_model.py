#!/usr/bin/env python3
"""Fit the statistical shape model of the landmark chain from training phantoms and write it as JSON.

Usage::

    python tools/fit_shape_model.py [--seed 1] [--count 2000] [--out engines/shape_model.json]

Builds the scenes of phantoms ``start .. start+count-1`` of the *training* set ``--seed`` (the
model's ``train_seed``; the held-out seeds are refused) with
:func:`cervisag_edge.tooling.phantom.scene.build_scene` (anatomy and placement only, no pixels)
and fits :meth:`cervisag_edge.core.shape_model.ShapeModel.fit` on their true 34 landmarks (mm),
whatever their visibility. Deterministic for a seed, start and count. Then record the file's
sha256 in the manifests (``extra.uncertainty.shape_model``): ``tools/calibrate_uncertainty.py
--shape-model engines/shape_model.json ... --write`` does it. The process lowers its own
priority (``nice 19``); 0.1–0.7 s per phantom on one core, depending on the machine's load.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("fit_shape_model")
#: Seeds of the held-out sets (test, calibration, validation, style); never fitted on.
HELD_OUT_SEEDS = (777, 778, 9001, 4242, 900001)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="training phantom set (default 1, the shipped model's train_seed)")
    ap.add_argument("--count", type=int, default=2000, help="phantoms (default 2000)")
    ap.add_argument("--start", type=int, default=0, help="first phantom index (default 0)")
    ap.add_argument("--out", default="engines/shape_model.json", help="output JSON (default engines/shape_model.json)")
    ap.add_argument("--shapes-cache", metavar="NPZ", help="reuse / store the built landmark sets here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.seed in HELD_OUT_SEEDS:
        logger.error("--seed %d is a held-out set; fit on training phantoms", args.seed)
        return 2
    if args.count < 20:
        logger.error("--count %d invalid, expected >= 20", args.count)
        return 2
    try:
        os.nice(19)
    except OSError:
        pass
    from cervisag_edge.core.shape_model import ShapeModel
    from cervisag_edge.tooling.phantom.scene import build_scene

    cache = Path(args.shapes_cache) if args.shapes_cache else None
    key = np.array([args.seed, args.start, args.count])
    if cache is not None and cache.is_file() and np.array_equal(np.load(cache)["key"], key):
        shapes = list(np.load(cache)["shapes"])
    else:
        shapes = []
        for n, i in enumerate(range(args.start, args.start + args.count)):
            shapes.append(np.asarray(build_scene(args.seed, i, None, None, "train").landmarks_mm, dtype=np.float64))
            if (n + 1) % 100 == 0:
                logger.info("built %d/%d", n + 1, args.count)
        if cache is not None:
            np.savez_compressed(cache, key=key, shapes=np.stack(shapes))
    source = {
        "data": "phantoms (synthetic)", "phantom_seed": args.seed, "start": args.start, "count": args.count, "style": "train",
        "command": f"python tools/fit_shape_model.py --seed {args.seed} --count {args.count} --start {args.start}",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    model = ShapeModel.fit(np.stack(shapes), source)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_dict()) + "\n", encoding="utf-8")
    logger.info("wrote %s from %d phantoms of seed %d", out, args.count, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
