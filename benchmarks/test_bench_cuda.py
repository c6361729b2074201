"""CPU vs CUDA kernels (cervisag_edge.engine.cuda) for preprocessing and heatmap decoding; skipped with
the reason where no CUDA GPU is present."""
from __future__ import annotations

import numpy as np
import pytest

from cervisag_edge.engine.resolver import gpu_available

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU (cuda-python found no device)")


@pytest.fixture(scope="module")
def raw_u16(dicom_path):
    import pydicom

    ds = pydicom.dcmread(dicom_path)
    return ds.pixel_array, float(ds.WindowCenter), float(ds.WindowWidth)


@pytest.mark.benchmark(group="cuda-preprocess")
def test_preprocess_cpu_from_raw(benchmark, raw_u16, ort) -> None:
    """CPU twin of the fused GPU kernel: raw uint16 → window → letterbox → normalise."""
    arr, wc, ww = raw_u16

    def cpu():
        from cervisag_edge.io import imaging

        return ort.preprocess(imaging.window_linear(arr, wc, ww))[0]

    out = benchmark(cpu)
    assert out.shape == (1, 1, *ort.manifest.input_hw)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.benchmark(group="cuda-preprocess")
def test_preprocess_cuda_from_raw(benchmark, raw_u16, ort) -> None:
    """Upload (pinned, async) + fused kernel + download of the (H_in, W_in) input."""
    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuPreprocessor

    arr, wc, ww = raw_u16
    h, w = ort.manifest.input_hw
    stream = memory.Stream()
    pre = GpuPreprocessor((h, w), mean=ort.manifest.mean, std=ort.manifest.std, pad_value=ort.manifest.pad_value, stream=stream)
    dst = memory.DeviceBuffer(h * w * 4)
    host = np.empty((h, w), np.float32)

    def gpu():
        pre.upload(arr)
        pre.run(dst.ptr, slope=1.0, intercept=0.0, wc=wc, ww=ww, invert=False)
        memory.copy_dtoh_async(host, dst.ptr, stream)
        stream.synchronize()
        return host

    try:
        out = benchmark(gpu)
        assert np.all(np.isfinite(out))
    finally:
        pre.close()
        dst.close()
        stream.close()


@pytest.fixture(scope="module")
def heatmaps(loaded, ort):
    x, _ = ort.preprocess(loaded.display)
    return ort.backend.infer(x)[0]


@pytest.mark.benchmark(group="cuda-decode")
def test_decode_cpu(benchmark, heatmaps, ort) -> None:
    coords, scores = benchmark(ort.codec.decode, heatmaps)
    assert coords.shape == (heatmaps.shape[0], 2)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.benchmark(group="cuda-decode")
def test_decode_cuda(benchmark, heatmaps, ort) -> None:
    """Heatmaps already on the device (as after TensorRT inference): kernel + (K, 3) download."""
    from cervisag_edge.engine.cuda import memory
    from cervisag_edge.engine.cuda.ops import GpuDecoder

    k, h, w = heatmaps.shape
    stream = memory.Stream()
    dev = memory.DeviceBuffer(heatmaps.nbytes)
    memory.copy_htod_async(dev.ptr, np.ascontiguousarray(heatmaps), stream)
    stream.synchronize()
    to_input = 1.0 / ort.codec.scale_xy  # heatmap px → input px: (W − 1) / (w − 1), the UDP codec's own mapping
    dec = GpuDecoder(max_maps=k, heatmap_hw=(h, w), scale_xy=(float(to_input[0]), float(to_input[1])),
                     blur_sigma=ort.codec.blur_sigma, stream=stream)
    try:
        out = benchmark(dec.run, dev.ptr, k)
        coords, scores = ort.codec.decode(heatmaps)
        np.testing.assert_allclose(out[:, :2], coords, atol=1e-3)  # codec.decode gives input px
        np.testing.assert_allclose(out[:, 2], scores, atol=1e-6)
    finally:
        dec.close()
        dev.close()
        stream.close()
