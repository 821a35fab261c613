"""The bookmark outbox: nothing lost when the portal is away, nothing stored twice.

The streaming server must not lose a bookmark because the portal was down or slow at the
moment of the interruption, and a retry must never create a second bookmark:

- the portal is down when the link breaks: the request waits in the outbox, is retried,
  and is stored once the portal is back, exactly once (end to end, with the streaming
  server and the terminal);
- a try that reached the portal but whose answer was lost is retried with the same nonce,
  and the portal answers "duplicate" instead of storing it again;
- a queued request survives the outbox being closed and opened again on the same file;
- a refusal (a tampered play token) ends as ``refused`` after one try, never retried.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from portal_support import FAST_KDF
from story import DEADLINE, USERS, Story, free_port, running_story

from rtsp_resume import tokens
from rtsp_resume.bookmark_outbox import BookmarkOutbox, Delivery, bookmark_request
from rtsp_resume.client import PortalClient
from rtsp_resume.portal import PortalServer
from rtsp_resume.server import Interruption

RTSP_URL = "rtsp://127.0.0.1:8554"


# -- the portal is down during the interruption (end to end) -------------------------------


@pytest.fixture
def story(tmp_path: Path, sample_dir: Path) -> Iterator[Story]:
    with running_story(tmp_path / "data", sample_dir) as s:
        yield s


def test_portal_down_during_the_interruption_gets_the_bookmark_once_it_is_back(
    story: Story, tmp_path: Path, sample_dir: Path,
) -> None:
    system = story.system
    portal = story.login("alice")
    port = int(system.portal_url.rsplit(":", 1)[1])
    play = portal.play("sample")
    assert system.portal is not None
    system.portal.stop()  # the portal goes away while alice is watching

    cut = story.play_and_cut(portal, "sample", seconds=2.5, deliver=False, play=play)
    assert cut.interruption.position > 0
    # Two tries have failed once the third begins (a try that has only begun could still
    # meet the portal coming back below, which would make it the second, not the third).
    story.wait_attempts(cut.token, 3)
    assert system.outbox is not None
    assert [d.status for d in system.outbox.deliveries()] == ["pending"]

    # The portal comes back on the same address and data; the next retry gets through.
    system.portal = PortalServer(tmp_path / "data", sample_dir, system.rtsp_url, USERS,
                                 port=port, secret=system.secret, kdf=FAST_KDF).start()
    delivery = story.wait_answered(cut.token)
    assert delivery.status == "delivered" and delivery.attempts >= 3
    assert delivery.response is not None and delivery.response["ResultCode"] == 0
    # Exactly once: one accepted request, one bookmark, at the interruption's position.
    assert [h["nonce"] for h in story.store.history("alice")] == [delivery.nonce]
    marks = story.login("alice").bookmarks()
    assert [(m["ContentID"], m["ContentBM"]) for m in marks] == [
        ("sample", round(cut.interruption.position, 3))]


# -- the outbox against a portal alone ---------------------------------------------------------


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path) -> Iterator[PortalServer]:
    with PortalServer(tmp_path / "portal", sample_dir, RTSP_URL, USERS, kdf=FAST_KDF) as p:
        yield p


def interruption(portal: PortalServer, position: float = 7.2) -> Interruption:
    """What the streaming server would report for alice's viewing of the sample."""
    client = PortalClient(portal.url)
    client.login(*USERS[0])
    token = client.play("sample")["EncryptToken"]
    grant = tokens.verify_play_token(portal.secret, token, time.time())
    now = time.time()
    return Interruption(
        session_id="s1", content_id="sample", user_id=grant.user_id,
        login_session=grant.login_session, play_token=token, position=position,
        estimator="confirmed", frames_sent=position + 1, confirmed=position,
        last_life=now - 1, detected_at=now, transport="tcp", unanswered=3)


def deliver_one(outbox: BookmarkOutbox, portal: PortalServer) -> Delivery | None:
    """Start ``outbox``, submit one interruption, wait for its delivery, stop the outbox."""
    try:
        nonce = outbox.start().submit(interruption(portal))
        assert nonce is not None
        return outbox.wait(nonce, DEADLINE)
    finally:
        outbox.stop()


