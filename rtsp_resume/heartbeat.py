"""Heartbeat monitor of one session (claims 2 and 8 of CN101662474A), pure logic.

The streaming server sends heartbeats to the terminal and takes its answers; when no sign
of life arrives within a predetermined time the connection is abnormally interrupted. The
caller reports what happened and when, asks ``tick(now)`` what to do and sleeps until
``next_deadline(now)``: no sockets, no threads, no clock of its own.

Life is any evidence that the terminal is there: a response to a heartbeat (any status,
with or without CSeq, even to an old heartbeat), a request carrying the session id, an
RTCP report. The session is interrupted as soon as ``now >= last_life + timeout``, and
every input applies that rule at its own ``now`` first, so the verdict does not depend on
how often the caller ticks. It is final: a late answer does not revive the session, and
the monitor's figures (``last_life``, ``unanswered``, ...) stay as they were at the verdict.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple


class LogEvent(NamedTuple):
    """One entry of :attr:`HeartbeatMonitor.log`: ``kind`` is ``"sent"``, ``"answered"``,
    ``"life"`` or ``"interrupted"``; ``cseq`` the heartbeat concerned (for ``"life"`` from
    a response, the CSeq it carried, which matched no heartbeat)."""

    time: float
    kind: str
    cseq: int | None


class Decision(NamedTuple):
    """What ``tick`` tells the caller: send a heartbeat now; the session is interrupted."""

    send_heartbeat: bool
    interrupted: bool

    @property
    def alive(self) -> bool:
        return not self.interrupted


# Heartbeats remembered so that a late answer can still be matched: a minute of them.
_REMEMBERED = 64


class HeartbeatMonitor:
    """Liveness of one session, from events and an injected clock.

    ``interval``: seconds between heartbeats; ``timeout``: seconds without life after
    which the session is interrupted; ``now``: the creation time, which counts as life.
    """

    def __init__(
        self, interval: float = 1.0, timeout: float = 3.0, *, now: float, log_size: int = 512
    ) -> None:
        if not interval > 0 or not timeout > 0:
            raise ValueError("interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
        self.last_life = now
        self.last_life_why = "session start"
        self.last_sent: float | None = None
        self.last_answered: int | None = None  # the newest heartbeat answered
        self.detected_at: float | None = None  # when the interruption was declared
        self.log: deque[LogEvent] = deque(maxlen=log_size)
        self._created = now
        self._recent: deque[int] = deque(maxlen=_REMEMBERED)  # CSeqs sent, oldest first

    def heartbeat_sent(self, cseq: int, now: float) -> None:
        """The caller wrote heartbeat ``cseq`` to the terminal at ``now``."""
        if self._check(now):
            return
        self.last_sent = now
        self._recent.append(cseq)  # CSeqs only grow: the oldest drops off the front
        self.log.append(LogEvent(now, "sent", cseq))

    def response_received(self, cseq: int | None, now: float) -> int | None:
        """A response from the terminal arrived at ``now``: life. Returns the CSeq of the
        heartbeat it answers, or None. One without a usable CSeq answers the oldest
        unanswered heartbeat (answers come back in order); answering heartbeat N settles
        every one sent before it."""
        if self._check(now):
            return None
        if cseq is None:
            cseq = next(iter(self._outstanding()), None)
        if cseq not in self._recent:
            self._life(now, f"response with CSeq {cseq}", "life", cseq)
            return None
        if cseq in self._outstanding():  # an older one than already answered tells nothing new
            self.last_answered = cseq
        self._life(now, f"answer to heartbeat {cseq}", "answered", cseq)
        return cseq

    def life_seen(self, now: float, why: str = "") -> None:
        """Other evidence of life at ``now``: a request carrying the session id, RTCP."""
        if not self._check(now):
            self._life(now, why or "activity", "life", None)

    def tick(self, now: float) -> Decision:
        """Interrupted once ``now >= last_life + timeout``; else send a heartbeat when
        ``interval`` has passed since the last one."""
        if self._check(now):
            return Decision(False, True)
        return Decision(now >= self._next_heartbeat(), False)

    def next_deadline(self, now: float) -> float:
        """When to tick next: the next heartbeat or the moment silence becomes an
        interruption, whichever is sooner (``inf`` once interrupted; maybe past)."""
        if self._check(now):
            return math.inf
        return min(self._next_heartbeat(), self.last_life + self.timeout)

    @property
    def interrupted(self) -> bool:
        return self.detected_at is not None

    @property
    def unanswered(self) -> int:
        """Heartbeats sent after the newest answered one (none of them answered)."""
        return len(self._outstanding())

    def _outstanding(self) -> list[int]:
        newest = -1 if self.last_answered is None else self.last_answered
        return [cseq for cseq in self._recent if cseq > newest]  # CSeqs only grow

    def _next_heartbeat(self) -> float:
        return (self._created if self.last_sent is None else self.last_sent) + self.interval

    def _life(self, now: float, why: str, kind: str, cseq: int | None) -> None:
        if now >= self.last_life:  # reports may come slightly out of order
            self.last_life, self.last_life_why = now, why
        self.log.append(LogEvent(now, kind, cseq))

    def _check(self, now: float) -> bool:
        """Apply the timeout rule at ``now``; True when the session is interrupted."""
        # A sum, not a difference: ticking at exactly next_deadline() must detect.
        if self.detected_at is None and now >= self.last_life + self.timeout:
            self.detected_at = now
            self.log.append(LogEvent(now, "interrupted", None))
        return self.detected_at is not None
