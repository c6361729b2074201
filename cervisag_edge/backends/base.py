"""Backend base class, after Polygraphy's runners: validate inputs once, then ``infer_impl``.

Shapes: input batch (N, 1, H, W) float32; output heatmaps (N, K, h, w) float32, K = 34.
"""
from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ..manifest import ModelManifest

logger = logging.getLogger(__name__)


class Backend(ABC):
    """One loaded model on one inference engine.

    Subclasses implement :meth:`infer_impl` (and optionally :meth:`close`). :meth:`infer` checks
    name, dtype and shape against the manifest so that each backend sees only valid batches.
    ``thread_safe`` says whether ``infer_impl`` may run from several threads at once; when it is
    False, :meth:`infer` serialises calls with a lock.
    """

    name: ClassVar[str] = "base"
    thread_safe: ClassVar[bool] = False

    def __init__(self, manifest: ModelManifest, **options: object) -> None:
        self.manifest = manifest
        self.options = dict(options)
        self._lock = threading.Lock()

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.manifest.input_hw

    @property
    def max_batch(self) -> int | None:
        """Largest batch the backend accepts, or None for unlimited."""
        return None

    def validate(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise TypeError(f"{self.name}: input '{self.manifest.input_name}' must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise TypeError(f"{self.name}: input '{self.manifest.input_name}' dtype {batch.dtype}, expected float32")
        h, w = self.input_hw
        if batch.ndim != 4 or batch.shape[1:] != (1, h, w) or batch.shape[0] < 1:
            raise ValueError(
                f"{self.name}: input '{self.manifest.input_name}' shape {tuple(batch.shape)}, expected (N, 1, {h}, {w}) with N >= 1"
            )
        mb = self.max_batch
        if mb is not None and batch.shape[0] > mb:
            raise ValueError(f"{self.name}: batch of {batch.shape[0]} exceeds the engine's maximum batch {mb}")
        return np.ascontiguousarray(batch)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a validated (N, 1, H, W) float32 batch; returns (N, K, h, w) float32 heatmaps."""
        batch = self.validate(batch)
        if self.thread_safe:
            out = self.infer_impl(batch)
        else:
            with self._lock:
                out = self.infer_impl(batch)
        return np.asarray(out, dtype=np.float32)

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Backend-specific inference on an already validated batch."""

    def close(self) -> None:  # pragma: no cover - trivial default
        """Release engine resources."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
