"""Overlay PNG for the radiologist: landmarks, parameter lines, legend and a disclaimer banner.

The canvas is laid out as::

    +--------------------------------------------+
    |        NOT FOR DIAGNOSTIC USE (banner)      |
    +------------------------------+-------------+
    |  image (resized, annotated)  |   legend    |
    +------------------------------+-------------+

The image is resized so its long side is between :data:`MIN_LONG_SIDE_PX` and
:data:`MAX_LONG_SIDE_PX`; line widths and fonts scale with it. Colours are RGB.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import cv2
import numpy as np

from ..errors import InputError
from ..core.landmarks import LANDMARK_NAMES, landmark_index, vertebra_centroid
from ..core.parameters import BORDEN_WALL

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurement import Measurement

logger = logging.getLogger(__name__)

MAX_LONG_SIDE_PX = 1600
MIN_LONG_SIDE_PX = 900
#: Landmarks below this confidence are drawn hollow.
LOW_CONFIDENCE = 0.5
DISCLAIMER = "NOT FOR DIAGNOSTIC USE"

_FONT = cv2.FONT_HERSHEY_DUPLEX
_TEXT_BG = (18, 18, 18)
_BANNER_BG = (170, 20, 20)
_WHITE = (245, 245, 245)
_GREY = (150, 150, 150)
_HIDDEN = (125, 125, 125)
_C7_LINE = (245, 245, 245)
_ESTIMATED = (255, 190, 60)

#: (parameter key, legend label, unit shown, RGB colour of its lines) in legend order.
LEGEND: tuple[tuple[str, str, str, tuple[int, int, int]], ...] = (
    ("borden_mm", "Borden", "mm", (255, 150, 30)),
    ("cci_percent", "CCI", "%", (255, 225, 40)),
    ("ccl_deg", "CCL", "deg", (255, 90, 110)),
    ("cobb_c0_c7_deg", "Cobb C0-C7", "deg", (225, 95, 255)),
    ("cobb_c1_c7_deg", "Cobb C1-C7", "deg", (90, 230, 110)),
    ("cobb_c2_c7_deg", "Cobb C2-C7", "deg", (70, 200, 255)),
)
_COLOUR = {key: colour for key, _, _, colour in LEGEND}

#: Landmarks each parameter is drawn from; used to explain a missing value.
PARAMETER_LANDMARKS: Mapping[str, tuple[str, ...]] = {
    "borden_mm": ("DENS_PS", "C7_PI") + BORDEN_WALL,
    "cci_percent": ("C2_PI", "C3_PI", "C4_PI", "C5_PI", "C6_PI", "C7_PI"),
    "ccl_deg": tuple(f"{v}_{c}" for v in ("C2", "C3", "C6", "C7") for c in ("AS", "PS", "PI", "AI")),
    "cobb_c0_c7_deg": ("MCG_PNS", "MCG_OCC", "C7_PI", "C7_AI"),
    "cobb_c1_c7_deg": ("C1_ANT", "C1_POST", "C7_PI", "C7_AI"),
    "cobb_c2_c7_deg": ("C2_PI", "C2_AI", "C7_PI", "C7_AI"),
}


@dataclass(frozen=True)
class OverlayLayout:
    """Where things go on the overlay canvas (all in canvas pixels).

    A point (x, y) of the input image lands at ``(image_x0 + x * scale, image_y0 + y * scale)``
    (pixel-centre convention of the package: the centre of pixel (row i, col j) is (x=j, y=i)).
    """

    scale: float
    image_x0: int
    image_y0: int
    image_w_px: int
    image_h_px: int
    banner_h_px: int
    panel_x0: int
    width_px: int
    height_px: int
    thickness_px: int
    font_scale: float

    def to_canvas(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) input-image points -> (N, 2) canvas points."""
        return np.asarray(xy, dtype=np.float64) * self.scale + np.array([self.image_x0, self.image_y0])


