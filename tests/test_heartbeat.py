"""The heartbeat monitor (claims 2 and 8), driven by a fake clock."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsp_resume.heartbeat import HeartbeatMonitor, LogEvent


class Session:
    """A fake terminal: runs the monitor the way the server's loop does, sending a
    heartbeat whenever tick says so, with the answers a test script decides."""

    def __init__(self, interval: float = 1.0, timeout: float = 3.0) -> None:
        self.monitor = HeartbeatMonitor(interval, timeout, now=0.0)
        self.cseq = 100
        self.sent: list[tuple[int, float]] = []

    def run_until(
        self, end: float, answer_delay: float | Callable[[], float] | None, step: float = 0.01
    ) -> None:
        """Tick every ``step`` until ``end``; each heartbeat is answered ``answer_delay``
        later (a number, a function giving one per heartbeat, or None: never)."""
        pending: list[tuple[float, int]] = []
        now = self.monitor.last_life
        while now < end:
            now = round(now + step, 6)
            for due, cseq in [p for p in pending if p[0] <= now]:
                pending.remove((due, cseq))
                self.monitor.response_received(cseq, due)
            decision = self.monitor.tick(now)
            if not decision.alive:
                return
            if decision.send_heartbeat:
                self.cseq += 1
                self.monitor.heartbeat_sent(self.cseq, now)
                self.sent.append((self.cseq, now))
                if answer_delay is not None:
                    delay = answer_delay() if callable(answer_delay) else answer_delay
                    pending.append((round(now + delay, 6), self.cseq))


def test_healthy_session_is_never_interrupted() -> None:
    session = Session()
    session.run_until(60.0, answer_delay=0.05)
    assert not session.monitor.interrupted
    assert 58 <= len(session.sent) <= 60  # one a second
    assert session.monitor.unanswered <= 1
    # The answer to the very last heartbeat is still on its way when the run ends.
    assert session.monitor.last_answered == session.sent[-2][0]


def test_late_answers_within_the_timeout_are_fine() -> None:
    # Answers 0 to 1.95 s late: with one heartbeat a second the silence never reaches 3 s.
    rng = random.Random(2)
    session = Session()
    session.run_until(60.0, answer_delay=lambda: rng.uniform(0.0, 1.95))
    assert not session.monitor.interrupted
    assert max(event.cseq for event in session.monitor.log if event.kind == "answered") > 150


def test_jitter_beyond_the_timeout_is_an_interruption() -> None:
    session = Session()
    session.run_until(60.0, answer_delay=2.5)  # the first answer comes at 3.5 s: too late
    assert session.monitor.interrupted
    assert session.monitor.detected_at == pytest.approx(3.0)


def test_silence_is_an_interruption_exactly_at_the_timeout() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=10.0)
    monitor.life_seen(12.0, "GET_PARAMETER")
    assert monitor.tick(14.999).alive
    decision = monitor.tick(15.0)
    assert not decision.alive and not decision.send_heartbeat
    assert decision.interrupted
    assert monitor.last_life == 12.0
    assert monitor.detected_at == 15.0
    assert monitor.detected_at - monitor.last_life == pytest.approx(3.0)
    assert monitor.last_life_why == "GET_PARAMETER"


def test_silent_terminal_counts_unanswered_heartbeats() -> None:
    session = Session()
    session.run_until(2.1, answer_delay=0.05)
    session.run_until(20.0, answer_delay=None)
    interruption = session.monitor
    assert interruption.interrupted and interruption.detected_at is not None
    # Last answer at 2.05 s (to the heartbeat of 2.0 s), then nothing.
    assert interruption.last_life == pytest.approx(2.05)
    assert interruption.detected_at == pytest.approx(5.05, abs=0.011)
    assert interruption.unanswered == 3  # sent at 3, 4 and 5 s
    assert interruption.last_answered == session.sent[1][0]


def test_late_answer_after_the_timeout_does_not_revive() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    monitor.heartbeat_sent(1, 1.0)
    assert not monitor.tick(3.0).alive
    first = (monitor.detected_at, monitor.last_life, monitor.unanswered, monitor.last_answered)
    assert monitor.response_received(1, 3.5) is None
    monitor.life_seen(3.6)
    assert not monitor.tick(3.7).alive
    assert (monitor.detected_at, monitor.last_life, monitor.unanswered,
            monitor.last_answered) == first
    assert monitor.next_deadline(4.0) == math.inf


def test_answer_after_the_deadline_without_a_tick_is_too_late() -> None:
    # The verdict does not depend on how often the caller ticks.
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    monitor.heartbeat_sent(1, 1.0)
    monitor.response_received(1, 3.2)
    assert monitor.interrupted and monitor.detected_at == 3.2
    assert not monitor.tick(3.3).alive


def test_answer_to_an_old_heartbeat_is_life() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    monitor.heartbeat_sent(1, 1.0)
    monitor.heartbeat_sent(2, 2.0)
    assert monitor.response_received(1, 2.9) == 1
    monitor.heartbeat_sent(3, 3.0)
    assert monitor.unanswered == 2
    assert monitor.tick(5.8).alive  # 2.9 + 3 > 5.8
    assert monitor.response_received(3, 5.0) == 3
    assert monitor.unanswered == 0  # answering 3 settles 2 as well
    assert monitor.response_received(2, 5.5) == 2  # late, old, still life
    assert monitor.last_answered == 3  # no regression to the older one
    assert monitor.last_life == 5.5
    assert monitor.tick(8.49).alive and not monitor.tick(8.5).alive
    kinds = [event.kind for event in monitor.log]
    assert kinds == ["sent", "sent", "answered", "sent", "answered", "answered", "interrupted"]


def test_any_response_counts_even_without_cseq() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    monitor.heartbeat_sent(7, 1.0)
    monitor.heartbeat_sent(8, 2.0)
    # A 501 without CSeq: credited to the oldest unanswered heartbeat.
    assert monitor.response_received(None, 2.5) == 7
    assert monitor.unanswered == 1
    # A CSeq that matches no heartbeat (e.g. a 405 to something else): life, no credit.
    assert monitor.response_received(999, 4.0) is None
    assert monitor.last_life == 4.0 and monitor.last_answered == 7
    assert monitor.log[-1] == LogEvent(4.0, "life", 999)


def test_paused_session_that_answers_stays_alive() -> None:
    # During PAUSE no media flows and the client sends nothing of its own: only the
    # answers to heartbeats keep it alive, for as long as they come.
    session = Session()
    session.run_until(300.0, answer_delay=0.2, step=0.05)
    assert not session.monitor.interrupted


def test_next_deadline() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    assert monitor.next_deadline(0.0) == 1.0  # first heartbeat
    monitor.heartbeat_sent(1, 1.0)
    assert monitor.next_deadline(1.0) == 2.0
    monitor.heartbeat_sent(2, 2.0)
    assert monitor.next_deadline(2.0) == 3.0  # heartbeat and deadline coincide
    # Nothing but the session start (0.0) was life: at 3.0 sending finds it interrupted.
    monitor.heartbeat_sent(3, 3.0)
    assert monitor.interrupted and monitor.next_deadline(3.0) == math.inf


def test_next_deadline_is_the_silence_deadline_when_it_comes_first() -> None:
    monitor = HeartbeatMonitor(2.0, 3.0, now=0.0)
    monitor.heartbeat_sent(1, 2.0)
    monitor.response_received(1, 2.1)
    monitor.heartbeat_sent(2, 4.0)
    assert monitor.next_deadline(4.0) == 2.1 + 3.0  # before the heartbeat due at 6.0
    # Ticking exactly at the deadline detects, whatever the float rounding.
    assert monitor.tick(monitor.next_deadline(4.0)).interrupted


def test_overdue_heartbeat_is_asked_for_again() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0)
    assert monitor.tick(1.5).send_heartbeat
    assert monitor.tick(1.6).send_heartbeat  # not sent yet: still due
    assert monitor.next_deadline(1.6) == 1.0
    monitor.heartbeat_sent(1, 1.6)
    assert not monitor.tick(1.7).send_heartbeat
    assert monitor.next_deadline(1.7) == pytest.approx(2.6)


def test_bounded_log_and_memory() -> None:
    monitor = HeartbeatMonitor(1.0, 3.0, now=0.0, log_size=10)
    for i in range(1, 1000):
        monitor.heartbeat_sent(i, float(i) * 0.001)
    assert len(monitor.log) == 10
    assert monitor.unanswered == 64
    assert monitor.response_received(1, 1.0) is None  # forgotten: life, but no credit
    assert monitor.response_received(999, 1.1) == 999


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        HeartbeatMonitor(0.0, 3.0, now=0.0)
    with pytest.raises(ValueError):
        HeartbeatMonitor(1.0, -1.0, now=0.0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["sent", "answer", "life", "tick"]), st.floats(0, 0.5)),
        max_size=60,
    )
)
def test_interruption_rule_holds_for_any_event_sequence(script: list[tuple[str, float]]) -> None:
    monitor = HeartbeatMonitor(1.0, 1.0, now=0.0)
    now = 0.0
    last_life = 0.0
    cseq = 0
    for kind, gap in script:
        now += gap
        silent_too_long = now >= last_life + 1.0
        if kind == "sent":
            cseq += 1
            monitor.heartbeat_sent(cseq, now)
        elif kind == "answer":
            monitor.response_received(cseq or None, now)
        elif kind == "life":
            monitor.life_seen(now)
        else:
            monitor.tick(now)
        if silent_too_long or monitor.interrupted:
            assert monitor.interrupted
        elif kind in ("answer", "life"):
            last_life = now
        assert monitor.interrupted == (monitor.detected_at is not None)
        if monitor.detected_at is not None:
            assert monitor.detected_at >= monitor.last_life + 1.0
