"""Outputs of a measurement: JSON records, the overlay PNG, and DICOM SC/SR for PACS.

- :mod:`.records`: ``record_ok``, ``record_error``, ``write_records``, ``RECORD_SCHEMA``;
- :mod:`.overlay`: ``render_overlay``, ``save_overlay`` (OpenCV only);
- :mod:`.dicom_out`: ``write_secondary_capture``, ``write_structured_report``; :mod:`.gsps`:
  ``write_presentation_state`` (pydicom only).

Only :mod:`.records` is imported here; the others load on first use.
"""
from __future__ import annotations

from .records import RECORD_SCHEMA, record_error, record_ok, validate_record, write_records

__all__ = ["RECORD_SCHEMA", "record_error", "record_ok", "validate_record", "write_records"]
