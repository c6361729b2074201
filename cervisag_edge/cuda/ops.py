"""GPU preprocessing and decoding with the NVRTC kernels of :mod:`.kernels` (needs a CUDA GPU).

:class:`GpuPreprocessor` turns a raw uint16 (H, W) image into the (1, 1, H_in, W_in) float32
model input written straight into a device buffer (e.g. a TensorRT engine's input).
:class:`GpuDecoder` turns device heatmaps (N, K, h, w) into (N, K, 3) float32 (x, y, score) in
model-input px. Both run on a given :class:`memory.Stream`.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from . import kernels, memory, nvrtc

logger = logging.getLogger(__name__)


def _driver() -> Any:
    from cuda.bindings import driver

    return driver


class KernelModule:
    """A CUBIN loaded into the current context (``cuModuleLoadData``) and its functions by name."""

    def __init__(self, source: str, name: str, device: int = 0) -> None:
        rt = memory.cudart()
        memory.check(rt.cudaSetDevice(device), "cudaSetDevice")
        memory.check(rt.cudaFree(0), "cudaFree(0) (context init)")
        _, cc, _ = memory.device_properties(device)
        self.arch = nvrtc.arch_for(cc)
        cubin = nvrtc.compile_cubin(source, self.arch, name)
        drv = _driver()
        self._drv = drv
        self.module = memory.check(drv.cuModuleLoadData(cubin), "cuModuleLoadData")
        self._functions: dict[str, Any] = {}

    def function(self, name: str) -> Any:
        if name not in self._functions:
            self._functions[name] = memory.check(self._drv.cuModuleGetFunction(self.module, name.encode()), f"cuModuleGetFunction({name})")
        return self._functions[name]

    def launch(self, name: str, geometry: kernels.LaunchGeometry, stream: memory.Stream, args: list[np.ndarray]) -> None:
        """Launch ``name`` with scalar arguments given as 0-d numpy arrays of the exact C types."""
        ptrs = np.array([a.ctypes.data for a in args], dtype=np.uint64)
        memory.check(
            self._drv.cuLaunchKernel(
                self.function(name), *geometry.grid, *geometry.block, geometry.shared_bytes,
                stream.handle, ptrs.ctypes.data, 0,
            ),
            f"cuLaunchKernel({name})",
        )

    def close(self) -> None:
        if self.module is not None:
            memory.check(self._drv.cuModuleUnload(self.module), "cuModuleUnload")
            self.module = None


def _u64(v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint64)


def _i32(v: int) -> np.ndarray:
    return np.array(v, dtype=np.int32)


def _f32(v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def _f64(v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


class GpuPreprocessor:
    """Fused raw-uint16 → normalised letterboxed model input, for one source size at a time."""

    def __init__(self, out_hw: tuple[int, int], *, mean: float, std: float, pad_value: float, stream: memory.Stream) -> None:
        if not std > 0:
            raise ValueError(f"normalisation std {std!r} must be > 0")
        self.out_hw = (int(out_hw[0]), int(out_hw[1]))
        self.mean, self.std, self.pad_value = float(mean), float(std), float(pad_value)
        self.stream = stream
        self.module = KernelModule(kernels.preprocess_source(), "preprocess.cu")
        self._src: memory.DeviceBuffer | None = None
        self._pinned: memory.PinnedArray | None = None

    def _ensure_src(self, shape: tuple[int, int]) -> None:
        if self._pinned is None or self._pinned.array.shape != shape:
            for buf in (self._src, self._pinned):
                if buf is not None:
                    buf.close()
            self._pinned = memory.PinnedArray(shape, np.uint16)
            self._src = memory.DeviceBuffer(self._pinned.nbytes)

    def upload(self, raw_uint16: np.ndarray) -> None:
        """Copy a host (H, W) uint16 image into the pinned staging buffer and on to the device."""
        raw = np.asarray(raw_uint16)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise ValueError(f"raw image must be 2-D uint16, got {raw.dtype} {raw.shape}")
        self._ensure_src(raw.shape)
        self._pinned.array[...] = raw  # type: ignore[union-attr]
        memory.copy_htod_async(self._src.ptr, self._pinned.array, self.stream)  # type: ignore[union-attr]

    def run(self, dst_ptr: int, *, slope: float, intercept: float, wc: float, ww: float, invert: bool) -> None:
        """Preprocess the uploaded image into ``dst_ptr`` ((H_in, W_in) float32 on the device)."""
        from .reference import kernel_scalars

        if self._pinned is None or self._src is None:
            raise ValueError("GpuPreprocessor.run called before upload")
        H, W = self._pinned.array.shape
        H_in, W_in = self.out_hw
        H_new, W_new, pad_y, pad_x = kernels.letterbox_size((H, W), (H_in, W_in))
        s = kernel_scalars(slope, intercept, wc, ww, self.mean, self.std)
        area = int(W_new < W or H_new < H)
        args = [
            _u64(self._src.ptr), _i32(H), _i32(W), _u64(dst_ptr), _i32(H_in), _i32(W_in),
            _i32(H_new), _i32(W_new), _i32(pad_y), _i32(pad_x),
            _f64(s["slope"]), _f64(s["intercept"]), _f32(s["c_minus_half"]), _f32(s["inv_wm1"]), _i32(int(bool(invert))),
            _f32(s["mean"]), _f32(s["inv_std"]), _f32(self.pad_value), _i32(area),
        ]
        self.module.launch("preprocess_u16", kernels.preprocess_geometry(self.out_hw), self.stream, args)

    def close(self) -> None:
        for buf in (self._src, self._pinned):
            if buf is not None:
                buf.close()
        self._src = self._pinned = None
        self.module.close()


class GpuDecoder:
    """Device heatmaps (N, K, h, w) float32 → (N, K, 3) float32 (x, y, score) in model-input px."""

    def __init__(self, *, max_maps: int, heatmap_hw: tuple[int, int], scale_xy: tuple[float, float], blur_sigma: float,
                 stream: memory.Stream) -> None:
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        self.scale_xy = (float(scale_xy[0]), float(scale_xy[1]))
        self.stream = stream
        self.module = KernelModule(kernels.decode_source(blur_sigma), "decode.cu")
        self.max_maps = int(max_maps)
        self._out = memory.DeviceBuffer(self.max_maps * 3 * 4)
        self._host = memory.PinnedArray((self.max_maps, 3), np.float32)

    def run(self, heatmaps_ptr: int, n_maps: int) -> np.ndarray:
        """Decode ``n_maps`` heatmaps at ``heatmaps_ptr``; returns a (n_maps, 3) float32 copy."""
        if not 1 <= n_maps <= self.max_maps:
            raise ValueError(f"n_maps {n_maps} outside 1..{self.max_maps}")
        h, w = self.heatmap_hw
        args = [_u64(heatmaps_ptr), _i32(h), _i32(w), _u64(self._out.ptr), _f32(self.scale_xy[0]), _f32(self.scale_xy[1])]
        self.module.launch("decode_dark", kernels.decode_geometry(n_maps), self.stream, args)
        memory.copy_dtoh_async(self._host.array, self._out.ptr, self.stream, n_maps * 3 * 4)
        self.stream.synchronize()
        return self._host.array[:n_maps].copy()

    def close(self) -> None:
        self._out.close()
        self._host.close()
        self.module.close()
