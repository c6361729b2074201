"""When a decoded landmark counts as visible: confidence thresholds and the frame-edge guard.

Shapes: ``pts`` (K, 2) original pixels (x, y), pixel-centre convention; ``conf`` (K,) heatmap
peak heights in [0, 1]; ``found`` (K,) bool (the level chain kept the landmark); returns
``visible`` (K,) bool. K = 34.

A landmark is visible when the chain found it, it lies inside the image, and its confidence
reaches its threshold (the manifest's ``codec.confidence_threshold``, or a per-landmark value
from ``codec.confidence_thresholds``). The **edge guard** adds one rule: a landmark decoded
within ``codec.edge_margin_px`` model-input pixels of the image border must also reach
``codec.edge_confidence_threshold``. A vertebra cut by the film's edge gives a peak at the
border for corners that lie outside it; this is where the false "visible" answers sit
(docs/uncertainty.md, visibility). The values are calibrated per model on held-out data by
``tools/calibrate_visibility.py``, never written in code.

An explicit threshold (``Measurer(confidence_threshold=…)``, ``--confidence-threshold``) is a
plain single threshold: no per-landmark values, no edge guard. That is what calibration tools
use to see every raw peak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .landmarks import LANDMARK_NAMES, NUM_LANDMARKS

__all__ = ["VisibilityRule", "edge_distance_input_px"]


def edge_distance_input_px(pts: np.ndarray, size_px: tuple[int, int], scale: float) -> np.ndarray:
    """(K,) distance of each (K, 2) original-pixel point to the nearest image border, in model
    input pixels (original pixels × the letterbox ``scale``); negative outside, NaN for NaN."""
    w, h = size_px
    p = np.asarray(pts, dtype=np.float64)
    d = np.minimum.reduce([p[:, 0] + 0.5, p[:, 1] + 0.5, w - 0.5 - p[:, 0], h - 0.5 - p[:, 1]])
    return d * float(scale)


@dataclass(frozen=True)
class VisibilityRule:
    """Thresholds (K,) per landmark, plus the edge guard (margin in model-input px, threshold)."""

    thresholds: tuple[float, ...]
    edge_margin_px: float = 0.0
    edge_threshold: float = 0.0

    def __post_init__(self) -> None:
        if len(self.thresholds) != NUM_LANDMARKS:
            raise ValueError(f"visibility thresholds: {len(self.thresholds)} values, expected {NUM_LANDMARKS}")
        for name, value in (("edge_margin_px", self.edge_margin_px), ("edge_confidence_threshold", self.edge_threshold)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"codec.{name} = {value!r}: expected a finite value >= 0")

    @property
    def threshold(self) -> float:
        """The most common (default) threshold, for messages."""
        vals, counts = np.unique(np.asarray(self.thresholds), return_counts=True)
        return float(vals[int(np.argmax(counts))])

    @classmethod
    def plain(cls, threshold: float) -> "VisibilityRule":
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"confidence_threshold {threshold} must lie in [0, 1]")
        return cls((float(threshold),) * NUM_LANDMARKS)

    @classmethod
    def from_codec(cls, codec: Mapping[str, Any], override: float | None = None, default: float = 0.3) -> "VisibilityRule":
        """The manifest codec's rule, or a plain one when ``override`` is given."""
        if override is not None:
            return cls.plain(override)
        base = _unit(codec.get("confidence_threshold", default), "confidence_threshold")
        per = codec.get("confidence_thresholds") or {}
        if not isinstance(per, Mapping):
            raise ValueError(f"codec.confidence_thresholds = {per!r}: expected an object {{landmark name: threshold}}")
        unknown = sorted(set(per) - set(LANDMARK_NAMES))
        if unknown:
            raise ValueError(f"codec.confidence_thresholds: unknown landmark(s) {', '.join(unknown)}")
        thr = tuple(_unit(per[n], f"confidence_thresholds.{n}") if n in per else base for n in LANDMARK_NAMES)
        margin = float(codec.get("edge_margin_px", 0.0))
        edge = _unit(codec.get("edge_confidence_threshold", 0.0), "edge_confidence_threshold")
        return cls(thr, margin, edge)

    def to_codec(self) -> dict[str, Any]:
        """The codec fields that give this rule back through :meth:`from_codec`."""
        base = self.threshold
        out: dict[str, Any] = {"confidence_threshold": round(base, 4)}
        per = {n: round(t, 4) for n, t in zip(LANDMARK_NAMES, self.thresholds) if t != base}
        if per:
            out["confidence_thresholds"] = per
        if self.edge_margin_px > 0:
            out["edge_margin_px"] = round(float(self.edge_margin_px), 3)
            out["edge_confidence_threshold"] = round(float(self.edge_threshold), 4)
        return out

    def visible(self, conf: np.ndarray, found: np.ndarray, edge_px: np.ndarray) -> np.ndarray:
        """(K,) bool from confidences, the chain's ``found`` and :func:`edge_distance_input_px`
        (negative: outside the image, never visible)."""
        c = np.asarray(conf, dtype=np.float64)
        e = np.asarray(edge_px, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = np.asarray(found, dtype=bool) & (c >= np.asarray(self.thresholds)) & (e >= 0)
            near = e < self.edge_margin_px
            return ok & (~near | (c >= self.edge_threshold))

    def describe(self) -> str:
        s = f"confidence {self.threshold:g}"
        if self.edge_margin_px > 0:
            s += f" ({self.edge_threshold:g} within {self.edge_margin_px:g} input px of the image edge)"
        return s


def _unit(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"codec.{name} = {value!r}: expected a number in [0, 1]") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"codec.{name} = {v!r}: expected a number in [0, 1]")
    return v

