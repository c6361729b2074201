"""Read-path benchmark: per transfer syntax, end to end and read; the thirty-line peer pipeline;
the floors (raw file read, decode alone, memory bandwidth); JPEG 2000 decoders compared.

``cervisag bench --transfer-syntax all`` runs :func:`run_read_bench` and prints
:func:`render_read_table`. Every number of one report comes from one run on one machine, so the
ratios (ours / peer, compressed / uncompressed) are what to compare across machines.

Shapes: the input is one phantom DX of ``BENCH_IMAGE_HW`` (rows, cols), 16-bit; JPEG baseline
holds its top 8 bits.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["SYNTAXES", "make_syntax_inputs", "peer_pipeline", "run_read_bench", "render_read_table"]

logger = logging.getLogger(__name__)

#: Row name → transfer syntax UID (None: uncompressed explicit VR little endian).
SYNTAXES: dict[str, str | None] = {
    "uncompressed": None,
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg2000": "1.2.840.10008.1.2.4.90",
    "jpeg2000-lossy": "1.2.840.10008.1.2.4.91",
    "htj2k": "1.2.840.10008.1.2.4.201",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
}
#: Compression ratio of the lossy JPEG 2000 row (a typical archive setting for DX).
J2K_LOSSY_RATIO = 10


def _median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(samples))


def make_syntax_inputs(folder: str | os.PathLike[str], names: Sequence[str] = tuple(SYNTAXES), seed: int = 0) -> dict[str, Path]:
    """One phantom DX written in each transfer syntax of ``names`` into ``folder`` (row → path).
    Encoders: pydicom's (RLE via pylibjpeg-rle, JPEG-LS via pyjpegls, JPEG 2000 lossless and
    lossy via pylibjpeg-openjpeg) and imagecodecs' (JPEG baseline, JPEG Lossless SV1, HTJ2K); a
    syntax whose encoder is missing is left out (logged)."""
    import pydicom

    from .bench import BENCH_IMAGE_HW
    from ..phantom import render_phantom, write_dicom

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ph = render_phantom(seed, 0, size=(BENCH_IMAGE_HW[1], BENCH_IMAGE_HW[0]))
    base = Path(write_dicom(ph, folder / "uncompressed.dcm"))
    out: dict[str, Path] = {}
    for name in names:
        uid = SYNTAXES[name]
        path = folder / f"{name}.dcm"
        try:
            if uid is None:
                path = base
            elif name in ("jpeg-baseline", "jpeg-lossless", "htj2k"):
                _write_imagecodecs(base, path, name, uid)
            else:
                ds = pydicom.dcmread(base)
                # RLE: the Rust encoder of pylibjpeg-rle; pydicom's own is pure Python (minutes at 5 Mpx)
                plugin: dict[str, Any] = {"encoding_plugin": "pylibjpeg"} if name == "rle" else {}
                if name == "jpeg2000-lossy":
                    plugin = {"j2k_cr": [J2K_LOSSY_RATIO]}
                ds.compress(uid, generate_instance_uid=False, **plugin)
                ds.save_as(path, enforce_file_format=True)
            out[name] = path
        except Exception as exc:  # an encoder that is not installed: that row is reported missing
            logger.warning("%s benchmark input not written: %s: %s", name, type(exc).__name__, exc)
    return out


def _write_imagecodecs(base: Path, path: Path, name: str, uid: str) -> None:
    """``base`` re-encoded by imagecodecs: JPEG baseline of its top 8 bits, JPEG Lossless SV1
    (libjpeg-turbo 3) or HTJ2K lossless (OpenJPH)."""
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(base)
    stored = ds.pixel_array
    if name == "jpeg-baseline":
        top8 = (stored >> (int(ds.BitsStored) - 8)).astype(np.uint8)
        frame = imagecodecs.jpeg8_encode(top8, level=95)
        ds.RescaleSlope = f"{float(ds.RescaleSlope) * 2 ** (int(ds.BitsStored) - 8):.10g}"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.LossyImageCompression = "01"
    elif name == "jpeg-lossless":
        frame = imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1, bitspersample=int(ds.BitsStored))
    else:
        frame = imagecodecs.htj2k_encode(stored, reversible=True)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)


def peer_pipeline(onnx_path: str, input_hw: tuple[int, int], mean: float, std: float) -> Callable[[str], np.ndarray]:
    """The thirty-line pipeline a developer would write: pydicom LUTs, OpenCV, ONNX Runtime defaults.
    Returns ``run(path) -> heatmaps``; the same model and the same letterbox as ours."""
    import cv2
    import onnxruntime as ort
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    h_in, w_in = input_hw

    def run(path: str) -> np.ndarray:
        ds = pydicom.dcmread(path)
        img = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / max(hi - lo, 1e-6)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            img = 1.0 - img
        s = min(w_in / img.shape[1], h_in / img.shape[0])
        w_new, h_new = round(img.shape[1] * s), round(img.shape[0] * s)
        small = cv2.resize(img, (w_new, h_new), interpolation=cv2.INTER_AREA)
        boxed = np.zeros((h_in, w_in), np.float32)
        y0, x0 = (h_in - h_new) // 2, (w_in - w_new) // 2
        boxed[y0 : y0 + h_new, x0 : x0 + w_new] = small
        x = ((boxed - mean) / std)[None, None].astype(np.float32)
        return session.run(None, {name: x})[0]

    return run


def _floors(path: Path, repeat: int, factor: int = 0) -> dict[str, Any]:
    """Raw file read, decode alone (full resolution, and at resolution factor ``factor`` for
    JPEG 2000 / HTJ2K), memory bandwidth."""
    import pydicom

    from ...io.codecs import decode_grey, decode_level

    size = path.stat().st_size
    raw_ms = _median_ms(lambda: path.read_bytes(), repeat)
    ds = pydicom.dcmread(path)
    decode_ms = _median_ms(lambda: decode_grey(ds), repeat)
    level_ms: float | None = None
    if factor >= 1 and decode_level(ds, factor) is not None:
        level_ms = _median_ms(lambda: decode_level(ds, factor), repeat)
    buf = np.ones(64 << 20, np.uint8)
    dst = np.empty_like(buf)
    copy_ms = _median_ms(lambda: np.copyto(dst, buf), repeat)
    return {"file_bytes": size, "raw_read_ms": raw_ms, "decode_full_ms": decode_ms, "decode_level_ms": level_ms,
            "level_factor": factor if level_ms is not None else 0,
            "memcpy_gb_s": 2 * buf.nbytes / (copy_ms / 1000.0) / 1e9}


def _j2k_decoders(path: Path, repeat: int) -> dict[str, float | str]:
    """The JPEG 2000 codestream of ``path`` decoded by each installed decoder (ms, full resolution;
    OpenCV also at its reduced-resolution read flags)."""
    import pydicom
    from pydicom.encaps import get_frame

    data = bytes(get_frame(pydicom.dcmread(path).PixelData, 0, number_of_frames=1))
    out: dict[str, float | str] = {}
    threads = max(1, min(4, os.cpu_count() or 1))
    try:
        import imagecodecs

        out["imagecodecs threads=1"] = _median_ms(lambda: imagecodecs.jpeg2k_decode(data, numthreads=1), repeat)
        out[f"imagecodecs threads={threads}"] = _median_ms(lambda: imagecodecs.jpeg2k_decode(data, numthreads=threads), repeat)
    except ImportError as exc:
        out["imagecodecs"] = f"not installed ({exc})"
    try:
        import openjpeg

        out["pylibjpeg-openjpeg"] = _median_ms(lambda: openjpeg.decode(data), repeat)
    except ImportError as exc:
        out["pylibjpeg-openjpeg"] = f"not installed ({exc})"
    from ...io import openjp2

    if openjp2.library() is not None:
        for r in (1, 2, 3):
            level = openjp2.decode_reduced(data, r, threads)
            if level is not None:
                key = f"libopenjp2 {openjp2.library_version()} factor {level.factor} threads={threads}"
                out[key] = _median_ms(lambda f=r: openjp2.decode_reduced(data, f, threads), repeat)
                out[key + " shape"] = "x".join(str(v) for v in level.samples.shape)
    else:
        out["libopenjp2"] = "not found"
    import cv2

    buf = np.frombuffer(data, np.uint8)
    for label, flag in (("opencv full", cv2.IMREAD_UNCHANGED), ("opencv IMREAD_REDUCED_GRAYSCALE_4", cv2.IMREAD_REDUCED_GRAYSCALE_4)):
        img = cv2.imdecode(buf, flag)
        out[label] = _median_ms(lambda f=flag: cv2.imdecode(buf, f), repeat) if img is not None else "cannot decode"
        if img is not None:
            out[label + " shape"] = "x".join(str(v) for v in img.shape[:2])
    return out


def run_read_bench(names: Sequence[str] = tuple(SYNTAXES), repeat: int = 10, threads: int | None = None,
                   folder: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Time every row in one process: ours (FP32 and INT8) per syntax, the peer pipeline per
    syntax, the floors and the JPEG 2000 decoders. Returns the ``read_path`` report section."""
    import tempfile

    import pydicom

    from ...core.measurer import Measurer
    from ...io.levels import level_factor

    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_syntax_inputs(folder or tmp, names)
        rows: list[dict[str, Any]] = []
        report: dict[str, Any] = {"repeat": repeat, "rows": rows, "floors": {}, "jpeg2000_decoders": {}}
        for precision in ("fp32", "int8"):
            with Measurer(precision=precision, threads=threads) as m:
                resize_to = m.resize_size  # the letterbox size rule (the manifest's input size)
                peer = peer_pipeline(str(m.manifest.model_path), m.manifest.input_hw, m.manifest.mean, m.manifest.std)
                for name, path in inputs.items():
                    timings = []
                    for _ in range(repeat + 1):
                        timings.append(m.measure(path).timings_ms)
                    timings = timings[1:]
                    total = float(np.median([t["total_ms"] for t in timings]))
                    inference = float(np.median([t["inference_ms"] for t in timings]))
                    read = float(np.median([t["read_ms"] for t in timings]))
                    try:
                        peer_ms: float | None = _median_ms(lambda p=str(path): peer(p), repeat)
                    except Exception as exc:  # pydicom has no decoder for it here (JPEG lossless needs pylibjpeg-libjpeg)
                        logger.warning("peer pipeline cannot read %s: %s: %s", name, type(exc).__name__, exc)
                        peer_ms = None
                    rows.append({"syntax": name, "precision": precision, "end_to_end_ms": total, "read_ms": read,
                                 "inference_ms": inference, "non_inference_ms": total - inference,
                                 "peer_end_to_end_ms": peer_ms,
                                 "speedup_vs_peer": None if peer_ms is None else peer_ms / total})
        for name, path in inputs.items():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            size_px = (int(ds.Columns), int(ds.Rows))
            report["floors"][name] = _floors(path, repeat, level_factor(size_px, resize_to(size_px)))
        if "jpeg2000" in inputs:
            report["jpeg2000_decoders"] = _j2k_decoders(inputs["jpeg2000"], repeat)
    for row in rows:
        base = next((r for r in rows if r["syntax"] == "uncompressed" and r["precision"] == row["precision"]), None)
        row["vs_uncompressed"] = row["end_to_end_ms"] / base["end_to_end_ms"] if base else None
    return report


