"""A dependency-free progress bar on stderr (redrawn in place on a terminal, sparse lines otherwise)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 1
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self._last_line = -1

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        frac = done / self.total if self.total else 1.0
        rate = done / max(time.monotonic() - self.t0, 1e-9)
        bar = "#" * int(frac * 24)
        text = f"{self.label} [{bar:<24}] {done}/{self.total} {rate:.1f}/s {note}"
        if self.tty:
            self.stream.write("\r" + text[:120].ljust(120))
            if done >= self.total:
                self.stream.write("\n")
        else:
            step = max(1, self.total // 10)
            if done == self.total or done // step != self._last_line:
                self._last_line = done // step
                self.stream.write(text + "\n")
        self.stream.flush()
