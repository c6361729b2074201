"""Chain decoding of the vertebral levels (``cervisag_edge.core.chain``).

Synthetic heatmaps are the codec's own targets (``UDPHeatmapCodec.encode``) of phantom landmarks,
so the truth is known exactly; the last test runs the shipped model on phantoms.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from cervisag_edge.core.chain import (
    FIRST_CORNER,
    ChainPrior,
    body_frames,
    decode_chain,
    load_chain_prior,
    local_peaks,
    pair_features,
)
from cervisag_edge.engine.codec import UDPHeatmapCodec
from cervisag_edge.core.landmarks import CORNERS, NUM_LANDMARKS, VERTEBRAE, landmark_index
from cervisag_edge.engine.preprocess import letterbox_geometry

V, C = len(VERTEBRAE), len(CORNERS)
CODEC = UDPHeatmapCodec(input_size=(384, 384), heatmap_size=(96, 96), sigma=2.0, blur_sigma=1.0)
SEED = 424242  # not the prior's training seed


@pytest.fixture(scope="module")
def prior() -> ChainPrior:
    return load_chain_prior()


def _clear_of_edges(ph, margin_hm_px: float = 3.0) -> bool:
    """Every landmark at least ``margin_hm_px`` heatmap px inside the model input (a Gaussian cut
    by the input's edge biases DARK; these tests are about level naming, not edge effects)."""
    kp = CODEC.input_to_heatmap(truth_input_px(ph))
    w, h = CODEC.heatmap_size
    return bool(np.all((kp >= margin_hm_px) & (kp <= np.array([w - 1, h - 1]) - margin_hm_px)))


@pytest.fixture(scope="module")
def phantoms():
    from cervisag_edge.tooling.phantom import render_phantom

    out = []
    for i in range(200):  # phantoms with every landmark in frame (v >= 1); most phantoms cut some off
        ph = render_phantom(SEED, i, out_long_side=448, variant=("standard", "lordotic", "kyphotic")[i % 3])
        if np.all(ph.visibility >= 1) and _clear_of_edges(ph):
            out.append(ph)
        if len(out) == 3:
            break
    assert len(out) == 3, "expected three phantoms with every landmark in frame among 200"
    return out


def truth_input_px(ph) -> np.ndarray:
    """(34, 2) phantom landmarks in model-input px."""
    h, w = ph.display.shape
    _, tf = letterbox_geometry((w, h), CODEC.input_size)
    return tf.to_input(ph.landmarks_px)


def level_slice(level: int) -> slice:
    return slice(FIRST_CORNER + C * level, FIRST_CORNER + C * (level + 1))


def body_height_hm(kp_hm: np.ndarray, level: int) -> float:
    return float(body_frames(kp_hm[level_slice(level)])[3])


def test_prior_round_trips_and_rejects_bad_files(prior: ChainPrior, tmp_path) -> None:
    again = ChainPrior.from_dict(json.loads(json.dumps(prior.to_dict())))
    np.testing.assert_allclose(again.pairs[3].cov, prior.pairs[3].cov)
    assert again.settings == prior.settings
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({**prior.to_dict(), "schema": "other/9"}))
    with pytest.raises(ValueError, match=r"p\.json: schema 'other/9' found"):
        load_chain_prior(bad)


def test_prior_matches_unseen_phantom_geometry(prior: ChainPrior, phantoms) -> None:
    """The learned pair prior gives the true chain of unseen phantoms a small cost (< 3 SD per pair)."""
    for ph in phantoms:
        kp = truth_input_px(ph)
        bodies = np.stack([kp[level_slice(i)] for i in range(V)])
        f = pair_features(bodies[:-1], bodies[1:])
        for i, g in enumerate(prior.pairs):
            cost = g.cost(f[i], g.precision(1.0, np.zeros(4)))
            assert cost < 0.5 * 3.0**2 * 4, f"{VERTEBRAE[i]}/{VERTEBRAE[i + 1]} cost {cost:.1f}"


