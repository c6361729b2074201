#!/usr/bin/env python3
"""Calibrate a model's visibility rule on labelled held-out data; write it to the manifest.

    python tools/calibrate_visibility.py engines/cervisag_unet.json CALIB_DIR [CALIB_DIR ...] [--max-unexposed-percent 10] \
        [--variant engines/cervisag_unet.fp16.json ...]

``CALIB_DIR`` is a COCO keypoints set (``cervisag phantoms CALIB_DIR --count N --seed S`` with a seed
used neither for training nor for the held-out test set). Every image is measured with the
threshold at 0, so the raw heatmap peak (the confidence) of every landmark is seen, with where it
was decoded. The rule (:mod:`cervisag_edge.core.visibility`) has one threshold per landmark group
(palate, occiput, C1, dens, vertebral corners) and an edge guard: within one margin of the image
border (shared by all groups) each group asks for its own, higher edge threshold. For every
margin and edge threshold on a small grid, each group gets the lowest threshold at which, on the
calibration data,

- no landmark that lies **outside the image** (v = 0, annotated position off the frame) is
  reported visible (``--max-false-visible``, default 0), and
- at most ``--max-unexposed-percent`` of the v = 0 landmarks that lie inside the image (under a
  collimator shutter) are;

then each group's edge threshold with the best visible recall, and the margin with the best
recall summed over the groups, win; every threshold is raised by ``--margin``. The margin is
shared because a cut landmark's border peak is a matter of the decoding, not of the group, and a
group with few off-image landmarks in the calibration set cannot show how far in such peaks fall
(per-group margins, tried on model v3.2, reported 3 landmarks outside the image visible on the
held-out sets that the shared margin guards; docs/levels.md).

**Through the pipeline** (the default; ``--raw-only`` skips it): the runtime's shape-consistency
check (``extra.uncertainty.consistency``, docs/levels.md) reports a vertebral corner that does not
fit the others hidden, after the second stage. It can only take landmarks away, so a threshold
the raw peaks fail may still be clean in what the runtime reports. The vertebral threshold is
lowered step by step below the raw choice: at each step the full pipeline (both stages and the
check) measures the calibration images that the raw rule would give a false "visible" (outside
the image or unexposed), and the step passes when, in that output, the same constraints hold.
The first step that fails stops the descent; the last clean one, plus ``--margin``, is kept.
Only the vertebral corners go through this: the check never touches the skull (palate, occiput), C1 or the dens.

The manifest's codec gets the rule; ``extra.visibility_calibration`` records the counts, the
visible recall (of the raw rule; the check may hide a few more) and the data it came from.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("calibrate_visibility")

#: Landmark groups that get one threshold each (indices into the 34-landmark schema). The palate
#: (MCG_PNS) and the occiput (MCG_OCC) are apart:
#: the occiput's contour gives confident peaks near the edge of films that cut it off (up to 0.85 on
#: the calibration set), the palate's do not (≤ 0.55), so one "skull" threshold withheld one MCG_PNS
#: in eight for the occiput's sake.
GROUPS: dict[str, tuple[int, ...]] = {"palate": (0,), "occiput": (1,), "c1": (2, 3), "dens": (4, 5), "vertebrae": tuple(range(6, 34))}
MARGINS_PX = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0)
EDGE_THRESHOLDS = (0.8, 0.85, 0.9, 0.95)
GRID = np.round(np.arange(0.2, 0.951, 0.01), 4)


def _off_image(item) -> np.ndarray:
    """(K,) bool: the item's annotated position lies outside the image."""
    ref = item.all_keypoints_px if item.all_keypoints_px is not None else item.keypoints_px
    w, h = item.width, item.height
    with np.errstate(invalid="ignore"):
        return (ref[:, 0] < -0.5) | (ref[:, 0] > w - 0.5) | (ref[:, 1] < -0.5) | (ref[:, 1] > h - 0.5)


