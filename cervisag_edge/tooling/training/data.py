"""Training data: phantom or COCO sources, augmentation, heatmap targets (numpy + OpenCV).

Shape legend: K = 34 landmarks; display images (H, W) float32 in [0, 1]; model input
(H_in, W_in); landmarks (K, 2) px in the pixel-centre convention; visibility (K,) COCO flags.

Every sample goes through the runtime's own letterbox transform (``preprocess``) composed
with a random affine, so training and inference see the same geometry.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ...engine.codec import UDPHeatmapCodec
from ...core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS
from ...engine.preprocess import letterbox_geometry, normalize

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One labelled image at training resolution. ``spacing_mm`` is (row, col) or None."""

    display: np.ndarray
    landmarks_px: np.ndarray
    visibility: np.ndarray
    spacing_mm: tuple[float, float] | None
    key: str


class PhantomSource:
    """Phantoms rendered on the fly at ``long_side`` px and cached on disk as 16-bit PNG + JSON."""

    def __init__(self, seed: int, count: int, long_side: int, cache_dir: str | Path | None = None, start: int = 0) -> None:
        self.seed, self.count, self.long_side, self.start = int(seed), int(count), int(long_side), int(start)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Sample:
        index = self.start + int(i)
        key = f"s{self.seed}_i{index}_L{self.long_side}"
        if self.cache_dir:
            png, meta = self.cache_dir / f"{key}.png", self.cache_dir / f"{key}.json"
            if png.is_file() and meta.is_file():
                img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                m = json.loads(meta.read_text())
                if img is not None:
                    return Sample(img.astype(np.float32) / 65535.0, np.array(m["landmarks_px"], dtype=np.float64),
                                  np.array(m["visibility"], dtype=np.int64), tuple(m["spacing_mm"]), key)
        from ..phantom import render_phantom

        ph = render_phantom(self.seed, index, out_long_side=self.long_side)
        sample = Sample(np.asarray(ph.display, dtype=np.float32), np.asarray(ph.landmarks_px, dtype=np.float64),
                        np.asarray(ph.visibility, dtype=np.int64), tuple(float(v) for v in ph.pixel_spacing_mm), key)
        if self.cache_dir:
            cv2.imwrite(str(self.cache_dir / f"{key}.png"), np.round(np.clip(sample.display, 0, 1) * 65535).astype(np.uint16))
            (self.cache_dir / f"{key}.json").write_text(json.dumps({
                "landmarks_px": sample.landmarks_px.tolist(), "visibility": sample.visibility.tolist(),
                "spacing_mm": list(sample.spacing_mm)}))
        return sample


