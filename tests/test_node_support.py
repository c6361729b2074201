"""Shared helpers of the DICOM node tests: real dcmtk tools, loopback only, random free ports.
No tests live here.

``CERVISAG_NODE_STUDIES`` sets the number of phantom studies of the network tests (default 12,
sized for CI; the issue's full run is 50, see docs/benchmarks.md).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[1]
N_STUDIES = int(os.environ.get("CERVISAG_NODE_STUDIES", "12"))
PHANTOM_SIZE = (640, 800)
KIND_OF_CLASS = {
    "1.2.840.10008.5.1.4.1.1.88.34": "sr",
    "1.2.840.10008.5.1.4.1.1.11.1": "gsps",
    "1.2.840.10008.5.1.4.1.1.7": "sc",
}


def dcmtk(tool: str) -> str:
    """The path of a Debian dcmtk/dicom3tools binary; skips when it is not installed. A Python
    environment may shadow ``storescu``/``storescp`` with pynetdicom's apps, so those are ignored."""
    candidates = [Path("/usr/bin") / tool]
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not Path(d, "python").exists()]
    found = shutil.which(tool, path=os.pathsep.join(path_dirs))
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK) and not _is_python_script(c):
            return str(c)
    pytest.skip(f"{tool} (dcmtk / dicom3tools) not installed: apt-get install dcmtk dicom3tools")


def _is_python_script(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(64)
    return head.startswith(b"#!") and b"python" in head


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def write_phantoms(out: Path, count: int, seed: int = 5) -> list[Path]:
    """``count`` small uncompressed phantom DX files (storescu sends them as they are)."""
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom

    out.mkdir(parents=True, exist_ok=True)
    return [write_dicom(render_phantom(seed, i, size=PHANTOM_SIZE), out / f"ph_{i:03d}.dcm") for i in range(count)]


class Proc:
    """A child process whose output goes to a log file; stopped by its own pid at the end."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = open(log, "ab")
        self.popen = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._fh.close()


def start_storescp(out: Path, port: int, log: Path, aet: str = "PACS") -> Proc:
    out.mkdir(parents=True, exist_ok=True)
    p = Proc([dcmtk("storescp"), "-aet", aet, "-od", str(out), str(port)], log)
    wait_for(lambda: port_open(port), 15, f"storescp on port {port}")
    return p


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli(*args: str) -> subprocess.CompletedProcess:
    """``cervisag ARGS`` of this checkout, output captured."""
    return subprocess.run([sys.executable, "-m", "cervisag_edge.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=ROOT)


def start_node(spool: Path, port: int, log: Path, *extra: str) -> Proc:
    env = _env()
    args = [sys.executable, "-m", "cervisag_edge.cli.main", "serve", "--spool", str(spool), "--port", str(port),
            "--host", "127.0.0.1", *extra]
    p = Proc(args, log, env)
    wait_for(lambda: p.popen.poll() is not None or status(spool).get("state") == "serving", 90, "the node to serve")
    assert p.popen.poll() is None, p.text()[-3000:]
    return p


def status(spool: Path) -> dict:
    try:
        return json.loads((spool / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def storescu(port: int, files: list[Path], aet: str = "MOD", called: str = "CERVISAG") -> subprocess.Popen:
    return subprocess.Popen([dcmtk("storescu"), "-aet", aet, "-aec", called, "127.0.0.1", str(port), *map(str, files)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def received(folder: Path) -> dict[str, dict[str, list[str]]]:
    """source SOP Instance UID -> kind -> [result SOP Instance UIDs] of what a storescp received."""
    out: dict[str, dict[str, list[str]]] = {}
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        kind = KIND_OF_CLASS.get(str(ds.SOPClassUID))
        if kind == "sr":
            refs = [s.ReferencedSOPInstanceUID for st in ds.CurrentRequestedProcedureEvidenceSequence
                    for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence
                    if s.ReferencedSOPClassUID != "1.2.840.10008.5.1.4.1.1.7"]
        elif kind == "gsps":
            refs = [i.ReferencedSOPInstanceUID for se in ds.ReferencedSeriesSequence for i in se.ReferencedImageSequence]
        elif kind == "sc":
            refs = [i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence]
        else:
            continue
        out.setdefault(refs[0], {}).setdefault(kind, []).append(str(ds.SOPInstanceUID))
    return out


def sop_uids(files: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
