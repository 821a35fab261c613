"""A relay in front of the streaming server whose radio link can be cut (claim 2's break).
Players connect to :class:`LinkCutter` instead of the server. It relays RTSP message by message
(interleaved frames too, RFC 2326 §10.12) and the RTP/RTCP datagrams of the UDP transports its
SETUPs negotiated (§12.39). A cut is a lost signal: what either side sends is read and dropped,
whole messages at a time; no socket closes, a close waits for the restore."""

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
from collections.abc import Callable
from functools import partial, partialmethod
from typing import Any

from rtsp_resume import rtsp
from rtsp_resume.ports import bind_udp_pair

log = logging.getLogger(__name__)
UP, DOWN = "up", "down"  # terminal -> server, server -> terminal
Pair = tuple[socket.socket, socket.socket]  # RTP and RTCP
_HELP = "commands: cut, restore, toggle, status, delay SECONDS, loss SHARE, quit (SIGUSR1 toggles)"


@dataclasses.dataclass
class DirectionCounters:
    """What reached the relay one way, and what became of it."""
    tcp_bytes_received: int = 0
    tcp_bytes: int = 0  # relayed
    tcp_bytes_cut: int = 0
    udp_datagrams_received: int = 0
    udp_datagrams: int = 0  # relayed
    udp_datagrams_cut: int = 0
    udp_datagrams_lost: int = 0  # dropped at random (``loss``)


@dataclasses.dataclass(frozen=True)
class LinkCounters:
    """A :class:`LinkCutter`'s counters; ``connections`` are those open now."""
    up: DirectionCounters
    down: DirectionCounters
    is_cut: bool
    cuts: int
    connections: int

    def format(self) -> str:
        lines = [f"link {'CUT' if self.is_cut else 'up'}; cuts {self.cuts}; "
                 f"{self.connections} connections"]
        for name, c in (("terminal->server", self.up), ("server->terminal", self.down)):
            lines.append(f"  {name}: tcp {c.tcp_bytes} B relayed, {c.tcp_bytes_cut} B cut; udp "
                         f"{c.udp_datagrams} relayed, {c.udp_datagrams_cut} cut, "
                         f"{c.udp_datagrams_lost} lost")
        return "\n".join(lines)


