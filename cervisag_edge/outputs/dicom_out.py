"""DICOM outputs for PACS: a Secondary Capture of the overlay and a Comprehensive 3D SR (TID 1500).

Written with pydicom alone (no highdicom at run time): the SC here, the SR in :mod:`.sr` and
:mod:`.sr_encoding`, the GSPS in :mod:`.gsps`. highdicom parses them back in the tests.

What the outputs carry (see ``docs/output.md``): patient and study identity copied from the
source image (never invented), plus Series/SOP Instance UIDs, series numbers
:data:`SC_SERIES_NUMBER` / :data:`SR_SERIES_NUMBER`, instance number 1 and content date/time.
With a source image every generated UID is derived from the source SOP Instance UID, the model
SHA-256 and the output kind (:func:`result_uid`), so measuring the same instance twice gives the
same result UIDs and a PACS never holds duplicates.
Without a source image (PNG input) a synthetic Study Instance UID is generated, patient
attributes stay empty, and the Series Description says so.
"""
from __future__ import annotations

import datetime
import logging
import uuid
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..version import __version__
from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement

logger = logging.getLogger(__name__)

MANUFACTURER = "cervisag-edge"
SC_SERIES_NUMBER = 9901
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
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
#: The landmarks' group (finding type) and each landmark's detection confidence (unitless).
LANDMARK_CODE = Code("CSAG100", PRIVATE_SCHEME, "Cervical spine landmark")
CONFIDENCE_CODE = Code("CSAG101", PRIVATE_SCHEME, "Landmark detection confidence")
NO_UNITS = Code("1", "UCUM", "no units")
#: TID 310 Measurement Properties (CID 225): the 95 % interval as ranges of uncertainty.
UPPER_UNCERTAINTY_CODE = Code("371886008", "SCT", "+, range of upper measurement uncertainty")
LOWER_UNCERTAINTY_CODE = Code("371885007", "SCT", "-, range of lower measurement uncertainty")
#: Derivation (DCM 121401) of a value computed with an estimated (hidden) landmark.
DERIVATION_ESTIMATED_CODE = Code("CSAG020", PRIVATE_SCHEME, "Estimated from hidden landmarks")
#: One TEXT item per quality flag in the parameters group: "<flag>: <reason>".
QUALITY_FLAG_CODE = Code("CSAG030", PRIVATE_SCHEME, "Image quality flag")
#: Algorithm parameter naming the level of the intervals (present when there are intervals).
INTERVAL_LEVEL = "interval=95% (calibrated on phantoms)"
#: Coding Scheme Identification of :data:`PRIVATE_SCHEME` (PS3.3 C.12.1.1.2).
PRIVATE_SCHEME_NAME = "cervisag-edge private codes"
PRIVATE_SCHEME_ORGANIZATION = "cervisag-edge project"
_UID_NAMESPACE = uuid.UUID("6f1c2a1e-5b0d-4c55-9a4e-2f6b7d8c9e10")


