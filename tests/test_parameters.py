"""Hand-computed cases for cervisag_edge.core.parameters.

Synthetic spines are built along a posterior-wall path of piecewise-constant curvature κ
(rad/mm, s in mm growing caudally). The endplates are normal to the path, so the tilt of
the endplate at arc length s is θ(s) = θ0 + ∫κ ds and every Cobb or segmental angle is a
difference of θ values; on a single arc the points lie on circles, which gives closed forms
for the centroid angle, CCI, Borden depth and body heights (derived in each test).
"""
from __future__ import annotations

import math
import pickle
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from cervisag_edge.errors import InputError
from cervisag_edge.core.geometry import wrap_deg
from cervisag_edge.core.landmarks import LANDMARK_NAMES, VERTEBRAE, landmark_index
from cervisag_edge.core.parameters import (
    EXTRA_NAMES,
    PARAMETER_NAMES,
    PARAMETER_UNITS,
    SagittalParameters,
    compute_parameters,
    facing_hint,
    parameters_from_px,
)

H = 14.0  # body height along the posterior wall (mm)
G = 5.0  # disc height (mm)
D = 16.0  # body depth (mm)
S_MCG, S_C1, S_DENS = 0.0, 12.0, 20.0
S0 = 24.0  # C2 superior endplate


def s_sup(k: int) -> float:
    """Arc length of the superior endplate of VERTEBRAE[k] (k = 0 is C2)."""
    return S0 + k * (H + G)


def s_inf(k: int) -> float:
    return s_sup(k) + H


class Path:
    """Posterior wall: pieces [(length_mm, kappa_rad_per_mm), ...], last one extends forever."""

    def __init__(self, pieces: list[tuple[float, float]], theta0_rad: float = 0.0, origin=(100.0, 50.0)):
        self.pieces = pieces
        self.theta0 = theta0_rad
        self.origin = np.asarray(origin, dtype=float)

    def theta(self, s: float) -> float:
        th, start = self.theta0, 0.0
        for i, (length, kappa) in enumerate(self.pieces):
            last = i == len(self.pieces) - 1
            if last or s <= start + length:
                return th + kappa * (s - start)
            th += kappa * length
            start += length
        raise AssertionError("unreachable")

    def point(self, s: float) -> np.ndarray:
        p, th, start = self.origin.copy(), self.theta0, 0.0
        for i, (length, kappa) in enumerate(self.pieces):
            last = i == len(self.pieces) - 1
            ds = (s - start) if (last or s <= start + length) else length
            th1 = th + kappa * ds
            if kappa == 0.0:
                p = p + ds * np.array([-math.sin(th), math.cos(th)])
            else:
                p = p + np.array([math.cos(th1) - math.cos(th), math.sin(th1) - math.sin(th)]) / kappa
            if ds != length or last:
                return p
            th, start = th1, start + length
        raise AssertionError("unreachable")

    def anterior(self, s: float, depth: float) -> np.ndarray:
        th = self.theta(s)
        return self.point(s) + depth * np.array([math.cos(th), math.sin(th)])


def build(path: Path, facing_left: bool = False) -> np.ndarray:
    pts = np.full((len(LANDMARK_NAMES), 2), np.nan)

    def put(name: str, xy: np.ndarray) -> None:
        pts[landmark_index(name)] = xy

    put("MCG_OCC", path.point(S_MCG))
    put("MCG_PNS", path.anterior(S_MCG, 45.0))
    put("C1_POST", path.point(S_C1))
    put("C1_ANT", path.anterior(S_C1, 30.0))
    put("DENS_TIP", path.anterior(S_DENS - 8.0, D / 2))
    put("DENS_PS", path.point(S_DENS))
    for k, v in enumerate(VERTEBRAE):
        put(f"{v}_PS", path.point(s_sup(k)))
        put(f"{v}_AS", path.anterior(s_sup(k), D))
        put(f"{v}_PI", path.point(s_inf(k)))
        put(f"{v}_AI", path.anterior(s_inf(k), D))
    if facing_left:
        pts[:, 0] = 300.0 - pts[:, 0]
    return pts


