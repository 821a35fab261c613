"""A relay in front of the streaming server whose radio link can be cut.

Players connect to :class:`LinkCutter` instead of the server. It relays the RTSP connection
(RFC 2326, interleaved ``$`` frames of §10.12 included) message by message with
:class:`rtsp.RtspParser`, and the RTP/RTCP datagrams of UDP transports: it puts its own
port pairs into each SETUP's Transport header (§12.39) and into the answer. A cut makes the
link silent as a lost signal does (claim 2's broken link): whatever either side sends is
read and thrown away, no socket is closed, and a close waits for the restore. Whole
messages and frames are dropped, never halves, so both parsers stay in step. The relay runs
an asyncio loop on a thread of its own; its methods may be called from any thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from rtsp_resume import rtsp
from rtsp_resume.ports import bind_udp_pair

log = logging.getLogger(__name__)
UP, DOWN = "up", "down"  # terminal -> server, server -> terminal


@dataclasses.dataclass
class DirectionCounters:
    """What reached the relay one way, and what became of it (bytes, datagrams)."""

    tcp_bytes_received: int = 0
    tcp_bytes: int = 0  # relayed
    tcp_bytes_cut: int = 0
    tcp_bytes_overflow: int = 0  # the receiver did not read and ``max_buffer`` was full
    udp_datagrams_received: int = 0
    udp_datagrams: int = 0  # relayed, with udp_bytes
    udp_bytes: int = 0
    udp_datagrams_cut: int = 0
    udp_datagrams_lost: int = 0  # dropped at random (``loss``)


@dataclasses.dataclass(frozen=True)
class LinkCounters:
    """A snapshot of a :class:`LinkCutter`: both directions, the state, how many cuts,
    TCP connections open now and accepted in all."""

    up: DirectionCounters
    down: DirectionCounters
    is_cut: bool
    cuts: int
    connections: int
    accepted: int

    def format(self) -> str:
        return "\n".join([f"link {'CUT' if self.is_cut else 'up'}; cuts {self.cuts}; connections "
                          f"{self.connections} open, {self.accepted} accepted"] + [
            f"  {name}: tcp {c.tcp_bytes} B relayed, {c.tcp_bytes_cut} B cut, "
            f"{c.tcp_bytes_overflow} B overflow; udp {c.udp_datagrams} dgrams ({c.udp_bytes} B)"
            f" relayed, {c.udp_datagrams_cut} cut, {c.udp_datagrams_lost} lost"
            for name, c in (("terminal->server", self.up), ("server->terminal", self.down))])


class LinkCutter:
    """A relay between players and the streaming server at ``to`` whose link can be cut.

    ``listen`` port 0 picks a free port (:attr:`port`). ``delay``: seconds added each way,
    order kept; ``loss``: share of UDP datagrams dropped at random (``seed`` repeats it).
    At most ``max_buffer`` bytes wait for a receiver that does not read; more are dropped,
    as a router's queue would. ``on_event`` hears ``"cut"`` and ``"restored"``.
    """

    def __init__(self, listen: tuple[str, int] = ("127.0.0.1", 0),
                 to: tuple[str, int] = ("127.0.0.1", 8554), delay: float = 0.0,
                 loss: float = 0.0, *, seed: int | None = None, max_buffer: int = 1 << 20,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.listen, self.to = (listen[0], int(listen[1])), (to[0], int(to[1]))
        self.delay, self.loss, self.max_buffer, self.on_event = delay, loss, max_buffer, on_event
        self.is_cut, self._cuts, self._accepted, self._rng = False, 0, 0, random.Random(seed)
        self._lock = threading.Lock()  # the counters and the state, read from any thread
        self._counts = {UP: DirectionCounters(), DOWN: DirectionCounters()}
        self._connections: set[_Connection] = set()
        self._queue: deque[tuple[float, Callable[[], Any]]] = deque()  # the delay line
        self._held: list[Callable[[], None]] = []  # closes waiting for the restore
        self._loop: asyncio.AbstractEventLoop  # made by start()
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "delay" and not value >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {value!r}")
        if name == "loss" and not 0 <= value <= 1:
            raise ValueError(f"loss must be between 0 and 1, got {value!r}")
        super().__setattr__(name, float(value) if name in ("delay", "loss") else value)

    def cut(self) -> None:
        """Drop everything from now on, both ways; every socket stays open."""
        with self._lock:
            if self.is_cut:
                return
            self.is_cut, self._cuts = True, self._cuts + 1
        self._emit("cut")

    def restore(self) -> None:
        """Forward again; what was dropped stays lost, a close held back goes through."""
        with self._lock:
            if not self.is_cut:
                return
            self.is_cut, held, self._held = False, self._held, []
        for action in held:
            self._in_loop(action)
        self._emit("restored")

    def toggle(self) -> bool:
        """Cut a working link or restore a cut one; returns :attr:`is_cut` afterwards."""
        self.restore() if self.is_cut else self.cut()
        return self.is_cut

    def counters(self) -> LinkCounters:
        with self._lock:
            up, down = (dataclasses.replace(self._counts[d]) for d in (UP, DOWN))
            return LinkCounters(up, down, self.is_cut, self._cuts, len(self._connections),
                                self._accepted)

    @property
    def address(self) -> tuple[str, int]:
        """Where players connect, once started."""
        if self._address is None:
            raise RuntimeError("LinkCutter not started")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    def url(self, path: str = "") -> str:
        """``rtsp://host:port/path`` for a player to open through the relay."""
        host, port = self.address
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"rtsp://{f'[{host}]' if ':' in host else host}:{port}/{path.lstrip('/')}"

    def start(self) -> LinkCutter:
        """Bind (OSError if it cannot) and relay on a thread of its own; returns self."""
        if self._thread is None:
            host, port = self.listen
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family)
            self._address, self._loop = sock.getsockname()[:2], asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="linkcut",
                                            daemon=True)
            self._thread.start()
            serve = self._loop.create_server(lambda: _Side(_Connection(self), UP), sock=sock)
            self._server = asyncio.run_coroutine_threadsafe(serve, self._loop).result()
        return self

    def stop(self) -> None:
        """Close every socket and end the thread; safe to call more than once."""
        thread, self._thread = self._thread, None
        if thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join()
            self._loop.close()

    async def _close(self) -> None:
        self._server.close()
        for conn in list(self._connections):
            conn.abort()
        self._queue.clear()
        await asyncio.sleep(0)  # the aborted transports close their sockets

    def __enter__(self) -> LinkCutter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _emit(self, event: str) -> None:
        log.info("linkcut: link %s", event)
        with contextlib.suppress(Exception):
            if self.on_event is not None:
                self.on_event(event)

    def _in_loop(self, action: Callable[[], Any]) -> None:
        with contextlib.suppress(AttributeError, RuntimeError):  # not started, or stopped
            self._loop.call_soon_threadsafe(action)

    # A unit (message, frame, datagram, close) carries the cut count of when its first byte
    # arrived, None during a cut; it is delivered only if the link stayed up since.
    def _mark(self) -> int | None:
        return None if self.is_cut else self._cuts

    def _alive(self, mark: int | None) -> bool:
        return mark is not None and not self.is_cut and mark == self._cuts

    def _later(self, action: Callable[[], Any]) -> None:
        """Run ``action`` ``delay`` seconds from now, after all queued before it."""
        if self.delay <= 0 and not self._queue:
            return action()
        self._queue.append((self._loop.time() + self.delay, action))
        if len(self._queue) == 1:
            self._loop.call_at(self._queue[0][0], self._run_due)

    def _run_due(self) -> None:
        while self._queue and self._queue[0][0] <= self._loop.time():
            self._queue.popleft()[1]()
        if self._queue:
            self._loop.call_at(self._queue[0][0], self._run_due)

    def _send_tcp(self, dest: asyncio.Transport, way: str, data: bytes, mark: int | None) -> None:
        def deliver() -> None:
            with self._lock:
                count = self._counts[way]
                if not self._alive(mark):
                    count.tcp_bytes_cut += len(data)
                elif dest.get_write_buffer_size() + len(data) > self.max_buffer:
                    count.tcp_bytes_overflow += len(data)
                elif not dest.is_closing():
                    dest.write(data)
                    count.tcp_bytes += len(data)
        self._later(deliver)

    def _close_tcp(self, dest: asyncio.Transport) -> None:
        """Pass a close on; during a cut it waits, as a FIN would be sent again."""
        mark = self._mark()
        self._later(lambda: dest.close() if self._alive(mark)
                    else self._held.append(lambda: self._close_tcp(dest)))

    def _send_udp(self, way: str, data: bytes, out: socket.socket | None, to: Any) -> None:
        with self._lock:
            count, mark = self._counts[way], self._mark()
            count.udp_datagrams_received += 1
            lost = mark is not None and self._rng.random() < self.loss
            count.udp_datagrams_lost += lost

        def deliver() -> None:
            with self._lock, contextlib.suppress(OSError):  # full, closed, or ICMP news
                if not self._alive(mark):
                    count.udp_datagrams_cut += 1
                elif out is not None:
                    out.sendto(data, to)
                    count.udp_datagrams += 1
                    count.udp_bytes += len(data)
        if not lost:
            self._later(deliver)


