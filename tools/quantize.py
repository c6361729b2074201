#!/usr/bin/env python3
"""Make the precision variants of an FP32 ONNX model: ``tools/quantize.py engines/cervisag_unet.json``.

Variants (each ``<model>.<variant>.onnx`` with a manifest ``<model>.<variant>.json``):

* ``fp16``: FP16 compute, FP32 I/O. NVIDIA Model Optimizer AutoCast when ``modelopt`` is
  installed, else ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)``.
* ``int8-trt``: symmetric S8 activations and per-channel S8 weights as explicit Q/DQ, the form
  strongly typed TensorRT (10.12+ and 11.x) needs. Model Optimizer when installed, else
  ONNX Runtime ``quantize_static`` (QDQ, QInt8/QInt8, per channel, symmetric).
* ``int8-cpu``: what ONNX Runtime's CPU provider runs fastest: U8 activations, per-channel S8
  weights, QDQ or QOperator format (both are built and timed; the faster one is kept).

A two-stage manifest (field ``refine``, docs/refinement.md) gets the same variant of its second
stage, ``<stage2>.<variant>.onnx``, named by the variant manifest's own ``refine`` entry; it is
calibrated on vertebra crops of the calibration phantoms (cut by the runtime's crop function
around the labelled corners) and its accuracy is the corner shift versus the FP32 stage 2 in
crop px.

Calibration and accuracy use phantoms (``cervisag_edge.tooling.phantom.render_phantom``) through the
runtime's own letterbox: fixed seeds and indices, so a rerun gives the same files. For each INT8
variant the calibration methods given by ``--calib-methods`` and keeping the heatmap head (the
last Conv) in FP32 or not are compared on the held-out phantoms by the landmark error versus
FP32 in mm; the most accurate is kept (the head stays FP32 only when that measurably helps).
Extra: ``pip install 'cervisag-edge[quantize]'``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cervisag_edge.engine.codec import UDPHeatmapCodec  # noqa: E402
from cervisag_edge.engine.manifest import ModelManifest, load_manifest, sha256_file  # noqa: E402
from cervisag_edge.engine.preprocess import LetterboxTransform, prepare_input  # noqa: E402

logger = logging.getLogger("quantize")

VARIANTS = ("fp16", "int8-trt", "int8-cpu")
CALIB_METHODS = ("MinMax", "Percentile", "Entropy")
#: Largest mean corner shift (crop px, vs FP32) an INT8 second stage may have; above it the variant keeps
#: the second stage in FP16 (``extra.int8_rejected`` says so). 0.5 crop px ≈ 0.15 mm at the default crop.
STAGE2_INT8_MAX_SHIFT_PX = 0.5
#: A head kept in FP32 must cut the landmark error by at least this fraction to be worth its cost.
HEAD_GAIN_MIN = 0.05


@dataclass(frozen=True)
class EvalSample:
    """One preprocessed held-out image: input (1, 1, H, W) float32, its letterbox and spacing (row, col) mm."""

    input: np.ndarray
    transform: LetterboxTransform
    spacing_mm: tuple[float, float]


@dataclass(frozen=True)
class Candidate:
    """One quantised model and how it did versus FP32 (mm) and its median CPU latency (ms)."""

    path: Path
    method: str
    head_fp32: bool
    quant_format: str
    mean_error_mm: float
    max_error_mm: float
    latency_ms: float


# ---------------------------------------------------------------- data -------------------
def preprocess_display(display: np.ndarray, manifest: ModelManifest) -> tuple[np.ndarray, LetterboxTransform]:
    """(H, W) display in [0, 1] → ((1, 1, H_in, W_in) float32 input, transform): the runtime's ``preprocess.prepare_input``."""
    return prepare_input(display, manifest.input_hw, pad_value=manifest.pad_value, mean=manifest.mean, std=manifest.std)


