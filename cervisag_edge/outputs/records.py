"""JSON records of the ``--json`` output (schema: ``docs/output.md``).

One record per input file::

    {"file": str, "ok": bool, "error": str | null, "measurement": object | null}

``measurement`` is :meth:`cervisag_edge.core.measurement.Measurement.to_dict`. Non-finite numbers
(NaN, ±inf) never reach the JSON text: they become ``null``.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from ..core.landmarks import NUM_LANDMARKS
from ..core.parameters import PARAMETER_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement
    from ..runner import StudyResult

logger = logging.getLogger(__name__)

RECORD_PARAMETER_NAMES: tuple[str, ...] = PARAMETER_NAMES

_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}

#: JSON-Schema (draft 2020-12) of one record. Printed in ``docs/output.md``.
RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://cervisag-edge/schemas/record-1.0.json",
    "title": "cervisag-edge measurement record",
    "type": "object",
    "required": ["file", "ok", "error", "measurement"],
    "additionalProperties": False,
    "properties": {
        "file": {"type": "string"},
        "ok": {"type": "boolean"},
        "error": {"type": ["string", "null"]},
        "measurement": {
            "type": ["object", "null"],
            "required": [
                "schema_version",
                "landmarks",
                "parameters",
                "missing_landmarks",
                "pixel_spacing_mm",
                "spacing_source",
                "image_size_px",
                "model",
                "timings_ms",
                "warnings",
            ],
            "additionalProperties": True,
            "properties": {
                "schema_version": {"type": "string"},
                "landmarks": {
                    "type": "array",
                    "minItems": NUM_LANDMARKS,
                    "maxItems": NUM_LANDMARKS,
                    "items": {
                        "type": "object",
                        "required": ["name", "x_px", "y_px", "x_mm", "y_mm", "confidence", "visible"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "x_px": _NUM_OR_NULL,
                            "y_px": _NUM_OR_NULL,
                            "x_mm": _NUM_OR_NULL,
                            "y_mm": _NUM_OR_NULL,
                            "confidence": _NUM_OR_NULL,
                            "visible": {"type": "boolean"},
                            "sd_mm": _NUM_OR_NULL,
                            "estimated": {"type": "boolean"},
                        },
                    },
                },
                "parameters": {
                    "type": "object",
                    "required": list(RECORD_PARAMETER_NAMES),
                    "additionalProperties": _NUM_OR_NULL,
                    "properties": {name: _NUM_OR_NULL for name in RECORD_PARAMETER_NAMES},
                },
                "missing_landmarks": {"type": "array", "items": {"type": "string"}},
                "pixel_spacing_mm": {
                    "type": ["array", "null"],
                    "minItems": 2,
                    "maxItems": 2,
                    "items": {"type": "number", "exclusiveMinimum": 0},
                },
                "spacing_source": {"type": "string"},
                "image_size_px": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "items": {"type": "integer", "minimum": 1},
                },
                "model": {
                    "type": "object",
                    "required": ["id", "sha256", "backend", "precision"],
                    "additionalProperties": True,
                    "properties": {
                        "id": {"type": "string"},
                        "sha256": {"type": "string"},
                        "backend": {"type": "string"},
                        "precision": {"type": "string"},
                    },
                },
                "timings_ms": {"type": "object", "additionalProperties": _NUM_OR_NULL},
                "warnings": {"type": "array", "items": {"type": "string"}},
                "parameter_intervals": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["low", "high", "estimated"],
                        "additionalProperties": False,
                        "properties": {"low": _NUM_OR_NULL, "high": _NUM_OR_NULL, "estimated": {"type": "boolean"}},
                    },
                },
                "quality_flags": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["flag", "reason"],
                        "additionalProperties": False,
                        "properties": {"flag": {"type": "string"}, "reason": {"type": "string"}},
                    },
                },
            },
        },
    },
}


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    NaN and ±inf become ``None``; numpy scalars and arrays become Python numbers and lists;
    tuples become lists; mapping keys become strings.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, PathLike):
        return str(value)
    raise TypeError(f"value of type {type(value).__name__} cannot be written to JSON: {value!r}")


def record_ok(file: str | PathLike[str], measurement: "Measurement") -> dict[str, Any]:
    """The record of a measured file: ``{"file", "ok": true, "error": null, "measurement"}``."""
    return {"file": str(file), "ok": True, "error": None, "measurement": json_safe(measurement.to_dict())}


def record_error(file: str | PathLike[str], error_message: str) -> dict[str, Any]:
    """The record of a file that could not be measured: ``ok`` false, ``measurement`` null.

    ``error_message`` is kept to its first line (errors of this package are one line)."""
    message = str(error_message).strip().splitlines()
    return {"file": str(file), "ok": False, "error": message[0] if message else "unknown error", "measurement": None}


def record_of(result: "StudyResult") -> dict[str, Any]:
    """The record of one result of the study runner (:func:`record_ok` or :func:`record_error`)."""
    if result.measurement is not None and result.error is None:
        return record_ok(result.path, result.measurement)
    return record_error(result.path, result.error or "unknown error")


class RecordSink:
    """Consumes the runner's results into :attr:`records`, one JSON record each (input order)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def consume(self, result: "StudyResult") -> dict[str, Any]:
        """Append the record of ``result``; returns it."""
        rec = record_of(result)
        self.records.append(rec)
        return rec

    def write(self, path_or_dash: str | PathLike[str]) -> None:
        write_records(self.records, path_or_dash)


def dumps_records(records: Iterable[Mapping[str, Any]]) -> str:
    """The JSON text of a list of records (two-space indent, NaN/inf as null, trailing newline)."""
    return json.dumps(json_safe(list(records)), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_records(records: Iterable[Mapping[str, Any]], path_or_dash: str | PathLike[str]) -> None:
    """Write ``records`` as one JSON array to a file, or to standard output when ``path_or_dash`` is ``"-"``.

    A file is written to ``<name>.tmp`` first and renamed, so readers never see half a file.
    """
    text = dumps_records(records)
    if str(path_or_dash) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path_or_dash)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    logger.info("wrote %s", path)


_JSON_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def validate_record(record: Any, schema: Mapping[str, Any] = RECORD_SCHEMA) -> list[str]:
    """Check ``record`` against ``schema``; the list of problems (empty when valid).

    A small validator for the JSON-Schema keywords :data:`RECORD_SCHEMA` uses: ``type``,
    ``required``, ``properties``, ``additionalProperties`` (boolean or schema), ``items``,
    ``minItems``, ``maxItems``, ``minimum`` and ``exclusiveMinimum``. Each problem names the
    JSON path, the value found and what was expected.
    """
    problems: list[str] = []
    _check(record, schema, "$", problems)
    return problems


def _check(value: Any, schema: Mapping[str, Any], where: str, problems: list[str]) -> None:
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_JSON_TYPES[t](value) for t in allowed):
            problems.append(f"{where}: found {type(value).__name__} {value!r:.60}, expected {' or '.join(allowed)}")
            return
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                problems.append(f"{where}: missing required key {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{where}.{key}", problems)
            elif extra is False:
                problems.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, Mapping):
                _check(item, extra, f"{where}.{key}", problems)
    elif isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{where}: found {len(value)} items, expected at least {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where}: found {len(value)} items, expected at most {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{where}[{i}]", problems)
    elif _JSON_TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: found {value}, expected >= {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            problems.append(f"{where}: found {value}, expected > {schema['exclusiveMinimum']}")
