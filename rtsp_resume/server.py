"""The streaming server: RTSP 1.0 (RFC 2326) control, RTP/RTCP (RFC 3550) media.

This is the thin I/O layer of the streaming half of the patent. The protocol pieces it
wires together are pure and tested without sockets:

- :mod:`rtsp_resume.rtsp` parses requests and writes responses,
- :mod:`rtsp_resume.sdp` describes a file (DESCRIBE),
- :mod:`rtsp_resume.rtp` numbers and packetizes access units read by :mod:`rtsp_resume.media`,
- :mod:`rtsp_resume.heartbeat` decides when a terminal is gone (claims 2, 8),
- :mod:`rtsp_resume.position` says where the viewer was when it went (claim 1's
  "program play time point"),
- :mod:`rtsp_resume.tokens` checks play tokens the portal issued.

Everything runs on one asyncio event loop in one thread: one task paces each playing
session, one task watches each session's heartbeat. Writes never block (a client that
stops reading has its media dropped, not queued without bound), so one stalled client
cannot hold up the others. :class:`StreamingServer` can run that loop in a background
thread (tests, notebooks) or in the foreground (the CLI).

When the heartbeat declares an abnormal interruption the session is torn down at once and
an :class:`Interruption` is handed to every listener; the reverse bookmark outbox is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rtsp_resume import rtsp, sdp, tokens
from rtsp_resume.heartbeat import HeartbeatMonitor
from rtsp_resume.media import AccessUnit, MediaFile, MediaLibrary, Track, UnplayableMedia
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.position import PositionEstimator
from rtsp_resume.rtp import (
    H264Packetizer,
    ReceiverReport,
    RtpError,
    RtpStream,
    aac_payload,
    parse_rtcp,
)

log = logging.getLogger("rtsp_resume.server")

SERVER_NAME = "rtsp-resume/0.1"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
SR_INTERVAL = 5.0  # seconds between RTCP sender reports per stream (RFC 3550 §6.2 minimum)
LATE = 0.020  # seconds behind its due time after which a packet counts as late
WRITE_BUFFER_LIMIT = 1 << 20  # bytes queued for a TCP client before its media is dropped

Result = tuple[int, dict[str, str], bytes]  # what an RTSP method handler returns


@dataclass
class ServerConfig:
    """Settings of one streaming server; the CLI flags map onto these one to one."""

    host: str = "127.0.0.1"
    port: int = 8554  # 0 picks a free port
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    session_timeout: float = 60.0  # an idle (not playing) session is reclaimed after this
    position: str = "confirmed"  # or "frames_sent": which estimate goes into the bookmark
    playout_allowance: float = 0.5
    token_key: bytes | None = None  # when set, every DESCRIBE/SETUP/PLAY needs a play token
    mtu: int = 1400


@dataclass(frozen=True)
class Interruption:
    """What the streaming server knows when it judges a connection abnormally interrupted.

    This is the material of claim 1's bookmark-set request: the user (``user_id``,
    ``login_session``), the program (``content_id``) and the play time point
    (``position``, by the configured estimator; both estimates are kept for comparison).
    """

    session_id: str
    content_id: str
    user_id: str | None
    login_session: str | None
    play_token: str | None
    position: float
    estimator: str
    frames_sent: float
    confirmed: float
    last_life: float  # Unix time the terminal was last heard from
    detected_at: float  # Unix time the interruption was declared
    transport: str  # "tcp" or "udp"
    unanswered: int  # heartbeats sent since the last sign of life
    heartbeat_log: tuple[tuple[float, str, int | None], ...] = ()  # (Unix time, kind, CSeq)


@dataclass
class _TrackSetup:
    track: Track
    url: str  # the SETUP request URI, echoed in RTP-Info (FFmpeg compares them exactly)
    stream: RtpStream
    channel: int | None = None  # TCP interleaved RTP channel (RTCP is channel + 1)
    client_addr: tuple[str, int] | None = None  # UDP: where RTP goes (RTCP to port + 1)
    next_ticks: int = 0  # media ticks the next PLAY starts at (keeps timestamps monotonic)
    tick_offset: int = 0  # ticks = round(pts * rate) + tick_offset during the current PLAY
    last_sr: float = 0.0


class _Session:
    """One RTSP session: its tracks, its play state, its heartbeat and its position."""

    def __init__(self, server: StreamingServer, session_id: str, media: MediaFile,
                 grant: tokens.PlayGrant | None, connection: _RtspConnection) -> None:
        self.server = server
        self.id = session_id
        self.media = media
        self.grant = grant
        self.connection: _RtspConnection | None = connection
        self.tracks: dict[int, _TrackSetup] = {}
        self.state = "ready"  # ready -> playing <-> paused
        self.played = False
        self.play_task: asyncio.Task[None] | None = None
        self.watch_task: asyncio.Task[None] | None = None
        self.units: Iterator[AccessUnit] | None = None
        self.pending: AccessUnit | None = None  # the unit being waited for (kept on PAUSE)
        self.paused_at = 0.0
        self.catch_up_to = 0.0  # media time up to which units are sent without pacing
        # The pacing clock of the current PLAY: media time `clock[1]` is due at loop time
        # `clock[0]`, and the media time due advances with the wall clock from there.
        self.clock = (0.0, 0.0)
        cfg = server.config
        now = time.monotonic()
        self.monitor = HeartbeatMonitor(cfg.heartbeat_interval, cfg.heartbeat_timeout, now=now)
        video = next((t for t in media.tracks if t.kind == "video"), None)
        self.video_index = video.index if video else None
        self.position = PositionEstimator(
            allowance=cfg.playout_allowance, fps=video.fps if video and video.fps else 25.0
        )
        self.last_request = now
        self.packets_sent = 0
        self.late_packets = 0
        self.closed = False

    @property
    def transport(self) -> str:
        return "tcp" if any(t.channel is not None for t in self.tracks.values()) else "udp"

    def life(self, why: str) -> None:
        self.monitor.life_seen(time.monotonic(), why)


class StreamingServer:
    """Serves every H.264/AAC file of a folder over RTSP, like live555MediaServer.

    ``rtsp://host:port/<ContentID>`` plays ``<ContentID>.mp4`` (or .mov, .mkv).
    ``listeners`` are called on the server's thread with each :class:`Interruption`.
    """

    def __init__(self, media: MediaLibrary | Path | str, config: ServerConfig | None = None,
                 listeners: list[Callable[[Interruption], Any]] | None = None) -> None:
        self.library = media if isinstance(media, MediaLibrary) else MediaLibrary(Path(media))
        self.config = config or ServerConfig()
        self.listeners = list(listeners or [])
        self.sessions: dict[str, _Session] = {}
        self.interruptions: list[Interruption] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = self.config.port
        self.rtp_port = 0
        self._tcp: asyncio.Server | None = None
        self._udp_rtp: asyncio.DatagramTransport | None = None
        self._udp_rtcp: asyncio.DatagramTransport | None = None
        self._udp_peers: dict[tuple[str, int], _Session] = {}  # client RTCP address
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None  # created on the server's loop
        self._cseq = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start_async(self) -> None:
        """Bind the RTSP listener and the shared RTP/RTCP UDP pair on the running loop."""
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        cfg = self.config
        self._tcp = await self.loop.create_server(
            lambda: _RtspConnection(self), cfg.host, cfg.port, reuse_address=True
        )
        self.port = self._tcp.sockets[0].getsockname()[1]
        rtp_sock, rtcp_sock = bind_udp_pair(cfg.host)
        self.rtp_port = rtp_sock.getsockname()[1]
        self._udp_rtp, _ = await self.loop.create_datagram_endpoint(
            lambda: _IgnoreDatagrams(), sock=rtp_sock
        )
        self._udp_rtcp, _ = await self.loop.create_datagram_endpoint(
            lambda: _RtcpReceiver(self), sock=rtcp_sock
        )
        log.info(
            "RTSP on rtsp://%s:%d/ (RTP/RTCP UDP %d-%d); heartbeat every %.1f s, "
            "interruption after %.1f s of silence; position estimator %s",
            cfg.host, self.port, self.rtp_port, self.rtp_port + 1,
            cfg.heartbeat_interval, cfg.heartbeat_timeout, cfg.position,
        )

    async def stop_async(self) -> None:
        for session in list(self.sessions.values()):
            self._end_session(session, "server stopping")
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
        for transport in (self._udp_rtp, self._udp_rtcp):
            if transport is not None:
                transport.close()
        if self._stopped is not None:
            self._stopped.set()

    def start(self) -> StreamingServer:
        """Run the server on its own thread and event loop; returns once it is listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())  # type: ignore[union-attr]
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="rtsp-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`; idempotent."""
        if self.loop is None or self._thread is None:
            return
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(self.stop_async(), self.loop).result(5)
            self._thread.join(5)
        self._thread = None

    def __enter__(self) -> StreamingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, content_id: str, token: str | None = None, host: str | None = None) -> str:
        base = f"rtsp://{host or self.config.host}:{self.port}/{content_id}"
        return f"{base}?token={token}" if token else base

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result (for tests and widgets)."""
        assert self.loop is not None
        future: asyncio.Future[Any] = asyncio.run_coroutine_threadsafe(_call(fn), self.loop)
        return future.result(5)

    # -- sessions --------------------------------------------------------------------

    def next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def _end_session(self, session: _Session, why: str) -> None:
        """Forget a session and release what it holds; no bookmark (a normal end)."""
        if session.closed:
            return
        session.closed = True
        for task in (session.play_task, session.watch_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.sessions.pop(session.id, None)
        for addr, peer in list(self._udp_peers.items()):
            if peer is session:
                del self._udp_peers[addr]
        if session.connection is not None:
            session.connection.sessions.discard(session.id)
        # The pacing figures go into the log so a load test can read them from outside.
        log.info("session %s ended: %s; %d RTP packets sent, %d late by more than %d ms",
                 session.id, why, session.packets_sent, session.late_packets, LATE * 1000)

    def _interrupt(self, session: _Session, last_life: float, unanswered: int) -> None:
        """Claim 2: no answer in time. Tear down at once and report where the viewer was."""
        connection = session.connection
        self._end_session(session, "abnormal interruption (heartbeat timeout)")
        if connection is not None and not connection.sessions:
            connection.abort()  # the radio link is gone: free the socket now
        grant = session.grant
        event = Interruption(
            session_id=session.id,
            content_id=session.media.content_id,
            user_id=grant.user_id if grant else None,
            login_session=grant.login_session if grant else None,
            play_token=grant.token if grant else None,
            position=(session.position.confirmed() if self.config.position == "confirmed"
                      else session.position.frames_sent()),
            estimator=self.config.position,
            frames_sent=session.position.frames_sent(),
            confirmed=session.position.confirmed(),
            last_life=last_life,
            detected_at=time.time(),
            transport=session.transport,
            unanswered=unanswered,
            heartbeat_log=_wall_clock_log(session.monitor),
        )
        self.interruptions.append(event)
        log.warning(
            "session %s (%s, user %s) interrupted: silent since %.2f s ago; position %.3f s "
            "(%s; frames_sent %.3f, confirmed %.3f)",
            session.id, event.content_id, event.user_id, event.detected_at - last_life,
            event.position, event.estimator, event.frames_sent, event.confirmed,
        )
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not take the server down
                log.exception("interruption listener failed")

    async def _watch(self, session: _Session) -> None:
        """Heartbeat loop of one session: send OPTIONS, decide, sleep until the next deadline."""
        monitor = session.monitor
        cfg = self.config
        while not session.closed:
            now = time.monotonic()
            decision = monitor.tick(now)
            if decision.interrupted is not None:
                if session.played:
                    lag = time.monotonic() - decision.interrupted.last_life
                    self._interrupt(session, time.time() - lag, decision.interrupted.unanswered)
                else:
                    self._end_session(session, "terminal silent before PLAY")
                return
            if session.state != "playing" and now - session.last_request > cfg.session_timeout:
                self._end_session(session, "idle past the session timeout")
                return
            if decision.send_heartbeat and session.connection is not None:
                cseq = self.next_cseq()
                headers = rtsp.Headers()
                headers["CSeq"] = str(cseq)
                headers["Session"] = session.id
                session.connection.send(bytes(rtsp.Request("OPTIONS", "*", headers)))
                monitor.heartbeat_sent(cseq, now)
                session.position.mark(cseq)
            deadline = monitor.next_deadline(time.monotonic())
            await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.001)

    # -- media -----------------------------------------------------------------------

    async def _stream(self, session: _Session) -> None:
        """Send access units in decode order, each at its DTS on the wall clock."""
        assert session.units is not None
        packetizer = H264Packetizer(self.config.mtu)
        loop = asyncio.get_running_loop()
        start_wall = loop.time()
        # Units between the keyframe a seek had to start at and the position asked for
        # go out at once: the player needs them to decode, not to show, so real time
        # (and the viewer's wait) starts at the requested position.
        origin: float | None = None
        try:
            while not session.closed:
                # The unit waited for stays in `pending` so a PAUSE (which cancels this
                # task mid-sleep) resumes exactly there.
                if session.pending is None:
                    session.pending = next(session.units, None)
                    if session.pending is None:
                        break
                unit = session.pending
                setup = session.tracks.get(unit.track)
                if setup is not None:  # else a track the client did not SETUP
                    if origin is None:
                        # The clock starts with the first unit in hand, after the file
                        # is opened and sought, so opening it never makes a unit late.
                        origin = max(unit.dts, session.catch_up_to)
                        start_wall = loop.time()
                        session.clock = (start_wall, origin)
                    due = start_wall + (unit.dts - origin)
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    sent = self._send_unit(session, setup, unit, packetizer)
                    # Judged once sent: a busy loop may wake us late from the sleep too.
                    if loop.time() - due > LATE and unit.dts >= origin:
                        session.late_packets += sent
                session.pending = None
        finally:
            if session.play_task is asyncio.current_task():
                session.play_task = None
        if not session.closed and session.state == "playing":
            log.info("session %s reached the end of %s", session.id, session.media.content_id)

    def _send_unit(self, session: _Session, setup: _TrackSetup, unit: AccessUnit,
                   packetizer: H264Packetizer) -> int:
        """Packetize and send one access unit; returns how many RTP packets it took."""
        ticks = round(unit.pts * setup.track.clock_rate) + setup.tick_offset
        setup.next_ticks = max(setup.next_ticks, ticks + 1)
        if setup.track.codec == "h264":
            nals = unit.nals
            if unit.keyframe and setup.track.sps and nals and nals[0][0] & 0x1F != 7:
                # Parameter sets in-band before each IDR: a player that missed or ignores
                # the SDP's sprop-parameter-sets can still start at any keyframe.
                nals = (setup.track.sps, setup.track.pps, *nals)
            payloads = packetizer.packetize(nals)
        else:
            payloads = [(aac_payload(unit.nals), True)]
        connection = session.connection
        congested = (setup.channel is not None and connection is not None
                     and connection.write_buffer_size() > WRITE_BUFFER_LIMIT)
        first_seq = setup.stream.next_sequence
        packets = [bytes(setup.stream.packet(payload, ticks, marker))
                   for payload, marker in payloads]
        if not congested:
            self._send_rtp(session, setup, packets, rtcp=False)
        session.packets_sent += len(packets)
        if unit.track == session.video_index and not congested:
            # A frame dropped for congestion never reached the viewer: not "sent".
            last_seq = (setup.stream.next_sequence - 1) % 65536
            session.position.frame_sent(unit.pts, first_seq, last_seq)
        now = time.time()
        if now - setup.last_sr >= SR_INTERVAL:
            setup.last_sr = now
            # RFC 3550 §6.4.1: the RTP time of this very instant. That is the media time the
            # pacing clock has reached, the same on every track (players synchronise audio
            # and video with it), not the time of the unit at hand: a B-frame's decode
            # time or a unit sent ahead while catching up to a seek would be off.
            started, origin = session.clock
            media_now = origin + (asyncio.get_running_loop().time() - started)
            paced = round(media_now * setup.track.clock_rate) + setup.tick_offset
            report = setup.stream.rtcp_report(now, paced, SERVER_NAME)
            self._send_rtp(session, setup, [report], rtcp=True)
        return len(payloads)

    def _send_rtp(self, session: _Session, setup: _TrackSetup, packets: list[bytes],
                  rtcp: bool) -> None:
        if setup.channel is not None:
            if session.connection is not None:
                channel = setup.channel + (1 if rtcp else 0)
                # One write (one send system call) per access unit, not per packet: the
                # calls, not the bytes, were most of the server's time under load.
                session.connection.send(
                    b"".join(bytes(rtsp.InterleavedFrame(channel, data)) for data in packets))
        elif setup.client_addr is not None:
            host, port = setup.client_addr
            transport = self._udp_rtcp if rtcp else self._udp_rtp
            if transport is not None:
                for data in packets:
                    transport.sendto(data, (host, port + 1 if rtcp else port))

    def rtcp_received(self, session: _Session, data: bytes) -> None:
        """A receiver report is proof of life and (over UDP) of what arrived (issue 3)."""
        try:
            packets = parse_rtcp(data)
        except RtpError as exc:
            log.debug("session %s: unreadable RTCP: %s", session.id, exc)
            return
        session.life("rtcp")
        video = session.tracks.get(session.video_index) if session.video_index is not None else None
        for packet in packets:
            if not isinstance(packet, ReceiverReport):
                continue
            for block in packet.reports:
                if video is not None and block.ssrc == video.stream.ssrc:
                    session.position.receiver_report(block.highest_sequence)

    # -- RTSP methods ----------------------------------------------------------------

    def handle(self, connection: _RtspConnection, request: rtsp.Request) -> rtsp.Response:
        headers = rtsp.Headers()
        cseq = request.headers.get("CSeq")
        if cseq is not None:
            headers["CSeq"] = cseq
        headers["Server"] = SERVER_NAME
        try:
            if cseq is None:
                raise rtsp.RtspProtocolError(400, "Bad Request: CSeq missing")
            method = getattr(self, "_do_" + request.method.lower(), None)
            if method is None:
                headers["Allow"] = PUBLIC
                raise rtsp.RtspProtocolError(501, "Not Implemented")
            status, extra, body = method(connection, request)
        except rtsp.RtspProtocolError as exc:
            return rtsp.Response(exc.status, exc.reason, headers)
        except Exception:  # a bug must answer 500, never kill the connection's loop
            log.exception("error handling %s %s", request.method, request.uri)
            return rtsp.Response(500, "Internal Server Error", headers)
        for name, value in extra.items():
            headers[name] = value
        return rtsp.Response(status, rtsp.REASONS.get(status, "OK"), headers, body)

    def _target(self, request: rtsp.Request) -> tuple[MediaFile, str | None, str | None]:
        """Parse ``rtsp://host/<content>[/<control>][?token=...]`` into its parts."""
        parts = urlsplit(request.uri)
        if parts.scheme.lower() not in ("rtsp", "rtspt") or not parts.path:
            raise rtsp.RtspProtocolError(400, "Bad Request: expected an rtsp:// URL")
        segments = [s for s in parts.path.split("/") if s]
        if not segments or len(segments) > 2:
            raise rtsp.RtspProtocolError(404, "Not Found")
        try:
            media = self.library.get(segments[0])
        except UnplayableMedia as exc:
            raise rtsp.RtspProtocolError(415, "Unsupported Media Type") from exc
        if media is None:
            raise rtsp.RtspProtocolError(404, "Not Found")
        if not media.tracks:
            raise rtsp.RtspProtocolError(415, "Unsupported Media Type")
        token = parse_qs(parts.query).get("token", [None])[0]
        return media, (segments[1] if len(segments) == 2 else None), token

    def _authorise(self, media: MediaFile, token: str | None) -> tokens.PlayGrant | None:
        key = self.config.token_key
        if key is None:
            return None
        if token is None:
            raise rtsp.RtspProtocolError(401, "Unauthorized: play token required")
        try:
            grant = tokens.verify_play_token(key, token, time.time())
        except tokens.InvalidToken as exc:
            raise rtsp.RtspProtocolError(401, f"Unauthorized: {exc}") from exc
        if grant.content_id != media.content_id:
            raise rtsp.RtspProtocolError(401, "Unauthorized: token is for another program")
        return grant

    def _session(self, request: rtsp.Request) -> _Session:
        value = request.headers.get("Session")
        if value is None:
            raise rtsp.RtspProtocolError(454, "Session Not Found")
        session_id, _ = rtsp.parse_session(value)
        session = self.sessions.get(session_id)
        if session is None:
            raise rtsp.RtspProtocolError(454, "Session Not Found")
        session.last_request = time.monotonic()
        session.life("request")
        return session

    def _session_header(self, session: _Session) -> str:
        timeout = max(1, math.ceil(self.config.heartbeat_timeout))
        return rtsp.format_session(session.id, timeout)

    def _do_options(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        if "Session" in request.headers:
            with contextlib.suppress(rtsp.RtspProtocolError):
                self._session(request)
        return 200, {"Public": PUBLIC}, b""

    def _do_get_parameter(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        # An empty GET_PARAMETER is the standard keep-alive (RFC 2326 §10.8).
        if "Session" in request.headers:
            session = self._session(request)
            return 200, {"Session": self._session_header(session)}, b""
        return 200, {}, b""

    _do_set_parameter = _do_get_parameter

    def _do_describe(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        media, control, token = self._target(request)
        if control is not None:
            raise rtsp.RtspProtocolError(404, "Not Found")
        self._authorise(media, token)
        base = _base_url(request.uri, media.content_id)

        def control_url(track: Track) -> str:
            return _with_query(f"{base}/{track.control}", token)

        # Absolute control URLs: a client then never has to join a query string onto
        # a base URL (FFmpeg would append "/track1" after "?token=...").
        text = sdp.describe(
            media.tracks, media.duration, session_id=secrets.randbits(32),
            server_address=self.config.host, control=control_url, title=media.content_id,
            session_control=_with_query(base, token),
        )
        for warning in media.skipped:
            log.warning("%s: %s", media.content_id, warning)
        extra = {
            "Content-Type": "application/sdp",
            "Content-Base": _with_query(base, token) + ("" if token else "/"),
        }
        return 200, extra, text.encode()

    def _do_setup(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        media, control, token = self._target(request)
        track = next((t for t in media.tracks if t.control == control), None)
        if track is None:
            raise rtsp.RtspProtocolError(404, "Not Found: no such track")
        value = request.headers.get("Transport")
        if value is None:
            raise rtsp.RtspProtocolError(461, "Unsupported Transport")
        offers = rtsp.parse_transport(value)
        if "Session" in request.headers:
            session = self._session(request)
            if session.media.content_id != media.content_id:
                raise rtsp.RtspProtocolError(459, "Aggregate Operation Not Allowed")
            if session.state == "playing":
                raise rtsp.RtspProtocolError(455, "Method Not Valid in This State")
        else:
            grant = self._authorise(media, token)
            session = _Session(self, secrets.token_hex(8), media, grant, connection)
            self.sessions[session.id] = session
            connection.sessions.add(session.id)
            session.watch_task = asyncio.get_running_loop().create_task(self._watch(session))
        stream = RtpStream(sdp.payload_type(track), track.clock_rate)
        setup = _TrackSetup(track, request.uri, stream)
        answer = self._choose_transport(session, setup, offers, connection)
        if answer is None:
            if not session.tracks:
                self._end_session(session, "no usable transport")
            raise rtsp.RtspProtocolError(461, "Unsupported Transport")
        session.tracks[track.index] = setup
        return 200, {"Transport": answer, "Session": self._session_header(session)}, b""

    def _choose_transport(self, session: _Session, setup: _TrackSetup,
                          offers: list[rtsp.Transport],
                          connection: _RtspConnection) -> str | None:
        """Pick the first offer we can serve: TCP interleaved or unicast UDP (§12.39).

        Media only ever goes to the address the control connection comes from: a
        ``destination`` parameter would let anyone aim our stream at a third party.
        """
        for offer in offers:
            if offer.cast == "multicast" or not offer.supported:
                continue
            if offer.is_tcp:
                used = {t.channel for t in session.tracks.values()}
                channel = offer.interleaved[0] if offer.interleaved else 0
                if offer.interleaved is None:
                    while channel in used:
                        channel += 2
                if channel in used:
                    continue
                setup.channel = channel
                answer = rtsp.Transport("RTP/AVP/TCP", interleaved=(channel, channel + 1),
                                        ssrc=setup.stream.ssrc)
                return str(answer)
            if offer.client_port:
                rtp_port = offer.client_port[0]
                host = connection.peer[0]
                setup.client_addr = (host, rtp_port)
                self._udp_peers[(host, rtp_port + 1)] = session
                answer = rtsp.Transport(
                    offer.protocol, client_port=(rtp_port, rtp_port + 1),
                    server_port=(self.rtp_port, self.rtp_port + 1), ssrc=setup.stream.ssrc,
                )
                return str(answer)
        return None

    def _session_set_up(self, request: rtsp.Request) -> _Session:
        """The session a PLAY or PAUSE acts on. Without a Session header the resource is
        still in the Init state, where neither method is valid (RFC 2326 Appendix A.2)."""
        if "Session" not in request.headers:
            self._target(request)  # unknown content is still a 404
            raise rtsp.RtspProtocolError(455, "Method Not Valid in This State: SETUP first")
        return self._session(request)

    def _do_play(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        session = self._session_set_up(request)
        if not session.tracks:
            raise rtsp.RtspProtocolError(455, "Method Not Valid in This State")
        range_value = request.headers.get("Range")
        start: float | None = None
        if range_value is not None:
            start, _ = rtsp.parse_range(range_value)
        if not session.played and session.grant is not None and session.grant.start > 0:
            # A resume URL (claims 3, 9): a player that does not seek starts at the bookmark.
            if start is None or start == 0:
                start = session.grant.start
        if start is None and session.state == "playing" and session.play_task is not None:
            # PLAY without a Range while playing changes nothing (RFC 2326 §10.5).
            now_at = session.position.frames_sent()
            return 200, {"Session": self._session_header(session),
                         "Range": rtsp.format_range(now_at, session.media.duration)}, b""
        resume_paused = start is None and session.state == "paused" and session.units is not None
        if start is None and not resume_paused:
            start = 0.0
        if session.play_task is not None:
            session.play_task.cancel()
            session.play_task = None
        if resume_paused:
            session.catch_up_to = 0.0
            begin = session.pending.pts if session.pending is not None else session.paused_at
        else:
            assert start is not None
            if start < 0 or start > session.media.duration:
                raise rtsp.RtspProtocolError(457, "Invalid Range")
            begin = session.media.keyframe_at_or_before(start)
            session.units = session.media.access_units(begin)
            session.catch_up_to = start
            session.pending = None
            session.position.play(begin)
        rtp_info = []
        for setup in sorted(session.tracks.values(), key=lambda s: s.track.index):
            if not resume_paused:
                # After a seek RTP time continues where the last PLAY stopped, so
                # timestamps never go back; RTP-Info maps it to the new position.
                setup.tick_offset = setup.next_ticks - round(begin * setup.track.clock_rate)
            ticks = round(begin * setup.track.clock_rate) + setup.tick_offset
            rtptime = setup.stream.rtp_timestamp(ticks)
            rtp_info.append((setup.url, setup.stream.next_sequence, rtptime))
            setup.last_sr = 0.0
        session.state = "playing"
        session.played = True
        extra = {
            "Session": self._session_header(session),
            "Range": rtsp.format_range(begin, session.media.duration),
            "RTP-Info": rtsp.format_rtp_info(rtp_info),
        }
        # The response must be on the wire before the first RTP packet: queue it first,
        # then start the pacing task, which sends the keyframe at once.
        connection.after_response = lambda: self._start_play(session)
        return 200, extra, b""

    def _start_play(self, session: _Session) -> None:
        if session.closed or session.state != "playing":
            return
        session.play_task = asyncio.get_running_loop().create_task(self._stream(session))

    def _do_pause(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        session = self._session_set_up(request)
        if session.state == "playing":
            session.state = "paused"
            session.paused_at = session.position.frames_sent()
            if session.play_task is not None:
                session.play_task.cancel()
                session.play_task = None
        elif session.state != "paused":
            raise rtsp.RtspProtocolError(455, "Method Not Valid in This State")
        return 200, {"Session": self._session_header(session)}, b""

    def _do_teardown(self, connection: _RtspConnection, request: rtsp.Request) -> Result:
        session = self._session(request)
        self._end_session(session, "TEARDOWN")
        return 200, {}, b""

    def response_received(self, connection: _RtspConnection, response: rtsp.Response) -> None:
        """An answer to our heartbeat OPTIONS: any status counts as life (issue 3)."""
        now = time.monotonic()
        for session_id in list(connection.sessions):
            session = self.sessions.get(session_id)
            if session is None:
                continue
            answered = session.monitor.response_received(response.cseq, now)
            if answered is not None and session.transport == "tcp":
                # Over TCP the answer proves every interleaved packet sent before that
                # heartbeat was read (one ordered byte stream).
                session.position.mark_answered(answered)

    def connection_lost(self, connection: _RtspConnection, clean: bool) -> None:
        """A closed control connection ends its sessions normally (no bookmark)."""
        for session_id in list(connection.sessions):
            session = self.sessions.get(session_id)
            if session is not None:
                session.connection = None
                self._end_session(session, "control connection closed")


class _RtspConnection(asyncio.Protocol):
    """One RTSP control connection: bytes in, requests to the server, responses out."""

    def __init__(self, server: StreamingServer) -> None:
        self.server = server
        self.parser = rtsp.RtspParser()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.sessions: set[str] = set()
        self.after_response: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else ("", 0)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small RTP-over-TCP writes must not wait for Nagle's algorithm.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_LIMIT * 4)

    def data_received(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if isinstance(event, rtsp.Request):
                response = self.server.handle(self, event)
                self.send(bytes(response))
                if self.after_response is not None:
                    callback, self.after_response = self.after_response, None
                    callback()
            elif isinstance(event, rtsp.Response):
                self.server.response_received(self, event)
            elif isinstance(event, rtsp.InterleavedFrame):
                self._interleaved(event)
            else:  # BadInput: what was whole before the junk has been handled
                headers = rtsp.Headers()
                headers["Server"] = SERVER_NAME
                self.send(bytes(rtsp.Response(event.status, event.phrase, headers)))
                log.info("closing %s:%d after malformed input: %s", *self.peer, event.reason)
                if self.transport is not None:
                    self.transport.close()
                return

    def _interleaved(self, frame: rtsp.InterleavedFrame) -> None:
        for session_id in self.sessions:
            session = self.server.sessions.get(session_id)
            if session is None:
                continue
            for setup in session.tracks.values():
                if setup.channel is not None and frame.channel == setup.channel + 1:
                    self.server.rtcp_received(session, frame.data)
                    return

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connection_lost(self, clean=exc is None)
        self.transport = None


class _RtcpReceiver(asyncio.DatagramProtocol):
    """The server's shared RTCP port: receiver reports from UDP clients."""

    def __init__(self, server: StreamingServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        session = self.server._udp_peers.get((addr[0], addr[1]))
        if session is not None:
            self.server.rtcp_received(session, data)


class _IgnoreDatagrams(asyncio.DatagramProtocol):
    """The shared RTP port only sends; clients may punch holes at it, which we ignore."""


def _wall_clock_log(monitor: HeartbeatMonitor) -> tuple[tuple[float, str, int | None], ...]:
    """The monitor's recent events (kept on the monotonic clock) in Unix time."""
    shift = time.time() - time.monotonic()
    return tuple((entry.time + shift, entry.kind, entry.cseq) for entry in monitor.log)


def _base_url(uri: str, content_id: str) -> str:
    """The aggregate URL of a program as the client addressed us (host and port kept)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}/{content_id}"


def _with_query(url: str, token: str | None) -> str:
    return f"{url}?token={token}" if token else url


async def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def main(args: Any) -> int:
    """``python -m rtsp_resume serve-rtsp``: serve a folder until Ctrl-C."""
    if not Path(args.media).is_dir():
        print(f"serve-rtsp: {args.media} is not a folder of media files", file=sys.stderr)
        return 2
    key = None
    listeners: list[Callable[[Interruption], Any]] = []
    if args.portal_url:
        secret_file = args.secret_file or Path("data") / "secret"
        key = tokens.load_or_create_secret(secret_file)
        from rtsp_resume.bookmark_outbox import BookmarkOutbox

        outbox = BookmarkOutbox(args.portal_url, key, args.outbox or Path("data") / "outbox.db")
        outbox.start()
        listeners.append(outbox.submit)
    config = ServerConfig(
        host=args.host, port=args.port, heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout, position=args.position,
        playout_allowance=args.playout_allowance, token_key=key,
    )
    server = StreamingServer(args.media, config, listeners)

    async def run() -> int:
        try:
            await server.start_async()
        except OSError as exc:  # e.g. the port is taken: say so, without a traceback
            print(f"serve-rtsp: cannot listen on {args.host}:{args.port}: {exc}",
                  file=sys.stderr)
            return 1
        for media in server.library.list():
            print(f"  {server.url(media.content_id)}  ({media.duration:.1f} s)", flush=True)
        assert server._stopped is not None
        await server._stopped.wait()
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        print("stopped")
    return 0
