"""Running a Measurer over a verification set, through the study runner (:mod:`cervisag_edge.runner`):
in-process, in worker processes (with the runner's per-study timeout), or on Ray.

A failing image becomes a :class:`~cervisag_edge.runner.StudyResult` with ``error`` set (the
runner's one-line text); it is never dropped. Results come back in the order of the items.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from ...core.measurer import MeasurerSpec
from ...runner import Study, StudyResult, run_studies

if TYPE_CHECKING:  # pragma: no cover
    from .dataset import VerifyItem

__all__ = ["MeasurerSpec", "run_measurements"]

#: progress(done, total, failed)
ProgressFn = Callable[[int, int, int], None]


def run_measurements(
    items: Sequence["VerifyItem"],
    spec: MeasurerSpec,
    workers: int = 1,
    progress: ProgressFn | None = None,
    ray_address: str | None = None,
    use_ray: bool = False,
    timeout_s: float | None = None,
) -> list[StudyResult]:
    """Measure every item; one result per item, in item order.

    A missing model or backend raises here (``ModelError``/``BackendUnavailableError``) instead of
    failing every image. ``workers > 1`` uses the runner's process pool; ``use_ray`` runs
    ``workers`` Ray actors on the cluster at ``ray_address`` (a local instance when None).
    """
    studies = [Study(i, it.path, it.pixel_spacing_mm) for i, it in enumerate(items)]
    failed = [0]

    def on_result(done: int, total: int, result: StudyResult) -> None:
        failed[0] += not result.ok
        if progress is not None:
            progress(done, total, failed[0])

    if progress is not None:
        progress(0, len(studies), 0)
    return list(run_studies(studies, spec, workers=workers, timeout_s=timeout_s, progress=on_result,
                            use_ray=use_ray, ray_address=ray_address))
