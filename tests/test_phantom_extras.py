"""What films carry besides anatomy (cervisag_edge.tooling.phantom.extras)."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.tooling.phantom import extras as ex
from cervisag_edge.tooling.phantom import render_phantom
from cervisag_edge.tooling.phantom.scene import build_scene

ALL = ("dental", "necklace", "ecg", "collar", "plate", "ear-rods", "text", "ruler")


def _force(monkeypatch, value: float) -> None:
    for name in ("P_DENTAL", "P_DENTAL_CEPH", "P_NECKLACE", "P_ECG", "P_COLLAR", "P_PLATE", "P_EAR_RODS", "P_EAR_RODS_CEPH", "P_TEXT", "P_RULER", "P_BLOCKER"):
        monkeypatch.setattr(ex, name, value)


def test_rates_over_many_scenes() -> None:
    names = [build_scene(41, i, (300, 360), None).extras for i in range(150)]
    rate = {k: np.mean([k in n for n in names]) for k in ALL}
    assert 0.45 < rate["text"] < 0.75
    assert 0.005 <= rate["plate"] <= 0.1, rate  # a few percent
    assert rate["dental"] > 0.2 and rate["ruler"] > 0.05


def test_every_extra_renders_and_labels_do_not_move(monkeypatch) -> None:
    plain = build_scene(42, 3, (600, 720), "standard")
    _force(monkeypatch, 1.0)
    full = build_scene(42, 3, (600, 720), "standard")
    assert set(ALL) <= set(full.extras)
    np.testing.assert_array_equal(full.landmarks_mm, plain.landmarks_mm)  # plated corners stay labelled
    assert len(full.fine) > len(plain.fine)
    ph = render_phantom(42, 3, size=(600, 720), variant="standard")
    assert ph.display.shape == (720, 600) and np.isfinite(ph.display).all() and set(ALL) <= set(ph.extras)


def test_burned_in_text_is_brightest(monkeypatch) -> None:
    _force(monkeypatch, 0.0)
    monkeypatch.setattr(ex, "P_TEXT", 1.0)
    with_text = render_phantom(43, 1, size=(500, 600), variant="standard")
    monkeypatch.setattr(ex, "P_TEXT", 0.0)
    without = render_phantom(43, 1, size=(500, 600), variant="standard")
    changed = np.abs(with_text.display - without.display) > 0.2
    assert changed.sum() > 50
    assert np.median(with_text.display[changed]) > 0.9


def test_film_mut_ruler_has_ticks() -> None:
    from cervisag_edge.tooling.phantom.primitives import Grid

    fe = ex.FilmExtras(ruler=(50.0, 10.0, 100.0, True))
    m = ex.film_mut(fe, Grid((600, 400), (0.25, 0.25)))
    col = m[40:440, int((50.0 - 6.0 + 1.0) / 0.25)]  # along the tick side of the strip
    peaks = np.sum((col[1:-1] > col[:-2]) & (col[1:-1] >= col[2:]) & (col[1:-1] > 1.0))
    assert 80 <= peaks <= 110  # one tick per mm
    assert ex.film_mut(ex.FilmExtras(), Grid((10, 10), (1.0, 1.0))) is None
