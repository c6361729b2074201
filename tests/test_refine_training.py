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


def test_crops_carry_the_first_stages_landmark_marks(source: PhantomSource, monkeypatch) -> None:
    """Stage 2 trains on the same landmark-aware variants as stage 1 (annotation marks and the
    C2 synchondrosis, ``data.apply_marks``), drawn on the study before the crops are cut."""
    import cervisag_edge.tooling.training.refine as refine_mod

    seen: list[tuple] = []

    def spy(img, pts, rng, cfg):
        seen.append((img.shape, pts.shape))
        return np.clip(img + 0.25, 0, 1).astype(np.float32)  # a visible change

    s = source[0]
    plain = level_crops(s, CFG, np.random.default_rng(5))
    monkeypatch.setattr(refine_mod, "apply_marks", spy)
    marked = level_crops(s, CFG, np.random.default_rng(5))
    assert seen == [(s.display.shape, s.landmarks_px.shape)]  # once per study, on the whole display
    assert len(marked) == len(plain) and any(np.abs(a[0] - b[0]).max() > 0.1 for a, b in zip(plain, marked))
    seen.clear()
    level_crops(s, CFG, None)  # validation crops: never marked
    assert seen == []


def test_fine_tuning_starts_from_the_given_weights(source: PhantomSource, tmp_path) -> None:
    from dataclasses import replace

    from cervisag_edge.tooling.training.refine import build_model

    init = build_model(CFG)
    with torch.no_grad():
        for p in init.parameters():
            p.fill_(0.0125)
    path = tmp_path / "init.pt"
    torch.save({"model": init.state_dict()}, path)
    ck = train_refine(replace(CFG, max_steps=1, lr=0.0), source, [], tmp_path / "run", init=path)
    got = torch.load(ck, weights_only=True)["model"]
    for k, v in init.named_parameters():  # lr 0: one step keeps the initial weights (BN statistics move)
        torch.testing.assert_close(got[k], v.detach())
    fresh = torch.load(train_refine(replace(CFG, max_steps=1, lr=0.0), source, [], tmp_path / "fresh"), weights_only=True)
    assert any(not torch.equal(fresh["model"][k], v.detach()) for k, v in init.named_parameters())
