"""Harness, metrics document, comparisons, baseline, CLI exit codes and report, on a small
synthetic set measured by the fake Measurer of ``test_verify_support`` (expected figures worked
out by hand from the offsets written into the sidecars)."""
from __future__ import annotations

import functools
import json
import sys

import numpy as np
import pytest

from cervisag_edge.cli.main import main
from cervisag_edge.tooling.verify import MeasurerSpec, load_dataset, load_thresholds, verify
from cervisag_edge.tooling.verify.compare import parse_variants
from cervisag_edge.tooling.verify.harness import run_measurements

from test_verify_support import FAKE_FACTORY, SIX, as_list, synthetic_spine_px, write_set

SPACING = (0.25, 0.25)
REF_PARAMS = [dict(zip(SIX, (5.0, 10.0, 20.0, 30.0, 25.0, 15.0))), dict(zip(SIX, (7.0, 14.0, 30.0, 40.0, 35.0, 25.0))), None]
PRED_PARAMS = [dict(zip(SIX, (6.0, 11.0, 21.0, 31.0, 26.0, 16.0))), dict(zip(SIX, (6.0, 13.0, 29.0, 39.0, 34.0, 24.0))), None]


@pytest.fixture()
def dataset_dir(tmp_path):
    """img0: every landmark 4 px (1 mm) off; img1: landmark 0 12 px (3 mm) off, landmark 1 missed,
    landmark 2 unlabelled (v 0), landmark 3 hidden (v 1) and exact; img2: unreadable (fails)."""
    truth = synthetic_spine_px()
    p0 = truth + np.array([4.0, 0.0])
    p1 = truth.copy()
    p1[0, 1] += 12.0
    p1[1] = np.nan
    p1[2] += 40.0  # predicted far off, but excluded because unlabelled
    vis1 = np.full(34, 2)
    vis1[2], vis1[3] = 0, 1
    return write_set(
        tmp_path / "set", [truth, truth, truth], [as_list(p0), as_list(p1), None],
        vis=[np.full(34, 2), vis1, np.full(34, 2)], spacing=SPACING,
        ref_params=REF_PARAMS, pred_params=PRED_PARAMS, fp16_shift_px=0.4,
    )


def _spec(**kw):
    return MeasurerSpec(factory=FAKE_FACTORY, **kw)


def _loose(tmp_path):
    p = tmp_path / "loose.json"
    p.write_text(json.dumps({"name": "loose", "version": "1", "thresholds": [
        {"metric": "mre_mm", "op": "<=", "value": 2.0},
        {"metric": "sdr_percent/4.0", "op": ">=", "value": 90},
        {"metric": "n_failed", "op": "<=", "value": 1}]}))
    return str(p)


