"""Latency benchmarking: stage timing, percentiles, machine facts and the ``cervisag bench`` JSON schema.

One *run* is one backend × precision × batch size timed on one input file. Every stage of the
:class:`~cervisag_edge.core.measurer.Measurer` is timed on its own (``read_ms``, ``preprocess_ms``,
``inference_ms``, ``decode_ms``, ``parameters_ms``; with a second stage also ``refine_ms`` = its
crops + inference + decode, ``refine_inference_ms`` its inference alone, and ``uncertainty_ms``)
together with the wall time of the whole measurement (``end_to_end_ms``); each maps to
``{"median": ms, "p95": ms}``. The non-inference share counts both stages' inference. For a batch of N the
stage times are those of the whole batch (N files read, one batched inference call, N decodes).

:func:`worker` runs in a fresh process (see ``cervisag bench``), so its cold start (model load +
first measurement) and its peak RSS belong to that backend alone. The JSON schema is documented
in ``docs/benchmarks.md``; :data:`SCHEMA` names its version.

Also here: :func:`letterbox_numpy`, a pure-numpy twin of :func:`cervisag_edge.engine.preprocess.letterbox`
(area resize by prefix sums) used to compare numpy against OpenCV preprocessing, and
:func:`matmul_gflops`, the achievable float32 GFLOP/s of this CPU (the inference floor).
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ...engine.preprocess import resize_numpy  # noqa: F401 - the numpy twin of OpenCV's resize, re-exported

if TYPE_CHECKING:  # pragma: no cover
    from ...engine.preprocess import LetterboxTransform

logger = logging.getLogger(__name__)

#: Version tag of the JSON written by ``cervisag bench --json``.
SCHEMA = "cervisag-bench/1"
#: Stage keys of every run, in pipeline order; each maps to {"median", "p95"} in ms.
STAGE_KEYS: tuple[str, ...] = ("read_ms", "preprocess_ms", "inference_ms", "decode_ms", "parameters_ms", "end_to_end_ms")
#: Stages a run reports when the measurer has them (0 when a stage did not run; older reports lack them).
EXTRA_STAGE_KEYS: tuple[str, ...] = ("refine_ms", "refine_inference_ms", "uncertainty_ms")
#: Distributions whose versions the machine record lists (import name -> distribution names tried).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch",),
    "pydicom": ("pydicom",),
    "pylibjpeg-openjpeg": ("pylibjpeg-openjpeg",),
    "tensorrt": ("tensorrt", "tensorrt-lean-cu13-libs", "tensorrt_lean"),
}
#: Synthetic input size (rows, columns): a 2000 × 2500 (W × H) 16-bit lateral radiograph.
BENCH_IMAGE_HW: tuple[int, int] = (2500, 2000)


# -- statistics ------------------------------------------------------------------------------
def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between order statistics.

    For sorted samples x_0 ≤ … ≤ x_{n−1} the rank is r = q/100 · (n − 1) and the result is
    x_⌊r⌋ + (r − ⌊r⌋)(x_⌊r⌋+1 − x_⌊r⌋) (numpy's default "linear" method). Raises ValueError for no samples.
    """
    xs = sorted(float(v) for v in samples)
    if not xs:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q {q!r} out of range, expected 0..100")
    r = q / 100.0 * (len(xs) - 1)
    lo = int(np.floor(r))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (r - lo) * (xs[hi] - xs[lo])


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """``{"median": p50, "p95": p95}`` of timing samples in ms."""
    return {"median": percentile(samples, 50.0), "p95": percentile(samples, 95.0)}


