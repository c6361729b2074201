"""The engine resolver: model and variant naming, manifest lookup, and whether each backend can
run here (with the reason when it cannot). The one place these rules live.

The runtime's ``--precision fp32|fp16|int8`` names a *precision*; the file on disk is a
*variant* that suits the backend: ONNX Runtime's CPU provider runs INT8 fastest with
asymmetric U8 activations ("int8-cpu"), TensorRT needs symmetric S8 Q/DQ ("int8-trt"); the
PyTorch reference runs the FP32 model as trained.

File names (folder ``engines/`` for a bare model name, else the folder of the path given):

* ONNX Runtime / torch: ``<model>[.<variant>].json`` (no suffix for fp32), beside ``<model>[.<variant>].onnx``;
* TensorRT: ``<model>.<variant>.plan.json`` beside ``<model>.<variant>.plan`` (``tools/build_engine.py``).

Availability (:func:`unavailable_reason`) asks the backend registry what each backend needs and,
for TensorRT, :func:`cervisag_edge.engine.backends.tensorrt.tensorrt_module_name`; nothing heavy is imported.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailableError
from .manifest import DEFAULT_MODEL, engines_dir

logger = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt", "torch")
VARIANTS: tuple[str, ...] = ("fp32", "fp16", "int8-cpu", "int8-trt")
#: Backend choices of the ``--backend`` options: a registered backend or ``auto``.
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)


# -- naming ------------------------------------------------------------------------------------
def variant_for(backend: str, precision: str) -> str:
    """Variant name for a backend and a precision: ``("tensorrt", "int8") -> "int8-trt"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision != "int8":
        return precision
    return "int8-trt" if backend == "tensorrt" else "int8-cpu"


