"""``cervisag adapt`` end to end: base model → candidates → gate → the chosen site model folder.

1. The base model (shipped by default) and its PyTorch weights (:func:`.model.load_base`).
2. Labelled studies (``data``): checked, split deterministically into training, validation
   (early stopping) and the held-out test split (the gate), unless ``holdout`` gives the held-out
   studies; the base model is measured on the held-out studies first ("before").
3. Candidates, each a model folder under ``OUT/candidates/<method>``:
   ``labelled`` (fine-tuning from the base weights on the training split, phantoms mixed in,
   checkpoints, resume, a wall-clock budget) and/or the unlabelled methods of :mod:`.unlabelled`.
4. Each candidate goes through the gate (:mod:`.gate`); the passing candidate with the lowest
   held-out MRE is chosen; when none passes, one no worse than the base model is preferred, then
   the lowest MRE (without held-out studies: the lowest flip disagreement, unverified).
5. The chosen one is copied to ``OUT``; when verified its precision variants are made; a model
   card is written.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ...errors import InputError
from ..verify import MeasurerSpec, load_thresholds, verify
from .gate import run_gate
from .model import (DEFAULT_STEM, BaseModel, build_variants, load_base, now_utc, record_verification, write_candidate,
                    write_model_card)
from .sitedata import (MemorySource, MixedSource, dataset_provenance, load_site, phantom_count, split_site, subset)

logger = logging.getLogger(__name__)

#: training-style phantom set mixed in against forgetting (the base model's training seed)
PHANTOM_SEED = 1


@dataclass(frozen=True)
class AdaptOptions:
    """What ``cervisag adapt`` was asked (CLI flags of the same names)."""

    out: Path
    data: Path | None = None
    unlabelled: Path | None = None
    holdout: Path | None = None
    model: str | None = None
    name: str = DEFAULT_STEM
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    minutes: float = 30.0
    max_steps: int = 0
    batch_size: int = 8
    lr: float = 3e-4
    threads: int = 2
    seed: int = 0
    patience: int = 6
    val_every_steps: int = 0  # 0: once per pass over the training split
    phantom_share: float = 0.25
    thresholds: str = "paper2025"
    mre_tolerance_mm: float = 0.0
    variants: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("norm", "bn", "pseudo")
    unlabelled_limit: int | None = None
    reference_count: int = 16
    resume: bool = False
    long_side: int | None = None  # training resolution (default: the base model's)
    #: the base model's verify metrics on the same held-out studies (skips measuring it again)
    base_metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class AdaptResult:
    manifest_path: Path
    verified: bool
    chosen: str
    candidates: dict[str, Any]
    base_heldout: dict[str, Any] | None


def _train_cfg(base: BaseModel, o: AdaptOptions, n_train: int):
    bs = max(1, min(o.batch_size, n_train))
    per_pass = max(1, n_train // bs)
    return replace(base.config, batch_size=bs, lr=o.lr, minutes=o.minutes, max_steps=o.max_steps,
                   warmup_steps=min(20, max(1, per_pass)), threads=o.threads, workers=0, seed=o.seed,
                   val_every_min=1e9, val_every_steps=o.val_every_steps or per_pass, patience=o.patience,
                   ckpt_every_min=2.0, render_long_side=o.long_side or base.config.render_long_side)


def _net(base: BaseModel, cfg, weights: Path | None = None):
    import torch

    from ...engine.backends.torch_net import LandmarkUNet
    from ..training.loop import load_init_weights

    torch.set_num_threads(cfg.threads)
    net = LandmarkUNet(widths=tuple(cfg.widths), out_stride=cfg.stride, head_width=cfg.head_width)
    load_init_weights(net, weights or base.weights)
    return net.eval()


def _finetune(base: BaseModel, o: AdaptOptions, work: Path, train_src: Any, val: list, tag: str):
    """Fine-tune from the base weights; returns (model from the best validation, cfg, info)."""
    from ..training.data import PhantomSource
    from ..training.loop import load_checkpoint_model, train

    n_ph = phantom_count(len(train_src), o.phantom_share)
    cfg = _train_cfg(base, o, len(train_src) + n_ph)
    phantoms = PhantomSource(PHANTOM_SEED, n_ph, cfg.render_long_side, work / "phantom_cache") if n_ph else None
    src = MixedSource(train_src, phantoms)
    run_dir = work / f"run_{tag}"
    last = run_dir / "last.pt"
    resume = last if (o.resume and last.is_file()) else None
    if resume:
        logger.info("resuming %s from %s", tag, last)
    final = train(cfg, src, val, run_dir, resume=resume, init=None if resume else base.weights)
    best = run_dir / "best.pt"
    model, cfg_used, info = load_checkpoint_model(best if best.is_file() else final)
    hist = json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").is_file() else []
    early = {"best_step": info["step"], "steps_run": hist[-1]["step"] if hist else info["step"]}
    return model, cfg_used, {"steps": early["steps_run"], "best_step": early["best_step"], "n_phantoms_mixed": n_ph,
                             "batch_size": cfg.batch_size, "lr": cfg.lr, "minutes_budget": cfg.minutes,
                             "max_steps": cfg.max_steps, "patience": cfg.patience, "val_every_steps": cfg.val_every_steps,
                             "render_long_side": cfg.render_long_side, "validation_history": hist[-5:]}


def _unlabelled_candidates(base: BaseModel, o: AdaptOptions, work: Path, val: list):
    from ..training.data import PhantomSource
    from . import unlabelled as U

    cfg = replace(base.config, threads=o.threads, render_long_side=o.long_side or base.config.render_long_side)
    site = U.read_unlabelled(o.unlabelled, cfg.render_long_side, o.unlabelled_limit)
    threshold = float(base.manifest.codec.get("confidence_threshold", 0.3))
    out: list[U.UnlabelledCandidate] = []
    for method in o.methods:
        logger.info("unlabelled method %s on %d studies", method, len(site))
        if method == "norm":
            ref = PhantomSource(PHANTOM_SEED, o.reference_count, cfg.render_long_side, work / "phantom_cache")
            mean, std = U.normalisation_for(site, [ref[i] for i in range(len(ref))], cfg)
            out.append(U.UnlabelledCandidate("norm", _net(base, cfg), mean, std,
                                             {"mean": mean, "std": std, "reference": f"{o.reference_count} training-style phantoms"}))
        elif method == "bn":
            out.append(U.UnlabelledCandidate("bn", U.recalibrate_batchnorm(_net(base, cfg), site, cfg), None, None,
                                             {"n_studies": len(site)}))
        elif method == "pseudo":
            labels, info = U.pseudo_labels(_net(base, cfg), site, cfg, threshold)
            if len(labels) < 1:
                logger.warning("pseudo: no study with %d consistent landmarks; method skipped", U.MIN_PSEUDO_LANDMARKS)
                continue
            model, _, tinfo = _finetune(base, o, work, labels, val, "pseudo")
            out.append(U.UnlabelledCandidate("pseudo", model, None, None, {**info, "training": tinfo}))
        else:
            raise InputError(f"--methods {method}: unknown, expected {', '.join(U.METHODS)}")
    scores = {}
    for c in out:
        ccfg = replace(cfg, mean=c.mean if c.mean is not None else cfg.mean, std=c.std if c.std is not None else cfg.std)
        scores[c.method] = U.consistency_px(c.model, site, ccfg, threshold)
    scores["base"] = U.consistency_px(_net(base, cfg), site, cfg, threshold)
    logger.info("label-free scores (flip disagreement px, lower is better): %s", json.dumps(scores))
    return out, scores, len(site)


def adapt(o: AdaptOptions) -> AdaptResult:
    """Run the whole adaptation (see the module doc); returns where the chosen model is."""
    if o.data is None and o.unlabelled is None:
        raise InputError("cervisag adapt needs --data DIR (labelled COCO) and/or --unlabelled DIR")
    out = Path(o.out)
    work = out / "runs"
    work.mkdir(parents=True, exist_ok=True)
    base = load_base(o.model)
    thresholds = load_thresholds(o.thresholds)
    site_ds = load_site(o.data) if o.data else None
    split = None
    if site_ds is not None:
        names = [it.file_name for it in site_ds.items]
        split = split_site(names, o.val_fraction, 0.0 if o.holdout else o.test_fraction)
    heldout = load_site(o.holdout) if o.holdout else (subset(site_ds, split.test) if split and split.test else None)
    provenance = {"base": base.provenance(), "date": now_utc(),
                  "dataset": dataset_provenance(site_ds) if site_ds else {"n_studies": 0},
                  "split": split.to_dict() if split else None,
                  "heldout_dataset": dataset_provenance(heldout) if heldout is not None and o.holdout else None,
                  "options": json.loads(json.dumps({k: v for k, v in asdict(o).items() if k != "base_metrics"}, default=str))}
    base_metrics = dict(o.base_metrics) if o.base_metrics else None
    if heldout is not None and base_metrics is None:
        logger.info("before: the base model on %d held-out site studies", len(heldout.items))
        base_metrics = dict(verify(heldout, MeasurerSpec(model=str(base.manifest_path), threads=o.threads), thresholds).metrics)
        logger.info("before: base MRE %s mm", base_metrics.get("mre_mm"))

    val_samples: list = []
    candidates: dict[str, Path] = {}
    long_side = o.long_side or base.config.render_long_side
    if site_ds is not None and split is not None:
        train_src = MemorySource(o.data, split.train, long_side)
        val_samples = MemorySource(o.data, split.val, long_side).samples if split.val else []
        model, cfg, tinfo = _finetune(base, o, work, train_src, val_samples, "labelled")
        site = {**provenance, "method": "labelled fine-tuning", "training": tinfo}
        candidates["labelled"] = write_candidate(model, cfg, base, out / "candidates" / "labelled", o.name, site=site,
                                                 training={"data": "site", **tinfo})
    scores: dict[str, Any] = {}
    n_unlabelled = 0
    if o.unlabelled is not None:
        ucands, scores, n_unlabelled = _unlabelled_candidates(base, o, work, val_samples)
        for c in ucands:
            site = {**provenance, "method": f"unlabelled: {c.method}", "unlabelled": {"n_studies": n_unlabelled, **c.info},
                    "label_free_score": scores.get(c.method)}
            candidates[c.method] = write_candidate(c.model, base.config, base, out / "candidates" / c.method, o.name,
                                                   site=site, training={"data": "site (unlabelled)", "method": c.method},
                                                   mean=c.mean, std=c.std)
    if not candidates:
        raise InputError("no candidate model was produced (see the log)")

    results: dict[str, Any] = {}
    for method, mpath in candidates.items():
        if heldout is not None:
            gate = run_gate(mpath, base.manifest_path, heldout, thresholds, mpath.parent, threads=o.threads,
                            mre_tolerance_mm=o.mre_tolerance_mm, base_metrics=base_metrics)
            record = dict(gate.record)
        else:
            record = {"passed": False, "reason": "no labelled held-out studies: not verified (give --data or --holdout)",
                      "label_free_score": scores.get(method)}
        record_verification(mpath, record)
        results[method] = record

    def rank(method: str) -> tuple:
        """Verified first, then no worse than the base (an MRE alone favours finding less), then one
        with a held-out MRE before one without (never mm against px), then MRE or flip disagreement."""
        r = results[method]
        mre = (r.get("candidate") or {}).get("mre_mm")
        if mre is not None:
            return (not r["passed"], not r.get("no_worse_than_base", False), False, mre)
        s = scores.get(method) or {}
        return (True, True, True, s.get("flip_disagreement_px", math.inf))

    chosen = min(results, key=rank)
    src = candidates[chosen].parent
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    manifest_path = out / candidates[chosen].name
    verified = bool(results[chosen]["passed"])
    from ...engine.manifest import load_manifest

    m = load_manifest(manifest_path)
    site = {**dict(m.extra.get("site", {})), "chosen_from": {k: {"passed": v["passed"], "reason": v["reason"],
                                                                  "mre_mm": (v.get("candidate") or {}).get("mre_mm")}
                                                              for k, v in results.items()},
            "base_heldout_mre_mm": (base_metrics or {}).get("mre_mm")}
    m = replace(m, extra={**dict(m.extra), "site": site})
    m.write(manifest_path)
    made: list[str] = []
    if verified and o.variants:
        made = build_variants(manifest_path, o.variants)
    write_model_card(out, load_manifest(manifest_path))
    summary = {"chosen": chosen, "verified": verified, "manifest": manifest_path.name, "variants": made,
               "candidates": results, "label_free_scores": scores, "base_heldout": base_metrics and {
                   "mre_mm": base_metrics.get("mre_mm"), "n_images": base_metrics.get("n_images")}}
    from ...outputs.records import json_safe

    (out / "adapt_summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    return AdaptResult(manifest_path, verified, chosen, results, base_metrics)


def parse_list(text: str | None, allowed: Sequence[str], flag: str) -> tuple[str, ...]:
    """``"a,b"`` → ("a", "b"); ``none``/empty → (); an unknown item is an :class:`InputError`."""
    if not text or text.strip().lower() == "none":
        return ()
    items = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad:
        raise InputError(f"{flag} {text}: unknown {', '.join(bad)}, expected a comma list of {', '.join(allowed)} or none")
    return items
