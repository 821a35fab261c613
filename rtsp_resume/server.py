"""The streaming server, RTSP 1.0 (RFC 2326) and RTP/RTCP (RFC 3550): sockets, pacing and
timers on one asyncio loop around :mod:`rtsp_resume.session`. Writes never block (a client
that stops reading has its media dropped). When the heartbeat declares an abnormal
interruption (claim 2) the session ends and its :class:`Interruption` goes to the listeners."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtsp_resume import loopclock, readahead, rtsp
from rtsp_resume import session as sm
from rtsp_resume.media import AccessUnit, MediaLibrary
from rtsp_resume.payload import NAL_SPS, H264Packetizer, aac_payload, nal_type
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.session import Interruption, ServerConfig

log = sm.log
SR_INTERVAL = 5.0  # seconds between RTCP sender reports per stream (RFC 3550 §6.2 minimum)
LATE = 0.020  # seconds behind its due time after which a packet counts as late
SEND_AHEAD = 0.020  # seconds early a unit may go out with one due before it
WRITE_BUFFER_LIMIT = 1 << 20  # bytes queued for a TCP client before its media is dropped


@dataclass
class _Pacing:
    """The I/O side of one session: its tasks and where its media stands."""
    watch_task: asyncio.Task[None]
    play_task: asyncio.Task[None] | None = None
    units: readahead.ReadAhead | None = None  # its pending unit is kept on PAUSE
    catch_up_to: float = 0.0  # media time up to which units are sent without pacing
    # Media time clock[1] is due at loop time clock[0], which was Unix time clock[2].
    clock: tuple[float, float, float] = (0.0, 0.0, 0.0)
    packets_sent: int = 0
    late_packets: int = 0

    def stop(self, units: bool = False, watch: bool = False) -> None:
        """Stop pacing (``watch``: the heartbeat too; ``units``: close the file now)."""
        for task in (self.play_task, self.watch_task if watch else None):
            if task is not None:
                task.cancel()  # the calling task too: it ends at its next wait, not sleeps on
        self.play_task = None
        if units and self.units is not None:
            self.units.close()


@dataclass(eq=False)  # hashed by identity, kept in a set
class _Connection:
    """One RTSP control connection: where responses, heartbeats and TCP media go."""
    transport: asyncio.WriteTransport
    peer: tuple[str, int]
    task: asyncio.Task[None] | None
    sessions: set[sm.Session] = field(default_factory=set)

    def send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


class StreamingServer:
    """Serves every H.264/AAC file of a folder over RTSP, like live555MediaServer:
    ``rtsp://host:port/<ContentID>`` plays ``<ContentID>.mp4`` (or .mov, .mkv).
    ``listeners`` are called on the server's thread with each :class:`Interruption`."""
    packetizer: Callable[[int], H264Packetizer] = H264Packetizer  # per stream, given the MTU

    def __init__(self, media: MediaLibrary | Path | str, config: ServerConfig | None = None,
                 listeners: list[Callable[[Interruption], Any]] | None = None) -> None:
        self.library = media if isinstance(media, MediaLibrary) else MediaLibrary(Path(media))
        self.config = config or ServerConfig()
        self.listeners = list(listeners or [])
        self.rtsp = sm.RtspSessions(self.library, self.config)
        self.sessions: dict[str, sm.Session] = self.rtsp.sessions
        self.interruptions: list[Interruption] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port, self.rtp_port = self.config.port, 0
        self.sock: socket.socket | None = None  # set before start: accept here, not host:port
        self._tcp: asyncio.Server | None = None
        self._udp: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[_Connection] = set()
        self._cseqs = itertools.count(1)
        self.clock = loopclock.LoopClock()  # heartbeats' time: the loop's own stalls left out

    async def start_async(self) -> None:
        """Bind the RTSP listener and the shared RTP/RTCP UDP pair on the running loop."""
        self.loop, cfg = asyncio.get_running_loop(), self.config
        where = {"sock": self.sock} if self.sock else {"host": cfg.host, "port": cfg.port}
        self._tcp = await asyncio.start_server(self._serve, **where)  # type: ignore[arg-type]
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._udp = bind_udp_pair(cfg.host)
        self.rtp_port = self.rtsp.rtp_port = self._udp[0].getsockname()[1]
        self.loop.add_reader(self._udp[1], self._read_rtcp)
        self.clock.start(self.loop)
        log.info("RTSP on rtsp://%s:%d/, RTP/RTCP on UDP %d-%d", cfg.host, self.port,
                 self.rtp_port, self.rtp_port + 1)

    async def stop_async(self) -> None:
        tasks = [t for s in self.sessions.values() if s.io is not None
                 for t in (s.io.watch_task, s.io.play_task) if t is not None]
        for session in list(self.sessions.values()):
            self._end_session(session, "server stopping")
        await asyncio.gather(*tasks, return_exceptions=True)  # cancelled: let them finish
        if self._tcp is not None:
            self._tcp.close()
            for connection in self._connections:
                connection.transport.abort()  # its task then returns
            await asyncio.gather(*(c.task for c in self._connections), return_exceptions=True)
        if self._udp is not None and self.loop is not None:
            self.loop.remove_reader(self._udp[1])
            for sock in self._udp:
                sock.close()
        self.clock.stop()

    def start(self) -> StreamingServer:
        """Run the server on its own thread and event loop; returns once it is listening."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rtsp-server",
                                        daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start_async(), self.loop).result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *_exc_info: object) -> None:
        """Stop a server started with :meth:`start`; idempotent."""
        if self.loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.stop_async(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
        self._thread = None

    __enter__, __exit__ = start, stop

    def url(self, content_id: str, token: str | None = None) -> str:
        base = f"rtsp://{self.config.host}:{self.port}/{content_id}"
        return f"{base}?token={token}" if token else base

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result (for tests and widgets)."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control connection (asyncio sets TCP_NODELAY: small RTP writes never wait)."""
        peer, parser = writer.get_extra_info("peername")[:2], rtsp.RtspParser()
        connection = _Connection(writer.transport, peer, asyncio.current_task())
        self._connections.add(connection)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16),
                                                  self.config.connection_timeout)
                except TimeoutError:
                    if connection.sessions:
                        continue
                    log.info("closing %s:%d: idle without a session", *connection.peer)
                    break
                if not data or not self._received(connection, parser.feed(data)):
                    break
        except OSError:
            pass  # the peer reset the connection: its sessions end below
        finally:
            for session in list(connection.sessions):
                self._end_session(session, "control connection closed")
            writer.close()
            self._connections.discard(connection)

    def _received(self, connection: _Connection, events: list[rtsp.Event]) -> bool:
        """Handle what a connection's bytes said; False when it must be closed."""
        for event in events:
            now, sessions = self.clock(), list(connection.sessions)
            if isinstance(event, rtsp.Request):
                response, action = self.rtsp.handle(event, connection.peer[0], now, time.time())
                if action is not None:
                    self._apply(connection, action)
                connection.send(bytes(response))
            elif isinstance(event, rtsp.Response):
                for session in sessions:
                    session.answered(event.cseq, now)
            elif isinstance(event, rtsp.InterleavedFrame):
                for session in sessions:
                    if any(event.channel - 1 == t.channel for t in session.tracks.values()):
                        session.rtcp(event.data, now)
            else:  # BadInput: what was whole before the junk has been handled
                response = rtsp.Response(event.status, event.phrase, {"Server": sm.SERVER_NAME})
                connection.send(bytes(response))
                log.info("closing %s:%d after bad input: %s", *connection.peer, event.reason)
                return False
        return True

    def _apply(self, connection: _Connection, action: sm.Action) -> None:
        """Do what the state machine asked; a play task starts next turn, after the response."""
        session, loop = action.session, asyncio.get_running_loop()
        pacing: _Pacing = session.io
        if action.kind == "watch":
            session.connection = connection
            connection.sessions.add(session)
            session.io = _Pacing(loop.create_task(self._watch(session)))
        elif action.kind == "end":
            self._end_session(session, "TEARDOWN")
        elif action.kind == "pause":
            pacing.stop()
            if pacing.units is not None and pacing.units.pending is not None:
                session.paused_at = pacing.units.pending.pts
        elif action.kind == "play" and not session.closed:
            pacing.stop(units=action.start is not None)
            if action.start is not None:  # a new position (else resume where paused)
                pacing.units = readahead.ReadAhead(session.media.access_units(action.start))
            pacing.catch_up_to = action.catch_up_to
            pacing.play_task = loop.create_task(self._stream(session))

    def _end_session(self, session: sm.Session, why: str) -> None:
        """Forget a session and release what it holds; no bookmark (a normal end)."""
        if session.closed:
            return
        session.closed, pacing = True, session.io
        pacing.stop(units=True, watch=True)
        if session.connection is not None:
            session.connection.sessions.discard(session)
        # The pacing figures go into the log so a load test can read them from outside.
        log.info("session %s ended: %s; %d RTP packets sent, %d late by more than %d ms",
                 session.id, why, pacing.packets_sent, pacing.late_packets, LATE * 1000)
        self.sessions.pop(session.id, None)  # last: who sees it gone sees it all done

    def _interrupt(self, session: sm.Session) -> None:
        """Claim 2: no answer in time. Tear down at once and report where the viewer was."""
        event = session.interruption(self.config.position, self.clock(), time.time())
        connection = session.connection
        self._end_session(session, sm.INTERRUPTED)
        if connection is not None and not connection.sessions:
            connection.transport.abort()  # the radio link is gone: free the socket now
        self.interruptions.append(event)
        log.warning("session %s (%s, user %s) interrupted after %.2f s of silence at %.3f s "
                    "(%s; proof: %s)", session.id, event.content_id, event.user_id,
                    event.detected_at - event.last_life, event.position, event.estimator,
                    event.evidence)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not take the server down
                log.exception("interruption listener failed")

    async def _watch(self, session: sm.Session) -> None:
        """Heartbeat loop of one session: send OPTIONS, decide, sleep until the next deadline."""
        while not session.closed:
            now = self.clock()
            todo = session.tick(now)
            if todo == sm.INTERRUPTED:
                self._interrupt(session)
            elif todo not in (None, "heartbeat"):
                self._end_session(session, todo)
            elif todo and session.connection is not None:
                session.connection.send(session.heartbeat(next(self._cseqs), now))
            deadline = session.monitor.next_deadline(self.clock())
            await asyncio.sleep(max(0.0, deadline - self.clock()) + 0.001)

    async def _stream(self, session: sm.Session) -> None:
        """Send access units at their DTS; from a seek's keyframe up to the position asked
        for, at once. The unit waited for stays ``pending``, where a PAUSE resumes. Each
        wake-up also sends what falls due within ``SEND_AHEAD``, in one write: wake-ups and
        system calls per unit, not bytes, are what a session costs."""
        pacing: _Pacing = session.io
        assert pacing.units is not None
        packetizer, loop = self.packetizer(self.config.mtu), asyncio.get_running_loop()
        origin: float | None = None
        while not session.closed:
            unit = await pacing.units.next()
            if unit is None:
                session.at_end = True
                log.info("session %s reached the end", session.id)
                return
            if unit.track not in session.tracks:  # a track the client did not SETUP
                pacing.units.sent()
                continue
            if origin is None:  # from the first unit in hand: opening the file is never late
                origin = max(unit.dts, pacing.catch_up_to)
                pacing.clock = (loop.time(), origin, time.time())
            due = pacing.clock[0] + (unit.dts - origin)
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            horizon, frames = loop.time() + SEND_AHEAD, []
            while unit is not None and not session.closed:
                setup = session.tracks.get(unit.track)
                if setup is not None:
                    due = pacing.clock[0] + (unit.dts - origin)
                    if due > horizon:
                        break
                    sent = self._send_unit(session, setup, unit, packetizer, frames)
                    # Judged once sent: a busy loop may wake us late from the sleep too.
                    if loop.time() - due > LATE and unit.dts >= origin:
                        pacing.late_packets += sent
                pacing.units.sent()
                unit = pacing.units.pending
            if frames and session.connection is not None:
                session.connection.send(b"".join(frames))

    def _send_unit(self, session: sm.Session, setup: sm.TrackSetup, unit: AccessUnit,
                   packetizer: H264Packetizer, frames: list[bytes]) -> int:
        """Packetize and send one access unit (over TCP: add it to ``frames``, written once
        for all the units of a wake-up); returns how many RTP packets it took."""
        pacing: _Pacing = session.io
        rate, stream = setup.track.clock_rate, setup.stream
        ticks = round(unit.pts * rate) + setup.tick_offset
        setup.next_ticks = max(setup.next_ticks, ticks + 1)
        if setup.track.codec == "aac":
            payloads = [(aac_payload(unit.nals), True)]
        elif unit.keyframe and setup.track.sps and unit.nals and nal_type(unit.nals[0]) != NAL_SPS:
            # Parameter sets before each IDR, for players that ignore the SDP's.
            payloads = packetizer.packetize((setup.track.sps, setup.track.pps, *unit.nals))
        else:
            payloads = packetizer.packetize(unit.nals)
        first_seq = stream.next_sequence
        packets = stream.packets(payloads, ticks)
        pacing.packets_sent += len(packets)
        connection = session.connection
        tcp_full = setup.channel is not None and (
            connection is None or connection.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT)
        if not tcp_full:
            self._send_rtp(session, setup, packets, frames)
            if unit.track == session.video_index:  # a frame dropped never reached the viewer
                session.position.frame_sent(unit.pts, first_seq, stream.next_sequence - 1,
                                            self.clock())  # the clock answers are read on
        now = time.time()
        if now - setup.last_sr >= SR_INTERVAL and not session.closed:
            setup.last_sr = now
            # RFC 3550 §6.4.1: one instant of the pacing clock for every track, on a grid of
            # whole ticks of each clock rate, so a player that lines tracks up by their SRs
            # (FFmpeg does) rounds nothing and never places a frame a tick early.
            loop_time, media_time, unix_time = pacing.clock
            grid = math.gcd(*(s.track.clock_rate for s in session.tracks.values()))
            elapsed = asyncio.get_running_loop().time() - loop_time
            media_now = math.floor((media_time + elapsed) * grid) / grid
            report = stream.rtcp_report(unix_time + media_now - media_time,
                                        round(media_now * rate) + setup.tick_offset, sm.SERVER_NAME)
            self._send_rtp(session, setup, [report], frames, rtcp=True)
        return len(payloads)

    def _send_rtp(self, session: sm.Session, setup: sm.TrackSetup, packets: list[bytes],
                  frames: list[bytes], rtcp: bool = False) -> None:
        if setup.channel is not None:
            frames.append(rtsp.interleave(setup.channel + rtcp, packets))
        elif setup.client_addr is not None and self._udp is not None:
            host, port = setup.client_addr
            try:
                for data in packets:
                    self._udp[rtcp].sendto(data, (host, port + rtcp))
            except BlockingIOError:
                pass  # a full socket buffer drops the datagram, as the network may
            except (OSError, OverflowError) as exc:  # this client only: the socket is shared
                self._end_session(session, f"cannot send to {host}:{port}: {exc}")

    def _read_rtcp(self) -> None:
        """A datagram on the shared RTCP port: a report from a UDP client."""
        with contextlib.suppress(OSError):
            data, addr = self._udp[1].recvfrom(1 << 16)  # type: ignore[index]
            for session in self.sessions.values():
                if any(t.client_addr == (addr[0], addr[1] - 1) for t in session.tracks.values()):
                    session.rtcp(data, self.clock())
                    return
