"""Inference backends behind a registry. Each backend lives in its own module, imported lazily.

>>> from cervisag_edge.backends import get_backend_class
>>> cls = get_backend_class("onnxruntime")  # imports onnxruntime only now
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from ..errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Backend

#: backend name -> (module, class name, the import that must exist for it to be usable)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("cervisag_edge.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    "tensorrt": ("cervisag_edge.backends.tensorrt", "TensorRTBackend", "tensorrt"),
    "torch": ("cervisag_edge.backends.torch", "TorchBackend", "torch"),
}


def register_backend(name: str, module: str, class_name: str, requires: str) -> None:
    """Register a backend implemented by ``module.class_name``, usable when ``requires`` imports."""
    _REGISTRY[name] = (module, class_name, requires)


def backend_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def is_installed(name: str) -> bool:
    """Whether the backend's engine package is importable (without importing it)."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return False
    if name == "tensorrt":  # the full package or the lean runtime
        from ..engine_select import tensorrt_available

        return tensorrt_available()
    try:
        return importlib.util.find_spec(entry[2]) is not None
    except (ImportError, ValueError):
        return False


def get_backend_class(name: str) -> "type[Backend]":
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BackendUnavailableError(f"unknown backend {name!r}; expected one of {', '.join(_REGISTRY)}")
    module, cls, requires = entry
    if not is_installed(name):
        raise BackendUnavailableError(f"backend {name!r} needs the Python package {requires!r}, which is not installed")
    return getattr(importlib.import_module(module), cls)
