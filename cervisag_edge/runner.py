"""The study runner: many studies, one way — serially, in a process pool with per-study timeouts,
or on Ray. ``cervisag measure``, ``cervisag verify`` and ``Measurer.measure_many`` all use it.

A run takes a picklable :class:`~cervisag_edge.core.measurer.MeasurerSpec`; each worker process (or
Ray actor) builds one Measurer from it, once, before any study's clock starts (a load error stops
the run, raised in the caller). Each study becomes one :class:`StudyResult`, in input order; any
error becomes its one-line ``error`` (:func:`error_text`), whatever the mode: one bad study never
stops the others. Whenever there are workers a per-study timeout applies
(:data:`DEFAULT_STUDY_TIMEOUT_S` unless given): a study past it is recorded as timed out, its
worker is replaced, and the run goes on.

Sinks (:mod:`cervisag_edge.outputs.sinks`: overlay PNG, DICOM SC/SR) run where the study was
measured, while its pixels and header are there; the results that come back carry the
measurement without its study (:meth:`Measurement.without_study`). The JSON records consume the
returned results (:class:`cervisag_edge.outputs.records.RecordSink`).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence

from .errors import CervisagError, InputError
from .core.measurer import MeasurerSpec

if TYPE_CHECKING:  # pragma: no cover
    from .core.measurement import Measurement

logger = logging.getLogger(__name__)

#: Per-study time limit (s) whenever studies run in worker processes or Ray actors.
DEFAULT_STUDY_TIMEOUT_S = 120.0
#: Most studies one run accepts (a console sending a runaway list is refused up front).
DEFAULT_MAX_STUDIES = 100_000
#: Suffixes collected from folders; files without a suffix are tried as DICOM.
IMAGE_SUFFIXES = frozenset({".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})
_SKIP_SUFFIXES = frozenset({".json", ".txt", ".md", ".csv", ".xml", ".html", ".zip"})

__all__ = ["MeasurerSpec", "Study", "StudyResult", "Sink", "run_studies", "studies_of", "collect_inputs", "error_text",
           "DEFAULT_STUDY_TIMEOUT_S", "DEFAULT_MAX_STUDIES"]


@dataclass(frozen=True)
class Study:
    """One study to measure: its position in the run, its path, an optional (row, col) mm spacing."""

    index: int
    path: str
    pixel_spacing_mm: tuple[float, float] | None = None


@dataclass(frozen=True)
class StudyResult:
    """Outcome of one study: its ``measurement``, or ``error`` (one line naming the file) when it failed."""

    index: int
    path: str
    measurement: "Measurement | None"
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class Sink(Protocol):
    """Consumes results. File sinks given to :func:`run_studies` must pickle (they travel to workers)."""

    def consume(self, result: StudyResult) -> None: ...


#: progress(done, total, result)
ProgressFn = Callable[[int, int, StudyResult], None]


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
                if suf in IMAGE_SUFFIXES or suf == "" or (suf not in _SKIP_SUFFIXES and suf[1:].isdigit()):
                    out.append(str(f))
        else:
            out.append(str(p))
    return out


def studies_of(paths: Iterable[str | os.PathLike[str]], pixel_spacing_mm: tuple[float, float] | None = None) -> list[Study]:
    """One :class:`Study` per path, numbered in order."""
    return [Study(i, str(p), pixel_spacing_mm) for i, p in enumerate(paths)]


def error_text(path: str, exc: BaseException) -> str:
    """The one-line error of a failed study, the same in every mode: this package's errors keep
    their message (it names the file and the problem), others are prefixed with their type; the
    path leads when the message does not already start with it."""
    message = " ".join(str(exc).split()) or "no message"
    if not isinstance(exc, CervisagError):
        message = f"{type(exc).__name__}: {message}"
    return message if message.startswith(path) else f"{path}: {message}"


def _failed(study: Study, message: str) -> StudyResult:
    return StudyResult(study.index, study.path, None, message)


def _timed_out(study: Study, waited_s: float, limit_s: float) -> StudyResult:
    return _failed(study, f"{study.path}: measurement timed out after {waited_s:.1f} s (limit {limit_s:g} s)")


def measure_study(measurer: Any, study: Study, sinks: Sequence[Sink] = ()) -> StudyResult:
    """Measure one study and feed the sinks; any exception becomes the failed result's error."""
    try:
        m = measurer.measure(study.path, pixel_spacing_mm=study.pixel_spacing_mm)
        result = StudyResult(study.index, study.path, m, None)
        for sink in sinks:
            sink.consume(result)
    except Exception as exc:  # never let one study stop the run (MemoryError, decoder bugs, sink I/O, ...)
        logger.debug("measuring %s failed", study.path, exc_info=True)
        return _failed(study, error_text(study.path, exc))
    return replace(result, measurement=m.without_study()) if hasattr(m, "without_study") else result


