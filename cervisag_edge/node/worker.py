"""Measuring one spooled instance and writing its result objects (SR, GSPS, SC) into the spool.

:func:`measure_instance` is the single place the node calls the runtime; adapt it, and only it,
when the runtime's API changes.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

    from ..io import LoadedImage
    from ..core.measurement import Measurement
    from ..core.measurer import Measurer
    from .spool import Spool

logger = logging.getLogger(__name__)

#: Body Part Examined values taken as the cervical spine (PS3.16 Annex L defined terms).
CERVICAL_BODY_PARTS = frozenset({"CSPINE", "NECK", "SPINE", "HEADNECK"})
#: View Position values taken as a lateral view.
LATERAL_VIEWS = frozenset({"LATERAL", "LAT", "LL", "RL"})


def skip_reason(header: "pydicom.Dataset") -> str | None:
    """Why the instance is not measured (not a lateral cervical spine by its header), or None.
    An absent or empty attribute does not skip: the header then does not tell."""
    body = str(header.get("BodyPartExamined", "") or "").strip().upper()
    if body and body not in CERVICAL_BODY_PARTS:
        return f"(0018,0015) Body Part Examined {body!r} is not the cervical spine"
    view = str(header.get("ViewPosition", "") or "").strip().upper()
    if view and view not in LATERAL_VIEWS:
        return f"(0018,5101) View Position {view!r} is not lateral"
    return None


def read_instance(measurer: "Measurer", path: Path) -> "LoadedImage":
    """Read one spooled file under the measurer's limits (bounded inflate, pixel-count guard)."""
    from ..io import read_image

    return read_image(path, limits=measurer.limits)


def measure_instance(measurer: "Measurer", image: "LoadedImage") -> "Measurement":
    """Measure an image read by :func:`read_instance` (the node's one call of the runtime)."""
    return measurer.measure(image)


@dataclass(frozen=True)
class Results:
    """The result objects written for one instance: ``uids`` kind -> SOP Instance UID."""

    uids: dict[str, str]
    measure_ms: float
    write_ms: float
    parameters: dict[str, Any]


def write_results(spool: "Spool", key: str, measurement: "Measurement", image: "LoadedImage",
                  outputs: tuple[str, ...]) -> dict[str, str]:
    """Write the requested outputs of ``measurement`` into ``results/<key>/``; returns kind -> UID."""
    from ..outputs.dicom_out import write_secondary_capture, write_structured_report
    from ..outputs.gsps import write_presentation_state
    from ..outputs.overlay import render_overlay

    source = image.dataset
    uids: dict[str, str] = {}
    tmp = spool.root / "tmp"
    sc = None
    if "sc" in outputs:
        sc = write_secondary_capture(render_overlay(image.display, measurement), measurement, tmp / f"{key}.sc", source)
        uids["sc"] = str(sc.SOPInstanceUID)
    if "gsps" in outputs:
        uids["gsps"] = str(write_presentation_state(measurement, tmp / f"{key}.gsps", source).SOPInstanceUID)
    if "sr" in outputs:
        uids["sr"] = str(write_structured_report(measurement, tmp / f"{key}.sr", source, overlay_sc=sc).SOPInstanceUID)
    # the commit point: fsync each, rename into results/<key>/, one fsync of that folder
    spool.commit_all([(tmp / f"{key}.{kind}", spool.result(key, kind)) for kind in uids])
    return uids


class NotMeasured(Exception):
    """The instance is acknowledged but not measured (``str(exc)`` is the reason)."""


def process(measurer: "Measurer", spool: "Spool", key: str, outputs: tuple[str, ...]) -> Results:
    """Measure ``incoming/<key>.dcm`` and write its results. Raises :class:`NotMeasured` for a
    header that is not a lateral cervical spine, and the runtime's errors
    (:class:`~cervisag_edge.errors.CervisagError`, ValueError, OSError) for the caller to dead-letter."""
    from ..errors import InputError

    t0 = time.perf_counter()
    image = read_instance(measurer, spool.incoming(key))
    if image.dataset is None:
        raise InputError(f"{key}: not a DICOM image, cannot reference it from the results")
    reason = skip_reason(image.dataset)
    if reason is not None:
        raise NotMeasured(reason)
    measurement = measure_instance(measurer, image)
    t1 = time.perf_counter()
    uids = write_results(spool, key, measurement, image, outputs)
    t2 = time.perf_counter()
    params = {k: (None if v is None else round(float(v), 3)) for k, v in measurement.parameters.as_dict().items()}
    return Results(uids=uids, measure_ms=(t1 - t0) * 1000, write_ms=(t2 - t1) * 1000, parameters=params)
