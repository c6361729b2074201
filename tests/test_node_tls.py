"""TLS end to end on loopback: dcmtk ``storescu +tls`` → ``cervisag serve`` with ``[tls]`` (mutual
TLS) → dcmtk ``storescp +tls`` (a destination with ``tls = true``). The certificates (a private CA
and one loopback certificate) are made at test time with the ``openssl`` command.

Skips when openssl, dcmtk, or dcmtk's TLS support is missing, each with its reason."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom.errors import InvalidDicomError

from test_node_support import (
    Proc,
    dcmtk,
    free_port,
    port_open,
    received,
    sop_uids,
    start_node,
    wait_for,
    write_phantoms,
)

pytest.importorskip("pynetdicom")


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl command not installed (apt-get install openssl): cannot make test certificates")
    return path


def _tls_tool(name: str) -> str:
    tool = dcmtk(name)
    help_text = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=30).stdout
    if "+tls" not in help_text:
        pytest.skip(f"{name} (dcmtk) was built without TLS support")
    return tool


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (server and client use), PEM files."""
    openssl = _openssl()
    d = tmp_path_factory.mktemp("tls")
    ext = d / "ext.cnf"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        out = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=120, cwd=d)
        assert out.returncode == 0, out.stderr

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=cervisag test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "peer.key", "-out", "peer.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "peer.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "peer.pem",
        "-days", "2", "-extfile", str(ext))
    return {"ca": d / "ca.pem", "cert": d / "peer.pem", "key": d / "peer.key"}


def _tls_args(certs: dict[str, Path]) -> list[str]:
    return ["+tls", str(certs["key"]), str(certs["cert"]), "+cf", str(certs["ca"])]


def test_tls_association_in_and_tls_delivery_out(tmp_path, certs):
    storescu, echoscu, storescp = _tls_tool("storescu"), _tls_tool("echoscu"), _tls_tool("storescp")
    pacs_port, node_port = free_port(), free_port()
    (tmp_path / "pacs").mkdir()
    pacs = Proc([storescp, *_tls_args(certs), "-aet", "PACS", "-od", str(tmp_path / "pacs"), str(pacs_port)],
                tmp_path / "storescp.log")
    wait_for(lambda: port_open(pacs_port), 15, "storescp +tls")
    config = tmp_path / "node.toml"
    config.write_text(
        f'ae_title = "CERVISAG"\nallow = ["MOD"]\n'
        f'[[destination]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = {pacs_port}\ntls = true\n'
        f'[tls]\ncert = "{certs["cert"]}"\nkey = "{certs["key"]}"\nca = "{certs["ca"]}"\nrequire_client_cert = true\n')
    node = start_node(tmp_path / "spool", node_port, tmp_path / "node.log", "--config", str(config))
    try:
        echo = subprocess.run([echoscu, *_tls_args(certs), "-aet", "MOD", "-aec", "CERVISAG", "127.0.0.1", str(node_port)],
                              capture_output=True, text=True, timeout=60)
        assert echo.returncode == 0, echo.stdout + echo.stderr
        plain = subprocess.run([echoscu, "-to", "10", "-ta", "10", "-aet", "MOD", "-aec", "CERVISAG", "127.0.0.1", str(node_port)],
                               capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0, "a plain TCP association must not be accepted by a TLS node"
        no_cert = subprocess.run([echoscu, "+tla", "+cf", str(certs["ca"]), "-aet", "MOD", "-aec", "CERVISAG",
                                  "127.0.0.1", str(node_port)], capture_output=True, text=True, timeout=60)
        assert no_cert.returncode != 0, "require_client_cert: a client without a certificate must be refused"
        files = write_phantoms(tmp_path / "in", 2)
        sent = subprocess.run([storescu, *_tls_args(certs), "-aet", "MOD", "-aec", "CERVISAG", "127.0.0.1", str(node_port),
                               *map(str, files)], capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stdout + sent.stderr

        def delivered() -> bool:
            try:
                got = received(tmp_path / "pacs")
            except (InvalidDicomError, OSError, EOFError):  # storescp is still writing a file
                return False
            return all(len(got.get(uid, {})) == 3 for uid in sop_uids(files))

        wait_for(delivered, 300, "SR, GSPS and SC of both studies at the TLS destination")
        got = received(tmp_path / "pacs")
        assert set(got) == sop_uids(files)
        assert all(set(kinds) == {"sr", "gsps", "sc"} for kinds in got.values())
    finally:
        node.kill()
        pacs.kill()
    assert '"tls":true' in node.text()  # the serving log line
