"""A relay in front of the streaming server whose radio link you can cut.

:class:`LinkCutter` stands where the radio link between a terminal (any RTSP player) and
the streaming server would be. The player connects to the relay instead of the server;
the relay opens its own connection to the server and copies bytes both ways. It also
relays RTP/RTCP over UDP: it reads the ``Transport`` headers of the SETUP exchange as
they pass and puts its own UDP ports in them, so that media and receiver reports travel
through it too. TCP interleaved media (``$`` frames inside the RTSP connection) needs no
rewriting.

What a cut looks like
    :meth:`LinkCutter.cut` makes the link silent: everything arriving from either side,
    TCP bytes and UDP datagrams, is read and thrown away, and every socket stays open.
    That is what a lost radio signal does to both ends: no FIN, no reset, just nothing.
    A close by one side is held back too while the link is cut and passed on after
    :meth:`LinkCutter.restore` (a real FIN would be retransmitted once the signal is
    back). What was discarded is never delivered later.

Whole units
    The relay splits each TCP direction into units: RTSP messages (head and body),
    interleaved frames, and, for a stream that is not RTSP, whatever each read returned.
    A unit is passed on only if the link stayed up from its first byte's arrival to its
    delivery, so a player sees some messages and frames missing after a cut, never a
    frame cut in half. Re-serialising is byte-exact: only the values of the Transport
    headers of SETUP requests and their responses are edited, never a body.

Bounded buffering
    The relay always reads what arrives, so a side that stops reading (a frozen player)
    never stalls the other side or any other connection. Units waiting for a receiver
    that does not read are held up to ``max_buffer`` bytes per connection and direction
    (1 MiB by default); units beyond that are dropped and counted as overflow, as a
    router's queue would drop them.

Threads
    The relay runs an asyncio loop on a thread of its own, so it works from pytest, from
    the CLI and from a Jupyter notebook whose main thread already runs a loop.
    :meth:`~LinkCutter.cut`, :meth:`~LinkCutter.restore`, the ``delay`` and ``loss``
    settings and :meth:`~LinkCutter.counters` may be used from any thread.

UDP ports live as long as the TCP connection whose SETUP opened them (RTSP allows a
session to outlive its connection; players do not do that, and the relay does not follow).
Multicast transports and RTSP over HTTP tunnels pass unchanged.

The RTSP scanning here is deliberately minimal (:class:`StreamScanner`): it needs to find
message boundaries and edit one header, and to fall back to plain copying for anything
that is not RTSP, which a strict parser would reject.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Literal

log = logging.getLogger(__name__)

UP = "up"  # terminal -> server
DOWN = "down"  # server -> terminal
Direction = Literal["up", "down"]

# A head bigger than this is not RTSP as anyone writes it: copy the stream as it is.
_MAX_HEAD = 64 * 1024
# Bodies are buffered whole so that a message is one unit; RTSP bodies are SDP-sized.
_MAX_BODY = 1 << 20

# A complete start line: a request (RFC 2326 section 6.1) or a status line (section 7.1).
_START_LINE = re.compile(rb"[A-Z][A-Z_]* [^ \r\n]+ RTSP/\d+\.\d+|RTSP/\d+\.\d+ \d{3}(?: [^\r\n]*)?")
# What a start line can look like before its end has arrived. Loose on purpose: the
# full check above runs as soon as the line break arrives.
_START_PREFIX = re.compile(
    rb"(?:[A-Z][A-Z_]*(?: [^ \r\n]*(?: [RTSP/\d.]*)?)?|RTSP(?:/[\d.]*(?: [^\r\n]*)?)?)\r?"
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


# --------------------------------------------------------------------------------------
# Pure part: cutting a TCP byte stream into units and editing Transport headers.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One unit of a relayed TCP stream, with its exact bytes.

    ``kind`` is ``"message"`` (an RTSP request or response, head and body), ``"frame"``
    (an interleaved binary frame, RFC 2326 section 10.12) or ``"raw"`` (bytes of a stream
    that is not RTSP, or stray line breaks between messages).
    """

    kind: Literal["message", "frame", "raw"]
    data: bytes
    head_size: int = 0  # messages: bytes up to and including the blank line

    @property
    def head(self) -> bytes:
        return self.data[: self.head_size]

    @property
    def start_line(self) -> str:
        return self.data.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")

    @property
    def method(self) -> str | None:
        """The method of a request, None for anything else."""
        if self.kind != "message" or self.data.startswith(b"RTSP/"):
            return None
        return self.start_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The status code of a response, None for anything else."""
        if self.kind != "message" or not self.data.startswith(b"RTSP/"):
            return None
        return int(self.start_line.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), stripped."""
        wanted = name.lower().encode("latin-1")
        for line in self.head.splitlines()[1:]:
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == wanted:
                return value.strip().decode("latin-1")
        return None

    def replace_header(self, name: str, edit: Callable[[str], str]) -> Piece:
        """A copy whose ``name`` header values went through ``edit``; all else unchanged."""
        wanted = name.lower().encode("latin-1")
        lines = self.head.splitlines(keepends=True)
        for i, line in enumerate(lines[1:], start=1):
            body = line.rstrip(b"\r\n")
            eol = line[len(body) :]
            key, sep, rest = body.partition(b":")
            if not sep or key.strip().lower() != wanted:
                continue
            value = rest.strip(b" \t")
            lead = rest[: len(rest) - len(rest.lstrip(b" \t"))]
            trail = rest[len(lead) + len(value) :]
            new = edit(value.decode("latin-1")).encode("latin-1")
            lines[i] = key + sep + lead + new + trail + eol
        head = b"".join(lines)
        return Piece(self.kind, head + self.data[self.head_size :], len(head))