#: Root attributes of the Patient, Clinical Trial Subject, General Study, Patient Study and
#: Clinical Trial Study modules (PS3.3 C.7.1.1, C.7.1.3, C.7.2.1-C.7.2.3), copied from the source.
_PATIENT_STUDY_KEYWORDS = """
ReferencedPatientSequence PatientName PatientID IssuerOfPatientID TypeOfPatientID IssuerOfPatientIDQualifiersSequence
SourcePatientGroupIdentificationSequence GroupOfPatientsIdentificationSequence PatientBirthDate PatientBirthTime
PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar PatientAlternativeCalendar PatientSex
QualityControlSubject StrainDescription StrainNomenclature StrainStockSequence StrainAdditionalInformation
StrainCodeSequence GeneticModificationsSequence OtherPatientNames OtherPatientIDsSequence ReferencedPatientPhotoSequence
EthnicGroupCodeSequence PatientSpeciesDescription PatientSpeciesCodeSequence PatientBreedDescription
PatientBreedCodeSequence BreedRegistrationSequence ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization
PatientComments PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence
ClinicalTrialSponsorName ClinicalTrialProtocolID ClinicalTrialProtocolName IssuerOfClinicalTrialProtocolID
OtherClinicalTrialProtocolIDsSequence ClinicalTrialSiteID ClinicalTrialSiteName IssuerOfClinicalTrialSiteID
ClinicalTrialSubjectID IssuerOfClinicalTrialSubjectID ClinicalTrialSubjectReadingID
IssuerOfClinicalTrialSubjectReadingID ClinicalTrialProtocolEthicsCommitteeName
ClinicalTrialProtocolEthicsCommitteeApprovalNumber StudyDate StudyTime AccessionNumber IssuerOfAccessionNumberSequence
ReferringPhysicianName ReferringPhysicianIdentificationSequence ConsultingPhysicianName
ConsultingPhysicianIdentificationSequence StudyDescription ProcedureCodeSequence PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy PhysiciansReadingStudyIdentificationSequence
ReferencedStudySequence StudyInstanceUID StudyID RequestingService RequestingServiceCodeSequence
ReasonForPerformedProcedureCodeSequence AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientAge
PatientSize PatientSizeCodeSequence PatientBodyMassIndex MeasuredAPDimension MeasuredLateralDimension PatientWeight
MedicalAlerts Allergies Occupation SmokingStatus AdditionalPatientHistory PregnancyStatus LastMenstrualDate
PatientSexNeutered ReasonForVisit ReasonForVisitCodeSequence AdmissionID IssuerOfAdmissionIDSequence ServiceEpisodeID
ServiceEpisodeDescription IssuerOfServiceEpisodeIDSequence PatientState ClinicalTrialTimePointID
ClinicalTrialTimePointDescription LongitudinalTemporalOffsetFromEvent LongitudinalTemporalEventType
ClinicalTrialTimePointTypeCodeSequence IssuerOfClinicalTrialTimePointID ConsentForClinicalTrialUseSequence
""".split()
PATIENT_STUDY_TAGS = frozenset(int(tag_for_keyword(k)) for k in _PATIENT_STUDY_KEYWORDS)  # type: ignore[arg-type]
#: Type 2 identity attributes present (empty) even when the source lacks them; nothing is invented.
TYPE2_IDENTITY = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                  "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")




def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> pydicom.Dataset:
    """An empty instance of ``sop_class_uid`` with its file meta (explicit VR little endian)."""
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, sop_instance_uid
    return ds


def copy_patient_and_study(ds: pydicom.Dataset, source: pydicom.Dataset | None) -> None:
    """The source's Patient and Study module attributes (:data:`PATIENT_STUDY_TAGS`) and Specific
    Character Set into ``ds``; absent Type 2 identity attributes (:data:`TYPE2_IDENTITY`) empty."""
    if source is not None:
        for elem in source:
            if int(elem.tag) in PATIENT_STUDY_TAGS:
                ds.add(elem)
        if "SpecificCharacterSet" in source:
            ds.SpecificCharacterSet = source.SpecificCharacterSet
    for keyword in TYPE2_IDENTITY:
        if keyword not in ds:
            setattr(ds, keyword, "")


def code_dataset(code: Code) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def equipment(source: pydicom.Dataset | None, now: datetime.datetime) -> list[pydicom.Dataset]:
    """Contributing Equipment: the source's acquisition equipment (when there is a source naming
    a manufacturer) and this software as processing equipment."""
    out = []
    if source is not None and source.get("Manufacturer"):
        acq = pydicom.Dataset()
        for keyword in ("Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
                        "InstitutionalDepartmentName", "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions"):
            if source.get(keyword):
                setattr(acq, keyword, source[keyword].value)
        acq.ContributionDescription = "Acquisition equipment of the source image(s)"
        acq.PurposeOfReferenceCodeSequence = [code_dataset(Code("109101", "DCM", "Acquisition Equipment"))]
        out.append(acq)
    proc = pydicom.Dataset()
    proc.Manufacturer, proc.ManufacturerModelName, proc.SoftwareVersions = MANUFACTURER, "cervisag-edge", __version__
    proc.ContributionDateTime = now.strftime("%Y%m%d%H%M%S.%f")
    proc.ContributionDescription = "Software used to create this instance"
    proc.PurposeOfReferenceCodeSequence = [code_dataset(Code("109102", "DCM", "Processing Equipment"))]
    out.append(proc)
    return out


