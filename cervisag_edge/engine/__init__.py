"""The inference engine: preprocessing, the heatmap codec, model manifests, the engine resolver
(:mod:`.resolver`), the backends and the CUDA kernels the TensorRT backend uses. Runtime only:
nothing here imports :mod:`cervisag_edge.tooling`.
"""
from __future__ import annotations
