from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.core.landmarks import (
    LANDMARK_NAMES, NUM_LANDMARKS, VERTEBRAE, landmark_index, line_intersection, vertebra_centroid,
    vertebra_corner_indices, vertebra_corners,
)


def test_schema_order_is_the_public_table() -> None:
    assert NUM_LANDMARKS == 34
    assert LANDMARK_NAMES[:6] == ("MCG_PNS", "MCG_OCC", "C1_ANT", "C1_POST", "DENS_TIP", "DENS_PS")
    assert LANDMARK_NAMES[6:10] == ("C2_AS", "C2_PS", "C2_PI", "C2_AI")
    assert LANDMARK_NAMES[26:30] == ("C7_AS", "C7_PS", "C7_PI", "C7_AI")
    assert LANDMARK_NAMES[30:] == ("T1_AS", "T1_PS", "T1_PI", "T1_AI")
    assert len(set(LANDMARK_NAMES)) == 34
    assert not any(("LEFT" in n or "RIGHT" in n) for n in LANDMARK_NAMES)


def test_index_helpers() -> None:
    assert landmark_index("C3_PI") == 12
    assert vertebra_corner_indices("C5") == (18, 19, 20, 21)
    with pytest.raises(KeyError, match="unknown landmark 'C8_AS'"):
        landmark_index("C8_AS")
    with pytest.raises(KeyError, match="unknown vertebra 'C1'"):
        vertebra_corner_indices("C1")


def test_centroid_is_diagonal_intersection() -> None:
    pts = np.zeros((34, 2))
    # a trapezoid C4 body: AS (10,0), PS (0,0), PI (0,8), AI (12,10)
    pts[list(vertebra_corner_indices("C4"))] = [[10, 0], [0, 0], [0, 8], [12, 10]]
    c = vertebra_centroid(pts, "C4")
    # diagonal AS-PI: (10,0)->(0,8); PS-AI: (0,0)->(12,10). Solve by hand: x = 10-10t, y = 8t; PS-AI: y = (10/12) x
    t = (100 / 12) / (8 + 100 / 12)  # 8t = (10/12)(10 - 10t)
    np.testing.assert_allclose(c, [10 - 10 * t, 8 * t])
    np.testing.assert_allclose(vertebra_corners(pts, "C4")[3], [12, 10])


def test_centroid_nan_when_missing_or_parallel() -> None:
    pts = np.zeros((34, 2))
    pts[list(vertebra_corner_indices("C3"))] = [[10, 0], [0, 0], [0, 8], [np.nan, 10]]
    assert np.all(np.isnan(vertebra_centroid(pts, "C3")))
    assert np.all(np.isnan(line_intersection([0, 0], [1, 0], [0, 1], [1, 1])))
    with pytest.raises(ValueError, match=r"shape \(34, 2\)"):
        vertebra_corners(np.zeros((3, 2)), "C3")


def test_vertebrae_cover_corners() -> None:
    assert VERTEBRAE == ("C2", "C3", "C4", "C5", "C6", "C7", "T1")
