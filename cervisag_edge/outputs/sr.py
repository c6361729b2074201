"""The Comprehensive 3D SR (TID 1500 Measurement Report) built without highdicom.

:func:`~.dicom_out.write_structured_report` is the public entry point; this module builds the
document: the header with pydicom (a few dozen attributes), the content tree with
:mod:`.sr_encoding` (encoded straight to bytes, code sequences cached per process). The tree is
the one highdicom 0.28's ``MeasurementReport`` writes for the same input (same templates,
concepts, order and references), plus the 95 % intervals and the estimated-value qualifier
(``docs/uncertainty.md`` §7). Conformance is checked by ``dciodvfy`` and ``dsrdump`` in the tests,
and highdicom parses the result back there.
"""
from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pydicom
from pydicom.sr.coding import Code

from ..version import __version__
from . import sr_encoding as enc
from .dicom_out import (
    CONFIDENCE_CODE,
    DERIVATION_ESTIMATED_CODE,
    FINDING_SITE_CODE,
    INTERVAL_LEVEL,
    LANDMARK_CODE,
    LOWER_UNCERTAINTY_CODE,
    MANUFACTURER,
    NO_UNITS,
    PROCEDURE_CODE,
    QUALITY_FLAG_CODE,
    SR_CODES,
    SR_SERIES_NUMBER,
    UPPER_UNCERTAINTY_CODE,
    _device_uid,
    code_dataset,
    copy_patient_and_study,
    equipment,
    landmark_code,
    new_dataset,
    result_uid,
)
from .graphics import parameter_polylines, to_dicom_image_coords

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement

logger = logging.getLogger(__name__)

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
_D = "DCM"
REPORT_TITLE = Code("126000", _D, "Imaging Measurement Report")
_LANGUAGE = Code("121049", _D, "Language of Content Item and Descendants")
_EN_US = Code("en-US", "RFC5646", "English (United States)")
_OBSERVER_TYPE, _DEVICE = Code("121005", _D, "Observer Type"), Code("121007", _D, "Device")
_DEVICE_UID, _DEVICE_NAME = Code("121012", _D, "Device Observer UID"), Code("121013", _D, "Device Observer Name")
_DEVICE_MAKER, _DEVICE_MODEL = Code("121014", _D, "Device Observer Manufacturer"), Code("121015", _D, "Device Observer Model Name")
_PROCEDURE_REPORTED = Code("121058", _D, "Procedure reported")
_IMAGE_LIBRARY, _IMAGE_LIBRARY_GROUP = Code("111028", _D, "Image Library"), Code("126200", _D, "Image Library Group")
_IMAGING_MEASUREMENTS, _MEASUREMENT_GROUP = Code("126010", _D, "Imaging Measurements"), Code("125007", _D, "Measurement Group")
_SOURCE = Code("260753009", "SCT", "Source")
_SOURCE_OF_MEASUREMENT = Code("121112", _D, "Source of Measurement")
_TRACKING_ID, _TRACKING_UID = Code("112039", _D, "Tracking Identifier"), Code("112040", _D, "Tracking Unique Identifier")
_FINDING, _FINDING_SITE = Code("121071", _D, "Finding"), Code("363698007", "SCT", "Finding Site")
_METHOD, _DERIVATION = Code("370129005", "SCT", "Measurement Method"), Code("121401", _D, "Derivation")
_ALGORITHM_NAME, _ALGORITHM_VERSION = Code("111001", _D, "Algorithm Name"), Code("111003", _D, "Algorithm Version")
_ALGORITHM_PARAMETERS = Code("111002", _D, "Algorithm Parameters")
_MODALITY, _FRAME_OF_REFERENCE = Code("121139", _D, "Modality"), Code("112227", _D, "Frame of Reference UID")
_ROWS, _COLUMNS = Code("110910", _D, "Pixel Data Rows"), Code("110911", _D, "Pixel Data Columns")
_ORIENTATION_ROW, _ORIENTATION_COLUMN = Code("111044", _D, "Patient Orientation Row"), Code("111043", _D, "Patient Orientation Column")
_H_SPACING, _V_SPACING = Code("111026", _D, "Horizontal Pixel Spacing"), Code("111066", _D, "Vertical Pixel Spacing")
_PIXELS, _MM = Code("{pixels}", "UCUM", "Pixels"), Code("mm", "UCUM", "mm")
#: SOP class -> acquisition modality (CID 29 / CID 32) of an Image Library entry.
_MODALITY_OF_CLASS = {
    "1.2.840.10008.5.1.4.1.1.1": Code("CR", _D, "Computed Radiography"),
    "1.2.840.10008.5.1.4.1.1.1.1": Code("DX", _D, "Digital Radiography"),
    "1.2.840.10008.5.1.4.1.1.1.1.1": Code("DX", _D, "Digital Radiography"),
    "1.2.840.10008.5.1.4.1.1.7": Code("OT", _D, "Other"),
}
_PROJECTION_MODALITIES = frozenset({"CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA"})

