#!/usr/bin/env python3
"""One-shot GPU check: NVRTC kernels against their numpy twins, kernel timings, TensorRT plans.

Run from the repository root on a machine with an NVIDIA GPU and cuda-python (cuda-bindings +
NVRTC): ``python3 benchmarks/device_check.py``. Installs nothing (it puts the repository root on
``sys.path``). OpenCV, pydicom, pytest and TensorRT are optional: parts that need them are
skipped with the reason. Designed to finish in under 5 minutes on an H100/H200.

Sections:

1. environment; 2. correctness (GPU kernel vs numpy twin, PASS/FAIL each); 3. kernel timings at
   2000×2500 (W×H) → 512×512 and for decoding 34×256×256 heatmaps: each kernel is launched k
   times inside one CUDA graph between two events and the time divided by k, so Python's launch
   overhead is not counted; host→pinned (CPU memcpy) and pinned→device (DMA) are timed apart;
4. TensorRT: builds FP16 and INT8 plans from the shipped ONNX into a temporary folder (never
   the repository) and times batch 1 and 4 inference; "skipped: …" with the reason where the
   full TensorRT builder is absent.

Writes one JSON (``--json``, default ``device_check.json``) and one Markdown table
(``--markdown``, default ``device_check.md``) for ``docs/benchmarks.md``. Exit code 0 when every
comparison passed, 1 otherwise, 2 when there is no usable GPU or NVRTC.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

#: Peak DRAM bandwidth (GB/s) by product name, used when the driver does not report clock and bus width.
KNOWN_BANDWIDTH_GBS = {"H200": 4800.0, "H100 NVL": 3900.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100": 2039.0, "L40S": 864.0}
PYTEST_TIMEOUT_S = 150


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def line(text: str = "") -> None:
    print(text, flush=True)


class Report:
    """Checks and timing rows collected for the JSON and Markdown outputs."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {}
        self.checks: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.tensorrt: dict[str, Any] = {}
        self.failures = 0

    def check(self, name: str, ok: bool | None, detail: str) -> None:
        """ok None = skipped (with the reason in ``detail``)."""
        status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
        self.failures += ok is False
        self.checks.append({"check": name, "status": status, "detail": detail})
        line(f"{status} {name}: {detail}")

    def row(self, step: str, ms: float | None, gbs: float | None = None, note: str = "") -> None:
        self.rows.append({"step": step, "ms": ms, "gb_per_s": gbs, "note": note})

    def markdown(self, peak: float | None) -> str:
        env = self.env
        out = [f"Device check: {env.get('gpu', '?')} (sm {env.get('compute_capability', '?')}), {env.get('date', '')}, "
               f"`python3 benchmarks/device_check.py`", "",
               "| step | ms (median) | GB/s | % of DRAM peak | note |", "| --- | ---: | ---: | ---: | --- |"]
        for r in self.rows:
            ms = f"{r['ms']:.4f}" if r["ms"] is not None else "-"
            gbs = f"{r['gb_per_s']:.1f}" if r["gb_per_s"] is not None else "-"
            pct = f"{100 * r['gb_per_s'] / peak:.1f}" if (r["gb_per_s"] is not None and peak) else "-"
            out.append(f"| {r['step']} | {ms} | {gbs} | {pct} | {r['note']} |")
        out += ["", f"Checks: {sum(c['status'] == 'PASS' for c in self.checks)} passed, {self.failures} failed, "
                    f"{sum(c['status'] == 'SKIP' for c in self.checks)} skipped."]
        if self.tensorrt.get("skipped"):
            out.append(f"TensorRT: skipped: {self.tensorrt['skipped']}")
        return "\n".join(out) + "\n"


def peak_bandwidth_gbs(name: str) -> tuple[float | None, str]:
    """Peak DRAM bandwidth from the driver (clock × bus width × 2), else from :data:`KNOWN_BANDWIDTH_GBS`."""
    from cuda.bindings import runtime as rt

    try:
        e1, clock_khz = rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrMemoryClockRate, 0)
        e2, bus_bits = rt.cudaDeviceGetAttribute(rt.cudaDeviceAttr.cudaDevAttrGlobalMemoryBusWidth, 0)
        if int(e1) == 0 and int(e2) == 0 and clock_khz and bus_bits:
            return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9, "driver attributes"
    except (AttributeError, RuntimeError):
        pass
    for key, bw in KNOWN_BANDWIDTH_GBS.items():
        if key in name:
            return bw, f"datasheet value for {key}"
    return None, "unknown"


