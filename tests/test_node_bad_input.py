"""Bad input over the network: a refused SOP class, truncated pixel data, a deflate bomb, a pixel
bomb, a non-lateral view. Each gets a proper status, a dead-letter entry or a skip line; the
node keeps serving (a good compressed study is still delivered afterwards)."""
from __future__ import annotations

import io
import json
import signal
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import write_dataset, write_file_meta_info

from test_node_support import free_port, received, start_node, start_storescp, status, wait_for, write_phantoms

pynetdicom = pytest.importorskip("pynetdicom")

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT, DEFLATED, JPEG_LS = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.80"


def _uid(tag: str) -> str:
    return f"2.25.{1000 + int(tag)}"


def _variant(src: Path, out: Path, sop_suffix: str, **changes) -> Path:
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(sop_suffix)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(out, enforce_file_format=True)
    return out


def _deflate_bomb(src: Path, out: Path, inflated_mib: int = 128) -> Path:
    """A Deflated Explicit VR LE file: a small header plus ``inflated_mib`` MiB of zero pixels,
    declared 8192 x 8192 (over the reader's pixel limit); a few hundred kB on the wire."""
    ds = pydicom.dcmread(src, stop_before_pixels=True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid("9")
    ds.Rows = ds.Columns = 8192
    ds.file_meta.TransferSyntaxUID = DEFLATED
    body = io.BytesIO()
    fp = pydicom.filebase.DicomFileLike(body)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    n = inflated_mib * 1024 * 1024
    header = body.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + n.to_bytes(4, "little")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunks = [comp.compress(header)]
    zeros = bytes(1024 * 1024)
    for _ in range(inflated_mib):
        chunks.append(comp.compress(zeros))
    chunks.append(comp.flush())
    with open(out, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        meta = pydicom.filebase.DicomFileLike(fh)
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        fh.write(b"".join(chunks))
    return out


def test_bad_input_gets_a_status_or_a_dead_letter_and_the_node_keeps_serving(tmp_path):
    src = write_phantoms(tmp_path / "ph", 1, seed=11)[0]
    truncated = pydicom.dcmread(src)
    truncated.SOPInstanceUID = truncated.file_meta.MediaStorageSOPInstanceUID = _uid("1")
    truncated.PixelData = truncated.PixelData[: len(truncated.PixelData) // 3]
    truncated.save_as(tmp_path / "truncated.dcm", enforce_file_format=True)
    pixel_bomb = _variant(src, tmp_path / "pixel_bomb.dcm", "2", Rows=60000, Columns=60000)
    not_lateral = _variant(src, tmp_path / "ap.dcm", "3", ViewPosition="AP")
    deflate_bomb = _deflate_bomb(src, tmp_path / "deflate_bomb.dcm")
    good = pydicom.dcmread(src)
    good.compress(JPEG_LS, generate_instance_uid=False)
    good.save_as(tmp_path / "good_jls.dcm", enforce_file_format=True)

    pacs_port, node_port = free_port(), free_port()
    spool = tmp_path / "spool"
    pacs = start_storescp(tmp_path / "pacs", pacs_port, tmp_path / "storescp.log")
    node = start_node(spool, node_port, tmp_path / "node.log", "--allow", "MOD", "--destination", f"PACS@127.0.0.1:{pacs_port}")
    try:
        ae = pynetdicom.AE(ae_title="MOD")
        ae.add_requested_context(CT, EXPLICIT)
        ae.add_requested_context(DX, [EXPLICIT])
        ae.add_requested_context(DX, [DEFLATED])
        ae.add_requested_context(DX, [JPEG_LS])
        assoc = ae.associate("127.0.0.1", node_port, ae_title="CERVISAG")
        assert assoc.is_established
        # wrong SOP class: the CT context is refused at negotiation (abstract syntax not supported)
        assert CT in {c.abstract_syntax for c in assoc.rejected_contexts}
        assert CT not in {c.abstract_syntax for c in assoc.accepted_contexts}
        statuses = {}
        for name, path in (("truncated", tmp_path / "truncated.dcm"), ("pixel_bomb", pixel_bomb),
                           ("deflate_bomb", deflate_bomb), ("not_lateral", not_lateral), ("good", tmp_path / "good_jls.dcm")):
            statuses[name] = assoc.send_c_store(path).Status
        assoc.release()
        # every instance was spooled (the SCP decodes no pixels): the worker judges them
        assert statuses == dict.fromkeys(statuses, 0x0000)
        wait_for(lambda: status(spool).get("failed", 0) >= 3 and status(spool).get("skipped", 0) >= 1
                 and status(spool).get("processed", 0) >= 1, 180, "3 dead letters, 1 skip, 1 delivery")
        reasons = {p.stem: json.loads(p.read_text())["reason"] for p in (spool / "deadletter").glob("*.json")}
        assert set(reasons) == {_uid("1"), _uid("2"), _uid("9")}, reasons
        reasons = {k[-1]: v for k, v in reasons.items()}
        assert "pixel" in reasons["1"].lower() or "PixelData" in reasons["1"]
        assert "60000" in reasons["2"] or "exceed" in reasons["2"].lower()
        assert reasons["9"], reasons
        for key in ("1", "2", "9"):  # the instance is kept next to its reason
            assert (spool / "deadletter" / f"{_uid(key)}.dcm").is_file()
        skip = json.loads(next((spool / "skipped").glob("*.json")).read_text())
        assert "View Position 'AP'" in skip["reason"]
        got = received(tmp_path / "pacs")
        assert set(got) == {str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)}
        # still serving: a C-ECHO is answered
        echo = pynetdicom.AE(ae_title="MOD")
        echo.add_requested_context("1.2.840.10008.1.1")
        a = echo.associate("127.0.0.1", node_port, ae_title="CERVISAG")
        assert a.is_established and a.send_c_echo().Status == 0x0000
        a.release()
        assert node.popen.poll() is None
    finally:
        node.kill(signal.SIGTERM)
        pacs.kill()
    assert node.popen.returncode == 0
