"""Hostile and odd inputs (tests/corpus.py): each gets a measurement or a one-line error naming the
file — never a crash, a hang, or unbounded memory — in-process and through the batch runner."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from cervisag_edge import Measurer
from cervisag_edge.outputs.records import record_of
from cervisag_edge.runner import MeasurerSpec, run_studies, studies_of
from cervisag_edge.errors import CervisagError
from cervisag_edge.core.landmarks import NUM_LANDMARKS
from cervisag_edge.core.measurement import Measurement

from corpus import CASES, JPEG_LOSSLESS_SKIP_REASON, Case, build_case, dicom_bytes, valid_dataset

#: Per-case wall-clock limit for the in-process runs (each case takes well under a second).
CASE_TIMEOUT_S = 60
#: Peak-RSS growth allowed while refusing a bomb: far below what decoding any of them would take
#: (the smallest, 6000 x 6000 x 16 bit, is 72 MB of pixels before any float copy).
BOMB_RSS_LIMIT_MB = 48
REPO = Path(__file__).resolve().parents[1]


def _available(case: Case) -> bool:
    return case.requires is None or importlib.util.find_spec(case.requires) is not None


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.name, marks=pytest.mark.skipif(not _available(c), reason=f"encoder module {c.requires} missing"))
        for c in CASES.values()
    ]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    for case in CASES.values():
        if _available(case):
            build_case(case, folder)
    return folder


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with Measurer(threads=1) as m:
        yield m


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout(f"case exceeded {CASE_TIMEOUT_S} s")


def assert_one_line_error(message: str, path: Path) -> None:
    assert message, "empty error message"
    assert "\n" not in message and "\r" not in message, f"error spans several lines: {message!r}"
    assert path.name in message, f"error does not name the file {path.name}: {message!r}"
    assert "Traceback" not in message


@pytest.mark.parametrize("case", _params())
def test_case_in_process(case: Case, corpus_dir: Path, measurer: Measurer) -> None:
    path = corpus_dir / case.filename
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        result: Measurement | str = measurer.measure(path)
    except CervisagError as exc:  # the only exception family allowed out of measure()
        result = str(exc)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if case.expect == "ok":
        assert isinstance(result, Measurement), f"{case.name} ({case.why}) failed: {result}"
        assert len(result.landmarks) == NUM_LANDMARKS
        assert result.image_size_px[0] >= 1 and result.image_size_px[1] >= 1
    else:
        assert isinstance(result, str), f"{case.name} ({case.why}) was measured but must be refused"
        assert_one_line_error(result, path)


def test_jpeg_lossless_process14(measurer: Measurer, tmp_path: Path) -> None:
    """A corpus CR re-encoded by dcmtk as JPEG Lossless SV1 (1.2.840.10008.1.2.4.70) is measured."""
    import shutil

    if shutil.which("dcmcjpeg") is None:
        pytest.skip(JPEG_LOSSLESS_SKIP_REASON)
    source = tmp_path / "cr.dcm"
    source.write_bytes(dicom_bytes(valid_dataset()))
    out = tmp_path / "lossless_sv1.dcm"
    subprocess.run(["dcmcjpeg", "+e1", str(source), str(out)], check=True, capture_output=True, timeout=60)
    result = measurer.measure(out)
    assert len(result.landmarks) == NUM_LANDMARKS and result.image_size_px == measurer.measure(source).image_size_px


def test_whole_corpus_through_batch_runner_with_timeout(corpus_dir: Path) -> None:
    """One spawn worker, a per-study timeout: every file gets exactly one record, in order, with the
    expected outcome, and nothing times out (no case hangs)."""
    cases = [c for c in CASES.values() if _available(c)]
    files = [str(corpus_dir / c.filename) for c in cases]
    records = [record_of(r) for r in run_studies(studies_of(files), MeasurerSpec(threads=1), timeout_s=CASE_TIMEOUT_S)]
    assert [r["file"] for r in records] == files
    for case, rec in zip(cases, records):
        assert rec["ok"] is (case.expect == "ok"), f"{case.name}: {rec['error']}"
        if rec["ok"]:
            assert rec["error"] is None and len(rec["measurement"]["landmarks"]) == NUM_LANDMARKS
        else:
            assert rec["measurement"] is None
            assert "timed out" not in rec["error"]
            assert_one_line_error(rec["error"], corpus_dir / case.filename)


_RSS_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a safety net for the machine, not the check
    from cervisag_edge.errors import InputError
    from cervisag_edge.io import read_image

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

    # Warm-up: read a small valid file of the same format first, so that the lazy imports of the
    # decoders (OpenCV, pydicom's pixel plugins: tens of MB of libraries) are not counted as the
    # bomb's growth. The check is then the rise of the high-water mark caused by the bomb alone.
    suffix = sys.argv[1].rsplit(".", 1)[-1].lower()
    if suffix in ("png", "tif", "tiff", "jpg", "jpeg"):
        import os, tempfile
        import cv2, numpy as np
        warm = os.path.join(tempfile.mkdtemp(), "warm." + suffix)
        cv2.imwrite(warm, np.full((8, 8), 100, np.uint8))
        read_image(warm)
    before = status("VmHWM")
    try:
        read_image(sys.argv[1])
        outcome = "ok"
    except InputError as exc:
        outcome = str(exc)
    print(json.dumps({"before_kb": before, "peak_kb": status("VmHWM"), "outcome": outcome}))
    """
)


@pytest.mark.parametrize("case", [c for c in CASES.values() if c.bomb], ids=lambda c: c.name)
def test_bomb_memory_stays_bounded(case: Case, corpus_dir: Path) -> None:
    """Each bomb is refused in a fresh process whose peak RSS barely moves from its pre-read RSS."""
    path = corpus_dir / case.filename
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True, text=True,
                          timeout=CASE_TIMEOUT_S, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["outcome"] != "ok"
    assert_one_line_error(report["outcome"], path)
    growth_mb = (report["peak_kb"] - report["before_kb"]) / 1024
    assert growth_mb < BOMB_RSS_LIMIT_MB, f"{case.name}: peak RSS grew by {growth_mb:.0f} MB while refusing it"
