"""RTSP sessions as a pure state machine (RFC 2326 §10, A.2): request and time in, response
and what the I/O layer must do out. A :class:`Session` turns heartbeat answers and RTCP into
life and delivery proofs (claims 2, 8) and, once the heartbeat gives up, into the
:class:`Interruption` a reverse bookmark is made of (claim 1). No sockets, no clock."""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from rtsp_resume import rtsp, sdp, tokens
from rtsp_resume.heartbeat import HeartbeatMonitor
from rtsp_resume.media import MediaFile, MediaLibrary, Track, UnplayableMedia
from rtsp_resume.position import PositionEstimator
from rtsp_resume.rtp import ReceiverReport, RtpError, RtpStream, parse_rtcp

log = logging.getLogger("rtsp_resume.server")

SERVER_NAME = "rtsp-resume/0.1"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
INTERRUPTED = "abnormal interruption (heartbeat timeout)"
UDP_DELIVERY_BOUND = 0.5  # s: network delay + a player's reorder buffer (FFmpeg's: 0.1 s)


@dataclass
class ServerConfig:
    """Settings of one streaming server; the CLI flags map onto these one to one."""
    host: str = "127.0.0.1"
    port: int = 8554  # 0 picks a free port
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 3.0
    session_timeout: float = 60.0  # announced; ends a paused or never played silent session
    position: str = "confirmed"  # or "frames_sent": which estimate goes into the bookmark
    playout_allowance: float = 0.5
    token_key: bytes | None = None  # when set, every DESCRIBE/SETUP/PLAY needs a play token
    mtu: int = 1400
    connection_timeout: float = 60.0  # a control connection silent this long, sessionless, closes


@dataclass(frozen=True)
class Interruption:
    """What the server knows when it judges a connection abnormally interrupted (claim 2):
    claim 1's bookmark material, user, program and play time point (``position``)."""
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
    evidence: str = "none"  # the proof ``confirmed`` rests on (PositionEstimator.evidence)


@dataclass
class TrackSetup:
    """One track a session set up, and where its RTP goes."""
    track: Track
    url: str  # the SETUP request URI, echoed in RTP-Info (FFmpeg compares them exactly)
    stream: RtpStream
    channel: int | None = None  # TCP interleaved RTP channel (RTCP is channel + 1)
    client_addr: tuple[str, int] | None = None  # UDP: where RTP goes (RTCP to port + 1)
    next_ticks: int = 0  # media ticks the next PLAY starts at (keeps timestamps monotonic)
    tick_offset: int = 0  # ticks = round(pts * rate) + tick_offset during the current PLAY
    last_sr: float = 0.0


class Action(NamedTuple):
    """What the I/O layer does once the response is written: "watch" a new session,
    "play" (from the keyframe at ``start``, None: where it paused), "pause" or "end"."""
    kind: str
    session: Session
    start: float | None = None
    catch_up_to: float = 0.0


