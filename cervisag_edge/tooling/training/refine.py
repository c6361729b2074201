"""Training of the second (corner refinement) stage on vertebra-aligned crops (PyTorch CPU).

Shape legend: S = crop side (128), h = w = S / stride (64) heatmap side, 4 corners (AS, PS, PI,
AI) per crop; a batch holds B crops (up to 7 levels of several phantoms), input (B, 1, S, S),
targets (B, 4, h, w), corner positions in heatmap px (B, 4, 2).

A crop is cut by the runtime's own :func:`cervisag_edge.engine.crop.crop_display` around a frame
built from the **true** corners and then jittered to look like a first-stage estimate: centre
moved by a Gaussian (``shift_sd_mm``, clipped at 2.5 sd), rotation ± ``rotation_deg``, size
× (1 ± ``scale_frac``), and each corner moved independently by ``corner_sd_mm`` before the frame
is built. Intensity: the shared clinical-processing module through ``data.apply_intensity``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.landmarks import VERTEBRAE, vertebra_corner_indices
from ...engine.backends.torch_net import LandmarkUNet
from ...engine.codec import UDPHeatmapCodec
from ...engine.crop import (CropGeometry, VertebraFrame, apply_affine, crop_display, frame_affine, invert_affine,
                           vertebra_frame)
from ...engine.preprocess import normalize
from .data import AugmentConfig, Sample, apply_intensity, apply_marks
from .loop import heatmap_loss, load_init_weights, soft_argmax_loss

logger = logging.getLogger(__name__)

CORNER_ROWS = tuple(vertebra_corner_indices(v) for v in VERTEBRAE)


@dataclass
class RefineConfig:
    size_px: int = 128
    factor: float = 2.0
    stride: int = 2
    sigma: float = 2.0
    widths: tuple[int, ...] = (16, 24, 32, 48, 64)
    mean: float = 0.5
    std: float = 0.25
    pad_value: float = 0.0
    shift_sd_mm: float = 1.0
    corner_sd_mm: float = 0.5
    rotation_deg: float = 8.0
    scale_frac: float = 0.10
    phantoms_per_batch: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    minutes: float = 55.0
    max_steps: int = 0
    warmup_steps: int = 50
    coord_weight: float = 1.0
    threads: int = 1
    seed: int = 31
    ckpt_every_min: float = 4.0
    val_every_min: float = 10.0
    render_long_side: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def geometry(self) -> CropGeometry:
        return CropGeometry(self.size_px, self.factor, "endplates")

    def codec(self) -> UDPHeatmapCodec:
        h = self.size_px // self.stride
        return UDPHeatmapCodec((self.size_px, self.size_px), (h, h), sigma=self.sigma)


def jittered_frame(corners: np.ndarray, spacing_mm: tuple[float, float] | None, cfg: RefineConfig,
                   rng: np.random.Generator | None) -> VertebraFrame | None:
    """The crop frame from true (4, 2) corners, perturbed like a first-stage estimate (None: no frame)."""
    px_per_mm = 1.0 / float(np.mean(spacing_mm)) if spacing_mm else 1.0 / 0.2
    c = np.asarray(corners, dtype=np.float64)
    if rng is not None:
        c = c + np.clip(rng.normal(0, cfg.corner_sd_mm, size=c.shape), -2.5 * cfg.corner_sd_mm, 2.5 * cfg.corner_sd_mm) * px_per_mm
    fr = vertebra_frame(c, cfg.factor)
    if fr is None or rng is None:
        return fr
    shift = np.clip(rng.normal(0, cfg.shift_sd_mm, size=2), -2.5 * cfg.shift_sd_mm, 2.5 * cfg.shift_sd_mm) * px_per_mm
    t = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return VertebraFrame(fr.centre_px + shift, rot @ fr.rotation, fr.side_px * rng.uniform(1 - cfg.scale_frac, 1 + cfg.scale_frac))


def level_crops(sample: Sample, cfg: RefineConfig, rng: np.random.Generator | None
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Crops of every labelled level whose centre lies on the image.

    Returns a list of (input (1, S, S) float32 normalised, target (4, h, w) float32, corners in crop
    px (4, 2) with NaN for unlabelled/outside ones, image→crop affine (2, 3)).
    """
    codec = cfg.codec()
    geo = cfg.geometry()
    H, W = sample.display.shape
    out = []
    aug = AugmentConfig()
    display = sample.display
    if rng is not None:  # the first stage's landmark-aware variants: C2 synchondrosis, annotation marks
        display = apply_marks(display, sample.landmarks_px, rng, aug)
    for rows in CORNER_ROWS:
        corners = sample.landmarks_px[list(rows)]
        vis = sample.visibility[list(rows)]
        if not np.all(np.isfinite(corners)) or not np.any(vis > 0):
            continue
        ctr = corners.mean(axis=0)
        if not (0 <= ctr[0] <= W - 1 and 0 <= ctr[1] <= H - 1):
            continue
        fr = jittered_frame(corners, sample.spacing_mm, cfg, rng)
        if fr is None:
            continue
        M = frame_affine(fr, geo.size_px)
        crop = crop_display(display, M, geo.size_px, cfg.pad_value)
        if rng is not None:
            crop = apply_intensity(crop, rng, aug)
        pts = apply_affine(M, corners)
        S = geo.size_px
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= S - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= S - 1)
        v = np.where(inside, vis, 0)
        target = codec.encode(pts, v)
        out.append((normalize(crop, cfg.mean, cfg.std)[None].astype(np.float32), target,
                    np.where((v > 0)[:, None], pts, np.nan), M))
    return out


