"""Heartbeat monitor of one session (claims 2 and 8 of CN101662474A), pure logic.

The streaming server sends heartbeats to the terminal and takes its answers; when no
sign of life arrives within a predetermined time, the connection is abnormally
interrupted. This module only decides: the caller tells it what happened and when, asks
``tick(now)`` what to do, and sleeps until ``next_deadline(now)``. No sockets, no
threads, no clock of its own, so tests drive it with a fake clock.

Life is any evidence that the terminal is still there: a response to a heartbeat (any
status, with or without CSeq, even to an old heartbeat), a request from the client that
carries the session id, an RTCP receiver report. The session is interrupted as soon as
``now >= last_life + timeout``. That state is terminal: a late answer does not revive
it, because by then the server has already released the session.

Every input first applies that rule at its own ``now``. So an answer that arrives after
the deadline finds the session already interrupted even if nobody ticked in between:
the verdict does not depend on how often the caller ticks.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import NamedTuple


class LogEvent(NamedTuple):
    """One entry of :attr:`HeartbeatMonitor.log`, for plots. ``kind`` is ``"sent"``,
    ``"answered"``, ``"life"`` or ``"interrupted"``; ``cseq`` is the heartbeat concerned
    (for ``"life"`` from a response: the CSeq it carried, which matched no heartbeat)."""

    time: float
    kind: str
    cseq: int | None


@dataclass(frozen=True)
class Interruption:
    """The verdict: life was last seen at ``last_life`` and the silence was noticed at
    ``detected_at`` (at least ``last_life + timeout``). ``unanswered`` heartbeats were
    still waiting for an answer; ``last_answered`` is the CSeq of the newest heartbeat
    that was answered (None if none was), ``why`` what the last life was."""

    last_life: float
    detected_at: float
    unanswered: int
    last_answered: int | None
    why: str

    @property
    def silence(self) -> float:
        return self.detected_at - self.last_life


@dataclass(frozen=True)
class Decision:
    """What ``tick`` tells the caller: send a heartbeat now, and/or the session is
    interrupted (then nothing is to be sent any more)."""

    send_heartbeat: bool
    interrupted: Interruption | None

    @property
    def alive(self) -> bool:
        return self.interrupted is None


# Heartbeats remembered so that a late answer can still be matched to the one it
# answers. At the default interval this is about a minute of them.
_REMEMBERED = 64


class HeartbeatMonitor:
    """Liveness of one session, from events and an injected clock.

    ``interval``: seconds between heartbeats. ``timeout``: seconds without any life
    after which the session is abnormally interrupted. ``now``: the creation time, which
    counts as life (the session was just set up by the terminal). The first heartbeat
    is due ``interval`` after it.
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
        self.last_answered: int | None = None
        self._last_answered_sent = -math.inf
        self.interruption: Interruption | None = None
        self.log: deque[LogEvent] = deque(maxlen=log_size)
        self._created = now
        # Heartbeats not yet answered, oldest first: cseq -> time sent.
        self._outstanding: OrderedDict[int, float] = OrderedDict()
        # Every recent heartbeat, answered or not, so late answers are recognised.
        self._recent: OrderedDict[int, float] = OrderedDict()

    # ------------------------------------------------------------------ inputs

    def heartbeat_sent(self, cseq: int, now: float) -> None:
        """The caller wrote heartbeat ``cseq`` to the terminal at ``now``."""
        if self._check(now):
            return
        self.last_sent = now
        for table in (self._outstanding, self._recent):
            table[cseq] = now
            table.move_to_end(cseq)
        while len(self._recent) > _REMEMBERED:
            self._recent.popitem(last=False)
        # Forgotten heartbeats stop being outstanding too (both are in sending order).
        while self._outstanding and next(iter(self._outstanding)) not in self._recent:
            self._outstanding.popitem(last=False)
        self.log.append(LogEvent(now, "sent", cseq))

    def response_received(self, cseq: int | None, now: float) -> int | None:
        """A response from the terminal arrived at ``now``. Any response is life.

        Returns the CSeq of the heartbeat it answered, or None when it matches none.
        A response without a usable CSeq is credited to the oldest unanswered
        heartbeat: responses come back in order on the connection, so at least that
        one was read. Answering heartbeat N also settles every heartbeat sent before
        it. An answer to an old heartbeat is returned too (the caller's position
        estimator ignores what it already knows).
        """
        if self._check(now):
            return None
        answered: int | None = None
        if cseq is not None and cseq in self._recent:
            answered = cseq
        elif cseq is None and self._outstanding:
            answered = next(iter(self._outstanding))
        if answered is not None and answered in self._outstanding:
            while self._outstanding:
                oldest, _ = self._outstanding.popitem(last=False)
                if oldest == answered:
                    break
        if answered is not None:
            sent_at = self._recent[answered]
            # An answer to an older heartbeat than one already answered tells nothing new.
            if sent_at >= self._last_answered_sent:
                self.last_answered = answered
                self._last_answered_sent = sent_at
            self._life(now, f"answer to heartbeat {answered}")
            self.log.append(LogEvent(now, "answered", answered))
        else:
            self._life(now, f"response with CSeq {cseq}")
            self.log.append(LogEvent(now, "life", cseq))
        return answered

    def life_seen(self, now: float, why: str = "") -> None:
        """Other evidence of life at ``now``: a client request carrying the session id,
        an RTCP receiver report, ..."""
        if self._check(now):
            return
        self._life(now, why or "activity")
        self.log.append(LogEvent(now, "life", None))

    # ----------------------------------------------------------------- outputs

    def tick(self, now: float) -> Decision:
        """What to do at ``now``: interrupted once ``now >= last_life + timeout``;
        otherwise send a heartbeat when ``interval`` has passed since the last one."""
        if self._check(now):
            return Decision(False, self.interruption)
        return Decision(now >= self._next_heartbeat(), None)

    def next_deadline(self, now: float) -> float:
        """When the caller should tick next: the sooner of the next heartbeat and the
        moment silence becomes an interruption (``inf`` once interrupted). It may be in
        the past when a heartbeat is overdue."""
        if self._check(now):
            return math.inf
        return min(self._next_heartbeat(), self.last_life + self.timeout)

    @property
    def interrupted(self) -> bool:
        return self.interruption is not None

    @property
    def unanswered(self) -> int:
        """Heartbeats sent after the newest answered one that are still unanswered."""
        return len(self._outstanding)

    # ---------------------------------------------------------------- internals

    def _next_heartbeat(self) -> float:
        return (self._created if self.last_sent is None else self.last_sent) + self.interval

    def _life(self, now: float, why: str) -> None:
        # Events may be reported slightly out of order; life never moves backwards.
        if now >= self.last_life:
            self.last_life = now
            self.last_life_why = why

    def _check(self, now: float) -> bool:
        """Apply the timeout rule at ``now``; True when the session is interrupted."""
        # Written as a sum, not a difference, so that ticking at exactly next_deadline()
        # detects despite float rounding.
        if self.interruption is None and now >= self.last_life + self.timeout:
            self.interruption = Interruption(
                last_life=self.last_life,
                detected_at=now,
                unanswered=len(self._outstanding),
                last_answered=self.last_answered,
                why=self.last_life_why,
            )
            self.log.append(LogEvent(now, "interrupted", None))
        return self.interruption is not None
