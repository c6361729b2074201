from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cervisag_edge.errors import ModelError
from cervisag_edge.engine.manifest import engines_dir, load_manifest, sha256_file


@pytest.fixture
def engine_copy(tmp_path: Path) -> Path:
    src = engines_dir()
    files = ["cervisag_unet.onnx", "cervisag_unet.json"]
    refine = json.loads((src / "cervisag_unet.json").read_text()).get("refine")
    if refine:  # a two-stage manifest: its second stage's file too
        files.append(refine["file"])
    for f in files:
        shutil.copy(src / f, tmp_path / f)
    return tmp_path / "cervisag_unet.json"


def test_shipped_manifest_loads_and_matches(engine_copy: Path) -> None:
    m = load_manifest(engine_copy)
    assert m.input_name == "image" and m.output_name == "heatmaps"
    assert m.input_shape[0] == -1 and m.input_shape[1] == 1  # dynamic batch, one grey channel
    h, w = m.input_hw
    assert m.heatmap_shape == (h // m.heatmap_stride, w // m.heatmap_stride)
    assert tuple(m.codec["input_size"]) == (w, h) and tuple(m.codec["heatmap_size"]) == m.heatmap_shape[::-1]
    assert m.sha256 == sha256_file(m.model_path)
    assert m.codec["type"] == "udp-dark"


def test_tampered_model_is_refused(engine_copy: Path) -> None:
    model = engine_copy.with_suffix(".onnx")
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match manifest field sha256"):
        load_manifest(engine_copy)


def test_missing_fields_and_bad_json(engine_copy: Path) -> None:
    raw = json.loads(engine_copy.read_text())
    del raw["sha256"]
    engine_copy.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="lacks field"):
        load_manifest(engine_copy)
    engine_copy.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_manifest(engine_copy)
    with pytest.raises(ModelError, match="not found"):
        load_manifest(engine_copy.parent / "nope.json")


def test_wrong_schema_is_refused(engine_copy: Path) -> None:
    raw = json.loads(engine_copy.read_text())
    raw["landmark_names"] = raw["landmark_names"][:-1]
    engine_copy.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="landmark_names"):
        load_manifest(engine_copy)
