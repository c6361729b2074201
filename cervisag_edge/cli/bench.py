"""``cervisag bench``: time every installed backend × precision, stage by stage.

Each backend × precision runs in a fresh Python process (so its cold start and peak RSS are its
own); the parent prints a table and optionally writes the JSON report (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HELP = "time the pipeline stages per backend and precision (median, p95, images/s, cold start, RSS)"

logger = logging.getLogger(__name__)

_ALL_BACKENDS = ("torch", "onnxruntime", "tensorrt")
_ALL_PRECISIONS = ("fp32", "fp16", "int8")
#: Code the worker process runs; the first statement stamps the process start for ``import_ms``.
_WORKER_CODE = ("import time; _t0 = time.perf_counter(); import sys; "
                "from cervisag_edge.cli.bench import worker_entry; sys.exit(worker_entry(_t0))")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the report (schema cervisag-bench/1) to FILE")
    parser.add_argument("--repeat", type=int, default=20, metavar="N", help="timed repetitions per run (default 20)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed warm-up repetitions (default 2)")
    parser.add_argument("--backends", nargs="+", default=list(_ALL_BACKENDS), metavar="NAME",
                        help="backends to time (default: torch onnxruntime tensorrt; missing ones are reported as skipped)")
    parser.add_argument("--precisions", nargs="+", default=list(_ALL_PRECISIONS), metavar="P",
                        help="precisions to time (default: fp32 fp16 int8)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8], metavar="N", help="batch sizes (default: 1 8)")
    parser.add_argument("--input", type=Path, metavar="FILE",
                        help="image to time (default: a generated 2000x2500 16-bit DICOM phantom)")
    parser.add_argument("--transfer-syntax", nargs="+", metavar="NAME",
                        help="read-path table instead: end to end and read per transfer syntax (uncompressed rle "
                             "jpeg-lossless jpeg-ls jpeg2000 jpeg2000-lossy htj2k jpeg-baseline, or all), with the "
                             "thirty-line peer pipeline and the floors")
    parser.add_argument("--model", help="model name or manifest path (default: the shipped model)")
    parser.add_argument("--threads", type=int, metavar="N", help="intra-op threads per backend (default: the engine's)")
    parser.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                        help="seconds one backend x precision may take before it is abandoned (default 1800)")


def worker_entry(t_process_start: float) -> int:
    """Worker process: RunSpec JSON on stdin → list of run dicts as JSON on the last stdout line."""
    from ..tooling.latency.bench import RunSpec, worker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    spec = RunSpec.from_json(sys.stdin.read())
    runs = worker(spec, t_process_start)
    sys.stdout.write(json.dumps(runs) + "\n")
    return 0


def run_worker(spec: Any, timeout_s: float) -> tuple[list[dict[str, Any]], str | None]:
    """Run one :class:`~cervisag_edge.tooling.latency.bench.RunSpec` in a fresh process: (runs, None) or ([], reason)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _WORKER_CODE], input=spec.to_json(), capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout_s:.0f} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return [], f"failed: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]), None
    except (IndexError, json.JSONDecodeError):
        return [], "failed: the worker printed no result"


def _input_info(path: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        info.update(transfer_syntax=str(ds.file_meta.TransferSyntaxUID.name), rows=int(ds.Rows), columns=int(ds.Columns),
                    bits_allocated=int(ds.BitsAllocated))
    except Exception as exc:  # not DICOM (PNG/JPEG/TIFF input): only the size is recorded
        logger.debug("%s: no DICOM header (%s)", path, exc)
    return info


def _run_read_path(args: argparse.Namespace) -> int:
    from ..tooling.latency import bench
    from ..tooling.latency.read_path import SYNTAXES, render_read_table, run_read_bench

    names = list(SYNTAXES) if "all" in args.transfer_syntax else args.transfer_syntax
    unknown = [n for n in names if n not in SYNTAXES]
    if unknown:
        print(f"cervisag bench: error: --transfer-syntax {' '.join(unknown)}: expected {', '.join(SYNTAXES)} or all",
              file=sys.stderr)
        return 2
    section = run_read_bench(names, repeat=args.repeat, threads=args.threads)
    print(render_read_table(section))
    if args.json:
        doc = {"schema": bench.SCHEMA, "machine": bench.machine_info(), "read_path": section}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    from ..tooling.latency import bench
    from ..engine.resolver import manifest_path_for
    from ..engine.manifest import load_manifest

    if args.repeat < 1 or args.warmup < 0 or any(b < 1 for b in args.batch):
        print("cervisag bench: error: --repeat and --batch must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    if args.transfer_syntax:
        return _run_read_path(args)
    with tempfile.TemporaryDirectory(prefix="cervisag-bench-") as tmp:
        if args.input is None:
            t0 = time.perf_counter()
            path = bench.make_bench_inputs(tmp, j2k=False)["uncompressed"]
            logger.info("generated %s in %.1f s", path.name, time.perf_counter() - t0)
        else:
            path = args.input
            if not path.is_file():
                print(f"cervisag bench: error: {path}: file not found", file=sys.stderr)
                return 2
        report = _report(args, path, bench, manifest_path_for, load_manifest)
        report["input"]["generated"] = args.input is None
    print(bench.render_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", args.json)
    return 0 if report["runs"] else 1


def _report(args: argparse.Namespace, path: Path, bench: Any, manifest_path_for: Any, load_manifest: Any) -> dict[str, Any]:
    from ..engine.resolver import unavailable_reason

    manifest = load_manifest(manifest_path_for(args.model, "onnxruntime", "fp32"), verify_sha256=False)
    extra = manifest.extra
    cpu_gflops = bench.matmul_gflops()
    report: dict[str, Any] = {
        "schema": bench.SCHEMA,
        "command": " ".join(["cervisag", "bench", *(sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else [])]),
        "machine": bench.machine_info(),
        "model": {"name": manifest.name, "sha256": manifest.sha256, "input_shape": list(manifest.input_shape),
                  "macs_per_image": extra.get("macs_per_image"), "parameters": extra.get("parameters")},
        "input": _input_info(path),
        "settings": {"repeat": args.repeat, "warmup": args.warmup, "batches": sorted(set(args.batch)), "threads": args.threads},
        "floors": bench.model_floors(extra.get("macs_per_image") or 0, int(extra.get("parameters") or 0), cpu_gflops),
        "runs": [],
        "skipped": [],
    }
    for backend in args.backends:
        for precision in args.precisions:
            reason = unavailable_reason(backend, precision, args.model)
            if reason is None:
                spec = bench.RunSpec(backend, precision, str(path), args.repeat, args.warmup, tuple(args.batch),
                                     args.model, args.threads)
                logger.info("timing %s %s (%d repeats, batches %s)", backend, precision, args.repeat, sorted(set(args.batch)))
                runs, reason = run_worker(spec, args.timeout)
                report["runs"].extend(runs)
            if reason is not None:
                logger.info("skipped %s %s: %s", backend, precision, reason)
                report["skipped"].append({"backend": backend, "precision": precision, "reason": reason})
    report["comparisons"] = bench.comparisons(report["runs"])
    return report
