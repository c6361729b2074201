#!/usr/bin/env python3
"""Accuracy against the number of labelled site studies: ``cervisag adapt`` at n = 10, 25, 50, 100.

The "site" is the held-out phantom style (``--style heldout``, which training never saw), whole
C-spine films by default (``--fov full``; the held-out studies then define the parameters): a pool
of labelled site phantoms (seed ``--site-seed``) and a fixed held-out set (seed ``--holdout-seed``)
that every run is gated and scored on. Optionally one unlabelled run (``--unlabelled-count``).
Writes ``OUT/curve.json`` and ``OUT/curve.md`` (a table for docs/adaptation.md); every figure is
on phantoms.

    # the full curve (issue #19): 2 cores, 30 minutes per fine-tuning, about 2.5 hours
    python tools/adapt_curve.py --out runs/curve --sizes 10,25,50,100 --holdout-count 100 --minutes 30 \\
        --unlabelled-count 200
    # a smoke-sized run
    python tools/adapt_curve.py --out runs/curve_tiny --sizes 5,10 --holdout-count 8 --max-steps 10 --threads 1

Needs the ``[train]`` extra.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("adapt_curve")


def subset_annotations(pool: Path, n: int, dst: Path) -> Path:
    """``dst/annotations.json`` with the first ``n`` studies of ``pool`` (file names point back at the pool)."""
    doc = json.loads((pool / "annotations.json").read_text())
    keep = {im["id"] for im in doc["images"][:n]}
    images = [dict(im, file_name=f"../{pool.name}/{im['file_name']}") for im in doc["images"] if im["id"] in keep]
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "annotations.json").write_text(json.dumps({**doc, "images": images,
                                                      "annotations": [a for a in doc["annotations"] if a["image_id"] in keep]}))
    return dst


def row(label: str, n: int | str, metrics: dict, extra: dict) -> dict:
    mae = {k: v.get("mae") for k, v in (metrics.get("parameters") or {}).items()}
    return {"run": label, "n_labelled": n, "mre_mm": metrics.get("mre_mm"), "sdr2_percent": (metrics.get("sdr_percent") or {}).get("2.0"),
            "found_percent": extra.get("found_percent"), "mae": mae, **{k: v for k, v in extra.items() if k != "found_percent"}}


def markdown(rows: list[dict], holdout: int, fov: str) -> str:
    def f(v, d=2):
        return "-" if v is None else f"{float(v):.{d}f}"

    keys = ["borden_mm", "cci_percent", "ccl_deg", "cobb_c2_c7_deg"]
    out = [f"| run | labelled studies | MRE mm | SDR 2 mm % | found % | {' | '.join('MAE ' + k for k in keys)} | verified | steps | minutes |",
           "|" + "---|" * (9 + len(keys) - 1)]
    for r in rows:
        out.append(f"| {r['run']} | {r['n_labelled']} | {f(r['mre_mm'], 3)} | {f(r['sdr2_percent'], 1)} | {f(r['found_percent'], 1)} | "
                   + " | ".join(f(r["mae"].get(k)) for k in keys)
                   + f" | {r.get('verified', '-')} | {r.get('steps', '-')} | {f(r.get('minutes'), 1)} |")
    out.append(f"\nHeld-out: {holdout} site phantoms (held-out style, field of view {fov}), every run scored on the same "
               "studies; on phantoms.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    from cervisag_edge.tooling.phantom.framing import FOVS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", default="10,25,50,100", help="numbers of labelled site studies")
    ap.add_argument("--holdout-count", type=int, default=100)
    ap.add_argument("--unlabelled-count", type=int, default=0, help="also one unlabelled run on this many studies (0: none)")
    ap.add_argument("--site-seed", type=int, default=7100)
    ap.add_argument("--holdout-seed", type=int, default=7200)
    ap.add_argument("--unlabelled-seed", type=int, default=7300)
    ap.add_argument("--long-side", type=int, default=1024, help="phantom long side in px")
    ap.add_argument("--fov", choices=FOVS, default="full",
                    help="field of view of the site's phantoms (default full: whole C-spine films, so the held-out "
                         "studies can define the parameters the gate checks; any: the training mix)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phantom-share", type=float, default=0.25)
    ap.add_argument("--methods", default="norm,bn,pseudo")
    ap.add_argument("--model", help="base model (default: the shipped one)")
    ap.add_argument("--thresholds", default="paper2025", help="gate thresholds (default paper2025)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(args.out / "curve.log"), logging.StreamHandler()])
    from cervisag_edge.tooling.adapt.gate import found_percent
    from cervisag_edge.tooling.adapt.pipeline import AdaptOptions, adapt
    from cervisag_edge.tooling.phantom.dataset import generate_dataset

    sizes = sorted({int(v) for v in args.sizes.split(",") if v.strip()})
    for name, seed, count in (("pool", args.site_seed, max(sizes)), ("holdout", args.holdout_seed, args.holdout_count),
                              ("unlabelled", args.unlabelled_seed, args.unlabelled_count)):
        if count and not (args.out / name / "annotations.json").is_file():
            generate_dataset(args.out / name, count, seed, fmt="png", out_long_side=args.long_side, style="heldout",
                             fov=args.fov, progress=False)
    rows: list[dict] = []
    base_metrics = None
    common = dict(holdout=args.out / "holdout", model=args.model, minutes=args.minutes, max_steps=args.max_steps,
                  threads=args.threads, phantom_share=args.phantom_share, test_fraction=0.0, variants=(),
                  thresholds=args.thresholds)
    for n in sizes:
        t0 = time.monotonic()
        res = adapt(AdaptOptions(out=args.out / f"n{n}", data=subset_annotations(args.out / "pool", n, args.out / f"data_n{n}"),
                                 base_metrics=base_metrics, **common))
        base_metrics = res.base_heldout
        rec = res.candidates[res.chosen]
        if not rows:
            rows.append(row("base model (before)", 0, base_metrics, {"found_percent": found_percent(base_metrics)}))
        site = json.loads((args.out / f"n{n}" / "cervisag_site.json").read_text())["extra"]["site"]
        cand = json.loads((args.out / f"n{n}" / rec["metrics_file"]).read_text())
        rows.append(row("labelled fine-tuning", n, cand, {"found_percent": found_percent(cand), "verified": rec["passed"],
                                                         "steps": site["training"]["steps"], "minutes": (time.monotonic() - t0) / 60}))
        logger.info("n=%d: MRE %.3f mm (base %.3f), verified %s", n, cand["mre_mm"] or float("nan"), base_metrics["mre_mm"], rec["passed"])
    if args.unlabelled_count:
        t0 = time.monotonic()
        methods = tuple(m for m in args.methods.split(",") if m)
        res = adapt(AdaptOptions(out=args.out / "unlabelled_run", unlabelled=args.out / "unlabelled", methods=methods,
                                 base_metrics=base_metrics, **common))
        for method, rec in res.candidates.items():
            cand = json.loads((args.out / "unlabelled_run" / "candidates" / method / rec["metrics_file"]).read_text())
            rows.append(row(f"unlabelled: {method}", 0, cand, {"found_percent": found_percent(cand), "verified": rec["passed"],
                                                               "minutes": (time.monotonic() - t0) / 60}))
    (args.out / "curve.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    (args.out / "curve.md").write_text(markdown(rows, args.holdout_count, args.fov))
    print(markdown(rows, args.holdout_count, args.fov))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
