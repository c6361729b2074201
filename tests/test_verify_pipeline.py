"""``cervisag verify`` end to end with the real Measurer and the shipped model (skipped until the
pipeline and the phantom generator exist). The figures depend on the model's training, so these
tests check the bookkeeping (counts, keys, exit status, worker equivalence), not accuracy."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from cervisag_edge.cli.main import main

from test_verify_support import synthetic_spine_px, write_set

pytest.importorskip("cervisag_edge.core.measurer", reason="cervisag_edge.core.measurer (the Measurer) is not built yet")


def _run(args):
    code = main(["verify", *args, "--no-progress"])
    return code


def test_real_measurer_on_synthetic_pngs(tmp_path, capsys):
    truth = synthetic_spine_px()
    vis = np.full(34, 2)
    vis[0] = 0
    root = write_set(tmp_path / "set", [truth, truth + 3.0], [None, None], vis=[vis, np.full(34, 2)])
    j1, j2 = tmp_path / "w1.json", tmp_path / "w2.json"
    code = _run([str(root), "--json", str(j1)])
    doc = json.loads(j1.read_text())
    assert code == (0 if doc["passed"] else 1)
    assert doc["n_images"] == 2 and doc["n_failed"] == 0
    assert doc["n_landmarks"] + doc["n_missed"] == 33 + 34  # the unlabelled landmark is excluded
    assert doc["backend"] == "onnxruntime" and doc["precision"] == "fp32" and doc["model"]["id"]
    assert _run([str(root), "--json", str(j2), "--workers", "2"]) == code
    doc2 = json.loads(j2.read_text())
    for key in ("mre_mm", "n_missed", "sdr_percent", "parameters"):
        assert doc2[key] == doc[key]
    capsys.readouterr()


def test_real_compare_reports_unavailable_variants_as_skipped(tmp_path, capsys):
    root = write_set(tmp_path / "set", [synthetic_spine_px()], [None])
    js = tmp_path / "m.json"
    _run([str(root), "--compare", "fp32", "int8", "tensorrt:fp16", "--json", str(js)])
    comps = json.loads(js.read_text())["comparisons"]
    assert [c["label"] for c in comps] == ["onnxruntime:int8", "tensorrt:fp16"]
    for c in comps:
        assert c["status"] in ("compared", "skipped")
        assert c["status"] == "compared" or c["reason"]
    capsys.readouterr()


def test_real_measurer_on_phantoms(tmp_path, capsys):
    try:
        generate = getattr(importlib.import_module("cervisag_edge.tooling.phantom"), "generate_dataset", None)
    except ImportError as exc:
        pytest.skip(f"cervisag_edge.tooling.phantom is not importable yet: {exc}")
    if generate is None:
        pytest.skip("cervisag_edge.tooling.phantom.generate_dataset is not built yet")
    out = tmp_path / "ph"
    generate(out, 2, 7, size=(512, 640), fmt="png")
    js = tmp_path / "m.json"
    rep = tmp_path / "rep"
    code = _run([str(out), "--json", str(js), "--report", str(rep)])
    doc = json.loads(js.read_text())
    assert code == (0 if doc["passed"] else 1)
    assert doc["n_images"] == 2 and doc["n_failed"] == 0
    assert all(doc["parameters"][k]["n"] >= 0 for k in doc["parameters"])
    assert (rep / "report.md").is_file()
    capsys.readouterr()
