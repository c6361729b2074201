"""Backend base class, after Polygraphy's runners: a cheap constructor, ``activate``/``deactivate``,
inputs validated once before ``infer_impl``, and inference timed by the backend itself.

Lifecycle: ``Backend(manifest, **options)`` only stores its arguments; :meth:`activate` loads the
engine (``activate_impl``); :meth:`infer` on an inactive backend raises
:class:`~cervisag_edge.errors.BackendStateError`; :meth:`deactivate` releases it
(``deactivate_impl``). ``with backend:`` activates and deactivates.

Shapes: input batch (N, 1, H, W) float32; output heatmaps (N, K, h, w) float32, K = 34.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from ...errors import BackendStateError
from ..manifest import ModelManifest

logger = logging.getLogger(__name__)


class Backend(ABC):
    """One model on one inference engine.

    Subclasses implement :meth:`activate_impl` and :meth:`infer_impl` (and optionally
    :meth:`deactivate_impl`). :meth:`infer` checks name, dtype and shape against the manifest so
    that each backend sees only valid batches. ``thread_safe`` says whether ``infer_impl`` may run
    from several threads at once; when it is False, :meth:`infer` serialises calls with a lock.
    ``last_inference_ms`` is the wall time of the latest ``infer_impl`` call (Polygraphy's
    ``last_inference_time``); :meth:`infer_timed` returns it with the heatmaps, race-free.
    """

    name: ClassVar[str] = "base"
    thread_safe: ClassVar[bool] = False

    def __init__(self, manifest: ModelManifest, **options: object) -> None:
        self.manifest = manifest
        self.options = dict(options)
        self._lock = threading.Lock()
        self.is_active = False
        self.last_inference_ms: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def activate(self) -> "Backend":
        """Load the engine (idempotent); returns self."""
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
            logger.debug("%s activated for %s", self.name, self.manifest.model_path.name)
        return self

    def deactivate(self) -> None:
        """Release the engine (idempotent); :meth:`activate` may load it again."""
        if self.is_active:
            try:
                self.deactivate_impl()
            finally:
                self.is_active = False

    @abstractmethod
    def activate_impl(self) -> None:
        """Backend-specific loading: sessions, engines, buffers. Raises ModelError/BackendUnavailableError."""

    def deactivate_impl(self) -> None:  # pragma: no cover - trivial default
        """Backend-specific release of what :meth:`activate_impl` made."""

    def close(self) -> None:
        """Same as :meth:`deactivate`."""
        self.deactivate()

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference ------------------------------------------------------------------------------
    @property
    def input_hw(self) -> tuple[int, int]:
        return self.manifest.input_hw

    @property
    def max_batch(self) -> int | None:
        """Largest tensor batch (rows N of one ``infer`` call) the engine accepts, or None for unlimited."""
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

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """Run the model on a validated (N, 1, H, W) float32 batch: ((N, K, h, w) float32 heatmaps,
        inference wall time in ms, validation excluded)."""
        if not self.is_active:
            raise BackendStateError(
                f"{self.name}: infer called on an inactive backend for {self.manifest.model_path.name}; call activate() first"
            )
        batch = self.validate(batch)
        if self.thread_safe:
            t0 = time.perf_counter()
            out = self.infer_impl(batch)
            ms = (time.perf_counter() - t0) * 1000.0
        else:
            with self._lock:
                t0 = time.perf_counter()
                out = self.infer_impl(batch)
                ms = (time.perf_counter() - t0) * 1000.0
        self.last_inference_ms = ms
        return np.asarray(out, dtype=np.float32), ms

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """:meth:`infer_timed` without the time (it stays in ``last_inference_ms``)."""
        return self.infer_timed(batch)[0]

    @abstractmethod
    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        """Backend-specific inference on an already validated batch."""
