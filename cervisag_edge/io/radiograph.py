"""Which DICOM files are projection radiographs: refusals and warnings from the header alone.

Refused (one-line :class:`InputError` naming the tag and value), before any pixel is decoded:
Modality (0008,0060) other than CR, DX or RG — OT, SC or an absent Modality pass only with a
radiograph-like header (see :func:`radiograph_like_problem`); SOP classes (0008,0016) that are not
projection or secondary-capture images; colour photometric interpretations. Multi-frame images are
refused by the reader's frame check.

Warned (the image is still measured, since consoles fill these tags poorly): Body Part Examined,
View Position or Image Laterality values that do not fit a lateral cervical spine film.
"""
from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..errors import InputError

__all__ = [
    "RADIOGRAPH_MODALITIES",
    "GENERIC_MODALITIES",
    "IMAGE_SOP_CLASSES",
    "GREY_PHOTOMETRIC",
    "check_radiograph",
    "radiograph_like_problem",
    "lateral_cspine_warnings",
]

#: Modalities measured without further checks.
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
#: Modalities (and "" for absent) measured only with a radiograph-like header.
GENERIC_MODALITIES = ("OT", "SC", "")
#: SOP classes of projection radiographs and of secondary-capture images.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
}
GREY_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
#: Smallest Rows and Columns of an OT/SC image taken as a digitised or captured radiograph.
MIN_GENERIC_SIDE_PX = 256
#: Attributes of cross-sectional images (CT, MR, PET slices): a projection radiograph has none.
_CROSS_SECTIONAL = (
    ("ImagePositionPatient", "(0020,0032)"),
    ("ImageOrientationPatient", "(0020,0037)"),
    ("SliceThickness", "(0018,0050)"),
    ("SliceLocation", "(0020,1041)"),
)
_CSPINE_BODY_PARTS = ("CSPINE", "NECK", "SPINE", "HEADNECK", "CERVICAL SPINE", "C-SPINE")
_LATERAL_VIEWS = ("LL", "RL", "LATERAL", "LAT", "LLD", "RLD", "LATERAL LEFT", "LATERAL RIGHT")


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip().upper()


def radiograph_like_problem(ds: Dataset) -> str | None:
    """Why an OT/SC (or Modality-less) header does not look like a radiograph, or None when it does:
    monochrome, at least :data:`MIN_GENERIC_SIDE_PX` on each side, no cross-sectional geometry."""
    for keyword, tag in _CROSS_SECTIONAL:
        if keyword in ds and ds[keyword].value not in (None, ""):
            return f"it has {tag} {keyword}, an attribute of cross-sectional slices"
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        return None  # the reader's own Rows/Columns check names the bad value
    if rows == 0 or columns == 0:
        return None  # not an image at all: the SOP class or the reader's Rows check says so
    if min(rows, columns) < MIN_GENERIC_SIDE_PX:
        return f"(0028,0010) Rows x (0028,0011) Columns {rows} x {columns} is smaller than {MIN_GENERIC_SIDE_PX} px a side"
    return None


def check_radiograph(ds: Dataset, name: str) -> None:
    """Raise InputError unless the header describes a greyscale projection radiograph."""
    modality = _text(ds, "Modality")
    if modality not in RADIOGRAPH_MODALITIES + GENERIC_MODALITIES:
        raise InputError(
            f"{name}: (0008,0060) Modality {modality!r} is not a projection radiograph; expected "
            f"{', '.join(RADIOGRAPH_MODALITIES)}, or OT/SC with a radiograph-like header"
        )
    photometric = _text(ds, "PhotometricInterpretation")
    if photometric and photometric not in GREY_PHOTOMETRIC:
        raise InputError(
            f"{name}: (0028,0004) PhotometricInterpretation {photometric!r} is not a greyscale radiograph; "
            f"expected {' or '.join(GREY_PHOTOMETRIC)}"
        )
    if modality in GENERIC_MODALITIES:
        problem = radiograph_like_problem(ds)
        if problem is not None:
            shown = f"Modality {modality!r}" if modality else "Modality absent"
            raise InputError(f"{name}: (0008,0060) {shown} and the header does not look like a radiograph: {problem}")
    sop = str(ds.get("SOPClassUID", "") or "").strip()
    if sop and sop not in IMAGE_SOP_CLASSES:
        raise InputError(
            f"{name}: (0008,0016) SOPClassUID {sop} ({UID(sop).name}) is not a projection radiograph image; "
            "expected CR, DX or Secondary Capture Image Storage"
        )


def lateral_cspine_warnings(ds: Dataset) -> list[str]:
    """Header values that say the image may not be a lateral cervical spine film (warnings only)."""
    out: list[str] = []
    body = _text(ds, "BodyPartExamined")
    if body and body not in _CSPINE_BODY_PARTS:
        out.append(f"(0018,0015) BodyPartExamined {body!r} is not a cervical spine (expected CSPINE or NECK); "
                   "measured anyway")
    view = _text(ds, "ViewPosition")
    if view and view not in _LATERAL_VIEWS:
        out.append(f"(0018,5101) ViewPosition {view!r} is not lateral (expected LL or RL); measured anyway")
    laterality = _text(ds, "ImageLaterality")
    if laterality in ("L", "R", "B"):
        out.append(f"(0020,0062) ImageLaterality {laterality!r} names a paired body part; a cervical spine is 'U'; "
                   "measured anyway")
    return out
