#!/usr/bin/env python3
"""Export a trained checkpoint to ONNX with its manifest, and check PyTorch/ONNX Runtime parity.

    python tools/export_onnx.py runs/unet/last.pt --name unet [--metrics held_out.json]

Writes ``engines/cervisag_<name>.onnx`` and ``engines/cervisag_<name>.json`` (opset 17, dynamic
batch, input ``image``, output ``heatmaps``). Parity: max |Δ| of heatmaps and of decoded landmarks
between PyTorch and ONNX Runtime on phantom inputs; the export fails above tolerance.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("export_onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", default="unet", help="model name: writes engines/cervisag_<name>.onnx")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "engines")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--metrics", type=Path, help="JSON of held-out metrics to record in the manifest")
    ap.add_argument("--confidence-threshold", type=float, default=0.3)
    ap.add_argument("--chain-prior", type=Path, help="level prior (tools/fit_chain_prior.py) in --out-dir: decode the vertebrae as one chain")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max heatmap |Δ| allowed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from cervisag_edge.engine.manifest import sha256_file
    from cervisag_edge.tooling.training.export import write_model
    from cervisag_edge.tooling.training.loop import load_checkpoint_model

    model, cfg, info = load_checkpoint_model(args.checkpoint)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    codec = cfg.codec().to_manifest()
    codec["confidence_threshold"] = args.confidence_threshold
    if args.chain_prior:
        prior = args.out_dir / args.chain_prior.name
        if not prior.is_file():
            logger.error("%s: --chain-prior must name a file in the output folder %s", args.chain_prior, args.out_dir)
            return 2
        codec["levels"] = {"type": "chain", "prior": prior.name, "sha256": sha256_file(prior)}
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    training = {"data": cfg.extra, "steps": info["step"], "minutes": round(info["elapsed_s"] / 60, 1),
                "batch_size": cfg.batch_size, "lr": cfg.lr, "render_long_side": cfg.render_long_side,
                "validation_history": info["history"][-3:]}
    try:
        write_model(model, cfg, args.out_dir, f"cervisag_{args.name}", codec=codec, training=training, metrics=metrics,
                    opset=args.opset, tolerance=args.tolerance)
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
