"""PyTorch eager backend: the model as trained, for reference and benchmarks (extra ``[train]``).

The network is :class:`~cervisag_edge.engine.backends.torch_net.LandmarkUNet`; only FP32 (the ONNX manifest).

Weights come from the ``.torch.npz`` file named in the manifest's ``extra.torch_weights``
(loaded with ``allow_pickle=False`` after a sha256 check), never from a pickled checkpoint.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from ...errors import BackendUnavailableError, ModelError
from ..manifest import ModelManifest, sha256_file
from .base import Backend

logger = logging.getLogger(__name__)


class TorchBackend(Backend):
    name: ClassVar[str] = "torch"
    thread_safe: ClassVar[bool] = False

    def __init__(self, manifest: ModelManifest, *, threads: int | None = None, **options: object) -> None:
        super().__init__(manifest, threads=threads, **options)
        self.threads = threads

    def activate_impl(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(f"backend 'torch' needs PyTorch (pip install 'cervisag-edge[train]'): {exc}") from None

        from .torch_net import LandmarkUNet

        manifest, threads = self.manifest, self.threads
        info = manifest.extra.get("torch_weights")
        if not isinstance(info, dict) or "file" not in info or "sha256" not in info:
            raise ModelError(f"{manifest.name}: manifest field extra.torch_weights {{file, sha256}} is missing")
        path = manifest.model_path.parent / str(info["file"])
        if not path.is_file():
            raise ModelError(f"{path}: PyTorch weights named by extra.torch_weights.file do not exist")
        found = sha256_file(path)
        if found != info["sha256"]:
            raise ModelError(f"{path}: sha256 {found[:16]}… does not match manifest field extra.torch_weights.sha256")
        if threads is not None:
            torch.set_num_threads(int(threads))
        widths = tuple(int(v) for v in manifest.extra.get("widths", ()))
        self.model = LandmarkUNet(num_landmarks=len(manifest.landmark_names), widths=widths,
                                  out_stride=int(manifest.heatmap_stride), head_width=int(manifest.extra.get("head_width", 96)))
        with np.load(path, allow_pickle=False) as npz:
            state = {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
        self.model.load_state_dict(state)
        self.model.eval()
        self._torch = torch

    def deactivate_impl(self) -> None:
        self.model = None

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(batch)).numpy()