class EventTimer:
    """GPU time per launch of work issued on a stream, from CUDA events around k launches.

    :meth:`per_launch_ms` captures ``k`` calls of ``issue`` (which must only enqueue work, with
    arguments prepared beforehand) into one CUDA graph, replays it between two events ``reps``
    times and returns the median of elapsed / k: what the GPU spends per launch, without the tens
    of µs of Python that issuing one launch costs.
    """

    def __init__(self, stream: Any) -> None:
        from cuda.bindings import runtime as rt

        from cervisag_edge.engine.cuda.memory import check

        self.rt, self.check, self.stream = rt, check, stream
        self.start = check(rt.cudaEventCreate(), "cudaEventCreate")
        self.end = check(rt.cudaEventCreate(), "cudaEventCreate")

    def _elapsed(self, fn: Callable[[], None]) -> float:
        self.check(self.rt.cudaEventRecord(self.start, self.stream.handle), "cudaEventRecord")
        fn()
        self.check(self.rt.cudaEventRecord(self.end, self.stream.handle), "cudaEventRecord")
        self.check(self.rt.cudaEventSynchronize(self.end), "cudaEventSynchronize")
        return float(self.check(self.rt.cudaEventElapsedTime(self.start, self.end), "cudaEventElapsedTime"))

    def per_launch_ms(self, issue: Callable[[], None], k: int, reps: int) -> float:
        from cervisag_edge.engine.cuda.memory import CudaGraph

        issue()  # warm-up outside the graph
        self.stream.synchronize()
        graph = CudaGraph(self.stream)
        graph.begin()
        try:
            for _ in range(k):
                issue()
        finally:
            graph.end()
        try:
            graph.launch()
            self.stream.synchronize()
            return statistics.median(self._elapsed(graph.launch) / k for _ in range(reps))
        finally:
            graph.close()

    def median_ms(self, fn: Callable[[], None], reps: int) -> float:
        """Median time of one call of ``fn`` between events (for work that is long next to Python's overhead)."""
        fn()
        self.stream.synchronize()
        return statistics.median(self._elapsed(fn) for _ in range(reps))

    def close(self) -> None:
        self.rt.cudaEventDestroy(self.start)
        self.rt.cudaEventDestroy(self.end)


def cpu_median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def synthetic_heatmaps(rng: np.random.Generator, n: int, k: int, h: int, w: int) -> np.ndarray:
    hm = rng.random((n, k, h, w), dtype=np.float32) * 0.05
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(n):
        for j in range(k):
            cx, cy = rng.uniform(3, w - 4), rng.uniform(3, h - 4)
            hm[i, j] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0).astype(np.float32) * rng.uniform(0.4, 1.0)
    return hm


def run_pytest(report: Report) -> None:
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda_kernels.py"],
                           cwd=ROOT, capture_output=True, text=True, timeout=PYTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        report.check("pytest tests/test_cuda_kernels.py", False, f"did not finish within {PYTEST_TIMEOUT_S} s")
        return
    tail = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    report.check("pytest tests/test_cuda_kernels.py", r.returncode == 0, tail)


