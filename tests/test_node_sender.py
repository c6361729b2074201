"""Result associations: kept open between studies (keep_association_s), replaced when the peer
closed them while idle, one per delivery with keep 0. Loopback, an in-process pynetdicom SCP."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from cervisag_edge.errors import InputError  # noqa: E402
from cervisag_edge.node.config import Destination, NodeConfig, config_from_mapping  # noqa: E402
from cervisag_edge.node.sender import AssociationCache, send_files  # noqa: E402
from test_node_support import free_port  # noqa: E402

GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _result_file(path: Path) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = GSPS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = GSPS, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "PR"
    ds.save_as(path, enforce_file_format=True)
    return path


class Peer:
    """A C-STORE SCP counting associations and stored instances; ``abort_idle()`` aborts every
    open association, as a PACS does with idle ones."""

    def __init__(self) -> None:
        from pynetdicom import AE, evt

        self.port = free_port()
        self.associations = 0
        self.stored: list[str] = []
        self._assocs: list = []
        self._lock = threading.Lock()
        ae = AE(ae_title="PACS")
        ae.add_supported_context(GSPS, ExplicitVRLittleEndian)

        def accepted(event) -> None:
            with self._lock:
                self.associations += 1
                self._assocs.append(event.assoc)

        def store(event) -> int:
            with self._lock:
                self.stored.append(str(event.request.AffectedSOPInstanceUID))
            return 0x0000

        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_ACCEPTED, accepted), (evt.EVT_C_STORE, store)])

    def abort_idle(self) -> None:
        with self._lock:
            assocs, self._assocs = self._assocs, []
        for a in assocs:
            a.abort()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture()
def peer():
    p = Peer()
    yield p
    p.close()


def _config(tmp_path: Path, keep_s: float) -> NodeConfig:
    return NodeConfig(spool=tmp_path, keep_association_s=keep_s, acse_timeout_s=5, dimse_timeout_s=5, network_timeout_s=10)


def _dest(peer: Peer) -> Destination:
    return Destination("PACS", "127.0.0.1", peer.port)


def test_consecutive_studies_share_one_kept_association(tmp_path: Path, peer: Peer) -> None:
    config = _config(tmp_path, keep_s=30.0)
    files = [_result_file(tmp_path / f"{i}.dcm") for i in range(4)]
    cache = AssociationCache(config)
    sent: list[Path] = []
    for pair in (files[:2], files[2:]):  # two studies
        send_files(config, _dest(peer), pair, sent.append, cache)
    assert sent == files and len(peer.stored) == 4
    assert peer.associations == 1
    cache.close_all()


def test_keep_zero_opens_one_association_per_delivery(tmp_path: Path, peer: Peer) -> None:
    config = _config(tmp_path, keep_s=0.0)
    files = [_result_file(tmp_path / f"{i}.dcm") for i in range(2)]
    cache = AssociationCache(config)
    for f in files:
        send_files(config, _dest(peer), [f], lambda p: None, cache)
    assert peer.associations == 2 and len(peer.stored) == 2


def test_idle_association_is_released_after_keep(tmp_path: Path, peer: Peer) -> None:
    config = _config(tmp_path, keep_s=0.2)
    cache = AssociationCache(config)
    send_files(config, _dest(peer), [_result_file(tmp_path / "a.dcm")], lambda p: None, cache)
    assert len(cache) == 1
    time.sleep(0.3)
    cache.close_idle()
    assert len(cache) == 0
    send_files(config, _dest(peer), [_result_file(tmp_path / "b.dcm")], lambda p: None, cache)
    assert peer.associations == 2


def test_association_the_peer_closed_is_replaced_without_a_failure(tmp_path: Path, peer: Peer) -> None:
    config = _config(tmp_path, keep_s=30.0)
    cache = AssociationCache(config)
    send_files(config, _dest(peer), [_result_file(tmp_path / "a.dcm")], lambda p: None, cache)
    peer.abort_idle()
    time.sleep(0.3)
    sent: list[Path] = []
    send_files(config, _dest(peer), [_result_file(tmp_path / "b.dcm")], sent.append, cache)
    assert len(sent) == 1 and len(peer.stored) == 2
    assert peer.associations == 2
    cache.close_all()


def test_keep_association_config() -> None:
    base = {"spool": "/tmp/s"}
    assert config_from_mapping(base).keep_association_s == 5.0
    assert config_from_mapping({**base, "timeouts": {"keep_association": 0}}).keep_association_s == 0.0
    with pytest.raises(InputError, match=r"keep_association: -1.0 invalid, expected a number >= 0"):
        config_from_mapping({**base, "timeouts": {"keep_association": -1}})
    with pytest.raises(InputError, match="keep_association"):
        config_from_mapping({**base, "timeouts": {"linger": 3}})


def test_senders_share_one_association_per_destination(tmp_path: Path, peer: Peer) -> None:
    """Two threads delivering to one destination at once take turns on one association."""
    config = _config(tmp_path, keep_s=30.0)
    cache = AssociationCache(config)
    files = [_result_file(tmp_path / f"{i}.dcm") for i in range(6)]
    threads = [threading.Thread(target=send_files, args=(config, _dest(peer), files[i::2], lambda p: None, cache)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(peer.stored) == 6 and peer.associations == 1 and len(cache) == 1
    cache.close_all()
    assert len(cache) == 0
