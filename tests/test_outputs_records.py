"""JSON records: structure, schema validation, null handling, stdout."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.outputs.records import (
    RECORD_SCHEMA,
    json_safe,
    record_error,
    record_ok,
    validate_record,
    write_records,
)
from test_outputs_support import SPACING_MM, make_measurement, spine_landmarks_mm

SIX = ["borden_mm", "cci_percent", "ccl_deg", "cobb_c0_c7_deg", "cobb_c1_c7_deg", "cobb_c2_c7_deg"]


def test_ok_record_structure_and_values():
    rec = record_ok("a/b.dcm", make_measurement())
    assert list(rec) == ["file", "ok", "error", "measurement"]
    assert rec["file"] == "a/b.dcm" and rec["ok"] is True and rec["error"] is None
    m = rec["measurement"]
    assert [lm["name"] for lm in m["landmarks"]] == list(LANDMARK_NAMES)
    assert list(m["parameters"])[:6] == SIX
    # pixel coordinates are the construction's mm / spacing; mm back again
    pts_mm = spine_landmarks_mm()
    c7_pi = m["landmarks"][LANDMARK_NAMES.index("C7_PI")]
    assert c7_pi["x_px"] == pytest.approx(pts_mm[LANDMARK_NAMES.index("C7_PI"), 0] / SPACING_MM, abs=1e-3)
    assert c7_pi["y_mm"] == pytest.approx(pts_mm[LANDMARK_NAMES.index("C7_PI"), 1], abs=1e-3)
    # C2/C7 inferior endplate tilts of the construction are atan(2k(y - y_mid)), k = 0.004, y - y_mid = -52.5, 35
    expected_cobb = math.degrees(math.atan(0.42)) + math.degrees(math.atan(0.28))
    assert m["parameters"]["cobb_c2_c7_deg"] == pytest.approx(expected_cobb, abs=1e-3)
    assert m["pixel_spacing_mm"] == [SPACING_MM, SPACING_MM]
    assert m["model"]["id"] == "cervisag_hrnet_w32"


def test_real_records_validate_against_schema():
    records = [
        record_ok("x.dcm", make_measurement()),
        record_ok("y.dcm", make_measurement(hidden=("C7_PI", "MCG_OCC"))),
        record_ok("z.png", make_measurement(spacing_mm=None)),
        record_error("bad.dcm", "bad.dcm: (0028,0004) PhotometricInterpretation 'YBR_FULL' found, MONOCHROME1/2 expected"),
    ]
    for rec in json.loads(json.dumps(records)):
        assert validate_record(rec) == [], rec["file"]


def test_validator_reports_problems():
    rec = json.loads(json.dumps(record_ok("x.dcm", make_measurement())))
    rec["measurement"]["landmarks"] = rec["measurement"]["landmarks"][:33]
    rec["measurement"]["parameters"]["ccl_deg"] = "12"
    del rec["error"]
    rec["extra"] = 1
    problems = " | ".join(validate_record(rec))
    assert "missing required key 'error'" in problems
    assert "unexpected key 'extra'" in problems
    assert "$.measurement.landmarks: found 33 items" in problems
    assert "$.measurement.parameters.ccl_deg: found str" in problems
    assert validate_record({"file": "f", "ok": 1, "error": None, "measurement": None}) != []


def test_schema_agrees_with_jsonschema_when_installed():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(RECORD_SCHEMA).validate(
        json.loads(json.dumps(record_ok("x.dcm", make_measurement(hidden=("C2_PI",)))))
    )


def test_hidden_landmarks_and_missing_parameters_are_null():
    rec = record_ok("x.dcm", make_measurement(hidden=("C7_PI",)))
    m = rec["measurement"]
    lm = m["landmarks"][LANDMARK_NAMES.index("C7_PI")]
    assert lm["visible"] is False and lm["x_mm"] is None and lm["y_mm"] is None
    # C7_PI ends the Borden and CCI chords and every Cobb's C7 endplate line, and is a C7 centroid corner
    for key in SIX:
        assert m["parameters"][key] is None, key
    assert isinstance(m["parameters"]["t1_slope_deg"], float)  # T1 does not need C7_PI
    assert "C7_PI" in m["missing_landmarks"]


def test_no_spacing_gives_null_mm_values():
    m = record_ok("x.png", make_measurement(spacing_mm=None))["measurement"]
    assert m["pixel_spacing_mm"] is None and m["spacing_source"] == "none"
    assert all(lm["x_mm"] is None for lm in m["landmarks"])
    assert m["parameters"]["borden_mm"] is None
    assert isinstance(m["parameters"]["cobb_c2_c7_deg"], float)


def test_error_record_keeps_first_line():
    rec = record_error("f.dcm", "f.dcm: no pixel data\nTraceback ...")
    assert rec == {"file": "f.dcm", "ok": False, "error": "f.dcm: no pixel data", "measurement": None}


def test_json_safe_turns_non_finite_into_null():
    out = json_safe({"a": float("nan"), "b": [np.float32(np.inf), -np.inf, np.int64(3)], "c": (np.bool_(True), 1.5)})
    assert out == {"a": None, "b": [None, None, 3], "c": [True, 1.5]}
    with pytest.raises(TypeError, match="object"):
        json_safe({"x": object()})


def test_write_records_file_has_no_nan(tmp_path):
    rec = record_ok("x.dcm", make_measurement())
    rec["measurement"]["timings_ms"]["infer"] = float("nan")
    rec["measurement"]["parameters"]["o_c2_deg"] = float("inf")
    path = tmp_path / "out.json"
    write_records([rec, record_error("y.dcm", "y.dcm: unreadable")], path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data[0]["measurement"]["timings_ms"]["infer"] is None
    assert data[0]["measurement"]["parameters"]["o_c2_deg"] is None
    assert [r["ok"] for r in data] == [True, False]
    assert not (tmp_path / "out.json.tmp").exists()


def test_write_records_dash_goes_to_stdout(capsys):
    write_records([record_error("y.dcm", "y.dcm: unreadable")], "-")
    data = json.loads(capsys.readouterr().out)
    assert data == [{"file": "y.dcm", "ok": False, "error": "y.dcm: unreadable", "measurement": None}]
