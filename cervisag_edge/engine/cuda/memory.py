"""Thin, checked wrappers over ``cuda.bindings.runtime``: device and pinned buffers, streams, graphs.

Every call's ``cudaError_t`` is checked; a failure raises :class:`CudaError` naming the call.
cuda-python is imported lazily, so importing this module needs only numpy.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

from ...errors import BackendUnavailableError, CervisagError

logger = logging.getLogger(__name__)


class CudaError(CervisagError, RuntimeError):
    """A CUDA runtime/driver/NVRTC call failed."""


def cudart() -> Any:
    """The ``cuda.bindings.runtime`` module, or BackendUnavailableError naming the package."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"cuda-python is not installed ({exc}); pip install 'cervisag-edge[gpu]'"
        ) from None
    return runtime


def check(result: Any, call: str) -> Any:
    """Unpack a cuda-python result tuple ``(err, *values)``; raise :class:`CudaError` when err != 0."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        raise CudaError(f"{call} failed with {name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class Stream:
    """A non-blocking CUDA stream (never the legacy default stream)."""

    def __init__(self) -> None:
        rt = cudart()
        self._rt = rt
        self.handle = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    @property
    def ptr(self) -> int:
        """The stream handle as an integer (what TensorRT's ``execute_async_v3`` takes)."""
        return int(self.handle)

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(self._rt.cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None


class Event:
    """A CUDA event without timing (``cudaEventDisableTiming``): record on a stream, wait on the host."""

    def __init__(self) -> None:
        rt = cudart()
        self._rt = rt
        self.handle = check(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming), "cudaEventCreateWithFlags")
        self.recorded = False

    def record(self, stream: Stream) -> None:
        check(self._rt.cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")
        self.recorded = True

    def synchronize(self) -> None:
        """Block until the work recorded before this event has finished (no-op when never recorded)."""
        if self.recorded:
            check(self._rt.cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(self._rt.cudaEventDestroy(self.handle), "cudaEventDestroy")
            self.handle = None


class DeviceBuffer:
    """``nbytes`` of device memory from ``cudaMalloc``; ``ptr`` is its address."""

    def __init__(self, nbytes: int) -> None:
        self._rt = cudart()
        self.nbytes = int(nbytes)
        self.ptr = int(check(self._rt.cudaMalloc(max(self.nbytes, 1)), "cudaMalloc"))

    def close(self) -> None:
        if self.ptr:
            check(self._rt.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedArray:
    """A page-locked host array of ``shape``/``dtype`` (``cudaMallocHost``), exposed as ``array``."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self._rt = cudart()
        dt = np.dtype(dtype)
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        self.ptr = int(check(self._rt.cudaMallocHost(max(self.nbytes, 1)), "cudaMallocHost"))
        raw = (ctypes.c_byte * max(self.nbytes, 1)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=dt, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            self.array = np.empty(0, dtype=self.array.dtype)
            check(self._rt.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def copy_htod_async(dst_ptr: int, src: np.ndarray, stream: Stream, nbytes: int | None = None) -> None:
    """Copy a contiguous host array (preferably pinned) to device memory on ``stream``."""
    rt = cudart()
    n = src.nbytes if nbytes is None else int(nbytes)
    check(
        rt.cudaMemcpyAsync(dst_ptr, src.ctypes.data, n, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
        "cudaMemcpyAsync(HtoD)",
    )


def copy_dtoh_async(dst: np.ndarray, src_ptr: int, stream: Stream, nbytes: int | None = None) -> None:
    """Copy device memory into a contiguous host array (preferably pinned) on ``stream``."""
    rt = cudart()
    n = dst.nbytes if nbytes is None else int(nbytes)
    check(
        rt.cudaMemcpyAsync(dst.ctypes.data, src_ptr, n, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
        "cudaMemcpyAsync(DtoH)",
    )


class CudaGraph:
    """Capture the work issued on a stream once and replay it with one launch (static shapes only)."""

    def __init__(self, stream: Stream) -> None:
        self._rt = cudart()
        self.stream = stream
        self.graph: Any = None
        self.exec: Any = None

    def begin(self) -> None:
        rt = self._rt
        check(
            rt.cudaStreamBeginCapture(self.stream.handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture",
        )

    def end(self) -> None:
        self.graph = check(self._rt.cudaStreamEndCapture(self.stream.handle), "cudaStreamEndCapture")
        self.exec = check(self._rt.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        check(self._rt.cudaGraphLaunch(self.exec, self.stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        if self.exec is not None:
            check(self._rt.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            self.exec = None
        if self.graph is not None:
            check(self._rt.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.graph = None


def device_properties(device: int = 0) -> tuple[str, str, int]:
    """(GPU name, compute capability "major.minor", total memory in bytes) of ``device``."""
    rt = cudart()
    props = check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return name, f"{props.major}.{props.minor}", int(props.totalGlobalMem)
