"""The visibility calibration tool (tools/calibrate_visibility.py) picks per-group thresholds and
an edge guard that report no landmark outside the image as visible on its calibration data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _tool():
    spec = importlib.util.spec_from_file_location("calibrate_visibility", Path(__file__).resolve().parents[1] / "tools" / "calibrate_visibility.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _obs(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """Visible landmarks confident and away from the edge; off-image ones weak in the middle but
    confident at the border (a vertebra cut by the film edge); unexposed ones in between."""
    rng = np.random.default_rng(seed)
    K = 34
    vis = np.full((n, K), 2)
    off = np.zeros((n, K), bool)
    conf = rng.uniform(0.7, 1.0, (n, K))
    edge = rng.uniform(10, 150, (n, K))
    cut = rng.random((n, K)) < 0.15
    vis[cut], off[cut] = 0, True
    conf[cut] = rng.uniform(0.0, 0.3, cut.sum())
    at_border = cut & (rng.random((n, K)) < 0.3)
    conf[at_border] = rng.uniform(0.6, 0.8, at_border.sum())
    edge[at_border] = rng.uniform(0, 5, at_border.sum())
    shut = ~cut & (rng.random((n, K)) < 0.05)
    vis[shut] = 0
    conf[shut] = rng.uniform(0.2, 0.65, shut.sum())
    return {"conf": conf, "edge_px": edge, "vis": vis, "off_image": off}


def test_rule_reports_no_landmark_outside_the_image():
    tool = _tool()
    obs = _obs()
    r = tool.choose_rule(obs, max_false_visible=0, max_unexposed_percent=10.0, margin=0.02)
    assert r["outside_image_reported_visible"] == 0
    # the edge guard lets the threshold fall below the border peaks (0.6-0.8) instead of above them
    assert r["edge_margins_px"]["vertebrae"] >= 5
    assert max(r["thresholds"].values()) < 0.72
    assert r["visible_recall_percent"] > 95
    # the rule, applied as the runtime applies it, gives the same counts
    rule = tool.rule_from_result(r)
    rep = np.array([rule.visible(c, np.ones(34, bool), e) for c, e in zip(obs["conf"], obs["edge_px"])])
    assert int((rep & obs["off_image"]).sum()) == 0
    assert abs(rep[obs["vis"] == 2].mean() * 100 - r["visible_recall_percent"]) < 1e-9


def test_unexposed_budget_trades_recall():
    tool = _tool()
    obs = _obs(seed=1)
    strict = tool.choose_rule(obs, 0, 0.0, 0.02)
    loose = tool.choose_rule(obs, 0, 50.0, 0.02)
    assert strict["unexposed_reported_visible"] == 0
    assert loose["unexposed_reported_visible"] <= 0.5 * strict["n_unexposed"]
    assert loose["visible_recall_percent"] >= strict["visible_recall_percent"]


def test_no_edge_guard_needs_a_threshold_above_the_border_peaks():
    tool = _tool()
    obs = _obs(seed=2)
    obs_noedge = dict(obs, edge_px=np.full_like(obs["edge_px"], 100.0))  # nothing near the edge
    r = tool.choose_rule(obs_noedge, 0, 100.0, 0.0)
    checked = 0
    for group, cols in tool.GROUPS.items():  # each group above its own landmarks' off-image peaks
        c, off = obs["conf"][:, list(cols)], obs["off_image"][:, list(cols)]
        if off.any():
            assert r["thresholds"][group] > c[off].max(), group
            checked += 1
    assert checked >= 3


def _slip_obs(seed: int = 3) -> dict[str, np.ndarray]:
    """Like :func:`_obs`, plus a few off-image vertebral corners decoded well inside the image with
    confidences 0.70-0.76 (a level slip): they set the raw vertebral threshold."""
    obs = _obs(seed=seed)
    rng = np.random.default_rng(seed)
    slips = [(i, 20 + i % 8) for i in range(0, 30, 6)]  # 5 images, a vertebral corner each
    for (i, k), c in zip(slips, rng.uniform(0.70, 0.76, len(slips))):
        obs["vis"][i, k], obs["off_image"][i, k] = 0, True
        obs["conf"][i, k], obs["edge_px"][i, k] = c, 40.0
    obs["slips"] = np.array(slips)
    return obs


def test_pipeline_lowers_the_vertebral_threshold_past_what_the_check_removes():
    tool = _tool()
    obs = _slip_obs()
    raw = tool.choose_rule(obs, 0, 100.0, 0.02)
    assert raw["thresholds"]["vertebrae"] > 0.76  # the slips set it
    calls = []

    def pipeline(thresholds, images):
        # the consistency check hides every slip; below 0.6 a landmark outside the image stays visible
        calls.append((float(thresholds[20]), set(int(i) for i in images)))
        return (0 if thresholds[20] >= 0.6 else 1), 0

    out = tool.lower_through_pipeline(raw, obs, pipeline, 0, 100.0, 0.02)
    assert abs(out["thresholds"]["vertebrae"] - 0.62) < 1e-9  # the last clean step, 0.60, + margin
    for group in ("palate", "occiput", "c1", "dens"):  # only the vertebrae go through it
        assert out["thresholds"][group] == raw["thresholds"][group]
    assert out["visible_recall_percent"] >= raw["visible_recall_percent"]
    steps = out["pipeline"]["steps"]
    assert steps[-1]["passed"] is False and all(s["passed"] for s in steps[:-1])
    # the steps measure the images the raw rule gives a false "visible": the slips among them
    assert {int(i) for i, _ in obs["slips"]} <= set().union(*(imgs for _, imgs in calls))
    for (t, imgs), s in zip(calls, steps):
        assert len(imgs) == s["images_measured"] and abs(t - s["threshold"]) < 1e-9


def test_pipeline_that_keeps_the_slips_keeps_the_raw_threshold():
    tool = _tool()
    obs = _slip_obs()
    raw = tool.choose_rule(obs, 0, 100.0, 0.02)
    out = tool.lower_through_pipeline(raw, obs, lambda thr, imgs: (len(imgs), 0), 0, 100.0, 0.02)
    assert out["thresholds"] == raw["thresholds"]
    assert len(out["pipeline"]["steps"]) == 1 and not out["pipeline"]["steps"][0]["passed"]


def test_each_group_gets_its_own_edge_threshold_within_one_margin():
    """Confident off-image occiput peaks 9 px inside the border raise the occiput's edge threshold
    only; the margin is one for all groups (a sparse group cannot show how far in border peaks
    fall), and no landmark outside the image is reported visible."""
    tool = _tool()
    obs = _obs(seed=4)
    occ = tool.GROUPS["occiput"][0]
    obs["vis"][:, occ], obs["off_image"][:, occ] = 2, False
    obs["conf"][:, occ] = np.random.default_rng(4).uniform(0.7, 0.95, len(obs["conf"]))
    obs["edge_px"][:, occ] = 40.0
    for i in range(5):  # five films that cut the occiput off, its peak 9 px inside at 0.85
        obs["vis"][i, occ], obs["off_image"][i, occ] = 0, True
        obs["conf"][i, occ], obs["edge_px"][i, occ] = 0.85, 9.0
    r = tool.choose_rule(obs, 0, 10.0, 0.02)
    assert len(set(r["edge_margins_px"].values())) == 1 and r["edge_margins_px"]["occiput"] >= 10
    assert r["edge_confidence_thresholds"]["occiput"] > 0.85
    assert r["edge_confidence_thresholds"]["vertebrae"] < r["edge_confidence_thresholds"]["occiput"]
    assert r["outside_image_reported_visible"] == 0
    rule = tool.rule_from_result(r)
    assert rule.edge_threshold[occ] == r["edge_confidence_thresholds"]["occiput"]
    # the codec round trip keeps the per-group edge thresholds
    from cervisag_edge.core.visibility import VisibilityRule

    assert VisibilityRule.from_codec(rule.to_codec()) == rule
    assert "edge_confidence_thresholds" in rule.to_codec()
