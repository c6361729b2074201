"""Run-time compilation with NVRTC (``cuda.bindings.nvrtc``) and a cache of compiled modules.

Compiled CUBINs are cached in-process by :func:`kernels.cache_key` (source + arch + options) and,
optionally, on disk (``cache_dir`` or ``$CERVISAG_NVRTC_CACHE``). Compilation needs no GPU, only
the NVRTC library (``pip install 'cuda-toolkit[nvrtc]==13.*'`` or a CUDA toolkit).
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailableError
from .kernels import cache_key
from .memory import CudaError

logger = logging.getLogger(__name__)

DEFAULT_OPTIONS: tuple[str, ...] = ("--std=c++17", "-default-device")
_CACHE: dict[str, bytes] = {}
_LOCK = threading.Lock()


def _nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise BackendUnavailableError(f"cuda-python is not installed ({exc}); pip install 'cervisag-edge[gpu]'") from None
    return nvrtc


def _check(result: Any, call: str, program: Any = None) -> Any:
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        log = program_log(program) if program is not None else ""
        raise CudaError(f"NVRTC {call} failed with {getattr(err, 'name', err)}" + (f": {log}" if log else ""))
    if isinstance(result, tuple) and len(result) > 1:
        return result[1] if len(result) == 2 else result[1:]
    return None


def program_log(program: Any) -> str:
    """The NVRTC compile log of ``program`` on one line."""
    nv = _nvrtc()
    err, size = nv.nvrtcGetProgramLogSize(program)
    if int(err) != 0 or size <= 1:
        return ""
    buf = b" " * size
    nv.nvrtcGetProgramLog(program, buf)
    return " ".join(buf.decode(errors="replace").rstrip("\x00").split())


def arch_for(compute_capability: str) -> str:
    """``"9.0"`` → ``"sm_90"`` (the NVRTC ``--gpu-architecture`` value)."""
    major, _, minor = compute_capability.partition(".")
    if not (major.isdigit() and (minor or "0").isdigit()):
        raise ValueError(f"compute capability {compute_capability!r} is not 'major.minor'")
    return f"sm_{int(major)}{int(minor or 0)}"


def nvrtc_version() -> tuple[int, int]:
    return tuple(int(v) for v in _check(_nvrtc().nvrtcVersion(), "nvrtcVersion"))  # type: ignore[return-value]


def compile_cubin(source: str, arch: str, name: str = "kernels.cu", options: tuple[str, ...] = DEFAULT_OPTIONS,
                  cache_dir: str | Path | None = None) -> bytes:
    """Compile CUDA C++ ``source`` for ``arch`` (e.g. ``sm_90``) to a CUBIN, using the caches."""
    key = cache_key(source, arch, options)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    folder = Path(cache_dir) if cache_dir else (Path(os.environ["CERVISAG_NVRTC_CACHE"]) if os.environ.get("CERVISAG_NVRTC_CACHE") else None)
    disk = folder / f"{key}.cubin" if folder else None
    if disk is not None and disk.is_file():
        cubin = disk.read_bytes()
        logger.debug("NVRTC disk cache hit %s", disk)
    else:
        cubin = _compile(source, arch, name, options)
        if disk is not None:
            disk.parent.mkdir(parents=True, exist_ok=True)
            tmp = disk.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(cubin)
            tmp.replace(disk)
    with _LOCK:
        _CACHE[key] = cubin
    return cubin


def _compile(source: str, arch: str, name: str, options: tuple[str, ...]) -> bytes:
    nv = _nvrtc()
    prog = _check(nv.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        _check(nv.nvrtcCompileProgram(prog, len(opts), opts), f"nvrtcCompileProgram({name}, {arch})", prog)
        size = _check(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        buf = b" " * int(size)
        _check(nv.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
        logger.info("NVRTC compiled %s for %s (%d bytes)", name, arch, len(buf))
        return buf
    finally:
        nv.nvrtcDestroyProgram(prog)


@dataclass(frozen=True)
class KernelResources:
    """What ptxas reported for one kernel entry: registers per thread, spills, stack frame (bytes)."""

    name: str
    arch: str
    registers: int
    spill_stores_bytes: int
    spill_loads_bytes: int
    stack_frame_bytes: int


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def parse_ptxas_log(log: str) -> dict[str, KernelResources]:
    """Kernel name → :class:`KernelResources` from a ``ptxas -v`` log (as NVRTC returns it)."""
    out: dict[str, KernelResources] = {}
    parts = _ENTRY.split(log)
    for i in range(1, len(parts) - 2, 3):
        name, arch, body = parts[i], parts[i + 1], parts[i + 2]
        regs, frame = _REGS.search(body), _FRAME.search(body)
        if regs is None:
            raise ValueError(f"ptxas log for {name} ({arch}) has no register count: {body[:200]!r}")
        f = [int(v) for v in frame.groups()] if frame else [0, 0, 0]
        out[name] = KernelResources(name, arch, int(regs.group(1)), f[1], f[2], f[0])
    return out


def kernel_resources(source: str, arch: str, name: str = "kernels.cu",
                     options: tuple[str, ...] = DEFAULT_OPTIONS) -> dict[str, KernelResources]:
    """Compile ``source`` for ``arch`` with ``--ptxas-options=-v`` (no GPU needed) and return each kernel's resources."""
    nv = _nvrtc()
    prog = _check(nv.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options), b"--ptxas-options=-v"]
        _check(nv.nvrtcCompileProgram(prog, len(opts), opts), f"nvrtcCompileProgram({name}, {arch})", prog)
        return parse_ptxas_log(program_log(prog))
    finally:
        nv.nvrtcDestroyProgram(prog)


def cache_size() -> int:
    """Number of modules in the in-process cache."""
    with _LOCK:
        return len(_CACHE)


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
