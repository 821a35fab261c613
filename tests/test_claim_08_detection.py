"""Claim 8, the system claim: the streaming server of the system sends heartbeats,
receives the terminal's responses, and judges the connection abnormally interrupted when
none arrives in time; what follows is seen from the rest of the system.

- The interruption event reaches the server's listeners (the reverse bookmark outbox is
  one) with the user and login session from the play token, the program and the play
  position: everything the portal's bookmark-set request needs.
- The server lets go at once: the session is gone, nothing more is sent to the terminal
  (no RTP, no heartbeat), the control connection is closed by the server, and other
  terminals play on undisturbed.

Heartbeat interval 0.5 s, timeout 1.5 s with FFmpeg; 0.25 s / 0.75 s with the
bare-socket terminals. None of these properties depends on the values.
"""

from __future__ import annotations

import time

import pytest
from live_support import RawTerminal, running_server, wait_until
from pyav_player import PlayerProcess

from rtsp_resume import tokens
from rtsp_resume.linkcut import LinkCutter

KEY = b"claim-8 test key, 32 bytes long!"
STARTUP = 20.0


def stays_unchanged(read: object, seconds: float, what: str) -> None:
    """Fail as soon as ``read()`` changes within ``seconds``: something still flows."""
    first = read()  # type: ignore[operator]
    limit = time.monotonic() + seconds
    while time.monotonic() < limit:
        now = read()  # type: ignore[operator]
        assert now == first, f"{what} still changing: {first} -> {now}"
        time.sleep(0.02)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_listener_gets_user_program_position_and_the_server_lets_go(
    sample_dir, transport: str
) -> None:
    interval, timeout = 0.5, 1.5
    with running_server(sample_dir, heartbeat_interval=interval, heartbeat_timeout=timeout,
                        token_key=KEY) as (server, watch):
        token = tokens.issue_play_token(KEY, user_id="alice", content_id="sample",
                                        login_session="login-1", now=time.time())
        cutter = LinkCutter(to=("127.0.0.1", server.port)).start()
        try:
            with PlayerProcess(cutter.url(f"sample?token={token}"), transport) as player:
                player.wait_frames(40, STARTUP)
                cut_at = time.time()
                cutter.cut()
                event = watch.wait(timeout + 5)
                assert event is not None
                assert event.detected_at - cut_at <= timeout + 0.5

                # What the bookmark-set request is made of.
                assert (event.user_id, event.login_session, event.play_token) == (
                    "alice", "login-1", token)
                assert event.content_id == "sample"
                assert event.estimator == "confirmed"
                assert event.position == event.confirmed
                assert 0 <= event.confirmed < event.frames_sent <= 30.0
                # Answered heartbeats proved some delivery (over UDP, FFmpeg's first
                # receiver report comes half a minute in: a heartbeat answer is the proof).
                assert event.confirmed > 0
                assert event.evidence == ("tcp-heartbeat" if transport == "tcp"
                                          else "heartbeat-answer")
                assert event.last_life < event.detected_at
                assert server.interruptions == [event]

                # The server let go: no session, and nothing more leaves it for this
                # terminal (the relay still reads whatever the server sends while cut).
                assert server.sessions == {}
                down = lambda: (cutter.counters().down.tcp_bytes_received,  # noqa: E731
                                cutter.counters().down.udp_datagrams_received)
                stays_unchanged(down, 3 * interval, "traffic from the server")

                # The server closed the control connection: once the link is back, the
                # relay hands the close on and FFmpeg stops at once (well before its own
                # 10 s read timeout, which would otherwise end it).
                restored_at = time.monotonic()
                cutter.restore()
                player.process.wait(10)
                print(f"player stopped {time.monotonic() - restored_at:.2f} s after the "
                      f"restore: {player.error or 'end of stream'}")
                assert time.monotonic() - restored_at < 4
        finally:
            cutter.stop()
        assert len(watch.events) == 1


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_silent_terminal_is_released_and_others_play_on(sample_dir, transport: str) -> None:
    interval, timeout = 0.25, 0.75
    with running_server(sample_dir, heartbeat_interval=interval,
                        heartbeat_timeout=timeout) as (server, watch):
        url = server.url("sample")
        lost = RawTerminal("127.0.0.1", server.port, transport)
        other = RawTerminal("127.0.0.1", server.port, transport)
        try:
            lost.play(url)
            other.play(url)
            wait_until(lambda: lost.counters.media_packets > 10
                       and other.counters.media_packets > 10, 5, "media flowing")
            # Still reading everything, never answering: what a server sees of a
            # terminal whose uplink died.
            lost.answering = False
            silent_from = time.time()
            event = watch.wait(timeout + 5)
            assert event is not None and event.session_id == lost.session
            assert event.detected_at - silent_from <= timeout + 0.5
            assert event.user_id is None  # no token: the server knows no user
            assert event.transport == transport

            # The control connection is closed by the server, and media stops.
            assert lost.closed_by_server.wait(2), "the server kept the connection open"
            stays_unchanged(lambda: (lost.counters.media_packets, lost.counters.heartbeats),
                            3 * interval, "media or heartbeats to the lost terminal")
            assert list(server.sessions) == [other.session]

            # The other terminal plays on and keeps answering: no second interruption.
            before = (other.counters.media_packets, other.counters.answered)
            wait_until(lambda: other.counters.media_packets > before[0] + 20
                       and other.counters.answered > before[1] + 2, 5, "other still playing")
            assert len(watch.events) == 1
            assert not other.closed_by_server.is_set()
        finally:
            lost.close()
            other.close()
