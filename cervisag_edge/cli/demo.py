"""``cervisag demo``: measure the bundled phantom DICOM and write its overlay and JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "measure the bundled demo phantom (examples/) and write overlay + JSON"


def demo_input() -> Path:
    """The bundled demo DICOM: ``examples/`` of a checkout, else the packaged copy."""
    here = Path(__file__).resolve().parents[1]
    for cand in (here.parent / "examples" / "demo_phantom.dcm", here / "examples" / "demo_phantom.dcm"):
        if cand.is_file():
            return cand
    return here.parent / "examples" / "demo_phantom.dcm"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="cervisag-demo", metavar="DIR", help="output folder (default ./cervisag-demo)")
    p.add_argument("--input", metavar="FILE", help="measure this file instead of the bundled phantom")


def run(args: argparse.Namespace) -> int:
    from ..outputs.records import RecordSink
    from ..outputs.sinks import OverlaySink
    from ..runner import MeasurerSpec, run_studies, studies_of

    src = Path(args.input) if args.input else demo_input()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sink = RecordSink()
    for result in run_studies(studies_of([src]), MeasurerSpec(), sinks=(OverlaySink(str(out)),)):
        sink.consume(result)
    json_path = out / "measurement.json"
    sink.write(str(json_path))
    rec = sink.records[0]
    if not rec["ok"]:
        print(rec["error"], file=sys.stderr)
        return 1
    overlay = next(out.glob("*.png"), None)
    params = rec["measurement"]["parameters"]
    six = {k: params[k] for k in list(params)[:6]}
    print(f"measured {src.name} (synthetic phantom; not for diagnostic use)")
    print(json.dumps(six, indent=2))
    print(f"overlay: {overlay}\njson:    {json_path}")
    return 0
