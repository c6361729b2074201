"""The corpus as a test: ``cervisag measure`` over pydicom's own test files and pydicom-data.

Every file is either measured (a projection radiograph) or gets exactly one clean stderr line
naming it; no traceback reaches stderr, no file passes its timeout, and no CT, MR, US, NM or other
non-radiograph is measured. :data:`EXPECTED` holds the outcome per file (``"ok"`` or the start of
its error after the file name), so a change in behaviour shows up here. The folders are located
inside the installed packages; nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realdata import pydicom_data_dir

REPO = Path(__file__).resolve().parents[1]
PYDICOM_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
DATA = pydicom_data_dir()
pytestmark = pytest.mark.skipif(DATA is None or not PYDICOM_FILES.is_dir(),
                                reason="pydicom-data (package data_store) or pydicom's test files are not installed")
#: Per-file limit given to ``cervisag measure --timeout``.
TIMEOUT_S = 60

EXPECTED: dict[str, str] = {
    **dict.fromkeys("""
        pydicom-data/693_J2KR.dcm pydicom-data/693_UNCI.dcm pydicom-data/693_UNCR.dcm
        pydicom-data/bad_sequence.dcm pydicom-data/eCT_Supplemental.dcm pydicom-data/explicit_VR-UN.dcm
        pydicom/693_J2KI.dcm pydicom/CT_small.dcm pydicom/J2K_pixelrep_mismatch.dcm
        pydicom/dicomdirtests/77654033/CT2/17106 pydicom/dicomdirtests/77654033/CT2/17136
        pydicom/dicomdirtests/77654033/CT2/17166 pydicom/dicomdirtests/77654033/CT2/17196
        pydicom/dicomdirtests/98892001/CT2N/6293 pydicom/dicomdirtests/98892001/CT2N/6924
        pydicom/dicomdirtests/98892001/CT5N/2062 pydicom/dicomdirtests/98892001/CT5N/2392
        pydicom/dicomdirtests/98892001/CT5N/2693 pydicom/dicomdirtests/98892001/CT5N/3023
        pydicom/dicomdirtests/98892001/CT5N/3353
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000001
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000002
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000003
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000004
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000005
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000006
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000007
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000008
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000009
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000A
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000B
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000C
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000D
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000E
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000F
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000G
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000H
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000I
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000J
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000K
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000L
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000M
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000N
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000O
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000P
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Q
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000R
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000S
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000T
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000U
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000V
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000W
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000X
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Y
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00000Z
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000010
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000011
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000012
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000013
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000014
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000015
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000016
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000017
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000018
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000019
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001A
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001B
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001C
        pydicom/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM00001D
        """.split(), "(0008,0060) Modality 'CT'"),
    **dict.fromkeys("""
        pydicom/waveform_ecg.dcm
        """.split(), "(0008,0060) Modality 'ECG'"),
    **dict.fromkeys("""
        pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm pydicom-data/MR2_J2KI.dcm pydicom-data/MR2_J2KR.dcm
        pydicom-data/MR2_UNCI.dcm pydicom-data/MR2_UNCR.dcm pydicom-data/emri_small.dcm
        pydicom-data/emri_small_RLE.dcm pydicom-data/emri_small_big_endian.dcm
        pydicom-data/emri_small_jpeg_2k_lossless.dcm pydicom-data/emri_small_jpeg_ls_lossless.dcm
        pydicom/MR_small.dcm pydicom/MR_small_RLE.dcm pydicom/MR_small_bigendian.dcm
        pydicom/MR_small_expb.dcm pydicom/MR_small_implicit.dcm pydicom/MR_small_jp2klossless.dcm
        pydicom/MR_small_jpeg_ls_lossless.dcm pydicom/MR_small_padded.dcm pydicom/MR_truncated.dcm
        pydicom/dicomdirtests/98892003/MR1/15820 pydicom/dicomdirtests/98892003/MR1/4919
        pydicom/dicomdirtests/98892003/MR1/5641 pydicom/dicomdirtests/98892003/MR2/15970
        pydicom/dicomdirtests/98892003/MR2/4950 pydicom/dicomdirtests/98892003/MR2/4981
        pydicom/dicomdirtests/98892003/MR2/5011 pydicom/dicomdirtests/98892003/MR2/6273
        pydicom/dicomdirtests/98892003/MR2/6605 pydicom/dicomdirtests/98892003/MR2/6935
        pydicom/dicomdirtests/98892003/MR700/4467 pydicom/dicomdirtests/98892003/MR700/4528
        pydicom/dicomdirtests/98892003/MR700/4558 pydicom/dicomdirtests/98892003/MR700/4588
        pydicom/dicomdirtests/98892003/MR700/4618 pydicom/dicomdirtests/98892003/MR700/4648
        pydicom/dicomdirtests/98892003/MR700/4678 pydicom/examples_overlay.dcm
        """.split(), "(0008,0060) Modality 'MR'"),
    **dict.fromkeys("""
        pydicom-data/JPEG-LL.dcm pydicom-data/JPEG2000_UNC.dcm pydicom/JPEG-lossy.dcm
        pydicom/JPEG2000-embedded-sequence-delimiter.dcm pydicom/JPEG2000.dcm pydicom/JPGExtended.dcm
        """.split(), "(0008,0060) Modality 'NM'"),
    **dict.fromkeys("""
        pydicom/badVR.dcm pydicom/rtdose.dcm pydicom/rtdose_1frame.dcm pydicom/rtdose_expb.dcm
        pydicom/rtdose_expb_1frame.dcm pydicom/rtdose_rle.dcm pydicom/rtdose_rle_1frame.dcm
        """.split(), "(0008,0060) Modality 'RTDOSE'"),
    **dict.fromkeys("""
        pydicom/rtplan.dcm pydicom/rtplan_truncated.dcm
        """.split(), "(0008,0060) Modality 'RTPLAN'"),
    **dict.fromkeys("""
        pydicom-data/liver.dcm pydicom-data/liver_expb.dcm pydicom/liver_1frame.dcm
        pydicom/liver_expb_1frame.dcm
        """.split(), "(0008,0060) Modality 'SEG'"),
    **dict.fromkeys("""
        pydicom/reportsi.dcm pydicom/reportsi_with_empty_number_tags.dcm pydicom/test-SR.dcm
        """.split(), "(0008,0060) Modality 'SR'"),
    **dict.fromkeys("""
        pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm pydicom-data/OBXXXX1A.dcm
        pydicom-data/OBXXXX1A_2frame.dcm pydicom-data/OBXXXX1A_expb.dcm
        pydicom-data/OBXXXX1A_expb_2frame.dcm pydicom-data/OBXXXX1A_rle.dcm
        pydicom-data/OBXXXX1A_rle_2frame.dcm pydicom-data/US1_J2KI.dcm pydicom-data/US1_J2KR.dcm
        pydicom-data/US1_UNCI.dcm pydicom-data/US1_UNCR.dcm pydicom-data/color-pl.dcm
        pydicom-data/color-px.dcm pydicom-data/color3d_jpeg_baseline.dcm pydicom-data/gdcm-US-ALOKA-16.dcm
        pydicom-data/gdcm-US-ALOKA-16_big.dcm pydicom/ExplVR_BigEnd.dcm pydicom/examples_jpeg2k.dcm
        pydicom/examples_palette.dcm pydicom/examples_rgb_color.dcm pydicom/examples_ybr_color.dcm
        """.split(), "(0008,0060) Modality 'US'"),
    **dict.fromkeys("""
        pydicom/JPEGLSNearLossless_08.dcm pydicom/JPEGLSNearLossless_16.dcm
        """.split(), '(0008,0060) Modality absent'),
    **dict.fromkeys("""
        pydicom-data/OT-PAL-8-face.dcm
        """.split(), "(0028,0004) PhotometricInterpretation 'PALETTE COLOR'"),
    **dict.fromkeys("""
        pydicom-data/SC_rgb.dcm pydicom-data/SC_rgb_16bit.dcm pydicom-data/SC_rgb_16bit_2frame.dcm
        pydicom-data/SC_rgb_2frame.dcm pydicom-data/SC_rgb_32bit.dcm pydicom-data/SC_rgb_32bit_2frame.dcm
        pydicom-data/SC_rgb_dcmtk_ebcr_dcmd.dcm pydicom-data/SC_rgb_dcmtk_ebcyn1_dcmd.dcm
        pydicom-data/SC_rgb_dcmtk_ebcyn2_dcmd.dcm pydicom-data/SC_rgb_dcmtk_ebcynp_dcmd.dcm
        pydicom-data/SC_rgb_dcmtk_ebcys2_dcmd.dcm pydicom-data/SC_rgb_dcmtk_ebcys4_dcmd.dcm
        pydicom-data/SC_rgb_expb.dcm pydicom-data/SC_rgb_expb_16bit.dcm
        pydicom-data/SC_rgb_expb_16bit_2frame.dcm pydicom-data/SC_rgb_expb_2frame.dcm
        pydicom-data/SC_rgb_expb_32bit.dcm pydicom-data/SC_rgb_expb_32bit_2frame.dcm
        pydicom-data/SC_rgb_gdcm2k_uncompressed.dcm pydicom/SC_jpeg_no_color_transform.dcm
        pydicom/SC_jpeg_no_color_transform_2.dcm pydicom/SC_rgb_dcmtk_+eb+cr.dcm pydicom/SC_rgb_gdcm_KY.dcm
        pydicom/SC_rgb_jls_lossy_line.dcm pydicom/SC_rgb_jls_lossy_sample.dcm pydicom/SC_rgb_jpeg.dcm
        pydicom/SC_rgb_jpeg_app14_dcmd.dcm pydicom/SC_rgb_jpeg_dcmd.dcm pydicom/SC_rgb_jpeg_gdcm.dcm
        pydicom/SC_rgb_rle.dcm pydicom/SC_rgb_rle_16bit.dcm pydicom/SC_rgb_rle_16bit_2frame.dcm
        pydicom/SC_rgb_rle_2frame.dcm pydicom/SC_rgb_rle_32bit.dcm pydicom/SC_rgb_rle_32bit_2frame.dcm
        pydicom/SC_rgb_small_odd.dcm pydicom/SC_rgb_small_odd_big_endian.dcm
        """.split(), "(0028,0004) PhotometricInterpretation 'RGB'"),
    **dict.fromkeys("""
        pydicom-data/SC_ybr_full_uncompressed.dcm pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm
        pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm pydicom/SC_rgb_jpeg_dcmtk.dcm
        pydicom/SC_rgb_jpeg_lossy_gdcm.dcm pydicom/SC_rgb_small_odd_jpeg.dcm
        """.split(), "(0028,0004) PhotometricInterpretation 'YBR_FULL'"),
    **dict.fromkeys("""
        pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm
        pydicom/SC_ybr_full_422_uncompressed.dcm
        """.split(), "(0028,0004) PhotometricInterpretation 'YBR_FULL_422'"),
    **dict.fromkeys("""
        pydicom/GDCMJ2K_TextGBR.dcm
        """.split(), "(0028,0004) PhotometricInterpretation 'YBR_RCT'"),
    **dict.fromkeys("""
        pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm pydicom/UN_sequence.dcm
        pydicom/dicomdirtests/DICOMDIR pydicom/dicomdirtests/DICOMDIR-bigEnd
        pydicom/dicomdirtests/DICOMDIR-empty.dcm pydicom/dicomdirtests/DICOMDIR-implicit
        pydicom/dicomdirtests/DICOMDIR-nooffset pydicom/dicomdirtests/DICOMDIR-nopatient
        pydicom/dicomdirtests/DICOMDIR-reordered pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR
        pydicom/empty_charset_LEI.dcm pydicom/meta_missing_tsyntax.dcm pydicom/nested_priv_SQ.dcm
        pydicom/no_meta_group_length.dcm pydicom/priv_SQ.dcm
        """.split(), '(0028,0100) BitsAllocated is missing'),
    **dict.fromkeys("""
        pydicom/ExplVR_BigEndNoMeta.dcm pydicom/ExplVR_LitEndNoMeta.dcm
        pydicom/dicomdirtests/TINY_ALPHA/README pydicom/no_meta.dcm pydicom/rtstruct.dcm
        """.split(), 'not a DICOM file'),
    **dict.fromkeys("""
        pydicom-data/RG1_J2KI.dcm pydicom-data/RG1_J2KR.dcm pydicom-data/RG1_UNCI.dcm
        pydicom-data/RG1_UNCR.dcm pydicom-data/RG3_J2KI.dcm pydicom-data/RG3_J2KR.dcm
        pydicom-data/RG3_UNCI.dcm pydicom-data/RG3_UNCR.dcm pydicom-data/mlut_18.dcm
        pydicom-data/vlut_04.dcm pydicom/dicomdirtests/77654033/CR1/6154
        pydicom/dicomdirtests/77654033/CR2/6247 pydicom/dicomdirtests/77654033/CR3/6278
        pydicom/image_dfl.dcm
        """.split(), 'ok'),
}


def _key(file: str) -> str:
    path = Path(file)
    if DATA is not None and path.is_relative_to(DATA):
        return f"pydicom-data/{path.relative_to(DATA).as_posix()}"
    return f"pydicom/{path.relative_to(PYDICOM_FILES).as_posix()}"


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], str]:
    out = tmp_path_factory.mktemp("corpus") / "records.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "cervisag_edge.cli.main", "measure", str(PYDICOM_FILES), str(DATA), "--json", str(out),
         "--no-progress", "--threads", "1", "--timeout", str(TIMEOUT_S)],
        capture_output=True, text=True, env=env, timeout=30 * 60, cwd=REPO,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return json.loads(out.read_text()), done.stderr


def test_no_traceback_and_one_line_per_refused_file(corpus_run: tuple[list[dict], str]) -> None:
    records, stderr = corpus_run
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    for rec in records:
        if rec["ok"]:
            assert not any(line.startswith(rec["file"] + ":") for line in lines), f"{rec['file']}: measured yet on stderr"
            continue
        assert "\n" not in rec["error"] and rec["error"].startswith(rec["file"] + ": ")
        assert lines.count(rec["error"]) == 1, f"{rec['file']}: its error is not exactly one stderr line"
        assert not any(line.startswith(rec["file"] + ":") and line != rec["error"] for line in lines)
    assert not any("timed out" in (rec["error"] or "") for rec in records)
    per_file = [line for line in lines if line.startswith(("/", str(PYDICOM_FILES), str(DATA)))]
    assert len(per_file) == sum(not rec["ok"] for rec in records)  # warnings: one summary line, not one per file


def test_outcome_per_file_matches_the_table(corpus_run: tuple[list[dict], str]) -> None:
    records, _ = corpus_run
    seen = {}
    for rec in records:
        key = _key(rec["file"])
        seen[key] = "ok" if rec["ok"] else rec["error"][len(rec["file"]) + 2 :]
    changed = {k: v for k, v in seen.items() if k in EXPECTED and not (
        v == "ok" if EXPECTED[k] == "ok" else v.startswith(EXPECTED[k]))}
    assert changed == {}, f"outcome changed: {changed}"
    for key, outcome in seen.items():  # a file new to the installed corpus: measured only if a radiograph
        if key not in EXPECTED and outcome == "ok":
            rec = next(r for r in records if _key(r["file"]) == key)
            assert rec["measurement"] is not None


def test_only_radiographs_are_measured(corpus_run: tuple[list[dict], str]) -> None:
    import pydicom

    records, _ = corpus_run
    measured = [r for r in records if r["ok"]]
    assert measured, "no radiograph of the corpus was measured"
    for rec in measured:
        ds = pydicom.dcmread(rec["file"], stop_before_pixels=True, force=True)
        assert str(ds.get("Modality", "")) in ("CR", "DX", "RG", "OT", "SC", ""), rec["file"]
        assert str(ds.PhotometricInterpretation) in ("MONOCHROME1", "MONOCHROME2"), rec["file"]