class Session:
    """One RTSP session: its tracks, its play state, its heartbeat and its position."""

    def __init__(self, session_id: str, media: MediaFile, grant: tokens.PlayGrant | None,
                 config: ServerConfig, now: float) -> None:
        self.id, self.media, self.grant = session_id, media, grant
        self.tracks: dict[int, TrackSetup] = {}
        self.state = "ready"  # ready -> playing <-> paused
        self.played = self.at_end = self.closed = False  # at_end: the last unit went out
        self.paused_at = 0.0  # where a PLAY without Range resumes
        self.timeout = config.session_timeout
        self.monitor = HeartbeatMonitor(config.heartbeat_interval, config.heartbeat_timeout,
                                        now=now)
        video = next((t for t in media.tracks if t.kind == "video"), None)
        self.video_index = video.index if video else None
        self.position = PositionEstimator(allowance=config.playout_allowance,
                                          fps=video.fps if video and video.fps else 25.0)
        self.last_request = now
        self.connection: Any = None  # the I/O layer's control connection, opaque here
        self.io: Any = None  # the I/O layer's pacing state, opaque here

    @property
    def transport(self) -> str:
        return "tcp" if any(t.channel is not None for t in self.tracks.values()) else "udp"

    def tick(self, now: float) -> str | None:
        """At ``now``: "heartbeat", None, or why the session ends (claim 2's INTERRUPTED)."""
        decision = self.monitor.tick(now)
        if decision.interrupted:
            return INTERRUPTED if self.played else "terminal silent before PLAY"
        if self.state == "ready" and now - self.last_request > self.timeout:
            return "idle past the session timeout"
        return "heartbeat" if decision.send_heartbeat else None

    def heartbeat(self, cseq: int, now: float) -> bytes:
        """Claim 2's heartbeat: a server OPTIONS, marked behind the media sent so far."""
        self.monitor.heartbeat_sent(cseq, now)
        self.position.mark(cseq)
        return bytes(rtsp.Request("OPTIONS", "*", {"CSeq": str(cseq), "Session": self.id}))

    def answered(self, cseq: int | None, now: float) -> None:
        """A response: life, and all sent before it (TCP: one ordered stream) or a bound before."""
        answered = self.monitor.response_received(cseq, now)
        if answered is not None and self.transport == "tcp":
            self.position.mark_answered(answered)
        elif answered is not None:
            self.position.reading_at(now - UDP_DELIVERY_BOUND)

    def rtcp(self, data: bytes, now: float) -> None:
        """RTCP from the terminal: life, and what arrived (RFC 3550 §6.4.2)."""
        try:
            packets = parse_rtcp(data)
        except RtpError:
            return
        self.monitor.life_seen(now, "rtcp")
        video = self.tracks.get(self.video_index)  # type: ignore[arg-type]
        for block in (b for p in packets if isinstance(p, ReceiverReport) for b in p.reports):
            if video is not None and block.ssrc == video.stream.ssrc:
                self.position.receiver_report(block.highest_sequence)

    def interruption(self, estimator: str, now: float, wall: float) -> Interruption:
        """Claim 1's bookmark material; ``now`` on the heartbeat's clock, ``wall`` Unix time."""
        shift, grant, monitor = wall - now, self.grant, self.monitor
        frames_sent, confirmed = self.position.frames_sent(), self.position.confirmed()
        return Interruption(
            self.id, self.media.content_id, grant.user_id if grant else None,
            grant.login_session if grant else None, grant.token if grant else None,
            confirmed if estimator == "confirmed" else frames_sent, estimator, frames_sent,
            confirmed, monitor.last_life + shift, wall, self.transport, monitor.unanswered,
            tuple((e.time + shift, e.kind, e.cseq) for e in monitor.log), self.position.evidence)


Result = tuple[dict[str, str], bytes, Action | None]


