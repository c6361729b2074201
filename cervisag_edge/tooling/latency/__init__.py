"""Latency benchmarks behind ``cervisag bench``: :mod:`.bench` (inference stages, backends,
precisions) and :mod:`.read_path` (reading each DICOM transfer syntax)."""
from __future__ import annotations
