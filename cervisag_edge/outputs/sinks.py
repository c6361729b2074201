"""File sinks of the study runner: overlay PNGs and DICOM SC/SR, written where the study was measured.

Each sink consumes a :class:`~cervisag_edge.runner.StudyResult` whose measurement still carries
its study (display image and DICOM header) and writes ``<index>_<stem>…`` files into its
folder. Sinks are frozen dataclasses so that they pickle to worker processes and Ray actors.
A sink that fails raises; the runner turns that into the study's one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..core.measurement import Measurement
    from ..runner import StudyResult


def output_stem(path: str, index: int) -> str:
    """``00003_study`` for the fourth study ``…/study.dcm`` (unique within a run)."""
    return f"{index:05d}_{Path(path).stem or 'image'}"


def _overlay(measurement: "Measurement") -> "np.ndarray":
    from .overlay import render_overlay

    if measurement.study is None:
        raise ValueError(f"{measurement.source}: the measurement no longer carries its study; outputs need it")
    return render_overlay(measurement.study.display, measurement)


@dataclass(frozen=True)
class OverlaySink:
    """Writes ``<folder>/<stem>.png``, the annotated overlay (RGB)."""

    folder: str

    def consume(self, result: "StudyResult") -> None:
        if result.measurement is None:
            return
        import cv2

        d = Path(self.folder)
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{output_stem(result.path, result.index)}.png"), _overlay(result.measurement)[..., ::-1])


@dataclass(frozen=True)
class DicomSink:
    """Writes ``<folder>/<stem>_sc.dcm`` (Secondary Capture of the overlay) and ``<stem>_sr.dcm``
    (Comprehensive SR referencing it), in the study of the source DICOM when there is one."""

    folder: str

    def consume(self, result: "StudyResult") -> None:
        m = result.measurement
        if m is None:
            return
        from .dicom_out import write_secondary_capture, write_structured_report

        d = Path(self.folder)
        d.mkdir(parents=True, exist_ok=True)
        stem = output_stem(result.path, result.index)
        source = m.study.dataset if m.study is not None else None
        sc = write_secondary_capture(_overlay(m), m, d / f"{stem}_sc.dcm", source=source)
        write_structured_report(m, d / f"{stem}_sr.dcm", source=source, overlay_sc=sc)


def file_sinks(overlay_dir: str | None = None, dicom_out_dir: str | None = None) -> tuple[OverlaySink | DicomSink, ...]:
    """The sinks for the ``--overlay`` and ``--dicom-out`` folders that are set."""
    sinks: list[OverlaySink | DicomSink] = []
    if overlay_dir:
        sinks.append(OverlaySink(str(overlay_dir)))
    if dicom_out_dir:
        sinks.append(DicomSink(str(dicom_out_dir)))
    return tuple(sinks)
