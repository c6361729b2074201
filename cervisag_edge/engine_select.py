"""Which model variant and which backend a run uses (pure functions plus two cheap probes).

The runtime's ``--precision fp32|fp16|int8`` names a *precision*; the file on disk is a
*variant* that suits the backend: ONNX Runtime's CPU provider runs INT8 fastest with
asymmetric U8 activations ("int8-cpu"), TensorRT needs symmetric S8 Q/DQ ("int8-trt").
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from .errors import BackendUnavailableError
from .manifest import DEFAULT_MODEL, engines_dir

logger = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt")
VARIANTS: tuple[str, ...] = ("fp32", "fp16", "int8-cpu", "int8-trt")
#: Python modules that provide TensorRT: the full package or the lean runtime.
TENSORRT_MODULES: tuple[str, ...] = ("tensorrt", "tensorrt_lean")


def variant_for(backend: str, precision: str) -> str:
    """Variant name for a backend and a precision: ``("tensorrt", "int8") -> "int8-trt"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision != "int8":
        return precision
    return "int8-trt" if backend == "tensorrt" else "int8-cpu"


def manifest_path_for(model_name_or_path: str | Path | None, backend: str, precision: str) -> Path:
    """Manifest of the variant that ``backend`` runs at ``precision``.

    ONNX Runtime reads ``<model>[.<variant>].json`` (the ONNX manifest); TensorRT reads the plan
    manifest ``<model>.<variant>.plan.json`` written by ``tools/build_engine.py``. ``None`` is the
    shipped model; a bare name is looked up in :func:`engines_dir`; a path keeps its directory and
    loses a known variant/format suffix (``x.int8-cpu.onnx`` -> model ``x``).
    """
    variant = variant_for(backend, precision)
    if model_name_or_path is None:
        folder, stem = engines_dir(), DEFAULT_MODEL
    else:
        p = Path(model_name_or_path)
        if p.parent == Path(".") and not p.suffix:
            folder, stem = engines_dir(), p.name
        else:
            folder, stem = p.parent, _model_stem(p.name)
    suffix = "" if variant == "fp32" else f".{variant}"
    if backend == "tensorrt":
        return folder / f"{stem}.{variant}.plan.json"
    return folder / f"{stem}{suffix}.json"


def _model_stem(filename: str) -> str:
    """``cervisag_unet.int8-cpu.onnx`` -> ``cervisag_unet`` (strips format and variant suffixes)."""
    stem = filename
    for ext in (".json", ".onnx", ".plan"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    for variant in VARIANTS:
        if stem.endswith(f".{variant}"):
            stem = stem[: -len(variant) - 1]
            break
    return stem


def choose_backend(
    requested: str, *, gpu_available: bool, tensorrt_available: bool, plan_manifest_ok: bool
) -> tuple[str, str]:
    """Pick the backend: returns ``(backend, reason)``.

    ``"auto"`` picks TensorRT only when a GPU, TensorRT and a matching plan all exist, else
    ONNX Runtime (the reason names what was missing). ``"tensorrt"`` without all three raises
    :class:`BackendUnavailableError` naming what is missing.
    """
    if requested not in ("auto", *BACKENDS):
        raise ValueError(f"backend {requested!r} is not one of auto, {', '.join(BACKENDS)}")
    if requested == "onnxruntime":
        return "onnxruntime", "requested explicitly"
    missing = []
    if not gpu_available:
        missing.append("a CUDA GPU (cuda-python found no device)")
    if not tensorrt_available:
        missing.append("TensorRT (pip install 'cervisag-edge[tensorrt]')")
    if not plan_manifest_ok:
        missing.append("a TensorRT plan built for this GPU and TensorRT version (tools/build_engine.py)")
    if requested == "tensorrt":
        if missing:
            raise BackendUnavailableError(f"backend 'tensorrt' needs {'; '.join(missing)}")
        return "tensorrt", "requested explicitly"
    if missing:
        reason = f"auto: onnxruntime, because TensorRT lacks {'; '.join(missing)}"
        logger.info(reason)
        return "onnxruntime", reason
    reason = "auto: tensorrt (GPU, TensorRT and a matching plan are present)"
    logger.info(reason)
    return "tensorrt", reason


def tensorrt_available() -> bool:
    """Whether ``tensorrt`` or the lean runtime ``tensorrt_lean`` is importable (not imported here)."""
    return tensorrt_module_name() is not None


def tensorrt_module_name() -> str | None:
    """Name of the importable TensorRT module, preferring the full ``tensorrt`` over ``tensorrt_lean``."""
    for name in TENSORRT_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return None


def gpu_available() -> bool:
    """Whether cuda-python sees at least one CUDA device; False when cuda-python or a driver is absent.

    Never imports torch. Uses ``cuda.bindings.runtime.cudaGetDeviceCount``.
    """
    try:
        spec = importlib.util.find_spec("cuda.bindings")
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    try:
        from cuda.bindings import runtime as cudart
    except (ImportError, OSError, RuntimeError) as exc:
        logger.debug("cuda.bindings.runtime not importable: %s", exc)
        return False
    try:
        err, count = cudart.cudaGetDeviceCount()
    except (RuntimeError, OSError) as exc:  # no driver library
        logger.debug("cudaGetDeviceCount failed: %s", exc)
        return False
    return int(err) == 0 and int(count) > 0