def test_metrics_by_hand(dataset_dir):
    out = verify(load_dataset(dataset_dir), _spec(), load_thresholds("paper2025"))
    m = out.metrics
    assert m["n_images"] == 3 and m["n_failed"] == 1
    assert m["failed_images"][0]["file_name"] == "img_002.png"
    # the study runner's one error text: the InputError's own message, naming the file
    assert m["failed_images"][0]["error"].endswith("img_002.png: cannot read image (fake: no sidecar)")
    # finite errors: 34 × 1 mm (img0) + 3 mm + 31 × 0 (img1, one of them hidden); one missed; one
    # unlabelled excluded. Headline figures are over the visible (v = 2) landmarks: 65 finite + 1 missed.
    assert m["landmarks_scored"] == "visible (v = 2)"
    assert m["n_landmarks"] == 65 and m["n_missed"] == 1
    assert m["mre_mm"] == pytest.approx(37 / 65)
    assert m["max_mm"] == pytest.approx(3.0)
    assert m["sdr_percent"] == pytest.approx({"2.0": 100 * 64 / 66, "2.5": 100 * 64 / 66, "3.0": 100 * 65 / 66, "4.0": 100 * 65 / 66})
    al = m["all_labelled"]
    assert al["n"] == 66 and al["mean_mm"] == pytest.approx(37 / 66)
    assert al["sdr_percent"] == pytest.approx({"2.0": 100 * 65 / 67, "2.5": 100 * 65 / 67, "3.0": 100 * 66 / 67, "4.0": 100 * 66 / 67})
    assert m["hidden"]["n"] == 1 and m["hidden"]["mean_mm"] == 0.0
    assert m["visible"]["n"] == 65 and m["visible"]["n_missed"] == 1
    assert m["per_landmark"]["MCG_PNS"]["mean_mm"] == pytest.approx(2.0)  # 1 mm and 3 mm
    assert m["per_landmark"]["MCG_OCC"]["n"] == 1 and m["per_landmark"]["MCG_OCC"]["n_missed"] == 1
    assert m["per_landmark"]["C1_ANT"]["n"] == 1  # unlabelled on img1
    b = m["parameters"]["borden_mm"]
    assert b["n"] == 2 and b["mae"] == pytest.approx(1.0) and b["bias"] == pytest.approx(0.0)
    assert m["parameters"]["ccl_deg"]["mae"] == pytest.approx(1.0)
    assert m["model"]["id"] == "fake:fp32" and m["backend"] == "onnxruntime" and m["precision"] == "fp32"
    assert m["thresholds"]["name"] == "paper2025"
    assert not out.passed and m["failures"] and "1 of 3 images failed" in m["failures"][0]


def test_workers_give_the_same_results(dataset_dir):
    items = load_dataset(dataset_dir).items
    seen = []
    one = run_measurements(items, _spec(), workers=1)
    two = run_measurements(items, _spec(), workers=2, progress=lambda d, t, f: seen.append((d, t, f)))
    assert [r.index for r in two] == [0, 1, 2]
    assert [r.error is None for r in two] == [True, True, False]
    for a, b in zip(one, two):
        if a.measurement is not None:
            np.testing.assert_array_equal(a.measurement.landmarks_px(), b.measurement.landmarks_px())
    assert seen[0] == (0, 3, 0) and seen[-1] == (3, 3, 1)


def test_worker_that_cannot_build_reports_every_image(dataset_dir):
    items = load_dataset(dataset_dir).items
    with pytest.raises(Exception, match="int8"):
        run_measurements(items, _spec(precision="int8"), workers=2)


