"""The SR carries each parameter's 95 % interval (TID 310 ranges of uncertainty), marks estimated
values (Derivation) and lists the quality flags; read back with pydicom alone, and checked with
dsrdump (dcmtk) and dciodvfy (dicom3tools) when installed."""
from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cervisag_edge.outputs.dicom_out import (
    DERIVATION_ESTIMATED_CODE,
    INTERVAL_LEVEL,
    LOWER_UNCERTAINTY_CODE,
    QUALITY_FLAG_CODE,
    SR_CODES,
    UPPER_UNCERTAINTY_CODE,
    read_sr_measurements,
    write_structured_report,
)
from test_node_support import dcmtk
from test_outputs_support import make_measurement

UNITS = {"borden_mm": "mm", "cci_percent": "%"}


def _source() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality, ds.Rows, ds.Columns = "DX", 1800, 1400
    ds.PatientOrientation, ds.ImagerPixelSpacing = ["P", "F"], [0.15, 0.15]
    ds.PatientName, ds.PatientID = "Doe^Jane", "P123"
    return ds


def _measurement():
    """A measurement with asymmetric intervals (two of them estimated) and two quality flags."""
    m = make_measurement()
    values = m.parameters.as_dict()
    intervals = {}
    for i, key in enumerate(SR_CODES):
        v = float(values[key])
        intervals[key] = {"low": v - 0.5 - i, "high": v + 1.25 + 0.5 * i, "estimated": key in ("cobb_c2_c7_deg", "borden_mm")}
    flags = ({"flag": "partial_field_of_view", "reason": "T1 is below the image"},
             {"flag": "low_confidence", "reason": "mean confidence 0.41 < 0.5"})
    return replace(m, parameter_intervals=intervals, quality_flags=flags)


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _parameter_items(ds) -> dict[str, Dataset]:
    """parameter -> its NUM item, found by concept name and measurement method (pydicom only)."""
    lookup = {(n.value, n.scheme_designator, m.value if m else None): k for k, (n, m, _) in SR_CODES.items()}
    out = {}
    for item in _walk(ds.ContentSequence):
        if item.ValueType != "NUM":
            continue
        c = item.ConceptNameCodeSequence[0]
        method = next((ch.ConceptCodeSequence[0].CodeValue for ch in item.get("ContentSequence", [])
                       if ch.ValueType == "CODE" and ch.ConceptNameCodeSequence[0].CodeValue == "370129005"), None)
        key = lookup.get((c.CodeValue, c.CodingSchemeDesignator, method))
        if key is not None:
            out[key] = item
    return out


def _property(item: Dataset, code) -> tuple[float, str]:
    found = [ch for ch in item.ContentSequence if ch.RelationshipType == "HAS PROPERTIES"
             and ch.ConceptNameCodeSequence[0].CodeValue == code.value
             and ch.ConceptNameCodeSequence[0].CodingSchemeDesignator == code.scheme_designator]
    assert len(found) == 1, code
    mv = found[0].MeasuredValueSequence[0]
    return float(mv.NumericValue), str(mv.MeasurementUnitsCodeSequence[0].CodeValue)


def test_sr_intervals_round_trip_through_pydicom(tmp_path):
    m = _measurement()
    path = tmp_path / "sr.dcm"
    write_structured_report(m, path, _source())
    back = pydicom.dcmread(path)
    items = _parameter_items(back)
    assert set(items) == set(SR_CODES)
    for key, item in items.items():
        value = float(item.MeasuredValueSequence[0].FloatingPointValue)
        upper, upper_unit = _property(item, UPPER_UNCERTAINTY_CODE)
        lower, lower_unit = _property(item, LOWER_UNCERTAINTY_CODE)
        iv = m.parameter_intervals[key]
        # Numeric Value is a 16-character decimal string: 1e-9 relative is what it keeps
        assert value + upper == pytest.approx(iv["high"], rel=1e-9, abs=1e-9), key
        assert value - lower == pytest.approx(iv["low"], rel=1e-9, abs=1e-9), key
        assert upper_unit == lower_unit == UNITS.get(key, "deg"), key
        derivations = [ch.ConceptCodeSequence[0].CodeValue for ch in item.ContentSequence
                       if ch.ValueType == "CODE" and ch.ConceptNameCodeSequence[0].CodeValue == "121401"]
        assert derivations == ([DERIVATION_ESTIMATED_CODE.value] if iv["estimated"] else []), key
    texts = [i.TextValue for i in _walk(back.ContentSequence) if i.ValueType == "TEXT"]
    assert INTERVAL_LEVEL in texts
    flags = [i.TextValue for i in _walk(back.ContentSequence)
             if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == QUALITY_FLAG_CODE.value]
    assert flags == [f"{f['flag']}: {f['reason']}" for f in m.quality_flags]
    assert read_sr_measurements(back).keys() == set(SR_CODES)  # the values themselves still read back


