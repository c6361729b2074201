"""Throughput of the DICOM node: storescu (4 associations) → cervisag serve → storescp.

    python tools/node_throughput.py --count 50 --size 640x800 --workers 2

Prints studies per minute (first C-STORE to last delivery) and, per study, the measure time
(read + inference + geometry) against the DICOM-writing time (overlay, SC, GSPS, SR, fsync) and
the sending time (C-STORE SCU to the destination), from the node's ``done/*.json`` records.
Needs dcmtk (storescu, storescp) on the PATH or in /usr/bin. Loopback only.

The stand-in PACS (dcmtk ``storescp``) runs with Nagle's algorithm disabled (environment
``TCP_NODELAY=1``, see dcmtk's ``envvars.txt``), as PACS built for throughput do (Orthanc compiles
dcmtk with ``DISABLE_NAGLE_ALGORITHM``). dcmtk 3.6.2 and later keep Nagle on by default; then every
C-STORE response waits for our delayed ACK, about 40 ms per object on Linux. ``--pacs-nagle``
measures that PACS instead.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    for c in (Path("/usr/bin") / name, shutil.which(name)):
        if c and Path(c).is_file() and not open(c, "rb").read(64).startswith(b"#!"):
            return str(c)
    raise SystemExit(f"{name} (dcmtk) not found: apt-get install dcmtk")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit("timed out")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--size", default="640x800", help="phantom WxH")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--associations", type=int, default=4)
    ap.add_argument("--outputs", default="sr,gsps,sc")
    ap.add_argument("--keep-association", type=float, default=None,
                    help="the node's [timeouts] keep_association in s (default: the node's default, 5; 0: one per study)")
    ap.add_argument("--pacs-nagle", action="store_true",
                    help="run the stand-in PACS with dcmtk's default (Nagle's algorithm on: ~40 ms per C-STORE response)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom

    w, h = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="cervisag-node-bench-"))
    files = [write_dicom(render_phantom(7, i, size=(w, h)), work / "in" / f"{i:03d}.dcm") for i in range(args.count)]
    pacs_port, node_port = _port(), _port()
    (work / "pacs").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pacs_env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if not args.pacs_nagle:
        pacs_env["TCP_NODELAY"] = "1"
    pacs = subprocess.Popen([_tool("storescp"), "-aet", "PACS", "-od", str(work / "pacs"), str(pacs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=pacs_env)
    config = []
    if args.keep_association is not None:
        (work / "node.toml").write_text(f'spool = "{work / "spool"}"\n[timeouts]\nkeep_association = {args.keep_association}\n')
        config = ["--config", str(work / "node.toml")]
    node = subprocess.Popen([sys.executable, "-m", "cervisag_edge.cli.main", "-q", "serve", *config, "--spool", str(work / "spool"),
                             "--host", "127.0.0.1", "--port", str(node_port), "--workers", str(args.workers),
                             "--outputs", args.outputs, "--destination", f"PACS@127.0.0.1:{pacs_port}"], env=env)
    try:
        status = work / "spool" / "status.json"
        _wait(lambda: status.is_file() and json.loads(status.read_text()).get("state") == "serving", 120)
        t0 = time.perf_counter()
        groups = [files[i::args.associations] for i in range(args.associations)]
        senders = [subprocess.Popen([_tool("storescu"), "-aet", "MOD", "-aec", "CERVISAG", "127.0.0.1", str(node_port),
                                     *map(str, g)]) for g in groups if g]
        for s in senders:
            s.wait()
        t_sent = time.perf_counter() - t0
        done = work / "spool" / "done"
        finished = lambda: len(list(done.glob("*.json"))) + len(list((work / "spool" / "skipped").glob("*.json")))
        _wait(lambda: finished() >= args.count, 3600)
        wall = time.perf_counter() - t0
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=120)
        pacs.terminate()
        pacs.wait(timeout=30)
    recs = [json.loads(p.read_text()) for p in done.glob("*.json")]
    measure = [r["measure_ms"] for r in recs]
    write = [r["write_ms"] for r in recs]
    send = [r["send_ms"] for r in recs]
    med = statistics.median
    overhead = [(wr + se) / me for me, wr, se in zip(measure, write, send)]
    print(f"studies {args.count} ({len(recs)} delivered) at {args.size}, workers {args.workers}, "
          f"{args.associations} associations, outputs {args.outputs}, cpus {os.cpu_count()}, "
          f"PACS Nagle {'on' if args.pacs_nagle else 'off'}, keep_association {args.keep_association if args.keep_association is not None else 'default'}")
    print(f"all C-STOREs acknowledged after {t_sent:.1f} s; last result delivered after {wall:.1f} s")
    print(f"throughput {len(recs) / wall * 60:.1f} studies/min")
    print("| per study (ms) | median | mean |\n|---|---|---|")
    for name, vals in (("measure (read + infer + geometry)", measure), ("DICOM writing (overlay, SC, GSPS, SR, fsync)", write),
                       ("sending (C-STORE SCU)", send)):
        print(f"| {name} | {med(vals):.0f} | {statistics.fmean(vals):.0f} |")
    print(f"| overhead / measure | {med(overhead) * 100:.0f} % | {statistics.fmean(overhead) * 100:.0f} % |")
    print("sending per study (ms, sorted):", " ".join(f"{v:.0f}" for v in sorted(send)))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
