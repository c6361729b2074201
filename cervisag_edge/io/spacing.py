"""Pixel spacing from DICOM headers and from JSON sidecars. Bad spacing is a warning, never an error.

DICOM precedence (PS3.3 C.7.6.2.1 / C.8.11.7): PixelSpacing (calibrated at the patient plane) >
ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor > ImagerPixelSpacing (detector plane).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

__all__ = ["dicom_spacing", "sidecar_spacing", "sidecar_candidates"]

def _fmt_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "[" + ", ".join(str(v) for v in value) + "]"
    return repr(value)


def _element_value(ds: Dataset, keyword: str) -> tuple[bool, Any, str | None]:
    """(present, value, problem). ``problem`` is set when the stored value cannot be parsed."""
    tag = Tag(keyword)
    if tag not in ds:
        return False, None, None
    try:
        return True, ds[tag].value, None
    except Exception:  # pydicom raises ValueError etc. for a non-numeric DS
        raw = ds.get_item(tag)
        raw_value = getattr(raw, "value", None)
        if isinstance(raw_value, bytes):
            raw_value = raw_value.decode("latin-1", "replace").strip(" \x00")
        return True, raw_value, f"{_tag_str(tag)} {keyword} {raw_value!r} is not numeric"


def _tag_str(tag: Any) -> str:
    t = Tag(tag)
    return f"({t.group:04X},{t.element:04X})"


def _pair(ds: Dataset, keyword: str) -> tuple[bool, tuple[float, float] | None, str | None]:
    """Parse a (row, col) spacing element: (present, value or None, warning or None)."""
    present, value, problem = _element_value(ds, keyword)
    if not present:
        return False, None, None
    tag = _tag_str(Tag(keyword))
    if problem is not None:
        return True, None, f"{problem}; expected 2 numbers > 0 (row, col) in mm"
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else (
        [] if value in (None, "") else [value]
    )
    shown = _fmt_value(value)
    if len(items) != 2:
        return True, None, f"{tag} {keyword} {shown} has VM {len(items)}; expected 2 numbers > 0 (row, col) in mm"
    try:
        row, col = (float(v) for v in items)
    except (TypeError, ValueError):
        return True, None, f"{tag} {keyword} {shown} is not numeric; expected 2 numbers > 0 (row, col) in mm"
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        return True, None, f"{tag} {keyword} {shown} is zero, negative or not finite; expected 2 numbers > 0 (row, col) in mm"
    return True, (row, col), None


def _magnification(ds: Dataset) -> tuple[bool, float | None, str | None]:
    keyword = "EstimatedRadiographicMagnificationFactor"
    present, value, problem = _element_value(ds, keyword)
    if not present:
        return False, None, None
    tag = _tag_str(Tag(keyword))
    if problem is not None:
        return True, None, f"{problem}; expected a number > 0"
    try:
        factor = float(value)
    except (TypeError, ValueError):
        return True, None, f"{tag} {keyword} {_fmt_value(value)} is not a single number; expected a number > 0"
    if not (math.isfinite(factor) and factor > 0):
        return True, None, f"{tag} {keyword} {_fmt_value(value)} is zero, negative or not finite; expected a number > 0"
    return True, factor, None


def dicom_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str, list[str]]:
    """(spacing (row, col) mm or None, source, warnings) from a DICOM header."""
    warnings: list[str] = []
    _present, spacing, warning = _pair(ds, "PixelSpacing")
    if spacing is not None:
        return spacing, "PixelSpacing", warnings
    if warning:
        warnings.append(warning)
    ips_present, imager, warning = _pair(ds, "ImagerPixelSpacing")
    if warning:
        warnings.append(warning)
    if imager is not None:
        _m_present, factor, m_warning = _magnification(ds)
        if factor is not None:
            return (
                (imager[0] / factor, imager[1] / factor),
                "ImagerPixelSpacing/EstimatedRadiographicMagnificationFactor",
                warnings,
            )
        if m_warning:
            warnings.append(m_warning)
        warnings.append(
            "(0018,1164) ImagerPixelSpacing used without magnification correction: spacing is at the "
            "detector plane, so distances in mm are overestimated by the geometric magnification"
        )
        return imager, "ImagerPixelSpacing", warnings
    if not _present and not ips_present:
        warnings.append(
            "no pixel spacing: (0028,0030) PixelSpacing and (0018,1164) ImagerPixelSpacing are absent; "
            "distances are in pixels only"
        )
    return None, "none", warnings


def sidecar_candidates(path: Path) -> tuple[Path, Path]:
    """``<file>.json`` then ``<stem>.json`` next to the image."""
    return path.with_name(path.name + ".json"), path.with_suffix(".json")


def sidecar_spacing(path: Path) -> tuple[tuple[float, float] | None, str, list[str]]:
    """(spacing, source, warnings) from a JSON sidecar ``{"pixel_spacing_mm": [row, col]}``."""
    for candidate in sidecar_candidates(path):
        if not candidate.is_file():
            continue
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, "none", [f"sidecar {candidate.name} is unreadable ({type(exc).__name__}: {exc}); no pixel spacing"]
        value = data.get("pixel_spacing_mm") if isinstance(data, dict) else None
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value
        )
        if not ok:
            return None, "none", [
                f"sidecar {candidate.name} pixel_spacing_mm {value!r} is invalid; expected [row, col] in mm, "
                "two numbers > 0; no pixel spacing"
            ]
        return (float(value[0]), float(value[1])), "sidecar", []
    return None, "none", [
        f"no pixel spacing: no sidecar {path.name}.json or {path.stem}.json and no pixel_spacing_mm argument; "
        "distances are in pixels only"
    ]