def build_report(measurement: "Measurement", referenced: pydicom.Dataset, evidence: Sequence[pydicom.Dataset],
                 series_uid: str, sop_uid: str) -> tuple[pydicom.Dataset, int, int]:
    """The SR dataset (header + raw content tree), the number of parameters and of landmarks in it.

    ``referenced``: the image the measurements reference (the source, else the overlay SC);
    ``evidence``: the instances listed in the Current Requested Procedure Evidence Sequence, the
    first one giving the patient and study (the source, else the overlay SC)."""
    first = evidence[0]
    ds = _header(first, evidence, series_uid, sop_uid)
    text = enc.Text.for_charset(ds.get("SpecificCharacterSet"))
    ours = [measurement.model_id, *(f"{f['flag']}: {f['reason']}" for f in measurement.quality_flags)]
    if not all(text.can_encode(t) for t in ours):  # e.g. a flag reason with "≥" in a Latin-1 study
        ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8; the copied identity is re-encoded on writing
        text = enc.Text.for_charset("ISO_IR 192")
    root, n_params, n_landmarks = _content(text, measurement, referenced, sop_uid)
    ds[0x0040A730] = enc.content_sequence(root)
    # pydicom writes raw elements unchanged only when the dataset's "original" encoding and
    # character set equal the file's (Dataset._character_set is the form it compares)
    ds.set_original_encoding(False, True, ds._character_set)
    return ds, n_params, n_landmarks


def _header(first: pydicom.Dataset, evidence: Sequence[pydicom.Dataset], series_uid: str, sop_uid: str) -> pydicom.Dataset:
    now = datetime.datetime.now()
    ds = new_dataset(COMPREHENSIVE_3D_SR, sop_uid)
    copy_patient_and_study(ds, first)
    ds.SOPClassUID, ds.SOPInstanceUID = COMPREHENSIVE_3D_SR, sop_uid
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S.%f")
    ds.Modality = "SR"
    ds.Manufacturer = MANUFACTURER
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, SR_SERIES_NUMBER, 1
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    ds.CompletionFlag, ds.VerificationFlag, ds.PreliminaryFlag = "COMPLETE", "UNVERIFIED", "PRELIMINARY"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "CONTINUOUS"
    ds.ConceptNameCodeSequence = [code_dataset(REPORT_TITLE)]
    template = pydicom.Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "1500"
    ds.ContentTemplateSequence = [template]
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence(evidence, str(first.StudyInstanceUID))
    ds.ContributingEquipmentSequence = equipment(first, now)
    return ds


def _evidence(evidence: Sequence[pydicom.Dataset], study_uid: str) -> list[pydicom.Dataset]:
    """Hierarchical SOP Instance Reference items (PS3.3 C.17.2.1) of the same-study evidence."""
    series: dict[str, list[pydicom.Dataset]] = {}
    seen: set[str] = set()
    for ds in evidence:
        if str(ds.SOPInstanceUID) in seen or str(ds.StudyInstanceUID) != study_uid:
            continue
        seen.add(str(ds.SOPInstanceUID))
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ref)
    study = pydicom.Dataset()
    study.StudyInstanceUID = study_uid
    study.ReferencedSeriesSequence = []
    for uid, refs in series.items():
        item = pydicom.Dataset()
        item.SeriesInstanceUID, item.ReferencedSOPSequence = uid, refs
        study.ReferencedSeriesSequence.append(item)
    return [study]


