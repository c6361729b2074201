"""A Grayscale Softcopy Presentation State (GSPS) that draws the measurement on the source image.

Any PACS viewer that applies presentation states shows the landmarks (POINT), the construction
lines of the parameters (POLYLINE, from :mod:`.graphics`), level labels, and a text block of
the values, on the original pixels: no burned-in copy. Written with pydicom alone.

Layers: ``LANDMARKS``, ``LINES`` and ``VALUES`` (the text block, in DISPLAY units at the
top-left of the viewport). UIDs are derived from the source as for the SR and SC
(:func:`~.dicom_out.result_uid`).
"""
from __future__ import annotations

import datetime
import logging
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from ..version import __version__
from ..errors import InputError
from ..core.parameters import PARAMETER_NAMES, PARAMETER_UNITS
from .dicom_out import (
    DISCLAIMER,
    MANUFACTURER,
    _check_source,
    _uids,
    copy_deidentification,
    copy_patient_and_study,
    equipment,
    new_dataset,
    set_body_part,
)
from . import sr_encoding as enc
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


GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"
#: (name, order, description) of the graphic layers.
LAYERS = (("LINES", 1, "parameter construction lines"), ("LANDMARKS", 2, "landmarks"), ("VALUES", 3, "measured values"))


def write_presentation_state(measurement: "Measurement", path: str | PathLike[str], source: pydicom.Dataset) -> pydicom.Dataset:
    """Write a GSPS referencing ``source`` (which needs Rows/Columns and its identity) and
    return it. The source's Modality LUT (rescale) and VOI (window or VOI LUT) are kept; a
    MONOCHROME1 source gets an INVERSE Presentation LUT so it displays as the modality intended.

    Built with pydicom (the modules of PS3.3 A.33.1); the layout is the one highdicom 0.28
    writes for the same input."""
    _check_source(source, "Presentation State")
    missing = [k for k in _IMAGE_KEYWORDS if k not in source]
    name = getattr(source, "filename", None) or source.get("SOPInstanceUID", "source")
    if missing:
        raise InputError(f"{name}: cannot write the Presentation State: {', '.join(missing)} missing, "
                         "expected the image attributes of the source")
    series_uid, sop_uid = _uids(measurement, source, "gsps")
    now = datetime.datetime.now()
    ds = new_dataset(GSPS_SOP_CLASS, sop_uid)
    copy_patient_and_study(ds, source)
    ds.InstanceCreationDate = ds.PresentationCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.PresentationCreationTime = now.strftime("%H%M%S.%f")
    ds.Modality = "PR"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, GSPS_SERIES_NUMBER, 1
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = MANUFACTURER, "cervisag-edge", __version__
    ds.DeviceSerialNumber = measurement.model_sha256[:16] or "unknown"
    ds.ContentLabel = "CERVISAG"
    ds.ContentDescription = f"cervisag-edge overlay - {DISCLAIMER}"[:64]
    ds.ContentCreatorName = ""
    ds.ContributingEquipmentSequence = equipment(None, now)
    image_ref = pydicom.Dataset()
    image_ref.ReferencedSOPClassUID, image_ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    series = pydicom.Dataset()
    series.SeriesInstanceUID = source.get("SeriesInstanceUID", "") or ""
    series.ReferencedImageSequence = [image_ref]
    if not series.SeriesInstanceUID:
        raise InputError(f"{name}: cannot write the Presentation State: SeriesInstanceUID is missing or empty, a UID is required")
    ds.ReferencedSeriesSequence = [series]
    area = pydicom.Dataset()
    area.PixelOriginInterpretation = "VOLUME"
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [int(source.Columns), int(source.Rows)]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelAspectRatio = [1, 1]
    ds.DisplayedAreaSelectionSequence = [area]
    try:
        _modality_and_voi(ds, source)
    except (AttributeError, ValueError, TypeError) as exc:
        raise InputError(f"{name}: cannot write the Presentation State: {exc}") from None
    ds.PresentationLUTShape = "INVERSE" if source.get("PhotometricInterpretation") == "MONOCHROME1" else "IDENTITY"
    layers = []
    for layer_name, order, description in LAYERS:
        layer = pydicom.Dataset()
        layer.GraphicLayer, layer.GraphicLayerOrder, layer.GraphicLayerDescription = layer_name, order, description
        layers.append(layer)
    ds.GraphicLayerSequence = layers
    text = enc.Text.for_charset(ds.get("SpecificCharacterSet"))
    lines = [_graphic("POLYLINE", to_dicom_image_coords(line.points_px)) for line in parameter_polylines(measurement)]
    points: list[bytes] = []
    labels: list[bytes] = []
    for lm in measurement.landmarks:
        if not lm.visible or not (np.isfinite(lm.x_px) and np.isfinite(lm.y_px)):
            continue
        xy = to_dicom_image_coords(np.array([[lm.x_px, lm.y_px]]))
        points.append(_graphic("POINT", xy))
        if lm.name.endswith("_AS"):  # one level label per vertebra, at its anterior-superior corner
            labels.append(enc.item([enc.cs_element(_ANCHOR_UNITS, "PIXEL"), text.element(_TEXT, "ST", lm.name.split("_")[0]),
                                    enc.fl_element(_ANCHOR, xy[0]), enc.cs_element(_ANCHOR_VISIBLE, "N")]))
    step = 0.035
    values = [enc.item([enc.cs_element(_BOX_UNITS, "DISPLAY"), text.element(_TEXT, "ST", t),
                        enc.fl_element(_BOX_TOP_LEFT, [0.01, 0.01 + i * step]),
                        enc.fl_element(_BOX_BOTTOM_RIGHT, [0.45, 0.01 + (i + 1) * step]),
                        enc.cs_element(_BOX_JUSTIFICATION, "LEFT")])
              for i, t in enumerate(value_lines(measurement))]
    ref_item = enc.item([(enc.REF_SOP_CLASS, enc.ascii_element(enc.REF_SOP_CLASS, "UI", str(source.SOPClassUID))),
                          (enc.REF_SOP_INSTANCE, enc.ascii_element(enc.REF_SOP_INSTANCE, "UI", str(source.SOPInstanceUID)))])
    annotations = [_annotation(ref_item, "LINES", lines, []), _annotation(ref_item, "LANDMARKS", points, labels),
                   _annotation(ref_item, "VALUES", [], values)]
    # the annotations (most of the elements) are encoded once into bytes and written as they are
    ds[0x00700001] = enc.raw_sequence(_ANNOTATIONS, [a for a in annotations if a is not None])
    ds.set_original_encoding(False, True, ds._character_set)
    ds.SeriesDescription = f"cervisag-edge overlay - {DISCLAIMER}"
    copy_deidentification(ds, source)
    set_body_part(ds, source)
    ds.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s (%d lines, %d landmarks)", path, len(lines), len(points))
    return ds


