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
