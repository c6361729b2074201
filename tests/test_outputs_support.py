"""Shared builders for the output tests: a plausible lordotic cervical spine as a Measurement.

The spine is built in millimetres (patient facing image-left: anterior = smaller x) and
converted to pixels at 0.15 mm. No tests live here.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from cervisag_edge.core.landmarks import LANDMARK_NAMES, NUM_LANDMARKS, VERTEBRAE, landmark_index
from cervisag_edge.core.measurement import Landmark, Measurement
from cervisag_edge.core.parameters import compute_parameters

SPACING_MM = 0.15
IMAGE_W_PX, IMAGE_H_PX = 1400, 1800


def spine_landmarks_mm(curvature_per_mm: float = 0.004) -> np.ndarray:
    """(34, 2) landmarks in mm of a lordotic cervical spine (apex anterior at C4/C5).

    Body centres lie on the parabola x = 95 + k (y - y_mid)^2 (k = ``curvature_per_mm``);
    endplates are perpendicular to the local tangent, so the endplate tilt is atan(2 k (y - y_mid)).
    """
    pts = np.full((NUM_LANDMARKS, 2), np.nan)
    y_centres = 95.0 + 17.5 * np.arange(len(VERTEBRAE))
    y_mid = float(y_centres[3])
    for v, yc in zip(VERTEBRAE, y_centres):
        xc = 95.0 + curvature_per_mm * (yc - y_mid) ** 2
        slope = 2.0 * curvature_per_mm * (yc - y_mid)  # dx/dy of the centre line
        tangent = np.array([slope, 1.0]) / np.hypot(slope, 1.0)  # caudal direction
        across = np.array([1.0, -slope]) / np.hypot(slope, 1.0)  # anterior -> posterior
        half_w, half_h = 8.0, (9.0 if v == "C2" else 6.5)
        c = np.array([xc, yc])
        corners = {
            "AS": c - half_w * across - half_h * tangent,
            "PS": c + half_w * across - half_h * tangent,
            "PI": c + half_w * across + half_h * tangent,
            "AI": c - half_w * across + half_h * tangent,
        }
        for corner, xy in corners.items():
            pts[landmark_index(f"{v}_{corner}")] = xy
    c2_ps = pts[landmark_index("C2_PS")]
    c2_as = pts[landmark_index("C2_AS")]
    pts[landmark_index("DENS_TIP")] = (c2_as + c2_ps) / 2 + np.array([1.0, -15.0])
    pts[landmark_index("DENS_PS")] = c2_ps + np.array([-2.0, -11.0])
    pts[landmark_index("C1_ANT")] = c2_as + np.array([-6.0, -12.0])
    pts[landmark_index("C1_POST")] = c2_ps + np.array([32.0, -10.0])
    pts[landmark_index("MCG_PNS")] = c2_as + np.array([-22.0, -32.0])
    pts[landmark_index("MCG_OCC")] = c2_ps + np.array([38.0, -27.0])
    return pts


def parameters_for(landmarks_mm: np.ndarray):
    """The real ``compute_parameters`` of the (34, 2) mm landmarks."""
    return compute_parameters(landmarks_mm)


def make_measurement(
    hidden: tuple[str, ...] = (),
    low_confidence: tuple[str, ...] = (),
    spacing_mm: float | None = SPACING_MM,
    parameters=None,
) -> Measurement:
    """A Measurement of the synthetic spine; ``hidden`` landmarks are invisible (NaN in mm)."""
    pts_mm = spine_landmarks_mm()
    pts_px = pts_mm / SPACING_MM
    params_mm = pts_mm.copy()
    for name in hidden:
        params_mm[landmark_index(name)] = np.nan
    landmarks = []
    for name, (x_px, y_px) in zip(LANDMARK_NAMES, pts_px):
        visible = name not in hidden
        have_mm = spacing_mm is not None and visible
        landmarks.append(
            Landmark(
                name=name,
                x_px=float(x_px),
                y_px=float(y_px),
                x_mm=float(x_px * spacing_mm) if have_mm else None,
                y_mm=float(y_px * spacing_mm) if have_mm else None,
                confidence=0.2 if name in low_confidence or name in hidden else 0.93,
                visible=visible,
            )
        )
    return Measurement(
        source="synthetic_spine.dcm",
        landmarks=tuple(landmarks),
        parameters=parameters if parameters is not None else _parameters(params_mm, spacing_mm),
        pixel_spacing_mm=(spacing_mm, spacing_mm) if spacing_mm is not None else None,
        spacing_source="PixelSpacing" if spacing_mm is not None else "none",
        image_size_px=(IMAGE_W_PX, IMAGE_H_PX),
        model_id="cervisag_hrnet_w32",
        model_sha256="0" * 64,
        backend="onnxruntime-cpu",
        precision="fp32",
        timings_ms={"read": 12.5, "infer": 80.25, "total": 101.0},
    )


def _parameters(landmarks_mm: np.ndarray, spacing_mm: float | None):
    params = compute_parameters(landmarks_mm)
    return params if spacing_mm is not None else params.without_lengths()


def with_parameters(measurement: Measurement, parameters) -> Measurement:
    return replace(measurement, parameters=parameters)


def synthetic_display(width: int = IMAGE_W_PX, height: int = IMAGE_H_PX) -> np.ndarray:
    """(H, W) float32 [0, 1] radiograph-like image: dark background, bright vertebral bodies."""
    img = np.full((height, width), 0.12, np.float32)
    pts_px = spine_landmarks_mm() / SPACING_MM
    scale_x, scale_y = width / IMAGE_W_PX, height / IMAGE_H_PX
    pts_px = pts_px * np.array([scale_x, scale_y])
    cv2.ellipse(img, (int(width * 0.3), int(height * 0.1)), (int(width * 0.35), int(height * 0.2)), 0, 0, 360, 0.35, -1)
    for v in VERTEBRAE:
        quad = np.stack([pts_px[landmark_index(f"{v}_{c}")] for c in ("AS", "PS", "PI", "AI")])
        cv2.fillPoly(img, [np.round(quad).astype(np.int32)], 0.75)
    return cv2.GaussianBlur(img, (0, 0), 3.0)
