"""Verification harness of ``cervisag verify``: accuracy metrics, thresholds, runs, reports.

Modules: :mod:`.metrics` (pure numpy statistics), :mod:`.thresholds` (versioned threshold
files), :mod:`.dataset` (COCO keypoint sets), :mod:`.harness` (the set through the study runner,
:mod:`cervisag_edge.runner`), :mod:`.evaluate` (the metrics document), :mod:`.compare` (variants and
baselines), :mod:`.runner` (the whole job), :mod:`.report` (Markdown + PNG).
"""
from __future__ import annotations

from .dataset import VerifyDataset, VerifyItem, load_dataset
from .harness import MeasurerSpec, run_measurements
from .runner import VerificationOutcome, verify
from .thresholds import ThresholdSet, load_thresholds

__all__ = [
    "MeasurerSpec",
    "ThresholdSet",
    "VerificationOutcome",
    "VerifyDataset",
    "VerifyItem",
    "load_dataset",
    "load_thresholds",
    "run_measurements",
    "verify",
]
