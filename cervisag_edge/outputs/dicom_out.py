"""DICOM outputs for PACS: a Secondary Capture of the overlay and a Comprehensive 3D SR (TID 1500).

highdicom is imported lazily (``pip install cervisag-edge[dicom-out]``).

What the outputs carry (see ``docs/output.md``): patient and study identity copied from the
source image (never invented), plus generated Series/SOP Instance UIDs, series numbers
:data:`SC_SERIES_NUMBER` / :data:`SR_SERIES_NUMBER`, instance number 1 and content date/time.
Without a source image (PNG input) a synthetic Study Instance UID is generated, patient
attributes stay empty, and the Series Description says so.
"""
from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pydicom
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from .. import __version__
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..measurement import Measurement

logger = logging.getLogger(__name__)

MANUFACTURER = "cervisag-edge"
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
PRIVATE_SCHEME = "99CERVISAG"
DISCLAIMER = "NOT FOR DIAGNOSTIC USE"

_COBB = Code("285285000", "SCT", "Cobb angle")

#: parameter -> (concept name, method or None, UCUM unit). Cobb angles share the SNOMED CT
#: concept "Cobb angle" and are told apart by their Measurement Method (private codes).
SR_CODES: dict[str, tuple[Code, Code | None, Code]] = {
    "borden_mm": (Code("CSAG001", PRIVATE_SCHEME, "Borden cervical lordosis depth"), None, Code("mm", "UCUM", "mm")),
    "cci_percent": (Code("CSAG002", PRIVATE_SCHEME, "Cervical curvature index"), None, Code("%", "UCUM", "%")),
    "ccl_deg": (Code("CSAG003", PRIVATE_SCHEME, "Centroid cervical lordosis angle"), None, Code("deg", "UCUM", "deg")),
    "cobb_c0_c7_deg": (_COBB, Code("CSAG010", PRIVATE_SCHEME, "Cobb C0-C7: McGregor line to C7 inferior endplate"), Code("deg", "UCUM", "deg")),
    "cobb_c1_c7_deg": (_COBB, Code("CSAG011", PRIVATE_SCHEME, "Cobb C1-C7: C1 line to C7 inferior endplate"), Code("deg", "UCUM", "deg")),
    "cobb_c2_c7_deg": (_COBB, Code("CSAG012", PRIVATE_SCHEME, "Cobb C2-C7: C2 to C7 inferior endplates"), Code("deg", "UCUM", "deg")),
}
#: Procedure reported (SNOMED CT "Plain radiography") and finding site (SNOMED CT "Cervical spine").
PROCEDURE_CODE = Code("168537006", "SCT", "Plain radiography")
FINDING_SITE_CODE = Code("122494005", "SCT", "Cervical spine")
_REQUIRED_SOURCE_TAGS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID")


#: Type 2 identity attributes highdicom reads from evidence; absent ones are added empty.
_TYPE2_IDENTITY = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                   "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def _with_empty_type2(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Shallow copy with absent Type 2 identity attributes present and empty (nothing invented)."""
    missing = [k for k in _TYPE2_IDENTITY if k not in ds]
    if not missing:
        return ds
    out = pydicom.Dataset(ds)
    out.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
    for k in missing:
        setattr(out, k, "")
    return out


def _check_source(source: pydicom.Dataset, what: str) -> None:
    for keyword in _REQUIRED_SOURCE_TAGS:
        if not str(source.get(keyword, "") or ""):
            name = getattr(source, "filename", None) or "source dataset"
            raise InputError(f"{name}: cannot write the {what}: {keyword} is missing or empty, a UID is required")


def _orientation(measurement: "Measurement", source: pydicom.Dataset | None) -> tuple[str, str]:
    """Patient Orientation of the overlay: the source's, else from the measured facing
    (lateral view, anterior towards ``facing``; columns run to the feet)."""
    if source is not None:
        value = source.get("PatientOrientation")
        if value is not None and len(value) == 2 and all(str(v) for v in value):
            return str(value[0]), str(value[1])
    facing = getattr(measurement.parameters, "facing", "left")
    return ("A" if facing == "right" else "P"), "F"


