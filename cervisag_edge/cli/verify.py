"""``cervisag verify``: accuracy of a model/engine on a labelled set against versioned thresholds.

Exit status: 0 when every threshold (and comparison/baseline tolerance) passes, 1 when any fails
(each failure is named), 2 for usage or input errors. See ``docs/verify.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

HELP = "verify landmark and parameter accuracy on a labelled COCO set against thresholds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="folder with the images and annotations.json (COCO keypoints)")
    parser.add_argument("--annotations", metavar="FILE", help="COCO file to use instead of DATASET/annotations.json")
    parser.add_argument("--model", metavar="M", help="model name or manifest path (default: the shipped model)")
    parser.add_argument("--backend", default="onnxruntime", help="inference backend (default: onnxruntime)")
    parser.add_argument("--precision", default="fp32", help="engine precision: fp32, fp16, int8 (default: fp32)")
    parser.add_argument("--threads", type=int, metavar="N", help="intra-op threads of each Measurer")
    parser.add_argument("--no-refine", action="store_true",
                        help="first stage only, even when the manifest has a second (refine) stage")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default: 1, in-process)")
    parser.add_argument("--thresholds", default="paper2025", metavar="NAME|FILE",
                        help="built-in threshold set name or threshold JSON file (default: paper2025)")
    parser.add_argument("--json", metavar="FILE", help="write the metrics document to FILE")
    parser.add_argument("--report", metavar="DIR", help="write report.md and PNG figures into DIR")
    parser.add_argument("--compare", nargs="+", metavar="VARIANT",
                        help="compare precisions (fp32 fp16 int8) or BACKEND:PRECISION variants against FP32")
    parser.add_argument("--compare-backends", nargs="+", metavar="BACKEND",
                        help="compare backends at --precision against --backend")
    parser.add_argument("--baseline", metavar="FILE", help="fail on regression against an earlier --json metrics file")
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (a local instance without ADDRESS); needs the [ray] extra")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class _Progress:
    """Plain-text progress on a stream: a rewritten line on a terminal, else a line per 10 %."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.last_decile = -1
        self.label = ""

    def __call__(self, label: str, done: int, total: int, failed: int) -> None:
        if label != self.label:
            self.label, self.start, self.last_decile = label, time.monotonic(), -1
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 and done else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        width = 30
        filled = int(width * done / total) if total else width
        text = (f"verify {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"failed {failed}  {rate:.1f} img/s" + (f"  eta {eta:.0f}s" if math.isfinite(eta) else ""))
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == total else ""))
            self.stream.flush()
            return
        decile = (10 * done // total) if total else 10
        if decile != self.last_decile or done == total:
            self.last_decile = decile
            self.stream.write(text + "\n")
            self.stream.flush()


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, list):
        return "[" + ", ".join(_f(x, digits) for x in v) + "]"
    return f"{float(v):.{digits}f}"


def format_table(metrics: dict[str, Any]) -> str:
    """The plain-text console summary of a metrics document."""
    m = metrics
    th = m.get("thresholds", {})
    model = m.get("model", {})
    out = [
        f"model {model.get('id')}  backend {m.get('backend')}  precision {m.get('precision')}  stages {model.get('stages', 1)}",
        f"thresholds {th.get('name')} v{th.get('version')}   images {m['n_images']}  failed {m['n_failed']}",
        "",
        f"{'landmarks':<14}{'n':>6}{'missed':>8}{'MRE':>8}{'SD':>8}{'median':>8}{'P95':>8}{'max':>8}"
        f"{'SDR2':>8}{'SDR2.5':>8}{'SDR3':>8}{'SDR4':>8}",
    ]
    rows = [("visible*", m["visible"]), ("hidden", m["hidden"]), ("all labelled", m["all_labelled"])]
    for name, s in rows:
        sdr = "".join(f"{_f(v, 2):>8}" for v in s["sdr_percent"].values())
        out.append(f"{name:<14}{s['n']:>6}{s['n_missed']:>8}{_f(s['mean_mm']):>8}{_f(s['sd_mm']):>8}"
                   f"{_f(s['median_mm']):>8}{_f(s['p95_mm']):>8}{_f(s['max_mm']):>8}{sdr}")
    out += ["", f"{'parameter':<16}{'n':>5}{'MAE':>8}{'SD':>8}{'SMAPE%':>8}{'bias':>8}{'LoA':>20}{'ICC':>8}"]
    for k, p in m["parameters"].items():
        out.append(f"{k:<16}{p['n']:>5}{_f(p['mae']):>8}{_f(p['sd']):>8}{_f(p['smape'], 2):>8}{_f(p['bias']):>8}"
                   f"{_f(p['loa'], 2):>20}{_f(p['icc']):>8}")
    out.append(f"pooled ICC {_f(m['icc_pooled'], 4)} 95% CI {_f(m['icc_pooled_ci95'], 4)}")
    if th.get("checks"):
        out += ["", "thresholds:"]
        for c in th["checks"]:
            req = f"{c['op']} {c['value']:g}" + (f" +- {c['tolerance']:g}" if c["op"] == "==" else "")
            out.append(f"  {'ok  ' if c['passed'] else 'FAIL'} {c['metric']:<32} {_f(c['actual'], 4):>10}  {req}")
    for c in m.get("comparisons", []):
        if c["status"] == "skipped":
            out.append(f"variant {c['label']}: skipped ({c['reason']})")
        else:
            mae = ", ".join(f"{k} {_f(v, 3)}" for k, v in c["mae_delta"].items())
            out.append(f"variant {c['label']}: shift mean {_f(c['shift_mean_mm'])} mm / max {_f(c['shift_max_mm'])} mm "
                       f"({_f(c['shift_mean_px'])} / {_f(c['shift_max_px'])} px), dMRE {_f(c['mre_delta_mm'])} mm, "
                       f"dMAE {mae}; worst {c['worst_image']} -> {'ok' if c['passed'] else 'FAIL'}")
    out += ["", "PASSED" if m["passed"] else f"FAILED ({len(m['failures'])} failures)"]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..tooling.verify import MeasurerSpec, load_dataset, load_thresholds, verify
    from ..tooling.verify.compare import load_baseline, parse_variants

    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, found {args.workers}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, found {args.limit}")
    if args.compare and args.compare_backends:
        raise InputError("use either --compare or --compare-backends, not both")
    thresholds = load_thresholds(args.thresholds)
    dataset = load_dataset(args.dataset, args.annotations)
    baseline = load_baseline(args.baseline) if args.baseline else None
    spec = MeasurerSpec(model=args.model, backend=args.backend, precision=args.precision, threads=args.threads,
                        refine=not args.no_refine)
    variants: list[tuple[str, str]] = []
    if args.compare:
        variants = parse_variants(args.compare, args.backend, args.precision)
    elif args.compare_backends:
        variants = parse_variants(args.compare_backends, args.backend, args.precision, backends_only=True)
    progress = None if args.no_progress else _Progress(sys.stderr)
    outcome = verify(
        dataset, spec, thresholds, workers=args.workers, limit=args.limit, variants=variants, baseline=baseline,
        progress=progress, use_ray=args.ray is not None, ray_address=args.ray or None,
    )
    print(format_table(dict(outcome.metrics)))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(outcome.metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if args.report:
        from ..tooling.verify.report import write_report

        files = write_report(outcome, args.report)
        print(f"report: {files[0]} ({len(files) - 1} figures)", file=sys.stderr)
    for f in outcome.failures:
        print(f"cervisag verify: FAIL: {f}", file=sys.stderr)
    return 0 if outcome.passed else 1