def _batch(samples: list[Sample], cfg: RefineConfig, rng: np.random.Generator | None):
    xs, ts, kps = [], [], []
    codec = cfg.codec()
    for s in samples:
        for x, t, kp, _ in level_crops(s, cfg, rng):
            xs.append(x)
            ts.append(t)
            kps.append(codec.input_to_heatmap(kp))
    if not xs:
        return None
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ts)),
            torch.from_numpy(np.stack(kps).astype(np.float32)))


def evaluate_refine(model: torch.nn.Module, samples: list[Sample], cfg: RefineConfig, seed: int = 12345) -> dict[str, float]:
    """Corner error (mm) after refinement vs. of the jittered start, visible corners, fixed jitter."""
    codec = cfg.codec()
    rng = np.random.default_rng(seed)
    model.eval()
    err_ref, err_init = [], []
    with torch.no_grad():
        for s in samples:
            # fixed jitter, no intensity change: draw the frame with rng, crop without apply_intensity
            sp = np.asarray(s.spacing_mm or (1.0, 1.0))
            for rows in CORNER_ROWS:
                corners = s.landmarks_px[list(rows)]
                vis = s.visibility[list(rows)]
                if not np.all(np.isfinite(corners)) or not np.any(vis == 2):
                    continue
                fr = jittered_frame(corners, s.spacing_mm, cfg, rng)
                if fr is None:
                    continue
                M = frame_affine(fr, cfg.size_px)
                crop = crop_display(s.display, M, cfg.size_px, cfg.pad_value)
                x = torch.from_numpy(normalize(crop, cfg.mean, cfg.std)[None, None].astype(np.float32))
                hm = model(x).numpy()
                p_crop, _ = codec.decode(hm[0])
                p_img = apply_affine(invert_affine(M), p_crop)
                ok = vis == 2
                d = (p_img - corners)[ok] * sp[::-1]
                err_ref.extend(np.hypot(d[:, 0], d[:, 1]))
                # start error: the frame centre offset (translation part of the jitter)
                d0 = (fr.centre_px - corners.mean(axis=0)) * sp[::-1]
                err_init.append(float(np.hypot(*d0)))
    model.train()
    e = np.array(err_ref)
    return {"mre_mm": float(e.mean()) if e.size else float("nan"),
            "median_mm": float(np.median(e)) if e.size else float("nan"),
            "sdr1_pct": float((e <= 1).mean() * 100) if e.size else float("nan"),
            "sdr2_pct": float((e <= 2).mean() * 100) if e.size else float("nan"),
            "start_centre_offset_mm": float(np.mean(err_init)) if err_init else float("nan"),
            "n_corners": int(e.size)}


