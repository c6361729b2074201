#!/usr/bin/env python3
"""Train the landmark U-Net on phantoms (default) or on your own labelled studies (``--data``).

Examples::

    # phantoms, 90 minutes on the CPU, in the background
    nohup python tools/train.py --out runs/unet --minutes 90 > runs/unet.log 2>&1 &
    # resume after an interruption (the time budget counts what was already spent)
    python tools/train.py --out runs/unet --minutes 90 --resume runs/unet/last.pt
    # a hospital's own studies: DIR/annotations.json (COCO keypoints, 34 schema names) + images
    python tools/train.py --data /path/to/studies --out runs/site --minutes 120 --resume runs/unet/last.pt

Needs the ``[train]`` extra (PyTorch CPU). See docs/training.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output directory (checkpoints, log, history)")
    p.add_argument("--data", type=Path, help="COCO keypoints dataset directory; default: phantoms")
    p.add_argument("--val-fraction", type=float, default=0.1, help="--data: deterministic validation share (every k-th image)")
    p.add_argument("--count", type=int, default=4000, help="phantoms in the training pool (seed --seed)")
    p.add_argument("--val-count", type=int, default=64, help="validation phantoms (seed --val-seed, never trained on)")
    p.add_argument("--seed", type=int, default=1, help="phantom seed of the training pool")
    p.add_argument("--val-seed", type=int, default=900001, help="phantom seed of the validation set")
    p.add_argument("--cache", type=Path, help="phantom cache directory (default OUT/cache)")
    p.add_argument("--minutes", type=float, default=90.0, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--input-size", type=int, default=384)
    p.add_argument("--widths", default="16,32,64,128,256", help="channels at strides 2..32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--render-long-side", type=int, default=448)
    p.add_argument("--val-every-min", type=float, default=10.0)
    p.add_argument("--resume", type=Path, help="checkpoint to resume from")
    p.add_argument("--init", type=Path, help="start a fresh run from these weights (.torch.npz or checkpoint)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()])
    from cervisag_edge.tooling.training.data import CocoSource, PhantomSource
    from cervisag_edge.tooling.training.loop import TrainConfig, train

    cfg = TrainConfig(input_size=args.input_size, widths=tuple(int(v) for v in args.widths.split(",")),
                      batch_size=args.batch_size, lr=args.lr, minutes=args.minutes, max_steps=args.max_steps,
                      threads=args.threads, workers=args.workers, val_every_min=args.val_every_min,
                      render_long_side=args.render_long_side, seed=args.seed)
    cache = args.cache or args.out / "cache"
    if args.data:
        full = CocoSource(args.data, args.render_long_side)
        n = len(full)
        k = max(2, round(1 / max(args.val_fraction, 1e-3)))
        val_idx = [i for i in range(n) if i % k == 0]
        train_idx = [i for i in range(n) if i % k != 0]
        train_src = CocoSource(args.data, args.render_long_side, train_idx)
        val_src = CocoSource(args.data, args.render_long_side, val_idx)
        cfg.extra = {"data": str(args.data), "n_train": len(train_idx), "n_val": len(val_idx)}
    else:
        train_src = PhantomSource(args.seed, args.count, args.render_long_side, cache)
        val_src = PhantomSource(args.val_seed, args.val_count, args.render_long_side, cache)
        cfg.extra = {"data": "phantoms", "train_seed": args.seed, "n_train": args.count,
                     "val_seed": args.val_seed, "n_val": args.val_count}
    val = [val_src[i] for i in range(len(val_src))]
    logging.info("config %s", cfg)
    final = train(cfg, train_src, val, args.out, resume=args.resume, init=args.init)
    logging.info("done: %s", final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