# -- machine ---------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs reported by ``nvidia-smi`` (empty without a GPU or driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi failed: %s", exc)
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`LIBRARIES` (None when absent); nothing is imported."""
    found: dict[str, str | None] = {}
    for key, dists in LIBRARIES.items():
        found[key] = None
        for dist in dists:
            try:
                found[key] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def machine_info() -> dict[str, Any]:
    """CPU model, cores, GPU(s), OS, Python and library versions, the load average and the UTC date."""
    return {
        "cpu_model": _cpu_model(),
        "cores": _usable_cores(),
        "logical_cpus": os.cpu_count(),
        "gpu": gpu_names() or None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "load_average": _load_average(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work sharing the CPU), None where unsupported."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if platform.system() == "Darwin" else rss / 1024.0  # bytes on macOS, kB on Linux


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Achievable float32 GFLOP/s of this CPU: best of ``repeat`` (n × n) @ (n × n) numpy matmuls (2n³ FLOP)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up (BLAS thread pool start)
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


# -- numpy preprocessing twin ----------------------------------------------------------------
def letterbox_numpy(image: np.ndarray, input_size: tuple[int, int], pad_value: float = 0.0
                    ) -> tuple[np.ndarray, "LetterboxTransform"]:
    """numpy twin of :func:`cervisag_edge.engine.preprocess.letterbox` (same geometry and transform).

    ``image`` (H, W); ``input_size`` (W_in, H_in). Returns ((H_in, W_in) float32, LetterboxTransform).
    """
    from ...engine.preprocess import letterbox

    return letterbox(image, input_size, pad_value, resize=resize_numpy)


# -- inputs ----------------------------------------------------------------------------------
def synthetic_radiograph(seed: int = 0, hw: tuple[int, int] = BENCH_IMAGE_HW) -> np.ndarray:
    """A (H, W) uint16 12-bit stand-in radiograph: smooth anatomy-like blobs plus quantum noise.

    Only used when the phantom generator is not installed; its entropy (hence J2K decode cost)
    is close to a real radiograph's because the noise is per pixel.
    """
    rng = np.random.default_rng(seed)
    H, W = hw
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = 600.0 + 900.0 * np.exp(-(((xx - 0.55 * W) / (0.18 * W)) ** 2) - (((yy - 0.5 * H) / (0.45 * H)) ** 2))
    for k in range(7):  # a column of "vertebral bodies"
        cy, cx = H * (0.25 + 0.09 * k), W * (0.5 + 0.02 * k)
        img += 700.0 * (np.abs(xx - cx) < 0.07 * W) * (np.abs(yy - cy) < 0.035 * H)
    img += rng.normal(0.0, 25.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 4095).astype(np.uint16)


def write_bench_dicom(pixels: np.ndarray, path: str | os.PathLike[str], transfer_syntax: str | None = None,
                      pixel_spacing_mm: float = 0.1) -> Path:
    """Write (H, W) uint16 ``pixels`` as a DX-like MONOCHROME2 DICOM with a LINEAR window.

    ``transfer_syntax``: None (Explicit VR Little Endian) or a compressed UID such as
    ``pydicom.uid.JPEG2000Lossless`` (needs an encoder plugin, e.g. pylibjpeg-openjpeg).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    arr = np.ascontiguousarray(pixels, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "Bench^Synthetic", "BENCH"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [pixel_spacing_mm, pixel_spacing_mm]
    lo, hi = np.percentile(arr[:: 8, :: 8], (0.5, 99.5))
    ds.WindowCenter, ds.WindowWidth = float((lo + hi) / 2), float(max(hi - lo, 2.0))
    ds.PixelData = arr.tobytes()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax, arr)
    out = Path(path)
    ds.save_as(out, enforce_file_format=True)
    return out


def make_bench_inputs(folder: str | os.PathLike[str], seed: int = 0, j2k: bool = True) -> dict[str, Path]:
    """Write the benchmark DICOMs into ``folder``: ``{"uncompressed": path, "jpeg2000": path}``.

    Uses the physical phantom (:mod:`cervisag_edge.tooling.phantom`, 2000 × 2500) when it is installed,
    else :func:`synthetic_radiograph`. The JPEG 2000 lossless copy is left out when ``j2k`` is
    False or no encoder is installed (logged).
    """
    from pydicom.uid import JPEG2000Lossless

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    try:
        from ..phantom import render_phantom, write_dicom
    except ImportError:
        render_phantom = write_dicom = None
    if render_phantom is not None and write_dicom is not None:
        ph = render_phantom(seed, 0, size=(BENCH_IMAGE_HW[1], BENCH_IMAGE_HW[0]))
        out["uncompressed"] = Path(write_dicom(ph, folder / "bench_uncompressed.dcm"))
        if j2k:
            try:
                out["jpeg2000"] = Path(write_dicom(ph, folder / "bench_j2k.dcm", transfer_syntax=JPEG2000Lossless))
            except (RuntimeError, ValueError, NotImplementedError, ImportError) as exc:
                logger.warning("JPEG 2000 benchmark input not written: %s", exc)
        return out
    logger.info("phantom generator not installed; using a synthetic 16-bit radiograph")
    pixels = synthetic_radiograph(seed)
    out["uncompressed"] = write_bench_dicom(pixels, folder / "bench_uncompressed.dcm")
    if j2k:
        try:
            out["jpeg2000"] = write_bench_dicom(pixels, folder / "bench_j2k.dcm", transfer_syntax=JPEG2000Lossless)
        except (RuntimeError, ValueError, NotImplementedError, ImportError) as exc:
            logger.warning("JPEG 2000 benchmark input not written: %s", exc)
    return out