def build_model(cfg: RefineConfig) -> LandmarkUNet:
    return LandmarkUNet(num_landmarks=4, widths=tuple(cfg.widths), out_stride=cfg.stride, head_width=max(cfg.widths[0], 16))


def train_refine(cfg: RefineConfig, source: Any, val_samples: list[Sample], out_dir: Path, resume: Path | None = None,
                 init: Path | None = None) -> Path:
    """Train until the wall-clock budget (or ``max_steps``) is spent; returns the final checkpoint.
    ``init`` seeds the weights of a fresh run (a shipped ``.torch.npz`` or a checkpoint; ignored
    when resuming)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    if init is not None and not (resume is not None and Path(resume).is_file()):
        load_init_weights(model, Path(init))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed_before, history, cursor = 0, 0.0, [], 0
    if resume is not None and Path(resume).is_file():
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed_before = int(ck["step"]), float(ck["elapsed_s"])
        history, cursor = json.loads(ck["history"]), int(ck.get("cursor", 0))
        logger.info("resumed from %s at step %d (%.1f min)", resume, step, elapsed_before / 60)
    budget_s = cfg.minutes * 60
    t0 = time.monotonic() - elapsed_before
    last_ckpt = last_val = time.monotonic()
    final = out_dir / "last.pt"
    n = len(source)
    order = np.random.default_rng(cfg.seed).permutation(n)

    def save(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "cursor": cursor,
                    "elapsed_s": time.monotonic() - t0, "config": json.dumps(asdict(cfg)), "history": json.dumps(history)}, tmp)
        tmp.replace(path)

    losses: list[float] = []
    model.train()
    while True:
        frac = (time.monotonic() - t0) / budget_s
        if cfg.max_steps:
            frac = max(frac, step / cfg.max_steps)
        if frac >= 1.0:
            break
        idx = [int(order[(cursor + j) % n]) for j in range(cfg.phantoms_per_batch)]
        cursor += cfg.phantoms_per_batch
        rng = np.random.default_rng([cfg.seed, step])
        batch = _batch([source[i] for i in idx], cfg, rng)
        if batch is None:
            continue
        x, t, kp = batch
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for gp in opt.param_groups:
            gp["lr"] = lr
        pred = model(x)
        loss = heatmap_loss(pred, t) + cfg.coord_weight * soft_argmax_loss(pred, kp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 20 == 0:
            logger.info("step %d  %.1f min  crops %d  lr %.2e  loss %.4f", step, (time.monotonic() - t0) / 60,
                        x.shape[0], lr, float(np.mean(losses[-20:])))
        now = time.monotonic()
        if now - last_ckpt > cfg.ckpt_every_min * 60:
            save(final)
            last_ckpt = now
        if val_samples and now - last_val > cfg.val_every_min * 60:
            m = evaluate_refine(model, val_samples, cfg)
            m.update(step=step, minutes=(now - t0) / 60)
            history.append(m)
            logger.info("val %s", json.dumps(m))
            save(final)
            last_val = time.monotonic()
    if val_samples:
        m = evaluate_refine(model, val_samples, cfg)
        m.update(step=step, minutes=(time.monotonic() - t0) / 60)
        history.append(m)
        logger.info("final val %s", json.dumps(m))
    save(final)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    return final


def load_refine_checkpoint(path: Path) -> tuple[LandmarkUNet, RefineConfig, dict[str, Any]]:
    """Model (eval mode) and config from a refinement checkpoint (tools only; weights_only load)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    raw = json.loads(ck["config"])
    raw["widths"] = tuple(raw["widths"])
    cfg = RefineConfig(**raw)
    model = build_model(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, {"step": ck["step"], "elapsed_s": ck["elapsed_s"], "history": json.loads(ck["history"])}