def test_local_peaks_top_m() -> None:
    maps = np.zeros((1, 20, 20))
    maps[0, 5, 5], maps[0, 12, 3], maps[0, 15, 15], maps[0, 2, 18] = 0.9, 0.5, 0.7, 0.01
    ys, xs, v = local_peaks(maps, floor=0.05, top_m=4)
    assert list(zip(ys[0], xs[0])) [:3] == [(5, 5), (15, 15), (12, 3)]
    assert v[0, 3] == -1.0  # the fourth is below the floor


def test_correct_chain_recovered_exactly(prior: ChainPrior, phantoms) -> None:
    for ph in phantoms:
        hm = CODEC.encode(truth_input_px(ph))
        res = decode_chain(hm, prior, CODEC)
        assert res.levels_found == VERTEBRAE
        np.testing.assert_array_equal(res.level_source, np.arange(V))
        ref, conf = CODEC.decode(hm)
        np.testing.assert_allclose(CODEC.heatmap_to_input(res.landmarks_hm), ref, atol=1e-9)
        np.testing.assert_allclose(res.confidence, conf)
        assert res.found.all()


def shifted_heatmaps(kp_in: np.ndarray) -> np.ndarray:
    """Each level's maps peak strongly (1.0) on the vertebra *below* and weakly (0.5) on its own:
    a per-map argmax names every vertebra one level too high. Other landmarks are at the truth."""
    truth = CODEC.encode(kp_in)
    hm = truth.copy()
    for level in range(V):
        own = 0.5 * truth[level_slice(level)]
        below = truth[level_slice(level + 1)] if level + 1 < V else np.zeros_like(own)
        hm[level_slice(level)] = np.maximum(own, below)
    return hm


def test_shifted_evidence_is_renamed_by_the_dens_anchor(prior: ChainPrior, phantoms) -> None:
    for ph in phantoms:
        kp_in = truth_input_px(ph)
        kp_hm = CODEC.input_to_heatmap(kp_in)
        hm = shifted_heatmaps(kp_in)
        argmax_hm = CODEC.input_to_heatmap(CODEC.decode(hm)[0])
        # the plain decode puts C2 on the true C3 (one level off)
        assert np.abs(argmax_hm[level_slice(0)] - kp_hm[level_slice(1)]).max() < 0.5
        res = decode_chain(hm, prior, CODEC)
        assert res.levels_found == VERTEBRAE
        err = np.abs(res.landmarks_hm[FIRST_CORNER:] - kp_hm[FIRST_CORNER:]).max()
        assert err < 0.5, f"max corner error {err:.2f} hm px"
        np.testing.assert_array_equal(res.level_source[1:], np.arange(V - 1))  # C3 found in the C2 maps, …
        # control: without the anchors the same evidence is followed, one level off
        no_anchor = hm.copy()
        for name in ("DENS_TIP", "C1_ANT"):
            no_anchor[landmark_index(name)] = 0.0
        ctl = decode_chain(no_anchor, prior, CODEC)
        assert np.abs(ctl.landmarks_hm[level_slice(0)] - kp_hm[level_slice(1)]).max() < 0.5


