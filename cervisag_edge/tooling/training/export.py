"""Export a trained network to ONNX with its manifest and a PyTorch/ONNX Runtime parity check.

Used by ``tools/export_onnx.py`` (a training checkpoint) and ``cervisag adapt`` (a site model):
opset 17, dynamic batch, input ``image``, output ``heatmaps``; the weights are also saved as
``<stem>.torch.npz`` (loaded with ``allow_pickle=False``) for the torch backend and later fine-tuning.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...engine.manifest import ModelManifest, sha256_file
from .loop import TrainConfig

logger = logging.getLogger(__name__)

DISPLAY_NOTE = "VOI-windowed display image in [0,1], bone bright; letterbox INTER_AREA, centred, pad 0"


def export_onnx(model: Any, cfg: TrainConfig, onnx_path: Path, opset: int = 17) -> None:
    """Write ``model`` (a ``LandmarkUNet``) as ONNX with a dynamic batch at ``cfg.input_size``."""
    import torch

    n = cfg.input_size
    dummy = torch.zeros(1, 1, n, n)
    model = model.eval().to(memory_format=torch.contiguous_format)
    torch.onnx.export(model, (dummy,), str(onnx_path), input_names=["image"], output_names=["heatmaps"],
                      opset_version=opset, dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}},
                      do_constant_folding=True, dynamo=False)


def parity(model: Any, cfg: TrainConfig, onnx_path: Path, n_images: int = 3) -> dict[str, float]:
    """Max |Δ| of heatmaps and of decoded landmarks (px) between PyTorch and ONNX Runtime on phantoms."""
    import onnxruntime as ort
    import torch

    from .data import PhantomSource, make_example

    codec = cfg.codec()
    try:
        src = PhantomSource(424242, n_images, cfg.render_long_side)
        xs = np.stack([make_example(src[i], codec, cfg.mean, cfg.std, cfg.pad_value, None)[0] for i in range(n_images)])
    except ImportError:  # phantom generator not installed: deterministic noise images
        rng = np.random.default_rng(424242)
        xs = rng.normal(0, 1, size=(n_images, 1, cfg.input_size, cfg.input_size)).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(xs)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = sess.run(["heatmaps"], {"image": xs})[0]
    p_ref, _ = codec.decode(ref)
    p_out, _ = codec.decode(out)
    diff = np.abs(p_ref - p_out)
    return {"heatmap_max_abs_diff": float(np.abs(ref - out).max()),
            "landmark_max_abs_diff_px": float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0, "n_images": n_images}


def write_model(model: Any, cfg: TrainConfig, out_dir: Path, stem: str, *, codec: Mapping[str, Any],
                training: Mapping[str, Any], metrics: Mapping[str, Any] | None = None,
                extra: Mapping[str, Any] | None = None, base_model: str | None = None, opset: int = 17,
                tolerance: float = 1e-3) -> tuple[ModelManifest, Path]:
    """Export ``model`` to ``out_dir/<stem>.onnx`` + ``<stem>.torch.npz`` + manifest ``<stem>.json``.

    ``codec`` is the manifest's codec section (from ``cfg.codec().to_manifest()`` plus the
    confidence threshold and the level decoder). Returns (manifest, its path); raises
    ``RuntimeError`` when ONNX Runtime disagrees with PyTorch beyond ``tolerance``.
    """
    from ...engine.backends.torch_net import conv_macs, count_parameters

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{stem}.onnx"
    export_onnx(model, cfg, onnx_path, opset)
    par = parity(model, cfg, onnx_path)
    logger.info("parity %s", par)
    if par["heatmap_max_abs_diff"] > tolerance:
        raise RuntimeError(f"{onnx_path}: parity check failed: heatmap max |Δ| {par['heatmap_max_abs_diff']:.2e} > {tolerance:.1e}")
    weights_path = out_dir / f"{stem}.torch.npz"
    np.savez(weights_path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    n = cfg.input_size
    manifest = ModelManifest(
        name=stem, file=onnx_path.name, sha256=sha256_file(onnx_path), precision="fp32", input_name="image",
        input_shape=(-1, 1, n, n), output_name="heatmaps", heatmap_shape=(n // cfg.stride, n // cfg.stride),
        heatmap_stride=cfg.stride, mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value, resize="letterbox",
        codec=dict(codec), training=dict(training), metrics=dict(metrics or {}), base_model=base_model,
        extra={"architecture": "LandmarkUNet", "widths": list(cfg.widths), "head_width": cfg.head_width,
               "parameters": count_parameters(model), "macs_per_image": conv_macs(model, (n, n)), "opset": opset,
               "parity": par, "torch_weights": {"file": weights_path.name, "sha256": sha256_file(weights_path)},
               "display": DISPLAY_NOTE, **dict(extra or {})},
    )
    path = out_dir / f"{stem}.json"
    manifest.write(path)
    logger.info("wrote %s and %s", onnx_path, path)
    return manifest, path


def config_from_manifest(manifest: ModelManifest) -> TrainConfig:
    """The training configuration that rebuilds the network a manifest describes (widths, head,
    input size, stride, normalisation, heatmap sigma, render size)."""
    extra, training = dict(manifest.extra), dict(manifest.training)
    if "widths" not in extra:
        raise ValueError(f"{manifest.name}: manifest field extra.widths missing (not a LandmarkUNet export)")
    return TrainConfig(input_size=int(manifest.input_shape[2]), stride=int(manifest.heatmap_stride),
                       sigma=float(manifest.codec.get("sigma", 2.0)), widths=tuple(int(w) for w in extra["widths"]),
                       mean=float(manifest.mean), std=float(manifest.std), pad_value=float(manifest.pad_value),
                       head_width=int(extra.get("head_width", 96)),
                       render_long_side=int(training.get("render_long_side", 448)))