def phantom_samples(manifest: ModelManifest, seed: int, count: int, long_side: int) -> list[EvalSample]:
    """``count`` phantoms of ``seed`` (indices 0..count-1, in order), preprocessed for ``manifest``."""
    try:
        from cervisag_edge.tooling.phantom import render_phantom
    except ImportError as exc:
        raise RuntimeError(f"cervisag_edge.tooling.phantom.render_phantom is needed for calibration ({exc})") from None
    out = []
    for index in range(count):
        ph = render_phantom(seed, index, out_long_side=long_side)
        x, tf = preprocess_display(np.asarray(ph.display, dtype=np.float32), manifest)
        sp = tuple(float(v) for v in ph.pixel_spacing_mm)
        out.append(EvalSample(x, tf, (sp[0], sp[1])))
    return out


class _Reader:
    """ONNX Runtime CalibrationDataReader over fixed inputs (a fresh iterator per calibration)."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]) -> None:
        self.name, self.inputs = name, list(inputs)
        self._it: Iterator[np.ndarray] = iter(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.name: x}

    def rewind(self) -> None:
        self._it = iter(self.inputs)


# ---------------------------------------------------------------- graph helpers ----------
def head_node_names(model_path: Path) -> list[str]:
    """Names of the Conv node(s) that produce the graph output (walking back through non-Conv nodes)."""
    import onnx

    g = onnx.load(str(model_path), load_external_data=False).graph
    producer = {o: n for n in g.node for o in n.output}
    heads: list[str] = []
    stack = [o.name for o in g.output]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        node = producer.get(t)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Conv":
            heads.append(node.name)
        else:
            stack.extend(node.input)
    return sorted(heads)


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (then U8S8 needs no reduced weight range)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def modelopt_available() -> bool:
    try:
        return importlib.util.find_spec("modelopt.onnx") is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------- producers --------------
def make_fp16(src: Path, dst: Path) -> str:
    """Write the FP16 model (FP32 I/O); returns the tool used."""
    import onnx

    if modelopt_available():
        from modelopt.onnx.autocast import convert_to_mixed_precision

        onnx.save(convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16", keep_io_types=True), str(dst))
        return "modelopt.onnx.autocast.convert_to_mixed_precision(low_precision_type=fp16, keep_io_types=True)"
    from onnxconverter_common.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(dst))
    return "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True) (fallback: modelopt not installed)"


def ort_extra_options(variant: str, method: str) -> dict[str, Any]:
    """``extra_options`` of ``quantize_static`` for a variant.

    ``int8-trt``: symmetric S8 activations and weights, and ``QuantizeBias=False``: ONNX
    Runtime otherwise quantises every Conv bias to INT32 behind a ``DequantizeLinear``, which
    TensorRT's ONNX parser rejects (INT32 is not a quantised type it accepts, NVIDIA/TensorRT#4542);
    TensorRT fuses the FP32 bias into the INT8 convolution itself.
    """
    if variant == "int8-trt":
        extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    else:
        extra = {"WeightSymmetric": True}
    if method == "Percentile":
        extra["CalibPercentile"] = 99.999
    return extra


def quantize_ort(src: Path, dst: Path, inputs: Sequence[np.ndarray], input_name: str, *, method: str, variant: str,
                 quant_format: str, reduce_range: bool, exclude: Sequence[str]) -> dict[str, Any]:
    """ONNX Runtime static quantisation; returns the settings as recorded in the manifest."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    symmetric = variant == "int8-trt"
    act = QuantType.QInt8 if symmetric else QuantType.QUInt8
    extra = ort_extra_options(variant, method)
    quantize_static(
        str(src), str(dst), _Reader(input_name, inputs), quant_format=getattr(QuantFormat, quant_format),
        per_channel=True, reduce_range=reduce_range, activation_type=act, weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude), calibrate_method=getattr(CalibrationMethod, method), extra_options=extra,
    )
    return {
        "tool": "onnxruntime.quantization.quantize_static", "format": quant_format,
        "activation_type": act.name, "weight_type": "QInt8", "per_channel": True, "reduce_range": reduce_range,
        "extra_options": extra,
    }