def test_parse_variants():
    assert parse_variants(["fp16", "int8"], "onnxruntime", "fp32") == [
        ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8")]
    assert parse_variants(["int8", "fp32", "tensorrt:fp16"], "onnxruntime", "fp32") == [
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tensorrt", "fp16")]
    assert parse_variants(["tensorrt"], "onnxruntime", "fp16", backends_only=True) == [
        ("onnxruntime", "fp16"), ("tensorrt", "fp16")]


def test_compare_variants(dataset_dir):
    out = verify(load_dataset(dataset_dir), _spec(), load_thresholds("paper2025"),
                 variants=parse_variants(["fp32", "fp16", "int8"], "onnxruntime", "fp32"))
    fp16, int8 = out.metrics["comparisons"]
    assert int8["status"] == "skipped" and "no int8 engine" in int8["reason"]
    assert fp16["status"] == "compared" and fp16["n_images"] == 2
    # every found landmark moves 0.4 px in x = 0.1 mm
    assert fp16["shift_mean_px"] == pytest.approx(0.4) and fp16["shift_max_mm"] == pytest.approx(0.1)
    assert fp16["mae_delta"]["borden_mm"] == pytest.approx(0.0)
    # MRE change: img0 errors become 4.4 px = 1.1 mm; img1's exact ones 0.1 mm; 3 mm → hypot(3, 0.1)
    new_mre = (34 * 1.1 + np.hypot(3.0, 0.1) + 30 * 0.1) / 65  # visible landmarks only
    assert fp16["mre_delta_mm"] == pytest.approx(new_mre - 37 / 65)
    assert fp16["passed"] is True  # ≤ 0.1 mm added MRE
    assert [r.label for r in out.runs] == ["onnxruntime:fp32", "onnxruntime:fp16"]


def test_cli_exit_codes_json_and_baseline(dataset_dir, tmp_path, monkeypatch, capsys):
    import cervisag_edge.tooling.verify as V

    monkeypatch.setattr(V, "MeasurerSpec", functools.partial(MeasurerSpec, factory=FAKE_FACTORY))
    loose = _loose(tmp_path)
    js = tmp_path / "m.json"
    assert main(["verify", str(dataset_dir), "--thresholds", loose, "--json", str(js), "--no-progress"]) == 0
    doc = json.loads(js.read_text())
    for key in ("mre_mm", "sd_mm", "sdr_percent", "parameters", "icc_pooled", "n_images", "n_failed", "passed",
                "failures", "per_landmark", "visible", "hidden", "thresholds", "model", "backend", "precision"):
        assert key in doc
    assert set(doc["sdr_percent"]) == {"2.0", "2.5", "3.0", "4.0"}
    assert set(doc["parameters"]["ccl_deg"]) >= {"mae", "sd", "smape", "bias", "loa", "icc"}
    assert doc["passed"] is True and doc["thresholds"]["name"] == "loose"
    assert "PASSED" in capsys.readouterr().out

    # paper2025 fails (an image failed): exit 1, the failure named on stderr
    assert main(["verify", str(dataset_dir), "--no-progress"]) == 1
    assert "1 of 3 images failed" in capsys.readouterr().err

    # a baseline 0.2 mm better than now is a regression beyond the 0.1 mm tolerance
    base = dict(doc, mre_mm=doc["mre_mm"] - 0.2)
    bp = tmp_path / "base.json"
    bp.write_text(json.dumps(base))
    assert main(["verify", str(dataset_dir), "--thresholds", loose, "--baseline", str(bp), "--no-progress"]) == 1
    assert "regression: mre_mm" in capsys.readouterr().err
    bp.write_text(json.dumps(dict(doc, mre_mm=doc["mre_mm"] - 0.05)))
    assert main(["verify", str(dataset_dir), "--thresholds", loose, "--baseline", str(bp), "--no-progress"]) == 0

    # usage and input errors: 2
    assert main(["verify", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert main(["verify", str(dataset_dir), "--thresholds", "no_such_set", "--no-progress"]) == 2
    assert main(["verify", str(dataset_dir), "--workers", "0"]) == 2
    assert main(["verify"]) == 2
    capsys.readouterr()


def test_cli_progress_and_limit(dataset_dir, tmp_path, monkeypatch, capsys):
    import cervisag_edge.tooling.verify as V

    monkeypatch.setattr(V, "MeasurerSpec", functools.partial(MeasurerSpec, factory=FAKE_FACTORY))
    js = tmp_path / "m.json"
    assert main(["verify", str(dataset_dir), "--limit", "2", "--thresholds", _loose(tmp_path), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["n_images"] == 2
    err = capsys.readouterr().err
    assert "2/2 failed 0" in err


def test_report_files(dataset_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the [docs] extra) not installed")
    from cervisag_edge.tooling.verify.report import write_report

    out = verify(load_dataset(dataset_dir), _spec(), load_thresholds("paper2025"))
    files = write_report(out, tmp_path / "rep")
    names = {f.name for f in files}
    expected = {"report.md", "error_cdf.png", "landmark_errors.png", "worst_1.png", "worst_2.png"}
    expected |= {f"bland_altman_{k}.png" for k in SIX}
    assert names == expected
    for f in files:
        assert f.stat().st_size > 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "FAILED" in md and "img_002.png" in md and "![error CDF](error_cdf.png)" in md


def test_report_without_matplotlib(dataset_dir, tmp_path, monkeypatch):
    from cervisag_edge.tooling.verify.report import write_report

    out = verify(load_dataset(dataset_dir), _spec(), load_thresholds("paper2025"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    files = write_report(out, tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "matplotlib is not installed" in md
    assert not any(f.name.startswith(("error_cdf", "bland_altman")) for f in files)
