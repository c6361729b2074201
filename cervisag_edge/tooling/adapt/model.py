"""The base model a site adapts, and the candidate model folder ``cervisag adapt`` writes.

A candidate folder holds ``<stem>.onnx`` + ``<stem>.json`` (+ ``.torch.npz``, the level prior the
codec names, precision variants), ``verify_*.json`` and ``MODEL_CARD.md``; ``--model DIR`` loads it.
Manifest sections: ``base_model`` (the base ONNX file name), ``extra.site`` (provenance: base
sha256s, dataset hashes, number of studies, split, date, method, metrics) and
``extra.verification`` (the gate, :mod:`.gate`).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ...engine.manifest import ModelManifest, load_manifest, sha256_file
from ...engine.resolver import manifest_path_for
from ...errors import ModelError
from ..training.export import config_from_manifest, write_model
from ..training.loop import TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_STEM = "cervisag_site"
#: precision variants re-made for a verified site model (tools/quantize.py)
VARIANTS: tuple[str, ...] = ("fp16", "int8-cpu", "int8-trt")


@dataclass(frozen=True)
class BaseModel:
    """The FP32 model being adapted: manifest, its PyTorch weights and the network config."""

    manifest: ModelManifest
    manifest_path: Path
    weights: Path
    config: TrainConfig

    def provenance(self) -> dict[str, Any]:
        return {"name": self.manifest.name, "manifest": self.manifest_path.name, "onnx_sha256": self.manifest.sha256,
                "torch_weights_sha256": sha256_file(self.weights)}


def load_base(model: str | Path | None) -> BaseModel:
    """The base model (None: the shipped one) with its ``.torch.npz`` weights, sha256-checked."""
    path = manifest_path_for(model, "onnxruntime", "fp32")
    manifest = load_manifest(path)
    tw = manifest.extra.get("torch_weights") or {}
    if not tw.get("file"):
        raise ModelError(f"{path}: field extra.torch_weights missing: the base model has no PyTorch weights to fine-tune")
    weights = Path(manifest.path) / tw["file"]
    if not weights.is_file():
        raise ModelError(f"{path}: torch weights {weights} named by extra.torch_weights.file do not exist")
    if tw.get("sha256") and sha256_file(weights) != tw["sha256"]:
        raise ModelError(f"{weights}: sha256 does not match manifest field extra.torch_weights.sha256")
    try:
        cfg = config_from_manifest(manifest)
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None
    return BaseModel(manifest, path, weights, cfg)


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def inherited_extra(base: ModelManifest) -> dict[str, Any]:
    """Calibrations carried over from the base model (marked: not refitted on the site)."""
    out: dict[str, Any] = {}
    for key in ("visibility_calibration", "uncertainty"):
        if key in base.extra:
            out[key] = {**dict(base.extra[key]), "inherited_from": base.name,
                        "note": "fitted on the base model's phantoms, not refitted on the site"}
    return out


def write_candidate(model: Any, cfg: TrainConfig, base: BaseModel, out_dir: Path, stem: str, *,
                    site: Mapping[str, Any], training: Mapping[str, Any], mean: float | None = None,
                    std: float | None = None) -> Path:
    """Export ``model`` into ``out_dir`` as an unverified site model; returns its manifest path.
    ``mean``/``std`` override the normalisation (the unlabelled path's re-estimated statistics)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = dict(base.manifest.codec)
    copy_data_files(base.manifest, out_dir)
    export_cfg = replace(cfg, mean=cfg.mean if mean is None else float(mean), std=cfg.std if std is None else float(std))
    extra = {**inherited_extra(base.manifest), "site": dict(site),
             "verification": {"passed": False, "reason": "not verified yet"}}
    manifest, path = write_model(model, export_cfg, out_dir, stem, codec=codec, training=training, extra=extra,
                                 base_model=base.manifest.file)
    if base.manifest.refine is not None:  # the second stage is shared, not retrained (docs/refinement.md)
        replace(manifest, refine=base.manifest.refine).write(path)
        load_manifest(path)  # its files must be beside the new manifest
    return path


def data_files(manifest: ModelManifest) -> list[str]:
    """The files besides the first-stage ONNX that ``manifest`` names and that must sit beside it:
    the level prior, the shape model, the second stage's ONNX and weights."""
    names: list[str] = []
    levels = manifest.codec.get("levels")
    if isinstance(levels, Mapping) and levels.get("prior"):
        names.append(str(levels["prior"]))
    shape = (manifest.extra.get("uncertainty") or {}).get("shape_model")
    if isinstance(shape, Mapping) and shape.get("file"):
        names.append(str(shape["file"]))
    if manifest.refine is not None:
        names.append(manifest.refine.file)
        weights = (manifest.refine.extra.get("torch_weights") or {}).get("file")
        if weights:
            names.append(str(weights))
    return names


def copy_data_files(manifest: ModelManifest, out_dir: Path) -> None:
    """Copy :func:`data_files` of ``manifest`` into ``out_dir`` (a site model's folder)."""
    for name in data_files(manifest):
        src = Path(manifest.path) / name
        if src.is_file() and src.resolve() != (out_dir / src.name).resolve():
            shutil.copy2(src, out_dir / src.name)


def record_verification(manifest_path: Path, verification: Mapping[str, Any]) -> ModelManifest:
    """Rewrite the manifest with the gate's record (the model file is unchanged)."""
    m = load_manifest(manifest_path)
    m = replace(m, extra={**dict(m.extra), "verification": dict(verification)})
    m.write(manifest_path)
    return m


def build_variants(manifest_path: Path, variants: Sequence[str], *, calib_count: int = 8, eval_count: int = 4) -> list[str]:
    """Precision variants via ``tools/quantize.py`` of a source checkout; the list of variants made.
    An installed package without ``tools/`` makes none (logged)."""
    if not variants:
        return []
    tool = Path(__file__).resolve().parents[3] / "tools" / "quantize.py"
    if not tool.is_file():
        logger.warning("precision variants not made: %s not found (run tools/quantize.py from a source checkout)", tool)
        return []
    cmd = [sys.executable, str(tool), str(manifest_path), "--variants", ",".join(variants), "--calib-count", str(calib_count),
           "--eval-count", str(eval_count), "--runs", "3", "--long-side", "640"]
    logger.info("precision variants: %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        logger.warning("tools/quantize.py failed (%d): %s", done.returncode, done.stderr.strip().splitlines()[-1:] or "")
        return []
    return [v for v in variants if (manifest_path.parent / f"{manifest_path.stem}.{v}.json").is_file()]


def write_model_card(out_dir: Path, manifest: ModelManifest) -> Path:
    """``MODEL_CARD.md`` of a site model: base, data, method, held-out numbers, the gate."""
    site, ver = dict(manifest.extra.get("site") or {}), dict(manifest.extra.get("verification") or {})
    b, c = ver.get("base") or {}, ver.get("candidate") or {}
    split, base, th = site.get("split") or {}, site.get("base") or {}, ver.get("thresholds") or {}

    def num(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{float(v):.{digits}f}"

    lines = [f"# Site model `{manifest.name}`", "",
             "Adapted by `cervisag adapt` (docs/adaptation.md). Not for diagnostic use.", "",
             "| | |", "|---|---|",
             f"| base model | `{base.get('name')}` sha256 `{str(base.get('onnx_sha256'))[:16]}…` |",
             f"| method | {site.get('method')} |",
             f"| studies | {(site.get('dataset') or {}).get('n_studies', 0)} labelled, split {json.dumps({k: split.get(k) for k in ('n_train', 'n_val', 'n_test')})} |",
             f"| unlabelled studies | {(site.get('unlabelled') or {}).get('n_studies', 0)} |",
             f"| date | {site.get('date')} |",
             f"| verified | **{'yes' if ver.get('passed') else 'no'}**: {ver.get('reason')} |",
             f"| thresholds | {th.get('name')} v{th.get('version')} |", "",
             "Held-out site studies (runtime, ONNX Runtime FP32):", "",
             "| | MRE mm | SDR 2 mm % | n |", "|---|---|---|---|",
             f"| base | {num(b.get('mre_mm'))} | {num((b.get('sdr_percent') or {}).get('2.0'), 1)} | {b.get('n_images', '-')} |",
             f"| site model | {num(c.get('mre_mm'))} | {num((c.get('sdr_percent') or {}).get('2.0'), 1)} | {c.get('n_images', '-')} |", "",
             "Visibility threshold and uncertainty calibration are the base model's (not refitted on the site)."]
    path = Path(out_dir) / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
