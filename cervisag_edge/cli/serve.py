"""``cervisag serve``: the DICOM node (Storage SCP → measure → SR/GSPS/SC to the destinations)."""
from __future__ import annotations

import argparse

HELP = "run the DICOM node: receive images by C-STORE, send back SR, GSPS and SC (see docs/node.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="node configuration (TOML); options below override it")
    parser.add_argument("--ae-title", metavar="AE", dest="ae_title", help="our AE title (default CERVISAG)")
    parser.add_argument("--port", type=int, metavar="N", help="TCP port to listen on (default 11112)")
    parser.add_argument("--host", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--spool", metavar="DIR", help="spool directory (received instances, results, journal)")
    parser.add_argument("--allow", action="append", metavar="AE", default=[],
                        help="calling AE title allowed to associate (repeatable; none given: any)")
    parser.add_argument("--destination", action="append", metavar="AE@HOST:PORT", default=[], dest="destinations",
                        help="Storage SCP receiving the results (repeatable)")
    parser.add_argument("--outputs", metavar="LIST", help="results to send: comma list of sr,gsps,sc (default all)")
    parser.add_argument("--workers", type=int, metavar="N", help="measuring threads (default 1)")
    parser.add_argument("--status", action="store_true", help="print the running node's status (from the spool) and exit")
    parser.add_argument("--json", action="store_true", help="with --status: print the status as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import signal
    import threading

    from ..node.config import load_config

    overrides = {k: getattr(args, k) for k in ("ae_title", "port", "host", "spool", "allow", "destinations", "outputs", "workers")}
    config = load_config(args.config, overrides)
    if args.status:
        from ..node.health import format_status, read_status

        status = read_status(config.spool)
        print(json.dumps(status, indent=1) if args.json else format_status(status))
        return 0 if status["alive"] else 1

    import logging

    from ..node.server import Node

    for noisy in ("highdicom", "pynetdicom", "cervisag_edge.outputs"):  # one line per association/study comes from the node
        if logging.getLogger(noisy).getEffectiveLevel() < logging.WARNING and not getattr(args, "debug", False):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = Node(config).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.stop(drain=True)
    return 0
