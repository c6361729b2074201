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


class _Current:
    """Make ``ctx`` current on the calling thread for a ``with`` block (push, then pop)."""

    def __init__(self, drv: Any, ctx: Any) -> None:
        self._drv, self._ctx = drv, ctx

    def __enter__(self) -> None:
        memory.check(self._drv.cuCtxPushCurrent(self._ctx), "cuCtxPushCurrent")

    def __exit__(self, *exc: object) -> None:
        memory.check(self._drv.cuCtxPopCurrent(), "cuCtxPopCurrent")


def pack_args(args: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``cuLaunchKernel``'s ``kernelParams``: a uint64 array of the addresses of each argument's value.

    Each argument is a 0-d numpy array of the kernel parameter's exact C type (``np.uint64`` for
    pointers, ``np.int32`` for ``int``, ``np.float32``/``np.float64`` for ``float``/``double``).
    Returns (addresses, the arrays they point into): keep both alive until the launch returns.
    """
    for i, a in enumerate(args):
        if not isinstance(a, np.ndarray) or a.ndim != 0:
            raise TypeError(f"kernel argument {i} must be a 0-d numpy array of its C type, got {type(a).__name__}")
    return np.array([a.ctypes.data for a in args], dtype=np.uint64), args


class KernelModule:
    """A CUBIN loaded into ``device``'s primary context, and its functions by name.

    The context is explicit: every driver call runs with it pushed on the calling thread, so a
    module made on one thread can be launched from another (the runtime API and TensorRT use
    the same primary context).
    """

    def __init__(self, source: str, name: str, device: int = 0) -> None:
        drv = _driver()
        self._drv = drv
        memory.check(drv.cuInit(0), "cuInit")
        self._device = memory.check(drv.cuDeviceGet(device), f"cuDeviceGet({device})")
        self.context = memory.check(drv.cuDevicePrimaryCtxRetain(self._device), "cuDevicePrimaryCtxRetain")
        _, cc, _ = memory.device_properties(device)
        self.arch = nvrtc.arch_for(cc)
        cubin = nvrtc.compile_cubin(source, self.arch, name)
        with self.current():
            self.module = memory.check(drv.cuModuleLoadData(cubin), "cuModuleLoadData")
        self._functions: dict[str, Any] = {}

    def current(self) -> _Current:
        """Context manager that makes this module's context current on the calling thread."""
        return _Current(self._drv, self.context)

    def function(self, name: str) -> Any:
        if name not in self._functions:
            with self.current():
                self._functions[name] = memory.check(self._drv.cuModuleGetFunction(self.module, name.encode()),
                                                     f"cuModuleGetFunction({name})")
        return self._functions[name]

    def launch(self, name: str, geometry: kernels.LaunchGeometry, stream: memory.Stream, args: list[np.ndarray]) -> None:
        """Launch ``name`` with scalar arguments given as 0-d numpy arrays of the exact C types."""
        limit = kernels.MAX_THREADS.get(name)
        threads = int(np.prod(geometry.block))
        if limit is not None and threads > limit:
            raise ValueError(f"block {geometry.block} has {threads} threads; {name} is compiled for at most {limit}")
        ptrs, _keep = pack_args(args)
        func = self.function(name)
        with self.current():
            memory.check(
                self._drv.cuLaunchKernel(func, *geometry.grid, *geometry.block, geometry.shared_bytes,
                                         stream.handle, ptrs.ctypes.data, 0),
                f"cuLaunchKernel({name})",
            )

    def close(self) -> None:
        if self.module is not None:
            with self.current():
                memory.check(self._drv.cuModuleUnload(self.module), "cuModuleUnload")
            self.module = None
            memory.check(self._drv.cuDevicePrimaryCtxRelease(self._device), "cuDevicePrimaryCtxRelease")


def _u64(v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint64)


def _i32(v: int) -> np.ndarray:
    return np.array(v, dtype=np.int32)