class CocoSource:
    """A user's labelled studies in COCO keypoints format (``DIR/annotations.json`` + images).

    Images are read with the runtime reader (DICOM/PNG/JPEG/TIFF), downscaled to ``long_side``
    with INTER_AREA and the labels mapped with the same pixel-centre transform.
    """

    def __init__(self, data_dir: str | Path, long_side: int, indices: Sequence[int] | None = None) -> None:
        self.root = Path(data_dir)
        ann = json.loads((self.root / "annotations.json").read_text())
        cats = ann.get("categories") or [{}]
        names = tuple(cats[0].get("keypoints", LANDMARK_NAMES))
        order = [names.index(n) if n in names else -1 for n in LANDMARK_NAMES]
        by_image: dict[int, dict] = {a["image_id"]: a for a in ann.get("annotations", [])}
        self.items = []
        for im in sorted(ann["images"], key=lambda d: d["id"]):
            a = by_image.get(im["id"])
            if a is None:
                continue
            kp = np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            pts = np.full((NUM_LANDMARKS, 2), np.nan)
            vis = np.zeros(NUM_LANDMARKS, dtype=np.int64)
            for k, j in enumerate(order):
                if j >= 0:
                    pts[k], vis[k] = kp[j, :2], int(kp[j, 2])
            self.items.append((im, pts, vis))
        if indices is not None:
            self.items = [self.items[i] for i in indices]
        self.long_side = int(long_side)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        from ...io import read_image

        im, pts, vis = self.items[i]
        spacing = im.get("pixel_spacing_mm")
        img = read_image(self.root / im["file_name"], pixel_spacing_mm=tuple(spacing) if spacing else None)
        H, W = img.display.shape
        s = self.long_side / max(H, W)
        Wn, Hn = max(1, round(W * s)), max(1, round(H * s))
        small = cv2.resize(img.display, (Wn, Hn), interpolation=cv2.INTER_AREA)
        sx, sy = Wn / W, Hn / H
        pts_s = np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], axis=1)
        sp = img.pixel_spacing_mm
        sp_s = (sp[0] / sy, sp[1] / sx) if sp else None
        return Sample(small, pts_s, vis, sp_s, str(im["file_name"]))


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation. Geometry here; photometry from ``phantom.augment``.

    ``crop_p`` of the samples are cut to a partial field of view first (:func:`random_fov_crop`):
    a film that ends anywhere from C3 to T1, one that starts below the skull, a cephalogram-like
    landscape frame, or a tight neck crop, so that no level is found by where it sits in the frame.
    """

    rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.7, 1.3)
    translate_frac: float = 0.12
    flip_p: float = 0.5
    crop_p: float = 0.4
    photometric_p: float = 0.85
    #: landmark-aware variants (:mod:`cervisag_edge.tooling.phantom.marks`): the C2 synchondrosis
    #: remnant, and annotation tracings left on the film or inpainted away
    synchondrosis_p: float = 0.35
    marks_p: float = 0.35
    gamma_range: tuple[float, float] = (0.7, 1.45)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    brightness: float = 0.08
    noise_max: float = 0.03
    blur_p: float = 0.3
    blur_sigma_max: float = 1.3


#: Landmarks that mark a vertebral level's vertical position in a crop (C2..T1 corner groups).
_LEVEL_ROWS = tuple(range(6, NUM_LANDMARKS, 4))


def random_fov_crop(sample: Sample, rng: np.random.Generator) -> Sample:
    """Cut ``sample`` to a partial field of view; landmarks outside the cut get visibility 0.

    Shapes: ``display`` (H, W) → (h', w'); landmarks (K, 2) shifted by the crop origin (they keep
    telling where a cut-off landmark is); visibility (K,) with 0 outside the new frame.
    Kinds (equally likely): bottom edge between C3 and T1; top edge between the image top and C1
    with the bottom kept; a cephalogram-like landscape frame (skull base and face, spine to C3–C5);
    a tight neck crop (portrait or landscape). Falls back to the full image when the levels are
    not labelled.
    """
    img, pts, vis = sample.display, sample.landmarks_px, sample.visibility
    H, W = img.shape
    with np.errstate(invalid="ignore"):
        ys = np.array([np.nanmean(pts[k : k + 4, 1]) if np.isfinite(pts[k : k + 4, 1]).any() else np.nan for k in _LEVEL_ROWS])
    if not np.all(np.isfinite(ys)) or not np.isfinite(pts[6:, 0]).any():
        return sample
    body = float(np.median(np.abs(np.diff(ys)))) or 0.05 * H
    ys_arr = np.clip(ys, 0.0, float(H))  # C2..T1 centre rows; levels beyond the frame sit at its edge
    x_lo, x_hi = (float(np.clip(v, 0.0, W)) for v in (np.nanmin(pts[6:, 0]), np.nanmax(pts[6:, 0])))

    def _u(a: float, b: float) -> float:  # uniform between two bounds given in either order
        return float(rng.uniform(min(a, b), max(a, b)))

    kind = int(rng.integers(0, 4))
    x0, x1, y0, y1 = 0.0, float(W), 0.0, float(H)
    if kind == 0:  # the film ends somewhere between C3 and T1
        y1 = _u(ys_arr[1] - 0.3 * body, ys_arr[6] + 0.5 * body)
    elif kind == 1:  # the film starts below the skull: top edge between the image top and C1
        c1 = float(np.nanmin(pts[[2, 3, 4], 1])) if np.isfinite(pts[[2, 3, 4], 1]).any() else ys_arr[0]
        y0 = _u(0.0, float(np.clip(c1, 1.0, H)))
    elif kind == 2:  # cephalogram-like: wide frame, spine visible to C3–C5
        y1 = _u(ys_arr[1], ys_arr[3] + 0.5 * body)
        y0 = max(0.0, y1 - _u(0.5, 0.8) * W)
    else:  # tight neck crop, portrait or landscape, around the spine
        span = max(x_hi - x_lo, 0.1 * W)
        cx = 0.5 * (x_lo + x_hi) + _u(-0.5, 0.5) * span
        half_w = _u(1.2, 3.0) * span
        x0, x1 = cx - half_w, cx + half_w
        y0, y1 = _u(0.0, ys_arr[0]), _u(ys_arr[2], H)
    x0, x1 = int(np.clip(round(x0), 0, W - 2)), int(np.clip(round(x1), 0, W))
    y0, y1 = int(np.clip(round(y0), 0, H - 2)), int(np.clip(round(y1), 0, H))
    if x1 - x0 < 0.25 * W or y1 - y0 < 0.2 * H:
        return sample
    new_pts = pts - np.array([x0, y0], dtype=np.float64)
    inside = (np.all(np.isfinite(new_pts), axis=1) & (new_pts[:, 0] >= -0.5) & (new_pts[:, 0] <= x1 - x0 - 0.5)
              & (new_pts[:, 1] >= -0.5) & (new_pts[:, 1] <= y1 - y0 - 0.5))
    return Sample(np.ascontiguousarray(img[y0:y1, x0:x1]), new_pts, np.where(inside, vis, 0), sample.spacing_mm, sample.key)


def sample_affine(src_size: tuple[int, int], input_size: tuple[int, int], rng: np.random.Generator | None,
                  cfg: AugmentConfig) -> np.ndarray:
    """2×3 matrix (pixel-centre convention) = random affine about the centre ∘ runtime letterbox."""
    (W_new, H_new), tf = letterbox_geometry(src_size, input_size)
    # letterbox as affine: x_in = sx*x + (0.5*sx - 0.5 + pad_x)
    L = np.array([[tf.sx, 0, 0.5 * tf.sx - 0.5 + tf.pad_x], [0, tf.sy, 0.5 * tf.sy - 0.5 + tf.pad_y], [0, 0, 1.0]])
    if rng is None:
        return L[:2]
    W_in, H_in = input_size
    cx, cy = (W_in - 1) / 2, (H_in - 1) / 2
    ang = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    s = rng.uniform(*cfg.scale_range)
    tx, ty = rng.uniform(-cfg.translate_frac, cfg.translate_frac, size=2) * np.array([W_in, H_in])
    flip = rng.random() < cfg.flip_p
    F = np.array([[-1.0 if flip else 1.0, 0, (W_in - 1) if flip else 0.0], [0, 1, 0], [0, 0, 1]])
    c, si = math.cos(ang) * s, math.sin(ang) * s
    R = np.array([[c, -si, cx - c * cx + si * cy + tx], [si, c, cy - si * cx - c * cy + ty], [0, 0, 1]])
    return (R @ F @ L)[:2]


def apply_intensity(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Photometric augmentation of a [0, 1] display image (H, W) → (H, W) float32.

    With probability ``cfg.photometric_p`` the shared clinical-processing module
    (:func:`cervisag_edge.tooling.phantom.augment.augment_display`: multiscale contrast, unsharp masking,
    LUTs, inversion, noise, blur, resampling, dropout, exposure) is used; otherwise a mild
    gamma/contrast/blur/noise jitter keeps some clean images in every batch.
    """
    if rng.random() < cfg.photometric_p:
        from ..phantom.augment import augment_display

        return np.clip(augment_display(np.asarray(img, dtype=np.float32), rng), 0.0, 1.0).astype(np.float32)
    out = np.clip(img, 0.0, 1.0) ** rng.uniform(*cfg.gamma_range)
    out = (out - 0.5) * rng.uniform(*cfg.contrast_range) + 0.5 + rng.uniform(-cfg.brightness, cfg.brightness)
    if rng.random() < cfg.blur_p:
        out = cv2.GaussianBlur(out.astype(np.float32), (0, 0), rng.uniform(0.3, cfg.blur_sigma_max))
    sigma = rng.uniform(0, cfg.noise_max)
    if sigma > 0:
        out = out + rng.normal(0, sigma, size=out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def apply_marks(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Landmark-aware variants of a [0, 1] display (H, W) → (H, W) float32: with probability
    ``cfg.synchondrosis_p`` a C2 synchondrosis remnant, with ``cfg.marks_p`` annotation marks
    (:mod:`cervisag_edge.tooling.phantom.marks`). ``pts`` (K, 2) in the image's pixels."""
    from ..phantom.marks import annotation_marks, synchondrosis

    if rng.random() < cfg.synchondrosis_p:
        img = synchondrosis(img, pts, rng)
    if rng.random() < cfg.marks_p:
        img = annotation_marks(img, pts, rng)
    return img


def make_example(sample: Sample, codec: UDPHeatmapCodec, mean: float, std: float, pad_value: float,
                 rng: np.random.Generator | None, cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input (1,H_in,W_in) float32 normalised, target heatmaps (K,h,w), keypoints in input px (K,2))."""
    if rng is not None and rng.random() < cfg.crop_p:
        sample = random_fov_crop(sample, rng)
    H, W = sample.display.shape
    input_size = codec.input_size
    M = sample_affine((W, H), input_size, rng, cfg)
    img = sample.display
    if rng is not None:
        img = apply_marks(img, sample.landmarks_px, rng, cfg)
        img = apply_intensity(img, rng, cfg)
    # anti-alias before a strong downscale so warpAffine (bilinear) matches INTER_AREA statistics
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    if scale < 0.7:
        img = cv2.GaussianBlur(img, (0, 0), 0.45 / scale)
    warped = cv2.warpAffine(img, M, input_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=pad_value)
    pts = sample.landmarks_px @ M[:, :2].T + M[:, 2]
    vis = sample.visibility.copy()
    W_in, H_in = input_size
    finite = np.all(np.isfinite(pts), axis=1)
    inside = finite & (pts[:, 0] >= 0) & (pts[:, 0] <= W_in - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= H_in - 1)
    vis = np.where(inside, vis, 0)
    target = codec.encode(np.where(finite[:, None], pts, 0.0), vis)
    x = normalize(warped, mean, std)[None]
    return x, target, np.where((inside & (vis > 0))[:, None], pts, np.nan)