# -- timing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """What one worker process times: a backend × precision on one input, at several batch sizes."""

    backend: str
    precision: str
    input_path: str
    repeat: int = 20
    warmup: int = 2
    batches: tuple[int, ...] = (1,)
    model: str | None = None
    threads: int | None = None

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "batches": list(self.batches)})

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        d = json.loads(text)
        d["batches"] = tuple(int(b) for b in d["batches"])
        return cls(**d)


def _one_batch(measurer: Any, path: str, batch: int) -> dict[str, float]:
    """Time one measurement of ``batch`` copies of ``path``; stage times of the whole batch in ms."""
    from ...io import read_image

    t0 = time.perf_counter()
    if batch == 1:
        m = measurer.measure(path)
        t = m.timings_ms
        out = {k: float(t.get(k, 0.0)) for k in (*STAGE_KEYS[:-1], *EXTRA_STAGE_KEYS)}
        return {**out, "end_to_end_ms": (time.perf_counter() - t0) * 1000.0}
    images = [read_image(path, limits=measurer.limits) for _ in range(batch)]
    read_ms = (time.perf_counter() - t0) * 1000.0
    results = measurer.measure_batch(images)
    sums = {k: sum(float(r.timings_ms.get(k, 0.0)) for r in results) for k in (*STAGE_KEYS[1:-1], *EXTRA_STAGE_KEYS)}
    return {"read_ms": read_ms, **sums, "end_to_end_ms": (time.perf_counter() - t0) * 1000.0}


def time_batches(measurer: Any, path: str, batch: int, repeat: int, warmup: int) -> dict[str, Any]:
    """Warm up, then time ``repeat`` batches; returns the stage summaries, ``images_per_s`` and
    ``non_inference_share`` (1 − median inference / median end to end)."""
    if repeat < 1 or batch < 1 or warmup < 0:
        raise ValueError(f"repeat {repeat} and batch {batch} must be >= 1, warmup {warmup} >= 0")
    for _ in range(warmup):
        _one_batch(measurer, path, batch)
    samples: dict[str, list[float]] = {k: [] for k in (*STAGE_KEYS, *EXTRA_STAGE_KEYS)}
    for _ in range(repeat):
        for k, v in _one_batch(measurer, path, batch).items():
            samples[k].append(v)
    run: dict[str, Any] = {k: summarize(v) for k, v in samples.items() if v}
    e2e = run["end_to_end_ms"]["median"]
    run["images_per_s"] = batch * 1000.0 / e2e if e2e > 0 else None
    infer = run["inference_ms"]["median"] + run.get("refine_inference_ms", {}).get("median", 0.0)
    run["non_inference_share"] = 1.0 - infer / e2e if e2e > 0 else None
    return run


def worker(spec: RunSpec, t_process_start: float | None = None) -> list[dict[str, Any]]:
    """Time one backend × precision in this (fresh) process: cold start first, then each batch.

    Cold start = model load + first measurement of the input (``cold_start_ms``); ``import_ms`` is
    the package import before it, from ``t_process_start`` (a ``time.perf_counter`` value) when given.
    ``peak_rss_mb`` of a run is this process's high-water mark after that run (batch sizes are
    timed in increasing order, so a batch-1 figure never includes a larger batch).
    """
    t0 = time.perf_counter()
    from ...core.measurer import Measurer

    import_ms = (time.perf_counter() - (t_process_start if t_process_start is not None else t0)) * 1000.0
    measurer = Measurer(spec.model, backend=spec.backend, precision=spec.precision, threads=spec.threads)
    t1 = time.perf_counter()
    first = measurer.measure(spec.input_path)
    first_ms = (time.perf_counter() - t1) * 1000.0
    cold = {"import_ms": import_ms, "load_ms": measurer.load_ms, "first_measure_ms": first_ms,
            "cold_start_ms": measurer.load_ms + first_ms}
    runs = []
    try:
        for batch in sorted(set(spec.batches)):
            stats = time_batches(measurer, spec.input_path, batch, spec.repeat, spec.warmup)
            runs.append({"backend": spec.backend, "precision": spec.precision, "batch": batch, "repeat": spec.repeat,
                         "model_file": measurer.manifest.file, **stats, **cold, "peak_rss_mb": peak_rss_mb(),
                         "image_size_px": list(first.image_size_px)})
    finally:
        measurer.close()
    return runs


