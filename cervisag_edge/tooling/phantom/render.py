"""``render_phantom``: one synthetic lateral cervical spine radiograph with exact labels."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ...io.imaging import window_linear
from ...core.landmarks import NUM_LANDMARKS
from .extras import burn_text, film_mut
from .parts import to_primitive
from .physics import form_image, quantise
from .primitives import Grid, render_all
from .scene import TEXEL_MM, Scene, build_scene, shoulder_chord_mm, stream

logger = logging.getLogger(__name__)

#: Total shoulder soft-tissue path (mm) above which a landmark counts as hidden (flag 1).
SHOULDER_HIDDEN_MM = 60.0
COARSE_MM = 1.0


@dataclass(frozen=True)
class Phantom:
    """One rendered phantom. Images are (H, W); landmarks (34, 2) px, pixel-centre convention
    (centre of pixel (row i, col j) at x = j, y = i), in schema order."""

    stored: np.ndarray
    display: np.ndarray
    landmarks_px: np.ndarray
    visibility: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    imager_pixel_spacing_mm: tuple[float, float]
    magnification: float
    photometric: str
    bits_stored: int
    rescale_slope: float
    rescale_intercept: float
    window_center: float
    window_width: float
    variant: str
    seed: int
    index: int
    facing: str = "right"  # direction the patient faces in the image ("right": anterior = +x)
    source_image_distance_mm: float = 1650.0
    source_object_distance_mm: float = 1500.0
    style: str = "train"
    framing: str = "cspine"
    extras: tuple[str, ...] = ()  # what the film carries besides anatomy: dental, necklace, ecg, collar, plate, ear-rods, text, ruler, marker

    @property
    def shape(self) -> tuple[int, int]:
        return self.stored.shape  # type: ignore[return-value]

    def landmarks_mm(self) -> np.ndarray:
        """(34, 2) landmarks in mm (x * column spacing, y * row spacing)."""
        sr, sc = self.pixel_spacing_mm
        return self.landmarks_px * np.array([sc, sr])

    def parameters(self):
        """Ground-truth :class:`~cervisag_edge.core.parameters.SagittalParameters` of the labels."""
        from ...core.parameters import compute_parameters

        return compute_parameters(self.landmarks_mm())


def output_shape(size: tuple[int, int], out_long_side: int | None) -> tuple[int, int]:
    """(H, W) of the render for full ``size`` (W, H) reduced to ``out_long_side``."""
    w, h = size
    if out_long_side is None or out_long_side >= max(w, h):
        return h, w
    if out_long_side < 16:
        raise ValueError(f"out_long_side {out_long_side} too small, expected >= 16")
    k = out_long_side / max(w, h)
    return max(int(round(h * k)), 1), max(int(round(w * k)), 1)


def _marker_mut(scene: Scene, grid: Grid) -> np.ndarray | None:
    if scene.marker is None:
        return None
    letter, x_mm, y_mm, h_mm = scene.marker
    sr, sc = grid.spacing_mm
    hh, ww = grid.shape
    plate = np.zeros((hh, ww), dtype=np.float32)
    # plastic plate with a lead letter
    x0, y0 = x_mm / sc, y_mm / sr
    half = 0.75 * h_mm / sc
    cv2.rectangle(plate, (int(round(x0 - half)), int(round(y0 - half))), (int(round(x0 + half)), int(round(y0 + half))), 0.15, thickness=-1)
    letter_img = np.zeros((hh, ww), dtype=np.uint8)
    scale = (h_mm / sr) / 22.0
    thick = max(1, int(round(scale * 2.5)))
    (tw, th), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.putText(letter_img, letter, (int(round(x0 - tw / 2)), int(round(y0 + th / 2))), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    return plate + letter_img.astype(np.float32) * np.float32(4.0 / 255.0)


def _collimation(scene: Scene, grid: Grid) -> np.ndarray | None:
    left, top, right, bottom = scene.collimation_mm
    if not any((left, top, right, bottom)):
        return None
    sr, sc = grid.spacing_mm
    h, w = grid.shape
    ys = ((np.arange(h, dtype=np.float32) + 0.5) * sr)[:, None]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) * sc)[None, :]
    d = np.minimum(np.minimum(xs - left, (w * sc - right) - xs), np.minimum(ys - top, (h * sr - bottom) - ys))
    inside = np.clip(d / np.float32(grid.pixel_mm) + np.float32(0.5), 0.0, 1.0)
    return (np.float32(1.0) - inside) * np.float32(7.0)


def inside_collimation(scene: Scene, pts_mm: np.ndarray) -> np.ndarray:
    left, top, right, bottom = scene.collimation_mm
    w, h = scene.size_px
    wm, hm = w * scene.spacing_mm, h * scene.spacing_mm
    x, y = pts_mm[:, 0], pts_mm[:, 1]
    return (x >= left) & (x <= wm - right) & (y >= top) & (y <= hm - bottom)


def line_integrals(scene: Scene, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(bone and sharp structures, soft tissue) line-integral maps (H, W) float32 on ``grid``."""
    fine = render_all([to_primitive(p, scene.placement, scene.texture, TEXEL_MM) for p in scene.fine], grid)
    h, w = grid.shape
    sr, sc = grid.spacing_mm
    step = max(COARSE_MM, grid.pixel_mm)
    hc, wc = max(int(np.ceil(h * sr / step)), 2), max(int(np.ceil(w * sc / step)), 2)
    cgrid = Grid((hc, wc), (h * sr / hc, w * sc / wc))
    coarse = render_all([to_primitive(p, scene.placement, None, TEXEL_MM) for p in scene.coarse], cgrid)
    if (hc, wc) != (h, w):
        coarse = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return fine, coarse