class _Side(asyncio.Protocol):
    """One TCP end of a relayed connection; ``way`` is where its bytes go."""

    def __init__(self, conn: _Connection, way: str) -> None:
        self.conn, self.way = conn, way

    def connection_made(self, transport: Any) -> None:
        self.conn.made(self.way, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.received(self.way, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.way)


class _Connection:
    """A player's connection, the relay's own to the server (``tcp[UP]`` reads what goes
    up, ``tcp[DOWN]`` what comes down) and the UDP ports its SETUPs opened."""

    def __init__(self, relay: LinkCutter) -> None:
        self.relay, self.tcp, self.closed = relay, dict[str, asyncio.Transport](), set[str]()
        self.parsers = {UP: rtsp.RtspParser(), DOWN: rtsp.RtspParser()}
        self.marks: dict[str, int | None] = {UP: None, DOWN: None}
        self.offers: dict[int | None, list[tuple[str, tuple[int, int], list[Any]]]] = {}
        self.routes: dict[socket.socket, list[Any]] = {}  # way, out socket, address

    def made(self, way: str, transport: asyncio.Transport) -> None:
        self.tcp[way], relay = transport, self.relay
        if way == UP:  # the player waits until there is a server end to write to
            transport.pause_reading()
            with relay._lock:
                relay._connections.add(self)
                relay._accepted += 1
            self.dial = relay._loop.create_task(self._dial())
        elif UP in self.closed:
            transport.close()
        else:
            self.tcp[UP].resume_reading()

    async def _dial(self) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: _Side(self, DOWN),
                                                               *self.relay.to)
        except OSError as exc:
            log.warning("linkcut: cannot reach the server at %s: %s", self.relay.to, exc)
            self.lost(DOWN)

    def received(self, way: str, data: bytes) -> None:
        relay, parser = self.relay, self.parsers[way]
        with relay._lock:
            relay._counts[way].tcp_bytes_received += len(data)
            now = relay._mark()
        mark = self.marks[way] if parser.buffered else now  # a unit begun in an earlier read
        for event in parser.feed(data):
            if isinstance(event, rtsp.BadInput):  # not RTSP: end it as the server would
                log.warning("linkcut: the %s stream is not RTSP (%s); closing", way, event)
                return self.abort()
            if relay._alive(mark):
                self._rewrite(way, event)
            relay._send_tcp(self.tcp[DOWN if way == UP else UP], way, bytes(event), mark)
            mark = now
        self.marks[way] = mark

    def lost(self, way: str) -> None:
        self.closed.add(way)
        other = self.tcp.get(UP if way == DOWN else DOWN)
        if other is not None and not other.is_closing():
            self.relay._close_tcp(other)
        if self.closed == {UP, DOWN}:
            self._release_udp(list(self.routes))
            with self.relay._lock:
                self.relay._connections.discard(self)

    def abort(self) -> None:
        self.dial.cancel()
        for transport in self.tcp.values():
            transport.abort()
        self._release_udp(list(self.routes))

    def _udp_pair(self, way: str, near: asyncio.Transport) -> list[socket.socket]:
        pair = list(bind_udp_pair(near.get_extra_info("sockname")[0]))
        for sock in pair:
            self.routes[sock] = [way, None, None]
            self.relay._loop.add_reader(sock, self._datagram, sock)
        return pair

    def _release_udp(self, socks: list[socket.socket]) -> None:
        for sock in socks:
            if self.routes.pop(sock, None) is not None:
                self.relay._loop.remove_reader(sock)
                sock.close()

    def _datagram(self, sock: socket.socket) -> None:
        for _ in range(64):  # all that waits (bounded), so that TCP cannot overtake it
            try:
                self.relay._send_udp(self.routes[sock][0], sock.recv(65536), *self.routes[sock][1:])
            except BlockingIOError:
                return
            except OSError:  # an ICMP error for an earlier send
                pass

    def _rewrite(self, way: str, event: rtsp.Event) -> None:
        """Put the relay's UDP ports in a SETUP's Transport (RFC 2326 §12.39) and in its
        answer, so that RTP and RTCP cross the relay; what it cannot read passes as is."""
        try:
            if way == UP and isinstance(event, rtsp.Request) and event.method == "SETUP":
                self._offer(event)
            elif way == DOWN and isinstance(event, rtsp.Response):
                self._answer(event, self.offers.pop(event.cseq, []))
        except (rtsp.RtspProtocolError, OSError) as exc:
            log.warning("linkcut: Transport header left as it was: %s", exc)

    def _offer(self, request: rtsp.Request) -> None:
        specs, offers = rtsp.parse_transport(request.headers.get("Transport") or ""), []
        for spec in specs:
            if not (spec.is_tcp or spec.cast == "multicast" or spec.client_port is None):
                pair = self._udp_pair(DOWN, self.tcp[DOWN])
                player = spec.destination or self.tcp[UP].get_extra_info("peername")[0]
                offers.append((player, spec.client_port, pair))
                spec.client_port = _ports(pair)
                spec.destination = spec.destination and pair[0].getsockname()[0]
        if offers:
            self.offers[request.cseq] = offers
            request.headers["Transport"] = ",".join(map(str, specs))

    def _answer(self, response: rtsp.Response, offers: list[Any]) -> None:
        text = response.headers.get("Transport")
        specs = rtsp.parse_transport(text) if offers and text and response.status < 300 else []
        for spec in specs:
            for player, ports, pair in [o for o in offers if spec.client_port == _ports(o[2])]:
                offers.remove((player, ports, pair))
                spec.client_port, server_port = ports, spec.server_port
                if server_port is not None:
                    mine = self._udp_pair(UP, self.tcp[UP])
                    server = spec.source or self.tcp[DOWN].get_extra_info("peername")[0]
                    for k in (0, 1):
                        self.routes[pair[k]][1:] = [mine[k], (player, ports[k])]
                        self.routes[mine[k]][1:] = [pair[k], (server, server_port[k])]
                    spec.server_port = _ports(mine)
                spec.source = spec.source and self.tcp[UP].get_extra_info("sockname")[0]
        for _, _, pair in offers:  # refused, or not chosen
            self._release_udp(pair)
        if specs:
            response.headers["Transport"] = ",".join(map(str, specs))