class LinkCutter:
    """A relay to the server at ``to``; players connect to :attr:`port` on ``listen``. It adds
    ``delay`` seconds each way and drops a ``loss`` share of datagrams (``seed`` repeats it).
    ``on_event`` hears ``"cut"`` and ``"restored"``."""

    def __init__(self, listen: tuple[str, int] = ("127.0.0.1", 0),
                 to: tuple[str, int] = ("127.0.0.1", 8554), delay: float = 0.0,
                 loss: float = 0.0, *, seed: int | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.listen, self.to = (listen[0], int(listen[1])), (to[0], int(to[1]))
        self.delay, self.loss, self.on_event = delay, loss, on_event
        # A unit (message, frame, datagram) is delivered only if no cut came since it came in.
        self._epoch: int | None = 0  # None while cut, else how many cuts there were
        self._cuts, self._rng = 0, random.Random(seed)
        self._lock = threading.Lock()  # cut, restore and counters() come from any thread
        self._counts = {UP: DirectionCounters(), DOWN: DirectionCounters()}
        self._tasks: set[asyncio.Task[Any]] = set()  # one per player connection
        self._last = 0.0  # when the latest delayed unit is due
        self._thread: threading.Thread | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "delay" and not value >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {value!r}")
        if name == "loss" and not 0 <= value <= 1:
            raise ValueError(f"loss must be between 0 and 1, got {value!r}")
        super().__setattr__(name, value)

    @property
    def is_cut(self) -> bool:
        return self._epoch is None

    def toggle(self, cut: bool | None = None) -> bool:
        """Cut a working link or restore a cut one (or make it ``cut``); returns the state."""
        with self._lock:
            cut = not self.is_cut if cut is None else cut
            if self.is_cut == cut:
                return cut
            self._cuts += 1 if cut else 0
            self._epoch = None if cut else self._cuts
        event = "cut" if cut else "restored"
        log.info("linkcut: link %s", event)
        with contextlib.suppress(Exception):  # the listener's trouble is not the link's
            if self.on_event is not None:
                self.on_event(event)
        return cut

    cut = partialmethod(toggle, True)  # drop everything from now on; every socket stays open
    restore = partialmethod(toggle, False)  # forward again; what was dropped stays lost

    def counters(self) -> LinkCounters:
        with self._lock:
            up, down = (dataclasses.replace(self._counts[way]) for way in (UP, DOWN))
            return LinkCounters(up, down, self.is_cut, self._cuts, len(self._tasks))

    def url(self, path: str = "") -> str:
        """``rtsp://host:port/path`` for a player to open through the relay."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.address[0], self.address[0])
        return f"rtsp://{f'[{host}]' if ':' in host else host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> LinkCutter:
        """Bind (OSError if it cannot) and relay on a thread of its own; returns self."""
        if self._thread is None:
            family = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
            sock = socket.create_server(self.listen, family=family)
            self.address: tuple[str, int] = sock.getsockname()[:2]
            self.port = self.address[1]
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
            self._thread.start()
            serving = asyncio.start_server(self._relay, sock=sock)
            self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result()
        return self

    def stop(self, *_exc_info: object) -> None:
        """Close every socket and end the thread; safe to call more than once."""
        thread, self._thread = self._thread, None
        if thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join()
            self._loop.close()

    async def _close(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    __enter__, __exit__ = start, stop

    def _later(self, action: Callable[[], object]) -> None:
        """Run ``action`` after ``delay``, strictly after the one before (ties run unordered)."""
        self._last = max(self._loop.time() + self.delay, self._last + 1e-6)
        self._loop.call_at(self._last, action)

    async def _relay(self, player_in: asyncio.StreamReader, player: asyncio.StreamWriter) -> None:
        """One player's connection: the relay's own to the server, pumped both ways."""
        task, server, setups = asyncio.current_task(), None, None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            server_in, server = await asyncio.open_connection(*self.to)
            setups = _Setups(self, player, server)
            await asyncio.gather(self._pump(UP, player_in, server, setups.offer),
                                 self._pump(DOWN, server_in, player, setups.answer))
            player = server = None  # both sides closed, and the closes are on their way
        except (OSError, rtsp.RtspProtocolError, asyncio.CancelledError) as exc:
            log.info("linkcut: connection to %s ended: %r", self.to, exc)  # or stop()
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            for writer in (player, server):
                if writer is not None:
                    writer.transport.abort()
            if setups is not None:
                setups.close(*setups.sockets)

    async def _pump(self, way: str, source: asyncio.StreamReader, dest: asyncio.StreamWriter,
                    rewrite: Callable[[rtsp.Event], None]) -> None:
        count, parser, mark = self._counts[way], rtsp.RtspParser(), None
        with contextlib.suppress(ConnectionError):  # a reset travels on as a close
            while data := await source.read(65536):
                count.tcp_bytes_received += len(data)
                now = self._epoch
                mark = mark if parser.buffered else now  # a unit begun in an earlier read
                for event in parser.feed(data):
                    if isinstance(event, rtsp.BadInput):  # not RTSP: end it as a server would
                        raise rtsp.RtspProtocolError(event.status, f"{way}: {event.reason}")
                    with contextlib.suppress(rtsp.RtspProtocolError, OSError):  # left as is
                        rewrite(event)
                    self._later(partial(self._send_tcp, dest, count, bytes(event), mark))
                    mark = now
                # A receiver that does not read holds its sender back, as TCP would, rather
                # than the relay's memory growing without bound.
                await dest.drain()
        while self.is_cut:  # a close waits for the restore, as a FIN would
            await asyncio.sleep(0.05)
        self._later(dest.close)

    def _send_tcp(self, dest: asyncio.StreamWriter, count: DirectionCounters, data: bytes,
                  mark: int | None) -> None:
        with self._lock:  # what counters() shows has been written
            if mark is None or mark != self._epoch:
                count.tcp_bytes_cut += len(data)
            elif not dest.is_closing():
                dest.write(data)
                count.tcp_bytes += len(data)

    def _send_udp(self, count: DirectionCounters, data: bytes, out: socket.socket, to: Any,
                  mark: int | None) -> None:
        with self._lock, contextlib.suppress(OSError):  # the kernel's queue is full: dropped
            if mark is None or mark != self._epoch:
                count.udp_datagrams_cut += 1
            elif self._rng.random() < self.loss:
                count.udp_datagrams_lost += 1
            else:
                out.sendto(data, to)
                count.udp_datagrams += 1


class _Setups:
    """The UDP port pairs of one connection's SETUPs (RFC 2326 §12.39): one facing the
    server goes in the request, one facing the player in the server's answer."""

    def __init__(self, relay: LinkCutter, player: asyncio.StreamWriter,
                 server: asyncio.StreamWriter) -> None:
        self.relay, self.player, self.server = relay, player, server
        self.offers: dict[int | None, tuple[tuple[int, int], Pair]] = {}  # by CSeq
        self.sockets: set[socket.socket] = set()

    def offer(self, request: rtsp.Event) -> None:
        """In a SETUP asking for UDP, the relay's ports stand for the player's."""
        if not isinstance(request, rtsp.Request) or request.method != "SETUP":
            return
        specs = rtsp.parse_transport(request.headers.get("Transport") or "")
        udp = [t for t in specs if t.client_port and not t.is_tcp and t.cast != "multicast"]
        if udp:  # the first one's ports are the player's (players offer one UDP transport)
            pair = bind_udp_pair(self.server.get_extra_info("sockname")[0])
            self.sockets.update(pair)
            self.offers[request.cseq] = (udp[0].client_port, pair)
            for spec in udp:
                spec.client_port = _ports(pair)
            request.headers["Transport"] = ",".join(map(str, specs))

    def answer(self, response: rtsp.Event) -> None:
        """In the answer, the player's ports again, and the relay's for the server's."""
        if not isinstance(response, rtsp.Response) or response.cseq not in self.offers:
            return
        ports, pair = self.offers.pop(response.cseq)
        text = response.headers.get("Transport")
        specs = rtsp.parse_transport(text) if text and response.status < 300 else []
        if not specs or specs[0].client_port != _ports(pair):
            self.close(*pair)  # refused, or another transport chosen
            return
        spec, loop = specs[0], self.relay._loop
        mine = bind_udp_pair(self.player.get_extra_info("sockname")[0])
        self.sockets.update(mine)
        player = self.player.get_extra_info("peername")[0]
        server = spec.source or self.server.get_extra_info("peername")[0]
        for k in (0, 1):
            loop.add_reader(pair[k], self._datagrams, DOWN, pair[k], mine[k], (player, ports[k]))
            if spec.server_port is not None:  # else the server takes nothing from the player
                to = (server, spec.server_port[k])
                loop.add_reader(mine[k], self._datagrams, UP, mine[k], pair[k], to)
        spec.client_port, spec.server_port = ports, _ports(mine)
        spec.source = spec.source and self.player.get_extra_info("sockname")[0]
        response.headers["Transport"] = str(spec)

    def _datagrams(self, way: str, sock: socket.socket, out: socket.socket, to: Any) -> None:
        relay, count = self.relay, self.relay._counts[way]
        for _ in range(64):  # all that waits (bounded), so that TCP cannot overtake it
            try:
                data = sock.recv(65536)
            except OSError:  # nothing more, or an ICMP error for an earlier send
                return
            count.udp_datagrams_received += 1
            relay._later(partial(relay._send_udp, count, data, out, to, relay._epoch))

    def close(self, *socks: socket.socket) -> None:
        for sock in socks:
            self.sockets.discard(sock)
            self.relay._loop.remove_reader(sock)
            sock.close()


def _ports(pair: Pair) -> tuple[int, int]:
    return pair[0].getsockname()[1], pair[1].getsockname()[1]


def _command(cutter: LinkCutter, line: str) -> bool:
    """Run one console command; False means quit."""
    name, *rest = line.split() or [""]
    try:
        if name in ("cut", "restore", "toggle"):
            getattr(cutter, name)()
        elif name == "status":
            print(cutter.counters().format())
        elif name in ("delay", "loss") and len(rest) == 1:
            setattr(cutter, name, float(rest[0]))
            print(f"{name} = {getattr(cutter, name)}")
        elif name not in ("", "quit", "exit"):
            print(_HELP)
    except ValueError as exc:
        print(f"error: {exc}")
    return name not in ("quit", "exit")


def main(args: argparse.Namespace) -> int:
    """Relay until Ctrl-C (cli.main turns SIGTERM into it) or ``quit``."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        cutter = LinkCutter(args.listen, args.to, args.delay, args.loss,
                            on_event=lambda event: print(f"link {event}")).start()
    except (OSError, ValueError) as exc:
        print(f"linkcut: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}",
              file=sys.stderr)
        return 1
    print(f"linkcut: players open {cutter.url()}<path>; relaying to {args.to[0]}:{args.to[1]}"
          f" (delay {cutter.delay} s, loss {cutter.loss})")
    # Toggled on the relay's thread: a handler that printed could break into a print.
    signal.signal(signal.SIGUSR1, lambda *_: cutter._loop.call_soon_threadsafe(cutter.toggle))
    print(_HELP)
    with contextlib.suppress(KeyboardInterrupt):
        # Commands until quit; once the input ends (or there is none), until Ctrl-C.
        if all(_command(cutter, line) for line in sys.stdin or ()):
            threading.Event().wait()
    cutter.stop()
    print(cutter.counters().format())
    return 0