def arc_chord_distances(kappa: float, s_a: float, s_b: float, s_q: np.ndarray, theta0: float = 0.0) -> tuple[np.ndarray, float]:
    """Signed distances (anterior +) of posterior-wall points at arc lengths s_q from the chord
    between the wall points at s_a and s_b, on an arc of radius R = 1/κ (signed), and the chord
    length. Points at angle φ are O + R·e(φ); projected on e(φm) they sit at R·cos(φ − φm), the
    chord at R·cos(Δ/2); anterior is away from O when R > 0 and towards O when R < 0."""
    r = 1.0 / kappa
    ta, tb = theta0 + kappa * s_a, theta0 + kappa * s_b
    tm, half = (ta + tb) / 2, (tb - ta) / 2
    tq = theta0 + kappa * np.asarray(s_q)
    return r * (np.cos(tq - tm) - math.cos(half)), 2 * abs(r) * abs(math.sin(half))


def test_straight_spine_is_all_zero() -> None:
    p = compute_parameters(build(Path([(1.0, 0.0)])))
    for name in PARAMETER_NAMES:
        assert getattr(p, name) == pytest.approx(0.0, abs=1e-9), name
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in p.segmental_deg.values())
    assert p.o_c2_deg == pytest.approx(0.0, abs=1e-9)
    assert p.c7_slope_deg == pytest.approx(0.0, abs=1e-9)
    # Rectangle bodies on a vertical wall: the centroid is D/2 anterior of the wall.
    assert p.sva_c2_c7_mm == pytest.approx(D / 2)
    assert all(h == pytest.approx(H) for h in p.anterior_height_mm.values())
    assert all(h == pytest.approx(H) for h in p.posterior_height_mm.values())
    assert p.facing == "right" and p.missing == () and dict(p.unavailable) == {}


def test_tilted_straight_spine() -> None:
    th0 = math.radians(12.0)
    p = compute_parameters(build(Path([(1.0, 0.0)], theta0_rad=th0)))
    for name in PARAMETER_NAMES:
        assert getattr(p, name) == pytest.approx(0.0, abs=1e-9), name
    assert p.c7_slope_deg == pytest.approx(12.0)
    assert p.t1_slope_deg == pytest.approx(12.0)
    # C2 centroid = wall point at mid-body + D/2·e; C7_PS = wall point at s_sup(5); wall runs along (−sin, cos).
    expected_sva = -math.sin(th0) * ((s_sup(0) + H / 2) - s_sup(5)) + D / 2 * math.cos(th0)
    assert p.sva_c2_c7_mm == pytest.approx(expected_sva)