def _content_length(head: bytes) -> int | None:
    """Content-Length of a head (0 when absent), None when it is malformed."""
    found: int | None = None
    for line in head.splitlines()[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == b"content-length":
            value = value.strip()
            if not value.isdigit() or (found is not None and int(value) != found):
                return None
            found = int(value)
    return found or 0


class StreamScanner:
    """Cuts one direction of an RTSP connection into :class:`Piece` units (sans-I/O).

    Feed it bytes as they arrive; it returns the units completed so far and keeps the
    rest. A stream that turns out not to be RTSP (no start line where one should be, an
    oversized head or body) switches the scanner to ``raw`` for good: from then on every
    feed comes back unchanged as one raw piece. The verdict comes with the first byte that
    cannot belong to a start line, so a stream opening with a capital-letter word and no
    line break yet (``PING``) is held until its line ends.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.raw = False

    @property
    def pending(self) -> bool:
        """True while part of a unit is held back waiting for the rest."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[Piece]:
        if self.raw:
            return [Piece("raw", bytes(data))] if data else []
        self._buf += data
        pieces: list[Piece] = []
        while self._buf and not self.raw:
            piece = self._next()
            if piece is None:
                break
            pieces.append(piece)
        return pieces

    def _take(self, kind: Literal["message", "frame", "raw"], size: int, head: int = 0) -> Piece:
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return Piece(kind, data, head)

    def _go_raw(self) -> Piece:
        self.raw = True
        return self._take("raw", len(self._buf))

    def _next(self) -> Piece | None:
        buf = self._buf
        if buf[0] == 0x24:  # '$': channel, 16-bit length, payload
            if len(buf) < 4:
                return None
            size = 4 + int.from_bytes(buf[2:4], "big")
            return self._take("frame", size) if len(buf) >= size else None
        if buf[0] in b"\r\n":  # some peers end a message with an extra line break
            return self._take("raw", len(buf) - len(buf.lstrip(b"\r\n")))
        line_end = buf.find(b"\n", 0, _MAX_HEAD)
        if line_end < 0:
            if len(buf) >= _MAX_HEAD or not _START_PREFIX.fullmatch(buf):
                return self._go_raw()
            return None
        if not _START_LINE.fullmatch(bytes(buf[:line_end]).rstrip(b"\r")):
            return self._go_raw()
        end = _HEAD_END.search(buf, line_end - 1 if buf[line_end - 1] == 0x0D else line_end)
        if end is None:
            return self._go_raw() if len(buf) >= _MAX_HEAD else None
        head_size = end.end()
        length = _content_length(bytes(buf[:head_size]))
        if length is None or length > _MAX_BODY:
            return self._go_raw()
        if len(buf) < head_size + length:
            return None
        return self._take("message", head_size + length, head_size)


def transport_param(spec: str, name: str) -> str | None:
    """The value of parameter ``name`` in one transport spec (RFC 2326 section 12.39)."""
    for item in spec.split(";")[1:]:
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip()
    return None


def set_transport_param(spec: str, name: str, value: str) -> str:
    """``spec`` with the value of parameter ``name`` replaced; every other byte kept."""
    items = spec.split(";")
    for i, item in enumerate(items[1:], start=1):
        key, sep, _ = item.partition("=")
        if sep and key.strip().lower() == name:
            items[i] = f"{key}={value}"
    return ";".join(items)


def parse_ports(text: str | None) -> tuple[int, ...] | None:
    """``"5000-5001"`` -> ``(5000, 5001)``, ``"5000"`` -> ``(5000,)``, else None."""
    if not text:
        return None
    parts = text.split("-")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        return None
    ports = tuple(int(p) for p in parts)
    return ports if all(0 < p < 65536 for p in ports) else None


def format_ports(ports: tuple[int, ...]) -> str:
    return "-".join(str(p) for p in ports)


# --------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectionCounters:
    """What crossed the link in one direction, and what it lost."""

    tcp_bytes_received: int = 0  # read from the sender, whatever became of them
    tcp_bytes: int = 0  # relayed
    tcp_bytes_cut: int = 0  # discarded because the link was cut
    tcp_bytes_overflow: int = 0  # discarded: the receiver did not read (bound) or was gone
    udp_datagrams_received: int = 0
    udp_datagrams: int = 0  # relayed
    udp_bytes: int = 0  # relayed
    udp_datagrams_cut: int = 0
    udp_datagrams_lost: int = 0  # dropped at random (``loss``)
    udp_datagrams_overflow: int = 0  # the socket would not take it, or no route yet

    @property
    def tcp_bytes_dropped(self) -> int:
        return self.tcp_bytes_cut + self.tcp_bytes_overflow

    @property
    def udp_datagrams_dropped(self) -> int:
        return self.udp_datagrams_cut + self.udp_datagrams_lost + self.udp_datagrams_overflow


@dataclass(frozen=True)
class LinkCounters:
    """A snapshot of :class:`LinkCutter`'s counters."""

    up: DirectionCounters  # terminal -> server
    down: DirectionCounters  # server -> terminal
    is_cut: bool
    cuts: int  # how many times cut() took effect
    connections: int  # TCP connections open now
    accepted: int  # TCP connections accepted since start

    def format(self) -> str:
        lines = [
            f"link {'CUT' if self.is_cut else 'up'}; cuts {self.cuts}; "
            f"connections {self.connections} open, {self.accepted} accepted"
        ]
        for name, c in (("terminal->server", self.up), ("server->terminal", self.down)):
            lines.append(
                f"  {name}: tcp {c.tcp_bytes} B relayed, {c.tcp_bytes_cut} B cut, "
                f"{c.tcp_bytes_overflow} B overflow; udp {c.udp_datagrams} dgrams "
                f"({c.udp_bytes} B) relayed, {c.udp_datagrams_cut} cut, "
                f"{c.udp_datagrams_lost} lost, {c.udp_datagrams_overflow} overflow"
            )
        return "\n".join(lines)


_COUNTER_NAMES = tuple(f.name for f in fields(DirectionCounters))


# --------------------------------------------------------------------------------------
# The relay
# --------------------------------------------------------------------------------------


class _DelayLine:
    """Runs actions ``delay`` seconds after they were pushed, in the order pushed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: Callable[[], float]) -> None:
        self._loop = loop
        self._delay = delay
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def push(self, action: Callable[[], None]) -> None:
        delay = self._delay()
        if delay <= 0 and not self._queue:
            action()
            return
        # Popping only from the head keeps the order even when the delay is lowered.
        self._queue.append((self._loop.time() + max(delay, 0.0), action))
        if self._timer is None:
            self._timer = self._loop.call_at(self._queue[0][0], self._run_due)

    def _run_due(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            _, action = self._queue.popleft()
            try:
                action()
            except Exception:
                log.exception("linkcut: delayed action failed")
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._run_due)

    def clear(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class _UdpEndpoint:
    """One of the relay's UDP sockets; hands every datagram to ``on_datagram``.

    A plain non-blocking socket watched by the loop: a datagram the kernel will not take
    at once is dropped, as a full router queue would drop it, so nothing queues here.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_datagram: Callable[[bytes], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.on_datagram = on_datagram
        self.closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        # A bounded burst, so that one busy port cannot starve the others.
        for _ in range(64):
            if self.closed:
                return
            try:
                data, _ = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error reported for an earlier send
                log.debug("linkcut: UDP port %d: %s", self.port, exc)
                continue
            self.on_datagram(data)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> bool:
        if self.closed:
            return False
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            log.debug("linkcut: UDP port %d -> %s: %s", self.port, addr, exc)
            return False
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


@dataclass(eq=False)
class _Flow:
    """One relayed UDP port (RTP or RTCP of a track): client side and server side."""

    client_addr: tuple[str, int]
    server_addr: tuple[str, int] | None
    server_side: _UdpEndpoint  # the relay's port the server sends to
    client_side: _UdpEndpoint | None = None  # the relay's port the terminal sends to


@dataclass(eq=False)
class _SetupPlan:
    """A UDP transport offered in a SETUP request, waiting for the server's answer.

    Its server-facing sockets are open already (their ports went into the request);
    once the answer arrives, ``flows`` says where their datagrams go.
    """

    client_host: str
    client_ports: tuple[int, ...]
    endpoints: list[_UdpEndpoint] = field(default_factory=list)
    flows: list[_Flow] = field(default_factory=list)

    @property
    def relay_ports(self) -> tuple[int, ...]:
        return tuple(e.port for e in self.endpoints)

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()


def _bind_udp(ip: str, count: int) -> list[socket.socket]:
    """``count`` UDP sockets on ``ip``; a pair is an even port and the next (RFC 3550 11)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(64):
        first = socket.socket(family, socket.SOCK_DGRAM)
        try:
            first.bind((ip, 0))
        except OSError:
            first.close()
            raise
        port = first.getsockname()[1]
        if count == 1:
            return [first]
        if port % 2 or port >= 65535:
            first.close()
            continue
        second = socket.socket(family, socket.SOCK_DGRAM)
        try:
            second.bind((ip, port + 1))
        except OSError:
            second.close()
            first.close()
            continue
        return [first, second]
    raise OSError(f"no free even/odd UDP port pair on {ip}")


class _ClientSide(asyncio.Protocol):
    def __init__(self, relay: LinkCutter) -> None:
        self.relay = relay
        self.conn: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn = _Connection(self.relay, transport)

    def data_received(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.received(UP, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn.side_closed("client")


class _ServerSide(asyncio.Protocol):
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn.received(DOWN, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_closed("server")


class _Connection:
    """One terminal connection and the relay's connection to the server for it."""

    def __init__(self, relay: LinkCutter, client: asyncio.Transport) -> None:
        self.relay = relay
        self.client: asyncio.Transport | None = client
        self.server: asyncio.Transport | None = None
        self.client_open = True
        self.server_open = False
        self.server_failed = False
        self.close_server_when_connected = False
        self.waiting: list[tuple[bytes, int | None]] = []  # for the server, before connect
        self.waiting_size = 0
        self.scanners = {UP: StreamScanner(), DOWN: StreamScanner()}
        self.marks: dict[str, int | None] = {UP: None, DOWN: None}
        self.deferred_closes: set[str] = set()
        self.plans: dict[str, list[_SetupPlan]] = {}  # by CSeq of the SETUP request
        self.endpoints: list[_UdpEndpoint] = []  # every UDP socket opened for this connection
        sockname = client.get_extra_info("sockname")
        peername = client.get_extra_info("peername")
        self.client_local_ip: str = sockname[0]
        self.client_ip: str = peername[0]
        self.server_local_ip: str | None = None
        self.server_ip: str | None = None
        relay._connection_opened(self)
        self.connect_task = relay._loop_create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.relay.to
        try:
            transport, _ = await loop.create_connection(lambda: _ServerSide(self), host, port)
        except OSError as exc:
            log.warning("linkcut: cannot reach the server at %s:%s: %s", host, port, exc)
            self.server_failed = True
            self.side_closed("server")
            return
        assert isinstance(transport, asyncio.Transport)
        self.server = transport
        self.server_open = True
        self.server_local_ip = transport.get_extra_info("sockname")[0]
        self.server_ip = transport.get_extra_info("peername")[0]
        waiting, self.waiting, self.waiting_size = self.waiting, [], 0
        for data, mark in waiting:
            self._deliver(UP, data, mark)
        if self.close_server_when_connected:
            transport.close()

    # -- TCP data ---------------------------------------------------------------------

    def received(self, direction: Direction, data: bytes) -> None:
        relay = self.relay
        relay._count(direction, "tcp_bytes_received", len(data))
        scanner = self.scanners[direction]
        now_mark = relay._mark()
        was_pending, was_raw = scanner.pending, scanner.raw
        pieces = scanner.feed(data)
        if scanner.raw and not was_raw:
            log.info(
                "linkcut: %s bytes of the connection from %s are not RTSP; copying them as "
                "they are, without looking for SETUP",
                direction,
                self.client_ip,
            )
        for i, piece in enumerate(pieces):
            # A unit begun in an earlier read carries the state of the link back then.
            mark = self.marks[direction] if i == 0 and was_pending else now_mark
            if not relay._alive(mark):
                relay._count(direction, "tcp_bytes_cut", len(piece.data))
                continue
            if piece.kind == "message":
                piece = self._rewrite(direction, piece)
            data_out = piece.data
            relay._delay_line_push(partial(self._deliver, direction, data_out, mark))
        if scanner.pending and (pieces or not was_pending):
            self.marks[direction] = now_mark

    def _deliver(self, direction: Direction, data: bytes, mark: int | None) -> None:
        relay = self.relay
        dest = self.server if direction == UP else self.client
        with relay._lock:
            if not relay._alive_locked(mark):
                relay._count_locked(direction, "tcp_bytes_cut", len(data))
            elif dest is None and direction == UP and not self.server_failed:
                if self.waiting_size + len(data) > relay.max_buffer:
                    relay._count_locked(direction, "tcp_bytes_overflow", len(data))
                else:
                    self.waiting.append((data, mark))
                    self.waiting_size += len(data)
            elif (
                dest is None
                or dest.is_closing()
                or dest.get_write_buffer_size() + len(data) > relay.max_buffer
            ):
                relay._count_locked(direction, "tcp_bytes_overflow", len(data))
            else:
                dest.write(data)
                relay._count_locked(direction, "tcp_bytes", len(data))

    # -- closing ----------------------------------------------------------------------

    def side_closed(self, side: Literal["client", "server"]) -> None:
        if side == "client":
            self.client_open = False
        else:
            self.server_open = False
        if self.relay._stopping:
            return
        toward: Literal["client", "server"] = "server" if side == "client" else "client"
        not_yet = toward == "server" and self.server is None and not self.server_failed
        if self._is_open(toward) or not_yet:
            self._send_close(toward)
        self._maybe_finished()

    def _is_open(self, side: str) -> bool:
        return self.client_open if side == "client" else self.server_open

    def _send_close(self, toward: Literal["client", "server"]) -> None:
        mark = self.relay._mark()
        if mark is None:
            self.deferred_closes.add(toward)
            return
        self.relay._delay_line_push(partial(self._close_if_alive, toward, mark))

    def _close_if_alive(self, toward: Literal["client", "server"], mark: int | None) -> None:
        if not self.relay._alive(mark):
            self.deferred_closes.add(toward)
            return
        if toward == "client":
            if self.client is not None:
                self.client.close()
        elif self.server is not None:
            self.server.close()
        else:
            self.close_server_when_connected = True
        self._maybe_finished()

    def link_restored(self) -> None:
        deferred, self.deferred_closes = self.deferred_closes, set()
        for toward in sorted(deferred):
            self._send_close(toward)  # type: ignore[arg-type]

    def _maybe_finished(self) -> None:
        server_done = not self.server_open and (self.server is not None or self.server_failed)
        if self.client_open or not server_done:
            return
        self.release_udp()
        self.relay._connection_closed(self)

    def release_udp(self) -> None:
        self.plans.clear()
        for endpoint in self.endpoints:
            endpoint.close()
        self.endpoints.clear()

    def _open_udp(
        self, ip: str, count: int, on_datagram: Callable[[int, bytes], None]
    ) -> list[_UdpEndpoint]:
        assert self.relay._loop is not None
        endpoints = [
            _UdpEndpoint(self.relay._loop, sock, partial(on_datagram, k))
            for k, sock in enumerate(_bind_udp(ip, count))
        ]
        self.endpoints.extend(endpoints)
        return endpoints

    def abort(self) -> None:
        self.connect_task.cancel()
        for transport in (self.client, self.server):
            if transport is not None:
                transport.abort()
        self.release_udp()

    # -- SETUP: putting the relay's UDP ports into the Transport headers ---------------

    def _rewrite(self, direction: Direction, piece: Piece) -> Piece:
        try:
            if direction == UP and piece.method == "SETUP":
                return self._rewrite_setup_request(piece)
            if direction == DOWN and piece.status is not None:
                return self._rewrite_setup_response(piece)
        except (OSError, ValueError) as exc:
            # Relaying the message unchanged is better than losing it.
            log.warning("linkcut: Transport header left as it was: %s", exc)
        return piece

    def _rewrite_setup_request(self, piece: Piece) -> Piece:
        cseq = piece.header("CSeq")
        transport = piece.header("Transport")
        if cseq is None or transport is None:
            return piece
        specs = transport.split(",")
        plans: list[_SetupPlan] = []
        for i, spec in enumerate(specs):
            ports = parse_ports(transport_param(spec, "client_port"))
            protocol = spec.split(";", 1)[0].strip().upper()
            if ports is None or protocol.endswith("/TCP") or "multicast" in spec.lower():
                continue
            client_host = transport_param(spec, "destination") or self.client_ip
            bind_ip = self.server_local_ip or self.relay._wildcard
            plan = _SetupPlan(client_host, ports)
            plan.endpoints = self._open_udp(bind_ip, len(ports), partial(self._from_server, plan))
            plans.append(plan)
            spec = set_transport_param(spec, "client_port", format_ports(plan.relay_ports))
            if transport_param(spec, "destination") is not None and self.server_local_ip:
                spec = set_transport_param(spec, "destination", self.server_local_ip)
            specs[i] = spec
        if not plans:
            return piece
        for old in self.plans.pop(cseq, []):
            old.close()
        self.plans[cseq] = plans
        return piece.replace_header("Transport", lambda _: ",".join(specs))

    def _rewrite_setup_response(self, piece: Piece) -> Piece:
        cseq = piece.header("CSeq")
        plans = self.plans.pop(cseq, None) if cseq is not None else None
        if not plans:
            return piece
        transport = piece.header("Transport")
        status = piece.status or 0
        if transport is None or not 200 <= status < 300:
            for plan in plans:
                plan.close()
            return piece
        specs = transport.split(",")
        used: list[_SetupPlan] = []
        for i, spec in enumerate(specs):
            offered = parse_ports(transport_param(spec, "client_port"))
            plan = next(
                (
                    p
                    for p in plans
                    if p not in used and (offered is None or offered[0] == p.relay_ports[0])
                ),
                None,
            )
            if plan is None:
                continue
            used.append(plan)
            if offered is not None:
                spec = set_transport_param(spec, "client_port", format_ports(plan.client_ports))
            source = transport_param(spec, "source")
            server_host = source or self.server_ip or self.relay.to[0]
            server_ports = parse_ports(transport_param(spec, "server_port")) or ()
            flows = [
                _Flow(
                    client_addr=(plan.client_host, port),
                    server_addr=(server_host, server_ports[k]) if k < len(server_ports) else None,
                    server_side=plan.endpoints[k],
                )
                for k, port in enumerate(plan.client_ports)
            ]
            plan.flows = flows
            if server_ports:
                # One port for each the server announced; one without a flow drops all.
                ours = self._open_udp(
                    self.client_local_ip, len(server_ports), partial(self._from_client, flows)
                )
                for flow, endpoint in zip(flows, ours, strict=False):
                    flow.client_side = endpoint
                ports = tuple(e.port for e in ours)
                spec = set_transport_param(spec, "server_port", format_ports(ports))
            if source is not None:
                spec = set_transport_param(spec, "source", self.client_local_ip)
            specs[i] = spec
        for plan in plans:
            if plan not in used:
                plan.close()
        return piece.replace_header("Transport", lambda _: ",".join(specs))

    # -- UDP --------------------------------------------------------------------------

    def _from_server(self, plan: _SetupPlan, k: int, data: bytes) -> None:
        # Until the server answers the SETUP there is no flow, hence no route yet.
        flow = plan.flows[k] if k < len(plan.flows) else None
        out = flow.client_side if flow is not None else None
        self.relay._udp_in(DOWN, data, out, flow.client_addr if flow is not None else None)

    def _from_client(self, flows: list[_Flow], k: int, data: bytes) -> None:
        flow = flows[k] if k < len(flows) else None
        out = flow.server_side if flow is not None else None
        self.relay._udp_in(UP, data, out, flow.server_addr if flow is not None else None)


class LinkCutter:
    """A relay between terminal and streaming server whose link can be cut.

    ``listen``: where terminals connect (port 0 picks a free port; see :attr:`port`).
    ``to``: the streaming server. ``delay``: seconds of added one-way latency, both
    directions, order kept. ``loss``: share of UDP datagrams dropped at random, both
    directions (TCP is reliable: its losses would only show as delay). ``seed``: for the
    random losses. ``max_buffer``: bytes held per connection and direction for a
    receiver that does not read, beyond which units are dropped. ``on_event``: called
    with ``"cut"`` or ``"restored"`` (from the thread that called :meth:`cut` or
    :meth:`restore`) when the state changes.
    """

    def __init__(
        self,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        to: tuple[str, int] = ("127.0.0.1", 8554),
        delay: float = 0.0,
        loss: float = 0.0,
        *,
        seed: int | None = None,
        max_buffer: int = 1 << 20,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.listen = (listen[0], int(listen[1]))
        self.to = (to[0], int(to[1]))
        self.max_buffer = max_buffer
        self.on_event = on_event
        self._delay = 0.0
        self._loss = 0.0
        self.delay = delay
        self.loss = loss
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._cut = False
        self._epoch = 0
        self._cuts = 0
        self._accepted = 0
        self._counts = {d: dict.fromkeys(_COUNTER_NAMES, 0) for d in (UP, DOWN)}
        self._connections: set[_Connection] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delay_line: _DelayLine | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._address: tuple[str, int] | None = None
        self._wildcard = "0.0.0.0"

    # -- settings ---------------------------------------------------------------------

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {value!r}")
        self._delay = float(value)

    @property
    def loss(self) -> float:
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"loss must be between 0 and 1, got {value!r}")
        self._loss = float(value)

    # -- the link ---------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Silently drop everything from now on, both ways; all sockets stay open."""
        with self._lock:
            if self._cut:
                return
            self._cut = True
            self._epoch += 1
            self._cuts += 1
        log.info("linkcut: link cut")
        self._emit("cut")

    def restore(self) -> None:
        """Let traffic flow again (what was discarded stays lost)."""
        with self._lock:
            if not self._cut:
                return
            self._cut = False
        log.info("linkcut: link restored")
        self._call_in_loop(self._link_restored)
        self._emit("restored")

    def toggle(self) -> bool:
        """Cut a working link or restore a cut one; returns :attr:`is_cut` afterwards."""
        if self._cut:
            self.restore()
        else:
            self.cut()
        return self._cut

    def counters(self) -> LinkCounters:
        with self._lock:
            up = DirectionCounters(**self._counts[UP])
            down = DirectionCounters(**self._counts[DOWN])
            return LinkCounters(
                up=up,
                down=down,
                is_cut=self._cut,
                cuts=self._cuts,
                connections=len(self._connections),
                accepted=self._accepted,
            )

    # -- life cycle -------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The address terminals connect to (after :meth:`start`)."""
        if self._address is None:
            raise RuntimeError("LinkCutter not started")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    def url(self, path: str = "") -> str:
        """``rtsp://host:port/path`` for a player to open through the relay."""
        host, port = self.address
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"rtsp://{host}:{port}/{path.lstrip('/')}"

    def start(self) -> LinkCutter:
        """Bind and run on a thread of its own; returns self. Raises OSError on bind."""
        with self._lifecycle:
            if self._thread is not None:
                return self
            started = threading.Event()
            failure: list[BaseException] = []
            self._stopping = False
            thread = threading.Thread(
                target=self._run, args=(started, failure), name="linkcut", daemon=True
            )
            thread.start()
            started.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._thread = thread
            return self

    def stop(self) -> None:
        """Close every socket and join the thread. Safe to call more than once."""
        if self._thread is threading.current_thread():
            raise RuntimeError("LinkCutter.stop() called from the relay's own thread")
        with self._lifecycle:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._request_stop)
            thread.join()
            self._thread = None

    def __enter__(self) -> LinkCutter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "not started"
        state = "cut" if self._cut else "up"
        return f"<LinkCutter {where} -> {self.to[0]}:{self.to[1]} {state}>"

    # -- inside the relay's thread ----------------------------------------------------

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._main(started))
        except BaseException as exc:  # reported to start() when it happens before binding
            if not started.is_set():
                failure.append(exc)
                started.set()
            else:
                log.exception("linkcut: relay thread failed")
        finally:
            self._loop = None
            self._delay_line = None

    async def _main(self, started: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_requested = asyncio.Event()
        self._delay_line = _DelayLine(loop, lambda: self._delay)
        host, port = self.listen
        # Bind one address only, so that port 0 means one port and not one per family.
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(addr)
            listener.listen(64)
            listener.setblocking(False)
            server = await loop.create_server(lambda: _ClientSide(self), sock=listener)
        except BaseException:
            listener.close()
            raise
        bound = listener.getsockname()
        self._address = (bound[0], bound[1])
        self._wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        log.info("linkcut: %s -> %s:%s", self.url(), *self.to)
        started.set()
        try:
            await self._stop_requested.wait()
        finally:
            self._stopping = True
            server.close()
            for conn in list(self._connections):
                conn.abort()
            self._connections.clear()
            self._delay_line.clear()
            # Let the transports run their close callbacks, which close the sockets.
            for _ in range(3):
                await asyncio.sleep(0)

    def _request_stop(self) -> None:
        if self._stop_requested is not None:
            self._stop_requested.set()

    def _call_in_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # stopping: nothing left to do
                loop.call_soon_threadsafe(fn)

    def _loop_create_task(self, coro: Any) -> asyncio.Task[Any]:
        assert self._loop is not None
        return self._loop.create_task(coro)

    def _delay_line_push(self, action: Callable[[], None]) -> None:
        assert self._delay_line is not None
        self._delay_line.push(action)

    def _link_restored(self) -> None:
        for conn in list(self._connections):
            conn.link_restored()

    def _connection_opened(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.add(conn)
            self._accepted += 1
        log.debug("linkcut: connection from %s", conn.client_ip)

    def _connection_closed(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _udp_in(
        self,
        direction: Direction,
        data: bytes,
        out: _UdpEndpoint | None,
        addr: tuple[str, int] | None,
    ) -> None:
        with self._lock:
            self._count_locked(direction, "udp_datagrams_received", 1)
            if self._cut:
                self._count_locked(direction, "udp_datagrams_cut", 1)
                return
            if self._loss and self._rng.random() < self._loss:
                self._count_locked(direction, "udp_datagrams_lost", 1)
                return
            mark = self._epoch
        self._delay_line_push(partial(self._udp_out, direction, data, out, addr, mark))

    def _udp_out(
        self,
        direction: Direction,
        data: bytes,
        out: _UdpEndpoint | None,
        addr: tuple[str, int] | None,
        mark: int,
    ) -> None:
        with self._lock:
            if not self._alive_locked(mark):
                self._count_locked(direction, "udp_datagrams_cut", 1)
                return
            if out is None or addr is None or not out.sendto(data, addr):
                self._count_locked(direction, "udp_datagrams_overflow", 1)
                return
            self._count_locked(direction, "udp_datagrams", 1)
            self._count_locked(direction, "udp_bytes", len(data))

    # -- link state, as seen by units in flight ---------------------------------------
    # A unit carries the epoch of the link when its first byte arrived (None if the link
    # was cut then). It is alive while the link is up and has not been cut since.

    def _mark(self) -> int | None:
        with self._lock:
            return None if self._cut else self._epoch

    def _alive(self, mark: int | None) -> bool:
        with self._lock:
            return self._alive_locked(mark)

    def _alive_locked(self, mark: int | None) -> bool:
        return mark is not None and not self._cut and mark == self._epoch

    def _count(self, direction: Direction, name: str, amount: int) -> None:
        with self._lock:
            self._counts[direction][name] += amount

    def _count_locked(self, direction: Direction, name: str, amount: int) -> None:
        self._counts[direction][name] += amount

    def _emit(self, event: str) -> None:
        callback = self.on_event
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            log.exception("linkcut: on_event(%r) failed", event)


# --------------------------------------------------------------------------------------
# Command line: python -m rtsp_resume linkcut --listen HOST:PORT --to HOST:PORT
# --------------------------------------------------------------------------------------

_HELP = "commands: cut, restore, toggle, status, delay SECONDS, loss SHARE, quit"


def _command(cutter: LinkCutter, line: str) -> bool:
    """Run one console command; False means quit."""
    words = line.split()
    if not words:
        return True
    name, rest = words[0].lower(), words[1:]
    try:
        if name == "cut":
            cutter.cut()
        elif name == "restore":
            cutter.restore()
        elif name == "toggle":
            cutter.toggle()
        elif name == "status":
            print(cutter.counters().format(), flush=True)
        elif name in ("delay", "loss") and len(rest) == 1:
            setattr(cutter, name, float(rest[0]))
            print(f"{name} = {getattr(cutter, name)}", flush=True)
        elif name in ("quit", "exit"):
            return False
        else:
            print(_HELP, flush=True)
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
    return True


def main(args: argparse.Namespace) -> int:
    """Run a relay until Ctrl-C (or SIGTERM); SIGUSR1 toggles the cut."""
    cutter = LinkCutter(
        listen=args.listen,
        to=args.to,
        delay=args.delay,
        loss=args.loss,
        on_event=lambda event: print(f"link {event}", flush=True),
    )
    try:
        cutter.start()
    except (OSError, ValueError) as exc:
        print(
            f"linkcut: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr
        )
        return 1
    print(
        f"linkcut: players open {cutter.url()}<path>; relaying to {args.to[0]}:{args.to[1]}"
        f" (delay {cutter.delay} s, loss {cutter.loss})",
        flush=True,
    )
    done = threading.Event()

    def on_usr1(signum: int, frame: object) -> None:
        # Toggling from the relay's thread: a handler that printed here could interrupt
        # a print of the main thread.
        cutter._call_in_loop(cutter.toggle)

    def on_term(signum: int, frame: object) -> None:
        done.set()
        raise KeyboardInterrupt

    old_usr1 = signal.signal(signal.SIGUSR1, on_usr1)
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            print(_HELP, flush=True)
            while not done.is_set():
                try:
                    line = input()
                except EOFError:
                    break
                if not _command(cutter, line):
                    break
        else:
            print("send SIGUSR1 to cut or restore the link, Ctrl-C to stop", flush=True)
            done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.signal(signal.SIGTERM, old_term)
        cutter.stop()
    print(cutter.counters().format(), flush=True)
    return 0
