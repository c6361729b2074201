"""The read-path benchmark's pieces that are not timings: the CLI's syntax check, the peer
pipeline's output (same model, same letterbox) and the table rendering."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cervisag_edge import Measurer
from cervisag_edge.tooling.latency.read_path import peer_pipeline, render_read_table
from cervisag_edge.cli.main import main as cli_main

from corpus import dicom_bytes, spine_like, valid_dataset


def test_unknown_transfer_syntax_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--transfer-syntax", "jpeg-xl"]) == 2
    expected = ("--transfer-syntax jpeg-xl: expected uncompressed, rle, jpeg-lossless, jpeg-ls, jpeg2000, "
                "jpeg2000-lossy, htj2k, jpeg-baseline or all")
    assert expected in capsys.readouterr().err


def test_peer_pipeline_runs_the_same_model(tmp_path: Path) -> None:
    path = tmp_path / "cr.dcm"
    path.write_bytes(dicom_bytes(valid_dataset(spine_like(400, 320))))
    with Measurer(threads=1) as m:
        peer = peer_pipeline(str(m.manifest.model_path), m.manifest.input_hw, m.manifest.mean, m.manifest.std)
        heatmaps = peer(str(path))
        ours, _ = m.preprocess_image(__import__("cervisag_edge.io", fromlist=["read_image"]).read_image(path))
        assert heatmaps.shape[:2] == (1, 34) and np.isfinite(heatmaps).all()
        assert heatmaps.shape[2:] == m.backend.infer(ours).shape[2:]


def test_render_read_table_lists_every_row() -> None:
    section = {"rows": [{"syntax": "uncompressed", "precision": "fp32", "end_to_end_ms": 40.0, "read_ms": 10.0,
                         "non_inference_ms": 20.0, "vs_uncompressed": 1.0, "peer_end_to_end_ms": 80.0, "speedup_vs_peer": 2.0}],
               "floors": {"uncompressed": {"file_bytes": 10_000_000, "raw_read_ms": 3.0, "decode_full_ms": 4.0, "memcpy_gb_s": 9.0},
                          "jpeg2000": {"file_bytes": 3_000_000, "raw_read_ms": 0.3, "decode_full_ms": 400.0,
                                       "decode_level_ms": 40.0, "level_factor": 2, "memcpy_gb_s": 9.0}},
               "jpeg2000_decoders": {"imagecodecs threads=1": 120.0, "opencv full shape": "2500x2000"}}
    table = render_read_table(section)
    assert "| uncompressed | fp32 | 40.0 | 10.0 | 20.0 | 1.00 | 80.0 | 2.00× |" in table
    assert "| uncompressed | 10.0 | 3.00 | 4.0 | — | 9.0 |" in table and "| opencv full shape | 2500x2000 |" in table
    assert "| jpeg2000 | 3.0 | 0.30 | 400.0 | 40.0 (factor 2) | 9.0 |" in table
