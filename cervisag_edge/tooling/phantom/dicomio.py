"""Writing phantoms: DICOM DX (For Presentation) with pydicom, or 16-bit PNG + spacing sidecar."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .render import Phantom

logger = logging.getLogger(__name__)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
#: Compressed transfer syntaxes the generator may use (all lossless).
COMPRESSED_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
)


def _uid(ph: Phantom, kind: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["cervisag-phantom", kind, str(ph.seed), str(ph.index)])


def _ds(x: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    s = f"{x:.10g}"
    return s if len(s) <= 16 else f"{x:.8g}"


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def stored_window(ph: Phantom) -> tuple[float, float]:
    """The phantom's LINEAR window (centre, width), defined on rescaled values ``m·s + b``, as
    the window on stored values ``s`` that displays the same image (slope ``m`` > 0):
    ``c' = (c − 0.5 − b)/m + 0.5``, ``w' = (w − 1)/m + 1`` (PS3.3 C.11.2.1.2.1)."""
    m, b = float(ph.rescale_slope), float(ph.rescale_intercept)
    if not m > 0:
        raise ValueError(f"phantom rescale slope {m!r} must be > 0")
    return (ph.window_center - 0.5 - b) / m + 0.5, (ph.window_width - 1.0) / m + 1.0


def build_dataset(ph: Phantom, with_pixel_spacing: bool | None = None):
    """The pydicom FileDataset (explicit VR little endian, uncompressed) of ``ph``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    sop_uid = _uid(ph, "sop")
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _uid(ph, "study")
    ds.SeriesInstanceUID = _uid(ph, "series")
    ds.FrameOfReferenceUID = _uid(ph, "for")
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"{ph.seed % 100000}"
    ds.StudyDescription = "SYNTHETIC PHANTOM C-SPINE LATERAL"
    ds.SeriesDescription = f"cervisag phantom variant={ph.variant}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(ph.index) + 1
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "cervisag-edge phantom generator"
    ds.ManufacturerModelName = "PHANTOM"
    ds.PatientName = "PHANTOM^CERVISAG"
    ds.PatientID = f"PHANTOM-{ph.seed}-{ph.index}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom: no patient data"
    ds.BodyPartExamined = "CSPINE"
    ds.AnatomicRegionSequence = [_code("122494005", "SCT", "Cervical spine")]
    ds.PositionReferenceIndicator = ""
    ds.DetectorType = "SCINTILLATOR"
    ds.PositionerType = "COLUMN"
    ds.AcquisitionContextSequence = []
    ds.ViewPosition = "LATERAL"
    ds.ImageLaterality = "U"
    ds.PatientOrientation = ["A" if ph.facing == "right" else "P", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    h, w = ph.stored.shape
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = ph.photometric
    ds.BitsAllocated = 16
    ds.BitsStored = int(ph.bits_stored)
    ds.HighBit = int(ph.bits_stored) - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if ph.photometric == "MONOCHROME2" else 1
    ds.PresentationLUTShape = "IDENTITY" if ph.photometric == "MONOCHROME2" else "INVERSE"
    # DX requires the identity Modality LUT (PS3.3 C.8.11.3: slope 1, intercept 0); the
    # phantom's rescale is folded into the window so the displayed image is unchanged.
    center, width = stored_window(ph)
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "0"
    ds.RescaleType = "US"
    ds.WindowCenter = _ds(center)
    ds.WindowWidth = _ds(width)
    ds.VOILUTFunction = "LINEAR"
    ds.ImagerPixelSpacing = [_ds(v) for v in ph.imager_pixel_spacing_mm]
    ds.EstimatedRadiographicMagnificationFactor = _ds(ph.magnification)
    ds.DistanceSourceToDetector = _ds(ph.source_image_distance_mm)
    ds.DistanceSourceToPatient = _ds(ph.source_object_distance_mm)
    if with_pixel_spacing is None:
        with_pixel_spacing = (ph.seed + ph.index) % 2 == 0
    if with_pixel_spacing:
        ds.PixelSpacing = [_ds(v) for v in ph.pixel_spacing_mm]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "magnification-corrected to the mid-sagittal plane"
    ds.PixelData = np.ascontiguousarray(ph.stored, dtype="<u2").tobytes()
    return ds


def write_dicom(ph: Phantom, path: str | Path, transfer_syntax: str | None = None, *, with_pixel_spacing: bool | None = None) -> Path:
    """Write ``ph`` as a DICOM DX For Presentation file; ``transfer_syntax`` None writes explicit
    VR little endian, else one of :data:`COMPRESSED_SYNTAXES` (lossless, encoded by pydicom's
    plugins: pyjpegls, pylibjpeg-openjpeg, RLE)."""
    from ...errors import InputError

    path = Path(path)
    ds = build_dataset(ph, with_pixel_spacing)
    if transfer_syntax is not None and transfer_syntax != ds.file_meta.TransferSyntaxUID:
        if transfer_syntax not in COMPRESSED_SYNTAXES:
            raise InputError(f"{path}: transfer syntax {transfer_syntax!r} not supported, expected one of {', '.join(COMPRESSED_SYNTAXES)}")
        ds.compress(transfer_syntax, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    logger.debug("wrote %s (%s)", path, ds.file_meta.TransferSyntaxUID)
    return path


def write_png(ph: Phantom, path: str | Path, which: str = "display") -> Path:
    """Write a 16-bit PNG of the ``display`` image (bone bright, scaled to 0..65535) or the
    ``stored`` values, with a sidecar ``<name>.json`` holding spacing and display metadata."""
    import cv2

    from ...errors import InputError

    path = Path(path)
    if which == "display":
        img = np.rint(np.clip(ph.display, 0.0, 1.0) * 65535.0).astype(np.uint16)
    elif which == "stored":
        img = ph.stored
    else:
        raise InputError(f"{path}: PNG content {which!r} not supported, expected 'display' or 'stored'")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise InputError(f"{path}: OpenCV could not write the PNG")
    side = {
        "pixel_spacing_mm": list(ph.pixel_spacing_mm),
        "imager_pixel_spacing_mm": list(ph.imager_pixel_spacing_mm),
        "magnification": ph.magnification,
        "content": which,
        "photometric": ph.photometric if which == "stored" else "MONOCHROME2",
        "bits_stored": ph.bits_stored if which == "stored" else 16,
        "rescale_slope": ph.rescale_slope,
        "rescale_intercept": ph.rescale_intercept,
        "window_center": ph.window_center,
        "window_width": ph.window_width,
        "variant": ph.variant,
        "seed": ph.seed,
        "index": ph.index,
    }
    path.with_suffix(".json").write_text(json.dumps(side, indent=2))
    return path