def write_secondary_capture(
    overlay_rgb: np.ndarray,
    measurement: "Measurement",
    path: str | PathLike[str],
    source: pydicom.Dataset | None = None,
) -> pydicom.Dataset:
    """Write the overlay as a Secondary Capture Image (RGB, 8 bit, explicit VR little endian).

    ``overlay_rgb``: (H, W, 3) uint8 from :func:`~cervisag_edge.outputs.overlay.render_overlay`.
    Patient/study identity is copied from ``source``; the SC references it in its Source Image
    Sequence. Returns the dataset written.
    """
    import highdicom as hd

    rgb = np.ascontiguousarray(overlay_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"{path}: overlay has shape {rgb.shape} dtype {rgb.dtype}, expected (H, W, 3) uint8")
    common: dict[str, Any] = dict(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=generate_uid(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=_orientation(measurement, source),
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
    )
    if source is not None:
        _check_source(source, "Secondary Capture")
        sc = hd.sc.SCImage.from_ref_dataset(ref_dataset=source, **common)
        description = f"cervisag-edge overlay - {DISCLAIMER}"
    else:
        sc = hd.sc.SCImage(study_instance_uid=generate_uid(), **common)
        description = "cervisag-edge overlay, synthetic study (no DICOM source)"
    sc.SeriesDescription = description
    sc.ImageComments = f"{DISCLAIMER}. Measured by cervisag-edge {__version__}, model {measurement.model_id}."
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = "Landmarks and sagittal alignment measurements drawn on the source image"
    if source is not None:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
        sc.SourceImageSequence = [ref]
    sc.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s", path)
    return sc


def _device_uid(measurement: "Measurement") -> str:
    """Stable Device Observer UID of this software + model (same inputs, same UID)."""
    return generate_uid(entropy_srcs=["cervisag-edge", measurement.model_id, measurement.model_sha256])


def write_structured_report(
    measurement: "Measurement",
    path: str | PathLike[str],
    source: pydicom.Dataset | None = None,
    overlay_sc: pydicom.Dataset | None = None,
) -> pydicom.Dataset:
    """Write a Comprehensive 3D SR holding a TID 1500 Measurement Report of the six parameters.

    Each available parameter is one numeric item (UCUM unit, codes in :data:`SR_CODES`) of a
    single measurement group, with the algorithm identification and a Source Image For
    Measurement reference to ``source``. Parameters that are None are omitted. The SR is
    in the study of ``source``; without one it joins the (synthetic) study of ``overlay_sc``
    and references that image instead. One of the two is required. Returns the dataset written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if source is None and overlay_sc is None:
        raise InputError(f"{path}: a DICOM SR needs a source image or the overlay Secondary Capture to reference")
    if source is not None:
        _check_source(source, "Structured Report")
    referenced = source if source is not None else overlay_sc
    evidence = [_with_empty_type2(ds) for ds in (source, overlay_sc) if ds is not None]

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_device_uid(measurement),
            name="cervisag-edge",
            manufacturer_name=MANUFACTURER,
            model_name=measurement.model_id[:64],
        ),
    )
    algorithm = hd.sr.AlgorithmIdentification(
        name="cervisag-edge",
        version=__version__,
        parameters=[f"model={measurement.model_id}", f"backend={measurement.backend}", f"precision={measurement.precision}"],
    )
    source_ref = hd.sr.SourceImageForMeasurement(
        referenced_sop_class_uid=referenced.SOPClassUID,
        referenced_sop_instance_uid=referenced.SOPInstanceUID,
    )
    values = measurement.parameters.as_dict()
    items = []
    for key, (name, method, unit) in SR_CODES.items():
        value = values.get(key)
        if value is None or not np.isfinite(value):
            continue
        items.append(
            hd.sr.Measurement(
                name=name,
                value=float(value),
                unit=unit,
                method=method,
                algorithm_id=algorithm,
                referenced_images=[source_ref],
            )
        )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="cervical sagittal alignment"),
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=FINDING_SITE_CODE)],
        measurements=items or None,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_CODE,
        imaging_measurements=[group],
        referenced_images=_image_library(referenced),
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
    )
    sr.SeriesDescription = (
        f"cervisag-edge measurements - {DISCLAIMER}"
        if source is not None
        else "cervisag-edge measurements, synthetic study (no DICOM source)"
    )
    sr.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s (%d measurements)", path, len(items))
    return sr


def _image_library(image: pydicom.Dataset) -> list[pydicom.Dataset] | None:
    """``[image]`` when highdicom can describe it in the Image Library (it needs e.g. Rows,
    Columns, Modality and, for projection radiographs, Patient Orientation); else None, and the
    reference stays in the evidence and in each measurement's Source Image For Measurement."""
    import highdicom as hd

    try:
        hd.sr.ImageLibrary([image])
    except (AttributeError, ValueError, TypeError) as exc:
        name = getattr(image, "filename", None) or image.get("SOPInstanceUID", "source")
        logger.warning("%s: image library entry left out of the SR: %s", name, exc)
        return None
    return [image]


def read_sr_measurements(path_or_dataset: str | PathLike[str] | pydicom.Dataset) -> dict[str, tuple[float, str]]:
    """Read the parameters back from an SR written by :func:`write_structured_report`.

    Walks the Content Sequence (no highdicom needed); returns ``{parameter: (value, UCUM unit)}``
    for each numeric item whose concept name and method match :data:`SR_CODES`.
    """
    ds = path_or_dataset if isinstance(path_or_dataset, pydicom.Dataset) else pydicom.dcmread(Path(path_or_dataset))
    lookup = {
        (name.value, name.scheme_designator, method.value if method else None): key
        for key, (name, method, _) in SR_CODES.items()
    }
    out: dict[str, tuple[float, str]] = {}
    for item in _walk(ds.get("ContentSequence", [])):
        if item.get("ValueType") != "NUM":
            continue
        concept = item.ConceptNameCodeSequence[0]
        method = None
        for child in item.get("ContentSequence", []):
            if child.get("ValueType") == "CODE" and child.ConceptNameCodeSequence[0].CodeValue == "370129005":
                method = child.ConceptCodeSequence[0].CodeValue
        key = lookup.get((concept.CodeValue, concept.CodingSchemeDesignator, method))
        if key is None:
            continue
        mv = item.MeasuredValueSequence[0]
        out[key] = (float(mv.NumericValue), str(mv.MeasurementUnitsCodeSequence[0].CodeValue))
    return out


def _walk(items: Sequence[pydicom.Dataset]):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))
