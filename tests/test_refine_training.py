"""Stage-2 training pieces: crops and targets agree with the runtime geometry; checkpoints resume."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (extra [train]) not installed")

from cervisag_edge.engine.crop import apply_affine, invert_affine  # noqa: E402
from cervisag_edge.tooling.training.data import PhantomSource  # noqa: E402
from cervisag_edge.tooling.training.refine import RefineConfig, level_crops, train_refine  # noqa: E402

CFG = RefineConfig(size_px=64, stride=2, widths=(8, 8, 8, 16, 16), render_long_side=384, phantoms_per_batch=1,
                   ckpt_every_min=100.0, val_every_min=100.0)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> PhantomSource:
    return PhantomSource(31, 2, CFG.render_long_side, tmp_path_factory.mktemp("cache"))


def test_targets_decode_to_the_true_corners(source: PhantomSource) -> None:
    s = source[0]
    crops = level_crops(s, CFG, np.random.default_rng(0))
    assert crops, "a phantom has labelled levels"
    codec = CFG.codec()
    for x, target, kp, M in crops:
        assert x.shape == (1, 64, 64) and target.shape == (4, 32, 32)
        ok = np.all(np.isfinite(kp), axis=1) & (target.max(axis=(1, 2)) > 0.9)  # visible, inside the crop
        dec, _ = codec.decode(target)
        np.testing.assert_allclose(dec[ok], kp[ok], atol=0.35)  # UDP round trip on an un-blurred Gaussian
        back = apply_affine(invert_affine(M), kp[ok])  # crop px back to image px: one of the true corners
        dist = np.min(np.linalg.norm(back[:, None] - s.landmarks_px[None], axis=-1), axis=1)
        assert np.all(dist < 1e-6)


def test_jitter_moves_the_corners_off_centre(source: PhantomSource) -> None:
    s = source[0]
    fixed = level_crops(s, CFG, None)
    jittered = level_crops(s, CFG, np.random.default_rng(1))
    d = [np.nanmean(np.abs(a[2] - b[2])) for a, b in zip(fixed, jittered)]
    assert np.nanmean(d) > 0.5  # crop px: the start is not the truth


def test_training_checkpoints_and_resumes(source: PhantomSource, tmp_path) -> None:
    from dataclasses import replace

    ck = train_refine(replace(CFG, max_steps=2), source, [], tmp_path)
    first = torch.load(ck, weights_only=True)
    assert first["step"] == 2 and json.loads(first["config"])["size_px"] == 64
    ck2 = train_refine(replace(CFG, max_steps=3), source, [], tmp_path, resume=ck)
    again = torch.load(ck2, weights_only=True)
    assert again["step"] == 3 and again["cursor"] > first["cursor"]