def raw_observations(manifest: Path, data_dir: Path) -> dict[str, np.ndarray]:
    """Per landmark (N, K): confidence (0 where the chain left it out), edge distance in model
    input px (negative outside the image), COCO visibility, and whether the annotated position
    lies outside the image."""
    from cervisag_edge import Measurer
    from cervisag_edge.core.visibility import edge_distance_input_px
    from cervisag_edge.engine.preprocess import letterbox_geometry
    from cervisag_edge.tooling.verify.dataset import load_dataset

    ds = load_dataset(data_dir)
    conf, edge, vis, off = [], [], [], []
    with Measurer(str(manifest), confidence_threshold=0.0) as m:
        for item in ds.items:
            meas = m.measure(item.path, pixel_spacing_mm=item.pixel_spacing_mm)
            pts = np.array([[lm.x_px, lm.y_px] for lm in meas.landmarks], dtype=np.float64)
            h_in, w_in = m.manifest.input_hw
            scale = letterbox_geometry(meas.image_size_px, (w_in, h_in))[1].sx  # as Measurer.decode
            # at threshold 0 "visible" = found by the chain and inside the image
            conf.append([lm.confidence if lm.visible else 0.0 for lm in meas.landmarks])
            edge.append(edge_distance_input_px(pts, meas.image_size_px, scale))
            vis.append(item.visibility)
            off.append(_off_image(item))
    return {"conf": np.asarray(conf), "edge_px": np.nan_to_num(np.asarray(edge), nan=-1.0), "vis": np.asarray(vis, dtype=np.int64),
            "off_image": np.asarray(off, dtype=bool)}


def _reported(conf: np.ndarray, edge: np.ndarray, thr: np.ndarray, margin: float, edge_thr: float) -> np.ndarray:
    """(..., T) bool for thresholds ``thr`` (T,) broadcast against (...,) observations."""
    c, e = conf[..., None], edge[..., None]
    return (c >= thr) & (e >= 0) & ((e >= margin) | (c >= edge_thr))


def _rule_visible(conf: np.ndarray, edge: np.ndarray, thr: Any, margin_px: Any, edge_thr: Any) -> np.ndarray:
    """(N, K) bool: the runtime's rule (VisibilityRule.visible) on the raw observations, with
    per-landmark thresholds, margins and edge thresholds (K,) (or scalars)."""
    return (conf >= thr) & (edge >= 0) & ((edge >= margin_px) | (conf >= edge_thr))


def _group_rule(c: np.ndarray, e: np.ndarray, v: np.ndarray, o: np.ndarray, m_px: float, max_false_visible: int,
                max_unexposed_percent: float, margin: float) -> tuple[int, float, float] | None:
    """One group's best (visible hits, threshold, edge threshold) for the edge margin ``m_px`` over
    the edge thresholds of the grid, from its flattened observations; None when no rule meets the
    constraints."""
    unexposed = (v == 0) & ~o
    allowed_unexp = max_unexposed_percent / 100.0 * unexposed.sum()
    best = None
    for e_thr in (EDGE_THRESHOLDS if m_px > 0 else (0.0,)):
        rep = _reported(c, e, GRID, m_px, e_thr)  # (n, T)
        false_off = (rep & ((v == 0) & o)[:, None]).sum(0)
        false_unexp = (rep & unexposed[:, None]).sum(0)
        good = (false_off <= max_false_visible) & (false_unexp <= allowed_unexp)
        if not good.any():
            continue
        t = round(min(float(GRID[int(np.argmax(good))]) + margin, 1.0), 4)  # the lowest good threshold, raised
        e_final = round(min(e_thr + margin, 1.0), 4) if m_px > 0 else 0.0
        hits = int(_rule_visible(c, e, t, m_px, e_final)[v == 2].sum())
        if best is None or hits > best[0]:
            best = (hits, t, e_final)
    return best


def choose_rule(obs: dict[str, np.ndarray], max_false_visible: int = 0, max_unexposed_percent: float = 10.0,
                margin: float = 0.02) -> dict:
    """The rule with the best visible recall under the constraints (see the module docstring): one
    edge margin for all groups, and per group its threshold and edge threshold."""
    conf, edge, vis, off = obs["conf"], obs["edge_px"], obs["vis"], obs["off_image"]
    K = conf.shape[1]
    best = None
    for m_px in MARGINS_PX:
        thr, e_arr, hits = np.zeros(K), np.zeros(K), 0
        for idx in GROUPS.values():
            cols = list(idx)
            g = _group_rule(conf[:, cols].ravel(), edge[:, cols].ravel(), vis[:, cols].ravel(), off[:, cols].ravel(),
                            m_px, max_false_visible, max_unexposed_percent, margin)
            if g is None:
                break
            hits += g[0]
            thr[cols], e_arr[cols] = g[1], g[2]
        else:
            if best is None or hits > best[0]:
                best = (hits, thr, np.full(K, float(m_px)), e_arr)
    if best is None:
        raise ValueError("no visibility rule meets the constraints on this calibration set")
    return _summary(obs, *best[1:])


