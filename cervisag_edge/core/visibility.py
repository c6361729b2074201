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
    """Thresholds (K,) per landmark, plus the edge guard: margins (K,) in model-input px and edge
    thresholds (K,). A scalar margin or edge threshold applies to every landmark."""

    thresholds: tuple[float, ...]
    edge_margin_px: float | tuple[float, ...] = 0.0
    edge_threshold: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        if len(self.thresholds) != NUM_LANDMARKS:
            raise ValueError(f"visibility thresholds: {len(self.thresholds)} values, expected {NUM_LANDMARKS}")
        for name, field_name in (("edge_margin_px", "edge_margin_px"), ("edge_confidence_threshold", "edge_threshold")):
            raw = getattr(self, field_name)
            values = tuple(float(v) for v in raw) if isinstance(raw, (tuple, list, np.ndarray)) else (float(raw),) * NUM_LANDMARKS
            if len(values) != NUM_LANDMARKS:
                raise ValueError(f"codec.{name}: {len(values)} values, expected {NUM_LANDMARKS}")
            for v in values:
                if not np.isfinite(v) or v < 0:
                    raise ValueError(f"codec.{name} = {v!r}: expected a finite value >= 0")
            object.__setattr__(self, field_name, values)

    @property
    def threshold(self) -> float:
        """The most common (default) threshold, for messages."""
        return _mode(self.thresholds)

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
        thr = _per_landmark(codec, "confidence_threshold", "confidence_thresholds", default, _unit)
        margin = _per_landmark(codec, "edge_margin_px", "edge_margins_px", 0.0, _margin)
        edge = _per_landmark(codec, "edge_confidence_threshold", "edge_confidence_thresholds", 0.0, _unit)
        return cls(thr, margin, edge)

    def to_codec(self) -> dict[str, Any]:
        """The codec fields that give this rule back through :meth:`from_codec`."""
        out: dict[str, Any] = {}
        _put(out, "confidence_threshold", "confidence_thresholds", self.thresholds, 4)
        if max(self.edge_margin_px) > 0:
            _put(out, "edge_margin_px", "edge_margins_px", self.edge_margin_px, 3)
            _put(out, "edge_confidence_threshold", "edge_confidence_thresholds", self.edge_threshold, 4)
        return out

    def visible(self, conf: np.ndarray, found: np.ndarray, edge_px: np.ndarray) -> np.ndarray:
        """(K,) bool from confidences, the chain's ``found`` and :func:`edge_distance_input_px`
        (negative: outside the image, never visible)."""
        c = np.asarray(conf, dtype=np.float64)
        e = np.asarray(edge_px, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = np.asarray(found, dtype=bool) & (c >= np.asarray(self.thresholds)) & (e >= 0)
            near = e < np.asarray(self.edge_margin_px)
            return ok & (~near | (c >= np.asarray(self.edge_threshold)))

    def describe(self) -> str:
        s = f"confidence {self.threshold:g}"
        if max(self.edge_margin_px) > 0:
            m, t = _mode(self.edge_margin_px), _mode(self.edge_threshold)
            s += f" ({t:g} within {m:g} input px of the image edge"
            s += ", per group)" if len(set(self.edge_margin_px)) > 1 or len(set(self.edge_threshold)) > 1 else ")"
        return s


def _mode(values: tuple[float, ...]) -> float:
    vals, counts = np.unique(np.asarray(values), return_counts=True)
    return float(vals[int(np.argmax(counts))])


def _per_landmark(codec: Mapping[str, Any], key: str, per_key: str, default: float, check: Any) -> tuple[float, ...]:
    """(K,) values from ``codec[key]`` (all landmarks) with ``codec[per_key]`` {name: value} overrides."""
    base = check(codec.get(key, default), key)
    per = codec.get(per_key) or {}
    if not isinstance(per, Mapping):
        raise ValueError(f"codec.{per_key} = {per!r}: expected an object {{landmark name: value}}")
    unknown = sorted(set(per) - set(LANDMARK_NAMES))
    if unknown:
        raise ValueError(f"codec.{per_key}: unknown landmark(s) {', '.join(unknown)}")
    return tuple(check(per[n], f"{per_key}.{n}") if n in per else base for n in LANDMARK_NAMES)


def _put(out: dict[str, Any], key: str, per_key: str, values: tuple[float, ...], digits: int) -> None:
    """Write (K,) ``values`` as the most common one plus per-name overrides (inverse of :func:`_per_landmark`)."""
    base = _mode(values)
    out[key] = round(base, digits)
    per = {n: round(v, digits) for n, v in zip(LANDMARK_NAMES, values) if v != base}
    if per:
        out[per_key] = per


def _margin(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"codec.{name} = {value!r}: expected a number >= 0") from None
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"codec.{name} = {v!r}: expected a finite value >= 0")
    return v


def _unit(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"codec.{name} = {value!r}: expected a number in [0, 1]") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"codec.{name} = {v!r}: expected a number in [0, 1]")
    return v

