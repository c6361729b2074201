#!/usr/bin/env python3
"""Learn the chain decoder's spatial prior from training phantoms and write it as JSON.

Usage::

    python tools/fit_chain_prior.py [--seed 1] [--count 200] [--out engines/chain_prior.json]

Renders phantoms ``0 .. count-1`` of the *training* set ``--seed`` (the model's ``train_seed``;
never a held-out seed) with :func:`cervisag_edge.tooling.phantom.render_phantom` and fits, on the true
landmarks in mm (their geometry, whatever the visibility):

- per consecutive level pair: mean and covariance of :func:`cervisag_edge.core.chain.pair_features`;
- per anchor (dens tip, anterior arch of C1): mean and covariance of
  :func:`cervisag_edge.core.chain.anchor_features` relative to the C2 body;
- the range of corner distances within a body, in units of the image's median body height,
  widened by ``--margin``.

Re-run it whenever the phantom anatomy changes (it is deterministic for a seed and count).
The process lowers its own priority (``nice 19``); 200 images take about a minute on one core.
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

from cervisag_edge.core.chain_prior import (  # noqa: E402
    ANCHORS,
    ChainPrior,
    DecoderSettings,
    GaussianPrior,
    anchor_features,
    corner_distances,
    median_body_height,
    pair_features,
)
from cervisag_edge.core.landmarks import CORNERS, VERTEBRAE, landmark_index  # noqa: E402

logger = logging.getLogger("fit_chain_prior")
MAX_COUNT = 300


def body_corners_mm(landmarks_mm: np.ndarray) -> np.ndarray:
    """(V, 4, 2) vertebral corners from (34, 2) landmarks."""
    idx = [[landmark_index(f"{v}_{c}") for c in CORNERS] for v in VERTEBRAE]
    return np.asarray(landmarks_mm, dtype=np.float64)[np.array(idx)]


def fit_prior(landmark_sets_mm: Sequence[np.ndarray], margin: float = 0.25, source: dict | None = None) -> ChainPrior:
    """Fit a :class:`ChainPrior` from (34, 2) landmark arrays in mm (one per image)."""
    if len(landmark_sets_mm) < 10:
        raise ValueError(f"need at least 10 images to fit the chain prior, got {len(landmark_sets_mm)}")
    bodies = np.stack([body_corners_mm(lm) for lm in landmark_sets_mm])  # (N, V, 4, 2)
    feats = pair_features(bodies[:, :-1], bodies[:, 1:])  # (N, V-1, 4)
    pairs = tuple(GaussianPrior(feats[:, i].mean(axis=0), np.cov(feats[:, i], rowvar=False)) for i in range(len(VERTEBRAE) - 1))
    anchors = {}
    for name in ANCHORS:
        pts = np.stack([np.asarray(lm, dtype=np.float64)[landmark_index(name)] for lm in landmark_sets_mm])
        f = anchor_features(bodies[:, 0], pts)  # (N, 2)
        anchors[name] = GaussianPrior(f.mean(axis=0), np.cov(f, rowvar=False))
    scale = np.array([median_body_height(b) for b in bodies])  # (N,)
    d = corner_distances(bodies) / scale[:, None, None, None]  # (N, V, 4, 4)
    lo = d.min(axis=(0, 1)) * (1.0 - margin)
    hi = d.max(axis=(0, 1)) * (1.0 + margin)
    src = dict(source or {})
    src.update(n_images=len(landmark_sets_mm), margin=margin)
    return ChainPrior(pairs, anchors, np.stack([lo, hi], axis=-1), DecoderSettings(), src)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1, help="training phantom set (default 1, the shipped model's train_seed)")
    ap.add_argument("--count", type=int, default=200, help=f"phantoms to render (at most {MAX_COUNT}; default 200)")
    ap.add_argument("--start", type=int, default=0, help="first phantom index (default 0)")
    ap.add_argument("--long-side", type=int, default=448, help="render long side in px (default 448)")
    ap.add_argument("--margin", type=float, default=0.25, help="relative widening of the corner-distance range (default 0.25)")
    ap.add_argument("--out", default="engines/chain_prior.json", help="output JSON (default engines/chain_prior.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not 10 <= args.count <= MAX_COUNT:
        logger.error("--count %d invalid, expected 10..%d", args.count, MAX_COUNT)
        return 2
    try:
        os.nice(19)
    except OSError:
        pass
    from cervisag_edge.tooling.phantom import render_phantom

    sets = []
    for i in range(args.start, args.start + args.count):
        ph = render_phantom(args.seed, i, out_long_side=args.long_side)
        sr, sc = ph.pixel_spacing_mm
        sets.append(np.asarray(ph.landmarks_px, dtype=np.float64) * np.array([sc, sr]))
        if (i - args.start + 1) % 50 == 0:
            logger.info("rendered %d/%d", i - args.start + 1, args.count)
    source = {
        "data": "phantoms", "phantom_seed": args.seed, "start": args.start, "count": args.count, "long_side": args.long_side,
        "command": f"python tools/fit_chain_prior.py --seed {args.seed} --count {args.count} --start {args.start} "
                   f"--long-side {args.long_side} --margin {args.margin}",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    prior = fit_prior(sets, args.margin, source)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(prior.to_dict(), indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s from %d phantoms of seed %d", out, args.count, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
