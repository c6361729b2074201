#!/usr/bin/env python3
"""One-shot GPU check for the NVRTC kernels: correctness against the numpy twins, then timings.

Run from the repository root on a machine with an NVIDIA GPU and cuda-python (cuda-bindings +
NVRTC): ``python3 benchmarks/device_check.py``. Installs nothing and needs no package install
(it puts the repository root on ``sys.path``). OpenCV, pydicom and pytest are optional: parts that
need them are skipped and say so. Finishes in well under 5 minutes.

Prints: environment, PASS/FAIL of each kernel-vs-numpy comparison, and a table of median times
at 2000×2500 (W×H) → 512×512 and for decoding 34×256×256 heatmaps: GPU kernel, host→device
upload, and the CPU path, with the kernel's achieved GB/s against the card's DRAM bandwidth.
Exit code 0 when every comparison passed, 1 otherwise, 2 when there is no usable GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

#: Peak DRAM bandwidth (GB/s) by product name, used when the driver does not report clock and bus width.
KNOWN_BANDWIDTH_GBS = {"H200": 4800.0, "H100 NVL": 3900.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100": 2039.0, "L40S": 864.0}


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def line(text: str = "") -> None:
    print(text, flush=True)


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
    """Median GPU time of a callable issued on a stream, measured with CUDA events."""

    def __init__(self, stream: Any) -> None:
        from cuda.bindings import runtime as rt

        from cervisag_edge.cuda.memory import check

        self.rt, self.check, self.stream = rt, check, stream
        self.start = check(rt.cudaEventCreate(), "cudaEventCreate")
        self.end = check(rt.cudaEventCreate(), "cudaEventCreate")

    def median_ms(self, fn: Callable[[], None], reps: int, warmup: int = 5) -> float:
        for _ in range(warmup):
            fn()
        self.stream.synchronize()
        times = []
        for _ in range(reps):
            self.check(self.rt.cudaEventRecord(self.start, self.stream.handle), "cudaEventRecord")
            fn()
            self.check(self.rt.cudaEventRecord(self.end, self.stream.handle), "cudaEventRecord")
            self.check(self.rt.cudaEventSynchronize(self.end), "cudaEventSynchronize")
            times.append(float(self.check(self.rt.cudaEventElapsedTime(self.start, self.end), "cudaEventElapsedTime")))
        return statistics.median(times)


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50, help="timed repetitions per GPU measurement")
    ap.add_argument("--cpu-reps", type=int, default=5, help="timed repetitions per CPU measurement")
    ap.add_argument("--no-pytest", action="store_true", help="skip running tests/test_cuda_kernels.py")
    args = ap.parse_args(argv)

    line(f"python {platform.python_version()} on {platform.machine()}; numpy {np.__version__}")
    optional = {m: have(m) for m in ("cv2", "pydicom", "pytest", "cupy", "torch", "onnxruntime")}
    line("optional modules: " + ", ".join(f"{m}={'yes' if ok else 'no'}" for m, ok in optional.items()))
    if not have("cuda.bindings"):
        line("FAIL: cuda-python (cuda.bindings) is not importable; nothing to check")
        return 2
    from cervisag_edge.cuda import kernels, memory, nvrtc
    from cervisag_edge.cuda.ops import GpuDecoder, GpuPreprocessor
    from cervisag_edge.cuda.reference import decode_reference, preprocess_reference
    from cervisag_edge.engine_select import gpu_available

    if not gpu_available():
        line("FAIL: no CUDA GPU visible to cuda.bindings (cudaGetDeviceCount)")
        return 2
    name, cc, mem = memory.device_properties(0)
    import cuda.bindings as cb

    line(f"GPU {name}, compute capability {cc}, {mem / 2**30:.0f} GiB; cuda-bindings {getattr(cb, '__version__', '?')}; NVRTC {nvrtc.nvrtc_version()}")
    peak, peak_src = peak_bandwidth_gbs(name)
    line(f"peak DRAM bandwidth: {f'{peak:.0f} GB/s' if peak else 'unknown'} ({peak_src})")

    t0 = time.perf_counter()
    stream = memory.Stream()
    out_hw = (512, 512)
    mean, std = 0.5, 0.25
    pre = GpuPreprocessor(out_hw, mean=mean, std=std, pad_value=0.0, stream=stream)
    line(f"NVRTC compile + module load (preprocess): {(time.perf_counter() - t0) * 1e3:.0f} ms")
    dst = memory.DeviceBuffer(out_hw[0] * out_hw[1] * 4)
    host_out = memory.PinnedArray(out_hw, np.float32)
    rng = np.random.default_rng(0)
    failures = 0

    # ---------------------------------------------------------- correctness --------------
    line("\n== correctness (GPU kernel vs numpy twin) ==")
    pre_cases = [((2500, 2000), 1.0, -1024.0, 1000.0, 2500.0, True), ((2500, 2000), 0.5, 0.0, 1500.0, 3000.0, False),
                 ((97, 131), 1.0, 0.0, 2048.0, 4096.0, False), ((30, 20), 2.0, -100.0, 3000.0, 5000.0, True),
                 ((3000, 2999), 1.0, 0.0, 30000.0, 60000.0, False)]
    for shape, slope, intercept, wc, ww, invert in pre_cases:
        raw = rng.integers(0, 65535 if ww > 10000 else 4096, size=shape, dtype=np.uint16)
        pre.upload(raw)
        pre.run(dst.ptr, slope=slope, intercept=intercept, wc=wc, ww=ww, invert=invert)
        memory.copy_dtoh_async(host_out.array, dst.ptr, stream)
        stream.synchronize()
        ref = preprocess_reference(raw, slope, intercept, wc, ww, invert, out_hw, mean=mean, std=std)
        err = float(np.max(np.abs(host_out.array - ref)))
        ok = err < 1e-4
        failures += not ok
        line(f"{'PASS' if ok else 'FAIL'} preprocess {shape[1]}x{shape[0]} invert={invert}: max |gpu - numpy| = {err:.2e}")
    if optional["cv2"]:
        from cervisag_edge.imaging import invert_monochrome1, window_linear
        from cervisag_edge.preprocess import letterbox, normalize

        raw = rng.integers(0, 4096, size=(2500, 2000), dtype=np.uint16)
        disp = invert_monochrome1(window_linear(raw * 1.0 - 1024.0, 1000.0, 2500.0))
        cpu = normalize(letterbox(disp, (512, 512), 0.0)[0], mean, std)
        ref = preprocess_reference(raw, 1.0, -1024.0, 1000.0, 2500.0, True, out_hw, mean=mean, std=std)
        err = float(np.max(np.abs(cpu - ref)))
        ok = err < 5e-4
        failures += not ok
        line(f"{'PASS' if ok else 'FAIL'} numpy twin vs CPU path (cv2.INTER_AREA) 2000x2500: max diff {err:.2e}")
    else:
        line("SKIP numpy twin vs CPU path: OpenCV (cv2) is not installed on this machine")

    k, h, w = 34, 256, 256
    scale = ((512 - 1) / (w - 1), (512 - 1) / (h - 1))
    dec = GpuDecoder(max_maps=4 * k, heatmap_hw=(h, w), scale_xy=scale, blur_sigma=1.0, stream=stream)
    hm_dev = memory.DeviceBuffer(4 * k * h * w * 4)
    for n in (1, 4):
        hm = synthetic_heatmaps(rng, n, k, h, w)
        memory.copy_htod_async(hm_dev.ptr, hm, stream)
        got = dec.run(hm_dev.ptr, n * k).reshape(n, k, 3)
        ref = decode_reference(hm, 1.0, scale)
        err_xy = float(np.max(np.abs(got[..., :2] - ref[..., :2])))
        err_s = float(np.max(np.abs(got[..., 2] - ref[..., 2])))
        ok = err_xy < 1e-3 and err_s < 1e-6
        failures += not ok
        line(f"{'PASS' if ok else 'FAIL'} decode N={n}: max |Δxy| = {err_xy:.2e} px, max |Δscore| = {err_s:.2e}")

    if optional["pytest"] and optional["cv2"] and not args.no_pytest:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda_kernels.py"],
                           cwd=ROOT, capture_output=True, text=True, timeout=240)
        tail = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
        failures += r.returncode != 0
        line(f"{'PASS' if r.returncode == 0 else 'FAIL'} pytest tests/test_cuda_kernels.py: {tail}")
    else:
        line("SKIP pytest run: needs pytest and OpenCV (the inline checks above cover the kernels)")

    # ---------------------------------------------------------- timing -------------------
    line("\n== timing (median) ==")
    timer = EventTimer(stream)
    raw = rng.integers(0, 4096, size=(2500, 2000), dtype=np.uint16)
    pre.upload(raw)
    stream.synchronize()
    rows: list[tuple[str, float, float | None]] = []
    pre_bytes = raw.nbytes + out_hw[0] * out_hw[1] * 4
    t_kernel = timer.median_ms(lambda: pre.run(dst.ptr, slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0, invert=True), args.reps)
    rows.append(("preprocess kernel 2000x2500 u16 -> 512x512", t_kernel, pre_bytes / (t_kernel * 1e-3) / 1e9))
    t_up = timer.median_ms(lambda: pre.upload(raw), args.reps)
    rows.append(("upload 2000x2500 u16 (pinned, HtoD)", t_up, raw.nbytes / (t_up * 1e-3) / 1e9))
    if optional["cv2"]:
        from cervisag_edge.imaging import invert_monochrome1, window_linear
        from cervisag_edge.preprocess import letterbox, normalize

        def cpu_pre() -> np.ndarray:
            d = invert_monochrome1(window_linear(raw.astype(np.float32) - 1024.0, 1000.0, 2500.0))
            return normalize(letterbox(d, (512, 512), 0.0)[0], mean, std)

        rows.append(("CPU path (numpy window + cv2 INTER_AREA)", cpu_median_ms(cpu_pre, args.cpu_reps), None))
    else:
        rows.append(("CPU numpy twin (no OpenCV here)", cpu_median_ms(
            lambda: preprocess_reference(raw, 1.0, -1024.0, 1000.0, 2500.0, True, out_hw, mean=mean, std=std), args.cpu_reps), None))
    for n in (1, 4):
        hm = synthetic_heatmaps(rng, n, k, h, w)
        memory.copy_htod_async(hm_dev.ptr, hm, stream)
        stream.synchronize()
        geom = kernels.decode_geometry(n * k)
        args_k = [np.array(hm_dev.ptr, np.uint64), np.array(h, np.int32), np.array(w, np.int32),
                  np.array(dec._out.ptr, np.uint64), np.array(scale[0], np.float32), np.array(scale[1], np.float32)]
        t_dec = timer.median_ms(lambda: dec.module.launch("decode_dark", geom, stream, args_k), args.reps)
        rows.append((f"decode kernel N={n} ({n * k}x256x256)", t_dec, hm.nbytes / (t_dec * 1e-3) / 1e9))
        t_cpu = cpu_median_ms(lambda: decode_reference(hm, 1.0, scale), args.cpu_reps)
        t_d2h = cpu_median_ms(lambda: (memory.copy_dtoh_async(hm, hm_dev.ptr, stream), stream.synchronize()), args.cpu_reps)
        rows.append((f"CPU codec decode N={n} (+{t_d2h:.2f} ms DtoH of heatmaps)", t_cpu, None))
    width = max(len(r[0]) for r in rows)
    line(f"{'step':<{width}}  {'ms':>9}  {'GB/s':>8}  {'% of DRAM peak':>14}")
    for label, ms, gbs in rows:
        pct = f"{100 * gbs / peak:13.1f}%" if (gbs is not None and peak) else f"{'-':>14}"
        line(f"{label:<{width}}  {ms:9.3f}  {(f'{gbs:8.1f}' if gbs is not None else '       -')}  {pct}")
    if peak:
        line(f"bandwidth floor: preprocess {pre_bytes / (peak * 1e9) * 1e3:.4f} ms, decode N=1 {k * h * w * 4 / (peak * 1e9) * 1e3:.4f} ms")

    for obj in (dec, pre, hm_dev, dst, host_out, stream):
        obj.close()
    line(f"\n{'ALL PASSED' if failures == 0 else f'{failures} CHECK(S) FAILED'}")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
