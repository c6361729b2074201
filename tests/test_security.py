"""Integrity and confinement: models load only through sha256-checked manifests, nothing is
unpickled at run time, no network is touched, and DICOM outputs carry no identity the input lacked."""
from __future__ import annotations

import ast
import shutil
import signal
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
import pytest

import cervisag_edge
from cervisag_edge import Measurer
from cervisag_edge.outputs.records import record_of
from cervisag_edge.outputs.sinks import file_sinks
from cervisag_edge.runner import MeasurerSpec, run_studies, studies_of
from cervisag_edge.errors import ModelError
from cervisag_edge.engine.manifest import engines_dir, load_manifest

from corpus import CASES, build_case, dicom_bytes, valid_dataset

PACKAGE = Path(cervisag_edge.__file__).resolve().parent
MODEL = "cervisag_unet"


# ------------------------------------------------------------------------------- model integrity


@pytest.fixture()
def engines_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "engines"
    shutil.copytree(engines_dir(), folder, ignore=shutil.ignore_patterns("*.plan*", "*.timing.cache"))
    return folder


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_untouched_copy_loads(engines_copy: Path) -> None:
    m = Measurer(engines_copy / f"{MODEL}.json", threads=1)
    assert m.manifest.model_path == engines_copy / f"{MODEL}.onnx"


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_tampered_onnx_refused(engines_copy: Path, where: str) -> None:
    onnx = engines_copy / f"{MODEL}.onnx"
    size = onnx.stat().st_size
    _flip_byte(onnx, {"start": 0, "middle": size // 2, "end": size - 1}[where])
    with pytest.raises(ModelError, match=r"sha256 .* does not match manifest field sha256 .*tampered or mismatched"):
        Measurer(engines_copy / f"{MODEL}.json", threads=1)


def test_mismatched_model_file_refused(engines_copy: Path) -> None:
    """A different (valid) model put in place of the named file is refused too."""
    onnx = engines_copy / f"{MODEL}.onnx"
    import onnx as onnx_lib

    model = onnx_lib.load(str(onnx))
    model.doc_string = "swapped"
    onnx_lib.save(model, str(onnx))
    with pytest.raises(ModelError, match="does not match manifest"):
        load_manifest(engines_copy / f"{MODEL}.json")


def test_missing_model_file_and_missing_hash(engines_copy: Path) -> None:
    manifest = engines_copy / f"{MODEL}.json"
    (engines_copy / f"{MODEL}.onnx").unlink()
    with pytest.raises(ModelError, match="does not exist"):
        Measurer(manifest, threads=1)
    text = manifest.read_text().replace('"sha256"', '"sha256_removed"', 1)
    manifest.write_text(text)
    with pytest.raises(ModelError, match="lacks field"):
        load_manifest(manifest)


def test_tampered_torch_weights_refused(engines_copy: Path) -> None:
    pytest.importorskip("torch")
    weights = engines_copy / f"{MODEL}.torch.npz"
    _flip_byte(weights, weights.stat().st_size // 2)
    with pytest.raises(ModelError, match="torch_weights.sha256"):
        Measurer(engines_copy / f"{MODEL}.json", backend="torch", threads=1)


def test_tampered_model_in_worker_pool_stops_the_batch(engines_copy: Path, tmp_path: Path) -> None:
    """Workers that cannot load the model must not respawn forever: the batch raises the ModelError."""
    _flip_byte(engines_copy / f"{MODEL}.onnx", 1000)
    study = build_case(CASES["png"], tmp_path)

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("run_studies hung on a model that cannot load")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        with pytest.raises(ModelError, match="tampered or mismatched"):
            list(run_studies(studies_of([study]), MeasurerSpec(model=str(engines_copy / f"{MODEL}.json"), threads=1), workers=2))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------- no unpickling

_PICKLERS = frozenset({"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"})


def unsafe_loads(source: str, filename: str = "<src>") -> list[str]:
    """Lines of ``source`` that could deserialise untrusted code: pickle-family imports and loads,
    ``torch.load``, ``np.load`` without ``allow_pickle=False``, ``allow_pickle=True``, eval/exec."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in _PICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLERS:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            dotted = ast.unparse(func)
            pickle_flag = next((k for k in node.keywords if k.arg == "allow_pickle"), None)
            if pickle_flag is not None and not (isinstance(pickle_flag.value, ast.Constant) and pickle_flag.value.value is False):
                found.append(f"{where}: {dotted}(allow_pickle={ast.unparse(pickle_flag.value)})")
            if dotted in ("torch.load", "torch.jit.load") or (
                isinstance(func, ast.Attribute) and func.attr in ("load", "loads", "Unpickler")
                and isinstance(func.value, ast.Name) and func.value.id in _PICKLERS
            ):
                found.append(f"{where}: {dotted}(...)")
            elif dotted in ("np.load", "numpy.load") and pickle_flag is None:
                found.append(f"{where}: {dotted} without allow_pickle=False")
            elif isinstance(func, ast.Name) and func.id in ("eval", "exec"):
                found.append(f"{where}: {func.id}(...)")
    return found


def test_scanner_finds_each_pattern() -> None:
    bad = (
        "import pickle\nfrom joblib import load\nimport torch\nimport numpy as np\n"
        "a = torch.load('w.pt')\nb = pickle.loads(x)\nc = np.load('a.npy')\nd = np.load('a.npz', allow_pickle=True)\n"
        "e = eval('1')\nf = np.load('b.npy', allow_pickle=False)\n"
    )
    found = unsafe_loads(bad)
    assert [f.split(":")[1] for f in found] == ["1", "2", "5", "6", "7", "8", "9"], found


def test_runtime_package_never_unpickles() -> None:
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if "training" not in p.relative_to(PACKAGE).parts]
    assert len(files) > 20  # the scan really covers the package
    found = [hit for p in files for hit in unsafe_loads(p.read_text(encoding="utf-8"), str(p.relative_to(PACKAGE)))]
    assert found == []


# ------------------------------------------------------------------------------- no network


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    attempts: list[str] = []

    def refuse(name: str):
        def blocked(*args: object, **kwargs: object) -> None:
            attempts.append(name)
            raise OSError(f"network access attempted at run time: socket.{name}")

        return blocked

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname", "socketpair"):
        monkeypatch.setattr(socket, name, refuse(name))
    yield attempts


def test_measurement_without_network(no_network: list[str], tmp_path: Path) -> None:
    dicom = tmp_path / "study.dcm"
    dicom.write_bytes(dicom_bytes(valid_dataset()))
    png = build_case(CASES["png"], tmp_path)
    out = tmp_path / "out"
    with Measurer(threads=1) as m:
        assert len(m.measure(dicom).landmarks) == 34
    records = [record_of(r) for r in run_studies(studies_of([dicom, png]), MeasurerSpec(threads=1), sinks=file_sinks(str(out), str(out)))]
    assert all(r["ok"] for r in records), [r["error"] for r in records]
    assert len(list(out.glob("*_sc.dcm"))) == 2 and len(list(out.glob("*_sr.dcm"))) == 2
    assert no_network == []


# ------------------------------------------------------------------------------- no invented identity

#: Patient, study and institution attributes that must come from the input or not at all.
IDENTITY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientComments", "EthnicGroup", "StudyInstanceUID", "StudyID",
    "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "InstitutionName",
    "InstitutionAddress", "PerformingPhysicianName", "OperatorsName",
)


def _rich_source() -> pydicom.Dataset:
    ds = valid_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Zoë^Müller=山田^花子"
    ds.PatientID = "PID-42"
    ds.PatientBirthDate = "19700102"
    ds.PatientSex = "F"
    ds.StudyID = "S7"
    ds.StudyDate, ds.StudyTime = "20240305", "101500"
    ds.AccessionNumber = "ACC123"
    ds.ReferringPhysicianName = "Doe^John"
    ds.InstitutionName = "General Hospital"
    ds.PatientOrientation = ["A", "F"]
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    return ds


def _sparse_source() -> pydicom.Dataset:
    """A non-conformant source without any patient or study identity attribute (not even empty)."""
    ds = valid_dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                    "ReferringPhysicianName", "StudyDate", "StudyTime"):
        delattr(ds, keyword)
    return ds


def _value(ds: pydicom.Dataset, keyword: str) -> str:
    if keyword not in ds:
        return ""
    return str(ds[keyword].value or "")


def _written_outputs(source_ds: pydicom.Dataset | None, tmp_path: Path) -> list[pydicom.Dataset]:
    from cervisag_edge.io import read_image
    from cervisag_edge.outputs.dicom_out import write_secondary_capture, write_structured_report
    from cervisag_edge.outputs.overlay import render_overlay

    if source_ds is not None:
        path = tmp_path / "in.dcm"
        path.write_bytes(dicom_bytes(source_ds))
    else:
        path = build_case(CASES["png"], tmp_path)
    img = read_image(path, pixel_spacing_mm=(0.2, 0.2))
    with Measurer(threads=1) as m:
        measurement = m.measure(img)
    overlay = render_overlay(img.display, measurement)
    sc = write_secondary_capture(overlay, measurement, tmp_path / "sc.dcm", source=img.dataset)
    write_structured_report(measurement, tmp_path / "sr.dcm", source=img.dataset, overlay_sc=sc)
    return [pydicom.dcmread(tmp_path / "sc.dcm"), pydicom.dcmread(tmp_path / "sr.dcm")]


@pytest.mark.parametrize("make_source", [_rich_source, _sparse_source], ids=["rich", "sparse"])
def test_dicom_outputs_copy_identity_and_invent_none(make_source, tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    src = make_source()
    for out in _written_outputs(src, tmp_path):
        for keyword in IDENTITY:
            found = _value(out, keyword)
            if found:
                assert found == _value(src, keyword), f"{out.SOPClassUID.name}: {keyword} {found!r} not from the input"
        for elem in out:
            if elem.tag.group == 0x0010 and elem.VR != "SQ" and str(elem.value or ""):
                assert elem.keyword in src and str(src[elem.tag].value) == str(elem.value), f"{elem.keyword} invented"
    # every identity value the rich source had reaches both outputs unchanged (what PACS files them by)
    if make_source is _rich_source:
        for out in _written_outputs(src, tmp_path):
            for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "AccessionNumber"):
                assert _value(out, keyword) == _value(src, keyword)


def test_dicom_outputs_without_dicom_source_carry_no_identity(tmp_path: Path) -> None:
    pytest.importorskip("highdicom")
    for out in _written_outputs(None, tmp_path):
        present = {k: _value(out, k) for k in IDENTITY if k != "StudyInstanceUID" and _value(out, k)}
        assert present == {}, f"{out.SOPClassUID.name} invents {present}"
        assert np.all([e.tag.group != 0x0010 or not str(e.value or "") for e in out])
