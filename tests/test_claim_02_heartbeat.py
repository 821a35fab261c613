"""Claim 2: the streaming server sends heartbeats to the terminal and receives its
responses; no response within a predetermined time means the connection was abnormally
interrupted.

The terminal is FFmpeg's RTSP client (PyAV, in a process of its own: tests/pyav_player.py)
except where a state is needed that FFmpeg cannot be put in from outside (paused but
answering, closing without TEARDOWN): there a bare-socket terminal stands in.

Heartbeat settings: interval 0.5 s, timeout 1.5 s for FFmpeg, 0.25 s / 0.75 s for the
bare-socket terminal, so the suite stays quick; none of these properties depends on the
values. The long test of healthy play uses the defaults (1 s / 3 s), because the absence
of false alarms does depend on them.
"""

from __future__ import annotations

import logging
import time

import pytest
from live_support import RawTerminal, running_server, wait_until
from pyav_player import PlayerProcess

from rtsp_resume.linkcut import LinkCutter

INTERVAL, TIMEOUT = 0.5, 1.5  # FFmpeg tests
RAW_INTERVAL, RAW_TIMEOUT = 0.25, 0.75  # bare-socket terminal tests
PAUSED_TIMEOUT = 3  # the RTSP session timeout, which ends a silent paused session
SLACK = 0.5  # the bound: an interruption within timeout + 0.5 s
STARTUP = 20.0  # generous deadline for a player to open the stream and decode


def relay_to(server) -> LinkCutter:
    return LinkCutter(to=("127.0.0.1", server.port)).start()


