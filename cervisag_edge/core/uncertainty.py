"""Per-landmark covariance from the heatmaps, its calibration, and parameter intervals.

Pure numpy, no I/O. Method and calibration: ``docs/uncertainty.md``.

Shape legend: K = 34 landmarks, h × w heatmap (96 × 96 for a 384 input at stride 4),
P = 6 parameters. ``heatmaps`` (K, h, w); ``coords_hm`` (K, 2) heatmap px; covariances
(K, 2, 2) in heatmap px², original px² or mm² as their names say; points (K, 2) (x, y).

Landmark model (all numbers from the model manifest's ``extra["uncertainty"]``, never from code)::

    C_k   = second central moments of the peak region of heatmap k (values above half the
            peak, within ``PATCH_RADIUS_HM`` px), mapped to mm through the UDP and letterbox maps
    Σ_k   = g(d_k)² · (scale² · C_k / max(conf_k, confidence_floor)^confidence_power + floor_mm² · I)   (measured)
            (``refined_scale`` instead of ``scale`` for a corner the second stage moved)
    g(d)  = 1 + (edge_scale − 1) · max(0, 1 − d / edge_mm): the edge term, d_k the landmark's
            distance to the nearest image border in mm (1 everywhere when ``edge_mm`` is 0)
    Σ_k   = estimated_scale² · Σ_k                                  (estimated from a weak peak)
    Σ_k   = (extrapolated_sd_mm · steps)² · I + Σ_k of the level it was extrapolated from
    Σ_H   = shape_cov_scale² · conditional covariance of the shape model + mean Σ of the visible
            landmarks (estimated, with a shape model; jointly over the hidden corners)

Parameter model: the landmark Gaussians are pushed through the six parameters
(:mod:`cervisag_edge.core.propagation`, Monte Carlo with a fixed seed or linearisation); the resulting
SD is multiplied by the parameter's ``parameter_scale`` (or ``parameter_scale_estimated`` when any
of its landmarks is estimated) and the 95 % interval is value ± 1.96 · SD.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from .parameters import PARAMETER_NAMES
from .propagation import Z95, propagate_linear, propagate_mc

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.codec import UDPHeatmapCodec
    from .measurement import Measurement
    from .parameters import SagittalParameters
    from ..engine.preprocess import LetterboxTransform

logger = logging.getLogger(__name__)

#: Half size of the heatmap patch whose moments give the spread (heatmap px).
PATCH_RADIUS_HM = 4
#: Key of the calibration in ``ModelManifest.extra``.
MANIFEST_KEY = "uncertainty"
_MIN_CONF = 0.05
#: Pixel size assumed for the mm floor when an image has no spacing (its intervals of angles and
#: CCI are still computed; millimetre values are null).
NOMINAL_SPACING_MM = 0.14


@dataclass(frozen=True)
class UncertaintyCalibration:
    """Calibration of the landmark and parameter uncertainty (see the module docstring).

    ``calibrated`` is False for the built-in defaults (a manifest without ``extra["uncertainty"]``);
    outputs then still carry intervals, and the records say so in a warning.
    """

    scale: float = 1.0
    floor_mm: float = 0.3
    confidence_power: float = 0.0
    confidence_floor: float = 0.5
    estimated_scale: float = 3.0
    extrapolated_sd_mm: float = 2.0
    estimate_min_confidence: float = 0.15
    shape_cov_scale: float = 1.0
    #: ``scale`` for corners the second stage refined (None: ``scale``); their errors are smaller
    #: than the first-stage heatmap spread says
    refined_scale: float | None = None
    #: the edge term: landmarks closer than ``edge_mm`` to the image border have their SD
    #: multiplied by up to ``edge_scale`` (at the border; linear in between). 0: no edge term
    edge_mm: float = 0.0
    edge_scale: float = 1.0
    parameter_scale: Mapping[str, float] = field(default_factory=lambda: {k: 1.0 for k in PARAMETER_NAMES})
    parameter_scale_estimated: Mapping[str, float] = field(default_factory=lambda: {k: 1.0 for k in PARAMETER_NAMES})
    method: str = "mc"
    n_samples: int = 256
    seed: int = 0
    calibrated: bool = False
    source: str = "built-in defaults (uncalibrated)"
    #: :class:`cervisag_edge.core.shape_model.ShapeModel` for estimated landmarks (None: the
    #: neighbour extrapolation); named with its sha256 by ``extra["uncertainty"]["shape_model"]``.
    shape_model: Any = field(default=None, compare=False, repr=False)
    #: the shape-consistency rule (:class:`cervisag_edge.core.consistency.ConsistencyCheck` fields),
    #: applied with the shape model; None: no check
    consistency: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.consistency is not None:
            if not isinstance(self.consistency, Mapping):
                raise ValueError(f"uncertainty calibration: consistency {self.consistency!r} invalid, expected an object")
            from .consistency import ConsistencyCheck

            ConsistencyCheck.from_dict(None, self.consistency)  # ValueError names a bad value
        for name in ("scale", "floor_mm", "estimated_scale", "extrapolated_sd_mm", "shape_cov_scale", "edge_mm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"uncertainty calibration: {name} {v!r} invalid, expected a finite number >= 0")
        if self.refined_scale is not None and not (np.isfinite(self.refined_scale) and self.refined_scale >= 0):
            raise ValueError(f"uncertainty calibration: refined_scale {self.refined_scale!r} invalid, expected a finite number >= 0")
        if not (np.isfinite(self.edge_scale) and self.edge_scale >= 1.0):
            raise ValueError(f"uncertainty calibration: edge_scale {self.edge_scale!r} invalid, expected a finite number >= 1")
        if self.method not in ("mc", "linear"):
            raise ValueError(f"uncertainty calibration: method {self.method!r} invalid, expected 'mc' or 'linear'")
        if self.n_samples < 16:
            raise ValueError(f"uncertainty calibration: n_samples {self.n_samples} invalid, expected >= 16")
        for name in ("parameter_scale", "parameter_scale_estimated"):
            m = {k: float(getattr(self, name).get(k, 1.0)) for k in PARAMETER_NAMES}
            bad = {k: v for k, v in m.items() if not (np.isfinite(v) and v > 0)}
            if bad:
                raise ValueError(f"uncertainty calibration: {name} {bad} invalid, expected numbers > 0")
            object.__setattr__(self, name, m)

    @classmethod
    def from_manifest(cls, manifest: Any) -> "UncertaintyCalibration":
        """From ``manifest.extra["uncertainty"]`` (a :class:`ModelManifest` or its ``extra`` mapping);
        the defaults when absent. Unknown keys are ignored (newer calibration tools may add some).
        A ``shape_model`` entry is loaded and hash-checked (beside the manifest; ``engines/`` for a
        bare mapping): a missing or tampered file raises ``ModelError`` naming it."""
        from .shape_model import shape_model_for_manifest

        extra = getattr(manifest, "extra", manifest) or {}
        raw = extra.get(MANIFEST_KEY) if isinstance(extra, Mapping) else None
        if not raw:
            return cls()
        model_path = getattr(manifest, "model_path", None)
        shape = shape_model_for_manifest(raw.get("shape_model"), Path(model_path).parent if model_path else None)
        known = {f.name for f in dataclasses.fields(cls)} - {"calibrated", "source", "shape_model"}
        kwargs = {k: v for k, v in raw.items() if k in known}
        for k in ("scale", "floor_mm", "confidence_power", "confidence_floor", "estimated_scale", "extrapolated_sd_mm",
                  "estimate_min_confidence", "shape_cov_scale", "refined_scale", "edge_mm", "edge_scale"):
            if kwargs.get(k) is not None:
                kwargs[k] = float(kwargs[k])
        for k in ("n_samples", "seed"):
            if k in kwargs:
                kwargs[k] = int(kwargs[k])
        return cls(**kwargs, calibrated=True, source=str(raw.get("dataset", "model manifest")), shape_model=shape)

    def consistency_check(self) -> Any:
        """The :class:`~cervisag_edge.core.consistency.ConsistencyCheck` of this calibration, or
        None (no ``consistency`` entry, or no shape model to score against)."""
        if not self.consistency or self.shape_model is None:
            return None
        from .consistency import ConsistencyCheck

        return ConsistencyCheck.from_dict(self.shape_model, self.consistency)

    def to_manifest(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("calibrated", "source", "shape_model")}
        d = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d.items() if not (k == "consistency" and v is None)}
        if self.shape_model is not None:
            d["shape_model"] = {"file": Path(self.shape_model.origin).name, "sha256": self.shape_model.sha256}
        return d


# --------------------------------------------------------------------------- heatmap spread
def heatmap_spread_hm(heatmaps: np.ndarray, radius: int = PATCH_RADIUS_HM) -> np.ndarray:
    """(K, h, w) → (K, 2, 2) second central moments (heatmap px²) of each peak region.

    The region is the (2r+1)² patch around the argmax, weighted by ``max(hm − peak/2, 0)``, so the
    value depends on the shape of the peak, not on its height. A flat or empty map gives the
    moments of a uniform patch (very wide)."""
    hm = np.asarray(heatmaps, dtype=np.float64)
    if hm.ndim != 3:
        raise ValueError(f"heatmaps must have shape (K, h, w), got {hm.shape}")
    K, h, w = hm.shape
    flat = hm.reshape(K, -1)
    idx = np.argmax(flat, axis=1)
    peak = flat[np.arange(K), idx]
    iy, ix = np.divmod(idx, w)
    offs = np.arange(-radius, radius + 1)
    ys = iy[:, None] + offs
    xs = ix[:, None] + offs
    inside = (ys[:, :, None] >= 0) & (ys[:, :, None] < h) & (xs[:, None, :] >= 0) & (xs[:, None, :] < w)
    patch = hm[np.arange(K)[:, None, None], np.clip(ys, 0, h - 1)[:, :, None], np.clip(xs, 0, w - 1)[:, None, :]]
    wgt = np.where(inside, np.maximum(patch - 0.5 * peak[:, None, None], 0.0), 0.0)
    tot = wgt.sum(axis=(1, 2))
    uniform = tot <= 1e-12
    wgt = np.where(uniform[:, None, None], inside.astype(np.float64), wgt)
    tot = wgt.sum(axis=(1, 2))
    gy, gx = np.meshgrid(offs.astype(np.float64), offs.astype(np.float64), indexing="ij")
    mx = (wgt * gx).sum(axis=(1, 2)) / tot
    my = (wgt * gy).sum(axis=(1, 2)) / tot
    dx = gx[None] - mx[:, None, None]
    dy = gy[None] - my[:, None, None]
    cxx = (wgt * dx * dx).sum(axis=(1, 2)) / tot
    cyy = (wgt * dy * dy).sum(axis=(1, 2)) / tot
    cxy = (wgt * dx * dy).sum(axis=(1, 2)) / tot
    return np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2)


def heatmap_to_original_jacobian(codec: "UDPHeatmapCodec", tf: "LetterboxTransform") -> np.ndarray:
    """(2,) per-axis factors from heatmap px to original px (UDP, then the letterbox inverse)."""
    sc = codec.scale_xy
    return np.array([1.0 / (sc[0] * tf.sx), 1.0 / (sc[1] * tf.sy)])


def spread_mm2(heatmaps: np.ndarray, codec: "UDPHeatmapCodec", tf: "LetterboxTransform",
               spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """(K, 2, 2) raw heatmap spread in mm² (in original px² when the spacing is unknown)."""
    d = heatmap_to_original_jacobian(codec, tf)
    if spacing_mm is not None:
        d = d * np.array([spacing_mm[1], spacing_mm[0]])
    return heatmap_spread_hm(heatmaps) * (d[:, None] * d[None, :])[None]


def edge_factor(edge_distance_mm: np.ndarray | None, cal: UncertaintyCalibration) -> np.ndarray | float:
    """(K,) SD factor g(d) of the edge term (module docstring) for distances (K,) to the image
    border in mm; 1 without an edge term or without distances (NaN distances count as far)."""
    if edge_distance_mm is None or cal.edge_mm <= 0 or cal.edge_scale == 1.0:
        return 1.0
    d = np.nan_to_num(np.asarray(edge_distance_mm, dtype=np.float64), nan=np.inf)
    return 1.0 + (cal.edge_scale - 1.0) * np.clip(1.0 - d / cal.edge_mm, 0.0, 1.0)


def edge_distance_mm(pts_px: np.ndarray, size_px: tuple[int, int], spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """(K,) distance of each (K, 2) original-pixel point to the nearest image border in mm
    (the pixel size × the distance in px; :data:`NOMINAL_SPACING_MM` without a spacing)."""
    from .visibility import edge_distance_input_px

    px_mm = float(np.sqrt(spacing_mm[0] * spacing_mm[1])) if spacing_mm else NOMINAL_SPACING_MM
    return edge_distance_input_px(pts_px, size_px, 1.0) * px_mm


def landmark_covariance(spread: np.ndarray, confidence: np.ndarray, cal: UncertaintyCalibration,
                        unit_mm: float = 1.0, refined: np.ndarray | None = None,
                        edge_mm: np.ndarray | None = None) -> np.ndarray:
    """(K, 2, 2) calibrated covariance of measured landmarks from the raw spread (K, 2, 2) and
    confidence (K,). ``unit_mm`` is the size of one unit of ``spread`` in mm (1 for mm; the
    pixel size when working in px), so that the floor stays in mm. ``refined`` (K,) bool marks
    corners the second stage moved: they take ``cal.refined_scale`` when it is set. ``edge_mm``
    (K,) the distances to the image border in mm (:func:`edge_distance_mm`) for the edge term."""
    conf = np.maximum(np.nan_to_num(np.asarray(confidence, dtype=np.float64)), max(cal.confidence_floor, _MIN_CONF))
    scale = np.full(conf.shape, cal.scale)
    if refined is not None and cal.refined_scale is not None:
        scale = np.where(np.asarray(refined, dtype=bool), cal.refined_scale, scale)
    factor = scale**2 / conf**cal.confidence_power
    cov = spread * factor[:, None, None] + (cal.floor_mm / unit_mm) ** 2 * np.eye(2)[None]
    g = np.broadcast_to(edge_factor(edge_mm, cal), conf.shape)
    return cov * (g**2)[:, None, None]


def image_covariance(pts_px: np.ndarray, spread: np.ndarray, confidence: np.ndarray, spacing_mm: tuple[float, float] | None,
                     cal: UncertaintyCalibration, *, refined: np.ndarray | None = None,
                     image_size_px: tuple[int, int] | None = None) -> np.ndarray:
    """(K, 2, 2) measured covariance of one image's landmarks (K, 2) px: :func:`landmark_covariance`
    with the floor in the spread's unit (mm, or px without a spacing) and the edge term from the
    image size (W, H) (none when it is None)."""
    px_size_mm = float(np.sqrt(spacing_mm[0] * spacing_mm[1])) if spacing_mm else NOMINAL_SPACING_MM
    edge = edge_distance_mm(pts_px, image_size_px, spacing_mm) if image_size_px is not None else None
    return landmark_covariance(spread, confidence, cal, unit_mm=1.0 if spacing_mm else px_size_mm, refined=refined, edge_mm=edge)


def sd_of(cov: np.ndarray) -> np.ndarray:
    """(K,) square root of the larger eigenvalue of each 2×2 covariance."""
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    return np.sqrt(np.maximum(0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b * b), 0.0))


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class ParameterIntervals:
    """``sd`` and ``low``/``high`` per parameter name (None when the value is None); ``estimated``
    per name."""

    sd: Mapping[str, float | None]
    low: Mapping[str, float | None]
    high: Mapping[str, float | None]
    estimated: Mapping[str, bool]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{name: {"low", "high", "estimated"}}`` for every parameter that has a value."""
        return {k: {"low": self.low[k], "high": self.high[k], "estimated": bool(self.estimated[k])}
                for k in PARAMETER_NAMES if self.low.get(k) is not None}