@pytest.mark.parametrize("kappa_deg_per_mm", [0.25, -0.2])
def test_circular_arc_closed_forms(kappa_deg_per_mm: float) -> None:
    kappa = math.radians(kappa_deg_per_mm)
    th0 = math.radians(-10.0)
    pts = build(Path([(1.0, kappa)], theta0_rad=th0))
    p = compute_parameters(pts)
    sign = 1.0 if kappa > 0 else -1.0  # lordosis (centre posterior) > 0, kyphosis < 0
    # Cobb angles: endplates are normal to the wall, so the Cobb angle is the arc angle κ·Δs.
    assert p.cobb_c2_c7_deg == pytest.approx(math.degrees(kappa * (s_inf(5) - s_inf(0))))
    assert p.cobb_c1_c7_deg == pytest.approx(math.degrees(kappa * (s_inf(5) - S_C1)))
    assert p.cobb_c0_c7_deg == pytest.approx(math.degrees(kappa * (s_inf(5) - S_MCG)))
    assert p.o_c2_deg == pytest.approx(math.degrees(kappa * (s_inf(0) - S_MCG)))
    assert math.copysign(1.0, p.cobb_c2_c7_deg) == sign
    # Congruent annular-sector bodies: each centroid lies on its body's bisector at the same
    # radius, so chord c_k→c_k+1 is tangent at the mean bisector angle and CCL is the arc angle
    # between the mid-points of C2–C3 and C6–C7: κ·4(H+G).
    assert p.ccl_deg == pytest.approx(math.degrees(kappa * 4 * (H + G)))
    # Disc angles are κ·G each; discs plus body wedges (κ·H each, C3..C7) make the C2–C7 Cobb.
    for seg in ("C2/3", "C3/4", "C4/5", "C5/6", "C6/7", "C7/T1"):
        assert p.segmental_deg[seg] == pytest.approx(math.degrees(kappa * G))
    assert sum(p.segmental_deg[s] for s in ("C2/3", "C3/4", "C4/5", "C5/6", "C6/7")) + 5 * math.degrees(kappa * H) == pytest.approx(
        p.cobb_c2_c7_deg
    )
    assert p.c7_slope_deg == pytest.approx(math.degrees(th0 + kappa * s_sup(5)))
    assert p.t1_slope_deg == pytest.approx(math.degrees(th0 + kappa * s_sup(6)))
    # CCI: C3..C6 PI from the chord C2_PI→C7_PI on the posterior circle.
    d, chord = arc_chord_distances(kappa, s_inf(0), s_inf(5), np.array([s_inf(k) for k in range(1, 5)]), th0)
    assert p.cci_percent == pytest.approx(100 * d.sum() / chord)
    assert math.copysign(1.0, p.cci_percent) == sign
    # Borden: deepest posterior-wall point from the chord DENS_PS→C7_PI, at most the sagitta R(1−cos(Δ/2)).
    wall_s = [s for k in range(5) for s in (s_sup(k), s_inf(k))] + [s_sup(5)]
    d, _ = arc_chord_distances(kappa, S_DENS, s_inf(5), np.array(wall_s), th0)
    assert p.borden_mm == pytest.approx(d[np.argmax(np.abs(d))])
    sagitta = (1 / kappa) * (1 - math.cos(kappa * (s_inf(5) - S_DENS) / 2))
    assert abs(p.borden_mm) <= abs(sagitta) + 1e-9 and math.copysign(1.0, p.borden_mm) == sign
    # Heights: chords of arcs of angle κH on radii R (posterior) and R + D (anterior).
    r = 1 / kappa
    for v in VERTEBRAE:
        assert p.posterior_height_mm[v] == pytest.approx(2 * abs(r) * abs(math.sin(kappa * H / 2)))
        assert p.anterior_height_mm[v] == pytest.approx(2 * abs(r + D) * abs(math.sin(kappa * H / 2)))


def test_s_shaped_spine() -> None:
    k = math.radians(0.3)
    s_break = s_inf(2) + 1.0  # inside the C4/5 disc, 1 mm below C4
    th0 = math.radians(5.0)
    p = compute_parameters(build(Path([(s_break, -k), (1.0, k)], theta0_rad=th0)))

    def theta(s: float) -> float:  # upper part kyphotic (−κ), lower part lordotic (+κ)
        return th0 - k * min(s, s_break) + k * max(s - s_break, 0.0)

    assert p.cobb_c2_c7_deg == pytest.approx(math.degrees(theta(s_inf(5)) - theta(s_inf(0))))
    assert p.cobb_c1_c7_deg == pytest.approx(math.degrees(theta(s_inf(5)) - theta(S_C1)))
    assert p.cobb_c0_c7_deg == pytest.approx(math.degrees(theta(s_inf(5)) - theta(S_MCG)))
    for seg in ("C2/3", "C3/4"):
        assert p.segmental_deg[seg] == pytest.approx(math.degrees(-k * G))
    assert p.segmental_deg["C4/5"] == pytest.approx(math.degrees(-k * 1.0 + k * (G - 1.0)))
    for seg in ("C5/6", "C6/7", "C7/T1"):
        assert p.segmental_deg[seg] == pytest.approx(math.degrees(k * G))
    # C2, C3 lie on the kyphotic arc and C6, C7 on the lordotic one; within one arc the chord
    # between congruent bodies has ψ = −θ(mid-point), so CCL = θ(m67) − θ(m23).
    m23 = (s_sup(0) + s_sup(1) + H) / 2
    m67 = (s_sup(4) + s_sup(5) + H) / 2
    assert p.ccl_deg == pytest.approx(math.degrees(theta(m67) - theta(m23)))
    assert p.ccl_deg > 0 and p.segmental_deg["C2/3"] < 0


