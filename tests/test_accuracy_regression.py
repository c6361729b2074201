"""Accuracy regression gate of the shipped model on a small fixed phantom set (CI).

The set is regenerated deterministically (seed 4242, 40 phantoms of every variant and framing, 1024 px) and
measured end to end from DICOM with ``cervisag verify``. The expected figures and their
tolerances live in ``cervisag_edge/data/thresholds_ci_phantoms.json`` (written down when the
model was shipped; see engines/MODEL_CARD.md). A model, reader or decoder change that moves
them fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cervisag_edge.cli.main import main

CI_SEED = 4242
CI_COUNT = 40
CI_LONG_SIDE = 1024


@pytest.fixture(scope="module")
def ci_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cervisag_edge.tooling.phantom import generate_dataset

    out = tmp_path_factory.mktemp("ci_phantoms")
    generate_dataset(out, CI_COUNT, CI_SEED, progress=False, out_long_side=CI_LONG_SIDE)
    return out


def test_shipped_model_meets_recorded_figures(ci_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "metrics.json"
    rc = main(["verify", str(ci_set), "--thresholds", "ci_phantoms", "--json", str(out), "--no-progress"])
    doc = json.loads(out.read_text())
    failures = doc.get("failures")
    assert rc == 0, f"accuracy regression on the CI phantom set: {failures}"
    assert doc["n_images"] == CI_COUNT and doc["n_failed"] == 0
    assert doc["passed"] is True


def test_gate_fails_when_thresholds_are_not_met(ci_set: Path, tmp_path: Path) -> None:
    """The same run against an impossible threshold must exit 1 and name the failing metric."""
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({
        "name": "impossible", "version": "1", "source": "test",
        "thresholds": [{"metric": "mre_mm", "op": "<=", "value": 0.001}],
    }))
    out = tmp_path / "m.json"
    rc = main(["verify", str(ci_set), "--thresholds", str(strict), "--json", str(out), "--no-progress", "--limit", "3"])
    assert rc == 1
    assert any("mre_mm" in f for f in json.loads(out.read_text())["failures"])
