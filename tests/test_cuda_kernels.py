"""CUDA kernels: pure parts on the CPU (geometry, sources, cache keys, NVRTC compilation, numpy twins);
kernel-vs-numpy agreement on a GPU (skipped here with the reason)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cervisag_edge.engine.cuda import kernels
from cervisag_edge.engine.cuda.reference import area_weights, decode_reference, display_from_raw, preprocess_reference
from cervisag_edge.engine.resolver import gpu_available
from cervisag_edge.io.imaging import invert_monochrome1, window_linear
from cervisag_edge.engine.preprocess import letterbox, normalize


def _nvrtc_usable() -> bool:
    try:
        from cervisag_edge.engine.cuda import nvrtc

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
    with pytest.raises(ValueError, match="__launch_bounds__"):
        kernels.preprocess_geometry((8, 8), block=(64, 32, 1))


def test_decode_geometry() -> None:
    g = kernels.decode_geometry(2 * 34)
    assert g.grid == (68, 1, 1) and g.block == (256, 1, 1)
    assert g.shared_bytes == 256 * 8  # one float + one int per thread
    for bad in (100, 16, 2048, 512, 1024):  # 512 and 1024 exceed the kernel's __launch_bounds__
        with pytest.raises(ValueError):
            kernels.decode_geometry(1, threads=bad)
    assert kernels.decode_geometry(1, threads=kernels.DECODE_MAX_THREADS).block[0] == kernels.DECODE_MAX_THREADS


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
    from cervisag_edge.engine.cuda import nvrtc

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
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_kernel_compiles_within_its_launch_bounds_without_spills(arch: str) -> None:
    """ptxas (through NVRTC, no GPU) on every kernel: registers × the largest block fit the 64 K register
    file of sm_80/sm_90 and nothing spills, for each blur the codec may bake in (a wide blur's DARK
    patch is a local array, a stack frame by design, not a spill)."""
    from cervisag_edge.engine.cuda import nvrtc

    seen = set()
    for blur in (0.0, 1.0, 2.0):
        for fname, (src, names) in kernels.all_sources(blur).items():
            res = nvrtc.kernel_resources(src, arch, fname)
            assert set(res) == set(names)
            for name, r in res.items():
                seen.add(name)
                assert r.arch == arch and r.registers > 0
                assert r.registers * kernels.MAX_THREADS[name] <= 65536, f"{name} {arch}: {r.registers} registers × {kernels.MAX_THREADS[name]} threads"
                assert (r.spill_stores_bytes, r.spill_loads_bytes) == (0, 0), r
                assert f"__launch_bounds__({kernels.MAX_THREADS[name]})" in src
    assert seen == set(kernels.MAX_THREADS)


def test_parse_ptxas_log() -> None:
    from cervisag_edge.engine.cuda.nvrtc import parse_ptxas_log

    log = ("ptxas info : Compiling entry function 'k1' for 'sm_90' ptxas info : Function properties for k1 ptxas . 8 bytes stack frame, "
           "4 bytes spill stores, 12 bytes spill loads ptxas info : Used 40 registers, used 1 barriers "
           "ptxas info : Compiling entry function 'k2' for 'sm_90' ptxas . 0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads "
           "ptxas info : Used 7 registers")
    r = parse_ptxas_log(log)
    assert (r["k1"].registers, r["k1"].spill_stores_bytes, r["k1"].spill_loads_bytes, r["k1"].stack_frame_bytes) == (40, 4, 12, 8)
    assert r["k2"].registers == 7 and r["k2"].arch == "sm_90"
    with pytest.raises(ValueError, match="register count"):
        parse_ptxas_log("ptxas info : Compiling entry function 'k' for 'sm_80' nothing else here")


def _kernel_params(src: str, name: str) -> list[str]:
    """C types of a kernel's parameters, read from its CUDA source."""
    body = re.search(name + r"\((.*?)\)\s*\{", src, re.S).group(1)  # type: ignore[union-attr]
    types = []
    for p in body.split(","):
        p = p.replace("__restrict__", "").replace("const", "").strip()
        types.append("ptr" if "*" in p else p.rsplit(None, 1)[0])
    return types


_CTYPE = {"ptr": np.uint64, "int": np.int32, "float": np.float32, "double": np.float64}


def test_argument_packing_matches_the_kernel_signatures() -> None:
    """Each launch argument is a 0-d array of exactly the C type of the parameter in that position."""
    from cervisag_edge.engine.cuda.ops import decode_arguments, pack_args, preprocess_arguments

    pre = preprocess_arguments(0x1000, (2500, 2000), 0x2000, (512, 512), slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0,
                               invert=True, mean=0.45, std=0.22, pad_value=0.0)
    dec = decode_arguments(0x3000, (256, 192), 0x4000, (2.0, 2.0))
    for args, src, name in ((pre, kernels.preprocess_source(), "preprocess_u16"), (dec, kernels.decode_source(1.0), "decode_dark")):
        want = _kernel_params(src, name)
        assert [a.dtype.type for a in args] == [_CTYPE[t] for t in want], name
        ptrs, keep = pack_args(args)
        assert ptrs.dtype == np.uint64 and list(ptrs) == [a.ctypes.data for a in keep]
        for p, a in zip(ptrs, keep):  # each address holds that argument's bytes
            assert bytes((np.ctypeslib.as_array((np.ctypeslib.ctypes.c_ubyte * a.nbytes).from_address(int(p))))) == a.tobytes()
    assert int(pre[0]) == 0x1000 and int(pre[3]) == 0x2000 and (int(pre[6]), int(pre[7])) == (512, 410)  # letterbox 2000x2500
    assert int(pre[-1]) == 1  # downscale → area
    assert (int(dec[1]), int(dec[2])) == (256, 192)
    with pytest.raises(TypeError):
        pack_args([np.zeros(2, np.int32)])