class Attempts:
    """Collects an outbox's attempts and answers, to wait on them."""

    def __init__(self, outbox: BookmarkOutbox) -> None:
        self._cond = threading.Condition()
        self.events: list[tuple[str, Delivery]] = []
        outbox.listeners.append(self._on)

    def _on(self, what: str, delivery: Delivery) -> None:
        with self._cond:
            self.events.append((what, delivery))
            self._cond.notify_all()

    def wait_sent(self, nonce: str, count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        with self._cond:
            while sum(w == "sent" and d.nonce == nonce for w, d in self.events) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"fewer than {count} attempts"
                self._cond.wait(left)


class AnswerLosingProxy:
    """An HTTP hop in front of the portal that forwards every request but, the first
    time, hangs up instead of passing the portal's answer back (the answer is lost)."""

    def __init__(self, target: str) -> None:
        self.target = target.removeprefix("http://")
        self.forwarded = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(DEADLINE)
        data = b""
        while b"\r\n\r\n" not in data:
            if not (more := conn.recv(65536)):
                return  # the client gave up
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length and (more := conn.recv(65536)):
            body += more
        upstream = http.client.HTTPConnection(self.target, timeout=DEADLINE)
        upstream.request(method, path, body, {k: v for k, v in headers.items()
                                              if k.lower() not in ("host", "connection")})
        reply = upstream.getresponse()
        raw = reply.read()
        upstream.close()
        self.forwarded += 1
        if self.forwarded == 1:
            return  # the portal has it; its answer never reaches the outbox
        conn.sendall(f"HTTP/1.1 {reply.status} {reply.reason}\r\nContent-Type: "
                     f"application/json\r\nContent-Length: {len(raw)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + raw)

    def close(self) -> None:
        self.listener.close()


def history(portal: PortalServer) -> list[dict[str, Any]]:
    return portal.store.history("alice")


def test_a_retry_after_a_lost_answer_does_not_store_a_second_bookmark(
    portal: PortalServer, tmp_path: Path,
) -> None:
    proxy = AnswerLosingProxy(portal.url)
    try:
        delivery = deliver_one(BookmarkOutbox(proxy.url, portal.secret, tmp_path / "outbox.db",
                                              first_retry=0.05), portal)
    finally:
        proxy.close()
    # The portal saw the request twice, with the same nonce, and stored it once.
    assert proxy.forwarded == 2
    assert delivery is not None
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert delivery.response is not None and delivery.response["ResultCode"] == 1
    assert [h["nonce"] for h in history(portal)] == [delivery.nonce]
    assert [b.position for b in portal.store.bookmarks("alice")] == [7.2]


def test_a_queued_request_survives_closing_and_reopening_the_outbox(
    portal: PortalServer, tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    first = BookmarkOutbox(nowhere, portal.secret, path, first_retry=0.05).start()
    attempts = Attempts(first)
    nonce = first.submit(interruption(portal))
    assert nonce is not None
    attempts.wait_sent(nonce, 2)  # the first try failed
    first.stop()  # the streaming server stops with the request still queued
    assert history(portal) == []

    again = BookmarkOutbox(portal.url, portal.secret, path, first_retry=0.05).start()
    try:
        delivery = again.wait(nonce, DEADLINE)
    finally:
        again.stop()
    assert delivery is not None and delivery.status == "delivered"
    assert [h["nonce"] for h in history(portal)] == [delivery.nonce]


def test_a_refused_request_is_kept_as_refused_and_not_retried(
    portal: PortalServer, tmp_path: Path,
) -> None:
    outbox = BookmarkOutbox(portal.url, portal.secret, tmp_path / "outbox.db",
                            first_retry=0.05).start()
    try:
        event = interruption(portal)
        body, mac = event.play_token.split(".")
        forged = outbox.submit(replace(event, play_token=f"{body}.{mac[::-1]}"))
        assert forged is not None
        refused = outbox.wait(forged, DEADLINE)
        assert refused is not None and refused.status == "refused"
        assert refused.response is not None and refused.response["ResultCode"] == 10
        # A later request goes through; by then a retry of the refused one, due 0.05 s
        # after its try, would have come first.
        good = outbox.submit(interruption(portal))
        assert good is not None
        delivered = outbox.wait(good, DEADLINE)
        assert delivered is not None and delivered.status == "delivered"
        assert outbox.get(forged).attempts == 1  # type: ignore[union-attr]
    finally:
        outbox.stop()
    assert [h["nonce"] for h in history(portal)] == [good]


def test_the_queue_of_live_play_tokens_is_private(portal: PortalServer, tmp_path: Path) -> None:
    path = tmp_path / "data" / "outbox.db"
    outbox = BookmarkOutbox(portal.url, portal.secret, path).start()
    try:
        assert outbox.submit(interruption(portal)) is not None
        modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    finally:
        outbox.stop()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert modes["outbox.db"] == 0o600 and modes["outbox.db-wal"] == 0o600, modes


def test_a_named_server_says_so_in_its_bookmark_requests(portal: PortalServer, tmp_path: Path
                                                          ) -> None:
    # One of several streaming servers: its name travels in the BookMarkReq, which the
    # portal accepts (an unknown field would be refused) and logs.
    delivery = deliver_one(BookmarkOutbox(portal.url, portal.secret, tmp_path / "outbox.db",
                                          name="site-a:8554"), portal)
    assert delivery is not None and delivery.request["Server"] == "site-a:8554"
    assert delivery.status == "delivered" and delivery.response["ResultCode"] == 0
    assert "Server" not in bookmark_request(interruption(portal))  # unnamed: as before
