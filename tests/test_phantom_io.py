"""Phantom files: DICOM DX tags and round trips (uncompressed and lossless compressed),
PNG + sidecar, COCO annotations.json, and the ``cervisag phantoms`` command."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from cervisag_edge.io.imaging import window_linear
from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.tooling.phantom import generate_dataset, render_phantom, write_dicom, write_png
from cervisag_edge.tooling.phantom.dicomio import COMPRESSED_SYNTAXES, DX_FOR_PRESENTATION


@pytest.fixture(scope="module")
def small():
    return render_phantom(17, 3, out_long_side=96)


def test_dicom_has_the_dx_for_presentation_tags(small, tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_dicom(small, tmp_path / "a.dcm"))
    assert ds.SOPClassUID == DX_FOR_PRESENTATION == ds.file_meta.MediaStorageSOPClassUID
    assert (ds.Modality, ds.BodyPartExamined, ds.ViewPosition) == ("DX", "CSPINE", "LATERAL")
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert ds.PhotometricInterpretation == small.photometric
    assert 12 <= ds.BitsStored <= 16 and ds.BitsStored == small.bits_stored and ds.HighBit == ds.BitsStored - 1
    # DX: identity Modality LUT; the phantom's rescale is folded into the window
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
    m, b = small.rescale_slope, small.rescale_intercept
    assert float(ds.WindowCenter) == pytest.approx((small.window_center - 0.5 - b) / m + 0.5, rel=1e-6)
    assert float(ds.WindowWidth) == pytest.approx((small.window_width - 1) / m + 1, rel=1e-6)
    np.testing.assert_allclose([float(v) for v in ds.ImagerPixelSpacing], small.imager_pixel_spacing_mm, rtol=1e-7)
    assert float(ds.EstimatedRadiographicMagnificationFactor) == pytest.approx(small.magnification, rel=1e-7)
    assert str(ds.PatientName) == "PHANTOM^CERVISAG"
    # the magnification-corrected spacing is the patient-plane spacing of the labels
    np.testing.assert_allclose(np.array([float(v) for v in ds.ImagerPixelSpacing]) / float(ds.EstimatedRadiographicMagnificationFactor),
                               small.pixel_spacing_mm, rtol=1e-6)


def test_uids_are_deterministic_and_distinct(tmp_path: Path) -> None:
    a = pydicom.dcmread(write_dicom(render_phantom(17, 3, out_long_side=64), tmp_path / "a.dcm"))
    b = pydicom.dcmread(write_dicom(render_phantom(17, 3, out_long_side=64), tmp_path / "b.dcm"))
    c = pydicom.dcmread(write_dicom(render_phantom(17, 4, out_long_side=64), tmp_path / "c.dcm"))
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert a.SeriesInstanceUID != c.SeriesInstanceUID
    assert len({a.SOPInstanceUID, a.StudyInstanceUID, a.SeriesInstanceUID}) == 3


@pytest.mark.parametrize("syntax", [None, *COMPRESSED_SYNTAXES])
def test_dicom_round_trip_gives_the_same_pixels_and_display(small, tmp_path: Path, syntax: str | None) -> None:
    path = write_dicom(small, tmp_path / "x.dcm", transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    if syntax is not None:
        assert ds.file_meta.TransferSyntaxUID == syntax
    arr = ds.pixel_array
    assert np.array_equal(arr, small.stored)
    y = window_linear(arr * float(ds.RescaleSlope) + float(ds.RescaleIntercept), float(ds.WindowCenter), float(ds.WindowWidth))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    np.testing.assert_allclose(y, small.display, atol=1e-4)


def test_unknown_transfer_syntax_is_refused(small, tmp_path: Path) -> None:
    from cervisag_edge.errors import InputError

    with pytest.raises(InputError, match="transfer syntax"):
        write_dicom(small, tmp_path / "x.dcm", transfer_syntax="1.2.840.10008.1.2.4.50")


def test_png_and_sidecar(small, tmp_path: Path) -> None:
    import cv2

    path = write_png(small, tmp_path / "p.png")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.shape == small.display.shape
    np.testing.assert_allclose(img / 65535.0, small.display, atol=1.0 / 65535.0)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["pixel_spacing_mm"] == pytest.approx(list(small.pixel_spacing_mm))
    stored = write_png(small, tmp_path / "s.png", which="stored")
    assert np.array_equal(cv2.imread(str(stored), cv2.IMREAD_UNCHANGED), small.stored)


def test_annotations_json_is_coco_keypoints(tmp_path: Path) -> None:
    ann_path = generate_dataset(tmp_path, 3, 5, fmt="png", progress=False, out_long_side=96, variant="cropped-fov")
    doc = json.loads(ann_path.read_text())
    (cat,) = doc["categories"]
    assert cat["id"] == 1 and cat["name"] == "cervical_spine" and cat["keypoints"] == list(LANDMARK_NAMES)
    assert all(1 <= i <= len(LANDMARK_NAMES) for edge in cat["skeleton"] for i in edge)
    assert len(doc["images"]) == len(doc["annotations"]) == 3
    for img, ann in zip(doc["images"], doc["annotations"]):
        assert (tmp_path / img["file_name"]).is_file()
        assert ann["image_id"] == img["id"] and ann["category_id"] == 1
        ph = render_phantom(5, img["index"], out_long_side=96, variant="cropped-fov")
        assert (img["width"], img["height"]) == (ph.stored.shape[1], ph.stored.shape[0])
        assert img["pixel_spacing_mm"] == pytest.approx(list(ph.pixel_spacing_mm))
        assert set(img["parameters"]) == {"borden_mm", "cci_percent", "ccl_deg", "cobb_c0_c7_deg", "cobb_c1_c7_deg", "cobb_c2_c7_deg"}
        kp = np.array(ann["keypoints"], dtype=float).reshape(34, 3)
        np.testing.assert_array_equal(kp[:, 2], ph.visibility)
        lab = kp[:, 2] > 0
        np.testing.assert_allclose(kp[:, :2], ph.landmarks_px, atol=1e-4)  # v = 0 keeps its true position
        assert ann["num_keypoints"] == int(lab.sum())
        x, y, w, h = ann["bbox"]
        assert np.all((kp[lab, 0] >= x) & (kp[lab, 0] <= x + w) & (kp[lab, 1] >= y) & (kp[lab, 1] <= y + h))
        assert img["variant"] == "cropped-fov" and img["seed"] == 5


def test_dataset_mixes_transfer_syntaxes(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 5, 6, progress=False, out_long_side=64)
    syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in tmp_path.glob("*.dcm")}
    assert set(COMPRESSED_SYNTAXES) <= syntaxes and "1.2.840.10008.1.2.1" in syntaxes


def test_cli_writes_a_tiny_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cervisag_edge.cli.main import main

    out = tmp_path / "set"
    assert main(["phantoms", str(out), "--count", "2", "--seed", "4", "--long-side", "80", "--format", "png"]) == 0
    captured = capsys.readouterr()
    assert "annotations.json" in captured.out and "2/2" in captured.err
    assert sorted(p.name for p in out.glob("*.png")) == ["phantom_4_00000.png", "phantom_4_00001.png"]
    assert main(["phantoms", str(out), "--count", "1", "--size", "bad"]) == 2
