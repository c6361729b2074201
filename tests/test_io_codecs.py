"""Every transfer syntax CR/DX archives use decodes in the default install (imagecodecs).

The compressed files are made at run time with dcmtk (``dcmcjpeg +e1`` JPEG Lossless SV1,
``dcmcjpeg +ee`` 12-bit JPEG Extended, ``dcmcjpls`` JPEG-LS, ``dcmcrle`` RLE) from a phantom DX and
from pydicom-data's RG1/RG3 CR films; nothing binary is committed. Lossless syntaxes must give the
uncompressed file's display exactly; the lossy one must stay close and be measured.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pydicom
import pytest

from cervisag_edge import Measurer
from cervisag_edge.errors import InputError
from cervisag_edge.io import read_image
from cervisag_edge.io.codecs import codec_table, decode_grey, decoder_for

from realdata import pydicom_data_dir

DATA = pydicom_data_dir()
DCMTK = shutil.which("dcmcjpeg") is not None and shutil.which("dcmcjpls") is not None
needs_dcmtk = pytest.mark.skipif(not DCMTK, reason="dcmtk (dcmcjpeg, dcmcjpls, dcmcrle) is not installed; .ci/run installs it")
needs_data = pytest.mark.skipif(DATA is None, reason="pydicom-data (package data_store) is not installed")

#: dcmtk command → transfer syntax UID it writes, and whether it is lossless.
ENCODERS = {
    "jpeg_lossless_sv1": (["dcmcjpeg", "+e1"], "1.2.840.10008.1.2.4.70", True),
    "jpeg_extended_12bit": (["dcmcjpeg", "+ee"], "1.2.840.10008.1.2.4.51", False),
    "jpeg_ls_lossless": (["dcmcjpls"], "1.2.840.10008.1.2.4.80", True),
    "rle": (["dcmcrle"], "1.2.840.10008.1.2.5", True),
}


def _encode(src: Path, kind: str, out_dir: Path) -> Path:
    command, _uid, _lossless = ENCODERS[kind]
    out = out_dir / f"{src.stem}_{kind}.dcm"
    done = subprocess.run([*command, str(src), str(out)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return out


@pytest.fixture(scope="module")
def phantom_12bit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom DX with its stored values reduced to 12 bits (JPEG Extended holds at most 12)."""
    from cervisag_edge.tooling.phantom import render_phantom, write_dicom

    folder = tmp_path_factory.mktemp("codecs")
    path = write_dicom(render_phantom(11, 0, out_long_side=640), folder / "phantom_dx.dcm")
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array >> 4
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.BitsStored, ds.HighBit = 12, 11
    ds.RescaleSlope = f"{float(ds.RescaleSlope) * 16:.10g}"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def measurer() -> Iterator[Measurer]:
    with Measurer(threads=1) as m:
        yield m


def _sources(phantom: Path) -> list[Path]:
    out = [phantom]
    if DATA is not None:
        out += [DATA / "RG1_UNCR.dcm", DATA / "RG3_UNCR.dcm"]
    return out


@needs_dcmtk
@pytest.mark.parametrize("kind", list(ENCODERS))
def test_dcmtk_encoded_radiographs_decode_and_measure(kind: str, phantom_12bit: Path, measurer: Measurer,
                                                      tmp_path: Path) -> None:
    _command, uid, lossless = ENCODERS[kind]
    for src in _sources(phantom_12bit):
        if kind == "jpeg_extended_12bit" and int(pydicom.dcmread(src, stop_before_pixels=True).BitsStored) > 12:
            continue  # RG1 stores 15 bits: JPEG Extended cannot hold it
        enc = _encode(src, kind, tmp_path)
        ref, got = read_image(src), read_image(enc)
        assert str(got.dataset.file_meta.TransferSyntaxUID) == uid
        assert got.size_px == ref.size_px
        if lossless:
            np.testing.assert_array_equal(got.display, ref.display)
        else:
            assert float(np.abs(got.display - ref.display).mean()) < 0.005, f"{enc.name}: lossy display drifted"
        m = measurer.measure(enc)
        assert m.image_size_px == ref.size_px and len(m.landmarks) == 34


@needs_dcmtk
def test_lossy_12bit_phantom_landmarks_stay_put(phantom_12bit: Path, measurer: Measurer, tmp_path: Path) -> None:
    """12-bit JPEG Extended of the phantom: the landmarks move little against the uncompressed file."""
    ref = measurer.measure(phantom_12bit)
    got = measurer.measure(_encode(phantom_12bit, "jpeg_extended_12bit", tmp_path))
    a = np.array([[lm.x_px, lm.y_px] for lm in ref.landmarks])
    b = np.array([[lm.x_px, lm.y_px] for lm in got.landmarks])
    assert float(np.median(np.hypot(*(a - b).T))) < 2.0


@needs_data
@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGExtended.dcm", "JPEG-lossy.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_corpus_nm_us_jpeg_files_decode_but_are_refused_by_modality(name: str) -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom's test files")
    ds = pydicom.dcmread(path)
    stored = decode_grey(ds)
    assert stored.shape == (int(ds.Rows), int(ds.Columns)) and stored.max() > stored.min()
    with pytest.raises(InputError, match=r"\(0008,0060\) Modality '(NM|US)' is not a projection radiograph") as err:
        read_image(path)
    assert "decod" not in str(err.value)


def test_every_cr_dx_syntax_has_an_imagecodecs_decoder() -> None:
    table = {uid: decoder for uid, _name, decoder in codec_table()}
    for uid in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
                "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5"):
        assert table[uid].startswith("imagecodecs."), f"{uid}: {table[uid]}"
    assert decoder_for("1.2.840.10008.1.2.1") == "pydicom (native)"