def test_levels_cut_at_the_bottom_are_skipped_not_piled(prior: ChainPrior, phantoms) -> None:
    """C6–T1 out of frame; the maps hold only weak blobs piled at the bottom edge (the old failure)."""
    for ph in phantoms:
        kp_in = truth_input_px(ph)
        vis = np.full(NUM_LANDMARKS, 2)
        vis[FIRST_CORNER + C * 4 :] = 0
        hm = CODEC.encode(kp_in, vis)
        kp_hm = CODEC.input_to_heatmap(kp_in)
        edge = np.array([kp_hm[level_slice(3)][:, 0].mean(), 95.0])
        for k in range(FIRST_CORNER + C * 4, NUM_LANDMARKS):
            hm[k] = 0.45 * CODEC.encode((CODEC.heatmap_to_input(edge + [k % 4, 0]))[None])[0]
        argmax_hm = CODEC.input_to_heatmap(CODEC.decode(hm)[0])
        assert np.all(argmax_hm[FIRST_CORNER + C * 4 :, 1] > 93)  # the plain decode piles them
        res = decode_chain(hm, prior, CODEC)
        assert res.levels_found == VERTEBRAE[:4]
        assert not res.found[FIRST_CORNER + C * 4 :].any()
        assert np.all(res.confidence[FIRST_CORNER + C * 4 :] == 0.0)
        np.testing.assert_allclose(res.landmarks_hm[FIRST_CORNER : FIRST_CORNER + C * 4], kp_hm[FIRST_CORNER : FIRST_CORNER + C * 4], atol=0.05)


def test_levels_cut_at_the_top_are_skipped(prior: ChainPrior, phantoms) -> None:
    """A film starting below C3: skull base, C1, dens, C2 and C3 out of frame."""
    for ph in phantoms:
        kp_in = truth_input_px(ph)
        vis = np.full(NUM_LANDMARKS, 2)
        vis[: FIRST_CORNER + C * 2] = 0
        hm = CODEC.encode(kp_in, vis)
        res = decode_chain(hm, prior, CODEC)
        assert res.levels_found == VERTEBRAE[2:]
        assert np.all(res.confidence[FIRST_CORNER : FIRST_CORNER + C * 2] == 0.0)
        kp_hm = CODEC.input_to_heatmap(kp_in)
        np.testing.assert_allclose(res.landmarks_hm[FIRST_CORNER + C * 2 :], kp_hm[FIRST_CORNER + C * 2 :], atol=0.05)


def centres_of_found(res) -> np.ndarray:
    levels = [i for i in range(V) if res.level_candidate[i] >= 0]
    return np.array([res.landmarks_hm[level_slice(i)].mean(axis=0) for i in levels]).reshape(-1, 2)


def test_duplicate_peaks_never_give_two_levels_one_place(prior: ChainPrior, phantoms) -> None:
    """C4's and C5's maps both peak on the C4 body (C5's own evidence gone): one body, one level."""
    for ph in phantoms:
        kp_in = truth_input_px(ph)
        kp_hm = CODEC.input_to_heatmap(kp_in)
        hm = CODEC.encode(kp_in)
        hm[level_slice(3)] = hm[level_slice(2)]
        argmax_hm = CODEC.input_to_heatmap(CODEC.decode(hm)[0])
        assert np.abs(argmax_hm[level_slice(2)] - argmax_hm[level_slice(3)]).max() < 1e-9  # plain decode: duplicated
        res = decode_chain(hm, prior, CODEC)
        cand = res.level_candidate[res.level_candidate >= 0]
        assert len(set(cand.tolist())) == len(cand)
        c = centres_of_found(res)
        d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 1e9
        assert d.min() > 0.5 * body_height_hm(kp_hm, 2)
        assert res.level_candidate[2] >= 0
        np.testing.assert_allclose(res.landmarks_hm[level_slice(2)], kp_hm[level_slice(2)], atol=0.05)


def test_random_clutter_never_assigns_one_body_twice(prior: ChainPrior, phantoms) -> None:
    rng = np.random.default_rng(3)
    kp_in = truth_input_px(phantoms[0])
    for trial in range(25):
        hm = CODEC.encode(kp_in + rng.normal(0, 2.0, kp_in.shape)) * rng.uniform(0.3, 1.0, (NUM_LANDMARKS, 1, 1))
        for k in rng.choice(np.arange(FIRST_CORNER, NUM_LANDMARKS), 10, replace=False):  # copy maps to other levels
            hm[k] = np.maximum(hm[k], hm[FIRST_CORNER + (k - FIRST_CORNER + 4 * rng.integers(-2, 3)) % (V * C)])
        hm = np.maximum(hm + rng.normal(0, 0.02, hm.shape), 0).astype(np.float32)
        res = decode_chain(hm, prior, CODEC)
        cand = res.level_candidate[res.level_candidate >= 0]
        assert len(set(cand.tolist())) == len(cand), f"trial {trial}"
        found = res.level_candidate >= 0
        if found.any():  # contiguous: absent levels only at the top or bottom
            idx = np.flatnonzero(found)
            assert np.all(found[idx[0] : idx[-1] + 1]), f"trial {trial}: {found}"
        assert np.all(res.confidence[~res.found] == 0.0)


