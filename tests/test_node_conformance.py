"""Conformance: dicom3tools' ``dciodvfy`` reports no error on anything we write (the phantom DX in
every variant and transfer syntax, and the SR, GSPS and SC measured on it); pydicom reads it back.
Skips when dicom3tools is not installed (``apt-get install dicom3tools``)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from test_node_support import dcmtk

pytest.importorskip("highdicom")


def _errors(path: Path) -> list[str]:
    out = subprocess.run([dcmtk("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom
    from cervisag_edge.tooling.phantom.dicomio import COMPRESSED_SYNTAXES

    out = tmp_path_factory.mktemp("dx")
    files = []
    for i in range(8):  # the seed draws every rescale and both photometric interpretations over these
        ph = render_phantom(3, i, out_long_side=256)
        ts = None if i < 5 else COMPRESSED_SYNTAXES[i - 5]
        files.append(write_dicom(ph, out / f"dx_{i}.dcm", transfer_syntax=ts))
    return files


def test_phantom_dx_passes_dciodvfy(phantom_files):
    dciodvfy = dcmtk("dciodvfy")
    assert dciodvfy
    for f in phantom_files:
        assert _errors(f) == [], f.name
        ds = pydicom.dcmread(f)
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)


def test_sr_gsps_sc_measured_on_a_phantom_pass_dciodvfy(tmp_path):
    import highdicom as hd

    from cervisag_edge import Measurer
    from cervisag_edge.node.spool import Spool
    from cervisag_edge.node.worker import measure_instance, read_instance, write_results
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom

    dcmtk("dciodvfy")
    src = write_dicom(render_phantom(0, 2, size=(640, 800)), tmp_path / "src.dcm")
    with Measurer() as m:
        image = read_instance(m, src)
        measurement = measure_instance(m, image)
    spool = Spool(tmp_path / "spool")
    uids = write_results(spool, "k", measurement, image, ("sr", "gsps", "sc"))
    assert set(uids) == {"sr", "gsps", "sc"}
    for kind in uids:
        path = spool.result("k", kind)
        assert _errors(path) == [], kind
        assert pydicom.dcmread(path).SOPInstanceUID == uids[kind]
    sr = hd.sr.srread(spool.result("k", "sr"))
    assert sr.content.get_image_measurement_groups()
    dump = subprocess.run([dcmtk("dsrdump"), str(spool.result("k", "sr"))], capture_output=True, text=True, timeout=60).stdout
    assert "SCOORD" in dump and "(POINT," in dump
