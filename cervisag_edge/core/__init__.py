"""The measuring core: a loaded study → :class:`~cervisag_edge.core.measurement.Measurement`.

:mod:`.measurer` (preprocess → infer → decode → parameters), the 34 landmarks, the pure-numpy
geometry of the six parameters, the vertebral chain, uncertainty and quality flags. Runtime only:
nothing here imports :mod:`cervisag_edge.tooling`.
"""
from __future__ import annotations