def kernel_checks(report: Report, args: argparse.Namespace, peak: float | None) -> None:
    """Correctness of both kernels against the numpy twins, then their timings."""
    from cervisag_edge.engine.cuda import kernels, memory
    from cervisag_edge.engine.cuda.ops import GpuDecoder, GpuPreprocessor, decode_arguments
    from cervisag_edge.engine.cuda.reference import decode_reference, preprocess_reference

    t0 = time.perf_counter()
    stream = memory.Stream()
    out_hw, mean, std = (512, 512), 0.5, 0.25
    pre = GpuPreprocessor(out_hw, mean=mean, std=std, pad_value=0.0, stream=stream)
    line(f"NVRTC compile + module load (preprocess): {(time.perf_counter() - t0) * 1e3:.0f} ms")
    dst = memory.DeviceBuffer(out_hw[0] * out_hw[1] * 4)
    host_out = memory.PinnedArray(out_hw, np.float32)
    rng = np.random.default_rng(0)

    line("\n== correctness (GPU kernel vs numpy twin) ==")
    cases = [((2500, 2000), 1.0, -1024.0, 1000.0, 2500.0, True), ((2500, 2000), 0.5, 0.0, 1500.0, 3000.0, False),
             ((97, 131), 1.0, 0.0, 2048.0, 4096.0, False), ((30, 20), 2.0, -100.0, 3000.0, 5000.0, True),
             ((3000, 2999), 1.0, 0.0, 30000.0, 60000.0, False)]
    raws = [rng.integers(0, 65535 if case[4] > 10000 else 4096, size=case[0], dtype=np.uint16) for case in cases]
    for raw, (shape, slope, intercept, wc, ww, invert) in zip(raws, cases):
        pre.upload(raw)
        pre.run(dst.ptr, slope=slope, intercept=intercept, wc=wc, ww=ww, invert=invert)
        memory.copy_dtoh_async(host_out.array, dst.ptr, stream)
        stream.synchronize()
        ref = preprocess_reference(raw, slope, intercept, wc, ww, invert, out_hw, mean=mean, std=std)
        err = float(np.max(np.abs(host_out.array - ref)))
        report.check(f"preprocess {shape[1]}x{shape[0]} invert={invert}", err < 1e-4, f"max |gpu - numpy| = {err:.2e}")
    # Back-to-back uploads without a host sync: the second must wait for the first copy (event).
    a, b = raws[0], rng.integers(0, 4096, size=raws[0].shape, dtype=np.uint16)
    pre.upload(a)
    pre.upload(b)
    pre.run(dst.ptr, slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0, invert=True)
    memory.copy_dtoh_async(host_out.array, dst.ptr, stream)
    stream.synchronize()
    err = float(np.max(np.abs(host_out.array - preprocess_reference(b, 1.0, -1024.0, 1000.0, 2500.0, True, out_hw, mean=mean, std=std))))
    report.check("preprocess after two back-to-back uploads", err < 1e-4, f"max diff vs the second image {err:.2e}")

    k, h, w = 34, 256, 256
    scale = ((512 - 1) / (w - 1), (512 - 1) / (h - 1))  # heatmap px → input px, UDP (W−1)/(w−1)
    dec = GpuDecoder(max_maps=4 * k, heatmap_hw=(h, w), scale_xy=scale, blur_sigma=1.0, stream=stream)
    hm_dev = memory.DeviceBuffer(4 * k * h * w * 4)
    hms = {n: synthetic_heatmaps(rng, n, k, h, w) for n in (1, 4)}
    for n, hm in hms.items():
        memory.copy_htod_async(hm_dev.ptr, hm, stream)
        got = dec.run(hm_dev.ptr, n * k).reshape(n, k, 3)
        ref = decode_reference(hm, 1.0, scale)
        err_xy = float(np.max(np.abs(got[..., :2] - ref[..., :2])))
        err_s = float(np.max(np.abs(got[..., 2] - ref[..., 2])))
        report.check(f"decode N={n}", err_xy < 1e-3 and err_s < 1e-6, f"max |Δxy| = {err_xy:.2e} px, max |Δscore| = {err_s:.2e}")

    line("\n== kernel timing (median; k launches in one CUDA graph, per launch) ==")
    timer = EventTimer(stream)
    raw = raws[0]
    pre.upload(raw)
    stream.synchronize()
    pre_args = pre.arguments(dst.ptr, slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0, invert=True)
    geom = kernels.preprocess_geometry(out_hw)
    t = timer.per_launch_ms(lambda: pre.module.launch("preprocess_u16", geom, stream, pre_args), args.k, args.reps)
    pre_bytes = raw.nbytes + out_hw[0] * out_hw[1] * 4
    report.row("preprocess kernel 2000x2500 u16 → 512x512", t, pre_bytes / (t * 1e-3) / 1e9, f"k={args.k}")
    t_stage = cpu_median_ms(lambda: pre.stage(raw), args.cpu_reps)
    report.row("host → pinned copy 2000x2500 u16 (CPU memcpy)", t_stage, raw.nbytes / (t_stage * 1e-3) / 1e9)
    t_dma = timer.median_ms(pre.transfer, args.reps)
    report.row("pinned → device copy 2000x2500 u16 (DMA)", t_dma, raw.nbytes / (t_dma * 1e-3) / 1e9)
    if have("cv2"):
        from cervisag_edge.io.imaging import invert_monochrome1, window_linear
        from cervisag_edge.engine.preprocess import prepare_input

        def cpu_pre() -> np.ndarray:
            return prepare_input(invert_monochrome1(window_linear(raw.astype(np.float32) - 1024.0, 1000.0, 2500.0)), out_hw,
                                 pad_value=0.0, mean=mean, std=std)[0]

        report.row("CPU path (numpy window + cv2 INTER_AREA)", cpu_median_ms(cpu_pre, args.cpu_reps), None)
    for n, hm in hms.items():
        memory.copy_htod_async(hm_dev.ptr, hm, stream)
        stream.synchronize()
        dgeom = kernels.decode_geometry(n * k)
        dargs = decode_arguments(hm_dev.ptr, (h, w), dec._out.ptr, scale)
        t_dec = timer.per_launch_ms(lambda: dec.module.launch("decode_dark", dgeom, stream, dargs), args.k, args.reps)
        report.row(f"decode kernel N={n} ({n * k}x256x256)", t_dec, hm.nbytes / (t_dec * 1e-3) / 1e9, f"k={args.k}")
        t_cpu = cpu_median_ms(lambda: decode_reference(hm, 1.0, scale), args.cpu_reps)
        report.row(f"CPU codec decode N={n}", t_cpu, None)
    if peak:
        line(f"bandwidth floor: preprocess {pre_bytes / (peak * 1e9) * 1e3:.4f} ms, decode N=1 {k * h * w * 4 / (peak * 1e9) * 1e3:.4f} ms")
    for obj in (timer, dec, pre, hm_dev, dst, host_out, stream):
        obj.close()


