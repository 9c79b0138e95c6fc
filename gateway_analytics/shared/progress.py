"""Progress of long commands: a redrawn bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_LINE_INTERVAL_S = 5.0
_BAR_INTERVAL_S = 0.2
_BAR_WIDTH = 30


class Progress:
    """Counts records and reports the count, the rate and the time left.

    Args:
        label: what is being done, such as ``replay``.
        total: how many records are expected, when known; without it no ETA.
        stream: where to write; a terminal gets a bar redrawn in place,
            anything else a line every few seconds.
    """

    def __init__(
        self, label: str, *, total: int | None = None, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._on_terminal = self._stream.isatty()
        self._started = time.monotonic()
        self._last_report = 0.0
        self._reported_done = -1

    def advance(self, count: int) -> None:
        """Record ``count`` more records, reporting when it is time to."""
        self.done += count
        now = time.monotonic()
        interval = _BAR_INTERVAL_S if self._on_terminal else _LINE_INTERVAL_S
        if now - self._last_report >= interval:
            self._last_report = now
            self._report(now)

    def finish(self) -> None:
        """Write the final figures, unless already written, and end the line."""
        if self.done != self._reported_done:
            self._report(time.monotonic())
        if self._on_terminal:
            self._stream.write("\n")
        self._stream.flush()

    def summary(self, now: float) -> str:
        """The figures as text: records, records/s and, when known, the ETA."""
        elapsed_s = max(now - self._started, 1e-9)
        rate = self.done / elapsed_s
        text = f"{self.label}: {self.done:,} records, {rate:,.0f} records/s"
        if self.total:
            left = max(self.total - self.done, 0)
            eta = f"{left / rate:,.0f} s" if rate > 0 else "?"
            text += f", {self.done / self.total:.0%} of {self.total:,}, ETA {eta}"
        return text

    def _report(self, now: float) -> None:
        self._reported_done = self.done
        text = self.summary(now)
        if not self._on_terminal:
            self._stream.write(text + "\n")
            self._stream.flush()
            return
        bar = ""
        if self.total:
            filled = round(_BAR_WIDTH * min(self.done / self.total, 1.0))
            bar = "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "] "
        self._stream.write("\r" + bar + text + "\033[K")
        self._stream.flush()