def _ports(pair: list[socket.socket]) -> tuple[int, int]:
    return pair[0].getsockname()[1], pair[1].getsockname()[1]


_HELP = "commands: cut, restore, toggle, status, delay SECONDS, loss SHARE, quit"


def _command(cutter: LinkCutter, line: str) -> bool:
    """Run one console command; False means quit."""
    name, *rest = line.split() or [""]
    try:
        if name in ("cut", "restore", "toggle"):
            getattr(cutter, name)()
        elif name == "status":
            print(cutter.counters().format(), flush=True)
        elif name in ("delay", "loss") and len(rest) == 1:
            setattr(cutter, name, float(rest[0]))
            print(f"{name} = {getattr(cutter, name)}", flush=True)
        elif name:
            print(_HELP, flush=True)
        return name not in ("quit", "exit")
    except ValueError as exc:
        print(f"error: {exc}", flush=True)
        return True


def main(args: argparse.Namespace) -> int:
    """Relay until Ctrl-C (cli.main turns SIGTERM into it); SIGUSR1 toggles the cut."""
    cutter = LinkCutter(args.listen, args.to, args.delay, args.loss,
                        on_event=lambda event: print(f"link {event}", flush=True))
    try:
        cutter.start()
    except (OSError, ValueError) as exc:
        print(f"linkcut: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}",
              file=sys.stderr)
        return 1
    print(f"linkcut: players open {cutter.url()}<path>; relaying to {args.to[0]}:{args.to[1]}"
          f" (delay {cutter.delay} s, loss {cutter.loss})", flush=True)
    # Toggled on the relay's thread: a handler that printed could break into a print.
    old = signal.signal(signal.SIGUSR1, lambda *_: cutter._in_loop(cutter.toggle))
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            print(_HELP, flush=True)
            with contextlib.suppress(EOFError):
                while _command(cutter, input()):
                    pass
        else:
            print("send SIGUSR1 to cut or restore the link, Ctrl-C to stop", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGUSR1, old)
        cutter.stop()
    print(cutter.counters().format(), flush=True)
    return 0
