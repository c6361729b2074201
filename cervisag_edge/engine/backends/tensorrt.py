"""TensorRT backend: runs a plan built by ``tools/build_engine.py``, loaded only through its manifest.

The plan manifest (``<model>.<variant>.plan.json``) is a :class:`ModelManifest` with
``format = "tensorrt-plan"`` whose ``extra["tensorrt"]`` block records how the plan was built
(:data:`PLAN_FIELDS`). Before deserialising anything the backend checks, with the pure
:func:`check_plan_manifest`, that the plan matches this machine's TensorRT version and GPU and
the ONNX file it claims to come from.

Runtime: pre-allocated device buffers, pinned host buffers, a non-blocking stream,
``execute_async_v3``, warm-up, and optional CUDA graph capture (static batch only) on an
execution context of its own, so a batch of another size never changes the shapes the graph
replays. The engine's I/O names, dtypes and shapes are checked against the manifest
(:func:`check_engine_io`) before any buffer is bound. Works with the full ``tensorrt`` module and
with the lean runtime ``tensorrt_lean`` (``pip install 'cervisag-edge[tensorrt]'``, from PyPI
alone), which loads only plans built with ``--version-compatible``. CUDA goes through cuda-python
(``cuda.bindings``), not pycuda.

Optional GPU pre/post-processing (options ``gpu_preprocess`` / ``gpu_decode``, default off, the
CPU path stays the default): :meth:`TensorRTBackend.infer_raw` takes a raw uint16 image, runs the
fused NVRTC preprocessing kernel straight into the engine's input buffer, infers, and decodes the
heatmaps on the device with the ``decode_dark`` kernel, so only (K, 3) floats come back.

Shapes: input (N, 1, H, W) float32, output heatmaps (N, K, h, w) float32.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ...errors import BackendUnavailableError, ModelError
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
#: The module of the lean runtime, which deserialises only version-compatible plans.
LEAN_MODULE = "tensorrt_lean"
#: How to get a runtime: the lean runtime installs from PyPI alone; the full builder does not.
INSTALL_HINT = (
    "pip install 'cervisag-edge[tensorrt]' installs the lean runtime tensorrt_lean (tensorrt-lean-cu13, from PyPI); "
    "building plans needs the full 'tensorrt' wheel, whose libraries only NVIDIA's own package index serves"
)


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
    runtime_module: str = "tensorrt",
) -> None:
    """Refuse a plan that does not suit this machine; raises :class:`ModelError` naming the field.

    ``plan_manifest`` is the ``extra["tensorrt"]`` block. Rules:

    * ``tensorrt_version`` must equal ``trt_version``; a version-compatible plan
      (``build_options.version_compatible``) may instead run on the same or a later TensorRT
      whose major version is not older (TensorRT loads 10.x VC plans on 11.x, never the reverse).
    * ``gpu_name`` and ``compute_capability`` must equal this GPU's; a plan built with
      ``build_options.hardware_compat = "ampere+"`` runs on any GPU of compute capability >= 8.0.
    * ``onnx_sha256`` must equal the sha256 of the ONNX file the plan names.
    * With the lean runtime (``runtime_module == "tensorrt_lean"``) the plan must be
      version-compatible: ``build_options.version_compatible`` must be present and true (a lean
      runtime fails on any other plan with "Unexpected call to stub loadRunner", NVIDIA/TensorRT#4790).
    """
    missing = [f for f in PLAN_FIELDS if f not in plan_manifest]
    if missing:
        raise ModelError(f"{source}: tensorrt block lacks field(s) {', '.join(missing)}")
    options = plan_manifest.get("build_options") or {}
    if not isinstance(options, Mapping):
        raise ModelError(f"{source}: field build_options {options!r} is not an object")
    if runtime_module == LEAN_MODULE and options.get("version_compatible") is not True:
        found = "missing" if "version_compatible" not in options else repr(options.get("version_compatible"))
        raise ModelError(
            f"{source}: field build_options.version_compatible is {found}, expected true: the lean runtime {LEAN_MODULE} "
            "loads only version-compatible plans (rebuild with tools/build_engine.py --version-compatible)"
        )
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
    """Import the full ``tensorrt`` module, else the lean runtime ``tensorrt_lean``.

    Which one was imported is ``module.__name__``; pass it to :func:`check_plan_manifest` as
    ``runtime_module`` (the lean runtime refuses plans that are not version-compatible).
    """
    errors = []
    for name in TENSORRT_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # also a present module whose shared libraries fail to load
            errors.append(f"{name}: {exc}")
    raise BackendUnavailableError(f"TensorRT is not installed ({'; '.join(errors)}); {INSTALL_HINT}")


#: numpy dtype of each TensorRT ``DataType`` name the backend can bind host buffers for.
TRT_NUMPY_DTYPES: Mapping[str, str] = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool"}


def check_engine_io(io: Mapping[str, tuple[str, str, tuple[int, ...]]], manifest: ModelManifest, source: str) -> None:
    """Refuse an engine whose I/O does not match the manifest; raises :class:`ModelError` naming the tensor.

    ``io`` maps each I/O tensor name to ``(mode, dtype, shape)`` as the engine reports them:
    mode ``"INPUT"``/``"OUTPUT"`` (``TensorIOMode`` name), dtype a ``DataType`` name (``"FLOAT"``,
    ``"HALF"``, …), shape with -1 for dynamic dimensions. The backend binds float32 buffers, so
    both tensors must be FLOAT (an FP16-I/O plan would read half the bytes as garbage): the
    shipped FP16 ONNX keeps FP32 I/O. Shapes: input (N, 1, H, W), output (N, K, h, w) with
    K = number of landmarks and (h, w) the manifest's heatmap shape; N may be -1.
    """
    k = len(manifest.landmark_names)
    want = {
        manifest.input_name: ("INPUT", tuple(int(v) for v in manifest.input_shape[1:])),
        manifest.output_name: ("OUTPUT", (k, *(int(v) for v in manifest.heatmap_shape))),
    }
    extra = sorted(set(io) - set(want))
    if extra:
        raise ModelError(f"{source}: engine has I/O tensor(s) {', '.join(extra)} the manifest does not name")
    for name, (mode, tail) in want.items():
        if name not in io:
            raise ModelError(f"{source}: engine has no I/O tensor {name!r} (manifest field {'input_name' if mode == 'INPUT' else 'output_name'})")
        got_mode, dtype, shape = io[name]
        if got_mode != mode:
            raise ModelError(f"{source}: engine tensor {name!r} is an {got_mode}, expected {mode}")
        if dtype != "FLOAT":
            raise ModelError(
                f"{source}: engine tensor {name!r} has dtype {dtype}, expected FLOAT (float32 buffers); "
                "build the plan from an ONNX with FP32 I/O (tools/quantize.py keeps it)"
            )
        shp = tuple(int(v) for v in shape)
        if len(shp) != 1 + len(tail) or shp[1:] != tail:
            raise ModelError(f"{source}: engine tensor {name!r} has shape {list(shp)}, expected [N, {', '.join(map(str, tail))}] from the manifest")


def engine_io(engine: Any, trt: Any) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """``{name: (mode, dtype, shape)}`` of a deserialised engine's I/O tensors (TensorRT 10/11 API)."""
    out = {}
    for i in range(int(engine.num_io_tensors)):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        dtype = engine.get_tensor_dtype(name)
        out[name] = (getattr(mode, "name", str(mode)), getattr(dtype, "name", str(dtype)), tuple(engine.get_tensor_shape(name)))
    return out


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
        source = str(Path(manifest.path) / manifest.file)
        check_plan_manifest(
            block, trt_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc,
            onnx_sha256=sha256_file(onnx_path), source=source, runtime_module=trt.__name__.split(".")[0],
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if bool((block.get("build_options") or {}).get("version_compatible", False)):
            self._runtime.engine_host_code_allowed = True
        plan_bytes = manifest.model_path.read_bytes()
        self._engine = self._runtime.deserialize_cuda_engine(plan_bytes)
        if self._engine is None:
            raise ModelError(f"{manifest.model_path}: TensorRT {trt.__version__} could not deserialise the plan")
        check_engine_io(engine_io(self._engine, trt), manifest, source)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"{manifest.model_path}: TensorRT could not create an execution context (out of GPU memory?)")
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
        self._bind(self._context)
        self._graph: Any = None
        self._graph_context: Any = None
        self._graph_batch = 0
        self._current_batch = 0
        self._gpu_pre: Any = None
        self._gpu_dec: Any = None
        for _ in range(int(options.get("warmup", 2))):  # type: ignore[call-overload]
            self.infer_impl(np.zeros((1, 1, h, w), np.float32))
        if bool(options.get("cuda_graph", False)):
            self._capture_graph(int(options.get("graph_batch", 1)))  # type: ignore[call-overload]
        if bool(options.get("gpu_preprocess", False)) or bool(options.get("gpu_decode", False)):
            self._init_gpu_ops(bool(options.get("gpu_preprocess", False)), bool(options.get("gpu_decode", False)))
        logger.info("TensorRT %s plan %s loaded (max batch %d)", trt.__version__, manifest.model_path, self._max_batch)

    @property
    def max_batch(self) -> int | None:
        return getattr(self, "_max_batch", None)  # known once activated

    def _bind(self, context: Any) -> None:
        """Point ``context``'s I/O tensors at the device buffers; every return value is checked."""
        for name, buf in ((self.manifest.input_name, self._d_in), (self.manifest.output_name, self._d_out)):
            if not context.set_tensor_address(name, buf.ptr):
                raise ModelError(f"{self.manifest.model_path}: TensorRT refused set_tensor_address({name!r})")

    def _set_shape(self, context: Any, n: int) -> None:
        h, w = self.input_hw
        if not 1 <= n <= self._max_batch or not context.set_input_shape(self.manifest.input_name, (n, 1, h, w)):
            raise ModelError(f"{self.manifest.model_path}: TensorRT refused input shape {(n, 1, h, w)} (profile batch 1..{self._max_batch})")

    def _set_batch(self, n: int) -> None:
        if n != self._current_batch:
            self._set_shape(self._context, n)
            self._current_batch = n

    def _execute(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream.ptr):
            raise ModelError(f"{self.manifest.model_path}: execute_async_v3 failed")

    def _enqueue(self, n: int, context: Any = None) -> None:
        from ..cuda import memory

        in_bytes = n * int(np.prod(self._in_shape_max[1:])) * 4
        out_bytes = n * int(np.prod(self._out_shape_max[1:])) * 4
        memory.copy_htod_async(self._d_in.ptr, self._h_in.array, self._stream, in_bytes)
        self._execute(context if context is not None else self._context)
        memory.copy_dtoh_async(self._h_out.array, self._d_out.ptr, self._stream, out_bytes)

    def _capture_graph(self, n: int) -> None:
        """Capture copy-in, inference and copy-out for batch ``n`` on an execution context of its own.

        The graph replays the kernels TensorRT chose for that context's shapes; giving it its own
        context means a later batch of another size (which calls ``set_input_shape`` on the main
        context) can never leave the graph running with a stale shape.
        """
        from ..cuda import memory

        ctx = self._engine.create_execution_context()
        if ctx is None:
            raise ModelError(f"{self.manifest.model_path}: TensorRT could not create the CUDA graph's execution context")
        self._bind(ctx)
        self._set_shape(ctx, n)
        self._enqueue(n, ctx)  # TensorRT needs one launch after a shape change before capture
        self._stream.synchronize()
        graph = memory.CudaGraph(self._stream)
        graph.begin()
        try:
            self._enqueue(n, ctx)
        finally:
            graph.end()
        self._graph, self._graph_context, self._graph_batch = graph, ctx, n
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

    # -- optional GPU pre/post-processing ----------------------------------------------
    def _init_gpu_ops(self, preprocess: bool, decode: bool) -> None:
        from ..codec import UDPHeatmapCodec
        from ..cuda.ops import GpuDecoder, GpuPreprocessor

        m = self.manifest
        if preprocess:
            self._gpu_pre = GpuPreprocessor(self.input_hw, mean=m.mean, std=m.std, pad_value=m.pad_value, stream=self._stream)
        if decode:
            codec = UDPHeatmapCodec.from_manifest(m.codec)
            inv = 1.0 / codec.scale_xy  # heatmap px → input px, (W−1)/(w−1) (UDP)
            self._gpu_dec = GpuDecoder(max_maps=self._max_batch * len(m.landmark_names), heatmap_hw=tuple(m.heatmap_shape),
                                       scale_xy=(float(inv[0]), float(inv[1])), blur_sigma=codec.blur_sigma, stream=self._stream)

    def infer_raw(self, raw_uint16: np.ndarray, *, slope: float, intercept: float, center: float, width: float,
                  invert: bool) -> tuple[np.ndarray, Any]:
        """Raw (H, W) uint16 → GPU preprocess → inference → GPU decode, all on the device.

        Returns ((K, 3) float32 (x, y, score) with x, y in model-input px, the
        :class:`~cervisag_edge.engine.preprocess.LetterboxTransform` of the CPU path, whose
        ``to_original`` maps the points to original px). Needs the options ``gpu_preprocess=True``
        and ``gpu_decode=True``. The display chain is the LINEAR window of ``imaging.window_linear``.
        """
        from ..preprocess import letterbox_geometry

        if self._gpu_pre is None or self._gpu_dec is None:
            raise ModelError(f"{self.manifest.model_path}: infer_raw needs the backend options gpu_preprocess and gpu_decode")
        raw = np.asarray(raw_uint16)
        self._set_batch(1)
        self._gpu_pre.upload(raw)  # refuses anything but a 2-D uint16 image
        h, w = self.input_hw
        _, tf = letterbox_geometry((raw.shape[1], raw.shape[0]), (w, h))
        self._gpu_pre.run(self._d_in.ptr, slope=slope, intercept=intercept, wc=center, ww=width, invert=invert)
        self._execute(self._context)
        return self._gpu_dec.run(self._d_out.ptr, len(self.manifest.landmark_names)), tf

    def deactivate_impl(self) -> None:
        for attr in ("_gpu_pre", "_gpu_dec", "_graph"):
            obj = getattr(self, attr, None)
            if obj is not None:
                obj.close()
                setattr(self, attr, None)
        self._graph_context = None
        for attr in ("_h_in", "_h_out", "_d_in", "_d_out", "_stream"):
            obj = getattr(self, attr, None)
            if obj is not None:
                obj.close()
                setattr(self, attr, None)
        self._context = None
        self._engine = None
