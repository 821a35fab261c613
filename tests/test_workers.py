"""``serve-rtsp --workers 2``: two streaming server processes on one RTSP port.

Each worker is an ordinary streaming server with its own RTP/RTCP ports and its own outbox;
they share only the port (SO_REUSEPORT: the kernel hands each new connection to one of
them) and the secret. Checked here, with ``serve-portal`` as a process of its own:

- sessions land on both workers, and a viewer cut off on either gets a bookmark at the
  portal, each through the outbox of the worker that served it;
- a second control connection for a session lands on a worker at random: on the session's
  own worker it works as on a one-process server, on the other it gets 454 Session Not
  Found (the workers share no sessions).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live_support import RawTerminal, wait_until
from story import DEADLINE, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, RawRtsp, Service, free_port

from rtsp_resume import rtsp, sdp
from rtsp_resume.client import PortalClient

USERS = [("dora", "dora-pw"), ("emil", "emil-pw")]
TRIES = 40  # connections tried to reach the other worker; each is a coin toss


@dataclass
class Workers:
    portal_url: str
    rtsp_port: int
    outbox: Path

    def play_url(self, user: str, password: str) -> str:
        client = PortalClient(self.portal_url)
        client.login(user, password)
        return str(client.play("sample")["url"])


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Workers]:
    base = tmp_path_factory.mktemp("workers")
    data, outbox, rtsp_port = base / "portal-data", base / "outbox.db", free_port()
    users = [arg for name, password in USERS for arg in ("--user", f"{name}:{password}")]
    with Service("serve-portal", "--port", "0", "--data", str(data), "--media",
                 str(sample_dir), "--rtsp-url", f"rtsp://127.0.0.1:{rtsp_port}",
                 *users) as portal:
        portal_url = portal.wait_line(r"portal: (http://\S+)/ ").group(1)
        with Service("serve-rtsp", "--workers", "2", "--media", str(sample_dir),
                     "--port", str(rtsp_port), "--portal-url", portal_url,
                     "--secret-file", str(data / "secret"), "--outbox", str(outbox),
                     # Over UDP without receiver reports only frames sent tell a position.
                     "--position", "frames_sent",
                     "--heartbeat-interval", str(HEARTBEAT_INTERVAL),
                     "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)) as streaming:
            streaming.wait_line(rf"rtsp://127\.0\.0\.1:{rtsp_port}/sample ")
            yield Workers(portal_url, rtsp_port, outbox)
            assert streaming.interrupt() == 0, streaming.output
            assert "Traceback" not in streaming.output, streaming.output


def start_udp_session(port: int, url: str) -> tuple[RawTerminal, int]:
    """A viewer playing ``url`` over UDP; the server RTP port names the worker it reached."""
    terminal = RawTerminal("127.0.0.1", port, "udp")
    described = terminal.request("DESCRIBE", url)
    assert described.status == 200, described
    video = sdp.parse(described.body.decode()).media[0]
    rtp_port = terminal._udp[0].getsockname()[1]
    setup = terminal.request("SETUP", video.control, {
        "Transport": f"RTP/AVP;unicast;client_port={rtp_port}-{rtp_port + 1}"})
    assert setup.status == 200, setup
    terminal.session = rtsp.parse_session(setup.headers["session"])[0]
    played = terminal.request("PLAY", url, {"Range": "npt=0.000-"})
    assert played.status == 200, played
    server_port = rtsp.parse_transport(setup.headers["transport"])[0].server_port
    assert server_port is not None
    return terminal, server_port[0]


def test_sessions_on_both_workers_each_bookmarked_through_its_own_outbox(
    workers: Workers,
) -> None:
    viewers: dict[int, tuple[str, str, RawTerminal]] = {}  # by worker (its RTP port)
    for user, password in USERS:
        url = workers.play_url(user, password)
        for _ in range(TRIES):
            terminal, worker = start_udp_session(workers.rtsp_port, url)
            if worker not in viewers:
                viewers[worker] = (user, password, terminal)
                break
            terminal.teardown(url)  # the worker already has a viewer: try the other
            terminal.close()
    assert len(viewers) == 2, "no session reached the second worker"

    for _, _, terminal in viewers.values():
        wait_until(lambda t=terminal: t.counters.media_packets >= 25, DEADLINE, "media")
        terminal.answering = False  # the radio link is gone: heartbeats go unanswered
    for user, password, _ in viewers.values():
        client = PortalClient(workers.portal_url)
        client.login(user, password)
        deadline = time.monotonic() + DEADLINE
        while not (marks := client.bookmarks()):
            assert time.monotonic() < deadline, f"no bookmark for {user}"
            time.sleep(0.05)
        assert marks[0]["ContentID"] == "sample" and marks[0]["ContentBM"] > 0
    for _, _, terminal in viewers.values():
        terminal.close()

    # Each worker wrote its request to its own outbox, and only there.
    for n in (1, 2):
        path = workers.outbox.with_stem(f"outbox-{n}")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT status FROM outbox").fetchall()
        assert rows == [("delivered",)], (path, rows)
    assert not workers.outbox.exists()


def test_a_second_control_connection_works_on_its_sessions_worker_else_454(
    workers: Workers,
) -> None:
    url = workers.play_url(*USERS[0])
    terminal, _ = start_udp_session(workers.rtsp_port, url)
    try:
        keep_alive = {"Session": terminal.session or ""}
        statuses = set()
        for _ in range(TRIES):
            with RawRtsp("127.0.0.1", workers.rtsp_port) as other:
                statuses.add(other.request("GET_PARAMETER", url, keep_alive).status)
            if statuses == {200, 454}:
                break
        assert statuses == {200, 454}, statuses
        # Neither answer disturbed the session on its own connection.
        assert terminal.request("GET_PARAMETER", url).status == 200
    finally:
        terminal.teardown(url)
        terminal.close()
