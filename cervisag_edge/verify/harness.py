"""Running a Measurer over a verification set: in-process, in worker processes, or on Ray.

Each worker process (or Ray actor) builds its own Measurer once from a picklable
:class:`MeasurerSpec`. A failing image becomes an :class:`ImageResult` with ``error`` set; it is
never dropped. Results come back in the order of the input items.
"""
from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..measurement import Measurement
    from .dataset import VerifyItem

logger = logging.getLogger(__name__)

DEFAULT_FACTORY = "cervisag_edge.pipeline:Measurer"

#: progress(done, total, failed)
ProgressFn = Callable[[int, int, int], None]


@dataclass(frozen=True)
class MeasurerSpec:
    """How to build a Measurer in any process: ``factory(model=, backend=, precision=, threads=)``.

    ``factory`` is an importable ``"module:callable"`` (default the pipeline's ``Measurer``) or a
    module-level callable (it must pickle by reference for worker processes and Ray)."""

    model: str | None = None
    backend: str = "onnxruntime"
    precision: str = "fp32"
    threads: int | None = None
    factory: Any = DEFAULT_FACTORY

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}"

    def with_variant(self, backend: str | None = None, precision: str | None = None) -> "MeasurerSpec":
        return replace(self, backend=backend or self.backend, precision=precision or self.precision)

    def build(self) -> Any:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(model=self.model, backend=self.backend, precision=self.precision, threads=self.threads)


@dataclass(frozen=True)
class ImageResult:
    """Outcome of one image: its ``measurement``, or ``error`` (one line) when it failed."""

    index: int
    path: str
    measurement: "Measurement | None"
    error: str | None


#: what travels to a worker: (index, path, pixel_spacing_mm or None)
Job = tuple[int, str, "tuple[float, float] | None"]


def measure_job(measurer: Any, job: Job) -> ImageResult:
    """Measure one job with ``measurer``, turning any exception into a failed result."""
    index, path, spacing = job
    try:
        m = measurer.measure(path, pixel_spacing_mm=spacing)
    except Exception as exc:  # a failed image is counted and reported, whatever went wrong
        logger.debug("measuring %s failed", path, exc_info=True)
        return ImageResult(index, path, None, f"{type(exc).__name__}: {exc}")
    return ImageResult(index, path, m, None)


# ------------------------------------------------------------------ worker processes
_WORKER: dict[str, Any] = {}


def _init_worker(spec: MeasurerSpec) -> None:
    try:
        _WORKER["measurer"] = spec.build()
        _WORKER["error"] = None
    except Exception as exc:  # reported per image: an initializer that raises makes Pool respawn forever
        _WORKER["measurer"] = None
        _WORKER["error"] = f"{type(exc).__name__}: {exc}"


def _worker_measure(job: Job) -> ImageResult:
    measurer = _WORKER.get("measurer")
    if measurer is None:
        return ImageResult(job[0], job[1], None, f"worker could not build the Measurer: {_WORKER.get('error')}")
    return measure_job(measurer, job)


def mp_context() -> Any:
    """forkserver where the platform has it (Linux), else spawn; never fork (threads of ORT)."""
    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


class _MeasureActor:
    """Body of the Ray actor: one Measurer per actor."""

    def __init__(self, spec: MeasurerSpec) -> None:
        self._measurer = spec.build()

    def measure(self, job: Job) -> ImageResult:
        return measure_job(self._measurer, job)


def _collect(results: Iterable[ImageResult], total: int, progress: ProgressFn | None) -> list[ImageResult]:
    out: list[ImageResult | None] = [None] * total
    done = failed = 0
    for r in results:
        out[r.index] = r
        done += 1
        failed += r.error is not None
        if progress is not None:
            progress(done, total, failed)
    return [r for r in out if r is not None]


def run_measurements(
    items: Sequence["VerifyItem"],
    spec: MeasurerSpec,
    workers: int = 1,
    progress: ProgressFn | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
) -> list[ImageResult]:
    """Measure every item; one :class:`ImageResult` per item, in item order.

    The Measurer is built once in this process first, so that a missing model or backend raises
    here (``ModelError``/``BackendUnavailableError``) instead of failing every image.
    ``workers > 1`` uses a process pool (forkserver/spawn) whose Measurers get
    ``cpu_count // workers`` threads each unless ``spec.threads`` is set; ``use_ray`` runs ``max(workers, 1)``
    Ray actors on the cluster at ``ray_address`` (a local instance when None).
    """
    jobs: list[Job] = [(i, it.path, it.pixel_spacing_mm) for i, it in enumerate(items)]
    total = len(jobs)
    if use_ray:
        if progress is not None:
            progress(0, total, 0)
        return _collect(_ray_results(jobs, spec, max(workers, 1), ray_address), total, progress)
    measurer = spec.build()
    if progress is not None:
        progress(0, total, 0)
    if workers <= 1 or total <= 1:
        return _collect((measure_job(measurer, j) for j in jobs), total, progress)
    del measurer
    if spec.threads is None:  # share the cores between the workers instead of oversubscribing them
        spec = replace(spec, threads=max(1, (os.cpu_count() or 1) // workers))
    ctx = mp_context()
    with ctx.Pool(processes=min(workers, total), initializer=_init_worker, initargs=(spec,)) as pool:
        return _collect(pool.imap_unordered(_worker_measure, jobs, chunksize=1), total, progress)


def _ray_results(jobs: list[Job], spec: MeasurerSpec, actors: int, address: str | None) -> Iterable[ImageResult]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError("--ray needs the Python package 'ray' (pip install 'cervisag-edge[ray]')") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        actor_cls = ray.remote(_MeasureActor)
        pool = ActorPool([actor_cls.remote(spec) for _ in range(actors)])
        yield from pool.map_unordered(lambda actor, job: actor.measure.remote(job), jobs)
    finally:
        if started:
            ray.shutdown()