def render_read_table(section: dict[str, Any]) -> str:
    """The read-path section as Markdown tables."""
    lines = ["| syntax | precision | end to end ms | read ms | non-inference ms | × uncompressed | peer ms | ours vs peer |",
             "|---|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        vs = f"{r['vs_uncompressed']:.2f}" if r.get("vs_uncompressed") else "—"
        peer = "cannot read" if r.get("peer_end_to_end_ms") is None else f"{r['peer_end_to_end_ms']:.1f}"
        speedup = "—" if r.get("speedup_vs_peer") is None else f"{r['speedup_vs_peer']:.2f}×"
        lines.append(f"| {r['syntax']} | {r['precision']} | {r['end_to_end_ms']:.1f} | {r['read_ms']:.1f} | "
                     f"{r['non_inference_ms']:.1f} | {vs} | {peer} | {speedup} |")
    lines += ["", "| syntax | file MB | raw read ms | decode alone ms (full res) | decode alone ms (level used) | memcpy GB/s |",
              "|---|---|---|---|---|---|"]
    for name, f in section["floors"].items():
        level = f"{f['decode_level_ms']:.1f} (factor {f['level_factor']})" if f.get("decode_level_ms") is not None else "—"
        lines.append(f"| {name} | {f['file_bytes'] / 1e6:.1f} | {f['raw_read_ms']:.2f} | {f['decode_full_ms']:.1f} | "
                     f"{level} | {f['memcpy_gb_s']:.1f} |")
    if section.get("jpeg2000_decoders"):
        lines += ["", "| JPEG 2000 decoder | ms (or shape) |", "|---|---|"]
        for k, v in section["jpeg2000_decoders"].items():
            lines.append(f"| {k} | {v if isinstance(v, str) else f'{v:.1f}'} |")
    return "\n".join(lines)
