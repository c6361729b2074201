"""The study runner: one error text in every mode, input order, default timeout with workers,
sinks where the study is measured, and the Measurer's path/LoadedImage entry points."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from cervisag_edge import runner
from cervisag_edge.errors import InputError
from cervisag_edge.core.landmarks import LANDMARK_NAMES
from cervisag_edge.core.measurement import Landmark, Measurement
from cervisag_edge.core.parameters import unavailable_parameters
from cervisag_edge.runner import MeasurerSpec, Study, StudyResult, error_text, run_studies, studies_of

SCRIPTED = "test_runner:ScriptedMeasurer"


class ScriptedMeasurer:
    """Fails or stalls by file name (``input_*``: InputError, ``crash_*``: RuntimeError over two
    lines, ``slow_*``: sleeps a minute); anything else gives an empty measurement."""

    def __init__(self, model=None, backend="onnxruntime", precision="fp32", threads=None):
        self.backend = backend

    def measure(self, path, pixel_spacing_mm=None):
        name = Path(path).name
        if name.startswith("input_"):
            raise InputError(f"{path}: (0028,0010) Rows 0 found, a value > 0 expected")
        if name.startswith("crash_"):
            raise RuntimeError("decoder\nexploded")
        if name.startswith("slow_"):
            time.sleep(60)
        lms = tuple(Landmark(n, float("nan"), float("nan"), None, None, 0.0, False) for n in LANDMARK_NAMES)
        return Measurement(source=str(path), landmarks=lms, parameters=unavailable_parameters(LANDMARK_NAMES),
                           pixel_spacing_mm=None, spacing_source="none", image_size_px=(4, 4), model_id="scripted:fp32",
                           model_sha256="0" * 64, backend=self.backend, precision="fp32")


@dataclass(frozen=True)
class MarkerSink:
    """Writes ``<index>.txt`` holding the pid of the process that consumed the result."""

    folder: str

    def consume(self, result: StudyResult) -> None:
        import os

        Path(self.folder, f"{result.index}.txt").write_text(str(os.getpid()))


def _studies(tmp_path: Path, names: list[str]) -> list[Study]:
    return studies_of([tmp_path / n for n in names])


def test_error_text_is_one_line_and_names_the_file() -> None:
    assert error_text("a.dcm", InputError("a.dcm: (0028,0004) 'RGB' found")) == "a.dcm: (0028,0004) 'RGB' found"
    assert error_text("a.dcm", InputError("no file named")) == "a.dcm: no file named"
    assert error_text("a.dcm", MemoryError("out\nof memory")) == "a.dcm: MemoryError: out of memory"


@pytest.mark.parametrize("workers", [2])
def test_errors_are_the_same_serially_and_in_the_pool(tmp_path: Path, workers: int) -> None:
    names = ["ok_0.dcm", "input_1.dcm", "crash_2.dcm", "ok_3.dcm"]
    spec = MeasurerSpec(factory=SCRIPTED)
    serial = list(run_studies(_studies(tmp_path, names), spec))
    pooled = list(run_studies(_studies(tmp_path, names), spec, workers=workers))
    assert [r.index for r in serial] == [r.index for r in pooled] == [0, 1, 2, 3]
    assert [r.error for r in serial] == [r.error for r in pooled]
    assert [r.ok for r in pooled] == [True, False, False, True]
    assert pooled[1].error == f"{tmp_path / 'input_1.dcm'}: (0028,0010) Rows 0 found, a value > 0 expected"
    assert pooled[2].error == f"{tmp_path / 'crash_2.dcm'}: RuntimeError: decoder exploded"


def test_default_timeout_applies_with_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "DEFAULT_STUDY_TIMEOUT_S", 2.0)
    names = ["ok_0.dcm", "slow_1.dcm", "ok_2.dcm"]
    seen: list[tuple[int, int]] = []
    t0 = time.monotonic()
    got = list(run_studies(_studies(tmp_path, names), MeasurerSpec(factory=SCRIPTED), workers=2,
                           progress=lambda d, t, r: seen.append((d, t))))
    assert time.monotonic() - t0 < 40  # the 60 s study was abandoned
    assert [r.ok for r in got] == [True, False, True]
    assert "slow_1.dcm: measurement timed out after" in got[1].error and "(limit 2 s)" in got[1].error
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_limits_are_checked_up_front(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="3 files exceeds the maximum batch size 2"):
        next(run_studies(_studies(tmp_path, ["a", "b", "c"]), MeasurerSpec(factory=SCRIPTED), max_studies=2))
    with pytest.raises(ValueError, match="workers 0"):
        next(run_studies([], MeasurerSpec(factory=SCRIPTED), workers=0))


def test_sinks_run_in_the_worker_and_results_carry_no_study(tmp_path: Path) -> None:
    import os

    out = tmp_path / "marks"
    out.mkdir()
    got = list(run_studies(_studies(tmp_path, ["ok_0", "ok_1"]), MeasurerSpec(factory=SCRIPTED), workers=2,
                           sinks=(MarkerSink(str(out)),)))
    assert all(r.ok and r.measurement.study is None for r in got)
    pids = {int((out / f"{i}.txt").read_text()) for i in range(2)}
    assert os.getpid() not in pids


def test_a_load_error_stops_the_run_in_every_mode(tmp_path: Path) -> None:
    from cervisag_edge.errors import ModelError

    spec = MeasurerSpec(model=str(tmp_path / "none.onnx"), threads=1)
    for workers in (1, 2):
        with pytest.raises(ModelError, match="manifest not found"):
            list(run_studies(_studies(tmp_path, ["a.png"]), spec, workers=workers))


# -- the Measurer's entry points (real model) ---------------------------------------------------
@pytest.fixture(scope="module")
def measurer():
    from cervisag_edge import Measurer

    with Measurer(threads=1) as m:
        yield m


def _png(path: Path) -> Path:
    yy, xx = np.mgrid[0:300, 0:240]
    cv2.imwrite(str(path), (40 + 0.3 * xx + 0.2 * yy).astype(np.uint8))
    return path


def test_measure_takes_a_path_or_a_loaded_study(measurer, tmp_path: Path) -> None:
    from cervisag_edge.io import read_image

    path = _png(tmp_path / "s.png")
    by_path = measurer.measure(path, pixel_spacing_mm=(0.2, 0.2))
    img = read_image(path, pixel_spacing_mm=(0.2, 0.2))
    by_study = measurer.measure(img)
    assert by_study.study is img and by_path.study is not None and by_path.study.path == str(path)
    assert by_study.landmarks == by_path.landmarks and by_study.parameters == by_path.parameters
    assert by_study.timings_ms["read_ms"] == 0.0 and by_path.timings_ms["read_ms"] > 0.0
    assert "study" not in by_path.to_dict()
    assert by_path.timings_ms["inference_ms"] > 0.0
    assert measurer.backend.last_inference_ms == pytest.approx(by_study.timings_ms["inference_ms"])
    with pytest.raises(ValueError, match="applies when reading a path"):
        measurer.measure(img, pixel_spacing_mm=(0.1, 0.1))


def test_measure_many_uses_the_runner(measurer, tmp_path: Path) -> None:
    good = _png(tmp_path / "good.png")
    bad = tmp_path / "missing.dcm"
    got = list(measurer.measure_many([good, bad]))
    assert [r.index for r in got] == [0, 1] and got[0].ok and got[0].measurement.study is None
    assert got[1].error == f"{bad}: file not found"
    assert (measurer.spec.backend, measurer.spec.precision, measurer.spec.threads) == ("onnxruntime", "fp32", 1)