@needs_nvrtc
def test_nvrtc_error_carries_the_compile_log() -> None:
    from cervisag_edge.engine.cuda import nvrtc
    from cervisag_edge.engine.cuda.memory import CudaError

    with pytest.raises(CudaError, match="undefined_thing"):
        nvrtc.compile_cubin('extern "C" __global__ void k() { undefined_thing(); }', "sm_90", "bad.cu")


def test_arch_for() -> None:
    from cervisag_edge.engine.cuda.nvrtc import arch_for

    assert arch_for("9.0") == "sm_90" and arch_for("8.6") == "sm_86" and arch_for("10.0") == "sm_100"
    with pytest.raises(ValueError):
        arch_for("hopper")


def test_twins_hold_no_math_of_their_own() -> None:
    """One definition: the CUDA side's taps, letterbox and resize weights are the CPU modules' own."""
    from cervisag_edge.engine import codec, preprocess
    from cervisag_edge.engine.cuda import reference

    assert kernels.gaussian_taps is codec.gaussian_taps and kernels.DARK_EPS is codec.DARK_EPS
    assert reference.area_weights is preprocess.area_weights and reference.linear_weights is preprocess.linear_weights
    from cervisag_edge.tooling.latency import bench

    assert bench.resize_numpy is preprocess.resize_numpy
    img = np.random.default_rng(3).random((37, 23))
    np.testing.assert_allclose(preprocess.area_weights(37, 11) @ img @ preprocess.area_weights(23, 7).T,
                               preprocess.resize_numpy(img, (7, 11)), atol=1e-6)
    np.testing.assert_allclose(preprocess.linear_weights(37, 50) @ img @ preprocess.linear_weights(23, 31).T,
                               preprocess.resize_numpy(img, (31, 50)), atol=1e-6)


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
    np.testing.assert_array_equal(got, want)  # the twin is the CPU chain itself


def test_kernel_window_arithmetic_is_within_one_ulp_of_imaging() -> None:
    """The kernel multiplies by the float32 reciprocal of (w - 1) where imaging divides: emulate it in float32."""
    from cervisag_edge.engine.cuda.reference import kernel_scalars

    raw = np.arange(0, 65535, 13, dtype=np.uint16)
    for wc, ww in ((8000.0, 3000.0), (2048.0, 4096.0), (100.0, 1.0), (30000.0, 60001.0)):
        s = kernel_scalars(1.0, -1024.0, wc, ww, 0.5, 0.25)
        v = (raw.astype(np.float64) - 1024.0).astype(np.float32)
        y = np.clip((v - np.float32(s["c_minus_half"])) * np.float32(s["inv_w_minus_1"]) + np.float32(0.5), 0, 1)
        want = window_linear(raw.astype(np.float64) - 1024.0, wc, ww)
        assert np.max(np.abs(y - want)) <= 2 * np.finfo(np.float32).eps


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
    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuPreprocessor

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
    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuDecoder

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
    from cervisag_edge.engine.preprocess import letterbox_geometry

    (w_new, h_new), tf = letterbox_geometry((src[1], src[0]), (out[1], out[0]))
    assert kernels.letterbox_size(src, out) == (h_new, w_new, int(tf.pad_y), int(tf.pad_x))


@needs_gpu
@pytest.mark.gpu
def test_gpu_back_to_back_uploads_keep_the_second_image() -> None:  # pragma: no cover - GPU only
    """Two uploads with no host sync between them: the second waits for the first copy out of the pinned buffer."""
    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuPreprocessor

    rng = np.random.default_rng(4)
    a, b = (rng.integers(0, 4096, size=(2500, 2000), dtype=np.uint16) for _ in range(2))
    stream = memory.Stream()
    pre = GpuPreprocessor((512, 512), mean=0.45, std=0.22, pad_value=0.0, stream=stream)
    dst = memory.DeviceBuffer(512 * 512 * 4)
    host = np.empty((512, 512), np.float32)
    try:
        pre.upload(a)
        pre.upload(b)
        pre.run(dst.ptr, slope=1.0, intercept=-1024.0, wc=1000.0, ww=2500.0, invert=False)
        memory.copy_dtoh_async(host, dst.ptr, stream)
        stream.synchronize()
        ref = preprocess_reference(b, 1.0, -1024.0, 1000.0, 2500.0, False, (512, 512), mean=0.45, std=0.22)
        np.testing.assert_allclose(host, ref, atol=1e-4)
    finally:
        pre.close(), dst.close(), stream.close()


@needs_gpu
@pytest.mark.gpu
def test_gpu_decoder_launches_from_another_thread() -> None:  # pragma: no cover - GPU only
    """KernelModule pushes its own context, so a thread that never touched CUDA can launch."""
    import threading

    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuDecoder

    hm = np.zeros((1, 2, 64, 64), np.float32)
    hm[0, 0, 10, 20] = hm[0, 1, 40, 5] = 1.0
    stream = memory.Stream()
    buf = memory.DeviceBuffer(hm.nbytes)
    memory.copy_htod_async(buf.ptr, hm, stream)
    stream.synchronize()
    dec = GpuDecoder(max_maps=2, heatmap_hw=(64, 64), scale_xy=(1.0, 1.0), blur_sigma=0.0, stream=stream)
    out: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            out.append(dec.run(buf.ptr, 2))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    try:
        assert not errors, errors
        np.testing.assert_allclose(out[0], decode_reference(hm, 0.0, (1.0, 1.0))[0], atol=1e-5)
    finally:
        dec.close(), buf.close(), stream.close()
