"""Keep what pydicom and the decoders log inside one read, instead of letting it reach the console.

pydicom's decoder logs exceptions with full tracebacks at ERROR level and repeats its
``UserWarning``\\ s through the ``pydicom`` logger. Inside :func:`captured` those records and the
Python warnings raised on this thread are collected (message only, never the traceback) so the
reader can fold them into its one-line error or the image's warnings. With debug logging on (``--debug``) they are shown as well. Outside a capture the
records reach the root logger's handlers exactly as propagation would deliver them.

Python's ``warnings`` state is process-wide: two threads reading at once may each see the other's
warnings filter for a moment; no warning is lost from the capture that raised it.
"""
from __future__ import annotations

import logging
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

__all__ = ["captured", "CAPTURED_LOGGERS"]

#: Loggers whose records are captured during a read.
CAPTURED_LOGGERS = ("pydicom", "openjpeg", "pylibjpeg", "jpeg_ls", "imagecodecs")

_state = threading.local()
_install_lock = threading.Lock()


class _RouteHandler(logging.Handler):
    """Sends a record to the current thread's capture, or else on to the root logger's handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        sink: list[str] | None = getattr(_state, "sink", None)
        if sink is not None:
            if record.levelno >= logging.WARNING:
                sink.append(_first_line(record.getMessage()))
            if not logging.getLogger().isEnabledFor(logging.DEBUG):  # --debug shows the records too
                return
        for handler in logging.getLogger().handlers:  # what propagation to the root would do
            if record.levelno >= handler.level:
                handler.handle(record)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _install() -> None:
    """Route :data:`CAPTURED_LOGGERS` through :class:`_RouteHandler` (idempotent, re-asserted on
    every capture: a library or a test harness may reset a logger's ``propagate`` in between)."""
    with _install_lock:
        for name in CAPTURED_LOGGERS:
            log = logging.getLogger(name)
            if not any(isinstance(h, _RouteHandler) for h in log.handlers):
                log.addHandler(_RouteHandler())
            log.propagate = False


@contextmanager
def captured() -> Iterator[list[str]]:
    """Collect, for the duration of the block, the WARNING+ messages of :data:`CAPTURED_LOGGERS`
    and the Python warnings raised on this thread. Yields the list (first lines, deduplicated on exit)."""
    _install()
    outer = getattr(_state, "sink", None)
    sink: list[str] = []
    _state.sink = sink
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield sink
            finally:
                sink.extend(_first_line(str(w.message)) for w in caught)
    finally:
        _state.sink = outer
        unique = list(dict.fromkeys(m for m in sink if m))
        sink[:] = unique
        if outer is not None:
            outer.extend(unique)
