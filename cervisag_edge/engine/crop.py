"""Vertebra-aligned crops for the second (refinement) stage. Pure numpy + OpenCV, array in, array out.

Shape legend: display image (H, W) float32 in [0, 1] (bone bright); corners (4, 2) px, columns
(x, y), rows in the schema's corner order AS, PS, PI, AI (:data:`core.landmarks.CORNERS`);
a crop (S, S) float32 with S = ``CropGeometry.size_px``; an affine (2, 3) float64 mapping
image px to crop px. Pixel centres sit at integer coordinates in both grids (the convention of
``engine/preprocess.py`` and of ``cv2.warpAffine``).

The crop frame of one vertebra (alignment ``"endplates"``):

- centre ``c`` = the mean of the four corners;
- anterior axis ``a`` = the unit vector of ``(AS − PS) + (AI − PI)`` (the mean endplate direction,
  posterior → anterior); it becomes the crop's +x;
- caudal axis ``d`` = the unit vector perpendicular to ``a`` on the side of the inferior corners;
  it becomes the crop's +y;
- side ``L`` = ``factor`` × the vertebra size, the mean length of the four sides of the corner
  quadrilateral (scale-relative: no pixel spacing needed).

With ``R = [a d]`` (2 × 2, columns a and d; det −1 for a film facing left, so a mirrored film
gives the same crop as an unmirrored one) and ``k = S / L`` crop px per image px::

    crop = c0 + k · Rᵀ (img − c),      img = c + (1 / k) · R (crop − c0),      c0 = (S − 1) / 2

so the anterior side is always on the crop's right and the superior endplate on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import cv2
import numpy as np

#: Alignments a crop geometry may name (manifest field ``crop.alignment``).
ALIGNMENTS = ("endplates",)


@dataclass(frozen=True)
class CropGeometry:
    """How stage 2 cuts its input: ``size_px`` S (square), side = ``factor`` × vertebra size."""

    size_px: int = 128
    factor: float = 2.0
    alignment: str = "endplates"

    def __post_init__(self) -> None:
        if self.size_px < 8:
            raise ValueError(f"crop size_px {self.size_px} too small, expected >= 8")
        if not self.factor > 0:
            raise ValueError(f"crop factor {self.factor!r} must be > 0")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"crop alignment {self.alignment!r} is not supported; expected one of {', '.join(ALIGNMENTS)}")

    def to_manifest(self) -> dict[str, Any]:
        return {"size": int(self.size_px), "factor": float(self.factor), "alignment": self.alignment}

    @classmethod
    def from_manifest(cls, crop: Mapping[str, Any]) -> "CropGeometry":
        return cls(size_px=int(crop["size"]), factor=float(crop["factor"]), alignment=str(crop.get("alignment", "endplates")))


@dataclass(frozen=True)
class VertebraFrame:
    """One vertebra's crop frame: centre (2,) px, rotation R (2, 2) with columns (a, d), side px."""

    centre_px: np.ndarray
    rotation: np.ndarray
    side_px: float


def vertebra_frame(corners_px: np.ndarray, factor: float) -> VertebraFrame | None:
    """The crop frame of a vertebra from its (4, 2) corners (AS, PS, PI, AI); None when degenerate.

    Degenerate: a non-finite corner, or corners so close that no direction is defined.
    """
    c = np.asarray(corners_px, dtype=np.float64)
    if c.shape != (4, 2):
        raise ValueError(f"corners must have shape (4, 2), got {c.shape}")
    if not np.all(np.isfinite(c)):
        return None
    AS, PS, PI, AI = c
    sides = [np.hypot(*(AS - PS)), np.hypot(*(PS - PI)), np.hypot(*(PI - AI)), np.hypot(*(AI - AS))]
    size = float(np.mean(sides))
    a = (AS - PS) + (AI - PI)
    na = float(np.hypot(*a))
    if size < 1e-3 or na < 1e-3 * size:
        return None
    a = a / na
    down = (PI + AI) - (PS + AS)
    d = np.array([-a[1], a[0]])
    side = float(np.dot(down, d))
    if abs(side) < 1e-3 * size:
        return None
    if side < 0:
        d = -d
    return VertebraFrame(c.mean(axis=0), np.stack([a, d], axis=1), factor * size)


