"""Inference backends behind a registry. Each backend lives in its own module, imported lazily.

The registry only names where each backend lives and what it needs; whether it can run here,
and why not, is decided by :mod:`cervisag_edge.engine.resolver` (the engine resolver).

>>> from cervisag_edge.engine.backends import get_backend_class
>>> cls = get_backend_class("onnxruntime")   # the module only; onnxruntime is imported by activate()
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import BackendUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Backend


@dataclass(frozen=True)
class BackendEntry:
    """Where a backend lives and what it needs: ``requires`` is the import that must exist and
    ``install`` the hint printed when it does not; ``precisions`` are those it can run."""

    module: str
    class_name: str
    requires: str
    install: str
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")


_REGISTRY: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("cervisag_edge.engine.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime",
                                "pip install onnxruntime"),
    "tensorrt": BackendEntry("cervisag_edge.engine.backends.tensorrt", "TensorRTBackend", "tensorrt",
                             "pip install 'cervisag-edge[tensorrt]'"),
    "torch": BackendEntry("cervisag_edge.engine.backends.torch", "TorchBackend", "torch",
                          "pip install 'cervisag-edge[train]'", precisions=("fp32",)),
}


def register_backend(name: str, entry: BackendEntry) -> None:
    """Register a backend implemented by ``entry.module:entry.class_name``."""
    _REGISTRY[name] = entry


def backend_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of ``name``; BackendUnavailableError for an unknown name."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise BackendUnavailableError(f"unknown backend {name!r}; expected one of {', '.join(_REGISTRY)}")
    return entry


def get_backend_class(name: str) -> "type[Backend]":
    """The backend class (its module imported, its engine not: that happens in ``activate``)."""
    entry = backend_entry(name)
    return getattr(importlib.import_module(entry.module), entry.class_name)
