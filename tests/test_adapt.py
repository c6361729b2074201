"""``cervisag adapt``: a tiny site run produces a loadable, provenance-stamped model; the gate
compares real measurements; bad input is one line naming the file; site models resolve by folder."""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch (extra [train]) not installed")
pytest.importorskip("cervisag_edge.tooling.phantom", reason="phantom generator not installed")

from cervisag_edge.cli.main import main  # noqa: E402
from cervisag_edge.engine.manifest import engines_dir, load_manifest, sha256_file, site_model_warning  # noqa: E402
from cervisag_edge.engine.resolver import manifest_path_for, model_dir_stem  # noqa: E402
from cervisag_edge.errors import InputError  # noqa: E402
from cervisag_edge.tooling.adapt.sitedata import split_site  # noqa: E402

LOOSE = {"name": "loose", "version": "1", "thresholds": [{"metric": "mre_mm", "op": "<=", "value": 1000}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base model (input 128) and six held-out-style phantoms as the 'site'."""
    from cervisag_edge.engine.backends.torch_net import LandmarkUNet
    from cervisag_edge.tooling.phantom.dataset import generate_dataset
    from cervisag_edge.tooling.training.export import write_model
    from cervisag_edge.tooling.training.loop import TrainConfig

    root = tmp_path_factory.mktemp("adapt")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = TrainConfig(input_size=128, stride=4, widths=(4, 8, 8, 8, 8), head_width=8, render_long_side=160, threads=1)
    net = LandmarkUNet(widths=cfg.widths, out_stride=cfg.stride, head_width=cfg.head_width)
    codec = {**cfg.codec().to_manifest(), "confidence_threshold": 0.3}
    write_model(net, cfg, root / "engines", "cervisag_tiny", codec=codec, training={"render_long_side": 160})
    generate_dataset(root / "site", 6, 77, fmt="png", out_long_side=200, style="heldout", progress=False)
    (root / "loose.json").write_text(json.dumps(LOOSE))
    return root


def test_adapt_writes_a_loadable_model_with_provenance_and_gate(tiny: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cervisag_edge.core.measurer import Measurer
    from cervisag_edge.tooling.adapt.pipeline import AdaptOptions, adapt

    base_manifest = tiny / "engines" / "cervisag_tiny.json"
    out = tiny / "out"
    res = adapt(AdaptOptions(out=out, data=tiny / "site", model=str(base_manifest), max_steps=2, batch_size=2, threads=1,
                             phantom_share=0.0, thresholds=str(tiny / "loose.json"), val_fraction=0.2, test_fraction=0.34))
    m = load_manifest(res.manifest_path)  # sha256-checked
    site, ver = m.extra["site"], m.extra["verification"]
    base = load_manifest(base_manifest)
    assert m.base_model == base.file and site["base"]["onnx_sha256"] == base.sha256
    assert site["dataset"]["n_studies"] == 6 and len(site["dataset"]["annotations_sha256"]) == 64
    assert site["split"]["n_train"] + site["split"]["n_val"] + site["split"]["n_test"] == 6
    assert site["date"].startswith("20") and site["training"]["steps"] == 2
    # the gate's record: its metrics file, hashed; the verdict follows the measured numbers
    metrics = json.loads((out / ver["metrics_file"]).read_text())
    assert sha256_file(out / ver["metrics_file"]) == ver["metrics_sha256"]
    assert ver["model_sha256"] == m.sha256 and ver["thresholds"]["name"] == "loose" and len(ver["thresholds"]["sha256"]) == 64
    base_mre = json.loads((out / "verify_base.json").read_text())["mre_mm"]
    assert ver["candidate"]["mre_mm"] == metrics["mre_mm"] and ver["base"]["mre_mm"] == base_mre
    assert ver["passed"] == (metrics["passed"] and metrics["mre_mm"] <= base_mre) == res.verified
    assert (out / "MODEL_CARD.md").read_text().count("MRE") >= 1
    # the folder resolves like a shipped model; an unverified site model warns in one line
    assert manifest_path_for(out, "onnxruntime", "fp32") == res.manifest_path
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cervisag_edge.core.measurer"):
        measurer = Measurer(model=out, threads=1)
    measurer.close()
    warned = [r.getMessage() for r in caplog.records if "not verified" in r.getMessage()]
    assert (len(warned) == 1 and "\n" not in warned[0]) == (not res.verified)


def test_unlabelled_methods_make_candidates_that_the_gate_measures(tiny: Path) -> None:
    from cervisag_edge.tooling.adapt.pipeline import AdaptOptions, adapt

    out = tiny / "out_unlabelled"
    res = adapt(AdaptOptions(out=out, unlabelled=tiny / "site", holdout=tiny / "site", model=str(tiny / "engines" / "cervisag_tiny.json"),
                             methods=("norm", "bn"), threads=1, reference_count=2, thresholds=str(tiny / "loose.json")))
    assert set(res.candidates) == {"norm", "bn"}
    for method, rec in res.candidates.items():
        m = load_manifest(out / "candidates" / method / "cervisag_site.json")
        assert m.extra["site"]["method"] == f"unlabelled: {method}" and m.extra["verification"] == rec
        assert rec["candidate"]["n_images"] == 6
    norm = load_manifest(out / "candidates" / "norm" / "cervisag_site.json")
    assert (norm.mean, norm.std) != (0.5, 0.25)  # re-estimated statistics live in the manifest
    # a candidate with a held-out MRE ranks before one without (the tiny model's weak heatmaps can
    # make every image not_lateral_cspine: no landmark reported, no MRE)
    measurable = [k for k in res.candidates if res.candidates[k]["candidate"]["mre_mm"] is not None]
    if measurable:
        chosen = min(measurable, key=lambda k: (not res.candidates[k]["passed"], not res.candidates[k]["no_worse_than_base"],
                                                res.candidates[k]["candidate"]["mre_mm"]))
        assert res.chosen == chosen
    else:
        assert res.chosen in res.candidates and not any(r["passed"] for r in res.candidates.values())


def test_normalisation_maps_site_pixels_onto_the_reference_distribution() -> None:
    from cervisag_edge.tooling.adapt.unlabelled import normalisation_for
    from cervisag_edge.tooling.training.data import Sample
    from cervisag_edge.tooling.training.loop import TrainConfig

    rng = np.random.default_rng(0)
    ref = [Sample(rng.beta(2, 3, size=(40, 30)).astype(np.float32), np.zeros((34, 2)), np.zeros(34, int), None, "r")]
    site = [replace(ref[0], display=(0.4 * ref[0].display + 0.35).astype(np.float32))]  # flatter, brighter film
    cfg = TrainConfig()
    mean, std = normalisation_for(site, ref, cfg)
    np.testing.assert_allclose((site[0].display - mean) / std, (ref[0].display - cfg.mean) / cfg.std, atol=2e-3)


def test_gate_refuses_a_corrupted_candidate_and_accepts_an_identical_one(tmp_path: Path) -> None:
    """The shipped model against a copy with the heatmap head's landmark channels reversed
    (C2 answers for T1 and so on), measured on the same phantoms."""
    import onnx
    from onnx import numpy_helper

    from cervisag_edge.tooling.adapt.gate import run_gate
    from cervisag_edge.tooling.adapt.model import data_files
    from cervisag_edge.tooling.phantom.dataset import generate_dataset
    from cervisag_edge.tooling.verify import load_dataset, load_thresholds

    generate_dataset(tmp_path / "held", 2, 4242, fmt="png", out_long_side=480, progress=False)
    held = load_dataset(tmp_path / "held")
    thresholds = load_thresholds(str(_write(tmp_path / "loose.json", LOOSE)))
    shipped = manifest_path_for(None, "onnxruntime", "fp32")

    def candidate(folder: Path, corrupt: bool) -> Path:
        folder.mkdir()
        base = load_manifest(shipped)
        for f in (base.file, *data_files(base)):
            shutil.copy2(engines_dir() / f, folder / f)
        model = folder / base.file
        if corrupt:
            g = onnx.load(str(model))
            for init in g.graph.initializer:
                if init.name in ("head.weight", "head.bias"):
                    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[::-1].copy(), init.name))
            onnx.save(g, str(model))
        doc = json.loads(shipped.read_text())
        doc["sha256"] = sha256_file(model)
        path = folder / shipped.name
        path.write_text(json.dumps(doc))
        return path

    bad = run_gate(candidate(tmp_path / "bad", True), shipped, held, thresholds, tmp_path / "bad", threads=1)
    assert not bad.passed and not bad.record["no_worse_than_base"] and any("worse than the base" in r for r in bad.reasons)
    b, c = bad.record["base"], bad.record["candidate"]
    assert c["found_percent"] < b["found_percent"] - 20 or c["mre_mm"] > b["mre_mm"] + 5.0  # measured, really worse
    same = run_gate(candidate(tmp_path / "same", False), shipped, held, thresholds, tmp_path / "same", threads=1,
                    base_metrics=bad.base)
    assert same.passed and same.record["no_worse_than_base"] and same.record["candidate"]["mre_mm"] == pytest.approx(bad.base["mre_mm"])


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_bad_input_is_one_line_naming_the_file(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    shutil.copytree(tiny / "site", site)
    doc = json.loads((site / "annotations.json").read_text())
    doc["categories"][0]["keypoints"][0] = "NOSE"
    (site / "annotations.json").write_text(json.dumps(doc))
    args = ["adapt", "--data", str(site), "--out", str(tmp_path / "o"), "--model", str(tiny / "engines" / "cervisag_tiny.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(site / "annotations.json") in err[0] and "unknown names NOSE" in err[0]

    doc["categories"][0]["keypoints"][0] = "MCG_PNS"
    (site / "annotations.json").write_text(json.dumps(doc))
    (site / doc["images"][0]["file_name"]).unlink()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and doc["images"][0]["file_name"] in err[0] and "not found" in err[0]

    assert main(["adapt", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err


def test_split_is_deterministic_disjoint_and_refuses_too_few() -> None:
    names = [f"study_{i:03d}.dcm" for i in range(40)]
    a = split_site(names, 0.15, 0.25)
    b = split_site(list(reversed(names)), 0.15, 0.25)
    assert a == b and (len(a.test), len(a.val), len(a.train)) == (10, 6, 24)
    assert sorted(a.train + a.val + a.test) == names
    grown = split_site(names + [f"study_{i:03d}.dcm" for i in range(40, 44)], 0.15, 0.25)
    assert len(set(grown.test) & set(a.test)) >= 7  # added studies move few of the earlier ones
    with pytest.raises(InputError, match="too few"):
        split_site(names[:2], 0.15, 0.25)


def test_site_model_warning_and_folder_resolution(tmp_path: Path) -> None:
    shipped = load_manifest(manifest_path_for(None, "onnxruntime", "fp32"))
    assert site_model_warning(shipped) is None  # shipped models are not site models
    unverified = replace(shipped, extra={**shipped.extra, "site": {"method": "x"}, "verification": {"passed": False, "reason": "MRE worse"}})
    msg = site_model_warning(unverified)
    assert msg and "not verified (MRE worse)" in msg and "\n" not in msg
    ok = {"passed": True, "model_sha256": shipped.sha256, "model_file": shipped.file}
    assert site_model_warning(replace(unverified, extra={**unverified.extra, "verification": ok})) is None
    other = {**ok, "model_sha256": "0" * 64}
    assert "another model file" in site_model_warning(replace(unverified, extra={**unverified.extra, "verification": other}))
    variant = replace(unverified, sha256="1" * 64, base_model=shipped.file, extra={**unverified.extra, "verification": ok})
    assert site_model_warning(variant) is None  # a precision variant of the verified FP32 file
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "m.fp16.onnx").write_bytes(b"")
    assert model_dir_stem(tmp_path) == "m"
    assert manifest_path_for(tmp_path, "onnxruntime", "fp16") == tmp_path / "m.fp16.json"
    (tmp_path / "n.onnx").write_bytes(b"")
    assert model_dir_stem(tmp_path) == tmp_path.name  # two models: the lookup fails naming the folder


def test_curve_tool_subsets_point_back_at_the_pool_and_tabulate(tiny: Path, tmp_path: Path) -> None:
    from cervisag_edge.tooling.adapt.sitedata import load_site
    from toolmodules import load_tool

    curve = load_tool("adapt_curve")
    pool = tmp_path / "pool"
    shutil.copytree(tiny / "site", pool)
    sub = load_site(curve.subset_annotations(pool, 3, tmp_path / "data_n3"))
    assert len(sub.items) == 3 and all(Path(it.path).resolve().parent == pool.resolve() for it in sub.items)
    rows = [curve.row("base model (before)", 0, {"mre_mm": 1.5, "sdr_percent": {"2.0": 80.0}, "parameters": {}}, {"found_percent": 90.0}),
            curve.row("labelled fine-tuning", 3, {"mre_mm": 1.25, "sdr_percent": {"2.0": 85.0},
                                                 "parameters": {"ccl_deg": {"mae": 2.5}}}, {"found_percent": 91.0, "verified": True})]
    table = curve.markdown(rows, 8, "full")
    assert "| labelled fine-tuning | 3 | 1.250 | 85.0 | 91.0 |" in table and "2.50" in table and "8 site phantoms" in table


def test_early_stopping_keeps_the_best_validation_and_stops_on_patience(tmp_path: Path) -> None:
    """Patience 1: the run validates before the first step and after each, stops at the first
    validation that is not better than the best so far (or at max_steps), and best.pt holds the
    weights of the best validation."""
    from cervisag_edge.tooling.training.data import PhantomSource
    from cervisag_edge.tooling.training.loop import TrainConfig, load_checkpoint_model, train

    cfg = TrainConfig(input_size=64, stride=4, widths=(4, 4, 4, 4, 4), head_width=4, batch_size=2, lr=5e-2, max_steps=8,
                      warmup_steps=1, threads=1, workers=0, render_long_side=96, val_every_min=1e9, val_every_steps=1,
                      patience=1)
    src = PhantomSource(21, 2, 96)
    final = train(cfg, src, [src[0], src[1]], tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    mre = [h["mre_mm"] for h in hist]
    assert [h["step"] for h in hist] == list(range(len(hist))) and hist[0]["step"] == 0
    assert all(b < a for a, b in zip(mre[:-2], mre[1:-1]))  # every validation but the last improved
    if len(hist) < cfg.max_steps + 1:  # stopped early: on a validation that was not better
        assert not mre[-1] < min(mre[:-1])
    _, _, info = load_checkpoint_model(tmp_path / "run" / "best.pt")
    assert info["step"] == hist[int(np.argmin(mre))]["step"] and load_checkpoint_model(final)[2]["step"] == hist[-1]["step"]
