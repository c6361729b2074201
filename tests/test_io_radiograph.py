"""Only greyscale projection radiographs are read: refusals by header (tag and value named), the
lateral cervical spine warnings, library logs kept out of the console, and the lazy display."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.io import read_image

from corpus import dataset_with, dicom_bytes, valid_dataset


def _write(tmp_path: Path, name: str = "img.dcm", **attrs: object) -> Path:
    path = tmp_path / name
    path.write_bytes(dicom_bytes(dataset_with(**attrs)))
    return path


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "MG", "XA"])
def test_non_radiograph_modality_refused_by_header(tmp_path: Path, modality: str) -> None:
    path = _write(tmp_path, Modality=modality)
    with pytest.raises(InputError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(f"{path}: (0008,0060) Modality '{modality}' is not a projection radiograph")
    assert "\n" not in message


def test_ot_needs_a_radiograph_like_header(tmp_path: Path) -> None:
    small = _write(tmp_path, "small.dcm", Modality="OT")  # 96 x 80 px: a thumbnail, not a film
    with pytest.raises(InputError, match=r"\(0008,0060\) Modality 'OT' and the header does not look like a radiograph: "
                                         r"\(0028,0010\) Rows x \(0028,0011\) Columns 96 x 80"):
        read_image(small)
    ds = valid_dataset(np.full((300, 260), 1000, np.uint16), Modality="OT")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    (tmp_path / "film.dcm").write_bytes(dicom_bytes(ds))
    assert read_image(tmp_path / "film.dcm").size_px == (260, 300)
    ds.ImagePositionPatient = [0, 0, 0]
    (tmp_path / "slice.dcm").write_bytes(dicom_bytes(ds))
    with pytest.raises(InputError, match=r"\(0020,0032\) ImagePositionPatient, an attribute of cross-sectional slices"):
        read_image(tmp_path / "slice.dcm")


def test_non_image_sop_class_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, SOPClassUID="1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage with Modality CR
    with pytest.raises(InputError, match=r"\(0008,0016\) SOPClassUID 1\.2\.840\.10008\.5\.1\.4\.1\.1\.2 \(CT Image Storage\) "
                                         r"is not a projection radiograph image"):
        read_image(path)


def test_lateral_cspine_header_warnings(tmp_path: Path) -> None:
    img = read_image(_write(tmp_path, BodyPartExamined="CHEST", ViewPosition="PA", ImageLaterality="L"))
    text = " | ".join(img.warnings)
    assert "(0018,0015) BodyPartExamined 'CHEST' is not a cervical spine" in text
    assert "(0018,5101) ViewPosition 'PA' is not lateral" in text
    assert "(0020,0062) ImageLaterality 'L'" in text
    fine = read_image(_write(tmp_path, "ok.dcm", BodyPartExamined="CSPINE", ViewPosition="LL", ImageLaterality="U"))
    assert not any("BodyPartExamined" in w or "ViewPosition" in w or "ImageLaterality" in w for w in fine.warnings)


def test_pydicom_warnings_go_to_the_image_not_the_console(tmp_path: Path) -> None:
    """In a fresh process with a console log handler (as the CLI has), pydicom's warning about a
    bad character set lands in the image's warnings and nowhere on stderr. (A subprocess, because
    pytest attaches its own capture handlers to non-propagating loggers such as ours.)"""
    import subprocess
    import sys

    path = _write(tmp_path, SpecificCharacterSet="ISO_IR 999")
    code = ("import logging, sys, warnings; logging.basicConfig(level=logging.WARNING); "
            "warnings.simplefilter('default'); "
            "from cervisag_edge.io import read_image; img = read_image(sys.argv[1]); print('\\n'.join(img.warnings))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert any(w.startswith("decoder/pydicom: ") and "ISO_IR 999" in w for w in out.stdout.splitlines()), out.stdout
    assert "ISO_IR 999" not in out.stderr, out.stderr


def test_display_is_lazy_and_survives_pickling(tmp_path: Path) -> None:
    img = read_image(_write(tmp_path))
    assert img._display is None  # measuring needs only the resized view
    small = img.resized((40, 48))
    assert small.shape == (48, 40) and img._display is None
    clone = pickle.loads(pickle.dumps(img))
    assert clone.size_px == img.size_px == (80, 96)
    np.testing.assert_array_equal(clone.display, img.display)
    assert img.display.shape == (96, 80) and not img.display.flags.writeable
    with pytest.raises(AttributeError):
        img.path = "other"  # type: ignore[misc]


def test_cli_warnings_one_summary_line_unless_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cervisag_edge.cli.main import main as cli_main

    files = [str(_write(tmp_path, f"chest{i}.dcm", BodyPartExamined="CHEST")) for i in range(2)]
    out = tmp_path / "records.json"
    assert cli_main(["-q", "measure", *files, "--no-progress", "--json", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "BodyPartExamined" in line] == []
    assert sum("2 of 2 file(s) measured with warnings" in line for line in err) == 1
    assert cli_main(["-q", "measure", *files, "--no-progress", "--json", str(out), "--verbose"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("BodyPartExamined 'CHEST'" in line for line in err) == 2
    assert all(line.startswith("warning: ") for line in err if "BodyPartExamined" in line)
