"""Physical phantom generator: synthetic lateral cervical spine radiographs with exact labels.

``render_phantom(seed, index)`` simulates attenuation line integrals of layered analytic
anatomy (vertebrae C2–T1, atlas, skull base, mandible, airway, soft tissue, shoulders) at a
radiographic geometry with magnification, scatter, quantum noise, detector blur and a
film-like response; see docs/phantoms.md.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .render import Phantom, render_phantom
from .scene import VARIANTS

__all__ = ["Phantom", "VARIANTS", "render_phantom", "generate_dataset", "write_dicom", "write_png"]

if TYPE_CHECKING:  # pragma: no cover
    from .dataset import generate_dataset
    from .dicomio import write_dicom, write_png


def __getattr__(name: str) -> Any:
    if name == "generate_dataset":
        from .dataset import generate_dataset

        return generate_dataset
    if name in ("write_dicom", "write_png"):
        from . import dicomio

        return getattr(dicomio, name)
    raise AttributeError(f"module 'cervisag_edge.tooling.phantom' has no attribute {name!r}")