def test_facing_left_matches_facing_right() -> None:
    path = Path([(1.0, math.radians(0.25))])
    right = compute_parameters(build(path))
    left = compute_parameters(build(path, facing_left=True))
    assert right.facing == "right" and left.facing == "left"
    for name in PARAMETER_NAMES:
        assert getattr(left, name) == pytest.approx(getattr(right, name))
    assert left.cobb_c2_c7_deg > 0 and left.sva_c2_c7_mm == pytest.approx(right.sva_c2_c7_mm)


def _lordotic() -> np.ndarray:
    return build(Path([(1.0, math.radians(0.25))], theta0_rad=math.radians(-10.0)))


def _nan(pts: np.ndarray, *names: str) -> np.ndarray:
    out = pts.copy()
    for n in names:
        out[landmark_index(n)] = np.nan
    return out


def test_missing_c7_t1() -> None:
    hidden = tuple(f"{v}_{c}" for v in ("C7", "T1") for c in ("AS", "PS", "PI", "AI"))
    full = compute_parameters(_lordotic())
    p = compute_parameters(_nan(_lordotic(), *hidden))
    assert p.missing == hidden
    for name in PARAMETER_NAMES:
        assert getattr(p, name) is None, name
    assert p.unavailable["cobb_c2_c7_deg"] == ("C7_PI", "C7_AI")
    assert p.unavailable["cobb_c0_c7_deg"] == ("C7_PI", "C7_AI")
    assert p.unavailable["ccl_deg"] == ("C7_AS", "C7_PS", "C7_PI", "C7_AI")
    assert p.unavailable["borden_mm"] == ("C7_PS", "C7_PI")
    assert p.unavailable["cci_percent"] == ("C7_PI",)
    assert p.sva_c2_c7_mm is None and p.c7_slope_deg is None and p.t1_slope_deg is None
    assert p.segmental_deg["C6/7"] is None and p.segmental_deg["C7/T1"] is None
    # The rest is still computed and equals the full result.
    assert p.o_c2_deg == pytest.approx(full.o_c2_deg)
    for seg in ("C2/3", "C3/4", "C4/5", "C5/6"):
        assert p.segmental_deg[seg] == pytest.approx(full.segmental_deg[seg])
    for v in ("C2", "C3", "C4", "C5", "C6"):
        assert p.anterior_height_mm[v] == pytest.approx(full.anterior_height_mm[v])
    assert p.anterior_height_mm["C7"] is None and "anterior_height_T1_mm" in p.unavailable
    assert set(p.unavailable) == {k for k, v in p.as_dict(include_extras=True).items() if v is None}


def test_missing_single_landmarks() -> None:
    full = compute_parameters(_lordotic())
    p = compute_parameters(_nan(_lordotic(), "C4_PS"))
    assert p.borden_mm is None and p.unavailable["borden_mm"] == ("C4_PS",)
    assert p.posterior_height_mm["C4"] is None and p.segmental_deg["C3/4"] is None
    for name in PARAMETER_NAMES[1:]:
        assert getattr(p, name) == pytest.approx(getattr(full, name)), name
    p = compute_parameters(_nan(_lordotic(), "MCG_PNS"))
    assert p.cobb_c0_c7_deg is None and p.o_c2_deg is None
    assert p.unavailable["cobb_c0_c7_deg"] == ("MCG_PNS",) and p.unavailable["o_c2_deg"] == ("MCG_PNS",)
    assert p.cobb_c1_c7_deg == pytest.approx(full.cobb_c1_c7_deg)
    p = compute_parameters(_nan(_lordotic(), "T1_AS"))
    assert p.t1_slope_deg is None and p.segmental_deg["C7/T1"] is None
    assert all(getattr(p, n) == pytest.approx(getattr(full, n)) for n in PARAMETER_NAMES)
    assert p.missing == ("T1_AS",)
    # A half-missing point (one NaN coordinate) is missing as a whole.
    half = _lordotic()
    half[landmark_index("C1_ANT"), 1] = np.nan
    p = compute_parameters(half)
    assert p.missing == ("C1_ANT",) and p.cobb_c1_c7_deg is None