def test_empty_heatmaps_find_nothing(prior: ChainPrior) -> None:
    res = decode_chain(np.zeros((NUM_LANDMARKS, 96, 96), np.float32), prior, CODEC)
    assert res.levels_found == () and not res.found[FIRST_CORNER:].any()


def test_bad_shape_is_rejected(prior: ChainPrior) -> None:
    with pytest.raises(ValueError, match=r"heatmaps must have shape \(34, h, w\)"):
        decode_chain(np.zeros((33, 96, 96)), prior, CODEC)


def test_shipped_model_output_is_unchanged_where_all_visible(prior: ChainPrior, phantoms) -> None:
    """On the shipped ONNX model's heatmaps of phantoms with every landmark in frame, the chain finds
    every shown level; the mean visible (v = 2) landmark error against the truth is at most the
    plain decode's + 0.05 input px, and a landmark the chain moves by a heatmap px or more must end
    closer to the truth. (With model v3 the plain argmax of C7_AI and T1_AS of one phantom sits on
    the wrong body, 40 input px off; the chain picks the right peak, 1.8 px off.)"""
    pytest.importorskip("onnxruntime")
    from cervisag_edge import Measurer

    with Measurer(threads=1) as m:
        codec = m.codec
        for ph in phantoms:
            x, _ = m.preprocess(ph.display)
            hm = m.backend.infer(x)[0]
            ref_in, _ = codec.decode(hm)
            res = decode_chain(hm, prior, codec)
            shown = [v for i, v in enumerate(VERTEBRAE) if np.all(ph.visibility[level_slice(i)] == 2)]
            assert len(shown) >= 5 and set(shown) <= set(res.levels_found)
            vis = ph.visibility == 2
            chain_in = codec.heatmap_to_input(res.landmarks_hm)
            truth = truth_input_px(ph)
            moved_hm = np.abs(chain_in - ref_in).max(axis=1) * codec.scale_xy.max()
            for k in np.nonzero(vis & (moved_hm >= 1.0))[0]:  # where the chain overrules the plain peak,
                e_plain = np.hypot(*(ref_in[k] - truth[k]))      # it must be to a better one
                e_chain = np.hypot(*(chain_in[k] - truth[k]))
                assert e_chain < e_plain, f"phantom {ph.index}: landmark {k} moved {moved_hm[k]:.1f} hm px, error {e_plain:.1f} -> {e_chain:.1f} px"
            err_plain = np.hypot(*(ref_in[vis] - truth[vis]).T).mean()
            err_chain = np.hypot(*(chain_in[vis] - truth[vis]).T).mean()
            assert err_chain <= err_plain + 0.05, f"phantom {ph.index}: chain {err_chain:.3f} px vs plain {err_plain:.3f} px"