def _f32(v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def _f64(v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


def preprocess_arguments(src_ptr: int, src_hw: tuple[int, int], dst_ptr: int, out_hw: tuple[int, int], *, slope: float,
                         intercept: float, wc: float, ww: float, invert: bool, mean: float, std: float,
                         pad_value: float) -> list[np.ndarray]:
    """``preprocess_u16``'s 19 arguments as 0-d arrays of the C types of its signature (pure; no GPU)."""
    from .reference import kernel_scalars

    H, W = int(src_hw[0]), int(src_hw[1])
    H_in, W_in = int(out_hw[0]), int(out_hw[1])
    H_new, W_new, pad_y, pad_x = kernels.letterbox_size((H, W), (H_in, W_in))
    s = kernel_scalars(slope, intercept, wc, ww, mean, std)
    area = int(W_new < W or H_new < H)
    return [
        _u64(src_ptr), _i32(H), _i32(W), _u64(dst_ptr), _i32(H_in), _i32(W_in),
        _i32(H_new), _i32(W_new), _i32(pad_y), _i32(pad_x),
        _f64(s["slope"]), _f64(s["intercept"]), _f32(s["c_minus_half"]), _f32(s["inv_w_minus_1"]), _i32(int(bool(invert))),
        _f32(s["mean"]), _f32(s["inv_std"]), _f32(pad_value), _i32(area),
    ]


def decode_arguments(heatmaps_ptr: int, heatmap_hw: tuple[int, int], out_ptr: int, scale_xy: tuple[float, float]) -> list[np.ndarray]:
    """``decode_dark``'s 6 arguments as 0-d arrays of the C types of its signature (pure; no GPU)."""
    return [_u64(heatmaps_ptr), _i32(heatmap_hw[0]), _i32(heatmap_hw[1]), _u64(out_ptr), _f32(scale_xy[0]), _f32(scale_xy[1])]


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
        # Recorded after each host→device copy out of the pinned buffer: the next upload waits on
        # it before overwriting the buffer the previous asynchronous copy may still be reading.
        self._copied = memory.Event()

    def _ensure_src(self, shape: tuple[int, int]) -> None:
        if self._pinned is None or self._pinned.array.shape != shape:
            self._copied.synchronize()
            for buf in (self._src, self._pinned):
                if buf is not None:
                    buf.close()
            self._pinned = memory.PinnedArray(shape, np.uint16)
            self._src = memory.DeviceBuffer(self._pinned.nbytes)

    def stage(self, raw_uint16: np.ndarray) -> None:
        """Host → pinned: copy a (H, W) uint16 image into the staging buffer, once the last copy out of it is done."""
        raw = np.asarray(raw_uint16)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise ValueError(f"raw image must be 2-D uint16, got {raw.dtype} {raw.shape}")
        self._ensure_src(raw.shape)
        self._copied.synchronize()
        self._pinned.array[...] = raw  # type: ignore[union-attr]

    def transfer(self) -> None:
        """Pinned → device, asynchronously on the stream; records the event :meth:`stage` waits on."""
        if self._pinned is None or self._src is None:
            raise ValueError("GpuPreprocessor.transfer called before stage")
        memory.copy_htod_async(self._src.ptr, self._pinned.array, self.stream)
        self._copied.record(self.stream)

    def upload(self, raw_uint16: np.ndarray) -> None:
        """Copy a host (H, W) uint16 image into the pinned staging buffer and on to the device (:meth:`stage` + :meth:`transfer`)."""
        self.stage(raw_uint16)
        self.transfer()

    def arguments(self, dst_ptr: int, *, slope: float, intercept: float, wc: float, ww: float, invert: bool) -> list[np.ndarray]:
        """The ``preprocess_u16`` arguments, in the kernel's parameter order (see :func:`preprocess_arguments`)."""
        if self._pinned is None or self._src is None:
            raise ValueError("GpuPreprocessor.run called before upload")
        return preprocess_arguments(self._src.ptr, self._pinned.array.shape, dst_ptr, self.out_hw, slope=slope, intercept=intercept,
                                    wc=wc, ww=ww, invert=invert, mean=self.mean, std=self.std, pad_value=self.pad_value)

    def run(self, dst_ptr: int, *, slope: float, intercept: float, wc: float, ww: float, invert: bool) -> None:
        """Preprocess the uploaded image into ``dst_ptr`` ((H_in, W_in) float32 on the device)."""
        args = self.arguments(dst_ptr, slope=slope, intercept=intercept, wc=wc, ww=ww, invert=invert)
        self.module.launch("preprocess_u16", kernels.preprocess_geometry(self.out_hw), self.stream, args)

    def close(self) -> None:
        self._copied.synchronize()
        self._copied.close()
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
        args = decode_arguments(heatmaps_ptr, self.heatmap_hw, self._out.ptr, self.scale_xy)
        self.module.launch("decode_dark", kernels.decode_geometry(n_maps), self.stream, args)
        memory.copy_dtoh_async(self._host.array, self._out.ptr, self.stream, n_maps * 3 * 4)
        self.stream.synchronize()
        return self._host.array[:n_maps].copy()

    def close(self) -> None:
        self._out.close()
        self._host.close()
        self.module.close()
