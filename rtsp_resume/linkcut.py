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
from dataclasses import dataclass

from rtsp_resume import rtsp
from rtsp_resume.ports import bind_udp_pair

log = logging.getLogger(__name__)
UP, DOWN = "up", "down"  # terminal -> server, server -> terminal


@dataclass
class DirectionCounters:
    """What reached the relay in one direction, and what became of it."""

    tcp_bytes_received: int = 0
    tcp_bytes: int = 0  # relayed
    tcp_bytes_cut: int = 0
    tcp_bytes_overflow: int = 0  # the receiver did not read and ``max_buffer`` was full
    udp_datagrams_received: int = 0
    udp_datagrams: int = 0  # relayed
    udp_bytes: int = 0
    udp_datagrams_cut: int = 0
    udp_datagrams_lost: int = 0  # dropped at random (``loss``)


@dataclass(frozen=True)
class LinkCounters:
    """A snapshot of a :class:`LinkCutter`'s counters."""

    up: DirectionCounters
    down: DirectionCounters
    is_cut: bool
    cuts: int
    connections: int  # open now
    accepted: int

    def format(self) -> str:
        lines = [f"link {'CUT' if self.is_cut else 'up'}; cuts {self.cuts}; "
                 f"connections {self.connections} open, {self.accepted} accepted"]
        for name, c in (("terminal->server", self.up), ("server->terminal", self.down)):
            lines.append(f"  {name}: tcp {c.tcp_bytes} B relayed, {c.tcp_bytes_cut} B cut, "
                         f"{c.tcp_bytes_overflow} B overflow; udp {c.udp_datagrams} dgrams "
                         f"({c.udp_bytes} B) relayed, {c.udp_datagrams_cut} cut, "
                         f"{c.udp_datagrams_lost} lost")
        return "\n".join(lines)


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
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._cut, self._cuts, self._accepted = False, 0, 0
        self._counts = {UP: DirectionCounters(), DOWN: DirectionCounters()}
        self._connections: set[_Connection] = set()
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()
        self._held: list[Callable[[], None]] = []  # closes waiting for the restore
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

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

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Drop everything from now on, both ways; every socket stays open."""
        with self._lock:
            if self._cut:
                return
            self._cut, self._cuts = True, self._cuts + 1
        self._emit("cut")

    def restore(self) -> None:
        """Forward again; what was dropped stays lost, closes held back go through."""
        with self._lock:
            if not self._cut:
                return
            self._cut = False
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                self._loop.call_soon_threadsafe(self._release_held)
        self._emit("restored")

    def toggle(self) -> bool:
        """Cut a working link or restore a cut one; returns :attr:`is_cut` afterwards."""
        self.restore() if self._cut else self.cut()
        return self._cut

    def counters(self) -> LinkCounters:
        with self._lock:
            up, down = (dataclasses.replace(self._counts[d]) for d in (UP, DOWN))
            return LinkCounters(up, down, self._cut, self._cuts, len(self._connections),
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
        """Bind and run on a thread of its own; returns self. Raises OSError on bind."""
        if self._thread is None:
            failure: list[BaseException] = []
            ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(failure, ready),
                                            name="linkcut", daemon=True)
            self._thread.start()
            ready.wait()
            if failure or self._address is None:
                self._thread.join()
                self._thread = None
                raise failure[0] if failure else OSError(f"cannot listen on {self.listen}")
        return self

    def stop(self) -> None:
        """Close every socket and join the thread; safe to call more than once."""
        thread, loop = self._thread, self._loop
        if thread is not None and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
            thread.join()
        self._thread = None

    def __enter__(self) -> LinkCutter:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, failure: list[BaseException], ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(failure, ready))
        finally:
            self._loop = None
            ready.set()

    async def _serve(self, failure: list[BaseException], ready: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        host, port = self.listen
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family)
            server = await self._loop.create_server(lambda: _Side(_Connection(self), UP), sock=sock)
        except OSError as exc:
            failure.append(exc)
            return
        self._address = sock.getsockname()[:2]
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for conn in list(self._connections):
                conn.abort()
            self._queue.clear()
            await asyncio.sleep(0)  # lets the transports close their sockets

    def _emit(self, event: str) -> None:
        log.info("linkcut: link %s", event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("linkcut: on_event(%r) failed", event)

    # Each unit carries the cut count of when its first byte arrived (None if the link was
    # cut then): it is delivered only if the link has stayed up since.
    def _mark(self) -> int | None:
        return None if self._cut else self._cuts

    def _alive(self, mark: int | None) -> bool:
        return mark is not None and not self._cut and mark == self._cuts

    def _later(self, action: Callable[[], None]) -> None:
        """Run ``action`` ``delay`` seconds from now, after everything queued before it."""
        assert self._loop is not None
        if self._delay <= 0 and not self._queue:
            return action()
        self._queue.append((self._loop.time() + self._delay, action))
        if len(self._queue) == 1:
            self._loop.call_at(self._queue[0][0], self._run_due)

    def _run_due(self) -> None:
        assert self._loop is not None
        while self._queue and self._queue[0][0] <= self._loop.time():
            self._queue.popleft()[1]()
        if self._queue:
            self._loop.call_at(self._queue[0][0], self._run_due)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for action in held:
            action()

    def _send_tcp(self, dest: asyncio.Transport, direction: str, data: bytes,
                  mark: int | None) -> None:
        def deliver() -> None:
            with self._lock:
                count = self._counts[direction]
                if not self._alive(mark):
                    count.tcp_bytes_cut += len(data)
                elif dest.get_write_buffer_size() + len(data) > self.max_buffer:
                    count.tcp_bytes_overflow += len(data)
                elif not dest.is_closing():
                    dest.write(data)
                    count.tcp_bytes += len(data)
        self._later(deliver)

    def _close_tcp(self, dest: asyncio.Transport) -> None:
        """Pass a close on; during a cut it waits, as a FIN would be retransmitted."""
        mark = self._mark()
        self._later(lambda: dest.close() if self._alive(mark)
                    else self._held.append(lambda: self._close_tcp(dest)))

    def _send_udp(self, direction: str, data: bytes, out: socket.socket | None,
                  addr: tuple[str, int] | None) -> None:
        with self._lock:
            count, mark = self._counts[direction], self._mark()
            count.udp_datagrams_received += 1
            if mark is None:
                count.udp_datagrams_cut += 1
                return
            if self._rng.random() < self._loss:
                count.udp_datagrams_lost += 1
                return

        def deliver() -> None:
            with self._lock:
                if not self._alive(mark):
                    count.udp_datagrams_cut += 1
                elif out is not None and addr is not None:
                    with contextlib.suppress(OSError):  # full, closed, or ICMP news
                        out.sendto(data, addr)
                        count.udp_datagrams += 1
                        count.udp_bytes += len(data)
        self._later(deliver)


class _Side(asyncio.Protocol):
    """One TCP end of a relayed connection; ``direction`` is where its bytes go."""

    def __init__(self, conn: _Connection, direction: str) -> None:
        self.conn, self.direction = conn, direction

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn.made(self.direction, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.received(self.direction, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self.direction)


class _Connection:
    """A player's connection, the relay's own to the server, and the UDP ports of its
    SETUPs. ``tcp[UP]`` is the player's end (it reads what goes up), ``tcp[DOWN]`` the
    server's."""

    def __init__(self, relay: LinkCutter) -> None:
        self.relay = relay
        self.tcp: dict[str, asyncio.Transport] = {}
        self.closed: set[str] = set()
        self.parsers = {UP: rtsp.RtspParser(), DOWN: rtsp.RtspParser()}
        self.marks: dict[str, int | None] = {UP: None, DOWN: None}
        self.offers: dict[int | None, list[tuple[str, tuple[int, int], list[socket.socket]]]] = {}
        self.routes: dict[socket.socket, list] = {}  # direction, out socket, address
        self.dial: asyncio.Future[None] | None = None

    def made(self, direction: str, transport: asyncio.Transport) -> None:
        self.tcp[direction] = transport
        relay = self.relay
        if direction == UP:  # reading waits until the server's end is there to write to
            transport.pause_reading()
            with relay._lock:
                relay._connections.add(self)
                relay._accepted += 1
            self.dial = asyncio.ensure_future(self._dial())
        elif UP in self.closed:
            transport.close()
        else:
            self.tcp[UP].resume_reading()

    async def _dial(self) -> None:
        assert self.relay._loop is not None
        try:
            await self.relay._loop.create_connection(lambda: _Side(self, DOWN), *self.relay.to)
        except OSError as exc:
            log.warning("linkcut: cannot reach the server at %s:%s: %s", *self.relay.to, exc)
            self.lost(DOWN)

    def received(self, direction: str, data: bytes) -> None:
        relay, parser = self.relay, self.parsers[direction]
        with relay._lock:
            relay._counts[direction].tcp_bytes_received += len(data)
            now = relay._mark()
        # A unit begun in an earlier read carries the state of the link back then.
        mark = self.marks[direction] if parser.buffered else now
        for event in parser.feed(data):
            if isinstance(event, rtsp.BadInput):  # not RTSP: end it as the server would
                log.warning("linkcut: %s stream is not RTSP (%s); closing", direction, event)
                self.abort()
                return
            if relay._alive(mark):
                event = self._rewrite(direction, event)
            relay._send_tcp(self.tcp[DOWN if direction == UP else UP], direction, bytes(event),
                            mark)
            mark = now
        self.marks[direction] = mark

    def lost(self, direction: str) -> None:
        self.closed.add(direction)
        other = self.tcp.get(UP if direction == DOWN else DOWN)
        if other is not None and not other.is_closing():
            self.relay._close_tcp(other)
        if self.closed == {UP, DOWN}:
            self._release_udp(list(self.routes))
            with self.relay._lock:
                self.relay._connections.discard(self)

    def abort(self) -> None:
        if self.dial is not None:
            self.dial.cancel()
        for transport in self.tcp.values():
            transport.abort()
        self._release_udp(list(self.routes))

    def _udp_pair(self, direction: str, peer: asyncio.Transport) -> list[socket.socket]:
        assert self.relay._loop is not None
        pair = list(bind_udp_pair(peer.get_extra_info("sockname")[0]))
        for sock in pair:
            self.routes[sock] = [direction, None, None]
            self.relay._loop.add_reader(sock.fileno(), self._datagram, sock)
        return pair

    def _release_udp(self, socks: list[socket.socket]) -> None:
        for sock in socks:
            if self.routes.pop(sock, None) is not None and self.relay._loop is not None:
                self.relay._loop.remove_reader(sock.fileno())
                sock.close()

    def _datagram(self, sock: socket.socket) -> None:
        direction, out, address = self.routes[sock]
        for _ in range(64):  # all that waits (bounded), so TCP cannot overtake it
            try:
                self.relay._send_udp(direction, sock.recv(65536), out, address)
            except BlockingIOError:
                return
            except OSError:  # an ICMP error for an earlier send
                pass

    def _rewrite(self, direction: str, event: rtsp.Event) -> rtsp.Event:
        """Put the relay's UDP ports in a SETUP's Transport (RFC 2326 §12.39) and its
        answer, so that RTP and RTCP cross the relay; anything unreadable passes as is."""
        try:
            if direction == UP and isinstance(event, rtsp.Request) and event.method == "SETUP":
                self._offer(event)
            elif direction == DOWN and isinstance(event, rtsp.Response):
                self._answer(event)
        except (rtsp.RtspProtocolError, OSError) as exc:
            log.warning("linkcut: Transport header left as it was: %s", exc)
        return event

    def _offer(self, request: rtsp.Request) -> None:
        specs = rtsp.parse_transport(request.headers.get("Transport") or "")
        offers = []
        for spec in specs:
            if spec.is_tcp or spec.cast == "multicast" or spec.client_port is None:
                continue
            pair = self._udp_pair(DOWN, self.tcp[DOWN])
            player = spec.destination or self.tcp[UP].get_extra_info("peername")[0]
            offers.append((player, spec.client_port, pair))
            spec.client_port = (pair[0].getsockname()[1], pair[1].getsockname()[1])
            if spec.destination:
                spec.destination = pair[0].getsockname()[0]
        if offers:
            self.offers[request.cseq] = offers
            request.headers["Transport"] = ",".join(map(str, specs))

    def _answer(self, response: rtsp.Response) -> None:
        offers = self.offers.pop(response.cseq, [])
        transport = response.headers.get("Transport")
        if not offers:
            return
        specs = rtsp.parse_transport(transport) if transport and response.status < 300 else []
        for spec in specs:
            ours = [o for o in offers if spec.client_port == tuple(
                s.getsockname()[1] for s in o[2])]
            if not ours:
                continue
            player, ports, pair = ours[0]
            offers.remove(ours[0])
            spec.client_port = ports
            if spec.server_port is not None:
                mine = self._udp_pair(UP, self.tcp[UP])
                server = spec.source or self.tcp[DOWN].get_extra_info("peername")[0]
                for k in (0, 1):
                    self.routes[pair[k]][1:] = [mine[k], (player, ports[k])]
                    self.routes[mine[k]][1:] = [pair[k], (server, spec.server_port[k])]
                spec.server_port = (mine[0].getsockname()[1], mine[1].getsockname()[1])
            if spec.source:
                spec.source = self.tcp[UP].get_extra_info("sockname")[0]
        for _, _, pair in offers:  # refused, or not chosen
            self._release_udp(pair)
        if specs:
            response.headers["Transport"] = ",".join(map(str, specs))


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
        elif name in ("quit", "exit"):
            return False
        elif name:
            print(_HELP, flush=True)
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
    # Toggled on the relay's thread: a print from a signal handler could break into one
    # of the main thread's.
    assert cutter._loop is not None
    loop = cutter._loop
    old = signal.signal(signal.SIGUSR1, lambda *_: loop.call_soon_threadsafe(cutter.toggle))
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
