"""Training smoke test: a few steps of a tiny network on phantoms, checkpoint, resume, export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (extra [train]) not installed")

from cervisag_edge.tooling.training.data import AugmentConfig, PhantomSource, make_example  # noqa: E402
from cervisag_edge.tooling.training.loop import TrainConfig, heatmap_loss, load_checkpoint_model, soft_argmax_loss, train  # noqa: E402


def _cfg(**kw: object) -> TrainConfig:
    base = dict(input_size=128, stride=4, widths=(4, 8, 8, 16, 16), head_width=8, batch_size=2, minutes=5.0,
                max_steps=3, warmup_steps=1, threads=1, workers=0, render_long_side=160, val_every_min=100.0)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_few_steps_checkpoint_resume_and_export(tmp_path: Path) -> None:
    cfg = _cfg()
    src = PhantomSource(11, 4, cfg.render_long_side, tmp_path / "cache")
    val = [PhantomSource(12, 2, cfg.render_long_side)[i] for i in range(2)]
    ckpt = train(cfg, src, val, tmp_path / "run")
    assert ckpt.is_file() and (tmp_path / "run" / "history.json").is_file()
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist[-1]["step"] == 3 and np.isfinite(hist[-1]["mre_mm"])
    assert len(list((tmp_path / "cache").glob("*.png"))) == 4  # phantoms cached on first use

    cfg2 = _cfg(max_steps=5)
    ckpt2 = train(cfg2, src, [], tmp_path / "run", resume=ckpt)
    model, cfg_loaded, info = load_checkpoint_model(ckpt2)
    assert info["step"] == 5  # resumed at 3, two more steps
    assert cfg_loaded.widths == (4, 8, 8, 16, 16)

    from cervisag_edge.tooling.training.export import export_onnx as export, parity

    onnx_path = tmp_path / "tiny.onnx"
    export(model, cfg_loaded, onnx_path)
    par = parity(model, cfg_loaded, onnx_path, n_images=2)
    assert par["heatmap_max_abs_diff"] < 1e-3


def test_augmented_example_keeps_labels_on_the_image() -> None:
    cfg = _cfg()
    codec = cfg.codec()
    sample = PhantomSource(13, 1, 200)[0]
    x, target, pts = make_example(sample, codec, cfg.mean, cfg.std, 0.0, np.random.default_rng(0), AugmentConfig())
    assert x.shape == (1, 128, 128) and target.shape == (34, 32, 32)
    ok = np.all(np.isfinite(pts), axis=1)
    assert ok.any()
    # every target peak sits where the transformed landmark is
    peaks, _ = codec.decode(target)
    strong = ok & (target.reshape(34, -1).max(axis=1) > 0.9)
    assert np.abs(peaks[strong] - pts[strong]).max() < 0.3


def test_losses_reward_the_right_answer() -> None:
    t = torch.zeros(1, 2, 16, 16)
    t[0, 0, 5, 7] = 1.0
    t[0, 1, 10, 3] = 1.0
    kp = torch.tensor([[[7.0, 5.0], [3.0, 10.0]]])
    assert heatmap_loss(t, t) == 0.0
    assert heatmap_loss(torch.zeros_like(t), t) > 0.0
    assert soft_argmax_loss(t * 10, kp) < soft_argmax_loss(torch.zeros_like(t), kp)


def test_fov_crop_marks_cut_off_landmarks_not_visible_and_keeps_their_place() -> None:
    from cervisag_edge.tooling.training.data import random_fov_crop

    sample = PhantomSource(13, 1, 240)[0]
    rng = np.random.default_rng(5)
    kinds_seen_cut = 0
    for _ in range(40):
        c = random_fov_crop(sample, rng)
        h, w = c.display.shape
        inside = ((c.landmarks_px[:, 0] >= -0.5) & (c.landmarks_px[:, 0] <= w - 0.5)
                  & (c.landmarks_px[:, 1] >= -0.5) & (c.landmarks_px[:, 1] <= h - 0.5))
        assert np.all(c.visibility[~inside] == 0)  # outside the new frame: v = 0
        assert np.array_equal(c.visibility[inside], sample.visibility[inside])  # inside: unchanged
        # coordinates still tell where a cut-off landmark is: the same shift for every landmark
        shift = sample.landmarks_px - c.landmarks_px
        assert np.allclose(shift, shift[0])
        kinds_seen_cut += int((~inside).any())
    assert kinds_seen_cut >= 15  # most crops cut some landmark off


def test_cut_off_landmarks_get_an_all_zero_target_and_no_coordinate_loss() -> None:
    cfg = _cfg()
    codec = cfg.codec()
    sample = PhantomSource(13, 1, 200)[0]
    aug = AugmentConfig(crop_p=1.0, photometric_p=0.0, rotation_deg=0.0, scale_range=(1.0, 1.0), translate_frac=0.0, flip_p=0.0)
    n_cut = 0
    for seed in range(12):
        _, target, pts = make_example(sample, codec, cfg.mean, cfg.std, 0.0, np.random.default_rng(seed), aug)
        gone = ~np.all(np.isfinite(pts), axis=1)
        assert np.all(target[gone].max(axis=(1, 2)) == 0.0)
        assert np.all(target[~gone].max(axis=(1, 2)) > 0.3)
        n_cut += int(gone.any())
    assert n_cut >= 4


def test_init_weights_seed_a_fresh_run(tmp_path: Path) -> None:
    from cervisag_edge.tooling.training.loop import load_init_weights
    from cervisag_edge.engine.backends.torch_net import LandmarkUNet

    cfg = _cfg()
    a = LandmarkUNet(widths=cfg.widths, out_stride=cfg.stride, head_width=cfg.head_width)
    np.savez(tmp_path / "w.npz", **{k: v.detach().numpy() for k, v in a.state_dict().items()})
    b = LandmarkUNet(widths=cfg.widths, out_stride=cfg.stride, head_width=cfg.head_width)
    load_init_weights(b, tmp_path / "w.npz")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_fov_crop_never_fails_on_any_framing() -> None:
    """Phantoms come in every framing (cephalograms, neck crops, films ending at C3): the crop
    must cope with levels that lie outside the image."""
    from cervisag_edge.tooling.training.data import random_fov_crop

    rng = np.random.default_rng(11)
    for i in range(24):
        sample = PhantomSource(21, 24, 160)[i]
        for _ in range(10):
            c = random_fov_crop(sample, rng)
            assert c.display.ndim == 2 and min(c.display.shape) >= 1
            assert c.visibility.shape == (34,)