def quantize_modelopt(src: Path, dst: Path, inputs: Sequence[np.ndarray], *, method: str, exclude: Sequence[str]) -> dict[str, Any]:
    """Model Optimizer INT8 Q/DQ (symmetric, TensorRT-ready); calibrated through ONNX Runtime on the CPU."""
    from modelopt.onnx.quantization import quantize

    calib = np.concatenate(list(inputs), axis=0)
    mo_method = {"MinMax": "max", "Entropy": "entropy"}.get(method)
    if mo_method is None:
        raise ValueError(f"Model Optimizer has no {method} calibration; use MinMax or Entropy")
    quantize(onnx_path=str(src), quantize_mode="int8", calibration_data=calib, calibration_method=mo_method,
             output_path=str(dst), nodes_to_exclude=list(exclude) or None, calibration_eps=["cpu"])
    return {"tool": "modelopt.onnx.quantization.quantize(quantize_mode=int8)", "format": "QDQ",
            "activation_type": "QInt8", "weight_type": "QInt8", "per_channel": True, "symmetric": True}


# ---------------------------------------------------------------- measurement ------------
def session(path: Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def median_latency_ms(path: Path, input_name: str, shape: Sequence[int], runs: int = 20, warmup: int = 3) -> float:
    """Median wall time of one batch-1 inference on ONNX Runtime's CPU provider."""
    sess = session(path)
    x = np.random.default_rng(0).standard_normal([1 if v < 1 else int(v) for v in shape]).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {input_name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {input_name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def landmarks_mm(path: Path, manifest: ModelManifest, samples: Sequence[EvalSample]) -> np.ndarray:
    """(S, K, 2) decoded landmarks in mm (original image, x·col spacing, y·row spacing)."""
    sess = session(path)
    codec = UDPHeatmapCodec.from_manifest(manifest.codec)
    out = []
    for s in samples:
        hm = sess.run([manifest.output_name], {manifest.input_name: s.input})[0]
        coords_in, _ = codec.decode(hm[0].astype(np.float32))
        px = s.transform.to_original(coords_in)
        out.append(px * np.array([s.spacing_mm[1], s.spacing_mm[0]]))
    return np.asarray(out)


def landmark_error_mm(reference_mm: np.ndarray, variant_mm: np.ndarray) -> tuple[float, float]:
    """(mean, max) Euclidean distance in mm between two (S, K, 2) landmark sets."""
    d = np.linalg.norm(np.asarray(variant_mm) - np.asarray(reference_mm), axis=-1)
    return float(np.mean(d)), float(np.max(d))


def choose(candidates: Sequence[Candidate], head_gain_min: float = HEAD_GAIN_MIN) -> Candidate:
    """Most accurate candidate; an FP32 head must beat the best INT8-head one by ``head_gain_min`` (relative)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    full = [c for c in candidates if not c.head_fp32]
    head = [c for c in candidates if c.head_fp32]
    best_full = min(full, key=lambda c: (c.mean_error_mm, c.latency_ms)) if full else None
    best_head = min(head, key=lambda c: (c.mean_error_mm, c.latency_ms)) if head else None
    if best_full is None:
        return best_head  # type: ignore[return-value]
    if best_head is None:
        return best_full
    if best_head.mean_error_mm < best_full.mean_error_mm * (1.0 - head_gain_min):
        return best_head
    return best_full


def variant_manifest(base: ModelManifest, variant: str, path: Path, extra: dict[str, Any]) -> ModelManifest:
    """The FP32 manifest with the variant's file, sha256, precision and ``base_model``; details in ``extra``."""
    return replace(base, file=path.name, sha256=sha256_file(path), precision=variant, base_model=base.file,
                   extra={**dict(base.extra), **extra}, path=str(path.parent))


# ---------------------------------------------------------------- driver -----------------
def build_int8(variant: str, base: ModelManifest, prepped: Path, work: Path, calib: Sequence[np.ndarray],
               reference_mm: np.ndarray, samples: Sequence[EvalSample], methods: Sequence[str], head_modes: Sequence[bool],
               runs: int, report: Callable[[str], None]) -> tuple[Candidate, dict[str, Any], list[Candidate]]:
    """Build every (method, head, format) candidate of an INT8 variant, measure, keep the best."""
    heads = head_node_names(prepped)
    formats = ("QDQ", "QOperator") if variant == "int8-cpu" else ("QDQ",)
    use_mo = variant == "int8-trt" and modelopt_available()
    reduce_range = variant == "int8-cpu" and not cpu_has_vnni()
    cands, settings = [], {}
    for method in methods:
        if use_mo and method not in ("MinMax", "Entropy"):
            continue
        for head_fp32 in head_modes:
            for fmt in formats:
                out = work / f"{variant}.{method}.{'head' if head_fp32 else 'all'}.{fmt}.onnx"
                exclude = heads if head_fp32 else []
                if use_mo:
                    s = quantize_modelopt(prepped, out, calib, method=method, exclude=exclude)
                else:
                    s = quantize_ort(prepped, out, calib, base.input_name, method=method, variant=variant,
                                     quant_format=fmt, reduce_range=reduce_range, exclude=exclude)
                mean_mm, max_mm = landmark_error_mm(reference_mm, landmarks_mm(out, base, samples))
                lat = median_latency_ms(out, base.input_name, base.input_shape, runs=runs)
                c = Candidate(out, method, head_fp32, fmt, mean_mm, max_mm, lat)
                settings[str(out)] = s
                cands.append(c)
                report(f"  {variant:8s} {method:10s} head={'fp32' if head_fp32 else 'int8'} {fmt:9s} "
                       f"mean {mean_mm:.4f} mm  max {max_mm:.4f} mm  {lat:.1f} ms")
    if variant == "int8-cpu":
        # Format is about speed: keep, per (method, head), the faster format, then choose on accuracy.
        fastest: dict[tuple[str, bool], Candidate] = {}
        for c in cands:
            k = (c.method, c.head_fp32)
            if k not in fastest or c.latency_ms < fastest[k].latency_ms:
                fastest[k] = c
        best = choose(list(fastest.values()))
    else:
        best = choose(cands)
    return best, settings[str(best.path)], cands


def stage2_crops(stage: ModelManifest, seed: int, count: int, long_side: int) -> list[np.ndarray]:
    """(1, 1, S, S) stage-2 inputs: every labelled vertebra of ``count`` phantoms of ``seed``, un-jittered."""
    from cervisag_edge.core.landmarks import vertebra_corner_indices
    from cervisag_edge.engine.crop import crop_display, frame_affine, vertebra_frame
    from cervisag_edge.engine.preprocess import normalize
    from cervisag_edge.tooling.phantom import render_phantom

    S, factor = int(stage.crop["size"]), float(stage.crop["factor"])
    out = []
    for index in range(count):
        ph = render_phantom(seed, index, out_long_side=long_side)
        for v in stage.levels:
            fr = vertebra_frame(np.asarray(ph.landmarks_px)[list(vertebra_corner_indices(v))], factor)
            if fr is not None:
                crop = crop_display(np.asarray(ph.display, dtype=np.float32), frame_affine(fr, S), S, stage.pad_value)
                out.append(normalize(crop, stage.mean, stage.std)[None, None].astype(np.float32))
    return out


def stage2_corners(path: Path, stage: ModelManifest, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(V, 4, 2) decoded corners in crop px of every crop."""
    sess = session(path)
    codec = UDPHeatmapCodec.from_manifest(stage.codec)
    return np.asarray([codec.decode(sess.run([stage.output_name], {stage.input_name: x})[0][0].astype(np.float32))[0]
                       for x in crops])


def stage2_variant(variant: str, stage: ModelManifest, out_dir: Path, work: Path, args: argparse.Namespace,
                   report: Callable[[str], None]) -> dict[str, Any]:
    """Make ``variant`` of the second stage; returns the variant manifest's ``refine`` entry."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib = stage2_crops(stage, args.calib_seed, max(2, args.calib_count // 4), args.long_side)
    held = stage2_crops(stage, args.eval_seed, max(2, args.eval_count // 2), args.long_side)
    ref = stage2_corners(stage.model_path, stage, held)
    dst = out_dir / f"{stage.name}.{variant}.onnx"
    if variant == "fp16":
        extra: dict[str, Any] = {"tool": make_fp16(stage.model_path, dst)}
    else:
        prepped = work / f"{stage.name}.prepped.onnx"
        if not prepped.is_file():
            quant_pre_process(str(stage.model_path), str(prepped), skip_symbolic_shape=True)
        best, best_err = None, None
        for method in args.calib_methods:  # the stage is small: the whole graph in INT8, QDQ
            out = work / f"{stage.name}.{variant}.{method}.onnx"
            settings = quantize_ort(prepped, out, calib, stage.input_name, method=method, variant=variant,
                                    quant_format="QDQ", reduce_range=variant == "int8-cpu" and not cpu_has_vnni(), exclude=[])
            err = float(np.mean(np.linalg.norm(stage2_corners(out, stage, held) - ref, axis=-1)))
            report(f"  stage 2 {variant:8s} {method:10s} mean corner shift {err:.4f} crop px")
            if best_err is None or err < best_err:
                best, best_err = (out, settings, method), err
        extra = {"tool": best[1]["tool"], "quantization": best[1], "calibration": {"method": best[2], "crops": len(calib)}}
        if best_err > STAGE2_INT8_MAX_SHIFT_PX:  # INT8 would undo what the stage is for: keep it in FP16
            extra = {"tool": make_fp16(stage.model_path, dst), "int8_rejected": {
                "method": best[2], "mean_corner_shift_crop_px": round(best_err, 5), "limit_crop_px": STAGE2_INT8_MAX_SHIFT_PX}}
            report(f"stage 2 {variant}: INT8 mean corner shift {best_err:.3f} crop px > {STAGE2_INT8_MAX_SHIFT_PX}: FP16 kept")
        else:
            dst.write_bytes(best[0].read_bytes())
    shift = np.linalg.norm(stage2_corners(dst, stage, held) - ref, axis=-1)
    extra["accuracy_vs_fp32"] = {"mean_corner_shift_crop_px": round(float(shift.mean()), 5),
                                 "max_corner_shift_crop_px": round(float(shift.max()), 5), "crops": len(held)}
    report(f"stage 2 {variant:9s} mean corner shift {shift.mean():.4f} crop px, max {shift.max():.4f}")
    return variant_manifest(stage, variant, dst, extra).to_json_dict()


def refine_only(base: ModelManifest, out_dir: Path, args: argparse.Namespace, report: Callable[[str], None]) -> list[Path]:
    """``--refine-only``: add the second stage's variants to the existing first-stage variant manifests."""
    if base.refine is None:
        raise SystemExit(f"{args.manifest}: --refine-only needs a manifest with a refine entry")
    written = []
    with tempfile.TemporaryDirectory(prefix="cervisag_quant_") as tmp:
        for variant in args.variants:
            mpath = out_dir / f"{base.name}.{variant}.json"
            doc = json.loads(mpath.read_text())
            doc["refine"] = stage2_variant(variant, base.refine, out_dir, Path(tmp), args, report)
            mpath.write_text(json.dumps(doc, indent=2) + "\n")
            load_manifest(mpath)
            written.append(mpath)
    return written


def run(args: argparse.Namespace, report: Callable[[str], None] = print,
        samples_fn: Callable[[ModelManifest, int, int, int], list[EvalSample]] = phantom_samples) -> list[Path]:
    """Produce the requested variants; returns the written manifest paths."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    base = load_manifest(args.manifest)
    out_dir = Path(args.out_dir) if args.out_dir else Path(base.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(args, "refine_only", False):
        return refine_only(base, out_dir, args, report)
    calib = [s.input for s in samples_fn(base, args.calib_seed, args.calib_count, args.long_side)]
    held_out = samples_fn(base, args.eval_seed, args.eval_count, args.long_side)
    reference_mm = landmarks_mm(base.model_path, base, held_out)
    fp32_ms = median_latency_ms(base.model_path, base.input_name, base.input_shape, runs=args.runs)
    report(f"fp32      {base.model_path.name}: {fp32_ms:.1f} ms (ONNX Runtime CPU, batch 1, median of {args.runs})")
    calib_info = {"source": "cervisag_edge.tooling.phantom.render_phantom" if samples_fn is phantom_samples else getattr(samples_fn, "__name__", "custom"),
                  "seed": args.calib_seed, "count": args.calib_count, "long_side": args.long_side}
    eval_info = {"seed": args.eval_seed, "count": args.eval_count}
    written = []
    with tempfile.TemporaryDirectory(prefix="cervisag_quant_") as tmp:
        work = Path(tmp)
        prepped = work / "prepped.onnx"
        quant_pre_process(str(base.model_path), str(prepped), skip_symbolic_shape=True)
        for variant in args.variants:
            dst = out_dir / f"{base.name}.{variant}.onnx"
            if variant == "fp16":
                tool = make_fp16(base.model_path, dst)
                mean_mm, max_mm = landmark_error_mm(reference_mm, landmarks_mm(dst, base, held_out))
                lat = median_latency_ms(dst, base.input_name, base.input_shape, runs=args.runs)
                extra: dict[str, Any] = {"tool": tool}
                report(f"fp16      mean {mean_mm:.4f} mm  max {max_mm:.4f} mm  {lat:.1f} ms")
            else:
                best, settings, cands = build_int8(variant, base, prepped, work, calib, reference_mm, held_out,
                                                   args.calib_methods, args.head_modes, args.runs, report)
                dst.write_bytes(best.path.read_bytes())
                mean_mm, max_mm, lat = best.mean_error_mm, best.max_error_mm, best.latency_ms
                extra = {"tool": settings["tool"], "quantization": settings,
                         "calibration": {**calib_info, "method": best.method,
                                         "compared": [{"method": c.method, "head_fp32": c.head_fp32, "format": c.quant_format,
                                                       "mean_error_mm": round(c.mean_error_mm, 5), "latency_ms": round(c.latency_ms, 2)}
                                                      for c in cands]},
                         "head_fp32": best.head_fp32, "nodes_excluded": head_node_names(prepped) if best.head_fp32 else []}
                report(f"{variant:9s} chose {best.method} head={'fp32' if best.head_fp32 else 'int8'} {best.quant_format}")
            extra["accuracy_vs_fp32"] = {"mean_landmark_error_mm": round(mean_mm, 5), "max_landmark_error_mm": round(max_mm, 5),
                                         "held_out": eval_info}
            extra["cpu_latency_ms"] = {"variant": round(lat, 2), "fp32": round(fp32_ms, 2), "runs": args.runs}
            m = variant_manifest(base, variant, dst, extra)
            mpath = out_dir / f"{base.name}.{variant}.json"
            m.write(mpath)
            if base.refine is not None:
                doc = json.loads(mpath.read_text())
                doc["refine"] = stage2_variant(variant, base.refine, out_dir, work, args, report)
                mpath.write_text(json.dumps(doc, indent=2) + "\n")
                load_manifest(mpath)
            written.append(mpath)
            report(f"wrote {dst} and {mpath}")
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest", help="FP32 model manifest (engines/cervisag_unet.json)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--calib-methods", default="MinMax,Percentile", help=f"comma list of {', '.join(CALIB_METHODS)}")
    p.add_argument("--head", choices=("both", "fp32", "int8"), default="both", help="heatmap head precision candidates")
    p.add_argument("--calib-seed", type=int, default=1000)
    p.add_argument("--calib-count", type=int, default=16)
    p.add_argument("--eval-seed", type=int, default=2000)
    p.add_argument("--eval-count", type=int, default=8)
    p.add_argument("--long-side", type=int, default=1024, help="phantom long side in px")
    p.add_argument("--runs", type=int, default=20, help="timed runs per latency (median)")
    p.add_argument("--out-dir", default=None, help="output folder (default: the manifest's)")
    p.add_argument("--refine-only", action="store_true",
                   help="only the second stage: add its variants to the existing variant manifests")
    a = p.parse_args(argv)
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    a.calib_methods = [v.strip() for v in a.calib_methods.split(",") if v.strip()]
    bad = [v for v in a.variants if v not in VARIANTS] + [m for m in a.calib_methods if m not in CALIB_METHODS]
    if bad or not a.variants or not a.calib_methods:
        p.error(f"unknown or empty variant/method: {', '.join(bad) or '(none given)'}")
    a.head_modes = {"both": [False, True], "fp32": [True], "int8": [False]}[a.head]
    for name in ("calib_count", "eval_count", "runs"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    written = run(args)
    print(json.dumps([str(p) for p in written]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