def _content(text: enc.Text, measurement: "Measurement", referenced: pydicom.Dataset, sop_uid: str) -> tuple[list[bytes], int, int]:
    """The root container's children (TID 1500), and the numbers of parameters and landmarks."""
    ref_class, ref_uid = str(referenced.SOPClassUID), str(referenced.SOPInstanceUID)
    selected_from = enc.image(text, "SELECTED FROM", _SOURCE, ref_class, ref_uid)
    source_of_measurement = enc.image(text, "INFERRED FROM", _SOURCE_OF_MEASUREMENT, ref_class, ref_uid)

    def tracking_uid(what: str) -> str:
        return result_uid(sop_uid, measurement.model_sha256, f"sr-tracking-{what}")

    def polyline(points_px: np.ndarray) -> bytes:
        return enc.scoord(text, "INFERRED FROM", _SOURCE, "POLYLINE", to_dicom_image_coords(points_px), selected_from)

    context = [
        enc.code(text, "HAS CONCEPT MOD", _LANGUAGE, _EN_US),
        enc.code(text, "HAS OBS CONTEXT", _OBSERVER_TYPE, _DEVICE),
        enc.uidref(text, "HAS OBS CONTEXT", _DEVICE_UID, _device_uid(measurement)),
        enc.text_item(text, "HAS OBS CONTEXT", _DEVICE_NAME, "cervisag-edge"),
        enc.text_item(text, "HAS OBS CONTEXT", _DEVICE_MAKER, MANUFACTURER),
        enc.text_item(text, "HAS OBS CONTEXT", _DEVICE_MODEL, measurement.model_id[:64]),
        enc.code(text, "HAS CONCEPT MOD", _PROCEDURE_REPORTED, PROCEDURE_CODE),
    ]
    library = _image_library(text, referenced)
    if library is not None:
        context.append(library)
    algorithm = [
        enc.text_item(text, "HAS CONCEPT MOD", _ALGORITHM_NAME, "cervisag-edge"),
        enc.text_item(text, "HAS CONCEPT MOD", _ALGORITHM_VERSION, __version__),
        *(enc.text_item(text, "HAS CONCEPT MOD", _ALGORITHM_PARAMETERS, p) for p in (
            f"model={measurement.model_id}", f"backend={measurement.backend}", f"precision={measurement.precision}",
            *((INTERVAL_LEVEL,) if measurement.parameter_intervals else ()))),
    ]
    site = enc.code(text, "HAS CONCEPT MOD", _FINDING_SITE, FINDING_SITE_CODE)
    lines: dict[str, list[bytes]] = {}
    for line in parameter_polylines(measurement):
        lines.setdefault(line.parameter, []).append(polyline(line.points_px))
    values = measurement.parameters.as_dict()
    params: list[bytes] = []
    for key, (name, method, unit) in SR_CODES.items():
        value = values.get(key)
        if value is None or not np.isfinite(value):
            continue
        children = [enc.code(text, "HAS CONCEPT MOD", _METHOD, method)] if method is not None else []
        interval = measurement.parameter_intervals.get(key)
        if interval is not None and interval.get("estimated"):
            children.append(enc.code(text, "HAS CONCEPT MOD", _DERIVATION, DERIVATION_ESTIMATED_CODE))
        children += _uncertainty(text, float(value), interval, unit)
        children.append(source_of_measurement)
        children += lines.get(key, [])
        params.append(enc.num(text, "CONTAINS", name, float(value), unit, children))
    flags = [enc.text_item(text, "CONTAINS", QUALITY_FLAG_CODE, f"{f['flag']}: {f['reason']}")
             for f in measurement.quality_flags]
    groups = [_group(text, "cervical sagittal alignment", tracking_uid("parameters"), None, site, algorithm, params + flags)]
    landmarks: list[bytes] = []
    landmarks_uid = tracking_uid("landmarks")  # each landmark's: this UID + ".<1-based index>"
    for index, lm in enumerate(measurement.landmarks):
        if not lm.visible or not (np.isfinite(lm.x_px) and np.isfinite(lm.y_px)):
            continue
        point = enc.scoord(text, "INFERRED FROM", _SOURCE, "POINT",
                           to_dicom_image_coords(np.array([[lm.x_px, lm.y_px]])), selected_from)
        landmarks.append(enc.num(text, "CONTAINS", CONFIDENCE_CODE, float(lm.confidence), NO_UNITS, [
            enc.text_item(text, "HAS OBS CONTEXT", _TRACKING_ID, lm.name),
            enc.uidref(text, "HAS OBS CONTEXT", _TRACKING_UID, f"{landmarks_uid}.{index + 1}"),
            enc.code(text, "HAS CONCEPT MOD", _FINDING_SITE, landmark_code(index, lm.name)),
            point,
        ]))
    if landmarks:
        groups.append(_group(text, "cervical spine landmarks", landmarks_uid, LANDMARK_CODE, site, algorithm, landmarks))
    context.append(enc.container(text, "CONTAINS", _IMAGING_MEASUREMENTS, groups))
    return context, len(params), len(landmarks)