def _summary(obs: dict[str, np.ndarray], thr: np.ndarray, m_arr: np.ndarray, e_arr: np.ndarray) -> dict:
    """The result record of the per-landmark rule (thresholds, margins, edge thresholds (K,))."""
    conf, edge, vis, off = obs["conf"], obs["edge_px"], obs["vis"], obs["off_image"]
    rep = _rule_visible(conf, edge, thr, m_arr, e_arr)
    shown, unexposed, offimg = vis == 2, (vis == 0) & ~off, (vis == 0) & off
    per_group = lambda a, d: {name: round(float(a[idx[0]]), d) for name, idx in GROUPS.items()}  # noqa: E731
    return {
        "thresholds": per_group(thr, 4),
        "edge_margins_px": per_group(m_arr, 3),
        "edge_confidence_thresholds": per_group(e_arr, 4),
        "threshold_per_landmark": thr.copy(),
        "margin_per_landmark": m_arr.copy(),
        "edge_threshold_per_landmark": e_arr.copy(),
        "n_landmarks": int(conf.size),
        "n_visible": int(shown.sum()),
        "n_hidden": int((vis == 1).sum()),
        "n_outside_image": int(offimg.sum()),
        "n_unexposed": int(unexposed.sum()),
        "visible_recall_percent": float(rep[shown].mean() * 100) if shown.any() else float("nan"),
        "hidden_reported_visible_percent": float(rep[vis == 1].mean() * 100) if (vis == 1).any() else 0.0,
        "outside_image_reported_visible": int(rep[offimg].sum()),
        "unexposed_reported_visible": int(rep[unexposed].sum()),
    }


