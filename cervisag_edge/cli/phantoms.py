"""``cervisag phantoms``: write a set of synthetic lateral cervical spine radiographs."""
from __future__ import annotations

import argparse

HELP = "generate synthetic lateral C-spine phantoms (DICOM or PNG) with COCO keypoint annotations"


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} invalid, expected WxH such as 2000x2500") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size {text!r} too small, expected both sides >= 16 px")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..tooling.phantom.framing import FOVS
    from ..tooling.phantom.scene import VARIANTS

    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--count", type=int, default=12, help="number of phantoms (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="set seed; (seed, index) fixes each phantom")
    parser.add_argument("--start", type=int, default=0, help="first index (default 0)")
    parser.add_argument("--size", type=_size, default=None, help="full image size WxH in px (default: drawn, 1500-3000 per side)")
    parser.add_argument("--long-side", type=int, default=None, dest="long_side", help="render at this reduced long side in px")
    parser.add_argument("--format", choices=("dicom", "png"), default="dicom", dest="fmt", help="file format (default dicom)")
    parser.add_argument("--variant", choices=VARIANTS, default=None, help="force one variant (default: all, drawn per index)")
    parser.add_argument("--style", choices=("train", "heldout"), default="train",
                        help="train (default) or heldout: anatomy and processing outside every training range")
    parser.add_argument("--fov", choices=FOVS, default="any",
                        help="field of view: any (default, drawn: C-spine, cephalogram or neck crops) or full "
                             "(always the whole C-spine to T1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..tooling.phantom.dataset import generate_dataset

    if args.count < 1:
        raise InputError(f"{args.out_dir}: --count {args.count} invalid, expected >= 1")
    path = generate_dataset(args.out_dir, args.count, args.seed, size=args.size, fmt=args.fmt, variant=args.variant,
                            progress=not args.no_progress, out_long_side=args.long_side, start=args.start, style=args.style, fov=args.fov)
    print(path)
    return 0
