"""Adapting to a site's look without labels: three candidate methods and a label-free score.

* ``norm``: re-estimate the normalisation statistics. The manifest's ``mean``/``std`` are set so
  that the site's display pixels reach the network with the mean and SD the training phantoms had
  (a linear map, so only the manifest changes; the weights are the base model's).
* ``bn``: re-estimate the batch-norm statistics on the site's images (AdaBN: Li et al., "Revisiting
  Batch Normalization For Practical Domain Adaptation", 2016); weights otherwise unchanged.
* ``pseudo``: self-training on the base model's confident pseudo-labels: a landmark is kept when
  its confidence reaches the model's visibility threshold *and* the predictions on the horizontally
  flipped and on a down-scaled copy agree with it (flip and scale consistency); the network is then
  fine-tuned on those, with phantoms mixed in.

Every method produces a candidate model like the labelled path; :mod:`.pipeline` measures each
on labelled held-out studies when there are any (the gate) and keeps the best, else ranks them by
:func:`consistency_px` (flip disagreement, label-free) and leaves the choice unverified.
Shapes: display (H, W) in [0, 1]; input (1, H_in, W_in); landmarks (K, 2) px, K = 34.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ...core.landmarks import NUM_LANDMARKS
from ...errors import InputError
from ..training.data import Sample, make_example
from ..training.loop import TrainConfig

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("norm", "bn", "pseudo")
#: flip / scale agreement needed for a pseudo-label, in heatmap px
CONSISTENCY_HM_PX = 1.5
#: the scale of the second view of the scale-consistency check
SECOND_SCALE = 0.85
#: a pseudo-labelled study needs at least this many kept landmarks
MIN_PSEUDO_LANDMARKS = 8


def read_unlabelled(folder: str | Path, long_side: int, limit: int | None = None) -> list[Sample]:
    """The site's unlabelled images (any readable format, searched recursively) at training
    resolution, with no labels (visibility 0). A file that cannot be read is skipped with a warning
    (one line naming it); none readable is an :class:`InputError`."""
    from ...io import read_image
    from ...runner import collect_inputs

    files = collect_inputs([str(folder)])
    files = [f for f in files if not f.endswith(".json")][: limit or None]
    out: list[Sample] = []
    for f in files:
        try:
            img = read_image(f)
        except Exception as exc:  # noqa: BLE001 - one bad study never stops the others
            logger.warning("%s: skipped (%s)", f, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        H, W = img.display.shape
        s = long_side / max(H, W)
        small = cv2.resize(img.display, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)
        sp = img.pixel_spacing_mm
        out.append(Sample(small.astype(np.float32), np.full((NUM_LANDMARKS, 2), np.nan), np.zeros(NUM_LANDMARKS, dtype=np.int64),
                          (sp[0] / s, sp[1] / s) if sp else None, str(f)))
    if not out:
        raise InputError(f"{folder}: no readable image among {len(files)} file(s) for unlabelled adaptation")
    return out


def normalisation_for(site: Sequence[Sample], reference: Sequence[Sample], cfg: TrainConfig) -> tuple[float, float]:
    """(mean, std) for the manifest so that site pixels are normalised like the reference's were.

    With reference display mean/SD (m_r, s_r) and site (m_s, s_s): the network saw
    ``(p_r - cfg.mean) / cfg.std``; the site pixel is first mapped to ``(p - m_s) s_r / s_s + m_r``,
    which folds into ``(p - mean) / std`` with ``std = cfg.std s_s / s_r`` and
    ``mean = m_s - (m_r - cfg.mean) s_s / s_r``.
    """
    from .sitedata import display_stats

    m_s, s_s = display_stats(site)
    m_r, s_r = display_stats(reference)
    if s_s <= 1e-6 or s_r <= 1e-6:
        raise InputError(f"display SD {s_s:.3g} (site) / {s_r:.3g} (reference): images without contrast")
    std = cfg.std * s_s / s_r
    mean = m_s - (m_r - cfg.mean) * s_s / s_r
    logger.info("normalisation: site mean %.3f sd %.3f, reference mean %.3f sd %.3f -> manifest mean %.4f std %.4f",
                m_s, s_s, m_r, s_r, mean, std)
    return float(mean), float(std)


def _inputs(samples: Sequence[Sample], cfg: TrainConfig) -> np.ndarray:
    codec = cfg.codec()
    return np.stack([make_example(s, codec, cfg.mean, cfg.std, cfg.pad_value, None)[0] for s in samples]).astype(np.float32)


def recalibrate_batchnorm(model: Any, samples: Sequence[Sample], cfg: TrainConfig, batch: int = 8) -> Any:
    """AdaBN: replace every BatchNorm's running mean/var by the site's (cumulative average over all
    site images); returns the model in eval mode."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for start in range(0, len(samples), batch):
            model(torch.from_numpy(_inputs(samples[start:start + batch], cfg)))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


