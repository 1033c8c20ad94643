"""Progress reporting: a bar on a terminal, silent otherwise, and a callback for services.

Long stages take a ``progress`` argument: any callable ``progress(done, total, label)``. The
CLI passes :func:`terminal_bar`; the job service passes one that stores layers done; the
default :func:`silent` does nothing.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

Progress = Callable[[int, int, str], None]


def silent(done: int, total: int, label: str = "") -> None:
    """A progress callback that reports nothing."""


class TerminalBar:
    """``progress(done, total, label)`` drawing one bar on stderr when it is a terminal."""

    def __init__(self, stream=None, min_interval_s: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._label = None

    def __call__(self, done: int, total: int, label: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and label == self._label and now - self._last < self.min_interval_s:
            return
        self._last = now
        self._label = label
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        width = 30
        fill = int(round(frac * width))
        self.stream.write(f"\r{label[:24]:24s} [{'#' * fill}{'.' * (width - fill)}] {done}/{total}")
        if finished:
            self.stream.write("\n")
        self.stream.flush()


def terminal_bar() -> Progress:
    """A fresh terminal bar (quiet when stderr is not a TTY)."""
    return TerminalBar()
