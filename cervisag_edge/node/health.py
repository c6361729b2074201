"""The health file ``<spool>/status.json`` behind ``cervisag serve --status``.

Fields: ``pid``, ``state`` (starting / serving / draining / stopped), ``started_at`` and
``updated_at`` (Unix seconds), ``queue_depth`` (received, not yet measured), ``in_progress``,
``pending_deliveries`` (studies waiting for a destination, including retries), ``received``,
``processed`` (delivered everywhere), ``skipped``, ``failed`` (dead-lettered),
``delivery_failures`` (failed attempts, retried), and the totals ``measure_ms``, ``write_ms``,
``send_ms`` of this run, plus the spool's file counts (``spool``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import InputError

STATUS_FILE = "status.json"


def read_status(spool: str | os.PathLike[str]) -> dict[str, Any]:
    """The last status the node at ``spool`` wrote, with ``alive`` (its pid still runs) and
    ``age_s`` (seconds since it was written)."""
    path = Path(spool) / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no status file, expected a spool a node has run on") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable status file: {exc}") from None
    status["age_s"] = round(time.time() - float(status.get("updated_at", 0.0)), 1)
    status["alive"] = _alive(int(status.get("pid", 0))) and status.get("state") != "stopped"
    return status


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_status(status: dict[str, Any]) -> str:
    """A few human lines of ``status``."""
    keys = ("state", "alive", "queue_depth", "in_progress", "pending_deliveries", "received", "processed",
            "skipped", "failed", "delivery_failures", "age_s")
    return "\n".join(f"{k}: {status.get(k)}" for k in keys)
