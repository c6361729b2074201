"""The node's parts without a network: configuration, spool, skip rules, retry schedule, SCP header checks."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from cervisag_edge.errors import InputError
from cervisag_edge.node.config import Destination, load_config, parse_outputs
from cervisag_edge.node.health import format_status, read_status
from cervisag_edge.node.sender import backoff_s
from cervisag_edge.node.spool import Spool, valid_uid
from cervisag_edge.node.worker import skip_reason

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def test_toml_config_and_command_line_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'ae_title = "EDGE"\nport = 104\nspool = "/var/spool/x"\nallow = ["MOD1", "ROUTER"]\noutputs = ["sr", "gsps"]\n'
        'workers = 3\n[[destination]]\nae_title = "PACS"\nhost = "10.0.0.5"\nport = 11112\n'
        '[timeouts]\nacse = 5\n[retry]\ninitial_s = 1\nmax_s = 8\ngive_up_after_s = 60\n[limits]\nmax_instance_mib = 64\n'
    )
    c = load_config(cfg)
    assert (c.ae_title, c.port, str(c.spool), c.allow, c.outputs, c.workers) == (
        "EDGE", 104, "/var/spool/x", ("MOD1", "ROUTER"), ("sr", "gsps"), 3)
    assert c.destinations == (Destination("PACS", "10.0.0.5", 11112),)
    assert (c.acse_timeout_s, c.retry_initial_s, c.retry_max_s, c.give_up_after_s) == (5, 1, 8, 60)
    assert c.max_instance_bytes == 64 * 1024 * 1024
    o = load_config(cfg, {"ae_title": "OTHER", "port": 11113, "spool": str(tmp_path), "allow": ["X"],
                          "destinations": ["A@h:1", "B@[::1]:2"], "outputs": "sc", "workers": 1})
    assert (o.ae_title, o.port, o.spool, o.allow, o.outputs, o.workers) == ("OTHER", 11113, tmp_path, ("X",), ("sc",), 1)
    assert o.destinations == (Destination("A", "h", 1), Destination("B", "::1", 2))
    # empty overrides (argparse defaults) keep the file's values
    assert load_config(cfg, {"allow": [], "destinations": [], "port": None}).allow == ("MOD1", "ROUTER")


@pytest.mark.parametrize("text, match", [
    ('spool = "s"\nport = 70000\n', "port 70000 invalid"),
    ('spool = "s"\nae_title = "A_TITLE_THAT_IS_TOO_LONG"\n', "AE title"),
    ('spool = "s"\noutputs = ["pdf"]\n', "outputs"),
    ('spool = "s"\ncolour = 1\n', "unknown key"),
    ('spool = "s"\n[retry]\nmax_s = -1\n', "positive"),
    ('port = 1\n', "no spool"),
    ('spool = \n', "not valid TOML"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(InputError, match=match):
        load_config(cfg)


def test_destination_and_outputs_parsing() -> None:
    assert Destination.parse("PACS@127.0.0.1:104").label == "PACS@127.0.0.1:104"
    for bad in ("PACS", "PACS@host", "@h:1", "P@h:0"):
        with pytest.raises(InputError):
            Destination.parse(bad)
    assert parse_outputs("sr, gsps,sr") == ("sr", "gsps")
    with pytest.raises(InputError):
        parse_outputs("")


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(k, 2.0, 30.0) for k in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_spool_writes_atomically_and_tracks_states(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s")
    (sp.root / "tmp" / "stale.partial").write_bytes(b"x")
    sp = Spool(tmp_path / "s")  # a restart clears half-written temporaries
    assert not list((sp.root / "tmp").iterdir())
    sp.store_incoming("1.2.3", b"first")
    sp.store_incoming("1.2.4", b"second")
    assert sp.pending() == ["1.2.3", "1.2.4"] or set(sp.pending()) == {"1.2.3", "1.2.4"}
    sp.save_journal("1.2.3", {"results": {"sr": "9.9"}})
    assert sp.journal("1.2.3") == {"results": {"sr": "9.9"}}
    sp.finish("1.2.3", {"sop_instance_uid": "1.2.3"})
    assert sp.pending() == ["1.2.4"] and sp.journal("1.2.3") == {}
    info = sp.dead_letter("1.2.4", "(7FE0,0010) PixelData truncated")
    assert json.loads(info.read_text())["reason"] == "(7FE0,0010) PixelData truncated"
    assert (sp.root / "deadletter" / "1.2.4.dcm").read_bytes() == b"second"
    assert sp.counts() == {"incoming": 0, "done": 1, "skipped": 0, "deadletter": 1}
    assert valid_uid("1.2.840.10008") and not valid_uid("1.2.x") and not valid_uid("1" * 65) and not valid_uid("../a")


def test_spool_commit_all_moves_every_result_into_its_folder(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s")
    pairs = []
    for kind, data in (("sr", b"sr bytes"), ("gsps", b"gsps bytes")):
        tmp = sp.root / "tmp" / f"k.{kind}"
        tmp.write_bytes(data)
        pairs.append((tmp, sp.result("k", kind)))
    sp.commit_all(pairs)
    assert sp.result("k", "sr").read_bytes() == b"sr bytes" and sp.result("k", "gsps").read_bytes() == b"gsps bytes"
    assert not list((sp.root / "tmp").iterdir())
    sp.commit_all([])  # nothing to commit is not an error


def test_status_file_round_trip(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no status file"):
        read_status(tmp_path)
    (tmp_path / "status.json").write_text(json.dumps({"pid": 0, "state": "serving", "updated_at": 0, "processed": 3}))
    st = read_status(tmp_path)
    assert st["alive"] is False and st["processed"] == 3 and "processed: 3" in format_status(st)


@pytest.mark.parametrize("body, view, skipped", [
    ("CSPINE", "LATERAL", None), ("NECK", "LL", None), ("", "", None), ("CSPINE", "AP", "View Position 'AP'"),
    ("CHEST", "LATERAL", "Body Part Examined 'CHEST'"),
])
def test_skip_rule_by_header(body: str, view: str, skipped: str | None) -> None:
    ds = Dataset()
    ds.BodyPartExamined = body
    ds.ViewPosition = view
    reason = skip_reason(ds)
    assert (reason is None) if skipped is None else (skipped in reason)


def _encoded(sop_class: str, sop: str) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, sop
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_scp_header_check_statuses() -> None:
    pytest.importorskip("pynetdicom")
    from cervisag_edge.node.scp import STATUS_CANNOT_UNDERSTAND, STATUS_SOP_CLASS_MISMATCH, StoreHandlers, readable_syntaxes

    check = StoreHandlers._header_problem
    assert check(_encoded(DX, "1.2.3"), DX, "1.2.3", ExplicitVRLittleEndian) is None
    status, reason = check(_encoded("1.2.840.10008.5.1.4.1.1.2", "1.2.3"), DX, "1.2.3", ExplicitVRLittleEndian)
    assert status == STATUS_SOP_CLASS_MISMATCH and "(0008,0016)" in reason
    status, reason = check(_encoded(DX, "1.2.4"), DX, "1.2.3", ExplicitVRLittleEndian)
    assert status == STATUS_SOP_CLASS_MISMATCH and "(0008,0018)" in reason
    status, _ = check(b"not a DICOM file " * 8, DX, "1.2.3", ExplicitVRLittleEndian)
    assert status == STATUS_CANNOT_UNDERSTAND
    syntaxes = readable_syntaxes()
    assert syntaxes[:2] == ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2") and "1.2.840.10008.1.2.1.99" in syntaxes


def test_serve_has_the_option_names_scripts_rely_on(capsys) -> None:
    from cervisag_edge.cli.main import build_parser, main

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    options = {o for a in serve._actions for o in a.option_strings}
    assert {"--config", "--ae-title", "--port", "--spool", "--allow", "--destination", "--outputs", "--workers",
            "--status"} <= options
    args = parser.parse_args(["serve", "--spool", "s", "--allow", "A", "--allow", "B", "--destination", "P@h:1",
                              "--destination", "Q@h:2", "--outputs", "sr,gsps", "--workers", "2"])
    assert args.allow == ["A", "B"] and args.destinations == ["P@h:1", "Q@h:2"]
    assert main(["serve", "--spool", "s", "--destination", "nonsense"]) == 2
    assert "AE@HOST:PORT" in capsys.readouterr().err
