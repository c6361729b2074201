"""GPU helpers on NVIDIA's cuda-python (``cuda.bindings``): memory, streams, NVRTC kernels.

Optional: nothing here is imported by ``import cervisag_edge``; cuda-python is imported lazily
inside functions, so the pure parts (launch geometry, kernel sources, cache keys, the numpy
reference twins) work on machines without a GPU.

Modules: :mod:`.memory` (device/pinned buffers, streams, CUDA graphs), :mod:`.nvrtc`
(run-time compilation and its cache), :mod:`.kernels` (CUDA C++ sources and launch geometry),
:mod:`.reference` (numpy twins of the kernels), :mod:`.ops` (GPU preprocess and decode).
"""
from __future__ import annotations

__all__ = ["memory", "nvrtc", "kernels", "reference", "ops"]
