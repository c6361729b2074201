"""Hypothesis property tests: the six parameters do not depend on the facing, the position or
the in-plane rotation of the neck; uniform scaling leaves angles and CCI and scales Borden."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cervisag_edge.core.landmarks import LANDMARK_NAMES, VERTEBRAE, landmark_index
from cervisag_edge.core.parameters import PARAMETER_NAMES, SEGMENTS, compute_parameters

ANGLES = [n for n in PARAMETER_NAMES if n.endswith("_deg")] + ["cci_percent"]


def _template() -> np.ndarray:
    """A lordotic neck facing right: the posterior wall on a circle of radius 220 mm centred
    posteriorly, corners on radial endplates, bodies 14 mm high and 16 mm deep, discs 5 mm."""
    r, centre = 220.0, np.array([-100.0, 160.0])

    def at(s_mm: float, depth_mm: float) -> np.ndarray:
        phi = -0.45 + s_mm / r
        return centre + (r + depth_mm) * np.array([math.cos(phi), math.sin(phi)])

    pts = np.zeros((len(LANDMARK_NAMES), 2))
    for name, s, depth in (("MCG_OCC", 0, 0), ("MCG_PNS", 0, 45), ("C1_POST", 12, 0), ("C1_ANT", 12, 30),
                           ("DENS_TIP", 14, 8), ("DENS_PS", 20, 0)):
        pts[landmark_index(name)] = at(s, depth)
    for k, v in enumerate(VERTEBRAE):
        top = 24 + 19 * k
        for corner, s, depth in (("AS", top, 16), ("PS", top, 0), ("PI", top + 14, 0), ("AI", top + 14, 16)):
            pts[landmark_index(f"{v}_{corner}")] = at(s, depth)
    return pts


TEMPLATE = _template()
noise = arrays(np.float64, TEMPLATE.shape, elements=st.floats(-0.8, 0.8, allow_nan=False))


def _six(pts: np.ndarray) -> np.ndarray:
    p = compute_parameters(pts)
    return np.array([getattr(p, n) for n in PARAMETER_NAMES], dtype=float)


def test_template_is_lordotic() -> None:
    p = compute_parameters(TEMPLATE)
    assert p.facing == "right"
    assert all(getattr(p, n) > 0 for n in PARAMETER_NAMES)


@settings(max_examples=60, deadline=None)
@given(noise)
def test_mirror_invariance(eps: np.ndarray) -> None:
    pts = TEMPLATE + eps
    mirrored = pts * np.array([-1.0, 1.0])
    assert compute_parameters(mirrored).facing == "left"
    np.testing.assert_allclose(_six(mirrored), _six(pts), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(noise, st.floats(-35.0, 35.0), st.floats(-500.0, 500.0), st.floats(-500.0, 500.0), st.booleans())
def test_rigid_motion_invariance(eps: np.ndarray, angle_deg: float, tx: float, ty: float, mirror: bool) -> None:
    pts = TEMPLATE + eps
    if mirror:
        pts = pts * np.array([-1.0, 1.0])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    moved = pts @ rot.T + np.array([tx, ty])
    before, after = compute_parameters(pts), compute_parameters(moved)
    np.testing.assert_allclose(_six(moved), _six(pts), rtol=1e-9, atol=1e-9)
    # Segmental and O–C2 angles are differences of tilts too; slopes turn with the image.
    for seg in SEGMENTS:
        assert after.segmental_deg[seg] == pytest.approx(before.segmental_deg[seg], abs=1e-9)
    assert after.o_c2_deg == pytest.approx(before.o_c2_deg, abs=1e-9)
    # A clockwise-on-screen turn (+angle, y down) tilts a right-facing neck's endplates by +angle;
    # a left-facing one is mirrored before measuring, so its slopes turn by −angle.
    turn = -angle_deg if mirror else angle_deg
    assert after.c7_slope_deg == pytest.approx(before.c7_slope_deg + turn, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(noise, st.floats(0.05, 20.0))
def test_uniform_scale(eps: np.ndarray, factor: float) -> None:
    pts = TEMPLATE + eps
    before, after = compute_parameters(pts), compute_parameters(pts * factor)
    for n in ANGLES:
        assert getattr(after, n) == pytest.approx(getattr(before, n), rel=1e-9, abs=1e-9), n
    assert after.borden_mm == pytest.approx(factor * before.borden_mm, rel=1e-9)
    assert after.sva_c2_c7_mm == pytest.approx(factor * before.sva_c2_c7_mm, rel=1e-9)
    assert after.anterior_height_mm["C4"] == pytest.approx(factor * before.anterior_height_mm["C4"], rel=1e-9)