@pytest.mark.parametrize("cut", ["bottom", "top"])
def test_body_cut_by_the_film_edge_keeps_its_endplate_in_frame(prior: ChainPrior, phantoms, cut: str) -> None:
    """Bottom: the film ends inside C6 (AS, PS in, PI, AI and below out); top: it starts inside C3."""
    for ph in phantoms:
        kp_in = truth_input_px(ph)
        vis = np.full(NUM_LANDMARKS, 2)
        if cut == "bottom":
            level, kept = 4, [0, 1]
            vis[FIRST_CORNER + C * 4 + 2 :] = 0
        else:
            level, kept = 1, [2, 3]
            vis[: FIRST_CORNER + C * 1 + 2] = 0
        hm = CODEC.encode(kp_in, vis)
        res = decode_chain(hm, prior, CODEC)
        sl = level_slice(level)
        assert res.level_candidate[level] == -1 and res.level_partial[level]
        assert res.found[sl].tolist() == [c in kept for c in range(C)]
        kp_hm = CODEC.input_to_heatmap(kp_in)
        np.testing.assert_allclose(res.landmarks_hm[sl][kept], kp_hm[sl][kept], atol=0.05)
        assert np.all(res.confidence[sl][[c for c in range(C) if c not in kept]] == 0.0)


def test_fit_prior_recovers_the_geometry_it_is_given(phantoms) -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fit_chain_prior", Path(__file__).resolve().parents[1] / "tools" / "fit_chain_prior.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # type: ignore[union-attr]
    rng = np.random.default_rng(5)
    base = phantoms[0].landmarks_px
    sets = [base + rng.normal(0, 0.5, base.shape) for _ in range(40)]
    prior = tool.fit_prior(sets, margin=0.0)
    bodies = np.stack([base[level_slice(i)] for i in range(V)])
    want = pair_features(bodies[:-1], bodies[1:])
    for i, g in enumerate(prior.pairs):
        np.testing.assert_allclose(g.mean, want[i], atol=0.05)
        assert np.all(np.linalg.eigvalsh(g.cov) > 0)
    assert np.all(prior.corner_distance_range[..., 0] <= prior.corner_distance_range[..., 1])
    with pytest.raises(ValueError, match="at least 10 images"):
        tool.fit_prior(sets[:3])


def _model_with_levels(tmp_path, levels):
    import json
    import shutil

    from cervisag_edge.engine.manifest import engines_dir

    from cervisag_edge.engine.manifest import load_manifest
    from cervisag_edge.tooling.adapt.model import data_files

    src = engines_dir()
    for f in ("cervisag_unet.onnx", *data_files(load_manifest(src / "cervisag_unet.json"))):
        shutil.copy(src / f, tmp_path / f)  # what the manifest names: prior, shape model, second stage
    doc = json.loads((src / "cervisag_unet.json").read_text())
    doc["codec"]["levels"] = levels
    (tmp_path / "cervisag_unet.json").write_text(json.dumps(doc))
    return tmp_path / "cervisag_unet.json"


def test_manifest_selects_the_chain_decoder(tmp_path) -> None:
    from cervisag_edge import Measurer
    from cervisag_edge.engine.manifest import engines_dir, sha256_file

    sha = sha256_file(engines_dir() / "chain_prior.json")
    path = _model_with_levels(tmp_path, {"type": "chain", "prior": "chain_prior.json", "sha256": sha})
    with Measurer(str(path), threads=1) as m:
        assert m.chain_prior is not None
        hm = np.zeros((NUM_LANDMARKS, 96, 96), np.float32)  # no evidence at all: no level is visible
        from cervisag_edge.engine.preprocess import letterbox_geometry

        _, tf = letterbox_geometry((400, 500), CODEC.input_size)
        _, _, visible = m.decode(hm, tf)
        assert not visible[FIRST_CORNER:].any()


def test_manifest_chain_prior_is_checked(tmp_path) -> None:
    from cervisag_edge import Measurer
    from cervisag_edge.errors import ModelError

    path = _model_with_levels(tmp_path, {"type": "chain", "prior": "chain_prior.json", "sha256": "0" * 64})
    with pytest.raises(ModelError, match="codec.levels.sha256"):
        Measurer(str(path), threads=1)
    path = _model_with_levels(tmp_path, {"type": "viterbi"})
    with pytest.raises(ModelError, match="codec.levels"):
        Measurer(str(path), threads=1)