def render_scene(scene: Scene, seed: int, index: int, out_long_side: int | None = None) -> Phantom:
    w_full, h_full = scene.size_px
    h, w = output_shape(scene.size_px, out_long_side)
    sp = scene.spacing_mm
    grid = Grid((h, w), (sp * h_full / h, sp * w_full / w))
    fine, coarse = line_integrals(scene, grid)
    mut = fine + coarse
    # air "cavities" (airway, sinuses) subtract tissue; where one pokes out of the body the path
    # length of tissue is zero, never negative
    np.maximum(mut, np.float32(0.0), out=mut)
    for extra in (_marker_mut(scene, grid), _collimation(scene, grid), film_mut(scene.film, grid)):
        if extra is not None:
            mut += extra
    exp = scene.exposure
    resp = form_image(mut, grid, exp, stream(seed, index, "noise"))
    resp = _vendor_processing(resp, scene, stream(seed, index, "process"))
    resp = burn_text(resp, scene.film, grid)
    invert = scene.photometric == "MONOCHROME1"
    stored = quantise(resp, exp.bits_stored, invert)
    slope, intercept = scene.rescale
    values = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    body = (coarse > 0.8)[::4, ::4]
    sample = values[::4, ::4][body] if body.any() else values[::4, ::4].ravel()
    lo, hi = np.percentile(sample, [0.5, 99.7])
    if invert:
        lo, hi = np.percentile(sample, [0.3, 99.5])
    ww = float(max(hi - lo, 2.0))
    wc = float(0.5 * (hi + lo))
    display = window_linear(values, wc, ww)
    if invert:
        display = np.float32(1.0) - display
    sr, sc = grid.spacing_mm
    lm_mm = scene.landmarks_mm
    lm_px = np.column_stack([lm_mm[:, 0] / sc - 0.5, lm_mm[:, 1] / sr - 0.5])
    vis = np.full(NUM_LANDMARKS, 2, dtype=np.int8)
    hidden = shoulder_chord_mm(scene, lm_mm) >= SHOULDER_HIDDEN_MM
    vis[hidden] = 1
    outside = (lm_px[:, 0] < -0.5) | (lm_px[:, 0] > w - 0.5) | (lm_px[:, 1] < -0.5) | (lm_px[:, 1] > h - 0.5) | ~inside_collimation(scene, lm_mm)
    vis[outside] = 0
    return Phantom(
        stored=stored, display=display.astype(np.float32), landmarks_px=lm_px, visibility=vis, pixel_spacing_mm=(sr, sc),
        imager_pixel_spacing_mm=(sr * exp.magnification, sc * exp.magnification), magnification=exp.magnification,
        photometric=scene.photometric, bits_stored=exp.bits_stored, rescale_slope=slope, rescale_intercept=intercept,
        window_center=wc, window_width=ww, variant=scene.variant, seed=int(seed), index=int(index), style=scene.style, framing=scene.framing, extras=scene.extras,
        facing=_facing(scene), source_image_distance_mm=scene.placement.sod_mm * exp.magnification,
        source_object_distance_mm=scene.placement.sod_mm)


#: Share of training-style phantoms that get the random vendor processing of :mod:`.augment`.
P_PROCESSED = 0.6


def _vendor_processing(resp: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Multiscale contrast / unsharp mask / tone curve on the log image (held-out style: the
    held-out family, always; training style: the training ranges in :data:`P_PROCESSED`)."""
    from .augment import HELDOUT, TRAIN, process_display

    held = scene.style == "heldout"
    if not held and rng.random() >= P_PROCESSED:
        return resp
    sub = resp[::4, ::4]
    lo, hi = (float(v) for v in np.percentile(sub, [0.5, 99.5]))
    span = max(hi - lo, 1e-3)
    x = np.clip((resp - np.float32(lo)) * np.float32(1.0 / span), 0.0, 1.0)
    y = process_display(x, rng, HELDOUT if held else TRAIN)
    # what was already saturated (shutters, blockers, metal) stays the brightest: no dark
    # multiscale halo inside an unexposed shutter
    np.copyto(y, np.float32(1.0), where=x >= np.float32(0.999))
    return y * np.float32(span) + np.float32(lo)


def _facing(scene: Scene) -> str:
    anterior = scene.placement.linear @ np.array([1.0, 0.0])
    return "right" if anterior[0] >= 0 else "left"


def render_phantom(seed: int, index: int, *, out_long_side: int | None = None, size: tuple[int, int] | None = None, variant: str | None = None,
                   style: str = "train", fov: str = "any") -> Phantom:
    """Render phantom ``index`` of set ``seed``.

    ``size`` is the full (W, H) in px (None: drawn from the seed, 1500–3000 px per side);
    ``out_long_side`` renders the same phantom directly at a reduced resolution (landmarks and
    spacing scaled exactly); ``variant`` one of :data:`VARIANTS` (None: drawn from the seed);
    ``style`` "train" (default) or "heldout" — a family of anatomy and processing outside every
    training range, never produced by the default; ``fov`` "any" (default: the framing is drawn)
    or "full" (always the whole cervical spine, :mod:`.framing`).
    """
    if size is not None and (len(size) != 2 or min(size) < 16):
        raise ValueError(f"size {size!r} invalid, expected (W, H) with both >= 16 px")
    scene = build_scene(seed, index, None if size is None else (int(size[0]), int(size[1])), variant, style, fov)
    logger.debug("phantom seed=%d index=%d variant=%s size=%s", seed, index, scene.variant, scene.size_px)
    return render_scene(scene, seed, index, out_long_side)