def overlay_layout(height_px: int, width_px: int) -> OverlayLayout:
    """The layout for an input image of ``height_px`` × ``width_px``."""
    long_side = max(height_px, width_px)
    target = min(max(long_side, MIN_LONG_SIDE_PX), MAX_LONG_SIDE_PX)
    scale = target / long_side
    img_w = max(1, int(round(width_px * scale)))
    img_h = max(1, int(round(height_px * scale)))
    unit = max(img_w, img_h) / 1600.0
    font_scale = max(0.55, 0.95 * unit)
    thickness = max(1, int(round(3 * unit)))
    banner_h = int(round(52 * max(unit, 0.6)))
    panel_w = _panel_width(font_scale)
    return OverlayLayout(
        scale=scale,
        image_x0=0,
        image_y0=banner_h,
        image_w_px=img_w,
        image_h_px=img_h,
        banner_h_px=banner_h,
        panel_x0=img_w,
        width_px=img_w + panel_w,
        height_px=banner_h + img_h,
        thickness_px=thickness,
        font_scale=font_scale,
    )


def _panel_width(font_scale: float) -> int:
    sample = "Cobb C0-C7  31.6 +/- 10.5 deg (est.)"
    (w, _), _ = cv2.getTextSize(sample, _FONT, font_scale, 1)
    return int(w * 1.25) + int(60 * font_scale)


def render_overlay(display: np.ndarray, measurement: "Measurement") -> np.ndarray:
    """Draw ``measurement`` on ``display``.

    ``display``: (H, W) float32 in [0, 1] (the display image of ``io.read_image``), in the pixel
    grid of the landmarks. Returns (H', W', 3) uint8 RGB, laid out by :func:`overlay_layout`.
    """
    img = np.asarray(display)
    if img.ndim != 2 or img.size == 0:
        raise InputError(f"{measurement.source}: display image has shape {img.shape}, expected (H, W)")
    layout = overlay_layout(*img.shape)
    canvas = np.zeros((layout.height_px, layout.width_px, 3), np.uint8)
    grey = np.clip(np.nan_to_num(img.astype(np.float32), nan=0.0), 0.0, 1.0)
    interp = cv2.INTER_AREA if layout.scale < 1 else cv2.INTER_LINEAR
    grey = cv2.resize(grey, (layout.image_w_px, layout.image_h_px), interpolation=interp)
    grey8 = np.round(grey * 255.0).astype(np.uint8)
    canvas[layout.image_y0 :, layout.image_x0 : layout.image_x0 + layout.image_w_px] = grey8[..., None]

    pts_all = np.array([[lm.x_px, lm.y_px] for lm in measurement.landmarks], dtype=np.float64)
    visible = np.array([bool(lm.visible) for lm in measurement.landmarks])
    pts_vis = pts_all.copy()
    pts_vis[~visible] = np.nan
    canvas_vis = layout.to_canvas(pts_vis)

    _draw_parameter_lines(canvas, canvas_vis, pts_vis, layout)
    estimated = np.array([bool(getattr(lm, "estimated", False)) for lm in measurement.landmarks])
    _draw_landmarks(canvas, layout.to_canvas(pts_all), visible, measurement.confidences(), layout, estimated)
    _draw_vertebra_labels(canvas, canvas_vis, layout)
    _draw_banner(canvas, layout)
    _draw_legend(canvas, measurement, layout)
    return canvas


def save_overlay(path: str | PathLike[str], display: np.ndarray, measurement: "Measurement") -> np.ndarray:
    """Render the overlay and write it as a PNG to ``path``; returns the (H', W', 3) uint8 RGB array."""
    rgb = render_overlay(display, measurement)
    out = Path(path)
    if not cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise InputError(f"{out}: cannot write the overlay PNG (OpenCV imwrite returned False)")
    logger.info("wrote %s", out)
    return rgb


# --------------------------------------------------------------------------- drawing helpers


def _p(pts: np.ndarray, name: str) -> np.ndarray:
    return pts[landmark_index(name)]


def _ok(*points: np.ndarray) -> bool:
    return all(bool(np.all(np.isfinite(p))) for p in points)


def _fixed(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * 16)), int(round(p[1] * 16))