def test_facing_fallback_and_failure() -> None:
    vertebral = [n for n in LANDMARK_NAMES if n.split("_")[0] in VERTEBRAE]
    pts = _nan(_lordotic(), *vertebral)
    assert compute_parameters(pts).facing == "right"
    mirrored = pts.copy()
    mirrored[:, 0] *= -1
    assert compute_parameters(mirrored).facing == "left"
    with pytest.raises(InputError, match="facing.*C1_ANT/C1_POST.*MCG_PNS/MCG_OCC"):
        compute_parameters(_nan(pts, "C1_ANT", "MCG_OCC"))


def _posterior_only(pts: np.ndarray) -> np.ndarray:
    """Only the posterior corners (PS, PI) and the dens: no anterior/posterior pair tells the facing."""
    keep = {n for n in LANDMARK_NAMES if n.endswith(("_PS", "_PI"))} | {"DENS_TIP", "DENS_PS"}
    return _nan(pts, *(n for n in LANDMARK_NAMES if n not in keep))


@pytest.mark.parametrize("facing_left", [False, True])
def test_facing_hint_decides_when_the_reported_landmarks_cannot(facing_left: bool) -> None:
    path = Path([(1.0, math.radians(0.25))])
    full = build(path, facing_left=facing_left)
    shown = _posterior_only(full)
    with pytest.raises(InputError, match="facing cannot be determined"):
        compute_parameters(shown)
    # the weak anterior peaks (below the reporting threshold, above FACING_EVIDENCE) tell it
    conf = np.where(np.isnan(shown[:, 0]), 0.5, 0.95)
    hint = facing_hint(full, conf, np.ones(len(LANDMARK_NAMES), bool))
    assert hint == (-1.0 if facing_left else 1.0)
    p = compute_parameters(shown, facing_hint=hint)
    assert p.facing == ("left" if facing_left else "right")
    ref = compute_parameters(full)
    assert p.borden_mm == pytest.approx(ref.borden_mm) and p.cci_percent == pytest.approx(ref.cci_percent)
    # a wrong hint never overrides landmarks that tell the facing themselves
    assert compute_parameters(full, facing_hint=-hint).facing == ref.facing
    # parameters_from_px passes it on; without it no geometry is computed
    vis = ~np.isnan(shown[:, 0])
    assert parameters_from_px(full, vis, (1.0, 1.0), facing_hint=hint)[2] is None
    assert "facing cannot be determined" in parameters_from_px(full, vis, (1.0, 1.0))[2]


def test_facing_hint_needs_evidence_inside_the_image() -> None:
    full = build(Path([(1.0, math.radians(0.25))]))
    k = len(LANDMARK_NAMES)
    assert facing_hint(full, np.full(k, 0.29), np.ones(k, bool)) is None  # below FACING_EVIDENCE
    assert facing_hint(full, np.full(k, 0.9), np.zeros(k, bool)) is None  # all outside the image
    with pytest.raises(InputError, match="facing_hint"):
        compute_parameters(_posterior_only(full), facing_hint=0.5)


@pytest.mark.parametrize("shape", [(33, 2), (34, 3), (68,), (2, 34)])
def test_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"shape .*\(34, 2\) expected.*MCG_PNS.*T1_AI"):
        compute_parameters(np.zeros(shape))


