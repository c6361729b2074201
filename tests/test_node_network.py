"""The DICOM node end to end with Debian's dcmtk on loopback: storescu → cervisag serve → storescp.

Sizes: ``CERVISAG_NODE_STUDIES`` phantoms (default 12) of 640x800 px, so each test stays well
under a minute on 2 cores.
"""
from __future__ import annotations

import json
import signal
import subprocess

import pytest

from test_node_support import (
    N_STUDIES,
    cli,
    dcmtk,
    free_port,
    received,
    sop_uids,
    start_node,
    start_storescp,
    status,
    storescu,
    wait_for,
    write_phantoms,
)

pytest.importorskip("pynetdicom")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_phantoms(tmp_path_factory.mktemp("phantoms"), N_STUDIES)


def _log_events(text: str, event: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            rec = json.loads(line[start:])
        except ValueError:
            continue
        if rec.get("event") == event:
            out.append(rec)
    return out


def test_four_associations_deliver_sr_gsps_sc_and_reject_unknown_ae(tmp_path, phantoms):
    pacs_port, node_port = free_port(), free_port()
    pacs = start_storescp(tmp_path / "pacs", pacs_port, tmp_path / "storescp.log")
    node = start_node(tmp_path / "spool", node_port, tmp_path / "node.log", "--allow", "MOD", "--workers", "2",
                      "--destination", f"PACS@127.0.0.1:{pacs_port}")
    try:
        echo = subprocess.run([dcmtk("echoscu"), "-aet", "MOD", "-aec", "CERVISAG", "127.0.0.1", str(node_port)],
                              capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        rejected = subprocess.run([dcmtk("storescu"), "-aet", "INTRUDER", "-aec", "CERVISAG", "127.0.0.1", str(node_port),
                                   str(phantoms[0])], capture_output=True, text=True, timeout=30)
        assert rejected.returncode != 0 and "Calling AE Title Not Recognized" in rejected.stdout + rejected.stderr
        groups = [phantoms[i::4] for i in range(4)]
        senders = [storescu(node_port, g) for g in groups if g]
        for s in senders:
            out, _ = s.communicate(timeout=120)
            assert s.returncode == 0, out.decode(errors="replace")
        wait_for(lambda: status(tmp_path / "spool").get("processed", 0) + status(tmp_path / "spool").get("skipped", 0)
                 >= N_STUDIES, 300, f"{N_STUDIES} studies processed")
        st = status(tmp_path / "spool")
        assert st["failed"] == 0 and st["queue_depth"] == 0
        got = received(tmp_path / "pacs")
        expected = sop_uids(phantoms)
        skipped = {json.loads(p.read_text())["sop_instance_uid"] for p in (tmp_path / "spool" / "skipped").glob("*.json")}
        assert set(got) | skipped == expected and not set(got) & skipped
        for source, kinds in got.items():
            assert {k: len(v) for k, v in kinds.items()} == {"sr": 1, "gsps": 1, "sc": 1}, source
        assert len(list((tmp_path / "pacs").iterdir())) == 3 * len(got)
        # dsrdump shows the coordinates of the landmarks
        # (an image whose landmarks all came out below the visibility threshold has no points: most do)
        dumps = [subprocess.run([dcmtk("dsrdump"), str(f)], capture_output=True, text=True, timeout=60).stdout
                 for f in sorted((tmp_path / "pacs").iterdir()) if f.name.startswith("SR")]
        with_points = [d for d in dumps if "SCOORD" in d and "POINT" in d and "Landmark detection confidence" in d]
        assert dumps and len(with_points) >= len(dumps) / 2, f"{len(with_points)} of {len(dumps)} SRs carry SCOORD points"
        # the log: one line per association and per study; the intruder is named
        log = node.text()
        assoc = _log_events(log, "association")
        assert any(a["outcome"] == "rejected" and a["calling_ae"] == "INTRUDER" for a in assoc)
        assert sum(a["outcome"] == "accepted" for a in assoc) >= 5  # echo + 4 storescu
        studies = _log_events(log, "study")
        assert len(studies) == N_STUDIES and all(s["outcome"] in ("delivered", "skipped") for s in studies)
        # --status reads the health file
        st_cli = cli("serve", "--spool", str(tmp_path / "spool"), "--status", "--json")
        assert st_cli.returncode == 0, st_cli.stderr
        assert json.loads(st_cli.stdout)["processed"] == len(got)
    finally:
        node.kill(signal.SIGTERM)
        pacs.kill()
    assert node.popen.returncode == 0, node.text()[-2000:]
    assert status(tmp_path / "spool")["state"] == "stopped"


def test_sigkill_mid_run_and_destination_down_lose_nothing(tmp_path, phantoms):
    pacs_port, node_port = free_port(), free_port()
    spool = tmp_path / "spool"
    args = ("--allow", "MOD", "--workers", "2", "--destination", f"PACS@127.0.0.1:{pacs_port}")
    pacs = start_storescp(tmp_path / "pacs", pacs_port, tmp_path / "storescp.log")
    node = start_node(spool, node_port, tmp_path / "node1.log", *args)
    try:
        sender = storescu(node_port, phantoms)
        out, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, out.decode(errors="replace")
        # every C-STORE succeeded, so every instance is in the spool; kill once some are done
        wait_for(lambda: len(list((spool / "done").glob("*.json"))) >= max(1, N_STUDIES // 6), 300, "a few delivered",
                 interval_s=0.02)
        node.kill(signal.SIGKILL)
        done_before = len(list((spool / "done").glob("*.json")))
        assert done_before < N_STUDIES, "the kill came too late to test anything"
        # the destination goes down; the restarted node resumes, retries, and waits
        pacs.kill()
        node = start_node(spool, node_port, tmp_path / "node2.log", *args, "--config", str(_fast_retry(tmp_path)))
        wait_for(lambda: status(spool).get("delivery_failures", 0) >= 1, 120, "a failed delivery attempt")
        assert status(spool)["failed"] == 0
        pacs = start_storescp(tmp_path / "pacs", pacs_port, tmp_path / "storescp2.log")
        wait_for(lambda: len(list((spool / "done").glob("*.json"))) + len(list((spool / "skipped").glob("*.json")))
                 >= N_STUDIES, 300, "every study finished after the restart")
    finally:
        node.kill(signal.SIGTERM)
        pacs.kill()
    got = received(tmp_path / "pacs")
    skipped = {p.stem for p in (spool / "skipped").glob("*.json")}
    assert set(got) | skipped == sop_uids(phantoms)
    for source, kinds in got.items():  # exactly one SR, GSPS and SC per study at the destination
        assert {k: len(v) for k, v in kinds.items()} == {"sr": 1, "gsps": 1, "sc": 1}, source
    assert len(list((tmp_path / "pacs").iterdir())) == 3 * len(got)
    assert not list((spool / "incoming").iterdir()) and not list((spool / "deadletter").iterdir())


def _fast_retry(tmp_path):
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'spool = "{(tmp_path / "spool").as_posix()}"\n[retry]\ninitial_s = 0.5\nmax_s = 2.0\n')
    return cfg
