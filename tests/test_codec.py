"""Round trips of the UDP heatmap codec and DARK decoding."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.engine.codec import UDPHeatmapCodec, decode_dark


@pytest.fixture
def codec() -> UDPHeatmapCodec:
    return UDPHeatmapCodec(input_size=(512, 512), heatmap_size=(256, 256), sigma=2.0)


def test_round_trip_random_float_positions(codec: UDPHeatmapCodec) -> None:
    rng = np.random.default_rng(7)
    kp = rng.uniform(4, 507, size=(34, 2))
    coords, scores = codec.decode(codec.encode(kp))
    err_hm = np.abs(codec.input_to_heatmap(coords) - codec.input_to_heatmap(kp))
    assert err_hm.max() < 0.05
    assert np.all(scores > 0.9)


def test_round_trip_batched_matches_single(codec: UDPHeatmapCodec) -> None:
    rng = np.random.default_rng(8)
    kps = rng.uniform(10, 500, size=(3, 34, 2))
    hm = np.stack([codec.encode(k) for k in kps])
    coords, _ = codec.decode(hm)
    for i in range(3):
        single, _ = codec.decode(hm[i])
        np.testing.assert_allclose(coords[i], single)
    assert np.abs(coords - kps).max() * codec.scale_xy.max() < 0.05


def test_msra_style_mismatch_is_caught(codec: UDPHeatmapCodec) -> None:
    """Encoding with x/stride (MSRA) but decoding with UDP gives a bias the round trip exposes."""
    rng = np.random.default_rng(9)
    kp = rng.uniform(100, 400, size=(34, 2))
    msra = UDPHeatmapCodec(input_size=(512, 512), heatmap_size=(256, 256), sigma=2.0)
    # build MSRA targets by hand: heatmap centre at kp / stride
    w = h = 256
    xs, ys = np.arange(w), np.arange(h)
    c = kp / 2.0
    hm = np.exp(-((xs[None, None, :] - c[:, 0, None, None]) ** 2 + (ys[None, :, None] - c[:, 1, None, None]) ** 2) / 8.0)
    coords, _ = msra.decode(hm.astype(np.float32))
    err = np.abs(coords - kp).mean()
    assert err > 0.1  # the UDP decode of MSRA targets is visibly biased
    good, _ = codec.decode(codec.encode(kp))
    assert np.abs(good - kp).mean() < 0.02


def test_hidden_and_outside_amplitudes(codec: UDPHeatmapCodec) -> None:
    kp = np.array([[100.0, 100.0], [200.0, 200.0], [600.0, 10.0]])
    hm = codec.encode(kp, np.array([2, 1, 2]))
    assert hm.shape == (3, 256, 256)
    assert hm[0].max() == pytest.approx(1.0, abs=0.05)
    assert hm[1].max() == pytest.approx(codec.hidden_amplitude, abs=0.05)
    assert hm[2].max() == 0.0  # outside the input: empty map
    assert codec.encode(kp, np.array([0, 0, 0])).max() == 0.0


def test_dark_refines_beyond_argmax(codec: UDPHeatmapCodec) -> None:
    kp = np.array([[101.3, 57.7]])
    hm = codec.encode(kp)
    coords, _ = decode_dark(hm)
    plain = np.array(np.unravel_index(np.argmax(hm[0]), hm[0].shape))[::-1]
    assert np.abs(coords[0] - codec.input_to_heatmap(kp)[0]).max() < 0.05
    assert np.abs(plain - codec.input_to_heatmap(kp)[0]).max() > 0.2


def test_decode_is_robust_to_flat_and_border_maps(codec: UDPHeatmapCodec) -> None:
    hm = np.zeros((2, 256, 256), np.float32)
    hm[1, 0, 0] = 1.0
    coords, scores = decode_dark(hm)
    assert np.all(np.isfinite(coords))
    assert scores[0] == 0.0 and scores[1] == 1.0
    assert np.all(np.abs(coords[1]) <= 1.0)


def test_manifest_round_trip(codec: UDPHeatmapCodec) -> None:
    assert UDPHeatmapCodec.from_manifest(codec.to_manifest()) == codec
    with pytest.raises(ValueError, match="codec type 'msra'"):
        UDPHeatmapCodec.from_manifest({"type": "msra"})


def test_bad_shapes_raise(codec: UDPHeatmapCodec) -> None:
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        codec.encode(np.zeros((34, 3)))
    with pytest.raises(ValueError, match="visibility must have shape"):
        codec.encode(np.zeros((34, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="heatmaps must have shape"):
        decode_dark(np.zeros((5, 5)))
