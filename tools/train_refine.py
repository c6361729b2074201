#!/usr/bin/env python3
"""Train the second stage (vertebra corner refinement on aligned crops) on phantoms.

Examples::

    # 55 minutes on one CPU thread, in the background; renders are cached in OUT/cache
    nohup python tools/train_refine.py --out runs/refine --minutes 55 > runs/refine.out 2>&1 &
    # resume after an interruption (the budget counts the time already spent)
    python tools/train_refine.py --out runs/refine --minutes 55 --resume runs/refine/last.pt
    # fine-tune the shipped second stage (its crop size and widths)
    python tools/train_refine.py --out runs/refine_ft --init engines/cervisag_refine.torch.npz --size 96 \
        --widths 12,16,24,32,48 --lr 7e-4 --minutes 40 --threads 2

Then export with ``python tools/export_onnx.py --refine runs/refine/last.pt`` (see docs/refinement.md).
Needs the ``[train]`` extra (PyTorch CPU). Never train on the held-out seeds (777, 778, 9001, 4242, 900001).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELDOUT_SEEDS = (777, 778, 9001, 4242, 900001)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory (checkpoint, log, history, cache)")
    p.add_argument("--count", type=int, default=1600, help="phantoms in the training pool (seed --seed)")
    p.add_argument("--val-count", type=int, default=32, help="validation phantoms (seed --val-seed)")
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--val-seed", type=int, default=32)
    p.add_argument("--cache", type=Path, help="render cache directory (default OUT/cache)")
    p.add_argument("--render-long-side", type=int, default=1024)
    p.add_argument("--minutes", type=float, default=55.0, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--phantoms-per-batch", type=int, default=4, help="each phantom gives up to 7 crops")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=int, default=128, help="crop side S in px")
    p.add_argument("--factor", type=float, default=2.0, help="crop side / vertebra size")
    p.add_argument("--stride", type=int, default=2, choices=(2, 4))
    p.add_argument("--widths", default="16,24,32,48,64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--val-every-min", type=float, default=10.0)
    p.add_argument("--resume", type=Path, help="checkpoint to resume from")
    p.add_argument("--init", type=Path, help="start a fresh run from these weights (engines/cervisag_refine.torch.npz "
                                             "or a checkpoint; --size/--widths must match them)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for s in (args.seed, args.val_seed):
        if s in HELDOUT_SEEDS:
            raise SystemExit(f"seed {s} is a held-out seed; choose another")
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()])
    from cervisag_edge.tooling.training.data import PhantomSource
    from cervisag_edge.tooling.training.refine import RefineConfig, train_refine

    cfg = RefineConfig(size_px=args.size, factor=args.factor, stride=args.stride,
                       widths=tuple(int(v) for v in args.widths.split(",")), lr=args.lr, minutes=args.minutes,
                       max_steps=args.max_steps, threads=args.threads, seed=args.seed,
                       phantoms_per_batch=args.phantoms_per_batch, val_every_min=args.val_every_min,
                       render_long_side=args.render_long_side)
    cache = args.cache or args.out / "cache"
    cfg.extra = {"data": "phantoms", "train_seed": args.seed, "n_train": args.count, "val_seed": args.val_seed,
                 "n_val": args.val_count, "render_long_side": args.render_long_side}
    src = PhantomSource(args.seed, args.count, args.render_long_side, cache)
    val_src = PhantomSource(args.val_seed, args.val_count, args.render_long_side, cache)
    val = [val_src[i] for i in range(len(val_src))]
    logging.info("config %s", cfg)
    if args.init is not None:
        cfg.extra["init"] = str(args.init.name)
    final = train_refine(cfg, src, val, args.out, resume=args.resume, init=args.init)
    logging.info("done: %s", final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
