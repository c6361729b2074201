"""Small preview images of phantoms (the docs gallery): 8-bit PNG thumbnails, landmarks optional."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .render import Phantom, render_phantom
from .scene import VARIANTS

logger = logging.getLogger(__name__)


def thumbnail(ph: Phantom, draw_landmarks: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 BGR of the display image; landmarks as dots (green visible, orange hidden)."""
    img = cv2.cvtColor(np.rint(np.clip(ph.display, 0.0, 1.0) * 255.0).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if draw_landmarks:
        r = max(1, int(round(max(img.shape) / 200)))
        for (x, y), v in zip(ph.landmarks_px, ph.visibility):
            if v == 0:
                continue
            colour = (60, 220, 60) if v == 2 else (0, 160, 255)
            cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), r * 16, colour, -1, lineType=cv2.LINE_AA, shift=4)
    return img


def write_gallery(out_dir: str | Path, seed: int = 2026, long_side: int = 256, variants: tuple[str, ...] = VARIANTS,
                  with_landmarks: tuple[str, ...] = ("standard", "kyphotic", "high-shoulders", "rotated")) -> list[Path]:
    """One PNG per variant (``<variant>.png``), rendered directly at ``long_side`` px."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, v in enumerate(variants):
        ph = render_phantom(seed, i, out_long_side=long_side, variant=v)
        path = out / f"{v}.png"
        cv2.imwrite(str(path), thumbnail(ph, v in with_landmarks), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        paths.append(path)
    logger.info("wrote %d gallery images to %s", len(paths), out)
    return paths


#: The docs showcase: (file stem, caption, variant, style, wanted framing or None, wanted extra or None, labels).
SHOWCASE: tuple[tuple[str, str, str | None, str, str | None, str | None, bool], ...] = (
    ("cspine-standard", "standard C-spine film (labels)", "standard", "train", "cspine", None, True),
    ("cspine-lordotic", "lordotic", "lordotic", "train", "cspine", None, False),
    ("cspine-kyphotic", "kyphotic (labels)", "kyphotic", "train", "cspine", None, True),
    ("ceph-1", "lateral cephalogram, ear rods", None, "train", "ceph", "ear-rods", False),
    ("ceph-2", "lateral cephalogram, dental work (labels)", None, "train", "ceph", "dental", True),
    ("neck-portrait", "neck-only crop, portrait", None, "train", "neck-portrait", None, False),
    ("neck-landscape", "neck-only crop, landscape (labels)", None, "train", "neck-landscape", None, True),
    ("plate", "anterior plate with screws (labels)", None, "train", None, "plate", True),
    ("necklace", "necklace", None, "train", None, "necklace", False),
    ("ecg", "ECG electrodes and leads", None, "train", None, "ecg", False),
    ("degenerative", "degenerative", "degenerative", "train", "cspine", None, False),
    ("high-shoulders", "high shoulders (labels: orange = hidden, v = 1)", "high-shoulders", "train", "cspine", None, True),
    ("heldout", "held-out style (never in training)", None, "heldout", "cspine", None, False),
)


def _find(seed: int, variant: str | None, style: str, framing: str | None, extra: str | None, start: int) -> int:
    from .scene import build_scene

    for i in range(start, start + 3000):
        sc = build_scene(seed, i, (400, 500), variant, style)
        if (framing is None or sc.framing == framing) and (extra is None or extra in sc.extras):
            return i
    raise ValueError(f"no phantom with framing {framing!r} and extra {extra!r} in 3000 tries")


def write_showcase(out_dir: str | Path, seed: int = 2026, long_side: int = 560, crops: int = 3, crop_px: int = 420) -> list[tuple[Path, str]]:
    """The docs gallery: :data:`SHOWCASE` at ``long_side`` px plus ``crops`` full-resolution
    ``crop_px`` crops around C3 (bone texture at 1:1). JPEG, quality 90. Returns (path, caption)."""
    from ...core.landmarks import landmark_index

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: list[tuple[Path, str]] = []
    for n, (stem, caption, variant, style, framing, extra, labels) in enumerate(SHOWCASE):
        i = _find(seed, variant, style, framing, extra, 100 * n)
        ph = render_phantom(seed, i, out_long_side=long_side, variant=variant, style=style)
        path = out / f"{stem}.jpg"
        cv2.imwrite(str(path), thumbnail(ph, labels), [cv2.IMWRITE_JPEG_QUALITY, 90])
        result.append((path, f"{caption} — seed {seed}, index {i}"))
    for k in range(crops):
        i = _find(seed, "standard", "train", "cspine", None, 5000 + 50 * k)
        ph = render_phantom(seed, i, variant="standard")
        x, y = ph.landmarks_px[landmark_index("C3_AS")]
        h, w = ph.display.shape
        x0 = int(np.clip(x - 0.6 * crop_px, 0, w - crop_px))
        y0 = int(np.clip(y - 0.5 * crop_px, 0, h - crop_px))
        tile = thumbnail(ph)[y0:y0 + crop_px, x0:x0 + crop_px]
        path = out / f"texture-{k + 1}.jpg"
        cv2.imwrite(str(path), tile, [cv2.IMWRITE_JPEG_QUALITY, 92])
        result.append((path, f"full resolution ({ph.pixel_spacing_mm[0]:.3f} mm/px), C2–C4 — seed {seed}, index {i}"))
    logger.info("wrote %d showcase images to %s", len(result), out)
    return result


def write_real_reference(path_dcm: str | Path, out_dir: str | Path, long_side: int = 560, crop_px: int = 420) -> list[Path]:
    """A real radiograph read and windowed by the project reader (as for the phantoms' display),
    written at ``long_side`` px and as a 1:1 ``crop_px`` crop at the top centre (JPEG; on a chest
    film: the lower neck, upper thoracic spine and clavicles)."""
    from ...io import read_image

    img = read_image(path_dcm).display
    h, w = img.shape
    k = long_side / max(h, w)
    small = cv2.resize(img, (max(int(round(w * k)), 1), max(int(round(h * k)), 1)), interpolation=cv2.INTER_AREA)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(path_dcm).stem
    a, b = out / f"real-{stem}.jpg", out / f"real-{stem}-crop.jpg"
    cv2.imwrite(str(a), np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    y0, x0 = int(0.04 * h), max((w - crop_px) // 2, 0)
    cv2.imwrite(str(b), np.rint(np.clip(img[y0:y0 + crop_px, x0:x0 + crop_px], 0, 1) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return [a, b]
