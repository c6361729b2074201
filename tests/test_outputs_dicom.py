"""DICOM Secondary Capture and Comprehensive 3D SR: pydicom/highdicom round trips."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import cervisag_edge
from cervisag_edge.errors import InputError
from cervisag_edge.outputs.overlay import render_overlay
from test_outputs_support import make_measurement, synthetic_display

hd = pytest.importorskip("highdicom")
from cervisag_edge.outputs.dicom_out import (  # noqa: E402
    SC_SERIES_NUMBER,
    SR_CODES,
    read_sr_measurements,
    write_secondary_capture,
    write_structured_report,
)

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def _source(orientation: bool = True) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = 1800, 1400
    ds.PixelSpacing = [0.15, 0.15]
    ds.ImagerPixelSpacing = [0.165, 0.165]
    if orientation:
        ds.PatientOrientation = ["P", "F"]
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P123"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "S1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.ReferringPhysicianName = ""
    return ds


@pytest.fixture(scope="module")
def overlay():
    return render_overlay(synthetic_display(700, 900), make_measurement())


IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "AccessionNumber", "StudyID", "StudyDate")


def test_sc_round_trip_with_source(tmp_path, overlay):
    src = _source()
    path = tmp_path / "sc.dcm"
    write_secondary_capture(overlay, make_measurement(), path, src)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    for kw in IDENTITY:
        assert str(back[kw].value) == str(src[kw].value), kw
    assert back.SeriesInstanceUID != src.SeriesInstanceUID and back.SOPInstanceUID != src.SOPInstanceUID
    assert back.SeriesNumber == SC_SERIES_NUMBER
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3
    np.testing.assert_array_equal(back.pixel_array, overlay)
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert "NOT FOR DIAGNOSTIC USE" in back.SeriesDescription
    assert list(back.PatientOrientation) == ["P", "F"]


def test_sc_without_source_is_synthetic_study(tmp_path, overlay):
    path = tmp_path / "sc.dcm"
    write_secondary_capture(overlay, make_measurement(), path, None)
    back = pydicom.dcmread(path)
    assert "synthetic study" in back.SeriesDescription
    assert pydicom.uid.UID(back.StudyInstanceUID).is_valid
    assert str(back.PatientName) == "" and back.PatientID == "" and back.PatientBirthDate == ""
    # facing "left" (anterior = image left): rows run posteriorly
    assert list(back.PatientOrientation) == ["P", "F"]
    np.testing.assert_array_equal(back.pixel_array, overlay)


def test_sc_rejects_bad_overlay_and_source(tmp_path, overlay):
    with pytest.raises(InputError, match="expected \\(H, W, 3\\) uint8"):
        write_secondary_capture(overlay.astype(np.float32), make_measurement(), tmp_path / "x.dcm", None)
    src = _source()
    del src.SOPInstanceUID
    with pytest.raises(InputError, match="SOPInstanceUID is missing"):
        write_secondary_capture(overlay, make_measurement(), tmp_path / "x.dcm", src)


def test_sr_round_trip_values_units_and_references(tmp_path):
    src = _source()
    m = make_measurement()
    path = tmp_path / "sr.dcm"
    write_structured_report(m, path, src)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == pydicom.uid.Comprehensive3DSRStorage
    for kw in IDENTITY:
        assert str(back[kw].value) == str(src[kw].value), kw
    ref = back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID and ref.ReferencedSOPClassUID == src.SOPClassUID
    values = read_sr_measurements(path)
    params = m.parameters.as_dict()
    units = {"borden_mm": "mm", "cci_percent": "%"}
    assert set(values) == set(SR_CODES)
    for key, (value, unit) in values.items():
        assert value == pytest.approx(params[key], abs=1e-6), key
        assert unit == units.get(key, "deg"), key
    # highdicom parses the tree back: the parameters group (then the landmarks group); its
    # measurements reference the source image
    sr = hd.sr.srread(path)
    mgroups = sr.content.get_image_measurement_groups()
    assert len(mgroups) == 2
    meas = mgroups[0].get_measurements()
    assert len(meas) == 6
    for item in meas:
        assert item.referenced_images[0].referenced_sop_instance_uid == src.SOPInstanceUID
    texts = {
        i.ConceptNameCodeSequence[0].CodeValue: i.TextValue for i in _walk(back.ContentSequence) if i.ValueType == "TEXT"
    }
    assert texts["111001"] == "cervisag-edge"  # Algorithm Name
    assert texts["111003"] == cervisag_edge.__version__  # Algorithm Version
    device = [i for i in _walk(back.ContentSequence) if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "121013"]
    assert device[0].TextValue == "cervisag-edge"  # Device Observer Name
    # the image library (DCM 111028) lists the source image
    library = [i for i in _walk(back.ContentSequence) if i.ConceptNameCodeSequence[0].CodeValue == "111028"]
    images = [i for i in _walk(library[0].ContentSequence) if i.ValueType == "IMAGE"]
    assert images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def _walk(items):
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def test_sr_omits_missing_values_and_works_without_orientation(tmp_path):
    src = _source(orientation=False)  # no image library entry possible: measurements still reference the source
    m = make_measurement(hidden=("MCG_OCC",))
    assert m.parameters.cobb_c0_c7_deg is None
    path = tmp_path / "sr.dcm"
    write_structured_report(m, path, src)
    values = read_sr_measurements(path)
    assert "cobb_c0_c7_deg" not in values and "cobb_c1_c7_deg" in values
    assert len(values) == 5


def test_sr_for_png_input_references_the_overlay_sc(tmp_path, overlay):
    m = make_measurement()
    sc = write_secondary_capture(overlay, m, tmp_path / "sc.dcm", None)
    write_structured_report(m, tmp_path / "sr.dcm", None, overlay_sc=sc)
    back = pydicom.dcmread(tmp_path / "sr.dcm")
    assert back.StudyInstanceUID == sc.StudyInstanceUID
    assert "synthetic study" in back.SeriesDescription
    mgroups = hd.sr.srread(tmp_path / "sr.dcm").content.get_image_measurement_groups()
    refs = {item.referenced_images[0].referenced_sop_instance_uid for item in mgroups[0].get_measurements()}
    assert refs == {sc.SOPInstanceUID}
    with pytest.raises(InputError, match="needs a source image"):
        write_structured_report(m, tmp_path / "x.dcm", None)


# --------------------------------------------------------------------------- coordinates, UIDs, GSPS


def _items(ds, value_type):
    return [i for i in _walk(ds.ContentSequence) if i.ValueType == value_type]


def test_sr_carries_landmark_points_and_parameter_lines_as_scoord(tmp_path):
    from cervisag_edge.outputs.dicom_out import CONFIDENCE_CODE, PRIVATE_SCHEME
    from cervisag_edge.outputs.graphics import parameter_polylines

    src = _source()
    m = make_measurement(hidden=("C1_ANT",))
    back = pydicom.dcmread(write_structured_report(m, tmp_path / "sr.dcm", src) and tmp_path / "sr.dcm")
    scoords = _items(back, "SCOORD")
    points = [s for s in scoords if s.GraphicType == "POINT"]
    lines = [s for s in scoords if s.GraphicType == "POLYLINE"]
    visible = [lm for lm in m.landmarks if lm.visible]
    assert len(points) == len(visible) == 33
    # one POLYLINE per construction line: 2 per Cobb angle with a value (C1-C7 lost C1_ANT), 2 for Borden
    assert m.parameters.cobb_c1_c7_deg is None
    assert len(lines) == len(parameter_polylines(m)) == 2 + 2 + 2
    for s in scoords:  # each coordinate selects the source image
        assert s.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # each landmark: its confidence, its name (tracking identifier) and its point in image coordinates
    conf_items = [i for i in _items(back, "NUM") if i.ConceptNameCodeSequence[0].CodeValue == CONFIDENCE_CODE.value]
    assert len(conf_items) == len(visible)
    by_name = {lm.name: lm for lm in visible}
    for item in conf_items:
        children = item.ContentSequence
        name = next(c.TextValue for c in children if c.ValueType == "TEXT" and c.ConceptNameCodeSequence[0].CodeValue == "112039")
        lm = by_name[name]
        assert float(item.MeasuredValueSequence[0].NumericValue) == pytest.approx(lm.confidence, abs=1e-6)
        point = next(c for c in children if c.ValueType == "SCOORD")
        np.testing.assert_allclose(point.GraphicData, [lm.x_px + 0.5, lm.y_px + 0.5], atol=1e-3)
    schemes = {i.CodingSchemeDesignator for i in back.CodingSchemeIdentificationSequence}
    assert PRIVATE_SCHEME in schemes
    groups = hd.sr.srread(tmp_path / "sr.dcm").content.get_image_measurement_groups()
    assert len(groups) == 2 and len(groups[1].get_measurements()) == len(visible)
    assert read_sr_measurements(back).keys() == {k for k, v in m.parameters.as_dict().items() if v is not None}


def test_result_uids_are_deterministic_per_source_model_and_kind(tmp_path, overlay):
    from dataclasses import replace

    src = _source()
    m = make_measurement()
    a = write_structured_report(m, tmp_path / "a.dcm", src)
    b = write_structured_report(m, tmp_path / "b.dcm", src)
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    sc = write_secondary_capture(overlay, m, tmp_path / "sc.dcm", src)
    assert sc.SOPInstanceUID not in (a.SOPInstanceUID, src.SOPInstanceUID)
    other_model = write_structured_report(replace(m, model_sha256="f" * 64), tmp_path / "c.dcm", src)
    assert other_model.SOPInstanceUID != a.SOPInstanceUID
    assert a.SOPInstanceUID.startswith("2.25.") and pydicom.uid.UID(a.SOPInstanceUID).is_valid
    # without a source (PNG input) nothing ties the output to an instance: fresh UIDs
    s1 = write_secondary_capture(overlay, m, tmp_path / "s1.dcm", None)
    s2 = write_secondary_capture(overlay, m, tmp_path / "s2.dcm", None)
    assert s1.SOPInstanceUID != s2.SOPInstanceUID


def test_gsps_draws_points_lines_labels_and_values_on_the_source(tmp_path):
    from cervisag_edge.outputs.graphics import parameter_polylines
    from cervisag_edge.outputs.gsps import GSPS_SERIES_NUMBER, value_lines, write_presentation_state

    src = _source()
    src.WindowCenter, src.WindowWidth = 2048, 4096
    src.SamplesPerPixel, src.PhotometricInterpretation = 1, "MONOCHROME2"
    src.BitsAllocated, src.BitsStored, src.HighBit, src.PixelRepresentation = 16, 12, 11, 0
    m = make_measurement()
    write_presentation_state(m, tmp_path / "pr.dcm", src)
    back = pydicom.dcmread(tmp_path / "pr.dcm")
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1" and back.SeriesNumber == GSPS_SERIES_NUMBER
    for kw in IDENTITY:
        assert str(back[kw].value) == str(src[kw].value), kw
    assert back.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    objects = [g for ann in back.GraphicAnnotationSequence for g in ann.get("GraphicObjectSequence", [])]
    texts = [t.UnformattedTextValue for ann in back.GraphicAnnotationSequence for t in ann.get("TextObjectSequence", [])]
    assert sum(g.GraphicType == "POINT" for g in objects) == sum(lm.visible for lm in m.landmarks)
    assert sum(g.GraphicType == "POLYLINE" for g in objects) == len(parameter_polylines(m)) == 8
    assert all(g.GraphicAnnotationUnits == "PIXEL" for g in objects)
    assert set(value_lines(m)) <= set(texts) and "C2" in texts
    assert any(t.startswith("Cobb C2-C7: ") and t.endswith(" deg") for t in texts)
    assert float(back.SoftcopyVOILUTSequence[0].WindowCenter) == 2048
    assert {layer.GraphicLayer for layer in back.GraphicLayerSequence} == {"LINES", "LANDMARKS", "VALUES"}


def test_gsps_refuses_a_source_without_image_attributes(tmp_path):
    from cervisag_edge.outputs.gsps import write_presentation_state

    with pytest.raises(InputError, match="Presentation State"):
        write_presentation_state(make_measurement(), tmp_path / "pr.dcm", _source())