def test_sr_without_intervals_has_no_uncertainty_items(tmp_path):
    m = make_measurement()
    assert not m.parameter_intervals
    write_structured_report(m, tmp_path / "sr.dcm", _source())
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    codes = {i.ConceptNameCodeSequence[0].CodeValue for i in _walk(back.ContentSequence)}
    assert not codes & {UPPER_UNCERTAINTY_CODE.value, LOWER_UNCERTAINTY_CODE.value, "121401", QUALITY_FLAG_CODE.value}
    assert INTERVAL_LEVEL not in [i.TextValue for i in _walk(back.ContentSequence) if i.ValueType == "TEXT"]


def test_sr_skips_an_interval_that_is_not_finite(tmp_path):
    m = _measurement()
    intervals = dict(m.parameter_intervals)
    intervals["ccl_deg"] = {"low": None, "high": float("nan"), "estimated": False}
    write_structured_report(replace(m, parameter_intervals=intervals), tmp_path / "sr.dcm", _source())
    item = _parameter_items(pydicom.dcmread(tmp_path / "sr.dcm"))["ccl_deg"]
    assert all(ch.RelationshipType != "HAS PROPERTIES" for ch in item.ContentSequence)


def test_sr_with_intervals_passes_dsrdump_and_dciodvfy(tmp_path):
    path = tmp_path / "sr.dcm"
    write_structured_report(_measurement(), path, _source())
    dump = subprocess.run([dcmtk("dsrdump"), str(path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert dump.stdout.count('<has properties NUM:(,,"+, range of upper measurement uncertainty")') == len(SR_CODES)
    assert dump.stdout.count('<has properties NUM:(,,"-, range of lower measurement uncertainty")') == len(SR_CODES)
    assert dump.stdout.count('"Estimated from hidden landmarks"') == 2
    assert "Error" not in dump.stderr
    out = subprocess.run([dcmtk("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_sr_text_in_a_non_default_character_set_round_trips(tmp_path):
    """Content text is encoded with the source's Specific Character Set (here Latin-1)."""
    src = _source()
    src.SpecificCharacterSet = "ISO_IR 100"
    src.PatientName = "Müller^Jürgen"
    m = replace(_measurement(), quality_flags=({"flag": "low_confidence", "reason": "Kontrast zu schwach (Lendenwirbelsäule)"},))
    write_structured_report(m, tmp_path / "sr.dcm", src)
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    assert str(back.PatientName) == "Müller^Jürgen"
    flags = [i.TextValue for i in _walk(back.ContentSequence) if i.ValueType == "TEXT"
             and i.ConceptNameCodeSequence[0].CodeValue == QUALITY_FLAG_CODE.value]
    assert flags == ["low_confidence: Kontrast zu schwach (Lendenwirbelsäule)"]
    raw = (tmp_path / "sr.dcm").read_bytes()
    assert "Lendenwirbelsäule".encode("latin-1") in raw and "Lendenwirbelsäule".encode("utf-8") not in raw


def test_sr_landmark_tracking_uids_are_deterministic(tmp_path):
    src = _source()
    m = _measurement()
    uids = []
    for name in ("a.dcm", "b.dcm"):
        write_structured_report(m, tmp_path / name, src)
        back = pydicom.dcmread(tmp_path / name)
        uids.append([i.UID for i in _walk(back.ContentSequence) if i.ValueType == "UIDREF"])
    assert uids[0] == uids[1] and len(set(uids[0])) == len(uids[0]) > 30
    assert np.all([pydicom.uid.UID(u).is_valid for u in uids[0]])


def test_sr_switches_to_utf8_for_text_the_source_charset_cannot_hold(tmp_path):
    """A flag reason with characters outside the source's repertoire makes the SR UTF-8
    (ISO_IR 192); the copied identity stays readable."""
    src = _source()  # no Specific Character Set: default repertoire
    reason = "C7 body height 2.1 mm ≤ 4 mm at 0.15 mm/px"
    m = replace(_measurement(), quality_flags=({"flag": "implausible_anatomy", "reason": reason},))
    write_structured_report(m, tmp_path / "sr.dcm", src)
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Doe^Jane"
    flags = [i.TextValue for i in _walk(back.ContentSequence) if i.ValueType == "TEXT"
             and i.ConceptNameCodeSequence[0].CodeValue == QUALITY_FLAG_CODE.value]
    assert flags == [f"implausible_anatomy: {reason}"]
