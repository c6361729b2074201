"""Field of view: where the film's edges fall on the anatomy.

A framing picks the top and bottom edges on anatomical reference levels (vertex .. C1 for the
top, C3 .. T2 for the bottom) and the horizontal extent, in the patient frame after the image
rotation and mirror (``q = linear @ p``), so the edges are where the film really cuts.

Framings (training probabilities): ``cspine`` 0.6 — a cervical spine film, top anywhere from the
vertex to C1, bottom from C5 to T2; ``ceph`` 0.12 — a lateral cephalogram: skull, face and teeth,
the spine visible to C3–C5; ``neck-portrait`` 0.18 — a neck-only crop, top between the palate and
C1, bottom from C3 to T2; ``neck-landscape`` 0.10 — the same, wider than tall, ending at C3–C6.

Fields of view (``fov``): ``any`` (the default) draws one of those framings; ``full`` always
frames the whole cervical spine, a ``cspine`` film whose bottom edge lies between T1's inferior
endplate and T2: the film a site acquires for an alignment study (collimator shutters and the
shoulders may still hide the lowest levels). ``full`` is for held-out sets on which the
parameters can be defined, such as a site's gate set (``tools/adapt_curve.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAMINGS: tuple[str, ...] = ("cspine", "ceph", "neck-portrait", "neck-landscape")
FOVS: tuple[str, ...] = ("any", "full")
_P_TRAIN = np.array([0.6, 0.12, 0.18, 0.10])
_P_CROPPED = np.array([0.0, 0.3, 0.4, 0.3])


@dataclass(frozen=True)
class Frame:
    """Planned field: ``top``/``bottom``/``left``/``right`` in rotated patient mm (q frame)."""

    name: str
    top: float
    bottom: float
    left: float
    right: float

    @property
    def aspect(self) -> float:
        """Width / height."""
        return (self.right - self.left) / max(self.bottom - self.top, 1.0)


def plan_frame(rng: np.random.Generator, refs: dict[str, np.ndarray], linear: np.ndarray, cropped: bool,
               fov: str = "any") -> Frame:
    """Sample a framing. ``refs``: canonical (2,) points vertex, C1, PNS, C3c, C3i, C5c, C5i, C6c,
    T1i, T2, occiput_back, nose, C1_POST, spine_ant, spine_post (see :func:`scene.build_scene`);
    ``fov`` one of :data:`FOVS` (``full`` overrides ``cropped``)."""
    if fov not in FOVS:
        raise ValueError(f"unknown phantom field of view {fov!r}, expected one of {', '.join(FOVS)}")
    q = {k: linear @ np.asarray(v, dtype=np.float64) for k, v in refs.items()}
    y = {k: float(v[1]) for k, v in q.items()}
    anterior = 1.0 if (linear @ np.array([1.0, 0.0]))[0] >= 0 else -1.0

    def u(a: float, b: float) -> float:
        return float(rng.uniform(min(a, b), max(a, b)))

    name = FRAMINGS[int(rng.choice(len(FRAMINGS), p=_P_CROPPED if cropped else _P_TRAIN))]
    if fov == "full":
        name = "cspine"
    xs_spine = [float(q["spine_ant"][0]), float(q["spine_post"][0]), float(q["C1_POST"][0])]
    if name == "cspine":
        top = u(y["vertex"], y["C1"] - 6.0)
        bottom = u(y["C5i"], y["T2"]) if fov == "any" else u(y["T1i"] + 3.0, y["T2"] + 10.0)
        h = bottom - top
        w = h * u(0.72, 1.0)
        cx = 0.5 * (min(xs_spine) + max(xs_spine)) + anterior * u(-0.05, 0.2) * w
    elif name == "ceph":
        top = u(y["vertex"] - 15.0, y["vertex"] + 50.0)
        bottom = u(y["C3c"], y["C5c"])
        back, front = float(q["occiput_back"][0]), float(q["nose"][0])
        lo, hi = min(back, front) - u(5.0, 25.0), max(back, front) + u(5.0, 25.0)
        cx, w = 0.5 * (lo + hi), hi - lo
    else:
        top = u(y["PNS"] - 25.0, y["C1"])
        if name == "neck-portrait":
            bottom = u(y["C3c"], y["T2"])
            w = (bottom - top) * u(0.6, 0.95)
        else:
            bottom = u(y["C3i"], y["C6c"])
            w = (bottom - top) * u(1.2, 1.7)
        cx = 0.5 * (min(xs_spine) + max(xs_spine)) + anterior * u(-0.1, 0.25) * w
    return Frame(name, top, bottom, cx - 0.5 * w, cx + 0.5 * w)


__all__ = ["FOVS", "FRAMINGS", "Frame", "plan_frame"]
