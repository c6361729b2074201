"""The second (coarse-to-fine) stage: vertebra corners refined on aligned crops of the full-resolution study.

Shape legend: K = 34 landmarks; landmarks (K, 2) px of the original image, visible (K,) bool;
V ≤ 7 vertebrae refined (C2..T1, manifest ``refine.levels``); crops (V, 1, S, S) float32
normalised, S = ``refine.crop.size``; heatmaps (V, 4, h, w) with h = w = S / ``refine.heatmap_stride``.

For each vertebra with at least three visible corners (a level the chain left out, or one whose
corners fall below the confidence threshold, is never refined) the crop frame is built from the
stage-1 corners (:func:`cervisag_edge.engine.crop.vertebra_frame`; a missing fourth corner is
completed as a parallelogram for the frame only). One batched inference call runs every crop;
each heatmap is decoded with the stage's own UDP/DARK codec and mapped back through the inverse
affine. Only visible corners move, and only when the stage-2 peak is at least
``min_confidence`` and the move is under ``max_shift`` × the vertebra size (otherwise the
stage-1 position is kept: the crop probably caught a neighbour). Visibility and confidence
stay stage 1's. Coarse-to-fine refinement of this kind follows Zhong et al., "An attention-guided
deep regression model for landmark detection in cephalograms" (MICCAI 2019, arXiv:1906.07549)
and the ISBI 2015 cephalometric challenge winners (Lindner & Cootes; Ibragimov et al.).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..core.landmarks import vertebra_corner_indices
from .backends.base import Backend
from .codec import UDPHeatmapCodec
from .crop import CropGeometry, WindowSource, apply_affine, crop_display, frame_affine, invert_affine, vertebra_frame
from .manifest import ModelManifest
from .preprocess import normalize


@dataclass(frozen=True)
class RefineResult:
    """Refined landmarks (K, 2) px, which moved (K,) bool, timings in ms, levels cropped."""

    landmarks_px: np.ndarray
    refined: np.ndarray
    crop_ms: float
    inference_ms: float
    decode_ms: float
    levels: tuple[str, ...]


def _frame_corners(corners: np.ndarray, visible: np.ndarray) -> np.ndarray | None:
    """(4, 2) corners for the frame: all four, or three visible ones plus the parallelogram fourth."""
    n = int(visible.sum())
    if n == 4:
        return corners
    if n != 3:
        return None
    out = corners.copy()
    j = int(np.flatnonzero(~visible)[0])
    # AS, PS, PI, AI in order round the quadrilateral: the missing one = previous + next - opposite
    out[j] = corners[(j - 1) % 4] + corners[(j + 1) % 4] - corners[(j + 2) % 4]
    return out


class Refiner:
    """Stage 2 on an activated :class:`Backend` built from the ``refine`` stage manifest."""

    def __init__(self, manifest: ModelManifest, backend: Backend, *, min_confidence: float = 0.2, max_shift: float = 0.3) -> None:
        if not manifest.crop:
            raise ValueError(f"{manifest.name}: not a refinement stage manifest (no crop geometry)")
        self.manifest = manifest
        self.backend = backend
        self.geometry = CropGeometry.from_manifest(manifest.crop)
        self.codec = UDPHeatmapCodec.from_manifest(manifest.codec)
        self.levels = tuple(manifest.levels)
        self.rows = tuple(vertebra_corner_indices(v) for v in self.levels)
        self.min_confidence = float(min_confidence)
        self.max_shift = float(max_shift)

    def crops(self, display: "np.ndarray | WindowSource", landmarks_px: np.ndarray, visible: np.ndarray
              ) -> tuple[np.ndarray, list[np.ndarray], list[int], list[float]]:
        """(V, 1, S, S) normalised crops, their image→crop affines, level indices and vertebra sizes px.
        ``display``: the (H, W) full-resolution display, or a :class:`~.crop.WindowSource` (a
        :class:`~cervisag_edge.io.LoadedImage`: only the cropped windows are converted)."""
        S = self.geometry.size_px
        xs, Ms, which, sizes = [], [], [], []
        for li, rows in enumerate(self.rows):
            r = list(rows)
            corners = _frame_corners(np.asarray(landmarks_px[r], dtype=np.float64), np.asarray(visible[r], dtype=bool))
            if corners is None:
                continue
            fr = vertebra_frame(corners, self.geometry.factor)
            if fr is None:
                continue
            M = frame_affine(fr, S)
            xs.append(normalize(crop_display(display, M, S, self.manifest.pad_value), self.manifest.mean, self.manifest.std))
            Ms.append(M)
            which.append(li)
            sizes.append(fr.side_px / self.geometry.factor)
        batch = np.stack(xs)[:, None].astype(np.float32) if xs else np.zeros((0, 1, S, S), np.float32)
        return batch, Ms, which, sizes

    def refine(self, display: "np.ndarray | WindowSource", landmarks_px: np.ndarray, visible: np.ndarray) -> RefineResult:
        """Refine the visible vertebra corners of (K, 2) ``landmarks_px`` on the (H, W) ``display``
        (or a :class:`~.crop.WindowSource`, see :meth:`crops`)."""
        t0 = time.perf_counter()
        pts = np.array(landmarks_px, dtype=np.float64, copy=True)
        vis = np.asarray(visible, dtype=bool)
        batch, Ms, which, sizes = self.crops(display, pts, vis)
        t1 = time.perf_counter()
        moved = np.zeros(len(pts), dtype=bool)
        if not which:
            return RefineResult(pts, moved, (t1 - t0) * 1000.0, 0.0, 0.0, ())
        mb = self.backend.max_batch or len(which)
        parts, inf_ms = [], 0.0
        for s in range(0, len(which), mb):
            hm, ms = self.backend.infer_timed(np.ascontiguousarray(batch[s : s + mb]))
            parts.append(hm)
            inf_ms += ms
        heatmaps = np.concatenate(parts, axis=0)
        t2 = time.perf_counter()
        crop_pts, conf = self.codec.decode(heatmaps)  # (V, 4, 2) crop px, (V, 4)
        for v, (li, M, size) in enumerate(zip(which, Ms, sizes)):
            r = list(self.rows[li])
            new = apply_affine(invert_affine(M), crop_pts[v])
            shift = np.hypot(*(new - pts[r]).T)
            ok = vis[r] & (conf[v] >= self.min_confidence) & (shift <= self.max_shift * size) & np.all(np.isfinite(new), axis=1)
            idx = np.asarray(r)[ok]
            pts[idx] = new[ok]
            moved[idx] = True
        t3 = time.perf_counter()
        return RefineResult(pts, moved, (t1 - t0) * 1000.0, inf_ms, (t3 - t2) * 1000.0,
                            tuple(self.levels[li] for li in which))
