"""Configurable limits (docs/security.md): bytes and pixels per input checked before decoding, a
per-study timeout in batch mode, a maximum batch size; and a folder batch with a bad file in the middle."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.uid import RLELossless

from cervisag_edge.outputs.records import record_of
from cervisag_edge.runner import MeasurerSpec, run_studies, studies_of
from cervisag_edge.cli.main import main as cli_main
from cervisag_edge.errors import InputError

from corpus import CASES, build_case, dicom_bytes, header_bomb, valid_dataset



def _measured(files, spec, **kw):
    """One JSON record per file, through the study runner."""
    return [record_of(r) for r in run_studies(studies_of(files), spec, **kw)]

def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _png(folder: Path, name: str) -> Path:
    return build_case(CASES["png"], folder).rename(folder / name)


def test_max_bytes_refuses_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "study.dcm"
    path.write_bytes(dicom_bytes(valid_dataset()))
    size = path.stat().st_size
    limit_ok = _measured([path], MeasurerSpec(threads=1, max_bytes=size))
    assert limit_ok[0]["ok"], limit_ok[0]["error"]
    refused = _measured([path], MeasurerSpec(threads=1, max_bytes=size - 1))
    assert not refused[0]["ok"]
    assert "study.dcm" in refused[0]["error"] and "max_bytes" in refused[0]["error"] and str(size) in refused[0]["error"]


def test_max_pixels_refuses_before_decoding(tmp_path: Path) -> None:
    """An RLE file whose fragments are garbage: decoding would fail with a decoder error, so a
    max_pixels error proves the header check ran first; above the limit the decoder error shows."""
    ds = valid_dataset()
    ds.compress(RLELossless)
    raw = bytearray(dicom_bytes(ds))
    raw[-200:-8] = b"\x7f" * 192  # smash the end of the RLE segments
    path = tmp_path / "garbage_rle.dcm"
    path.write_bytes(bytes(raw))
    rows, cols = ds.Rows, ds.Columns
    refused = _measured([path], MeasurerSpec(threads=1, max_pixels=rows * cols - 1))[0]
    assert not refused["ok"] and "max_pixels" in refused["error"] and "garbage_rle.dcm" in refused["error"]
    decoded = _measured([path], MeasurerSpec(threads=1, max_pixels=rows * cols))[0]
    assert "max_pixels" not in (decoded["error"] or "")


def test_cli_size_limits(tmp_path: Path) -> None:
    path = tmp_path / "study.dcm"
    path.write_bytes(dicom_bytes(valid_dataset()))
    out = tmp_path / "out.json"
    assert cli_main(["-q", "measure", str(path), "--no-progress", "--json", str(out), "--max-pixels", "100"]) == 1
    assert "max_pixels" in _records(out)[0]["error"]
    assert cli_main(["-q", "measure", str(path), "--no-progress", "--json", str(out), "--max-bytes", "100"]) == 1
    assert "max_bytes" in _records(out)[0]["error"]
    assert cli_main(["-q", "measure", str(path), "--no-progress", "--json", str(out)]) == 0


def test_max_batch_refused_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(_png(tmp_path, f"img{i}.png")) for i in range(3)]
    with pytest.raises(InputError, match="3 files exceeds the maximum batch size 2"):
        next(run_studies(studies_of(files), MeasurerSpec(threads=1), max_studies=2))
    out = tmp_path / "out.json"
    assert cli_main(["-q", "measure", *files, "--no-progress", "--json", str(out), "--max-batch", "2"]) == 2
    assert "maximum batch size 2" in capsys.readouterr().err
    assert not out.exists()  # refused before any study was measured
    assert cli_main(["-q", "measure", *files, "--no-progress", "--json", str(out), "--max-batch", "3"]) == 0
    assert len(_records(out)) == 3


def test_timeout_records_hung_study_and_measures_the_rest(tmp_path: Path) -> None:
    """A study whose header takes far longer to parse than the limit (15 000 000 header elements in a deflated
    data set: about 29 s to parse on an idle 2-core machine with pydicom 3, 3.6 times the 8 s limit; 3 000 000
    took 5.8 s there, under the limit) is recorded as timed out; its worker is replaced and the files around
    it are measured."""
    first = _png(tmp_path, "a_first.png")
    slow = tmp_path / "b_slow.dcm"
    header_bomb(slow, 15_000_000, deflated=True)
    last = _png(tmp_path, "c_last.png")
    files = [str(first), str(slow), str(last)]
    records = _measured(files, MeasurerSpec(threads=1), timeout_s=8.0)
    assert [r["file"] for r in records] == files
    assert records[0]["ok"], records[0]["error"]
    assert records[2]["ok"], records[2]["error"]
    assert not records[1]["ok"]
    assert "b_slow.dcm" in records[1]["error"] and "timed out" in records[1]["error"] and "\n" not in records[1]["error"]


def test_header_of_millions_of_elements_refused_while_parsing(tmp_path: Path) -> None:
    """3 000 000 header elements (about 40 s to parse) are refused by ReadLimits.max_header_elements
    with a one-line error, long before the parse would end; a smaller cap refuses a smaller header."""
    from cervisag_edge.io import ReadLimits, read_image

    bomb = tmp_path / "bomb.dcm"
    header_bomb(bomb, 3_000_000)
    with pytest.raises(InputError, match=r"header holds more than 100000 data elements \(ReadLimits.max_header_elements\)") as err:
        read_image(bomb)
    assert "\n" not in str(err.value) and str(bomb) in str(err.value)
    small = tmp_path / "small.dcm"
    header_bomb(small, 2_000)
    assert read_image(small).size_px[0] > 0
    with pytest.raises(InputError, match="more than 500 data elements"):
        read_image(small, limits=ReadLimits(max_header_elements=500))


def test_cli_folder_batch_with_bad_file_in_the_middle(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    _png(folder, "a_good.png")
    (folder / "b_bad.dcm").write_bytes(b"not a dicom file, just text\n" * 8)
    (folder / "c_good.dcm").write_bytes(dicom_bytes(valid_dataset()))
    out = tmp_path / "records.json"
    code = cli_main(["-q", "measure", str(folder), "--no-progress", "--json", str(out), "--workers", "2"])
    assert code == 1
    records = _records(out)
    assert [Path(r["file"]).name for r in records] == ["a_good.png", "b_bad.dcm", "c_good.dcm"]
    assert [r["ok"] for r in records] == [True, False, True]
    assert "b_bad.dcm" in records[1]["error"] and "\n" not in records[1]["error"]
    assert records[0]["measurement"] is not None and records[2]["measurement"] is not None
