"""``cervisag measure``: measure radiographs, write JSON, overlays and DICOM SC/SR."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..engine.resolver import BACKEND_CHOICES

HELP = "measure the six sagittal parameters on DICOM/PNG/JPEG/TIFF radiographs"

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write a JSON array of records to FILE ('-' for stdout)")
    p.add_argument("--overlay", metavar="DIR", help="write an overlay PNG per image into DIR")
    p.add_argument("--coco-out", metavar="FILE",
                   help="write the landmarks as COCO keypoints pre-annotations to FILE (for CVAT / Label Studio; docs/adaptation.md)")
    p.add_argument("--dicom-out", metavar="DIR", help="write a DICOM Secondary Capture and Comprehensive SR per image into DIR")
    p.add_argument("--model", help="model name in engines/ or a manifest path (default: the shipped model)")
    p.add_argument("--backend", default="onnxruntime", choices=BACKEND_CHOICES)
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    p.add_argument("--pixel-spacing", nargs=2, type=float, metavar=("ROW", "COL"), help="pixel spacing in mm (overrides the file's)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, help="inference threads per worker")
    p.add_argument("--confidence-threshold", type=float, help="landmarks below it are not visible (default: the model's)")
    p.add_argument("--no-estimates", dest="estimates", action="store_false",
                   help="report measured values only: no estimated hidden landmarks, parameters needing them are null")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="per-study time limit; studies then run in worker processes (default with --workers > 1: 120)")
    p.add_argument("--max-pixels", type=int, help="refuse images with more pixels than this, before decoding")
    p.add_argument("--max-bytes", type=int, help="refuse files larger than this many bytes, before reading")
    p.add_argument("--max-batch", dest="max_studies", type=int, default=100_000, help="refuse runs with more files than this")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each file's warnings on stderr (default: they go into the JSON records and one summary line)")


def _validate(args: argparse.Namespace) -> str | None:
    if args.workers < 1:
        return f"--workers {args.workers}: expected an integer >= 1"
    if args.threads is not None and args.threads < 1:
        return f"--threads {args.threads}: expected an integer >= 1"
    if args.timeout is not None and not args.timeout > 0:
        return f"--timeout {args.timeout}: expected seconds > 0"
    if args.pixel_spacing and not all(v > 0 and v == v and v != float("inf") for v in args.pixel_spacing):
        return f"--pixel-spacing {args.pixel_spacing[0]} {args.pixel_spacing[1]}: expected two finite numbers > 0 (mm)"
    if args.confidence_threshold is not None and not 0 <= args.confidence_threshold <= 1:
        return f"--confidence-threshold {args.confidence_threshold}: expected a value in [0, 1]"
    if args.coco_out and Path(args.coco_out).is_dir():
        return f"--coco-out {args.coco_out}: is a folder, expected a file name such as {Path(args.coco_out) / 'annotations.json'}"
    return None


def _warnings(rec: dict) -> list[str]:
    return list((rec.get("measurement") or {}).get("warnings") or [])


def run(args: argparse.Namespace) -> int:
    from ..outputs.records import RecordSink
    from ..outputs.sinks import file_sinks
    from ..runner import MeasurerSpec, collect_inputs, run_studies, studies_of
    from .progress import Progress

    problem = _validate(args)
    if problem:
        print(f"cervisag measure: error: {problem}", file=sys.stderr)
        return 2
    files = collect_inputs(args.paths)
    if not files:
        print(f"cervisag measure: error: no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    spec = MeasurerSpec(model=args.model, backend=args.backend, precision=args.precision, threads=args.threads,
                        confidence_threshold=args.confidence_threshold, estimates=args.estimates,
                        max_pixels=args.max_pixels, max_bytes=args.max_bytes)
    studies = studies_of(files, tuple(args.pixel_spacing) if args.pixel_spacing else None)
    bar = Progress(len(files), "measure", enabled=not args.no_progress)
    records = RecordSink()
    verbose = getattr(args, "verbose", False)
    for result in run_studies(studies, spec, workers=args.workers, timeout_s=args.timeout,
                              sinks=file_sinks(args.overlay, args.dicom_out), max_studies=args.max_studies,
                              progress=lambda done, total, r: bar.update(done)):
        rec = records.consume(result)
        if not result.ok:
            print(result.error, file=sys.stderr)
        elif verbose:
            for message in _warnings(rec):
                print(f"warning: {rec['file']}: {message}", file=sys.stderr)
    recs = records.records
    if args.coco_out:
        from ..outputs.coco import write_coco

        write_coco(recs, args.coco_out)
    if args.json_out:
        records.write(args.json_out)
    elif len(recs) == 1 and recs[0]["ok"] and not (args.overlay or args.dicom_out or args.coco_out):
        # a single file with no other output: a short summary on stdout
        params = recs[0]["measurement"]["parameters"]
        print(json.dumps({k: params[k] for k in list(params)[:6]}, indent=2))
    warned = sum(1 for r in recs if r["ok"] and _warnings(r))
    if warned and not verbose:
        where = f"in the records of {args.json_out}" if args.json_out and args.json_out != "-" else "in the JSON records"
        print(f"cervisag measure: {warned} of {len(recs)} file(s) measured with warnings ({where}; "
              "--verbose lists them)", file=sys.stderr)
    failed = sum(not r["ok"] for r in recs)
    if failed:
        logger.warning("%d of %d file(s) failed", failed, len(recs))
    return 1 if failed else 0
