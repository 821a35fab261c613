"""Helpers for the live heartbeat tests: a server to watch, and a bare-socket terminal.

:class:`RawTerminal` is a deliberately small RTSP 1.0 client on plain sockets, written
independently of the project's own parser. It exists for the states FFmpeg cannot be
put in from outside: paused yet answering heartbeats, silent while still reading, closing
its connection cleanly. It answers the server's requests (the heartbeat OPTIONS) with
``200 OK`` while :attr:`RawTerminal.answering` is true, as FFmpeg and GStreamer do, and
reads nothing while :attr:`RawTerminal.reading` is clear.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.server import Interruption, ServerConfig, StreamingServer


class InterruptionWatch:
    """A server listener: collects :class:`Interruption` events and lets a test wait."""

    def __init__(self) -> None:
        self.events: list[Interruption] = []
        self.received_at: list[float] = []  # time.time() when each event reached us
        self._changed = threading.Condition()

    def __call__(self, event: Interruption) -> None:
        with self._changed:
            self.events.append(event)
            self.received_at.append(time.time())
            self._changed.notify_all()

    def wait(self, deadline: float, count: int = 1) -> Interruption | None:
        """The ``count``-th event, or None if it did not come within ``deadline`` s."""
        limit = time.monotonic() + deadline
        with self._changed:
            while len(self.events) < count:
                left = limit - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self.events[count - 1]


@contextlib.contextmanager
def running_server(media: Path, **settings: object) -> Iterator[tuple[StreamingServer,
                                                                      InterruptionWatch]]:
    """A streaming server on a free loopback port, with an :class:`InterruptionWatch`."""
    watch = InterruptionWatch()
    config = ServerConfig(port=0, **settings)  # type: ignore[arg-type]
    server = StreamingServer(media, config, listeners=[watch]).start()
    try:
        yield server, watch
    finally:
        server.stop()


def wait_until(predicate: object, deadline: float, what: str) -> None:
    """Poll ``predicate()`` (cheap, side-effect free) until true; fail after ``deadline``."""
    limit = time.monotonic() + deadline
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > limit:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.01)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Counters:
    media_packets: int = 0  # RTP/RTCP received, interleaved or UDP
    last_media: float = 0.0  # time.monotonic() of the newest one
    heartbeats: int = 0  # requests the server sent us
    answered: int = 0  # of which we answered
    heartbeat_times: list[float] = field(default_factory=list)


class RawTerminal:
    """An RTSP terminal on bare sockets (RFC 2326 §10: SETUP, PLAY, PAUSE, TEARDOWN).

    ``transport`` is ``"tcp"`` (RTP interleaved on the control connection) or ``"udp"``
    (an even/odd port pair of its own). Only the video track is set up.
    """

    def __init__(self, host: str, port: int, transport: str = "tcp") -> None:
        self.host, self.port, self.transport = host, port, transport
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.settimeout(None)
        self.answering = True
        self.reading = threading.Event()  # cleared: reads nothing more, as a paused ffplay
        self.reading.set()
        self.session: str | None = None
        self.closed_by_server = threading.Event()
        self.counters = _Counters()
        self._cseq = 0
        self._replies: dict[int, Reply] = {}
        self._lock = threading.Condition()
        self._write_lock = threading.Lock()
        self._stopping = False
        self._udp: list[socket.socket] = []
        if transport == "udp":
            self._udp = list(bind_udp_pair("127.0.0.1", blocking=True))
            threading.Thread(target=self._read_udp, daemon=True).start()
        threading.Thread(target=self._read_control, daemon=True).start()

    # -- requests --------------------------------------------------------------------

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None,
                deadline: float = 5.0) -> Reply:
        with self._lock:
            self._cseq += 1
            cseq = self._cseq
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {cseq}", "User-Agent: raw-terminal"]
        if self.session is not None:
            lines.append(f"Session: {self.session}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode())
        limit = time.monotonic() + deadline
        with self._lock:
            while cseq not in self._replies:
                left = limit - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no reply to {method} within {deadline} s")
                self._lock.wait(left)
            return self._replies.pop(cseq)

    def play(self, url: str) -> None:
        """DESCRIBE, SETUP the video track, PLAY from the start."""
        described = self.request("DESCRIBE", url, {"Accept": "application/sdp"})
        assert described.status == 200, described
        if self.transport == "tcp":
            spec = "RTP/AVP/TCP;unicast;interleaved=0-1"
        else:
            port = self._udp[0].getsockname()[1]
            spec = f"RTP/AVP;unicast;client_port={port}-{port + 1}"
        setup = self.request("SETUP", f"{url}/track1", {"Transport": spec})
        assert setup.status == 200, setup
        self.session = setup.headers["session"].split(";")[0].strip()
        played = self.request("PLAY", url, {"Range": "npt=0.000-"})
        assert played.status == 200, played

    def pause(self, url: str) -> None:
        paused = self.request("PAUSE", url)
        assert paused.status == 200, paused

    def teardown(self, url: str) -> Reply:
        return self.request("TEARDOWN", url)

    def close(self) -> None:
        """A clean close: FIN after everything sent, as a player that quits does."""
        self._stopping = True
        self.reading.set()  # the readers find the sockets closed and leave
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.sock.close()
        for sock in self._udp:
            sock.close()

    def wait_heartbeats(self, count: int, deadline: float) -> None:
        """Until ``count`` heartbeats in all were received from the server."""
        wait_until(lambda: self.counters.heartbeats >= count, deadline,
                   f"{count} heartbeats (got {self.counters.heartbeats})")

    # -- reading ---------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            self.sock.sendall(data)

    def _read_control(self) -> None:
        buf = b""
        try:
            while self.reading.wait():
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                buf = self._consume(buf)
        except OSError:
            pass
        if not self._stopping:
            self.closed_by_server.set()

    def _consume(self, buf: bytes) -> bytes:
        """Take every complete interleaved frame and message off the front of ``buf``."""
        while buf:
            if buf[:1] == b"$":
                if len(buf) < 4:
                    return buf
                size = 4 + int.from_bytes(buf[2:4], "big")
                if len(buf) < size:
                    return buf
                buf = buf[size:]
                self._media()
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return buf
            head = buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(buf) < end + 4 + length:
                return buf
            body, buf = buf[end + 4 : end + 4 + length], buf[end + 4 + length :]
            start = head[0].split(" ")
            if start[0].startswith("RTSP/"):
                with self._lock:
                    self._replies[int(headers["cseq"])] = Reply(int(start[1]), headers, body)
                    self._lock.notify_all()
            else:
                self._server_request(headers)
        return buf

    def _server_request(self, headers: dict[str, str]) -> None:
        counters = self.counters
        counters.heartbeats += 1
        counters.heartbeat_times.append(time.monotonic())
        if self.answering:
            answer = f"RTSP/1.0 200 OK\r\nCSeq: {headers.get('cseq', '0')}\r\n"
            if "session" in headers:
                answer += f"Session: {headers['session']}\r\n"
            self._send((answer + "\r\n").encode())
            counters.answered += 1

    def _media(self) -> None:
        self.counters.media_packets += 1
        self.counters.last_media = time.monotonic()

    def _read_udp(self) -> None:
        rtp = self._udp[0]
        rtp.settimeout(0.2)
        while not self._stopping and self.reading.wait():
            try:
                rtp.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self._media()