class RtspSessions:
    """Every session of one server; ``rtp_port`` is its RTP port (RTCP is the one above)."""

    def __init__(self, library: MediaLibrary, config: ServerConfig, rtp_port: int = 0) -> None:
        self.library, self.config, self.rtp_port = library, config, rtp_port
        self.sessions: dict[str, Session] = {}
        self._peer, self._now, self._wall = "", 0.0, 0.0

    def handle(self, request: rtsp.Request, peer: str, now: float,
               wall: float) -> tuple[rtsp.Response, Action | None]:
        """Answer ``request`` from host ``peer``: bad input gets a 4xx, a bug a 500."""
        self._peer, self._now, self._wall = peer, now, wall
        cseq = request.headers.get("CSeq")
        headers = ({"CSeq": cseq} if cseq is not None else {}) | {"Server": SERVER_NAME}
        try:
            if cseq is None:
                raise rtsp.RtspProtocolError(400, "Bad Request: CSeq missing")
            method = getattr(self, "_do_" + request.method.lower(), None)
            if method is None:
                headers["Allow"] = PUBLIC
                raise rtsp.RtspProtocolError(501, "Not Implemented")
            extra, body, action = method(request)
        except rtsp.RtspProtocolError as exc:
            return rtsp.Response(exc.status, exc.reason, headers), None
        except Exception:  # a bug answers 500; it must never kill the connection
            log.exception("error handling %s %s", request.method, request.uri)
            return rtsp.Response(500, "Internal Server Error", headers), None
        return rtsp.Response(200, "OK", headers | extra, body), action

    def _target(self, request: rtsp.Request) -> tuple[MediaFile, str | None, str | None]:
        """``rtsp://host/<content>[/<control>][?token=...]``: the media, control, token."""
        try:
            parts = urlsplit(request.uri)
            token = parse_qs(parts.query).get("token", [None])[0]
        except ValueError as exc:  # e.g. an unclosed IPv6 bracket
            raise rtsp.RtspProtocolError(400, "Bad Request: malformed URL") from exc
        if parts.scheme.lower() not in ("rtsp", "rtspt") or not parts.path:
            raise rtsp.RtspProtocolError(400, "Bad Request: expected an rtsp:// URL")
        segments = [s for s in parts.path.split("/") if s]
        try:
            media = self.library.get(segments[0]) if 0 < len(segments) < 3 else None
        except UnplayableMedia as exc:
            raise rtsp.RtspProtocolError(415, "Unsupported Media Type") from exc
        if media is None:
            raise rtsp.RtspProtocolError(404, "Not Found")
        return media, (segments[1] if len(segments) == 2 else None), token

    def _authorise(self, media: MediaFile, token: str | None) -> tokens.PlayGrant | None:
        """Claims 4, 10: with a key configured, only a valid play token for this program."""
        if self.config.token_key is None:
            return None
        if token is None:
            raise rtsp.RtspProtocolError(401, "Unauthorized: play token required")
        try:
            grant = tokens.verify_play_token(self.config.token_key, token, self._wall)
        except tokens.InvalidToken as exc:
            raise rtsp.RtspProtocolError(401, f"Unauthorized: {exc}") from exc
        if grant.content_id != media.content_id:
            raise rtsp.RtspProtocolError(401, "Unauthorized: token is for another program")
        return grant

    def _session(self, request: rtsp.Request, setup_first: bool = False) -> Session:
        """The session named (a request is life); ``setup_first``: PLAY/PAUSE need one (A.2)."""
        value = request.headers.get("Session")
        if value is None and setup_first:
            self._target(request)  # unknown content is still a 404
            raise rtsp.RtspProtocolError(455, "Method Not Valid in This State: SETUP first")
        session = None if value is None else self.sessions.get(rtsp.parse_session(value)[0])
        if session is None:
            raise rtsp.RtspProtocolError(454, "Session Not Found")
        session.last_request = self._now
        session.monitor.life_seen(self._now, "request")
        return session

    def _header(self, session: Session) -> dict[str, str]:
        timeout = max(1, math.ceil(self.config.session_timeout))
        return {"Session": rtsp.format_session(session.id, timeout)}

    def _do_options(self, request: rtsp.Request) -> Result:
        with contextlib.suppress(rtsp.RtspProtocolError):  # no or a stale session: no error here
            self._session(request)
        return {"Public": PUBLIC}, b"", None

    def _do_get_parameter(self, request: rtsp.Request) -> Result:
        """An empty GET_PARAMETER is the standard keep-alive (RFC 2326 §10.8)."""
        has_session = "Session" in request.headers
        return self._header(self._session(request)) if has_session else {}, b"", None

    _do_set_parameter = _do_get_parameter

    def _do_describe(self, request: rtsp.Request) -> Result:
        media, control, token = self._target(request)
        if control is not None:
            raise rtsp.RtspProtocolError(404, "Not Found")
        self._authorise(media, token)
        parts = urlsplit(request.uri)
        base = f"{parts.scheme}://{parts.netloc}/{media.content_id}"
        query = f"?token={token}" if token else ""
        # Absolute control URLs: FFmpeg would append "/track1" after "?token=...".
        text = sdp.describe(
            media.tracks, media.duration, session_id=secrets.randbits(32),
            server_address=self.config.host, control=lambda t: f"{base}/{t.control}{query}",
            title=media.content_id, session_control=base + query)
        extra = {"Content-Type": "application/sdp", "Content-Base": base + (query or "/")}
        return extra, text.encode(), None

    def _do_setup(self, request: rtsp.Request) -> Result:
        media, control, token = self._target(request)
        track = next((t for t in media.tracks if t.control == control), None)
        if track is None:
            raise rtsp.RtspProtocolError(404, "Not Found: no such track")
        value = request.headers.get("Transport")
        offers = rtsp.parse_transport(value) if value is not None else []
        if "Session" in request.headers:
            session = self._session(request)
            if session.media.content_id != media.content_id:
                raise rtsp.RtspProtocolError(459, "Aggregate Operation Not Allowed")
            if session.state == "playing":
                raise rtsp.RtspProtocolError(455, "Method Not Valid in This State")
        else:
            grant = self._authorise(media, token)
            session = Session(secrets.token_hex(8), media, grant, self.config, self._now)
        setup = TrackSetup(track, request.uri,
                           RtpStream(sdp.payload_type(track), track.clock_rate))
        answer = self._transport(session, setup, offers)
        if answer is None:
            raise rtsp.RtspProtocolError(461, "Unsupported Transport")
        session.tracks[track.index] = setup
        new = session.id not in self.sessions
        self.sessions[session.id] = session
        extra = {"Transport": answer, **self._header(session)}
        return extra, b"", Action("watch", session) if new else None

    def _transport(self, session: Session, setup: TrackSetup,
                   offers: list[rtsp.Transport]) -> str | None:
        """The first offer we serve, TCP interleaved or unicast UDP (§12.39), always to the
        control connection's host (a ``destination`` could aim our stream at anyone)."""
        for offer in offers:
            if offer.cast == "multicast" or not offer.supported:
                continue
            if offer.is_tcp:
                used = {t.channel for t in session.tracks.values()}
                channel = offer.interleaved[0] if offer.interleaved else 0
                while offer.interleaved is None and channel in used:
                    channel += 2
                if channel not in used:
                    setup.channel = channel
                    return str(rtsp.Transport("RTP/AVP/TCP", ssrc=setup.stream.ssrc,
                                              interleaved=(channel, channel + 1)))
            elif offer.client_port:
                rtp, rtcp = offer.client_port
                # RTP on an even port, RTCP on the next (RFC 3550 §11), both real ports.
                if rtp % 2 == 0 and rtcp == rtp + 1 and 0 < rtp < 65535:
                    setup.client_addr = (self._peer, rtp)
                    return str(rtsp.Transport(
                        offer.protocol, client_port=(rtp, rtcp), ssrc=setup.stream.ssrc,
                        server_port=(self.rtp_port, self.rtp_port + 1)))
        return None

    def _do_play(self, request: rtsp.Request) -> Result:
        session = self._session(request, setup_first=True)  # has a track: SETUP made it
        value = request.headers.get("Range")
        start = rtsp.parse_range(value)[0] if value is not None else None
        if not session.played and session.grant is not None and not start:
            start = session.grant.start or start  # a resume URL (claims 3, 9)
        duration = session.media.duration
        if start is None and session.state == "playing" and not session.at_end:
            # PLAY without a Range while playing changes nothing (RFC 2326 §10.5).
            now_at = rtsp.format_range(session.position.frames_sent(), duration)
            return {**self._header(session), "Range": now_at}, b"", None
        resume = start is None and session.state == "paused"
        begin = session.paused_at
        if not resume:
            start = start or 0.0
            if not 0 <= start <= duration:
                raise rtsp.RtspProtocolError(457, "Invalid Range")
            begin = session.media.keyframe_at_or_before(start)
            session.position.play(begin)
        rtp_info = []
        for setup in sorted(session.tracks.values(), key=lambda s: s.track.index):
            ticks = round(begin * setup.track.clock_rate)
            if not resume:
                # RTP time goes on from the last PLAY; RTP-Info maps it to the new position.
                setup.tick_offset = setup.next_ticks - ticks
            rtptime = setup.stream.rtp_timestamp(ticks + setup.tick_offset)
            rtp_info.append((setup.url, setup.stream.next_sequence, rtptime))
            setup.last_sr = 0.0
        session.state, session.played, session.at_end = "playing", True, False
        session.monitor.timeout = self.config.heartbeat_timeout
        extra = {**self._header(session), "Range": rtsp.format_range(begin, duration),
                 "RTP-Info": rtsp.format_rtp_info(rtp_info)}
        return extra, b"", Action("play", session, None if resume else begin, start or 0.0)

    def _do_pause(self, request: rtsp.Request) -> Result:
        session = self._session(request, setup_first=True)
        if session.state == "ready":
            raise rtsp.RtspProtocolError(455, "Method Not Valid in This State")
        action = Action("pause", session) if session.state == "playing" else None
        if action:
            session.state, session.paused_at = "paused", session.position.frames_sent()
            session.monitor.timeout = session.timeout  # ffplay paused answers nothing
        return self._header(session), b"", action

    def _do_teardown(self, request: rtsp.Request) -> Result:
        return {}, b"", Action("end", self._session(request))
