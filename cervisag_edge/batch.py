"""Batch measurement of many files: one bad file never stops the others.

Each file becomes one record ``{"file", "ok", "error", "measurement"}`` (see docs/output.md).
With ``workers > 1`` or a per-study ``timeout_s``, files run in worker processes (spawn
context, one Measurer per worker, built once); a study that exceeds the timeout is recorded
as failed, its worker is replaced, and the batch goes on.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .errors import CervisagError, InputError

logger = logging.getLogger(__name__)

#: Suffixes collected from folders; files without a suffix are tried as DICOM.
IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})
_SKIP_SUFFIXES = frozenset({".json", ".txt", ".md", ".csv", ".xml", ".html", ".zip"})


def collect_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Expand folders recursively (sorted) into image files; files named directly are kept as given,
    missing ones too (they fail with a clear error later rather than vanish)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if not f.is_file() or f.name.startswith("."):
                    continue
                suf = f.suffix.lower()
                if suf in IMAGE_SUFFIXES or (suf == "" ) or (suf not in _SKIP_SUFFIXES and suf[1:].isdigit()):
                    out.append(str(f))
        else:
            out.append(str(p))
    return out


@dataclass(frozen=True)
class BatchOptions:
    """What each worker needs to build its Measurer and write outputs.

    ``max_batch`` bounds how many files one call accepts (a console sending a runaway list is
    refused up front rather than half-processed).
    """

    model: str | None = None
    backend: str = "onnxruntime"
    precision: str = "fp32"
    threads: int | None = None
    confidence_threshold: float | None = None
    estimates: bool = True  # estimated hidden landmarks and parameters (docs/uncertainty.md)
    pixel_spacing_mm: tuple[float, float] | None = None
    overlay_dir: str | None = None
    dicom_out_dir: str | None = None
    max_pixels: int | None = None
    max_bytes: int | None = None
    timeout_s: float | None = None
    max_batch: int = 100_000
    extra: dict[str, Any] = field(default_factory=dict)


def _output_stem(file: str, index: int) -> str:
    return f"{index:05d}_{Path(file).stem or 'image'}"


class _Worker:
    """Holds one Measurer; ``process`` turns a file into a record."""

    def __init__(self, opts: BatchOptions) -> None:
        from .io import ReadLimits
        from .pipeline import Measurer

        lim_kwargs = {k: v for k, v in (("max_pixels", opts.max_pixels), ("max_bytes", opts.max_bytes)) if v}
        self.opts = opts
        self.measurer = Measurer(opts.model, backend=opts.backend, precision=opts.precision, threads=opts.threads,
                                 confidence_threshold=opts.confidence_threshold, limits=ReadLimits(**lim_kwargs),
                                 estimates=opts.estimates)

    def process(self, index: int, file: str) -> dict[str, Any]:
        from .io import read_image
        from .outputs.records import record_error, record_ok

        try:
            img = read_image(file, pixel_spacing_mm=self.opts.pixel_spacing_mm, limits=self.measurer.limits)
            m = self.measurer.measure_image(img)
            stem = _output_stem(file, index)
            if self.opts.overlay_dir or self.opts.dicom_out_dir:
                from .outputs.overlay import render_overlay

                overlay = render_overlay(img.display, m)
                if self.opts.overlay_dir:
                    import cv2

                    Path(self.opts.overlay_dir).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(Path(self.opts.overlay_dir) / f"{stem}.png"), overlay[..., ::-1])
                if self.opts.dicom_out_dir:
                    from .outputs.dicom_out import write_secondary_capture, write_structured_report

                    d = Path(self.opts.dicom_out_dir)
                    d.mkdir(parents=True, exist_ok=True)
                    sc = write_secondary_capture(overlay, m, d / f"{stem}_sc.dcm", source=img.dataset)
                    write_structured_report(m, d / f"{stem}_sr.dcm", source=img.dataset, overlay_sc=sc)
            return record_ok(file, m)
        except CervisagError as exc:
            return record_error(file, str(exc))
        except Exception as exc:  # never let one study stop the batch (MemoryError, decoder bugs, ...)
            logger.debug("unexpected error on %s", file, exc_info=True)
            return record_error(file, f"{file}: {type(exc).__name__}: {' '.join(str(exc).split())}")


_WORKER: _Worker | None = None
_INIT_ERROR: Exception | None = None


def _init_worker(opts: BatchOptions) -> None:
    global _WORKER, _INIT_ERROR
    logging.basicConfig(level=logging.WARNING)
    try:
        _WORKER = _Worker(opts)
    except Exception as exc:  # raised in the parent by _ping; an initializer that raises respawns forever
        _INIT_ERROR = exc


def _ping(_: object = None) -> Exception | None:
    """Runs once a worker is initialised: its Measurer's load error, or None."""
    return _INIT_ERROR


