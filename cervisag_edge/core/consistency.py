"""Shape consistency: a vertebral corner that does not fit the others is not reported visible
(pure numpy, no I/O).

Shape legend: K = 34 landmarks; ``pts_px`` (K, 2) original px (x, y); ``visible`` (K,) bool;
returns ``rejected`` (K,) bool and the (K,) d² of the last pass.

The heatmap peak of a corner sometimes sits on the neighbouring vertebra's corner, one body
height away (C6_AI on C7's, C7_AS on T1's near the shoulders), with a confident peak. That one
corner makes the body count as the wrong level and bends the Cobb angle it enters. The
statistical shape model (:mod:`cervisag_edge.core.shape_model`) predicts each visible corner from
all the other visible landmarks; :meth:`ShapeModel.loo_d2` gives the squared Mahalanobis distance
d² of the corner from that prediction, with an isotropic observation noise of
``observation_sd_mm`` per landmark. A fitting corner has d² ~ χ²₂. While the largest d² among the
vertebral corners C2…T1 exceeds ``max_d2`` (default χ²₂ at 0.999, 13.8) that corner is rejected
and the rest are scored again, at most ``max_rejections`` times and never below
``min_observed`` visible landmarks. A rejected corner is reported not visible, so the parameters
it enters are estimated (flagged) instead of measured from it. The skull, C1 and dens landmarks
take part in the prediction but are never rejected: they move with the head posture.

The rule and its numbers live in the model manifest (``extra.uncertainty.consistency``, written
by ``tools/calibrate_uncertainty.py``, which also reports how many correct corners it rejects on
the calibration phantoms). Method and figures: ``docs/levels.md`` (shape consistency).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .landmarks import NUM_LANDMARKS, VERTEBRAE, vertebra_corner_indices

__all__ = ["ConsistencyCheck", "CHI2_2_999"]

#: χ²₂ quantile at 0.999: −2 ln(0.001).
CHI2_2_999 = float(-2.0 * np.log(1e-3))
_CORNERS = np.zeros(NUM_LANDMARKS, dtype=bool)
_CORNERS[[i for v in VERTEBRAE for i in vertebra_corner_indices(v)]] = True


@dataclass(frozen=True)
class ConsistencyCheck:
    """The rule (module docstring) with the shape model it scores against."""

    model: Any
    max_d2: float = CHI2_2_999
    observation_sd_mm: float = 1.0
    #: mm per px assumed for an image without a pixel spacing (a radiograph's typical detector pitch)
    fallback_spacing_mm: float = 0.1
    max_rejections: int = 3
    min_observed: int = 6

    def __post_init__(self) -> None:
        for name in ("max_d2", "observation_sd_mm", "fallback_spacing_mm"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"uncertainty.consistency.{name} = {v!r}: expected a finite number > 0")
        if self.max_rejections < 0 or self.min_observed < 3:
            raise ValueError(f"uncertainty.consistency: max_rejections {self.max_rejections} (>= 0) and "
                             f"min_observed {self.min_observed} (>= 3) invalid")

    @classmethod
    def from_dict(cls, model: Any, doc: Mapping[str, Any]) -> "ConsistencyCheck":
        """From the manifest entry ``extra.uncertainty.consistency`` (unknown keys ignored)."""
        known = ("max_d2", "observation_sd_mm", "fallback_spacing_mm", "max_rejections", "min_observed")
        kw: dict[str, Any] = {}
        for k in known:
            if k in doc:
                try:
                    kw[k] = int(doc[k]) if k in ("max_rejections", "min_observed") else float(doc[k])
                except (TypeError, ValueError):
                    raise ValueError(f"uncertainty.consistency.{k} = {doc[k]!r}: expected a number") from None
        return cls(model, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"max_d2": round(float(self.max_d2), 4), "observation_sd_mm": float(self.observation_sd_mm),
                "fallback_spacing_mm": float(self.fallback_spacing_mm), "max_rejections": int(self.max_rejections),
                "min_observed": int(self.min_observed)}

    def check(self, pts_px: np.ndarray, visible: np.ndarray, spacing_mm: tuple[float, float] | None,
              facing_hint: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rejected (K,) bool, d² (K,))`` for the (K, 2) ``pts_px`` reported ``visible``;
        ``spacing_mm`` (row, col) or None (then :attr:`fallback_spacing_mm`); ``facing_hint`` ±1
        (:func:`~cervisag_edge.core.parameters.facing_hint`) or None. Nothing is rejected when the
        facing cannot be told or the geometry is degenerate."""
        vis = np.asarray(visible, dtype=bool) & np.all(np.isfinite(pts_px), axis=1)
        rejected = np.zeros(NUM_LANDMARKS, dtype=bool)
        d2 = np.full(NUM_LANDMARKS, np.nan)
        row, col = spacing_mm if spacing_mm else (self.fallback_spacing_mm,) * 2
        sd_px = self.observation_sd_mm / np.array([col, row], dtype=np.float64)  # (x, y)
        cov = np.broadcast_to(np.diag(sd_px**2), (NUM_LANDMARKS, 2, 2))
        for _ in range(self.max_rejections + 1):
            if int(vis.sum()) <= self.min_observed:
                break
            try:
                d2 = self.model.loo_d2(pts_px, cov, vis, facing_hint)
            except (ValueError, np.linalg.LinAlgError):  # facing undecidable, degenerate geometry
                break
            scored = np.where(vis & _CORNERS, d2, -np.inf)
            worst = int(np.argmax(scored))
            if not scored[worst] > self.max_d2 or int(rejected.sum()) >= self.max_rejections:
                break
            rejected[worst] = True
            vis[worst] = False
        return rejected, d2
