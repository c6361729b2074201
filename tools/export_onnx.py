#!/usr/bin/env python3
"""Export a trained checkpoint to ONNX with its manifest, and check PyTorch/ONNX Runtime parity.

    python tools/export_onnx.py runs/unet/last.pt --name unet [--metrics held_out.json]
    python tools/export_onnx.py runs/refine/last.pt --refine engines/cervisag_unet.json   # the second stage

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


def export_refine(checkpoint: Path, first_stage: Path, opset: int = 17, tolerance: float = 1e-3,
                  name: str = "cervisag_refine") -> int:
    """Export a stage-2 checkpoint beside ``first_stage`` and write its ``refine`` entry into that manifest.

    Writes ``<name>.onnx`` (input ``crop`` (N, 1, S, S), output ``heatmaps`` (N, 4, h, w), dynamic
    batch) and ``<name>.torch.npz``; parity is checked on phantom crops like the first stage's.
    """
    import numpy as np
    import onnxruntime as ort
    import torch

    from cervisag_edge.core.landmarks import CORNERS, VERTEBRAE
    from cervisag_edge.engine.backends.torch_net import conv_macs, count_parameters
    from cervisag_edge.engine.manifest import CROP_RESIZE, ModelManifest, load_manifest, sha256_file
    from cervisag_edge.tooling.training.data import PhantomSource
    from cervisag_edge.tooling.training.refine import level_crops, load_refine_checkpoint

    model, cfg, info = load_refine_checkpoint(checkpoint)
    out_dir = first_stage.parent
    onnx_path, weights_path = out_dir / f"{name}.onnx", out_dir / f"{name}.torch.npz"
    S = cfg.size_px
    torch.onnx.export(model.eval(), (torch.zeros(1, 1, S, S),), str(onnx_path), input_names=["crop"], output_names=["heatmaps"],
                      opset_version=opset, dynamic_axes={"crop": {0: "batch"}, "heatmaps": {0: "batch"}},
                      do_constant_folding=True, dynamo=False)
    src = PhantomSource(424242, 2, cfg.render_long_side)
    xs = np.stack([c[0] for i in range(2) for c in level_crops(src[i], cfg, None)]).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(xs)).numpy()
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(["heatmaps"], {"crop": xs})[0]
    codec = cfg.codec()
    par = {"heatmap_max_abs_diff": float(np.abs(ref - out).max()),
           "landmark_max_abs_diff_px": float(np.abs(codec.decode(ref)[0] - codec.decode(out)[0]).max()), "n_crops": int(len(xs))}
    logger.info("stage-2 parity %s", par)
    if par["heatmap_max_abs_diff"] > tolerance:
        logger.error("stage-2 parity check failed: heatmap max |Δ| %.2e > %.1e", par["heatmap_max_abs_diff"], tolerance)
        return 1
    np.savez(weights_path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    h = S // cfg.stride
    stage = ModelManifest(
        name=name, file=onnx_path.name, sha256=sha256_file(onnx_path), precision="fp32", input_name="crop",
        input_shape=(-1, 1, S, S), output_name="heatmaps", heatmap_shape=(h, h), heatmap_stride=cfg.stride,
        mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value, resize=CROP_RESIZE, codec=codec.to_manifest(),
        landmark_names=CORNERS, crop=cfg.geometry().to_manifest(), levels=VERTEBRAE,
        training={"data": cfg.extra, "steps": info["step"], "minutes": round(info["elapsed_s"] / 60, 1),
                  "phantoms_per_batch": cfg.phantoms_per_batch, "lr": cfg.lr,
                  "jitter": {"shift_sd_mm": cfg.shift_sd_mm, "corner_sd_mm": cfg.corner_sd_mm,
                             "rotation_deg": cfg.rotation_deg, "scale_frac": cfg.scale_frac},
                  "validation_history": info["history"][-3:]},
        extra={"architecture": "LandmarkUNet", "widths": list(cfg.widths), "head_width": max(cfg.widths[0], 16),
               "parameters": count_parameters(model), "macs_per_crop": conv_macs(model, (S, S)), "opset": opset,
               "parity": par, "torch_weights": {"file": weights_path.name, "sha256": sha256_file(weights_path)}},
    )
    raw = json.loads(first_stage.read_text())
    raw["refine"] = stage.to_json_dict()
    first_stage.write_text(json.dumps(raw, indent=2) + "\n")
    load_manifest(first_stage)  # the entry must load back
    logger.info("wrote %s and the refine entry of %s", onnx_path, first_stage)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--refine", type=Path, metavar="MANIFEST",
                    help="the checkpoint is a second stage (tools/train_refine.py): export it beside MANIFEST and add its refine entry")
    ap.add_argument("--name", default="unet", help="model name: writes engines/cervisag_<name>.onnx")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "engines")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--metrics", type=Path, help="JSON of held-out metrics to record in the manifest")
    ap.add_argument("--confidence-threshold", type=float, default=0.3)
    ap.add_argument("--chain-prior", type=Path, help="level prior (tools/fit_chain_prior.py) in --out-dir: decode the vertebrae as one chain")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max heatmap |Δ| allowed")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.refine:
        return export_refine(args.checkpoint, args.refine, args.opset, args.tolerance)

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
