"""Telling the user that events were lost, the way BCC's tools do.

A tracer that drops events silently lies: the rows it prints look like the whole story.
BCC's perf-buffer callback prints ``Possibly lost N samples``; tracekit's readers count
losses in one way (``reader.lost``, ``Object.lost``, ``Probe.lost``: perf buffers from the
kernel's PERF_RECORD_LOST records, ring buffers from the probe's ``tk_dropped_<map>``
counter), and :class:`LostReporter` turns a running count into lines on stderr:

* while losses happen, at most one line per ``interval`` (1 s): ``Possibly lost N
  samples``, N being the losses since the previous line -- the first loss is told at
  once, a storm does not flood the terminal, and a quiet period prints nothing;
* at exit (:meth:`finish`), the total, when there was any loss.

The reporter only reads a counter; it needs no task of its own: :meth:`tick` is cheap
enough (one clock read; the counter is read ten times a second at most) to call for
every event, and losses happen while events flow.
:meth:`run` is there for loops that may wait for long (it polls once per interval).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["LostReporter"]


class LostReporter:
    """Report the growth of ``count()`` (a running total of lost events) on ``stream``."""

    def __init__(self, count: Callable[[], int], *, stream: TextIO | None = None, interval: float = 1.0,
                 check_interval: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._stream = stream
        self.interval = interval
        self.check_interval = min(check_interval, interval)
        self._clock = clock
        # The first loss is told at once (as BCC's callback does), later ones at most once
        # per interval; the counter is read at most once per check_interval.
        self._next_check = clock()
        self._next_line = self._next_check
        #: losses already reported in a line
        self.reported = 0
        #: the latest count read
        self.total = 0
        self._finished = False

    def _out(self) -> TextIO:
        # looked up when printing, so a redirected sys.stderr (pytest, a tool) is honoured
        return self._stream if self._stream is not None else sys.stderr

    def _read(self) -> int:
        try:
            n = int(self._count())
        except Exception:  # noqa: BLE001 - a closed object: keep the last count
            return self.total
        self.total = max(self.total, n)
        return self.total

    def tick(self) -> None:
        """Call often (per event is fine): one clock read, the counter read at most every
        ``check_interval``, a line at most once per ``interval``."""
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_interval
        if now >= self._next_line and self._read() > self.reported:
            self._line(now)

    def poll(self) -> None:
        """Read the count now and print the losses since the last line, if any (no rate limit)."""
        if self._read() > self.reported:
            self._line(self._clock())

    def _line(self, now: float) -> None:
        print(f"Possibly lost {self.total - self.reported} samples", file=self._out(), flush=True)
        self.reported = self.total
        self._next_line = now + self.interval

    async def run(self) -> None:
        """Poll once per interval until cancelled (for loops that may wait long)."""
        import anyio  # here, not at the top: the tools' sync loop imports no event loop library

        while True:
            await anyio.sleep(self.interval)
            self.poll()

    def finish(self) -> None:
        """Print the total at exit (once; nothing when no event was lost)."""
        if self._finished:
            return
        self._finished = True
        n = self._read()
        if n:
            print(f"Lost {n} samples in total (the probe's buffer was full: give it more room or "
                  "trace less)", file=self._out(), flush=True)
