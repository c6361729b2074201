"""ONNX Runtime backend: the embedded default (CPU execution provider).

The inference session is built once, by ``activate``, and reused;
``InferenceSession.run`` is thread-safe, so concurrent ``infer`` calls need no lock.
"""
from __future__ import annotations

import logging
from typing import ClassVar, Sequence

import numpy as np

from ...errors import BackendUnavailableError, ModelError
from ..manifest import ModelManifest
from .base import Backend

logger = logging.getLogger(__name__)

#: short names accepted in ``providers`` → ONNX Runtime execution providers
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def resolve_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """Map short provider names to ORT names, refusing ones that are not installed.

    The CPU provider is always appended last as the fallback for unsupported nodes.
    """
    out: list[str] = []
    for name in requested:
        full = _PROVIDERS.get(name.lower(), name)
        if full not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime execution provider {full!r} is not available; installed: {', '.join(available)}"
            )
        if full not in out:
            out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX model through ONNX Runtime.

    Options: ``threads`` (intra-op threads; default: ORT's choice), ``providers`` (e.g.
    ``("cuda",)``; default CPU only).
    """

    name: ClassVar[str] = "onnxruntime"
    thread_safe: ClassVar[bool] = True

    def __init__(self, manifest: ModelManifest, *, threads: int | None = None, providers: Sequence[str] = ("cpu",), **options: object) -> None:
        super().__init__(manifest, threads=threads, providers=tuple(providers), **options)
        if threads is not None and threads < 1:
            raise ValueError(f"threads {threads} must be >= 1")
        self.threads = threads
        self.requested_providers = tuple(providers)

    def activate_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(f"backend 'onnxruntime' needs the Python package 'onnxruntime' ({exc})") from None

        manifest, threads = self.manifest, self.threads
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # idle intra-op threads must not spin after a run: on a 2-core console they would starve
        # the next study's DICOM decode and preprocessing
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = resolve_providers(self.requested_providers, ort.get_available_providers())
        path = manifest.model_path
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=self.providers)
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(f"{path}: ONNX Runtime could not load the model ({type(exc).__name__}: {exc})") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if manifest.input_name not in inputs:
            raise ModelError(f"{path}: manifest field input_name {manifest.input_name!r} not in model inputs {sorted(inputs)}")
        if manifest.output_name not in outputs:
            raise ModelError(f"{path}: manifest field output_name {manifest.output_name!r} not in model outputs {sorted(outputs)}")
        shape = inputs[manifest.input_name].shape
        if len(shape) != 4 or [shape[2], shape[3]] != list(manifest.input_shape[2:]):
            raise ModelError(f"{path}: model input shape {shape} does not match manifest field input_shape {list(manifest.input_shape)}")
        logger.debug("ONNX Runtime session for %s on %s", path.name, self.providers)

    def deactivate_impl(self) -> None:
        self.session = None

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.manifest.output_name], {self.manifest.input_name: batch})[0]
