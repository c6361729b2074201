"""Tools for building and checking the runtime, kept apart from it: phantom generation
(:mod:`.phantom`), training (:mod:`.training`), verification (:mod:`.verify`) and latency
benchmarks (:mod:`.latency`). The runtime never imports from here.
"""
from __future__ import annotations
