"""``cervisag adapt``: fine-tune the shipped model to a site and gate it (docs/adaptation.md).

Exit status: 0 when the chosen site model passed the gate (verified), 1 when a model was
written but refused (unverified: the runtime warns when it loads it), 2 for usage or input errors.
Needs the ``[train]`` extra (PyTorch CPU).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "adapt the model to a site: fine-tune on corrected COCO labels and/or unlabelled studies, then gate it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="MODEL_DIR", help="folder of the site model (created); --model MODEL_DIR loads it")
    p.add_argument("--data", type=Path, metavar="DIR", help="labelled site studies: DIR/annotations.json (COCO keypoints) + images")
    p.add_argument("--unlabelled", type=Path, metavar="DIR", help="unlabelled site studies (any readable images, searched recursively)")
    p.add_argument("--holdout", type=Path, metavar="DIR",
                   help="labelled held-out studies for the gate (default: a deterministic share of --data)")
    p.add_argument("--model", help="base model name or manifest (default: the shipped model)")
    p.add_argument("--name", default="cervisag_site", help="model name: files MODEL_DIR/<name>.onnx/.json (default cervisag_site)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of --data for early stopping (default 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of --data held out for the gate (default 0.25)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget of each fine-tuning (default 30)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each fine-tuning after this many steps (0: budget only)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4, cosine decay)")
    p.add_argument("--patience", type=int, default=6, help="early stopping: validations without a better MRE (0: never)")
    p.add_argument("--val-every-steps", type=int, default=0, help="validate every N steps (default: once per pass)")
    p.add_argument("--phantom-share", type=float, default=0.25,
                   help="share of training phantoms mixed in against forgetting (default 0.25; 0 for none)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", default="paper2025", metavar="NAME|FILE", help="gate thresholds (default paper2025)")
    p.add_argument("--mre-tolerance", type=float, default=0.0, metavar="MM",
                   help="the site model's held-out MRE may exceed the base model's by this (default 0)")
    p.add_argument("--variants", default="fp16,int8-cpu,int8-trt",
                   help="precision variants made for a verified model (comma list, or none; default all)")
    p.add_argument("--methods", default="norm,bn,pseudo", help="unlabelled methods tried (comma list of norm, bn, pseudo)")
    p.add_argument("--unlabelled-limit", type=int, help="use at most this many unlabelled studies")
    p.add_argument("--long-side", type=int, help="training resolution, long side px (default: the base model's)")
    p.add_argument("--resume", action="store_true", help="resume interrupted fine-tuning from MODEL_DIR/runs")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError

    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("cervisag adapt needs PyTorch: pip install 'cervisag-edge[train]'") from None
    from ..tooling.adapt.model import VARIANTS
    from ..tooling.adapt.pipeline import AdaptOptions, adapt, parse_list
    from ..tooling.adapt.unlabelled import METHODS

    for flag, value, ok in (("--threads", args.threads, args.threads >= 1), ("--batch-size", args.batch_size, args.batch_size >= 1),
                            ("--minutes", args.minutes, args.minutes > 0), ("--max-steps", args.max_steps, args.max_steps >= 0),
                            ("--val-fraction", args.val_fraction, 0 <= args.val_fraction < 1),
                            ("--test-fraction", args.test_fraction, 0 <= args.test_fraction < 1)):
        if not ok:
            raise InputError(f"{flag} {value}: out of range")
    for flag, folder in (("--data", args.data), ("--unlabelled", args.unlabelled), ("--holdout", args.holdout)):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{flag} {folder}: folder not found")
    opts = AdaptOptions(out=args.out, data=args.data, unlabelled=args.unlabelled, holdout=args.holdout, model=args.model,
                        name=args.name, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                        minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                        threads=args.threads, seed=args.seed, patience=args.patience, val_every_steps=args.val_every_steps,
                        phantom_share=args.phantom_share, thresholds=args.thresholds, mre_tolerance_mm=args.mre_tolerance,
                        variants=parse_list(args.variants, VARIANTS, "--variants"),
                        methods=parse_list(args.methods, METHODS, "--methods"), unlabelled_limit=args.unlabelled_limit,
                        long_side=args.long_side, resume=args.resume)
    result = adapt(opts)
    for method, rec in result.candidates.items():
        c, b = rec.get("candidate") or {}, rec.get("base") or {}
        mre = f"held-out MRE {c.get('mre_mm'):.3f} mm (base {b.get('mre_mm'):.3f} mm)" if c.get("mre_mm") is not None and b.get("mre_mm") is not None else "no held-out MRE"
        print(f"candidate {method}: {'verified' if rec['passed'] else 'refused'}; {mre}; {rec['reason']}")
    state = "verified" if result.verified else "NOT verified (the runtime warns when it loads it)"
    print(f"site model: {result.manifest_path} ({result.chosen}, {state})")
    if not result.verified:
        print(f"cervisag adapt: the site model did not pass the gate: {result.candidates[result.chosen]['reason']}", file=sys.stderr)
    return 0 if result.verified else 1