def frame_affine(frame: VertebraFrame, size_px: int) -> np.ndarray:
    """(2, 3) affine mapping image px to crop px (see the module docstring)."""
    k = size_px / frame.side_px
    c0 = (size_px - 1) / 2.0
    A = k * frame.rotation.T
    return np.concatenate([A, (np.array([c0, c0]) - A @ frame.centre_px)[:, None]], axis=1)


def invert_affine(M: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine, as (2, 3)."""
    A = np.asarray(M, dtype=np.float64)[:, :2]
    Ai = np.linalg.inv(A)
    return np.concatenate([Ai, (-Ai @ np.asarray(M, dtype=np.float64)[:, 2])[:, None]], axis=1)


def apply_affine(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(…, 2) points through a (2, 3) affine → (…, 2)."""
    p = np.asarray(pts, dtype=np.float64)
    return p @ np.asarray(M, dtype=np.float64)[:, :2].T + np.asarray(M, dtype=np.float64)[:, 2]


class WindowSource(Protocol):
    """An image that gives out windows of its display without building all of it
    (:class:`cervisag_edge.io.LoadedImage`): ``size_px`` (W, H) and ``region(x0, y0, x1, y1)``,
    the (y1 − y0, x1 − x0) float32 display of that window (equal to ``display[y0:y1, x0:x1]``)."""

    size_px: tuple[int, int]

    def region(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray: ...


def crop_display(display: "np.ndarray | WindowSource", M: np.ndarray, size_px: int, pad_value: float = 0.0) -> np.ndarray:
    """Cut the (S, S) crop of ``display`` (H, W) float32 given by the image→crop affine ``M`` (2, 3).

    Bilinear sampling; where the crop shrinks the image (|det M| < 1) the source region is first
    smoothed with a Gaussian of σ = 0.45 / scale source px (anti-aliasing, as in training's
    letterbox warp). Only the window the crop samples is read (plus the smoothing margin), so a
    :class:`WindowSource` (a study whose full-resolution display was never built) converts only
    that window. Outside the image: ``pad_value``.
    """
    if isinstance(display, np.ndarray) or not hasattr(display, "region"):
        img = np.asarray(display, dtype=np.float32)
        if img.ndim != 2:
            raise ValueError(f"display must have shape (H, W), got {img.shape}")
        H, W = img.shape
        read = lambda x0, y0, x1, y1: img[y0:y1, x0:x1]  # noqa: E731
    else:
        W, H = display.size_px
        read = display.region
    M = np.asarray(M, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))  # crop px per image px
    sigma = 0.45 / scale if scale < 0.8 else 0.0
    s1 = size_px - 1
    box = apply_affine(invert_affine(M), np.array([[0, 0], [s1, 0], [0, s1], [s1, s1]], dtype=np.float64))
    m = int(np.ceil(3 * sigma)) + 2
    x0 = int(np.clip(np.floor(box[:, 0].min()) - m, 0, W))
    x1 = int(np.clip(np.ceil(box[:, 0].max()) + m + 1, 0, W))
    y0 = int(np.clip(np.floor(box[:, 1].min()) - m, 0, H))
    y1 = int(np.clip(np.ceil(box[:, 1].max()) + m + 1, 0, H))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.full((size_px, size_px), pad_value, dtype=np.float32)
    roi = np.asarray(read(x0, y0, x1, y1), dtype=np.float32)
    if sigma > 0:
        roi = cv2.GaussianBlur(roi, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    M = M.copy()
    M[:, 2] += M[:, :2] @ np.array([x0, y0], dtype=np.float64)
    return cv2.warpAffine(roi, M, (size_px, size_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=float(pad_value))
