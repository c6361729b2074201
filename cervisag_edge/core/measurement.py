"""Result objects of a measurement (frozen) and their JSON form (see ``docs/output.md``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..io import LoadedImage
    from .parameters import SagittalParameters

OUTPUT_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class Landmark:
    """One landmark in the input image. Pixel coordinates: the centre of pixel (row i, column j)
    is (x=j, y=i). Millimetres are ``x_px * column_spacing`` and ``y_px * row_spacing``
    (None when the spacing is unknown)."""

    name: str
    x_px: float
    y_px: float
    x_mm: float | None
    y_mm: float | None
    confidence: float
    visible: bool
    #: Square root of the larger eigenvalue of the landmark's covariance (mm); None when unknown.
    sd_mm: float | None = None
    #: True when the position is estimated (hidden or just out of frame), see docs/uncertainty.md.
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "x_px": _num(self.x_px),
            "y_px": _num(self.y_px),
            "x_mm": _num(self.x_mm),
            "y_mm": _num(self.y_mm),
            "confidence": _num(self.confidence),
            "visible": bool(self.visible),
            "sd_mm": _num(self.sd_mm),
            "estimated": bool(self.estimated),
        }


@dataclass(frozen=True)
class Measurement:
    """Everything measured on one image.

    ``pixel_spacing_mm`` is (row, column) spacing in mm or None; ``spacing_source`` names the tag
    it came from (``PixelSpacing``, ``ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor``,
    ``ImagerPixelSpacing``, ``user``, or ``none``). ``image_size_px`` is (width, height).

    ``study`` is the loaded image the measurement was made on (header and display image), so
    that every output (records, overlay, DICOM SC/SR) takes this one object. It is not part of
    the JSON form, equality or repr; the study runner drops it (:meth:`without_study`) once the
    sinks have run, so that results kept in memory hold no pixels.
    """

    source: str
    landmarks: tuple[Landmark, ...]
    parameters: "SagittalParameters"
    pixel_spacing_mm: tuple[float, float] | None
    spacing_source: str
    image_size_px: tuple[int, int]
    model_id: str
    model_sha256: str
    backend: str
    precision: str
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: ``{name: {"low", "high", "estimated"}}`` 95 % intervals (docs/uncertainty.md).
    parameter_intervals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``({"flag", "reason"}, ...)`` quality flags (docs/uncertainty.md).
    quality_flags: tuple[Mapping[str, str], ...] = ()
    study: "LoadedImage | None" = field(default=None, compare=False, repr=False)

    def without_study(self) -> "Measurement":
        """This measurement without its source study (no display image, no header)."""
        return self if self.study is None else replace(self, study=None)

    def landmarks_px(self) -> np.ndarray:
        """(34, 2) float64 pixel coordinates; NaN where the landmark is not visible."""
        out = np.array([[lm.x_px, lm.y_px] for lm in self.landmarks], dtype=np.float64)
        vis = np.array([lm.visible for lm in self.landmarks])
        out[~vis] = np.nan
        return out

    def confidences(self) -> np.ndarray:
        return np.array([lm.confidence for lm in self.landmarks], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": OUTPUT_SCHEMA_VERSION,
            "landmarks": [lm.to_dict() for lm in self.landmarks],
            "parameters": self.parameters.as_dict(include_extras=True),
            "missing_landmarks": list(self.parameters.missing),
            "unavailable": {k: list(v) for k, v in self.parameters.unavailable.items()},
            "facing": self.parameters.facing,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "spacing_source": self.spacing_source,
            "image_size_px": list(self.image_size_px),
            "model": {"id": self.model_id, "sha256": self.model_sha256, "backend": self.backend, "precision": self.precision},
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
            "warnings": list(self.warnings),
            "parameter_intervals": {k: {"low": _num(v["low"]), "high": _num(v["high"]), "estimated": bool(v["estimated"])}
                                    for k, v in self.parameter_intervals.items()},
            "quality_flags": [{"flag": str(f["flag"]), "reason": str(f["reason"])} for f in self.quality_flags],
        }


def _num(v: float | None) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if not np.isfinite(f) else round(f, 4)