# -- report ----------------------------------------------------------------------------------
def model_floors(macs_per_image: float, parameters: int, cpu_gflops: float | None) -> dict[str, Any]:
    """Work per image and the CPU's compute floor: FLOP = 2 × MACs; weights = 4 bytes per parameter."""
    flop = 2.0 * float(macs_per_image)
    out: dict[str, Any] = {"gflop_per_image": flop / 1e9, "weights_mb_fp32": 4.0 * parameters / 1e6,
                           "weights_mb_int8": parameters / 1e6, "cpu_matmul_gflops": cpu_gflops}
    out["cpu_fp32_floor_ms"] = flop / (cpu_gflops * 1e9) * 1000.0 if cpu_gflops else None
    return out


def comparisons(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Median inference speed-ups a user asks about (batch 1 and each batch present): ONNX Runtime
    FP32 over PyTorch eager, and INT8 / FP16 over FP32 on the same backend."""
    by = {(r["backend"], r["precision"], r["batch"]): r for r in runs}
    pairs = [(("onnxruntime", "fp32"), ("torch", "fp32")), (("onnxruntime", "int8"), ("onnxruntime", "fp32")),
             (("onnxruntime", "fp16"), ("onnxruntime", "fp32")), (("tensorrt", "int8"), ("tensorrt", "fp32")),
             (("tensorrt", "fp16"), ("tensorrt", "fp32"))]
    out = []
    for batch in sorted({r["batch"] for r in runs}):
        for fast, slow in pairs:
            a, b = by.get((*fast, batch)), by.get((*slow, batch))
            if a is None or b is None:
                continue
            out.append({"faster": f"{fast[0]} {fast[1]}", "than": f"{slow[0]} {slow[1]}", "batch": batch,
                        "inference_speedup": b["inference_ms"]["median"] / a["inference_ms"]["median"],
                        "end_to_end_speedup": b["end_to_end_ms"]["median"] / a["end_to_end_ms"]["median"]})
    return out


def _cell(stat: Mapping[str, float] | None) -> str:
    return "-" if not stat else f"{stat['median']:.1f}/{stat['p95']:.1f}"


def render_table(report: Mapping[str, Any]) -> str:
    """Plain-text table of a report: one row per run (stage cells are ``median/p95`` ms), then the
    skipped backend × precision pairs with their reasons and the speed-ups."""
    head = ["backend", "prec", "batch", "read", "preproc", "infer", "decode", "params", "end-to-end", "stage 2",
            "uncert", "img/s", "non-inf %", "cold ms", "RSS MB"]
    rows = [head]
    for r in report.get("runs", []):
        share = r.get("non_inference_share")
        rows.append([r["backend"], r["precision"], str(r["batch"]), *(_cell(r.get(k)) for k in STAGE_KEYS),
                     _cell(r.get("refine_ms")), _cell(r.get("uncertainty_ms")),
                     f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "-",
                     f"{100 * share:.1f}" if share is not None else "-",
                     f"{r['cold_start_ms']:.0f}" if r.get("cold_start_ms") is not None else "-",
                     f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") is not None else "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("stage cells: median/p95 ms (whole batch); stage 2 = the second stage's crops + inference + decode; "
                 "non-inf = end to end minus both stages' inference; cold = model load + first measurement in a fresh process")
    for s in report.get("skipped", []):
        lines.append(f"skipped {s['backend']} {s['precision']}: {s['reason']}")
    for c in report.get("comparisons", []):
        lines.append(f"{c['faster']} vs {c['than']} (batch {c['batch']}): inference {c['inference_speedup']:.2f}x, "
                     f"end to end {c['end_to_end_speedup']:.2f}x faster")
    return "\n".join(lines)


def validate_report(report: Mapping[str, Any]) -> list[str]:
    """Problems with a report against the documented schema (empty list when it conforms)."""
    problems: list[str] = []
    for key in ("schema", "machine", "runs", "skipped", "settings", "input"):
        if key not in report:
            problems.append(f"top-level key {key!r} missing")
    if report.get("schema") != SCHEMA:
        problems.append(f"schema {report.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("cpu_model", "cores", "gpu", "libraries", "date"):
        if key not in report.get("machine", {}):
            problems.append(f"machine.{key} missing")
    for i, run in enumerate(report.get("runs", [])):
        for key in ("backend", "precision", "batch", "images_per_s", "cold_start_ms", "peak_rss_mb"):
            if key not in run:
                problems.append(f"runs[{i}].{key} missing")
        for key in (*STAGE_KEYS, *(k for k in EXTRA_STAGE_KEYS if k in run)):
            stat = run.get(key)
            if not isinstance(stat, Mapping) or set(stat) != {"median", "p95"}:
                problems.append(f"runs[{i}].{key} is {stat!r}, expected {{'median', 'p95'}}")
            elif not 0.0 <= stat["median"] <= stat["p95"]:
                problems.append(f"runs[{i}].{key} median {stat['median']} > p95 {stat['p95']} or negative")
    return problems