def answered_heartbeats(server) -> int:
    """How many heartbeat answers the server's sessions logged so far."""
    def count() -> int:
        return sum(1 for s in server.sessions.values() for e in s.monitor.log
                   if e.kind == "answered")
    return server.call(count)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_cut_link_is_detected_within_the_timeout(sample_dir, transport: str) -> None:
    with running_server(sample_dir, heartbeat_interval=INTERVAL,
                        heartbeat_timeout=TIMEOUT) as (server, watch):
        cutter = relay_to(server)
        try:
            with PlayerProcess(cutter.url("sample"), transport) as player:
                player.wait_frames(25, STARTUP)
                # FFmpeg really answers the OPTIONS heartbeats (through the relay).
                wait_until(lambda: answered_heartbeats(server) >= 2, 5 * INTERVAL,
                           "FFmpeg answering heartbeats")
                assert watch.events == []
                cut_at = time.time()
                cutter.cut()
                event = watch.wait(TIMEOUT + 5)
                assert event is not None, "no interruption after the link was cut"
                latency = event.detected_at - cut_at
                assert latency <= TIMEOUT + SLACK, f"detected {latency:.2f} s after the cut"
                # The verdict follows the rule: silence of at least the timeout, and no
                # life can have been seen after the link went quiet.
                assert event.detected_at - event.last_life >= TIMEOUT - 0.01
                assert event.last_life <= cut_at + 0.1
                assert event.transport == transport
                assert event.content_id == "sample"
                assert event.unanswered >= 1
                assert server.sessions == {}
                assert len(watch.events) == 1
        finally:
            cutter.stop()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frozen_player_is_detected_like_a_cut(sample_dir, transport: str) -> None:
    """SIGSTOP: the process is alive and its sockets are open, but nothing answers."""
    with running_server(sample_dir, heartbeat_interval=INTERVAL,
                        heartbeat_timeout=TIMEOUT) as (server, watch):
        with PlayerProcess(server.url("sample"), transport) as player:
            player.wait_frames(25, STARTUP)
            frozen_at = time.time()
            player.freeze()
            event = watch.wait(TIMEOUT + 5)
            assert event is not None, "a frozen player was not detected"
            assert event.detected_at - frozen_at <= TIMEOUT + SLACK
            assert player.process.poll() is None, "the player must still exist (stopped)"
            assert event.transport == transport
            assert server.sessions == {}
        # The context killed it (SIGCONT, SIGKILL): no second event for the same session.
        assert len(watch.events) == 1


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_paused_session_that_answers_is_not_interrupted(sample_dir, transport: str) -> None:
    with running_server(sample_dir, heartbeat_interval=RAW_INTERVAL, heartbeat_timeout=RAW_TIMEOUT,
                        session_timeout=PAUSED_TIMEOUT) as (server, watch):
        terminal = RawTerminal("127.0.0.1", server.port, transport)
        url = server.url("sample")
        try:
            terminal.play(url)
            wait_until(lambda: terminal.counters.media_packets > 10, 5, "media flowing")
            terminal.pause(url)
            # Paused for three timeouts, answering every heartbeat: still alive.
            seen = terminal.counters.heartbeats
            periods = int(3 * RAW_TIMEOUT / RAW_INTERVAL) + 1
            terminal.wait_heartbeats(seen + periods, periods * RAW_INTERVAL + 5)
            # The reader thread counts an answer just after it is sent: wait for it too.
            wait_until(lambda: terminal.counters.answered >= seen + periods, 5,
                       "every heartbeat answered")
            assert watch.events == []
            session = server.sessions.get(terminal.session)
            assert session is not None and session.state == "paused"

            # Once it stops answering, as a paused ffplay does (it stops reading), the
            # session timeout it was told (Session: ...;timeout=N) ends it, not the
            # heartbeat timeout; the bookmark is the paused position.
            paused_at = server.call(lambda: session.paused_at)
            terminal.answering = False  # a reply already being read goes unanswered too
            terminal.reading.clear()
            silent_from = time.time()
            assert watch.wait(PAUSED_TIMEOUT - RAW_INTERVAL - 0.1) is None
            event = watch.wait(5)
            assert event is not None
            assert event.session_id == terminal.session
            assert event.detected_at - silent_from <= PAUSED_TIMEOUT + SLACK
            assert event.evidence == ("tcp-heartbeat" if transport == "tcp"
                                      else "heartbeat-answer")
            assert paused_at - (RAW_INTERVAL + 0.5 + 1.0) <= event.position <= paused_at
        finally:
            terminal.close()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_teardown_ends_the_session_without_interruption(sample_dir, transport: str,
                                                        caplog) -> None:
    """FFmpeg closing the stream (TEARDOWN, then FIN) through the relay: a normal end."""
    caplog.set_level(logging.INFO, logger="rtsp_resume.server")
    with running_server(sample_dir, heartbeat_interval=INTERVAL,
                        heartbeat_timeout=TIMEOUT) as (server, watch):
        cutter = relay_to(server)
        try:
            with PlayerProcess(cutter.url("sample"), transport, seconds=1.5) as player:
                player.wait_frames(10, STARTUP)
                assert len(server.sessions) == 1
                session_id = next(iter(server.sessions))
                player.process.wait(STARTUP)  # reads 1.5 s, then closes the container
                assert player.process.returncode == 0, player.stderr
            wait_until(lambda: not server.sessions, 5, "session ended")
            assert f"session {session_id} ended: TEARDOWN" in caplog.text
            # Longer than the timeout: a session that ended normally is never reported.
            assert watch.wait(TIMEOUT + SLACK) is None
        finally:
            cutter.stop()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_clean_close_ends_the_session_without_interruption(sample_dir, transport: str,
                                                           caplog) -> None:
    """A terminal that closes its control connection (FIN) without TEARDOWN."""
    caplog.set_level(logging.INFO, logger="rtsp_resume.server")
    with running_server(sample_dir, heartbeat_interval=RAW_INTERVAL,
                        heartbeat_timeout=RAW_TIMEOUT) as (server, watch):
        terminal = RawTerminal("127.0.0.1", server.port, transport)
        terminal.play(server.url("sample"))
        wait_until(lambda: terminal.counters.media_packets > 10, 5, "media flowing")
        session_id = terminal.session
        terminal.close()
        wait_until(lambda: not server.sessions, 5, "session ended")
        assert f"session {session_id} ended: control connection closed" in caplog.text
        assert watch.wait(RAW_TIMEOUT + SLACK) is None


@pytest.mark.timeout(120)
def test_long_no_false_interruption_in_30_s_of_play_with_udp_loss(sample_dir) -> None:
    """The one long test (~32 s): healthy play must never be taken for an interruption.

    Default heartbeat settings (1 s / 3 s). Two FFmpeg players through one relay that
    drops 5% of UDP datagrams both ways (RTP down, RTCP receiver reports up): one over
    UDP, one over TCP (whose bytes the relay does not drop).
    """
    with running_server(sample_dir) as (server, watch):
        cutter = LinkCutter(to=("127.0.0.1", server.port), loss=0.05, seed=2).start()
        try:
            with PlayerProcess(cutter.url("sample"), "udp") as over_udp, \
                 PlayerProcess(cutter.url("sample"), "tcp") as over_tcp:
                over_udp.wait_frames(1, STARTUP)
                over_tcp.wait_frames(1, STARTUP)
                assert watch.wait(30.0) is None, f"false interruption: {watch.events[0]}"
                assert len(server.sessions) == 2
                for player in (over_udp, over_tcp):
                    frames = player.frames
                    assert frames[-1].wallclock - frames[0].wallclock >= 28, \
                        "the player stopped decoding: not healthy play"
                lost = cutter.counters().down.udp_datagrams_lost
                assert lost > 100, f"only {lost} datagrams dropped: the loss was not applied"
        finally:
            cutter.stop()
