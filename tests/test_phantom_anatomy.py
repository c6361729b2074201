"""Generated anatomy against the morphometry table (cervisag_edge.tooling.phantom.anatomy)."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.core.landmarks import landmark_index
from cervisag_edge.tooling.phantom.anatomy import MORPHOMETRY, dim, markdown_table
from cervisag_edge.tooling.phantom.scene import _spine_spec, build_scene

N = 80


def _lm(name: str, lm: np.ndarray) -> np.ndarray:
    return lm[landmark_index(name)]


def _body_height(lm: np.ndarray, v: str) -> float:
    return 0.5 * (np.linalg.norm(_lm(f"{v}_AS", lm) - _lm(f"{v}_AI", lm)) + np.linalg.norm(_lm(f"{v}_PS", lm) - _lm(f"{v}_PI", lm)))


@pytest.fixture(scope="module")
def scenes():
    return [build_scene(31, i, (800, 1000), None) for i in range(N)]


def test_c2_ratio_from_landmarks_is_adult(scenes) -> None:
    ratios = []
    for sc in scenes:
        lm = sc.landmarks_mm
        total = np.linalg.norm(_lm("DENS_TIP", lm) - 0.5 * (_lm("C2_PI", lm) + _lm("C2_AI", lm)))
        ratios.append(total / _body_height(lm, "C3"))
    med = float(np.median(ratios))
    assert 3.0 <= med <= 3.5, f"C2 total / C3 body height median {med:.2f}, expected 3.0-3.5"
    assert np.percentile(ratios, 95) - np.percentile(ratios, 5) > 0.2  # subjects differ


def test_sampled_dimensions_follow_the_table() -> None:
    rng = np.random.default_rng(5)
    specs = [_spine_spec(rng, "standard")[0] for _ in range(300)]
    h = np.array([0.5 * (s.h_ant_mm + s.h_post_mm) for s in specs])  # (300, 7) C2..T1
    d = np.array([s.depth_mm for s in specs])
    sub = h[:, 1:6].mean(axis=0)
    assert np.all((sub > 10.0) & (sub < 12.2)), sub
    assert int(np.argmin(sub)) == 2, f"C5 must be the shortest body, means C3..C7 {sub}"
    dep = d[:, 1:6].mean(axis=0)
    assert np.all(np.diff(dep) > 0) and 14.0 < dep[0] and dep[-1] < 16.5, dep
    for key, got in (("C2_body_h_ant_mm", [s.h_ant_mm[0] for s in specs]), ("C2_body_depth_mm", d[:, 0]), ("dens_h_mm", [s.dens_len_mm for s in specs])):
        row = dim(key)
        assert abs(np.mean(got) - row.mean) < 0.6 * row.sd + 0.1, key
    spin = np.array([s.spinous_mm for s in specs])
    assert np.all(np.argmax(spin, axis=1) == 5)  # C7 spinous the longest


def test_atlanto_dens_interval_and_disc_heights(scenes) -> None:
    row = dim("adi_mm")
    assert row.hi <= 3.0
    mids = []
    for sc in scenes[:30]:
        lm = sc.landmarks_mm
        for up, lo in (("C3", "C4"), ("C4", "C5"), ("C5", "C6")):
            a = 0.5 * (_lm(f"{up}_AI", lm) + _lm(f"{up}_PI", lm))
            b = 0.5 * (_lm(f"{lo}_AS", lm) + _lm(f"{lo}_PS", lm))
            mids.append(np.linalg.norm(a - b))
    assert 3.0 < np.median(mids) < 5.5  # chord-to-chord; + endplate concavities gives the 5.3-5.8 mm middle height


def test_table_is_complete_and_printed() -> None:
    keys = [d.key for d in MORPHOMETRY]
    assert len(keys) == len(set(keys))
    assert all(d.lo <= d.mean <= d.hi and d.sd > 0 and d.source for d in MORPHOMETRY)
    text = markdown_table()
    assert all(f"`{k}`" in text for k in keys)
    with pytest.raises(KeyError, match="nope"):
        dim("nope")


def _circle(r: float, n: int = 20000) -> np.ndarray:
    t = np.linspace(np.deg2rad(20), np.deg2rad(250), n)  # an occiput-like arc, y caudal
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def test_mcgregor_point_is_the_tangent_from_the_palate() -> None:
    from cervisag_edge.tooling.phantom.head import mcgregor_tangent_point

    r, d = 40.0, 90.0
    q = mcgregor_tangent_point(np.array([d, 0.0]), _circle(r))
    phi = np.arccos(r / d)  # tangent from (d, 0): the radius to the touching point makes acos(r/d) with the x axis
    np.testing.assert_allclose(q, [r * np.cos(phi), r * np.sin(phi)], atol=0.02)
    # the line touches from below: no contour point lies caudal of it
    u = (q - [d, 0.0]) / np.linalg.norm(q - [d, 0.0])
    side = np.cross(u, _circle(r) - [d, 0.0])
    assert side.min() >= -1e-3


@pytest.mark.parametrize("tilt_deg", [-20.0, -4.0, 7.0, 15.0])
@pytest.mark.parametrize("mirrored", [False, True])
def test_mcgregor_point_follows_head_and_film_tilt(tilt_deg: float, mirrored: bool) -> None:
    """The label moves with the skull: rotating and mirroring palate and contour together moves
    the point with them (the image's "most caudal point" would slide along the curve instead)."""
    from cervisag_edge.tooling.phantom.head import mcgregor_tangent_point

    pns, occ = np.array([85.0, 12.0]), _circle(41.0) + [-5.0, 0.0]
    a = np.deg2rad(tilt_deg)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([-1.0 if mirrored else 1.0, 1.0])
    q0 = mcgregor_tangent_point(pns, occ)
    q1 = mcgregor_tangent_point(pns @ m.T, occ @ m.T)
    np.testing.assert_allclose(q1, q0 @ m.T, atol=0.05)


def test_the_images_lowest_occiput_point_slides_with_the_tilt() -> None:
    """Why the label is the tangent point: taken back to the skull, the image's most caudal
    contour point moves by R·tilt (here more than 10 mm over ±10°), the tangent point not at all."""
    from cervisag_edge.tooling.phantom.head import mcgregor_tangent_point

    pns, occ = np.array([85.0, 12.0]), _circle(41.0) + [-5.0, 0.0]
    lowest, tangent = [], []
    for a in np.deg2rad([-10.0, 0.0, 10.0]):
        m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        o = occ @ m.T
        lowest.append(o[int(np.argmax(o[:, 1]))] @ m)  # back in the skull's frame
        tangent.append(mcgregor_tangent_point(pns @ m.T, o) @ m)
    assert np.ptp(np.array(lowest), axis=0).max() > 10.0
    assert np.ptp(np.array(tangent), axis=0).max() < 0.05


def test_scene_mcgregor_line_is_plausible(scenes) -> None:
    """In every scene the McGregor line through the labels is 50-130 mm long (palate to occiput)."""
    lengths = [np.hypot(*(_lm("MCG_OCC", sc.landmarks_mm) - _lm("MCG_PNS", sc.landmarks_mm))) for sc in scenes]
    assert 50.0 < min(lengths) and max(lengths) < 130.0