def _predict(model: Any, x: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks (N, K, 2) in input px and confidences (N, K) of a batch (N, 1, H_in, W_in)."""
    import torch

    with torch.no_grad():
        hm = model.eval()(torch.from_numpy(np.ascontiguousarray(x))).float().numpy()
    return cfg.codec().decode(hm)


def _views(model: Any, samples: Sequence[Sample], cfg: TrainConfig) -> tuple[np.ndarray, ...]:
    """(plain, flipped-back, scaled-back predictions (N, K, 2) in input px, plain confidences (N, K))."""
    x = _inputs(samples, cfg)
    W_in = x.shape[-1]
    p0, c0 = _predict(model, x, cfg)
    p1, _ = _predict(model, x[..., ::-1], cfg)
    p1 = np.stack([W_in - 1 - p1[..., 0], p1[..., 1]], axis=-1)
    c = (W_in - 1) / 2.0
    M = np.array([[SECOND_SCALE, 0, c - SECOND_SCALE * c], [0, SECOND_SCALE, c - SECOND_SCALE * c]])
    pad = (cfg.pad_value - cfg.mean) / cfg.std
    xs = np.stack([cv2.warpAffine(xi[0], M, (W_in, W_in), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=pad)[None] for xi in x]).astype(np.float32)
    p2, _ = _predict(model, xs, cfg)
    p2 = (p2 - c) / SECOND_SCALE + c
    return p0, p1, p2, c0


def consistency_px(model: Any, samples: Sequence[Sample], cfg: TrainConfig, threshold: float) -> dict[str, float]:
    """Label-free score: mean flip disagreement (input px) of the landmarks found with confidence
    >= ``threshold``, and the share of landmarks found. Lower disagreement is better."""
    p0, p1, _, c0 = _views(model, samples, cfg)
    found = c0 >= threshold
    d = np.hypot(*(p0 - p1).transpose(2, 0, 1))
    return {"flip_disagreement_px": float(d[found].mean()) if found.any() else float("inf"),
            "found_percent": float(found.mean() * 100)}


def pseudo_labels(model: Any, samples: Sequence[Sample], cfg: TrainConfig, threshold: float) -> tuple[list[Sample], dict[str, Any]]:
    """The samples with the base model's confident, flip- and scale-consistent landmarks as labels
    (v = 2; the rest v = 0); samples with fewer than :data:`MIN_PSEUDO_LANDMARKS` are dropped."""
    from ...engine.preprocess import letterbox_geometry

    tol = CONSISTENCY_HM_PX * cfg.stride
    out: list[Sample] = []
    kept_total = 0
    for start in range(0, len(samples), 8):
        chunk = samples[start:start + 8]
        p0, p1, p2, c0 = _views(model, chunk, cfg)
        ok = ((c0 >= threshold) & (np.hypot(*(p0 - p1).transpose(2, 0, 1)) <= tol)
              & (np.hypot(*(p0 - p2).transpose(2, 0, 1)) <= tol))
        for s, p, keep in zip(chunk, p0, ok):
            if keep.sum() < MIN_PSEUDO_LANDMARKS:
                continue
            H, W = s.display.shape
            _, tf = letterbox_geometry((W, H), (cfg.input_size, cfg.input_size))
            pts = tf.to_original(p)
            pts[~keep] = np.nan
            out.append(Sample(s.display, pts, np.where(keep, 2, 0).astype(np.int64), s.spacing_mm, s.key))
            kept_total += int(keep.sum())
    info = {"n_studies": len(samples), "n_pseudo_labelled": len(out), "n_landmarks": kept_total,
            "rule": f"confidence >= {threshold:g}, flip and x{SECOND_SCALE:g}-scale predictions within "
                    f"{CONSISTENCY_HM_PX:g} heatmap px"}
    logger.info("pseudo-labels: %s", info)
    return out, info


@dataclass(frozen=True)
class UnlabelledCandidate:
    """One method's result before export: the network, optional normalisation, what was done."""

    method: str
    model: Any
    mean: float | None
    std: float | None
    info: dict[str, Any]