def _run_one(args: tuple[int, str]) -> tuple[int, dict[str, Any]]:
    if _WORKER is None:  # pragma: no cover - initializer always runs first
        raise RuntimeError("worker not initialised")
    return args[0], _WORKER.process(*args)


def run_batch(files: Sequence[str], opts: BatchOptions, workers: int = 1,
              progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any]]:
    """Measure ``files``; yields one record per file, in input order.

    ``progress(done, total, record)`` is called after each file.
    """
    if len(files) > opts.max_batch:
        raise InputError(f"batch of {len(files)} files exceeds the maximum batch size {opts.max_batch}")
    if workers < 1:
        raise ValueError(f"workers {workers} must be >= 1")
    total = len(files)
    if workers == 1 and not opts.timeout_s:
        worker = _Worker(opts)
        for i, f in enumerate(files):
            rec = worker.process(i, f)
            if progress:
                progress(i + 1, total, rec)
            yield rec
        return
    yield from _run_pool(files, opts, workers, total, progress)


def _run_pool(files: Sequence[str], opts: BatchOptions, workers: int, total: int,
              progress: Callable[[int, int, dict[str, Any]], None] | None) -> Iterator[dict[str, Any]]:
    from .outputs.records import record_error

    ctx = mp.get_context("spawn")
    results: dict[int, dict[str, Any]] = {}
    pending = list(enumerate(files))
    next_out = 0
    done = 0
    while pending:
        pool = ctx.Pool(processes=min(workers, len(pending)), initializer=_init_worker, initargs=(opts,))
        try:
            # wait for a loaded model before any study's clock starts; a load error stops the batch
            init_error = pool.apply(_ping)
            if init_error is not None:
                raise init_error
            asyncs = [(i, f, pool.apply_async(_run_one, ((i, f),))) for i, f in pending]
            pending = []
            for k, (i, f, ar) in enumerate(asyncs):
                started = time.monotonic()
                try:
                    _, rec = ar.get(timeout=opts.timeout_s) if opts.timeout_s else ar.get()
                except mp.TimeoutError:
                    waited = time.monotonic() - started
                    rec = record_error(f, f"{f}: measurement timed out after {waited:.1f} s (limit {opts.timeout_s:g} s)")
                    # the stuck worker is killed with the pool; unfinished files are resubmitted
                    pending = [(j, g) for j, g, a in asyncs[k + 1 :] if not _ready_into(a, j, results)]
                    results[i] = rec
                    break
                except Exception as exc:  # the task failed outside process(), e.g. a result that cannot be pickled
                    rec = record_error(f, f"{f}: {type(exc).__name__}: {' '.join(str(exc).split())}")
                results[i] = rec
        finally:
            pool.terminate()
            pool.join()
        while next_out in results:
            rec = results.pop(next_out)
            done += 1
            if progress:
                progress(done, total, rec)
            yield rec
            next_out += 1


def _ready_into(ar: Any, index: int, results: dict[int, dict[str, Any]]) -> bool:
    """If the async result already finished, store it and return True."""
    if ar.ready():
        try:
            results[index] = ar.get(timeout=0)[1]
            return True
        except Exception:  # a crashed task is resubmitted
            return False
    return False
