"""The ``cervisag`` command line: help, version, exit codes, per-file errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge import __version__
from cervisag_edge.cli.main import main


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("measure", "demo", "phantoms", "verify", "bench"):
        assert sub in out
    assert main([]) == 2


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["measure"]) == 2
    assert main(["measure", str(tmp_path), "--workers", "0"]) == 2
    assert "--workers 0" in capsys.readouterr().err
    assert main(["measure", str(tmp_path)]) == 2  # empty folder
    assert "no image files" in capsys.readouterr().err


def _png(path: Path) -> Path:
    import cv2

    yy, xx = np.mgrid[0:300, 0:240]
    cv2.imwrite(str(path), (30000 + 20000 * np.sin(xx / 20.0) * np.cos(yy / 30.0)).astype(np.uint16))
    return path


def test_batch_with_bad_file_reports_and_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good1 = _png(tmp_path / "a.png")
    bad = tmp_path / "b.dcm"
    bad.write_bytes(b"this is not a dicom file at all" * 10)
    good2 = _png(tmp_path / "c.png")
    out = tmp_path / "out.json"
    rc = main(["measure", str(good1), str(bad), str(good2), "--json", str(out), "--pixel-spacing", "0.2", "0.2", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and str(bad) in err[0]
    records = json.loads(out.read_text())
    assert [r["ok"] for r in records] == [True, False, True]
    assert records[1]["error"] and str(bad) in records[1]["error"] and records[1]["measurement"] is None
    lm = records[0]["measurement"]["landmarks"]
    assert len(lm) == 34 and lm[0]["name"] == "MCG_PNS"
    assert records[0]["measurement"]["pixel_spacing_mm"] == [0.2, 0.2]


def test_json_to_stdout_and_folder_recursion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "x.png")
    (tmp_path / "sub" / "x.png.json").write_text(json.dumps({"pixel_spacing_mm": [0.15, 0.15]}))
    assert main(["measure", str(tmp_path), "--json", "-", "--no-progress"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1 and records[0]["ok"]
    assert records[0]["measurement"]["pixel_spacing_mm"] == [0.15, 0.15]


def test_no_traceback_without_debug(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "cervisag_edge.cli.main", "measure", str(tmp_path / "missing.dcm"), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "missing.dcm" in r.stderr