_ANNOTATIONS, _REF_IMAGES, _LAYER = (0x0070, 0x0001), (0x0008, 0x1140), (0x0070, 0x0002)
_OBJECTS, _TEXTS, _TEXT = (0x0070, 0x0009), (0x0070, 0x0008), (0x0070, 0x0006)
_BOX_UNITS, _ANCHOR_UNITS, _GRAPHIC_UNITS = (0x0070, 0x0003), (0x0070, 0x0004), (0x0070, 0x0005)
_BOX_TOP_LEFT, _BOX_BOTTOM_RIGHT, _BOX_JUSTIFICATION = (0x0070, 0x0010), (0x0070, 0x0011), (0x0070, 0x0012)
_ANCHOR, _ANCHOR_VISIBLE = (0x0070, 0x0014), (0x0070, 0x0015)
_DIMENSIONS, _N_POINTS, _DATA, _TYPE, _FILLED = (0x0070, 0x0020), (0x0070, 0x0021), (0x0070, 0x0022), (0x0070, 0x0023), (0x0070, 0x0024)


def _graphic(graphic_type: str, points: np.ndarray) -> bytes:
    """An encoded Graphic Object item (PIXEL units) of ``points`` (N, 2) DICOM image coordinates."""
    return enc.item([enc.cs_element(_GRAPHIC_UNITS, "PIXEL"), enc.us_element(_DIMENSIONS, 2),
                     enc.us_element(_N_POINTS, int(points.shape[0])), enc.fl_element(_DATA, points),
                     enc.cs_element(_TYPE, graphic_type), enc.cs_element(_FILLED, "N")])


def _annotation(image_ref: bytes, layer: str, graphics: list[bytes], texts: list[bytes]) -> bytes | None:
    """An encoded Graphic Annotation item of one layer, or None when it would be empty."""
    if not graphics and not texts:
        return None
    parts = [enc.sequence(_REF_IMAGES, [image_ref]), enc.cs_element(_LAYER, layer)]
    if graphics:
        parts.append(enc.sequence(_OBJECTS, graphics))
    if texts:
        parts.append(enc.sequence(_TEXTS, texts))
    return enc.item(parts)


def _modality_and_voi(ds: pydicom.Dataset, source: pydicom.Dataset) -> None:
    """Modality LUT (rescale, type ``US`` when the source names none) and Softcopy VOI LUT
    (the source's window, or its VOI LUT Sequence) copied from the source."""
    if "RescaleIntercept" in source:
        ds.RescaleIntercept = source.RescaleIntercept
        ds.RescaleSlope = source.get("RescaleSlope", 1)
        ds.RescaleType = source.get("RescaleType") or "US"
    has_center, has_width = "WindowCenter" in source, "WindowWidth" in source
    if has_center != has_width:
        raise ValueError("Window Center and Window Width must both be present or both absent")
    voi = pydicom.Dataset()
    if has_center:
        voi.WindowCenter, voi.WindowWidth = source.WindowCenter, source.WindowWidth
        for keyword in ("WindowCenterWidthExplanation", "VOILUTFunction"):
            if source.get(keyword):
                setattr(voi, keyword, source[keyword].value)
    elif "VOILUTSequence" in source:
        voi.VOILUTSequence = source.VOILUTSequence
    else:
        return
    ds.SoftcopyVOILUTSequence = [voi]