def _false_visible(rep: np.ndarray, vis: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) per image: landmarks outside the image reported visible, unexposed ones reported visible."""
    return (rep & (vis == 0) & off).sum(1), (rep & (vis == 0) & ~off).sum(1)


PipelineCheck = Callable[[np.ndarray, np.ndarray], tuple[int, int]]


def lower_through_pipeline(result: dict, obs: dict[str, np.ndarray], pipeline: PipelineCheck, max_false_visible: int = 0,
                           max_unexposed_percent: float = 10.0, margin: float = 0.02, group: str = "vertebrae") -> dict:
    """``result`` of :func:`choose_rule` with ``group``'s threshold lowered through the pipeline
    (module docstring). ``pipeline(thresholds (K,), images (n,) int)`` measures those images with
    that rule (the result's edge guard) through the full runtime and returns (landmarks outside
    the image reported visible, unexposed reported visible) over them. The result gains
    ``pipeline`` (the steps tried) and, when lowered, new thresholds and raw recall."""
    conf, edge, vis, off = obs["conf"], obs["edge_px"], obs["vis"], obs["off_image"]
    cols = list(GROUPS[group])
    thr = np.asarray(result["threshold_per_landmark"], dtype=np.float64).copy()
    m_px, e_thr = result["margin_per_landmark"], result["edge_threshold_per_landmark"]
    allowed_unexp = max_unexposed_percent / 100.0 * int(((vis == 0) & ~off)[:, cols].sum())
    raw_choice = float(thr[cols[0]]) - margin
    steps, best = [], None
    for t in GRID[GRID < raw_choice - 1e-9][::-1]:
        trial = thr.copy()
        trial[cols] = t
        rep = _rule_visible(conf, edge, trial, m_px, e_thr)
        n_off, n_unexp = _false_visible(rep, vis, off)
        images = np.flatnonzero((n_off > 0) | (n_unexp > 0))
        p_off, p_unexp = pipeline(trial, images) if images.size else (0, 0)
        ok = p_off <= max_false_visible and p_unexp <= allowed_unexp
        steps.append({"threshold": round(float(t), 4), "images_measured": int(images.size), "raw_outside_visible": int(n_off.sum()),
                      "outside_image_reported_visible": int(p_off), "unexposed_reported_visible": int(p_unexp), "passed": bool(ok)})
        if not ok:
            break
        best = float(t)
    out = dict(result)
    out["pipeline"] = {"group": group, "raw_threshold": round(raw_choice + margin, 4), "steps": steps}
    if best is None:
        return out
    thr[cols] = min(best + margin, 1.0)
    out.update(_summary(obs, thr, np.asarray(m_px), np.asarray(e_thr)))
    # what the raw peaks alone would give; the pipeline's own counts are in the steps
    out["raw_outside_image_reported_visible"] = out.pop("outside_image_reported_visible")
    out["raw_unexposed_reported_visible"] = out.pop("unexposed_reported_visible")
    last = steps[[s["threshold"] for s in steps].index(round(best, 4))]
    out["pipeline"]["outside_image_reported_visible_at_step"] = last["outside_image_reported_visible"]
    return out


def measurer_pipeline(manifest: Path, items: Sequence, result: dict) -> PipelineCheck:
    """The real :data:`PipelineCheck`: a default :class:`~cervisag_edge.Measurer` (both stages,
    the consistency check) whose visibility rule is replaced by the trial one."""
    from cervisag_edge import Measurer
    from cervisag_edge.core.visibility import VisibilityRule

    def run(thresholds: np.ndarray, images: np.ndarray) -> tuple[int, int]:
        rule = VisibilityRule(tuple(float(t) for t in thresholds), tuple(result["margin_per_landmark"]),
                              tuple(result["edge_threshold_per_landmark"]))
        n_off = n_unexp = 0
        with Measurer(str(manifest)) as m:
            m.visibility = rule  # the trial rule; everything after it is the runtime's own
            for i in images:
                item = items[int(i)]
                meas = m.measure(item.path, pixel_spacing_mm=item.pixel_spacing_mm)
                rep = np.array([lm.visible for lm in meas.landmarks])
                o, u = _false_visible(rep[None], np.asarray(item.visibility)[None], _off_image(item)[None])
                n_off, n_unexp = n_off + int(o[0]), n_unexp + int(u[0])
        logger.info("pipeline at %s: %d images, %d outside and %d unexposed reported visible",
                    rule.describe(), len(images), n_off, n_unexp)
        return n_off, n_unexp

    return run


def rule_from_result(result: dict):
    from cervisag_edge.core.visibility import VisibilityRule

    return VisibilityRule(tuple(float(t) for t in result["threshold_per_landmark"]), tuple(result["margin_per_landmark"]),
                          tuple(result["edge_threshold_per_landmark"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, help="FP32 model manifest (precision variants copy its codec)")
    ap.add_argument("data", type=Path, nargs="+", help="COCO keypoints calibration set(s) (never the test set)")
    ap.add_argument("--max-false-visible", type=int, default=0, help="landmarks outside the image allowed visible")
    ap.add_argument("--max-unexposed-percent", type=float, default=10.0,
                    help="%% of the v = 0 landmarks inside the image (under shutters) allowed visible")
    ap.add_argument("--margin", type=float, default=0.02, help="added to every calibrated threshold")
    ap.add_argument("--describe", default="", help="what the calibration set is, for the manifest")
    ap.add_argument("--variant", action="append", type=Path, default=[], metavar="JSON",
                    help="a precision variant's manifest that gets the same rule (repeatable)")
    ap.add_argument("--raw-only", action="store_true",
                    help="calibrate on the raw peaks alone, not through the pipeline's consistency check")
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the manifest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parts = [raw_observations(args.manifest, d) for d in args.data]
    obs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result = choose_rule(obs, args.max_false_visible, args.max_unexposed_percent, args.margin)
    if not args.raw_only:
        from cervisag_edge.tooling.verify.dataset import load_dataset

        items = [it for d in args.data for it in load_dataset(d).items]  # the order of obs
        result = lower_through_pipeline(result, obs, measurer_pipeline(args.manifest, items, result), args.max_false_visible,
                                        args.max_unexposed_percent, args.margin)
    rule = rule_from_result(result)
    record = {k: v for k, v in result.items() if not k.endswith("_per_landmark")}
    record["data"] = args.describe or ", ".join(d.name for d in args.data)
    record["constraints"] = {"max_false_visible": args.max_false_visible, "max_unexposed_percent": args.max_unexposed_percent,
                             "margin": args.margin}
    logger.info("calibration %s", json.dumps(record))
    if args.dry_run:
        return 0
    for path in [args.manifest, *args.variant]:
        doc = json.loads(path.read_text())
        for key in ("confidence_threshold", "confidence_thresholds", "edge_margin_px", "edge_confidence_threshold",
                    "edge_margins_px", "edge_confidence_thresholds"):
            doc["codec"].pop(key, None)
        doc["codec"].update(rule.to_codec())
        doc.setdefault("extra", {})["visibility_calibration"] = dict(record, measured_with=args.manifest.name)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        logger.info("wrote the visibility rule (%s) to %s", rule.describe(), path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
