"""Structured log lines: one JSON object per line, ``{"event": ..., ...}``.

The node writes one ``association`` line per association event, one ``c-store`` line per
received instance and one ``study`` line per finished study (delivered, skipped or dead-lettered).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``{"ts": ..., "event": event, **fields}`` as one JSON line."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    logger.log(level, "%s", json.dumps(record, default=str, separators=(",", ":")))