def parameter_intervals(values: Mapping[str, float | None], points_mm: np.ndarray, cov_mm2: np.ndarray,
                        facing: str, estimated: Mapping[str, bool], cal: UncertaintyCalibration,
                        joint_mm2: tuple[np.ndarray, np.ndarray] | None = None) -> ParameterIntervals:
    """95 % intervals of the six parameters. ``points_mm`` (K, 2) with NaN for missing landmarks,
    ``cov_mm2`` (K, 2, 2); ``values`` are the reported values (from ``compute_parameters``);
    ``joint_mm2`` the joint covariance of the estimated landmarks (see :mod:`.propagation`)."""
    sign = 1.0 if facing == "right" else -1.0
    if cal.method == "linear":
        sd = propagate_linear(points_mm, cov_mm2, sign, joint_mm2)
    else:
        sd = propagate_mc(points_mm, cov_mm2, sign, n_samples=cal.n_samples, seed=cal.seed, joint=joint_mm2)
    sds: dict[str, float | None] = {}
    lows: dict[str, float | None] = {}
    highs: dict[str, float | None] = {}
    for i, k in enumerate(PARAMETER_NAMES):
        v = values.get(k)
        if v is None or not np.isfinite(sd[i]):
            sds[k] = lows[k] = highs[k] = None
            continue
        scale = (cal.parameter_scale_estimated if estimated.get(k) else cal.parameter_scale)[k]
        s = float(sd[i]) * scale
        sds[k], lows[k], highs[k] = s, float(v) - Z95 * s, float(v) + Z95 * s
    return ParameterIntervals(sds, lows, highs, {k: bool(estimated.get(k, False)) for k in PARAMETER_NAMES})