def tensorrt_section(report: Report, args: argparse.Namespace) -> None:
    """Build FP16 and INT8 plans from the shipped ONNX in a temporary folder and time them."""
    line("\n== TensorRT ==")
    if not have("tensorrt"):
        why = ("only the lean runtime tensorrt_lean is installed, which cannot build plans" if have("tensorrt_lean")
               else "TensorRT not installed (the full 'tensorrt' builder comes from NVIDIA's package index)")
        report.tensorrt["skipped"] = why
        report.check("TensorRT plans", None, f"skipped: {why}")
        return
    sys.path.insert(0, str(ROOT / "tools"))
    import build_engine as be  # noqa: PLC0415 - the tool itself, not a copy of it

    from cervisag_edge.engine.backends.tensorrt import TensorRTBackend
    from cervisag_edge.engine.manifest import load_manifest

    report.tensorrt["version"] = __import__("tensorrt").__version__
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory(prefix="cervisag_trt_") as tmp:
        for variant in ("fp16", "int8-trt"):
            src = ROOT / "engines" / f"cervisag_unet.{variant}.json"
            if not src.is_file():
                report.check(f"TensorRT {variant} plan", None, f"skipped: {src.name} not shipped")
                continue
            plan = Path(tmp) / f"cervisag_unet.{variant}.plan"
            t0 = time.perf_counter()
            try:
                rc = be.main([str(src), "--max-batch", "4", "--output", str(plan), "--timing-cache", str(Path(tmp) / "timing.cache")])
            except Exception as exc:  # noqa: BLE001 - report the build failure and go on
                rc, msg = 1, f"{type(exc).__name__}: {exc}"
            else:
                msg = f"exit code {rc}" if rc else f"built in {time.perf_counter() - t0:.1f} s"
            build_ms = (time.perf_counter() - t0) * 1e3
            report.check(f"TensorRT {variant} plan build", rc == 0, msg)
            if rc != 0:
                continue
            report.row(f"TensorRT build {variant} (max batch 4, opt level 3)", build_ms, None, "plan build")
            pm = load_manifest(Path(str(plan) + ".json"))
            h, w = pm.input_hw
            try:
                with TensorRTBackend(pm, cuda_graph=True, graph_batch=1) as b:
                    x1 = rng.standard_normal((1, 1, h, w)).astype(np.float32)
                    x4 = rng.standard_normal((4, 1, h, w)).astype(np.float32)
                    g1 = b.infer(x1)
                    b.infer(x4)  # another batch size between two graph replays
                    report.check(f"TensorRT {variant} graph replay after batch 4", bool(np.array_equal(b.infer(x1), g1)), "same output")
                    if have("onnxruntime"):
                        import onnxruntime as ort

                        base = ROOT / "engines" / "cervisag_unet.onnx"
                        ref = ort.InferenceSession(str(base), providers=["CPUExecutionProvider"]).run(None, {pm.input_name: x4})[0]
                        diff = float(np.max(np.abs(b.infer(x4) - ref)))
                        report.tensorrt[f"{variant}_max_abs_heatmap_diff_vs_fp32_onnxruntime"] = diff
                        report.check(f"TensorRT {variant} vs FP32 ONNX Runtime", bool(np.isfinite(diff)), f"max |Δheatmap| = {diff:.3e} (random input)")
                    for n, x in ((1, x1), (4, x4)):
                        report.row(f"TensorRT {variant} infer N={n} (copy in + execute + copy out)",
                                   cpu_median_ms(lambda: b.infer(x), args.cpu_reps * 4), None, "graph" if n == 1 else "no graph")
            except Exception as exc:  # noqa: BLE001
                report.check(f"TensorRT {variant} backend", False, f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30, help="timed repetitions per GPU measurement")
    ap.add_argument("--k", type=int, default=50, help="kernel launches per timed CUDA graph")
    ap.add_argument("--cpu-reps", type=int, default=5, help="timed repetitions per CPU measurement")
    ap.add_argument("--no-pytest", action="store_true", help="skip running tests/test_cuda_kernels.py")
    ap.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT section")
    ap.add_argument("--json", default="device_check.json", help="JSON output path")
    ap.add_argument("--markdown", default="device_check.md", help="Markdown table output path")
    args = ap.parse_args(argv)
    report = Report()
    report.env = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
                  "numpy": np.__version__, "command": "python3 benchmarks/device_check.py " + " ".join(argv or sys.argv[1:])}
    line(f"python {platform.python_version()} on {platform.machine()}; numpy {np.__version__}")
    optional = {m: have(m) for m in ("cv2", "pydicom", "pytest", "tensorrt", "tensorrt_lean", "onnxruntime")}
    line("optional modules: " + ", ".join(f"{m}={'yes' if ok else 'no'}" for m, ok in optional.items()))

    def finish(code: int) -> int:
        Path(args.json).write_text(json.dumps({"env": report.env, "checks": report.checks, "timings": report.rows,
                                               "tensorrt": report.tensorrt}, indent=2) + "\n")
        Path(args.markdown).write_text(report.markdown(report.env.get("peak_gbs")))
        line(f"\nwrote {args.json} and {args.markdown}")
        return code

    if not have("cuda.bindings"):
        report.check("cuda-python", False, "cuda.bindings is not importable; pip install 'cervisag-edge[gpu]'")
        return finish(2)
    from cervisag_edge.engine.resolver import gpu_available
    from cervisag_edge.errors import CervisagError

    if not gpu_available():
        report.check("GPU", False, "no CUDA GPU visible to cuda.bindings (cudaGetDeviceCount)")
        return finish(2)
    from cervisag_edge.engine.cuda import memory, nvrtc

    try:
        nv = nvrtc.nvrtc_version()
    except (CervisagError, ImportError, OSError, RuntimeError) as exc:
        report.check("NVRTC", False, f"not usable ({exc}); pip install 'cuda-toolkit[nvrtc]==13.*'")
        return finish(2)
    name, cc, mem = memory.device_properties(0)
    import cuda.bindings as cb

    peak, peak_src = peak_bandwidth_gbs(name)
    report.env.update({"gpu": name, "compute_capability": cc, "memory_gib": round(mem / 2**30), "nvrtc": list(nv),
                       "cuda_bindings": getattr(cb, "__version__", "?"), "peak_gbs": peak, "peak_source": peak_src})
    line(f"GPU {name}, compute capability {cc}, {mem / 2**30:.0f} GiB; cuda-bindings {report.env['cuda_bindings']}; NVRTC {nv}")
    line(f"peak DRAM bandwidth: {f'{peak:.0f} GB/s' if peak else 'unknown'} ({peak_src})")
    try:
        kernel_checks(report, args, peak)
    except CervisagError as exc:
        report.check("CUDA kernels", False, f"{type(exc).__name__}: {exc}")
    if optional["pytest"] and optional["cv2"] and not args.no_pytest:
        run_pytest(report)
    else:
        report.check("pytest tests/test_cuda_kernels.py", None, "skipped: needs pytest and OpenCV (or --no-pytest)")
    if not args.no_tensorrt:
        tensorrt_section(report, args)
    width = max(len(r["step"]) for r in report.rows) if report.rows else 10
    line(f"\n{'step':<{width}}  {'ms':>9}  {'GB/s':>8}")
    for r in report.rows:
        ms = "-" if r["ms"] is None else f"{r['ms']:9.4f}"
        gbs = "-" if r["gb_per_s"] is None else f"{r['gb_per_s']:8.1f}"
        line(f"{r['step']:<{width}}  {ms:>9}  {gbs:>8}")
    line(f"\n{'ALL PASSED' if report.failures == 0 else f'{report.failures} CHECK(S) FAILED'}")
    return finish(0 if report.failures == 0 else 1)


if __name__ == "__main__":
    sys.exit(main())
