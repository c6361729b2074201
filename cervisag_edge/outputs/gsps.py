"""A Grayscale Softcopy Presentation State (GSPS) that draws the measurement on the source image.

Any PACS viewer that applies presentation states shows the landmarks (POINT), the construction
lines of the parameters (POLYLINE, from :mod:`.graphics`), level labels, and a text block of
the values, on the original pixels: no burned-in copy. highdicom is imported lazily.

Layers: ``LANDMARKS``, ``LINES`` and ``VALUES`` (the text block, in DISPLAY units at the
top-left of the viewport). UIDs are derived from the source as for the SR and SC
(:func:`~.dicom_out.result_uid`).
"""
from __future__ import annotations

import logging
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom

from ..version import __version__
from ..errors import InputError
from ..core.parameters import PARAMETER_NAMES, PARAMETER_UNITS
from .dicom_out import DISCLAIMER, MANUFACTURER, _check_source, _uids, copy_deidentification, set_body_part
from .graphics import parameter_polylines, to_dicom_image_coords

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement

logger = logging.getLogger(__name__)

GSPS_SERIES_NUMBER = 9903
_IMAGE_KEYWORDS = ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsStored")
#: Parameter key -> label shown in the text block.
LABELS: dict[str, str] = {
    "borden_mm": "Borden",
    "cci_percent": "CCI",
    "ccl_deg": "CCL",
    "cobb_c0_c7_deg": "Cobb C0-C7",
    "cobb_c1_c7_deg": "Cobb C1-C7",
    "cobb_c2_c7_deg": "Cobb C2-C7",
}


def value_lines(measurement: "Measurement") -> list[str]:
    """One text line per parameter (``"Cobb C2-C7: 14.2 deg"`` or ``"Borden: n/a"``), then the disclaimer."""
    values = measurement.parameters.as_dict()
    out = []
    for key in PARAMETER_NAMES:
        v = values.get(key)
        shown = "n/a" if v is None or not np.isfinite(v) else f"{float(v):.1f} {PARAMETER_UNITS[key]}"
        out.append(f"{LABELS[key]}: {shown}")
    out.append(DISCLAIMER)
    return out


def write_presentation_state(measurement: "Measurement", path: str | PathLike[str], source: pydicom.Dataset) -> pydicom.Dataset:
    """Write a GSPS referencing ``source`` (which needs Rows/Columns and its identity) and
    return it. The source's VOI window is kept; a MONOCHROME1 source gets an INVERSE
    Presentation LUT so it displays as the modality intended."""
    import highdicom as hd

    _check_source(source, "Presentation State")
    missing = [k for k in _IMAGE_KEYWORDS if k not in source]
    if missing:
        name = getattr(source, "filename", None) or source.get("SOPInstanceUID", "source")
        raise InputError(f"{name}: cannot write the Presentation State: {', '.join(missing)} missing, "
                         "expected the image attributes of the source")
    series_uid, sop_uid = _uids(measurement, source, "gsps")
    layers = [hd.pr.GraphicLayer(layer_name=name, order=i + 1, description=desc)
              for i, (name, desc) in enumerate((("LINES", "parameter construction lines"),
                                                 ("LANDMARKS", "landmarks"), ("VALUES", "measured values")))]
    lines = [hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=to_dicom_image_coords(line.points_px), units="PIXEL")
             for line in parameter_polylines(measurement)]
    points: list[Any] = []
    labels: list[Any] = []
    for lm in measurement.landmarks:
        if not lm.visible or not (np.isfinite(lm.x_px) and np.isfinite(lm.y_px)):
            continue
        xy = to_dicom_image_coords(np.array([[lm.x_px, lm.y_px]]))
        points.append(hd.pr.GraphicObject(graphic_type="POINT", graphic_data=xy, units="PIXEL"))
        if lm.name.endswith("_AS"):  # one level label per vertebra, at its anterior-superior corner
            labels.append(hd.pr.TextObject(text_value=lm.name.split("_")[0], units="PIXEL",
                                           anchor_point=(float(xy[0, 0]), float(xy[0, 1])), anchor_point_visible=False))
    texts = value_lines(measurement)
    step = 0.035
    values = [hd.pr.TextObject(text_value=t, units="DISPLAY", text_justification="LEFT",
                               bounding_box=(0.01, 0.01 + i * step, 0.45, 0.01 + (i + 1) * step))
              for i, t in enumerate(texts)]
    annotations = [
        hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=layers[0], graphic_objects=lines or None)
        if lines else None,
        hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=layers[1], graphic_objects=points or None,
                                text_objects=labels or None) if points or labels else None,
        hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=layers[2], text_objects=values),
    ]
    kwargs: dict[str, Any] = {}  # the VOI window is copied from the source by highdicom
    if source.get("PhotometricInterpretation") == "MONOCHROME1":
        kwargs["presentation_lut_transformation"] = hd.content.PresentationLUTTransformation(presentation_lut_shape="INVERSE")
    try:
        gsps = _build(hd, source, series_uid, sop_uid, measurement, annotations, layers, kwargs)
    except (AttributeError, ValueError, TypeError) as exc:
        name = getattr(source, "filename", None) or source.get("SOPInstanceUID", "source")
        raise InputError(f"{name}: cannot write the Presentation State: {exc}") from None
    gsps.SeriesDescription = f"cervisag-edge overlay - {DISCLAIMER}"
    copy_deidentification(gsps, source)
    set_body_part(gsps, source)
    gsps.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s (%d lines, %d landmarks)", path, len(lines), len(points))
    return gsps


def _build(hd: Any, source: pydicom.Dataset, series_uid: str, sop_uid: str, measurement: "Measurement",
           annotations: list[Any], layers: list[Any], kwargs: dict[str, Any]) -> pydicom.Dataset:
    return hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        series_instance_uid=series_uid,
        series_number=GSPS_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="cervisag-edge",
        software_versions=__version__,
        device_serial_number=measurement.model_sha256[:16] or "unknown",
        content_label="CERVISAG",
        content_description=f"cervisag-edge overlay - {DISCLAIMER}"[:64],
        graphic_annotations=[a for a in annotations if a is not None],
        graphic_layers=layers,
        **kwargs,
    )