def result_uid(source_sop_instance_uid: str, model_sha256: str, kind: str) -> str:
    """A deterministic UID (``2.25.<UUIDv5 as integer>``, PS3.5 B.2) of output ``kind`` (e.g.
    ``"sr-sop"``, ``"gsps-series"``) measured on the source instance with that model."""
    name = f"{source_sop_instance_uid}|{model_sha256}|{kind}"
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _uids(measurement: "Measurement", source: pydicom.Dataset | None, kind: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of output ``kind``: derived when there is a source."""
    if source is None:
        return generate_uid(), generate_uid()
    sop = str(source.SOPInstanceUID)
    return (result_uid(sop, measurement.model_sha256, f"{kind}-series"),
            result_uid(sop, measurement.model_sha256, f"{kind}-sop"))


def declare_private_scheme(ds: pydicom.Dataset) -> None:
    """Add :data:`PRIVATE_SCHEME` to the Coding Scheme Identification Sequence of ``ds``."""
    item = pydicom.Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_ORGANIZATION
    ds.CodingSchemeIdentificationSequence = [item]


def set_body_part(ds: pydicom.Dataset, source: pydicom.Dataset | None) -> None:
    """Body Part Examined copied from the source (``CSPINE`` by default): it tells validators the
    part is unpaired, so Laterality (General Series, Type 2C) stays absent; a source Laterality is copied."""
    if "BodyPartExamined" not in ds:
        ds.BodyPartExamined = str(source.get("BodyPartExamined", "") or "CSPINE") if source is not None else "CSPINE"
    if source is not None and source.get("Laterality") and "Laterality" not in ds:
        ds.Laterality = source.Laterality


def copy_deidentification(ds: pydicom.Dataset, source: pydicom.Dataset | None) -> None:
    """Patient Identity Removed is copied from the source (patient module); when it is YES the
    De-identification Method (Type 1C) must be present: copy the source's, else state that the
    source gave none."""
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        return
    if source is not None and "DeidentificationMethodCodeSequence" in source:
        ds.DeidentificationMethodCodeSequence = source.DeidentificationMethodCodeSequence
    if source is not None and source.get("DeidentificationMethod"):
        ds.DeidentificationMethod = source.DeidentificationMethod
    elif "DeidentificationMethodCodeSequence" not in ds:
        ds.DeidentificationMethod = "as stated by the source image (method not given there)"


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
    if source is not None:
        _check_source(source, "Secondary Capture")
    series_uid, sop_uid = _uids(measurement, source, "sc")
    rgb = np.ascontiguousarray(overlay_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"{path}: overlay has shape {rgb.shape} dtype {rgb.dtype}, expected (H, W, 3) uint8")
    now = datetime.datetime.now()
    sc = new_dataset(SECONDARY_CAPTURE, sop_uid)
    copy_patient_and_study(sc, source)
    if source is None:
        sc.StudyInstanceUID = generate_uid()
    sc.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    sc.InstanceCreationDate = sc.ContentDate = sc.DateOfSecondaryCapture = now.strftime("%Y%m%d")
    sc.InstanceCreationTime = sc.ContentTime = sc.TimeOfSecondaryCapture = now.strftime("%H%M%S.%f")
    sc.Modality, sc.ConversionType, sc.Manufacturer = "OT", "DI", MANUFACTURER
    sc.SeriesInstanceUID, sc.SeriesNumber, sc.InstanceNumber = series_uid, SC_SERIES_NUMBER, 1
    sc.PatientOrientation = list(_orientation(measurement, source))
    sc.ContributingEquipmentSequence = equipment(source, now)
    sc.SamplesPerPixel, sc.PhotometricInterpretation, sc.PlanarConfiguration = 3, "RGB", 0
    sc.Rows, sc.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    sc.BitsAllocated, sc.BitsStored, sc.HighBit, sc.PixelRepresentation = 8, 8, 7, 0
    raw = rgb.tobytes()
    sc.add_new(0x7FE00010, "OB", raw + b"\x00" if len(raw) % 2 else raw)
    sc.SeriesDescription = (f"cervisag-edge overlay - {DISCLAIMER}" if source is not None
                            else "cervisag-edge overlay, synthetic study (no DICOM source)")
    sc.ImageComments = f"{DISCLAIMER}. Measured by cervisag-edge {__version__}, model {measurement.model_id}."
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = "Landmarks and sagittal alignment measurements drawn on the source image"
    if source is not None:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
        sc.SourceImageSequence = [ref]
    copy_deidentification(sc, source)
    set_body_part(sc, source)
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
    """Write a Comprehensive 3D SR holding a TID 1500 Measurement Report (built by :mod:`.sr`,
    without highdicom).

    - One TID 1501 group of the six parameters: each available one is a numeric item (UCUM unit,
      codes in :data:`SR_CODES`) referencing the source image and carrying its construction as
      SCOORD POLYLINEs in image coordinates (:func:`~.graphics.parameter_polylines`: both
      reference lines of each Cobb angle, Borden's chord and perpendicular). None values are
      omitted. With an interval in ``measurement.parameter_intervals`` the item has TID 310
      properties :data:`UPPER_UNCERTAINTY_CODE` = high - value and :data:`LOWER_UNCERTAINTY_CODE`
      = value - low (in its unit); an estimated value has the Derivation
      :data:`DERIVATION_ESTIMATED_CODE`; each quality flag is a TEXT item :data:`QUALITY_FLAG_CODE`.
    - One TID 1501 group of the landmarks (finding type :data:`LANDMARK_CODE`): per visible
      landmark a numeric item of its detection confidence (:data:`CONFIDENCE_CODE`, unitless) with
      the landmark name as tracking identifier and as finding site (:func:`landmark_code`), and
      its position as a SCOORD POINT.

    Private codes (:data:`PRIVATE_SCHEME`) are declared in the Coding Scheme Identification
    Sequence. The SR is in the study of ``source``; without one it joins the (synthetic) study of
    ``overlay_sc`` and references that image instead. One of the two is required. Returns the
    dataset written (its Content Sequence is one raw element, parsed on first access).
    """
    from .sr import build_report

    if source is None and overlay_sc is None:
        raise InputError(f"{path}: a DICOM SR needs a source image or the overlay Secondary Capture to reference")
    if source is not None:
        _check_source(source, "Structured Report")
    referenced = source if source is not None else overlay_sc
    evidence = [ds for ds in (source, overlay_sc) if ds is not None]
    series_uid, sop_uid = _uids(measurement, source, "sr")
    sr, n_params, n_landmarks = build_report(measurement, referenced, evidence, series_uid, sop_uid)
    sr.SeriesDescription = (
        f"cervisag-edge measurements - {DISCLAIMER}"
        if source is not None
        else "cervisag-edge measurements, synthetic study (no DICOM source)"
    )
    declare_private_scheme(sr)
    copy_deidentification(sr, source)
    sr.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s (%d measurements, %d landmarks)", path, n_params, n_landmarks)
    return sr


def landmark_code(index: int, name: str) -> Code:
    """The private code of landmark ``name`` (position ``index`` in ``LANDMARK_NAMES``)."""
    return Code(f"CSAGL{index:02d}", PRIVATE_SCHEME, name)


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