def run_studies(studies: Sequence[Study], spec: MeasurerSpec, *, workers: int = 1, timeout_s: float | None = None,
                sinks: Sequence[Sink] = (), progress: ProgressFn | None = None, measurer: Any = None,
                use_ray: bool = False, ray_address: str | None = None,
                max_studies: int = DEFAULT_MAX_STUDIES) -> Iterator[StudyResult]:
    """Measure ``studies``; yields one :class:`StudyResult` per study, in input order.

    ``workers == 1`` without ``timeout_s``: in this process, with ``measurer`` if given, else one
    built from ``spec``. ``workers > 1`` or a ``timeout_s``: a process pool (forkserver where
    available, else spawn) of ``workers`` Measurers with ``cpu_count // workers`` threads each
    unless ``spec.threads`` is set. ``use_ray``: ``workers`` Ray actors on the cluster at
    ``ray_address`` (a local instance when None). With workers the per-study timeout is
    ``timeout_s`` or :data:`DEFAULT_STUDY_TIMEOUT_S`. ``progress(done, total, result)`` after each.
    """
    if len(studies) > max_studies:
        raise InputError(f"batch of {len(studies)} files exceeds the maximum batch size {max_studies}")
    if workers < 1:
        raise ValueError(f"workers {workers} must be >= 1")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s {timeout_s} must be > 0")
    total = len(studies)
    if use_ray:
        results = _ray_results(studies, spec, tuple(sinks), workers, timeout_s or DEFAULT_STUDY_TIMEOUT_S, ray_address)
    elif workers == 1 and timeout_s is None:
        results = _serial_results(studies, spec, tuple(sinks), measurer)
    else:
        if spec.threads is None:  # share the cores between the workers instead of oversubscribing them
            spec = replace(spec, threads=max(1, (os.cpu_count() or 1) // workers))
        results = _pool_results(studies, spec, tuple(sinks), workers, timeout_s or DEFAULT_STUDY_TIMEOUT_S)
    for done, result in enumerate(_in_order(results, [s.index for s in studies]), start=1):
        if progress is not None:
            progress(done, total, result)
        yield result


def _serial_results(studies: Sequence[Study], spec: MeasurerSpec, sinks: tuple[Sink, ...], measurer: Any
                    ) -> Iterator[StudyResult]:
    """In this process, with the caller's Measurer or one built (and closed) here."""
    own = measurer if measurer is not None else spec.build()
    try:
        for s in studies:
            yield measure_study(own, s, sinks)
    finally:
        if measurer is None and hasattr(own, "close"):
            own.close()


def _in_order(results: Iterable[StudyResult], order: Sequence[int]) -> Iterator[StudyResult]:
    """Results as they come, re-ordered to ``order`` (each yielded as soon as all before it are)."""
    held: dict[int, StudyResult] = {}
    position = 0
    for r in results:
        held[r.index] = r
        while position < len(order) and order[position] in held:
            yield held.pop(order[position])
            position += 1


def mp_context() -> Any:
    """forkserver where the platform has it (Linux), else spawn; never fork (threads of ORT)."""
    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


# ------------------------------------------------------------------ process pool
_WORKER: dict[str, Any] = {}


def _init_worker(spec: MeasurerSpec, sinks: tuple[Sink, ...]) -> None:
    logging.basicConfig(level=logging.WARNING)
    _WORKER["sinks"] = sinks
    try:
        _WORKER["measurer"], _WORKER["error"] = spec.build(), None
    except Exception as exc:  # raised in the parent by _ping: an initializer that raises respawns forever
        _WORKER["measurer"], _WORKER["error"] = None, exc


def _ping(_: object = None) -> BaseException | None:
    """Runs once a worker is initialised: its Measurer's load error, or None."""
    return _WORKER.get("error")


def _worker_measure(study: Study) -> StudyResult:
    return measure_study(_WORKER["measurer"], study, _WORKER["sinks"])


def _pool_results(studies: Sequence[Study], spec: MeasurerSpec, sinks: tuple[Sink, ...], workers: int,
                  timeout_s: float) -> Iterator[StudyResult]:
    ctx = mp_context()
    pending = list(studies)
    while pending:
        pool = ctx.Pool(processes=min(workers, len(pending)), initializer=_init_worker, initargs=(spec, sinks))
        try:
            # wait for a loaded model before any study's clock starts; a load error stops the run
            init_error = pool.apply(_ping)
            if init_error is not None:
                raise init_error
            asyncs = [(s, pool.apply_async(_worker_measure, (s,))) for s in pending]
            pending = []
            for k, (s, ar) in enumerate(asyncs):
                started = time.monotonic()
                try:
                    yield ar.get(timeout=timeout_s)
                except mp.TimeoutError:
                    yield _timed_out(s, time.monotonic() - started, timeout_s)
                    # the stuck worker dies with the pool; finished studies are kept, the rest resubmitted
                    for t, a in asyncs[k + 1:]:
                        done = _finished(a)
                        if done is None:
                            pending.append(t)
                        else:
                            yield done
                    break
                except Exception as exc:  # the task failed outside measure_study, e.g. a result that cannot be pickled
                    yield _failed(s, error_text(s.path, exc))
        finally:
            pool.terminate()
            pool.join()


def _finished(ar: Any) -> StudyResult | None:
    """The result of an async task that already finished, else None (a crashed task is resubmitted)."""
    if ar.ready():
        try:
            return ar.get(timeout=0)
        except Exception:
            return None
    return None


# ------------------------------------------------------------------ Ray
class _StudyActor:
    """Body of a Ray actor: one Measurer per actor (its load error is returned by ``ping``)."""

    def __init__(self, spec: MeasurerSpec, sinks: tuple[Sink, ...]) -> None:
        self._sinks = sinks
        try:
            self._measurer, self._error = spec.build(), None
        except Exception as exc:
            self._measurer, self._error = None, exc

    def ping(self) -> BaseException | None:
        return self._error

    def measure(self, study: Study) -> StudyResult:
        return measure_study(self._measurer, study, self._sinks)


def _ray_results(studies: Sequence[Study], spec: MeasurerSpec, sinks: tuple[Sink, ...], actors: int, timeout_s: float,
                 address: str | None) -> Iterator[StudyResult]:
    try:
        import ray
    except ImportError:
        from .errors import BackendUnavailableError

        raise BackendUnavailableError("--ray needs the Python package 'ray' (pip install 'cervisag-edge[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        actor_cls = ray.remote(_StudyActor)

        def new_actor() -> Any:
            actor = actor_cls.remote(spec, sinks)
            error = ray.get(actor.ping.remote())
            if error is not None:
                raise error
            return actor

        queue = deque(studies)
        inflight: dict[Any, tuple[Any, Study, float]] = {}

        def submit(actor: Any) -> None:
            if queue:
                study = queue.popleft()
                inflight[actor.measure.remote(study)] = (actor, study, time.monotonic())

        for actor in [new_actor() for _ in range(min(actors, len(studies)))]:
            submit(actor)
        while inflight:
            deadline = min(t0 for _, _, t0 in inflight.values()) + timeout_s
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if ready:
                actor, study, _ = inflight.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except Exception as exc:  # the actor died (a crashing decoder): record it, replace the actor
                    yield _failed(study, error_text(study.path, exc))
                    actor = new_actor() if queue else None
                if actor is not None:
                    submit(actor)
                continue
            now = time.monotonic()
            for ref, (actor, study, t0) in list(inflight.items()):
                if now - t0 >= timeout_s:
                    del inflight[ref]
                    ray.kill(actor)
                    yield _timed_out(study, now - t0, timeout_s)
                    if queue:
                        submit(new_actor())
    finally:
        if started:
            ray.shutdown()