@dataclass(frozen=True)
class UncertainResult:
    """What :func:`uncertain_parameters` works out for one image (arrays in original px / mm²)."""

    parameters: "SagittalParameters"
    points_px: np.ndarray  # (K, 2) measured + estimated positions, NaN where neither
    cov_mm2: np.ndarray  # (K, 2, 2) (px² when the spacing is unknown)
    estimated: np.ndarray  # (K,) bool
    intervals: ParameterIntervals


def uncertain_parameters(pts_px: np.ndarray, confidence: np.ndarray, visible: np.ndarray, inside: np.ndarray,
                         spread: np.ndarray, spacing_mm: tuple[float, float] | None, measured: "SagittalParameters",
                         cal: UncertaintyCalibration, *, estimates: bool = True, source: str = "<image>",
                         refined: np.ndarray | None = None, image_size_px: tuple[int, int] | None = None) -> UncertainResult:
    """Covariances, estimated landmarks and parameter intervals of one image.

    ``pts_px`` (K, 2) decoded positions; ``confidence``/``visible``/``inside`` (K,); ``spread``
    (K, 2, 2) from :func:`spread_mm2`; ``measured`` the parameters of the visible landmarks alone;
    ``refined`` (K,) the corners the second stage moved (None: none); ``image_size_px`` (W, H)
    for the edge term (None: no edge term).
    """
    from .estimation import estimate_landmarks
    from .parameters import compute_parameters, facing_hint

    sp = spacing_mm
    px_mm = np.array([sp[1], sp[0]]) if sp else np.ones(2)
    px_size_mm = float(np.sqrt(sp[0] * sp[1])) if sp else NOMINAL_SPACING_MM
    cov = image_covariance(pts_px, spread, confidence, sp, cal, refined=refined, image_size_px=image_size_px)
    params = measured
    est_mask = np.zeros(NUM_LANDMARKS, dtype=bool)
    joint: tuple[np.ndarray, np.ndarray] | None = None
    pts_used = np.where(visible[:, None], pts_px, np.nan)
    if estimates:
        to_px2 = (px_mm[:, None] * px_mm[None, :])[None]
        hint = facing_hint(pts_px, confidence, inside)  # the weak peaks tell the facing when the visible ones cannot
        est = estimate_landmarks(pts_px, confidence, visible, inside, cov / to_px2, cal, px_per_mm=1.0 / px_size_mm,
                                 facing_hint=hint)
        if est.mask.any():
            full_pts = np.where(est.mask[:, None], est.points_px, pts_used)
            try:
                full = compute_parameters(full_pts * px_mm, facing_hint=hint)
            except ValueError as exc:  # estimated geometry degenerate: keep the measured values
                logger.debug("%s: parameters with estimated landmarks failed: %s", source, exc)
            else:
                params = full if sp else full.without_lengths()
                est_mask, pts_used = est.mask, full_pts
                cov = np.where(est_mask[:, None, None], est.cov_px2 * to_px2, cov)
                if est.joint_index is not None and est.joint_px2 is not None:
                    d = np.tile(px_mm, len(est.joint_index))
                    joint = (est.joint_index, est.joint_px2 * d[:, None] * d[None, :])
    measured_values = measured.as_dict()
    values = params.as_dict()
    estimated = {k: values.get(k) is not None and measured_values.get(k) is None for k in PARAMETER_NAMES}
    intervals = parameter_intervals(values, pts_used * px_mm, cov, params.facing, estimated, cal, joint)
    return UncertainResult(params, pts_used, cov, est_mask, intervals)


