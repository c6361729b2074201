"""CUDA kernels: pure parts on the CPU (geometry, sources, cache keys, NVRTC compilation, numpy twins);
kernel-vs-numpy agreement on a GPU (skipped here with the reason)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.cuda import kernels
from cervisag_edge.cuda.reference import area_weights, decode_reference, display_from_raw, preprocess_reference
from cervisag_edge.engine_select import gpu_available
from cervisag_edge.imaging import invert_monochrome1, window_linear
from cervisag_edge.preprocess import letterbox, normalize


def _nvrtc_usable() -> bool:
    try:
        from cervisag_edge.cuda import nvrtc

        nvrtc.nvrtc_version()
        return True
    except Exception:  # noqa: BLE001 - any failure means "cannot compile here"
        return False


needs_nvrtc = pytest.mark.skipif(not _nvrtc_usable(), reason="NVRTC not available (pip install cuda-python 'cuda-toolkit[nvrtc]==13.*')")
needs_gpu = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and cuda-python (none on this machine)")


def test_preprocess_geometry_covers_output() -> None:
    g = kernels.preprocess_geometry((512, 500))
    assert g.block == (32, 8, 1)
    assert g.grid == (16, 64, 1)  # ceil(500/32) = 16 columns of tiles, 512/8 = 64 rows
    assert g.grid[0] * g.block[0] >= 500 and (g.grid[0] - 1) * g.block[0] < 500
    with pytest.raises(ValueError):
        kernels.preprocess_geometry((0, 5))
    with pytest.raises(ValueError, match="1024"):
        kernels.preprocess_geometry((8, 8), block=(64, 32, 1))


def test_decode_geometry() -> None:
    g = kernels.decode_geometry(2 * 34)
    assert g.grid == (68, 1, 1) and g.block == (256, 1, 1)
    assert g.shared_bytes == 256 * 8  # one float + one int per thread
    for bad in (100, 16, 2048):
        with pytest.raises(ValueError):
            kernels.decode_geometry(1, threads=bad)


def test_decode_source_bakes_the_codec_blur() -> None:
    src = kernels.decode_source(1.0)
    taps = [float(t) for t in re.search(r"kTaps\[TAPS\] = \{ (.*?) \}", src).group(1).split(",")]  # type: ignore[union-attr]
    assert len(taps) == 7  # radius ceil(3·1) = 3
    assert abs(sum(taps) - 1.0) < 1e-12 and taps == taps[::-1] and max(taps) == taps[3]
    assert "#define TAPS 1" in kernels.decode_source(0.0)


def test_cache_key_depends_on_source_arch_and_options() -> None:
    a = kernels.cache_key("src", "sm_90")
    assert a == kernels.cache_key("src", "sm_90")
    assert len({a, kernels.cache_key("src2", "sm_90"), kernels.cache_key("src", "sm_80"), kernels.cache_key("src", "sm_90", ("-lineinfo",))}) == 4
    # no ambiguity from concatenation
    assert kernels.cache_key("ab", "c") != kernels.cache_key("a", "bc")


@needs_nvrtc
def test_kernels_compile_with_nvrtc_and_are_cached(tmp_path: Path) -> None:
    from cervisag_edge.cuda import nvrtc

    nvrtc.clear_cache()
    for src, name in ((kernels.preprocess_source(), "preprocess.cu"), (kernels.decode_source(1.0), "decode.cu")):
        cubin = nvrtc.compile_cubin(src, "sm_90", name, cache_dir=tmp_path)
        assert cubin[:4] == b"\x7fELF"
        assert nvrtc.compile_cubin(src, "sm_90", name) is cubin  # in-process hit
    assert nvrtc.cache_size() == 2
    assert len(list(tmp_path.glob("*.cubin"))) == 2
    nvrtc.clear_cache()
    key = kernels.cache_key(kernels.preprocess_source(), "sm_90", nvrtc.DEFAULT_OPTIONS)
    (tmp_path / f"{key}.cubin").write_bytes(b"\x7fELF from disk")
    assert nvrtc.compile_cubin(kernels.preprocess_source(), "sm_90", cache_dir=tmp_path) == b"\x7fELF from disk"


@needs_nvrtc
def test_nvrtc_error_carries_the_compile_log() -> None:
    from cervisag_edge.cuda import nvrtc
    from cervisag_edge.cuda.memory import CudaError

    with pytest.raises(CudaError, match="undefined_thing"):
        nvrtc.compile_cubin('extern "C" __global__ void k() { undefined_thing(); }', "sm_90", "bad.cu")


def test_arch_for() -> None:
    from cervisag_edge.cuda.nvrtc import arch_for

    assert arch_for("9.0") == "sm_90" and arch_for("8.6") == "sm_86" and arch_for("10.0") == "sm_100"
    with pytest.raises(ValueError):
        arch_for("hopper")


def test_area_weights_integer_and_fractional() -> None:
    w = area_weights(6, 3)  # factor 2: plain pair averages
    np.testing.assert_allclose(w, np.kron(np.eye(3), [[0.5, 0.5]]))
    w = area_weights(5, 2)  # factor 2.5: [1, 1, 0.5, 0, 0]/2.5 and [0, 0, 0.5, 1, 1]/2.5
    np.testing.assert_allclose(w, np.array([[1, 1, 0.5, 0, 0], [0, 0, 0.5, 1, 1]]) / 2.5)


def _cpu_path(raw: np.ndarray, slope: float, intercept: float, wc: float, ww: float, invert: bool, out_hw: tuple[int, int],
              mean: float, std: float, pad: float) -> np.ndarray:
    disp = window_linear(raw.astype(np.float64) * slope + intercept, wc, ww)
    if invert:
        disp = invert_monochrome1(disp)
    boxed, _ = letterbox(disp, (out_hw[1], out_hw[0]), pad_value=pad)
    return normalize(boxed, mean, std)


@pytest.mark.parametrize(
    "shape,out_hw,invert",
    [((250, 200), (64, 64), False), ((2500, 2000), (512, 512), True), ((97, 131), (40, 48), False), ((30, 20), (64, 64), True)],
)
def test_preprocess_reference_matches_cpu_path(shape: tuple[int, int], out_hw: tuple[int, int], invert: bool) -> None:
    rng = np.random.default_rng(sum(shape))
    raw = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    args = dict(slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0)
    ref = preprocess_reference(raw, **args, invert=invert, out_hw=out_hw, mean=0.45, std=0.22, pad_value=0.0)
    cpu = _cpu_path(raw, args["slope"], args["intercept"], args["wc"], args["ww"], invert, out_hw, 0.45, 0.22, 0.0)
    assert ref.shape == cpu.shape == out_hw and ref.dtype == np.float32
    np.testing.assert_allclose(ref, cpu, atol=2e-4)


def test_display_from_raw_matches_imaging() -> None:
    raw = np.arange(0, 65535, 97, dtype=np.uint16)[None]
    got = display_from_raw(raw, 0.5, 10.0, 8000.0, 3000.0, invert=True)
    want = invert_monochrome1(window_linear(raw * 0.5 + 10.0, 8000.0, 3000.0))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_decode_reference_finds_a_gaussian_peak_in_input_px() -> None:
    h, w = 64, 48
    ys, xs = np.mgrid[0:h, 0:w]
    cx, cy = 20.3, 33.7
    hm = (0.8 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))).astype(np.float32)[None, None]
    scale = ((96 - 1) / (w - 1), (128 - 1) / (h - 1))
    out = decode_reference(hm, blur_sigma=0.0, scale_xy=scale)
    assert out.shape == (1, 1, 3)
    np.testing.assert_allclose(out[0, 0, :2], [cx * scale[0], cy * scale[1]], atol=1e-3)
    assert abs(out[0, 0, 2] - 0.8 * np.exp(-(0.3**2 + 0.3**2) / 8)) < 1e-6  # value at the nearest pixel (20, 34)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape,invert", [((2500, 2000), True), ((97, 131), False), ((30, 20), True)])
def test_gpu_preprocess_matches_reference(shape: tuple[int, int], invert: bool) -> None:  # pragma: no cover - GPU only
    from cervisag_edge.cuda import memory
    from cervisag_edge.cuda.ops import GpuPreprocessor

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    stream = memory.Stream()
    pre = GpuPreprocessor((512, 512), mean=0.45, std=0.22, pad_value=0.0, stream=stream)
    dst = memory.DeviceBuffer(512 * 512 * 4)
    host = np.empty((512, 512), np.float32)
    pre.upload(raw)
    pre.run(dst.ptr, slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0, invert=invert)
    memory.copy_dtoh_async(host, dst.ptr, stream)
    stream.synchronize()
    ref = preprocess_reference(raw, 1.0, -1024.0, 1000.0, 2500.0, invert, (512, 512), mean=0.45, std=0.22)
    np.testing.assert_allclose(host, ref, atol=1e-4)
    pre.close(), dst.close(), stream.close()


@needs_gpu
@pytest.mark.gpu
def test_gpu_decode_matches_codec() -> None:  # pragma: no cover - GPU only
    from cervisag_edge.cuda import memory
    from cervisag_edge.cuda.ops import GpuDecoder

    rng = np.random.default_rng(2)
    hm = rng.random((2, 34, 256, 256), dtype=np.float32) * 0.1
    ys, xs = np.mgrid[0:256, 0:256]
    for n in range(2):
        for k in range(34):
            cx, cy = rng.uniform(5, 250, size=2)
            hm[n, k] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0).astype(np.float32)
    stream = memory.Stream()
    buf = memory.DeviceBuffer(hm.nbytes)
    memory.copy_htod_async(buf.ptr, hm, stream)
    scale = (511 / 255, 511 / 255)
    dec = GpuDecoder(max_maps=68, heatmap_hw=(256, 256), scale_xy=scale, blur_sigma=1.0, stream=stream)
    got = dec.run(buf.ptr, 68).reshape(2, 34, 3)
    ref = decode_reference(hm, 1.0, scale)
    np.testing.assert_allclose(got, ref, atol=1e-3)
    dec.close(), buf.close(), stream.close()


@pytest.mark.parametrize("src,out", [((2500, 2000), (512, 512)), ((97, 131), (40, 48)), ((30, 20), (64, 64)), ((1, 999), (512, 512))])
def test_letterbox_size_matches_preprocess(src: tuple[int, int], out: tuple[int, int]) -> None:
    from cervisag_edge.preprocess import letterbox_geometry

    (w_new, h_new), tf = letterbox_geometry((src[1], src[0]), (out[1], out[0]))
    assert kernels.letterbox_size(src, out) == (h_new, w_new, int(tf.pad_y), int(tf.pad_x))
