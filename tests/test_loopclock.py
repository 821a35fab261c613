"""A stall of the server's own loop is not the terminal's silence (claims 2, 8): the
heartbeat monitor, timed by a :class:`LoopClock`, driven by a hand-moved clock."""

from __future__ import annotations

import time as time_module

import pytest

from rtsp_resume.heartbeat import HeartbeatMonitor
from rtsp_resume.loopclock import LoopClock


class Time:
    """The underlying clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(clock: LoopClock, time: Time, seconds: float) -> None:
    """The loop running freely for ``seconds``: a pulse every period, on time."""
    end = time.now + seconds
    while time.now + clock.period <= end + 1e-9:
        time.now += clock.period
        clock.pulse()


def answered_heartbeat_then_stall(timed_by_loop: bool) -> HeartbeatMonitor:
    """A heartbeat sent, the loop stalls 5 s (the timeout is 3 s), and the answer, which
    came long before, is read once the loop runs again."""
    time = Time()
    clock = LoopClock(time)
    now = clock if timed_by_loop else time
    monitor = HeartbeatMonitor(interval=1.0, timeout=3.0, now=now())
    run(clock, time, 1.0)
    monitor.heartbeat_sent(1, now())
    time.now += 5.0  # the stall: no pulse, nothing read
    monitor.response_received(1, now())
    return monitor


def test_an_answer_read_after_a_stall_of_the_loop_is_still_in_time() -> None:
    monitor = answered_heartbeat_then_stall(timed_by_loop=True)
    assert not monitor.interrupted
    assert monitor.last_answered == 1


def test_without_the_loop_clock_the_same_stall_would_be_a_false_interruption() -> None:
    # The control: the test above can fail, and this is what it guards against.
    assert answered_heartbeat_then_stall(timed_by_loop=False).interrupted


def test_a_stall_that_is_going_on_counts_already() -> None:
    """The loop's tick may run before the pulse after a stall: it must not judge then."""
    time = Time()
    clock = LoopClock(time)
    monitor = HeartbeatMonitor(interval=1.0, timeout=3.0, now=clock())
    run(clock, time, 2.5)
    before = clock()
    time.now += 4.0  # stalled, no pulse yet
    assert clock() == pytest.approx(before + clock.period + clock.slack)
    assert monitor.tick(clock()).alive


def test_a_terminal_that_is_really_silent_is_still_caught_on_time() -> None:
    """Caught once its silence, less the loop's stall, reaches the timeout: never sooner,
    and no later than that plus one pulse."""
    time = Time()
    clock = LoopClock(time)
    silent_from = time.now
    monitor = HeartbeatMonitor(interval=1.0, timeout=3.0, now=clock())
    run(clock, time, 1.0)
    time.now += 2.0  # a 2 s stall
    clock.pulse()
    assert clock.stalled == pytest.approx(2.0 - clock.period - clock.slack)
    while monitor.tick(clock()).alive:
        assert time.now - silent_from < 3.0 + clock.stalled, "not caught in time"
        run(clock, time, clock.period)
    assert time.now - silent_from == pytest.approx(3.0 + clock.stalled, abs=clock.period)


def test_a_loop_that_keeps_up_loses_no_time() -> None:
    time = Time()
    clock = LoopClock(time)
    start = clock()
    for _ in range(100):  # pulses up to the slack late are the loop working, not stalled
        time.now += clock.period + clock.slack
        clock.pulse()
    assert clock.stalled == pytest.approx(0.0, abs=1e-9)
    assert clock() - start == pytest.approx(100 * (clock.period + clock.slack))


def test_a_live_server_whose_loop_stalls_keeps_its_answering_terminal(sample_dir) -> None:
    """The server's loop blocked for 4 heartbeat timeouts (as a slow file once did): the
    terminal answered all along, so its session goes on with heartbeats after the stall."""
    from live_support import RawTerminal, running_server

    with running_server(sample_dir, heartbeat_interval=0.1, heartbeat_timeout=0.5) as (
            server, watch):
        terminal = RawTerminal("127.0.0.1", server.port)
        try:
            terminal.play(server.url("sample"))
            terminal.wait_heartbeats(3, 5.0)
            assert server.loop is not None
            server.loop.call_soon_threadsafe(time_module.sleep, 2.0)  # the stall
            seen = terminal.counters.heartbeats
            terminal.wait_heartbeats(seen + 10, 10.0)  # well past the stall
            assert watch.events == [], watch.events
            assert not terminal.closed_by_server.is_set()
        finally:
            terminal.close()