def annotate(measurement: "Measurement", heatmaps: np.ndarray, transform: "LetterboxTransform",
             codec: "UDPHeatmapCodec", display: np.ndarray | None, calibration: UncertaintyCalibration,
             *, estimates: bool = True, refined: np.ndarray | None = None) -> "Measurement":
    """``measurement`` with landmark SDs, estimated landmarks, parameter intervals and quality
    flags added (a new frozen object; the input is unchanged).

    ``heatmaps`` (K, h, w) are the ones ``measurement`` was decoded from; ``display`` (H, W) is the
    image the model saw (for the quality flags; None skips the image statistics). With
    ``estimates=False`` no landmark is estimated and parameters stay None as before. ``refined``
    (K,) bool: the corners the second stage moved (their own landmark scale).
    """
    from . import quality

    t0 = time.perf_counter()
    sp = measurement.pixel_spacing_mm
    lms = measurement.landmarks
    pts_px = np.array([[lm.x_px, lm.y_px] for lm in lms], dtype=np.float64)
    conf = np.array([lm.confidence for lm in lms], dtype=np.float64)
    visible = np.array([lm.visible for lm in lms], dtype=bool)
    inside = transform.inside_original(pts_px)
    res = uncertain_parameters(pts_px, conf, visible, inside, spread_mm2(heatmaps, codec, transform, sp), sp,
                               measurement.parameters, calibration, estimates=estimates, source=measurement.source,
                               refined=refined, image_size_px=measurement.image_size_px)
    params, intervals, est_mask, pts_used = res.parameters, res.intervals, res.estimated, res.points_px
    flags = quality.assess(pts_px, conf, visible, inside, est_mask, params, sp, measurement.image_size_px, display,
                           estimated_px=pts_used)
    warnings = list(measurement.warnings)
    blocked = quality.blocks_parameters(flags)
    if blocked:
        from .parameters import unavailable_parameters

        params = unavailable_parameters(tuple(LANDMARK_NAMES))
        none = {k: None for k in PARAMETER_NAMES}
        intervals = ParameterIntervals(none, none, none, {k: False for k in PARAMETER_NAMES})
        warnings.append(f"{measurement.source}: not a lateral cervical spine radiograph; no parameters or landmarks reported")
        est_mask = np.zeros(NUM_LANDMARKS, dtype=bool)
    if not calibration.calibrated:
        warnings.append(f"{measurement.source}: uncertainty not calibrated for model {measurement.model_id}; intervals are indicative")
    sd = sd_of(res.cov_mm2) if sp else np.full(NUM_LANDMARKS, np.nan)
    px_mm = np.array([sp[1], sp[0]]) if sp else None
    new_lms = []
    for i, lm in enumerate(lms):
        changes: dict[str, Any] = {"estimated": bool(est_mask[i]),
                                   "sd_mm": float(sd[i]) if np.isfinite(sd[i]) and (visible[i] or est_mask[i]) and not blocked else None}
        if blocked:  # nothing on such an image is believed: no landmark is reported visible
            changes["visible"] = False
        if est_mask[i]:
            changes.update(x_px=float(pts_used[i, 0]), y_px=float(pts_used[i, 1]),
                           x_mm=float(pts_used[i, 0] * px_mm[0]) if px_mm is not None else None,
                           y_mm=float(pts_used[i, 1] * px_mm[1]) if px_mm is not None else None)
        new_lms.append(dataclasses.replace(lm, **changes))
    timings = dict(measurement.timings_ms)
    timings["uncertainty_ms"] = (time.perf_counter() - t0) * 1000.0
    if "total_ms" in timings:
        timings["total_ms"] += timings["uncertainty_ms"]
    return dataclasses.replace(measurement, landmarks=tuple(new_lms), parameters=params, parameter_intervals=intervals.to_dict(),
                               quality_flags=tuple(f.to_dict() for f in flags), timings_ms=timings, warnings=tuple(warnings))


def measured_only(values: Mapping[str, float | None], intervals: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """``values`` with every parameter flagged estimated in ``intervals`` set to None (what
    ``Measurer(estimates=False)`` would report)."""
    return {k: (None if intervals.get(k, {}).get("estimated") else v) for k, v in values.items()}