def _line(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    cv2.line(canvas, _fixed(a), _fixed(b), colour, thickness, cv2.LINE_AA, shift=4)


def _extended(a: np.ndarray, b: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    d = (b - a) * fraction
    return a - d, b + d


def _dashed(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    length = float(np.hypot(*(b - a)))
    dash = max(6.0, 5.0 * thickness)
    n = max(1, int(length // (2 * dash)))
    for k in range(n + 1):
        s = min(1.0, 2 * k * dash / max(length, 1e-9))
        e = min(1.0, (2 * k + 1) * dash / max(length, 1e-9))
        if e > s:
            _line(canvas, a + (b - a) * s, a + (b - a) * e, colour, thickness)


def _foot(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    u = (b - a) / float(np.hypot(*(b - a)))
    return a + u * float((q - a) @ u)


def _draw_parameter_lines(canvas: np.ndarray, pts: np.ndarray, pts_img: np.ndarray, layout: OverlayLayout) -> None:
    """Lines of every parameter whose landmarks are visible; ``pts`` in canvas px, ``pts_img`` image px."""
    t = layout.thickness_px
    thin = max(1, t // 2)
    # Borden: chord DENS_PS -> C7_PI and the deepest posterior-body point's perpendicular.
    a, b = _p(pts, "DENS_PS"), _p(pts, "C7_PI")
    if _ok(a, b) and np.hypot(*(b - a)) > 0:
        colour = _COLOUR["borden_mm"]
        _line(canvas, a, b, colour, t)
        candidates = [q for q in (_p(pts, n) for n in BORDEN_WALL) if _ok(q)]
        if candidates:
            u = (b - a) / float(np.hypot(*(b - a)))
            depths = [abs(float((q - a) @ np.array([u[1], -u[0]]))) for q in candidates]
            q = candidates[int(np.argmax(depths))]
            _line(canvas, q, _foot(q, a, b), colour, t)
    # CCI: chord C2_PI -> C7_PI with the perpendiculars from C3..C6 PI.
    a, b = _p(pts, "C2_PI"), _p(pts, "C7_PI")
    if _ok(a, b) and np.hypot(*(b - a)) > 0:
        colour = _COLOUR["cci_percent"]
        _dashed(canvas, a, b, colour, thin)
        for v in ("C3", "C4", "C5", "C6"):
            q = _p(pts, f"{v}_PI")
            if _ok(q):
                _line(canvas, q, _foot(q, a, b), colour, thin)
    # CCL: centroid lines C2->C3 and C6->C7 (extended), centroids of C2..C7 as diamonds.
    cents = {v: layout.to_canvas(vertebra_centroid(pts_img, v)[None])[0] for v in ("C2", "C3", "C4", "C5", "C6", "C7")}
    colour = _COLOUR["ccl_deg"]
    for upper, lower in (("C2", "C3"), ("C6", "C7")):
        c0, c1 = cents[upper], cents[lower]
        if _ok(c0, c1):
            _line(canvas, *_extended(c0, c1, 0.3), colour, t)
    for c in cents.values():
        if _ok(c):
            r = 2.2 * t + 2
            diamond = np.array([c + (0, -r), c + (r, 0), c + (0, r), c + (-r, 0)])
            cv2.fillPoly(canvas, [np.round(diamond * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
    # Cobb reference lines: McGregor, C1, C2 inferior endplate, C7 inferior endplate.
    for key, (n0, n1) in (
        ("cobb_c0_c7_deg", ("MCG_PNS", "MCG_OCC")),
        ("cobb_c1_c7_deg", ("C1_ANT", "C1_POST")),
        ("cobb_c2_c7_deg", ("C2_AI", "C2_PI")),
    ):
        a, b = _p(pts, n0), _p(pts, n1)
        if _ok(a, b):
            _line(canvas, *_extended(a, b, 0.35), _COLOUR[key], t)
    a, b = _p(pts, "C7_AI"), _p(pts, "C7_PI")
    if _ok(a, b):
        _line(canvas, *_extended(a, b, 0.6), _C7_LINE, t)


def _draw_landmarks(canvas: np.ndarray, pts: np.ndarray, visible: np.ndarray, conf: np.ndarray, layout: OverlayLayout,
                    estimated: np.ndarray | None = None) -> None:
    """Visible confident: filled; visible low-confidence: hollow; estimated: hollow (amber);
    hidden: grey hollow."""
    t = layout.thickness_px
    r = 2.0 * t + 2
    est = np.zeros(len(pts), dtype=bool) if estimated is None else np.asarray(estimated, dtype=bool)
    for name, p, vis, c, e in zip(LANDMARK_NAMES, pts, visible, conf, est):
        if not _ok(p):
            continue
        centre = _fixed(p)
        radius = int(round(r * 16))
        if e and not vis:
            cv2.circle(canvas, centre, radius, (20, 20, 20), t + 2, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, centre, radius, _ESTIMATED, t, cv2.LINE_AA, shift=4)
        elif not vis:
            cv2.circle(canvas, centre, radius, _HIDDEN, max(1, t // 2), cv2.LINE_AA, shift=4)
            _line(canvas, p - r * 0.7, p + r * 0.7, _HIDDEN, max(1, t // 2))
        elif not np.isfinite(c) or c < LOW_CONFIDENCE:
            cv2.circle(canvas, centre, radius, (20, 20, 20), t + 2, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, centre, radius, (255, 60, 60), t, cv2.LINE_AA, shift=4)
        else:
            cv2.circle(canvas, centre, radius + 16 * max(1, t // 2), (20, 20, 20), -1, cv2.LINE_AA, shift=4)
            cv2.circle(canvas, centre, radius, (60, 255, 60), -1, cv2.LINE_AA, shift=4)


def _draw_vertebra_labels(canvas: np.ndarray, pts: np.ndarray, layout: OverlayLayout) -> None:
    """Level names on the anterior side of each vertebral body (the side of the AS/AI corners)."""
    fs = layout.font_scale * 0.75
    for v in ("C2", "C3", "C4", "C5", "C6", "C7", "T1"):
        a_s, p_s, p_i, a_i = (_p(pts, f"{v}_{c}") for c in ("AS", "PS", "PI", "AI"))
        if not _ok(a_s, a_i, p_s, p_i):
            continue
        anterior = (a_s + a_i) / 2
        posterior = (p_s + p_i) / 2
        d = anterior - posterior
        anchor = anterior + d * 0.55
        (w, h), _ = cv2.getTextSize(v, _FONT, fs, 1)
        org = (int(anchor[0] - w / 2), int(anchor[1] + h / 2))
        _text(canvas, v, org, fs, _WHITE, pad=3)


def _text(canvas: np.ndarray, text: str, org: tuple[int, int], fs: float, colour: tuple[int, int, int], pad: int = 4) -> int:
    """Text with a dark box behind it; ``org`` is the baseline-left. Returns the text width."""
    thick = max(1, int(round(fs * 1.6)))
    (w, h), base = cv2.getTextSize(text, _FONT, fs, thick)
    x, y = org
    x0, y0 = max(0, x - pad), max(0, y - h - pad)
    x1, y1 = min(canvas.shape[1] - 1, x + w + pad), min(canvas.shape[0] - 1, y + base + pad)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), _TEXT_BG, -1)
    cv2.putText(canvas, text, (x, y), _FONT, fs, colour, thick, cv2.LINE_AA)
    return w


def _draw_banner(canvas: np.ndarray, layout: OverlayLayout) -> None:
    canvas[: layout.banner_h_px] = _BANNER_BG
    fs = layout.banner_h_px / 52.0 * 1.05
    thick = max(1, int(round(fs * 2.2)))
    (w, h), _ = cv2.getTextSize(DISCLAIMER, _FONT, fs, thick)
    x = max(4, (layout.width_px - w) // 2)
    y = (layout.banner_h_px + h) // 2
    cv2.putText(canvas, DISCLAIMER, (x, y), _FONT, fs, _WHITE, thick, cv2.LINE_AA)


def format_value(value: float | None, unit: str, interval: Mapping[str, object] | None = None) -> str:
    """``value`` to one decimal with its unit (``"7.5 mm"``, ``"18.3 %"``); with a 95 % interval
    ``{"low", "high", "estimated"}`` also ± its half-width and ``(est.)`` when estimated
    (``"31.6 +/- 6.6 deg (est.)"``; OpenCV fonts have no ±)."""
    if not interval or interval.get("low") is None or interval.get("high") is None:
        return f"{value:.1f} {unit}"
    half = 0.5 * (float(interval["high"]) - float(interval["low"]))  # type: ignore[arg-type]
    return f"{value:.1f} +/- {half:.1f} {unit}" + (" (est.)" if interval.get("estimated") else "")


def unavailable_reason(measurement: "Measurement", key: str) -> str:
    """Why parameter ``key`` has no value, in a few words (``"C7 hidden"``, ``"no pixel spacing"``)."""
    params = measurement.parameters
    names: Sequence[str] = tuple(getattr(params, "unavailable", {}).get(key, ()) or ())
    if not names:
        missing = set(getattr(params, "missing", ()))
        hidden = {lm.name for lm in measurement.landmarks if not lm.visible}
        names = [n for n in PARAMETER_LANDMARKS.get(key, ()) if n in missing or n in hidden]
    if names:
        groups: list[str] = []
        for n in names:
            g = n.split("_")[0]
            if g not in groups:
                groups.append(g)
        return ", ".join(groups[:3]) + (" ..." if len(groups) > 3 else "") + " hidden"
    if key.endswith("_mm") and measurement.pixel_spacing_mm is None:
        return "no pixel spacing"
    return "not measurable"


def _draw_legend(canvas: np.ndarray, measurement: "Measurement", layout: OverlayLayout) -> None:
    x0 = layout.panel_x0
    canvas[layout.image_y0 :, x0:] = (28, 28, 32)
    fs = layout.font_scale
    line_h = int(round(44 * fs))
    pad = int(round(18 * fs))
    y = layout.image_y0 + pad + int(30 * fs)
    _text(canvas, "Cervical sagittal alignment", (x0 + pad, y), fs * 0.9, _WHITE, pad=0)
    y += int(line_h * 1.2)
    values = measurement.parameters.as_dict()
    swatch = int(round(26 * fs))
    for key, label, unit, colour in LEGEND:
        value = values.get(key)
        cv2.rectangle(canvas, (x0 + pad, y - swatch), (x0 + pad + swatch, y), colour, -1)
        tx = x0 + pad + swatch + pad // 2
        _text(canvas, label, (tx, y), fs, _WHITE, pad=0)
        vx = tx + cv2.getTextSize("Cobb C0-C7 ", _FONT, fs, 1)[0][0]
        if value is None or not np.isfinite(value):
            _text(canvas, f"n/a ({unavailable_reason(measurement, key)})", (vx, y), fs * 0.85, _GREY, pad=0)
        else:
            iv = getattr(measurement, "parameter_intervals", {}).get(key)
            _text(canvas, format_value(float(value), unit, iv), (vx, y), fs, colour, pad=0)
        y += line_h
    y += line_h // 2
    small = fs * 0.62
    small_h = int(round(30 * fs))
    spacing = measurement.pixel_spacing_mm
    notes = [
        (_C7_LINE, "white line: C7 inferior endplate"),
        ((60, 255, 60), "filled dot: landmark"),
        ((255, 60, 60), f"red ring: confidence < {LOW_CONFIDENCE:g}"),
        (_HIDDEN, "grey ring: hidden landmark"),
        (_ESTIMATED, "amber ring: estimated landmark"),
        (_WHITE, "value +/- half of the 95 % interval"),
        (_WHITE, f"spacing: {spacing[1]:.3f} mm ({measurement.spacing_source})" if spacing else "spacing: unknown"),
        (_WHITE, f"model: {measurement.model_id} ({measurement.backend}, {measurement.precision})"),
        (_WHITE, f"file: {Path(measurement.source).name}"),
    ]
    from ..version import __version__

    notes.append((_WHITE, f"cervisag-edge {__version__}"))
    for colour, note in notes:
        if y > layout.height_px - 4:
            break
        _text(canvas, note, (x0 + pad, y), small, colour, pad=0)
        y += small_h
