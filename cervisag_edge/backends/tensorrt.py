"""TensorRT backend: runs a plan built by ``tools/build_engine.py``, loaded only through its manifest.

The plan manifest (``<model>.<variant>.plan.json``) is a :class:`ModelManifest` with
``format = "tensorrt-plan"`` whose ``extra["tensorrt"]`` block records how the plan was built
(:data:`PLAN_FIELDS`). Before deserialising anything the backend checks, with the pure
:func:`check_plan_manifest`, that the plan matches this machine's TensorRT version and GPU and
the ONNX file it claims to come from.

Runtime: pre-allocated device buffers, pinned host buffers, a non-blocking stream,
``execute_async_v3``, warm-up, and optional CUDA graph capture (static batch only). Works with
the full ``tensorrt`` module and with the lean runtime ``tensorrt_lean`` (which can only load
version-compatible plans). CUDA goes through cuda-python (``cuda.bindings``), not pycuda.

Shapes: input (N, 1, H, W) float32, output heatmaps (N, K, h, w) float32.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import BackendUnavailableError, ModelError
from ..manifest import ModelManifest, sha256_file
from .base import Backend

logger = logging.getLogger(__name__)

PLAN_FORMAT = "tensorrt-plan"
#: Fields of a plan manifest's ``extra["tensorrt"]`` block.
PLAN_FIELDS: tuple[str, ...] = (
    "tensorrt_version", "tensorrt_module", "gpu_name", "compute_capability", "onnx_file",
    "onnx_sha256", "profile", "build_options",
)
HARDWARE_COMPAT_MIN_CC: Mapping[str, tuple[int, int]] = {"ampere+": (8, 0)}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _cc_tuple(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        raise ModelError(f"plan manifest: field compute_capability {text!r} is not 'major.minor'") from None


def check_plan_manifest(
    plan_manifest: Mapping[str, Any],
    *,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    onnx_sha256: str,
    source: str = "plan manifest",
) -> None:
    """Refuse a plan that does not suit this machine; raises :class:`ModelError` naming the field.

    ``plan_manifest`` is the ``extra["tensorrt"]`` block. Rules:

    * ``tensorrt_version`` must equal ``trt_version``; a version-compatible plan
      (``build_options.version_compatible``) may instead run on the same or a later TensorRT
      whose major version is not older (TensorRT loads 10.x VC plans on 11.x, never the reverse).
    * ``gpu_name`` and ``compute_capability`` must equal this GPU's; a plan built with
      ``build_options.hardware_compat = "ampere+"`` runs on any GPU of compute capability >= 8.0.
    * ``onnx_sha256`` must equal the sha256 of the ONNX file the plan names.
    """
    missing = [f for f in PLAN_FIELDS if f not in plan_manifest]
    if missing:
        raise ModelError(f"{source}: tensorrt block lacks field(s) {', '.join(missing)}")
    options = plan_manifest.get("build_options") or {}
    built = str(plan_manifest["tensorrt_version"])
    if bool(options.get("version_compatible", False)):
        b, r = _version_tuple(built), _version_tuple(trt_version)
        if not b or not r or r < b:
            raise ModelError(
                f"{source}: field tensorrt_version {built} (version-compatible) needs TensorRT >= {built}, found {trt_version}"
            )
    elif built != str(trt_version):
        raise ModelError(f"{source}: field tensorrt_version {built} does not match the installed TensorRT {trt_version}; rebuild the plan")
    compat = str(options.get("hardware_compat", "none"))
    if compat in HARDWARE_COMPAT_MIN_CC:
        need = HARDWARE_COMPAT_MIN_CC[compat]
        if _cc_tuple(compute_capability) < need:
            raise ModelError(
                f"{source}: field build_options.hardware_compat {compat} needs compute capability >= {need[0]}.{need[1]}, found {compute_capability}"
            )
    elif compat != "none":
        raise ModelError(f"{source}: field build_options.hardware_compat {compat!r} is not one of none, {', '.join(HARDWARE_COMPAT_MIN_CC)}")
    else:
        if str(plan_manifest["gpu_name"]) != str(gpu_name):
            raise ModelError(f"{source}: field gpu_name {plan_manifest['gpu_name']!r} does not match this GPU {gpu_name!r}; rebuild the plan")
        if _cc_tuple(plan_manifest["compute_capability"]) != _cc_tuple(compute_capability):
            raise ModelError(
                f"{source}: field compute_capability {plan_manifest['compute_capability']} does not match this GPU's {compute_capability}"
            )
    if str(plan_manifest["onnx_sha256"]) != str(onnx_sha256):
        raise ModelError(
            f"{source}: field onnx_sha256 {str(plan_manifest['onnx_sha256'])[:16]}… does not match the ONNX file's {str(onnx_sha256)[:16]}…"
        )


#: Python modules that provide TensorRT: the full package or the lean runtime.
TENSORRT_MODULES: tuple[str, ...] = ("tensorrt", "tensorrt_lean")


def tensorrt_module_name() -> str | None:
    """Name of the importable TensorRT module (not imported here), preferring ``tensorrt``; None when absent."""
    for name in TENSORRT_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return None


def import_tensorrt() -> Any:
    """Import the full ``tensorrt`` module, else the lean runtime ``tensorrt_lean``."""
    for name in TENSORRT_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BackendUnavailableError("TensorRT is not installed; pip install 'cervisag-edge[tensorrt]' (tensorrt or tensorrt-lean)")


def plan_block(manifest: ModelManifest) -> Mapping[str, Any]:
    """The ``extra["tensorrt"]`` block of a plan manifest, or ModelError naming the field."""
    src = Path(manifest.path) / f"{manifest.file}"
    if manifest.format != PLAN_FORMAT:
        raise ModelError(f"{src}: manifest field format {manifest.format!r}, expected {PLAN_FORMAT!r} (build one with tools/build_engine.py)")
    block = manifest.extra.get("tensorrt")
    if not isinstance(block, Mapping):
        raise ModelError(f"{src}: plan manifest lacks field extra.tensorrt")
    return block


class TensorRTBackend(Backend):
    """One TensorRT plan on one GPU. Options: ``cuda_graph`` (bool), ``warmup`` (int, default 2)."""

    name: ClassVar[str] = "tensorrt"
    thread_safe: ClassVar[bool] = False

    def activate_impl(self) -> None:
        from ..cuda import memory

        manifest, options = self.manifest, self.options

        block = plan_block(manifest)
        trt = import_tensorrt()
        self._trt = trt
        gpu_name, cc, _ = memory.device_properties(0)
        onnx_path = Path(manifest.path) / str(block["onnx_file"])
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: ONNX file named by plan manifest field onnx_file does not exist; cannot verify the plan")
        check_plan_manifest(
            block, trt_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc,
            onnx_sha256=sha256_file(onnx_path), source=str(Path(manifest.path) / manifest.file),
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if bool((block.get("build_options") or {}).get("version_compatible", False)):
            self._runtime.engine_host_code_allowed = True
        plan_bytes = manifest.model_path.read_bytes()
        self._engine = self._runtime.deserialize_cuda_engine(plan_bytes)
        if self._engine is None:
            raise ModelError(f"{manifest.model_path}: TensorRT {trt.__version__} could not deserialise the plan")
        self._context = self._engine.create_execution_context()
        in_name, out_name = manifest.input_name, manifest.output_name
        profile = block["profile"]
        self._max_batch = int(profile["max"][0])
        self._stream = memory.Stream()
        h, w = self.input_hw
        hh, hw = (int(v) for v in manifest.heatmap_shape)
        k = len(manifest.landmark_names)
        self._in_shape_max = (self._max_batch, 1, h, w)
        self._out_shape_max = (self._max_batch, k, hh, hw)
        self._d_in = memory.DeviceBuffer(int(np.prod(self._in_shape_max)) * 4)
        self._d_out = memory.DeviceBuffer(int(np.prod(self._out_shape_max)) * 4)
        self._h_in = memory.PinnedArray(self._in_shape_max, np.float32)
        self._h_out = memory.PinnedArray(self._out_shape_max, np.float32)
        self._context.set_tensor_address(in_name, self._d_in.ptr)
        self._context.set_tensor_address(out_name, self._d_out.ptr)
        self._graph: Any = None
        self._graph_batch = 0
        self._current_batch = 0
        for _ in range(int(options.get("warmup", 2))):  # type: ignore[call-overload]
            self.infer_impl(np.zeros((1, 1, h, w), np.float32))
        if bool(options.get("cuda_graph", False)):
            self._capture_graph(int(options.get("graph_batch", 1)))  # type: ignore[call-overload]
        logger.info("TensorRT %s plan %s loaded (max batch %d)", trt.__version__, manifest.model_path, self._max_batch)

    @property
    def max_batch(self) -> int | None:
        return getattr(self, "_max_batch", None)  # known once activated

    def _set_batch(self, n: int) -> None:
        if n != self._current_batch:
            h, w = self.input_hw
            if not self._context.set_input_shape(self.manifest.input_name, (n, 1, h, w)):
                raise ModelError(f"{self.manifest.model_path}: TensorRT refused input shape {(n, 1, h, w)}")
            self._current_batch = n

    def _enqueue(self, n: int) -> None:
        from ..cuda import memory

        in_bytes = n * int(np.prod(self._in_shape_max[1:])) * 4
        out_bytes = n * int(np.prod(self._out_shape_max[1:])) * 4
        memory.copy_htod_async(self._d_in.ptr, self._h_in.array, self._stream, in_bytes)
        if not self._context.execute_async_v3(self._stream.ptr):
            raise ModelError(f"{self.manifest.model_path}: execute_async_v3 failed")
        memory.copy_dtoh_async(self._h_out.array, self._d_out.ptr, self._stream, out_bytes)

    def _capture_graph(self, n: int) -> None:
        from ..cuda import memory

        self._set_batch(n)
        self._enqueue(n)  # TensorRT needs one launch after a shape change before capture
        self._stream.synchronize()
        graph = memory.CudaGraph(self._stream)
        graph.begin()
        try:
            self._enqueue(n)
        finally:
            graph.end()
        self._graph, self._graph_batch = graph, n
        logger.info("captured a CUDA graph for batch %d", n)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        n = int(batch.shape[0])
        self._h_in.array[:n] = batch
        if self._graph is not None and n == self._graph_batch:
            self._graph.launch()
        else:
            self._set_batch(n)
            self._enqueue(n)
        self._stream.synchronize()
        return self._h_out.array[:n].copy()

    def deactivate_impl(self) -> None:
        if getattr(self, "_graph", None) is not None:
            self._graph.close()
            self._graph = None
        for attr in ("_h_in", "_h_out", "_d_in", "_d_out", "_stream"):
            obj = getattr(self, attr, None)
            if obj is not None:
                obj.close()
                setattr(self, attr, None)
        self._context = None
        self._engine = None