def model_stem(filename: str) -> str:
    """``cervisag_unet.int8-cpu.onnx`` -> ``cervisag_unet`` (strips format and variant suffixes)."""
    stem = filename
    for ext in (".json", ".onnx", ".plan"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    for variant in VARIANTS:
        if stem.endswith(f".{variant}"):
            return stem[: -len(variant) - 1]
    return stem


def variant_of(filename: str) -> str:
    """The variant a model or manifest file name carries (``fp32`` when it carries none)."""
    stem = filename
    for ext in (".json", ".plan", ".onnx"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    return next((v for v in VARIANTS if stem.endswith(f".{v}")), "fp32")


def manifest_name(stem: str, backend: str, variant: str) -> str:
    """File name of the manifest of ``stem`` at ``variant`` for ``backend`` (rules in the module doc)."""
    if backend == "tensorrt":
        return f"{stem}.{variant}.plan.json"
    return f"{stem}.json" if variant == "fp32" else f"{stem}.{variant}.json"


def plan_paths_for(onnx_manifest_path: str | Path) -> tuple[Path, Path]:
    """(plan, plan manifest) that ``tools/build_engine.py`` writes for an ONNX manifest, named so
    that :func:`manifest_path_for` finds them: ``m.int8-trt.json`` -> ``m.int8-trt.plan(.json)``,
    ``m.json`` -> ``m.fp32.plan(.json)``."""
    p = Path(onnx_manifest_path)
    manifest = p.parent / manifest_name(model_stem(p.name), "tensorrt", variant_of(p.name))
    return manifest.with_name(manifest.name[: -len(".json")]), manifest


def model_dir_stem(folder: str | Path) -> str:
    """The model a folder holds: the stem of its one FP32 ``.onnx`` (the folder's name when it
    holds none or several, so that the manifest lookup fails naming that folder)."""
    p = Path(folder)
    stems = sorted({model_stem(f.name) for f in p.glob("*.onnx") if variant_of(f.name) == "fp32"})
    return stems[0] if len(stems) == 1 else p.name


def manifest_path_for(model_name_or_path: str | Path | None, backend: str, precision: str) -> Path:
    """Manifest of the variant that ``backend`` runs at ``precision``.

    ``None`` is the shipped model; a bare name is looked up in :func:`engines_dir`; a model folder
    (``cervisag adapt --out DIR``) holds one FP32 ``.onnx`` whose stem names the model; any other
    path keeps its directory and loses a known variant/format suffix (``x.int8-cpu.onnx`` -> model ``x``).
    The torch backend reads the FP32 ONNX manifest (its ``extra.torch_weights`` names the weights).
    """
    variant = variant_for(backend, precision)
    if model_name_or_path is None:
        folder, stem = engines_dir(), DEFAULT_MODEL
    else:
        p = Path(model_name_or_path)
        if p.is_dir():
            folder, stem = p, model_dir_stem(p)
        elif p.parent == Path(".") and not p.suffix:
            folder, stem = engines_dir(), p.name
        else:
            folder, stem = p.parent, model_stem(p.name)
    return folder / manifest_name(stem, backend, variant)


# -- availability ------------------------------------------------------------------------------
def tensorrt_module_name() -> str | None:
    """The importable TensorRT module (``tensorrt`` or the lean runtime), as the TensorRT backend finds it."""
    from .backends.tensorrt import tensorrt_module_name as find

    return find()


def tensorrt_available() -> bool:
    """Whether ``tensorrt`` or ``tensorrt_lean`` is importable (not imported here)."""
    return tensorrt_module_name() is not None


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


def backend_installed(backend: str) -> bool:
    """Whether the engine package ``backend`` needs is importable (without importing it)."""
    from .backends import backend_entry

    entry = backend_entry(backend)
    if backend == "tensorrt":
        return tensorrt_available()
    try:
        return importlib.util.find_spec(entry.requires) is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason(backend: str, precision: str, model: str | Path | None = None) -> str | None:
    """Why ``backend`` × ``precision`` of ``model`` cannot run here, or None when it can be tried.

    Reasons, joined by ``; `` when several apply: unknown backend or precision, precision not
    supported by the backend, engine package not installed, no CUDA GPU, manifest not built.
    """
    from .backends import backend_entry, backend_names

    if backend not in backend_names():
        return f"unknown backend {backend!r} (expected one of {', '.join(backend_names())})"
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r} (expected one of {', '.join(PRECISIONS)})"
    entry = backend_entry(backend)
    if precision not in entry.precisions:
        return f"backend {backend!r} runs {', '.join(entry.precisions)} only (the PyTorch reference is the model as trained)"
    missing = []
    if backend == "tensorrt" and not gpu_available():
        missing.append("no CUDA GPU (cuda-python found no device)")
    if not backend_installed(backend):
        missing.append(f"not installed: {entry.requires!r} ({entry.install})")
    path = manifest_path_for(model, backend, precision)
    if not path.is_file():
        tool = "tools/build_engine.py" if backend == "tensorrt" else "tools/quantize.py"
        missing.append(f"not built: {path.name} missing ({tool})")
    return "; ".join(missing) or None


# -- choice --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """What a Measurer loads: the backend that runs, its manifest, and why it was chosen."""

    backend: str
    precision: str
    manifest_path: Path
    reason: str


def choose_backend(
    requested: str, *, gpu_available: bool, tensorrt_available: bool, plan_manifest_ok: bool
) -> tuple[str, str]:
    """Pick between ONNX Runtime and TensorRT: returns ``(backend, reason)`` (pure).

    ``"auto"`` picks TensorRT only when a GPU, TensorRT and a matching plan all exist, else
    ONNX Runtime (the reason names what was missing). ``"tensorrt"`` without all three raises
    :class:`BackendUnavailableError` naming what is missing.
    """
    if requested not in ("auto", "onnxruntime", "tensorrt"):
        raise ValueError(f"backend {requested!r} is not one of auto, onnxruntime, tensorrt")
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


def resolve(model: str | Path | None, backend: str, precision: str) -> Resolved:
    """The backend and manifest for a request; BackendUnavailableError (with the reason) when the
    backend cannot run here, ModelError-free: a missing manifest is left to :func:`load_manifest`."""
    if backend not in BACKEND_CHOICES:
        raise BackendUnavailableError(f"unknown backend {backend!r}; expected one of {', '.join(BACKEND_CHOICES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    reason = "requested explicitly"
    if backend in ("auto", "tensorrt"):
        plan = manifest_path_for(model, "tensorrt", precision)
        backend, reason = choose_backend(backend, gpu_available=gpu_available(), tensorrt_available=tensorrt_available(),
                                         plan_manifest_ok=plan.is_file())
    elif not backend_installed(backend):
        raise BackendUnavailableError(f"backend {backend!r}: {unavailable_reason(backend, precision, model)}")
    elif backend == "torch" and precision != "fp32":
        raise BackendUnavailableError(f"backend 'torch': {unavailable_reason(backend, precision, model)}")
    return Resolved(backend, precision, manifest_path_for(model, backend, precision), reason)
