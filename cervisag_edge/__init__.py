"""cervisag-edge: cervical sagittal alignment on lateral cervical spine radiographs.

A heatmap CNN finds the 34 landmarks of :mod:`cervisag_edge.core.landmarks`; the pure
geometry of :mod:`cervisag_edge.core.parameters` turns them into Borden's depth, the
cervical curvature index, the centroid lordosis angle and three Cobb angles.

``import cervisag_edge`` needs only the runtime dependencies (numpy, OpenCV,
pydicom, ONNX Runtime); heavier pieces are imported lazily.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["__version__", "Measurer", "Measurement", "compute_parameters", "SagittalParameters", "LANDMARK_NAMES"]

if TYPE_CHECKING:  # pragma: no cover
    from .core.landmarks import LANDMARK_NAMES
    from .core.measurement import Measurement
    from .core.parameters import SagittalParameters, compute_parameters
    from .core.measurer import Measurer

_LAZY = {
    "Measurer": ".core.measurer",
    "Measurement": ".core.measurement",
    "compute_parameters": ".core.parameters",
    "SagittalParameters": ".core.parameters",
    "LANDMARK_NAMES": ".core.landmarks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cervisag_edge' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