def test_not_numeric() -> None:
    with pytest.raises(InputError, match="float array"):
        compute_parameters([["a", "b"]] * 34)


def test_infinite_values_are_named() -> None:
    pts = _lordotic()
    pts[landmark_index("C3_AS"), 0] = np.inf
    pts[landmark_index("DENS_TIP"), 1] = -np.inf
    with pytest.raises(InputError, match="infinite") as info:
        compute_parameters(pts)
    assert "C3_AS" in str(info.value) and "DENS_TIP" in str(info.value)
    assert "C4_AS" not in str(info.value)


@pytest.mark.parametrize(
    "a, b",
    [("C7_PI", "C7_AI"), ("C2_PS", "C2_AS"), ("C1_POST", "C1_ANT"), ("MCG_OCC", "MCG_PNS"), ("DENS_PS", "C7_PI"), ("C2_PI", "C7_PI")],
)
def test_coincident_points_are_named(a: str, b: str) -> None:
    pts = _lordotic()
    pts[landmark_index(a)] = pts[landmark_index(b)]
    with pytest.raises(ValueError, match="degenerate") as info:
        compute_parameters(pts)
    assert f"{a} and {b} coincide" in str(info.value)


def test_parallel_diagonals_are_named() -> None:
    pts = _lordotic()
    # Collapse C5 to a segment: its diagonals AS–PI and PS–AI become collinear.
    for c, t in (("AS", 0.0), ("PS", 1.0), ("PI", 2.0), ("AI", 3.0)):
        pts[landmark_index(f"C5_{c}")] = pts[landmark_index("C5_PS")] + np.array([0.0, t])
    with pytest.raises(ValueError, match="C5_AS–C5_PI and C5_PS–C5_AI are parallel"):
        compute_parameters(pts)


def test_wrap_deg() -> None:
    assert wrap_deg(190.0) == pytest.approx(-170.0)
    assert wrap_deg(-190.0) == pytest.approx(170.0)
    assert wrap_deg(180.0) == 180.0 and wrap_deg(-180.0) == 180.0
    assert wrap_deg(540.0) == 180.0 and wrap_deg(-45.0) == -45.0 and wrap_deg(360.0) == 0.0


def test_result_api() -> None:
    p = compute_parameters(_lordotic())
    assert list(p.as_dict()) == list(PARAMETER_NAMES) == [
        "borden_mm", "cci_percent", "ccl_deg", "cobb_c0_c7_deg", "cobb_c1_c7_deg", "cobb_c2_c7_deg"
    ]
    assert set(PARAMETER_UNITS.values()) == {"mm", "%", "deg"}
    full = p.as_dict(include_extras=True)
    assert list(full) == list(PARAMETER_NAMES) + list(EXTRA_NAMES)
    assert full["segmental_C2/3_deg"] == p.segmental_deg["C2/3"]
    assert full["anterior_height_C3_mm"] == p.anterior_height_mm["C3"]
    assert full["posterior_height_T1_mm"] == p.posterior_height_mm["T1"]
    assert all(isinstance(v, float) for v in full.values())
    with pytest.raises(FrozenInstanceError):
        p.borden_mm = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.segmental_deg["C2/3"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        p.unavailable["x"] = ()  # type: ignore[index]
    assert pickle.loads(pickle.dumps(p)) == p


def test_without_lengths() -> None:
    p = compute_parameters(_lordotic())
    q = p.without_lengths()
    assert isinstance(q, SagittalParameters)
    mm = [k for k in q.as_dict(include_extras=True) if k.endswith("_mm")]
    assert len(mm) == 2 + 2 * len(VERTEBRAE)
    assert all(q.as_dict(include_extras=True)[k] is None for k in mm)
    for k, v in q.as_dict(include_extras=True).items():
        if not k.endswith("_mm"):
            assert v == p.as_dict(include_extras=True)[k], k
    assert p.borden_mm is not None  # the original is unchanged
