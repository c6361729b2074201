"""The training loop (PyTorch CPU): time-budgeted cosine schedule, checkpoints, resume, log.

Checkpoints are written with ``torch.save`` for the offline tools only; the runtime never
unpickles anything (it loads ONNX through a manifest).
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
from torch.utils.data import DataLoader, Dataset

from ...engine.codec import UDPHeatmapCodec
from .data import AugmentConfig, Sample, make_example
from ...engine.backends.torch_net import LandmarkUNet

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    input_size: int = 384
    stride: int = 4
    sigma: float = 2.0
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    mean: float = 0.5
    std: float = 0.25
    pad_value: float = 0.0
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    minutes: float = 90.0
    max_steps: int = 0  # 0 = time budget only
    warmup_steps: int = 100
    coord_weight: float = 1.0
    threads: int = 2
    workers: int = 1
    seed: int = 0
    val_every_min: float = 10.0
    ckpt_every_min: float = 5.0
    render_long_side: int = 448
    head_width: int = 96
    #: validate every this many steps as well (0: by ``val_every_min`` only)
    val_every_steps: int = 0
    #: early stopping: stop after this many validations without a better MRE (0: never)
    patience: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def codec(self) -> UDPHeatmapCodec:
        n, h = self.input_size, self.input_size // self.stride
        return UDPHeatmapCodec((n, n), (h, h), sigma=self.sigma)


class _TorchSet(Dataset):
    def __init__(self, source: Any, cfg: TrainConfig, train: bool) -> None:
        self.source, self.cfg, self.train = source, cfg, train
        self.codec = cfg.codec()
        self.aug = AugmentConfig()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        s: Sample = self.source[i]
        rng = np.random.default_rng([self.cfg.seed, i, torch.initial_seed() % (2**31)]) if self.train else None
        x, t, kp = make_example(s, self.codec, self.cfg.mean, self.cfg.std, self.cfg.pad_value, rng, self.aug)
        kp_hm = self.codec.input_to_heatmap(kp).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(kp_hm)


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, fg_weight: float = 20.0) -> torch.Tensor:
    """Foreground-weighted MSE (× 100): pixels weigh ``1 + fg_weight · target``.

    Gaussian peaks cover well under 1 % of a heatmap, so a plain MSE is minimised early by
    predicting zeros everywhere (observed: a first 20-minute run stayed at chance); the weight
    lifts the peaks while every background pixel still counts, which keeps stray maxima down
    (a foreground/background-balanced variant let outliers win the argmax).
    """
    return (((pred - target) ** 2) * (1.0 + fg_weight * target)).mean() * 100.0


def soft_argmax_loss(pred: torch.Tensor, keypoints_hm: torch.Tensor, beta: float = 40.0) -> torch.Tensor:
    """L1 between the soft-argmax of ``beta · heatmap`` and the target position (heatmap px / size).

    A global localisation signal from the first step (Nibali et al., "Numerical Coordinate
    Regression with Convolutional Neural Networks", 2018), complementing the heatmap loss, which
    only sees the pixels near each target. ``keypoints_hm`` (N, K, 2) is NaN where the landmark is
    outside the image; those are skipped.
    """
    N, K, h, w = pred.shape
    prob = torch.softmax(pred.reshape(N, K, h * w) * beta, dim=-1).reshape(N, K, h, w)
    xs = torch.arange(w, dtype=pred.dtype)
    ys = torch.arange(h, dtype=pred.dtype)
    ex = (prob.sum(dim=2) * xs).sum(dim=-1)
    ey = (prob.sum(dim=3) * ys).sum(dim=-1)
    valid = torch.isfinite(keypoints_hm).all(dim=-1)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    kp = torch.nan_to_num(keypoints_hm)
    err = (ex - kp[..., 0]).abs() / w + (ey - kp[..., 1]).abs() / h
    return err[valid].mean()


def evaluate(model: torch.nn.Module, samples: list[Sample], cfg: TrainConfig) -> dict[str, float]:
    """Radial error (mm) of visible landmarks on un-augmented samples, via the runtime codec."""
    codec = cfg.codec()
    model.eval()
    errs, errs_hidden, confs_vis, confs_hid = [], [], [], []
    with torch.no_grad():
        for start in range(0, len(samples), 8):
            chunk = samples[start : start + 8]
            xs, pts = [], []
            for s in chunk:
                x, _, p = make_example(s, codec, cfg.mean, cfg.std, cfg.pad_value, None)
                xs.append(x)
                pts.append(p)
            hm = model(torch.from_numpy(np.stack(xs)).contiguous(memory_format=torch.channels_last)).float().numpy()
            pred, conf = codec.decode(hm)
            for s, p_true, p_pred, c in zip(chunk, pts, pred, conf):
                from ...engine.preprocess import letterbox_geometry

                H, W = s.display.shape
                _, tf = letterbox_geometry((W, H), codec.input_size)
                d = tf.to_original(p_pred) - tf.to_original(p_true)
                sp = s.spacing_mm or (1.0, 1.0)
                e = np.hypot(d[:, 0] * sp[1], d[:, 1] * sp[0])
                vis = s.visibility
                ok = np.isfinite(e)
                errs.extend(e[ok & (vis == 2)])
                errs_hidden.extend(e[ok & (vis == 1)])
                confs_vis.extend(c[ok & (vis == 2)])
                confs_hid.extend(c[ok & (vis == 1)])
    model.train()
    e = np.array(errs)
    return {
        "mre_mm": float(e.mean()) if e.size else float("nan"),
        "median_mm": float(np.median(e)) if e.size else float("nan"),
        "sdr2_pct": float((e <= 2).mean() * 100) if e.size else float("nan"),
        "sdr3_pct": float((e <= 3).mean() * 100) if e.size else float("nan"),
        "sdr4_pct": float((e <= 4).mean() * 100) if e.size else float("nan"),
        "mre_hidden_mm": float(np.mean(errs_hidden)) if errs_hidden else float("nan"),
        "conf_visible_median": float(np.median(confs_vis)) if confs_vis else float("nan"),
        "conf_hidden_median": float(np.median(confs_hid)) if confs_hid else float("nan"),
    }


def load_init_weights(model: torch.nn.Module, path: Path) -> None:
    """Start from trained weights: a shipped ``.torch.npz`` (``allow_pickle=False``) or a checkpoint.

    Fine-tuning from the previous model reuses what it learned about bone edges; the new data
    then teaches level identity and framing. Shapes must match the configured network.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(state)
    logger.info("initial weights from %s", path)


def train(cfg: TrainConfig, train_source: Any, val_samples: list[Sample], out_dir: Path, resume: Path | None = None,
          init: Path | None = None) -> Path:
    """Train until the time budget (or ``max_steps``) is spent, or early stopping; returns the
    final checkpoint path (``last.pt``).

    ``init`` seeds the weights of a fresh run (ignored when resuming, which restores everything).
    Every validation whose visible-landmark MRE beats the best so far writes ``best.pt``; with
    ``cfg.patience`` the run stops after that many validations without improvement.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    model = LandmarkUNet(widths=tuple(cfg.widths), out_stride=cfg.stride, head_width=cfg.head_width).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed_before, history = 0, 0.0, []
    early = {"best_mre_mm": math.inf, "best_step": -1, "bad": 0, "stopped": False}
    if resume is not None:
        ck = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, elapsed_before = int(ck["step"]), float(ck["elapsed_s"])
        history = json.loads(ck["history"])
        early.update(json.loads(ck.get("early", "{}")))
        logger.info("resumed from %s at step %d (%.1f min)", resume, step, elapsed_before / 60)
    elif init is not None:
        load_init_weights(model, init)
    ds = _TorchSet(train_source, cfg, train=True)
    if len(ds) < cfg.batch_size:
        raise ValueError(f"{len(ds)} training samples, fewer than one batch of {cfg.batch_size} (lower the batch size)")
    budget_s = cfg.minutes * 60
    t0 = time.monotonic() - elapsed_before
    last_ckpt = last_val = time.monotonic()
    final = out_dir / "last.pt"

    def save(path: Path) -> None:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "elapsed_s": time.monotonic() - t0, "config": json.dumps(asdict(cfg)), "history": json.dumps(history),
                    "early": json.dumps(early)}, path)

    def validate() -> None:
        m = evaluate(model, val_samples, cfg)
        m.update(step=step, minutes=(time.monotonic() - t0) / 60)
        history.append(m)
        logger.info("val %s", json.dumps(m))
        if m["mre_mm"] < early["best_mre_mm"]:
            early.update(best_mre_mm=m["mre_mm"], best_step=step, bad=0)
            save(out_dir / "best.pt")
        else:
            early["bad"] += 1
            if cfg.patience and early["bad"] >= cfg.patience:
                early["stopped"] = True
                logger.info("early stop at step %d: no better validation MRE since step %d (%.3f mm)", step,
                            early["best_step"], early["best_mre_mm"])

    if val_samples and cfg.val_every_steps and step == 0:
        validate()  # the starting weights are a candidate too: fine-tuning must beat them
    done = bool(early["stopped"])
    epoch = 0
    losses: list[float] = []
    while not done:
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=g, num_workers=cfg.workers,
                            drop_last=True, persistent_workers=False)
        for x, t, kp_hm in loader:
            frac = (time.monotonic() - t0) / budget_s
            if cfg.max_steps:
                frac = max(frac, step / cfg.max_steps)
            if frac >= 1.0:
                done = True
                break
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
            for gp in opt.param_groups:
                gp["lr"] = lr
            pred = model(x.contiguous(memory_format=torch.channels_last))
            loss = heatmap_loss(pred, t) + cfg.coord_weight * soft_argmax_loss(pred, kp_hm)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            if step % 20 == 0:
                logger.info("step %d  %.1f min  lr %.2e  loss %.4f", step, (time.monotonic() - t0) / 60, lr, float(np.mean(losses[-20:])))
            now = time.monotonic()
            if now - last_ckpt > cfg.ckpt_every_min * 60:
                save(final)
                last_ckpt = now
            if val_samples and (now - last_val > cfg.val_every_min * 60
                                or (cfg.val_every_steps and step % cfg.val_every_steps == 0)):
                validate()
                last_val = time.monotonic()
                if early["stopped"]:
                    done = True
                    break
        epoch += 1
    if val_samples and (not history or history[-1]["step"] != step):
        validate()
    save(final)
    (out_dir / "history.json").write_text(json.dumps(history, indent=2))
    return final


def load_checkpoint_model(path: Path) -> tuple[LandmarkUNet, TrainConfig, dict[str, Any]]:
    """Model (eval mode) and config from a training checkpoint (tools only; weights_only load)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    raw = json.loads(ck["config"])
    raw["widths"] = tuple(raw["widths"])
    cfg = TrainConfig(**raw)
    model = LandmarkUNet(widths=cfg.widths, out_stride=cfg.stride, head_width=cfg.head_width)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, {"step": ck["step"], "elapsed_s": ck["elapsed_s"], "history": json.loads(ck["history"])}
