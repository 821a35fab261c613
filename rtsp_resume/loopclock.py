"""The clock a terminal's silence is judged by (claims 2, 8): it stands still while the
server's own event loop is stalled, since no answer can be read then, whatever the terminal
did. The loop pulses it every ``period``; whatever a pulse is later than ``slack`` counts as
a stall and is left out of every reading (a loop that is merely busy loses nothing: a real
silence is still caught on time). The underlying clock is injected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class LoopClock:
    """Seconds on ``clock`` less the loop's stalls; call it to read it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, period: float = 0.1,
                 slack: float = 0.25) -> None:
        self._clock, self.period, self.slack = clock, period, slack
        self.stalled = 0.0  # seconds of stall left out so far
        self._due = clock() + period
        self._timer: asyncio.TimerHandle | None = None

    def pulse(self) -> None:
        """The loop's regular call: a late one ends a stall."""
        now = self._clock()
        self.stalled += self._overdue(now)
        self._due = now + self.period

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Pulse on ``loop`` from now on, until :meth:`stop`."""
        self.pulse()
        self._timer = loop.call_later(self.period, self.start, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def __call__(self) -> float:
        now = self._clock()
        return now - self.stalled - self._overdue(now)  # a stall going on counts already

    def _overdue(self, now: float) -> float:
        return max(0.0, now - self._due - self.slack)
