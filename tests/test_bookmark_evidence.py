"""Every standard player gets a useful bookmark (claims 1, 2, 8), over TCP and UDP.

Three players a user has at hand play through the link cutter at once, each with a play
token of its own user so that its interruption can be told apart: Debian's FFmpeg 5.1
command line, GStreamer 1.22's ``rtspsrc`` and FFmpeg's client inside PyAV. Each is then
frozen (SIGSTOP: sockets open, nothing read or answered) or has its link cut. Each must
get its bookmark within heartbeat timeout + 0.5 s, at a position inside
[last shown - (interval + allowance + 1 s), last shown], where "last shown" is the frame
number drawn in the last picture the player put out before the interruption was declared.

Over UDP FFmpeg sends no receiver report for half a minute at the sample's bitrate, so
there the position rests on the heartbeat answers (``heartbeat-answer``). GStreamer runs
with a 200 ms jitter buffer: with its default 2 s the pictures lag what has arrived by 2 s,
which only a playout allowance of 2 s covers (``--playout-allowance``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from conftest import require_system_tool
from live_support import running_server, wait_until
from players import KINDS, TOOLS, start_player
from pyav_player import SAMPLE_FPS

from rtsp_resume import tokens
from rtsp_resume.linkcut import LinkCutter

KEY = b"evidence test key, 32 bytes long"
INTERVAL, TIMEOUT, ALLOWANCE = 0.5, 1.5, 0.5
WINDOW = INTERVAL + ALLOWANCE + 1.0  # how far behind the last picture a bookmark may be
STARTUP = 30.0  # generous: three players start at once on a loaded machine


@contextmanager
def three_players(sample_dir, transport: str, loss: float = 0.0) -> Iterator[tuple]:
    """A server and the three players, each through a link cutter of its own."""
    with ExitStack() as stack:
        server, watch = stack.enter_context(running_server(
            sample_dir, heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT,
            playout_allowance=ALLOWANCE, token_key=KEY))
        players, cutters = {}, {}
        programs = {kind: require_system_tool(*TOOLS[kind]) for kind in TOOLS}
        for kind in KINDS:
            cutter = LinkCutter(to=("127.0.0.1", server.port), loss=loss, seed=7).start()
            stack.callback(cutter.stop)
            token = tokens.issue_play_token(KEY, user_id=kind, content_id="sample",
                                            login_session=f"login-{kind}", now=time.time())
            url = cutter.url(f"sample?token={token}")
            players[kind] = start_player(kind, url, transport, programs.get(kind))
            stack.callback(players[kind].close)
            cutters[kind] = cutter
        yield server, watch, players, cutters


def disrupt_and_check(watch, players, cutters, how: str, transport: str,
                      at_frames: dict[str, int]) -> None:
    """Freeze or cut each player once it showed ``at_frames[kind]``; check each bookmark."""
    disrupted: dict[str, float] = {}
    limit = time.monotonic() + STARTUP + max(at_frames.values()) / SAMPLE_FPS
    while len(disrupted) < len(players):
        for kind, player in players.items():
            if kind not in disrupted and len(player.frames()) >= at_frames[kind]:
                disrupted[kind] = time.time()
                player.freeze() if how == "freeze" else cutters[kind].cut()
        assert time.monotonic() < limit, (
            f"players did not start: { {k: len(p.frames()) for k, p in players.items()} }")
        time.sleep(0.01)
    assert watch.wait(TIMEOUT + 5, count=len(players)) is not None, (
        f"interruptions: {[e.user_id for e in watch.events]}")
    problems = []
    for event, received in zip(watch.events, watch.received_at, strict=True):
        kind = event.user_id
        shown = players[kind].last_shown(received)
        latency = event.detected_at - disrupted[kind]
        print(f"{how} {transport} {kind}: detected after {latency:.2f} s, bookmark "
              f"{event.position:.3f} s from {event.evidence}, last shown {shown:.3f} s "
              f"(lag {shown - event.position:.3f} s)")
        if latency > TIMEOUT + 0.5:
            problems.append(f"{kind}: detected {latency:.2f} s after the {how}")
        if not shown - WINDOW <= event.position <= shown:
            problems.append(f"{kind}: bookmark {event.position:.3f} s outside "
                            f"[{shown - WINDOW:.3f}, {shown:.3f}] ({event.evidence})")
        # GStreamer's receiver reports (over TCP too) may be the newest proof.
        first_hand = "tcp-heartbeat" if transport == "tcp" else "heartbeat-answer"
        if event.evidence not in (first_hand, "receiver-report"):
            problems.append(f"{kind}: evidence {event.evidence}")
    assert not problems, problems


@pytest.mark.parametrize("how", ["freeze", "cut"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_each_player_gets_its_bookmark(sample_dir, transport: str, how: str) -> None:
    with three_players(sample_dir, transport) as (_server, watch, players, cutters):
        # Different moments, so that each is caught at another phase of the heartbeat.
        at_frames = {"ffmpeg": 70, "gstreamer": 83, "pyav": 96}
        disrupt_and_check(watch, players, cutters, how, transport, at_frames)


def test_udp_at_five_percent_loss(sample_dir) -> None:
    """Lost datagrams (media and receiver reports alike) are no interruption, and the
    bookmark still lands inside the window: loss does not move the evidence."""
    with three_players(sample_dir, "udp", loss=0.05) as (_server, watch, players, cutters):
        wait_until(lambda: all(p.frames() for p in players.values()), STARTUP, "players")
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 24, 30, "24 s of lossy play")
        assert watch.events == [], "a false interruption under loss"
        # Frames shown by now: at least 24 s worth, minus what the loss damaged.
        at_frames = {kind: len(p.frames()) + 10 for kind, p in players.items()}
        disrupt_and_check(watch, players, cutters, "freeze", "udp", at_frames)