def _uncertainty(text: enc.Text, value: float, interval: Any, unit: Code) -> list[bytes]:
    """TID 310 Measurement Properties: the 95 % interval as the upper and lower range of
    measurement uncertainty (high - value, value - low) in the measurement's unit."""
    if interval is None:
        return []
    low, high = interval.get("low"), interval.get("high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return []
    return [enc.num(text, "HAS PROPERTIES", UPPER_UNCERTAINTY_CODE, max(float(high) - value, 0.0), unit),
            enc.num(text, "HAS PROPERTIES", LOWER_UNCERTAINTY_CODE, max(value - float(low), 0.0), unit)]


def _group(text: enc.Text, identifier: str, uid: str, finding: Code | None, site: bytes,
           algorithm: list[bytes], items: list[bytes]) -> bytes:
    """A TID 1501 Measurement Group."""
    children = [enc.text_item(text, "HAS OBS CONTEXT", _TRACKING_ID, identifier),
                enc.uidref(text, "HAS OBS CONTEXT", _TRACKING_UID, uid)]
    if finding is not None:
        children.append(enc.code(text, "CONTAINS", _FINDING, finding))
    children += [site, *algorithm, *items]
    return enc.container(text, "CONTAINS", _MEASUREMENT_GROUP, children, template="1501")


def _image_library(text: enc.Text, image: pydicom.Dataset) -> bytes | None:
    """TID 1600 Image Library with the referenced image (TID 1602/1603 descriptors), or None
    (with a warning) when the image cannot be described: an unknown SOP class, no Rows/Columns,
    or a projection radiograph without Patient Orientation or Imager Pixel Spacing."""
    name = getattr(image, "filename", None) or image.get("SOPInstanceUID", "source")
    modality = _MODALITY_OF_CLASS.get(str(image.SOPClassUID))
    try:
        if modality is None:
            raise ValueError(f"SOP Class {image.SOPClassUID} is not an image class the SR describes")
        acq = "HAS ACQ CONTEXT"
        items = [enc.code(text, acq, _MODALITY, modality)]
        if "FrameOfReferenceUID" in image:
            items.append(enc.uidref(text, acq, _FRAME_OF_REFERENCE, str(image.FrameOfReferenceUID)))
        items += [enc.num(text, acq, _ROWS, float(image.Rows), _PIXELS, floating=False),
                  enc.num(text, acq, _COLUMNS, float(image.Columns), _PIXELS, floating=False)]
        if str(image.Modality) in _PROJECTION_MODALITIES:
            orientation, spacing = image.PatientOrientation, image.ImagerPixelSpacing
            items += [enc.text_item(text, acq, _ORIENTATION_ROW, str(orientation[0])),
                      enc.text_item(text, acq, _ORIENTATION_COLUMN, str(orientation[1])),
                      enc.num(text, acq, _H_SPACING, float(spacing[1]), _MM),
                      enc.num(text, acq, _V_SPACING, float(spacing[0]), _MM)]
    except (AttributeError, ValueError, TypeError, IndexError, KeyError) as exc:
        logger.warning("%s: image library entry left out of the SR: %s", name, exc)
        return None
    entry = enc.image(text, "CONTAINS", _SOURCE, str(image.SOPClassUID), str(image.SOPInstanceUID), items)
    group = enc.container(text, "CONTAINS", _IMAGE_LIBRARY_GROUP, [entry])
    return enc.container(text, "CONTAINS", _IMAGE_LIBRARY, [group])
