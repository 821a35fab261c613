"""The terminal's player: RTSP control, RTP reception and PyAV decoding.

The mobile terminal of CN101662474A as far as playing goes. :meth:`Player.start` runs the
RFC 2326 handshake as blocking calls (OPTIONS, DESCRIBE, SETUP per track, PLAY), then one
reader thread takes the connection: media (TCP interleaved, or the UDP sockets), answers
to our requests, the server's heartbeat requests (claims 2 and 8, answered as FFmpeg
does), keep-alives and RTCP receiver reports. Exact resume: asked to start at ``t``, the
server starts at the keyframe before; the player decodes from there but shows nothing
before the frame nearest ``t`` (the earlier of two when ``t`` lies between them).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.receiver import DecodedAudio, DecodedVideo, TrackReceiver, match_rtp_info
from rtsp_resume.rtp import RtpError, RtpPacket
from rtsp_resume.sample import read_frame_index

log = logging.getLogger(__name__)

USER_AGENT = "rtsp-resume-player/0.1"
DEFAULT_SESSION_TIMEOUT = 60.0  # RFC 2326 §12.37, when the Session header names none
FALLBACK_FPS = 25.0  # for "half a frame" when the stream does not tell its frame rate


class PlayerError(RuntimeError):
    """A refused request, no answer, or a player that has ended; ``status`` is the RTSP
    status when the server refused."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ShownFrame:
    """A picture handed to the screen: ``index`` drawn into the sample clip (None for other
    media), ``pts`` in npt seconds, ``wallclock`` the :func:`time.time` it was shown. Only
    the latest frame of :attr:`Player.frames` keeps its ``image``."""

    index: int | None
    pts: float
    wallclock: float
    image: av.VideoFrame | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        number = f"frame {self.index}" if self.index is not None else "a frame"
        return f"{number} (npt {self.pts:.2f} s)"

    def to_png(self) -> bytes:
        """The picture as PNG bytes (for ``ipywidgets.Image``)."""
        return encode_png(self._need_image())

    def to_jpeg(self) -> bytes:
        return encode_jpeg(self._need_image())

    def _need_image(self) -> av.VideoFrame:
        if self.image is None:
            raise ValueError("this frame's picture was released; only the latest is kept")
        return self.image


def _encode_still(frame: av.VideoFrame, codec: str, pix_fmt: str) -> bytes:
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, pix_fmt
    encoder.time_base = Fraction(1, 25)
    picture = frame.reformat(format=pix_fmt)
    picture.pts = 0
    return b"".join(bytes(p) for p in encoder.encode(picture) + encoder.encode(None))


def encode_png(frame: av.VideoFrame) -> bytes:
    """PNG bytes of a decoded picture (PyAV's encoder: no Pillow needed)."""
    return _encode_still(frame, "png", "rgb24")


def encode_jpeg(frame: av.VideoFrame) -> bytes:
    """JPEG bytes of a decoded picture (PyAV's mjpeg encoder, full-range YUV)."""
    return _encode_still(frame, "mjpeg", "yuvj420p")


@dataclass
class PlayerCounters:
    """A snapshot of what the player has done so far (see :meth:`Player.counters`)."""

    packets_received: int = 0
    packets_lost: int = 0
    malformed_packets: int = 0
    frames_decoded: int = 0
    frames_shown: int = 0
    frames_hidden: int = 0  # decoded but before the requested start (exact resume)
    decode_errors: int = 0
    audio_frames: int = 0
    audio_samples: int = 0
    heartbeats_answered: int = 0
    keepalives_sent: int = 0
    receiver_reports_sent: int = 0
    sender_reports_received: int = 0


def answer_server_request(request: rtsp.Request) -> rtsp.Response:
    """The reply to a request the server sends us (its heartbeat), as FFmpeg gives it:
    200 to OPTIONS and GET_PARAMETER, 501 to anything else, echoing CSeq and Session (the
    server matches its heartbeat by them)."""
    headers = rtsp.Headers({"User-Agent": USER_AGENT})
    for name in ("CSeq", "Session"):
        if request.headers.get(name) is not None:
            headers[name] = request.headers[name]
    status = 200 if request.method in ("OPTIONS", "GET_PARAMETER") else 501
    return rtsp.Response(status, "", headers)


@contextlib.contextmanager
def _reading(method: str) -> Iterator[None]:
    """An answer that makes no sense ends the handshake with a clear error."""
    try:
        yield
    except ValueError as exc:  # includes RtspProtocolError and SdpError
        raise PlayerError(f"bad {method} answer: {exc}") from exc


@dataclass
class _Slot:
    """One of our requests awaiting its answer; ``on_answer`` runs on the reading thread."""

    method: str
    on_answer: Callable[[rtsp.Response], None] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    response: rtsp.Response | None = None
    error: str | None = None


class Player:
    """An RTSP/RTP player of ``url`` (a portal play or resume URL with its ``?token=``).

    ``transport``: ``"tcp"`` (interleaved) or ``"udp"``. ``on_frame(ShownFrame)`` and
    ``on_event(name, data)`` run on the reading thread; their exceptions are logged. With
    ``start`` the PLAY asks ``Range: npt=start-``; ``exact`` hides what precedes it.
    ``rr_interval``: seconds between RTCP receiver reports. Events: connected, described,
    setup, playing, paused, resumed, seeked, heartbeat (method, cseq, session, status,
    time), keepalive, receiver_report, error (message), closed (reason).
    """

    def __init__(self, url: str, transport: str = "tcp",
                 on_frame: Callable[[ShownFrame], None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 start: float | None = None, exact: bool = True, rr_interval: float = 1.0, *,
                 request_timeout: float = 5.0, teardown_timeout: float = 1.0,
                 max_frames: int = 10_000) -> None:
        parts = urlsplit(url)
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        if parts.scheme.lower() != "rtsp" or not parts.hostname:
            raise ValueError(f"expected an rtsp://host[:port]/... URL, got {url!r}")
        if start is not None and not start >= 0:
            raise ValueError(f"start must be >= 0 seconds, got {start!r}")
        if not rr_interval > 0:
            raise ValueError(f"rr_interval must be > 0, got {rr_interval!r}")
        self.url, self.transport, self.on_frame, self.on_event = url, transport, on_frame, on_event
        self.start_at, self.exact, self.rr_interval = start, exact, rr_interval
        self.request_timeout, self.teardown_timeout = request_timeout, teardown_timeout
        self.host, self.port = parts.hostname, parts.port or 554
        self.session_id: str | None = None
        self.session_timeout: float | None = None
        self.range_start: float | None = None  # where the server really started
        self.error: str | None = None
        self.state = "new"  # new, starting, playing, paused, stopped, failed
        self.tracks: list[TrackReceiver] = []
        self.aggregate_url = url
        self.sdp: sdp.SessionDescription | None = None
        self.first_frame_at: float | None = None  # time.monotonic() of the first shown frame
        self._frames: deque[ShownFrame] = deque(maxlen=max_frames)
        self._counters = PlayerCounters()
        self._cond = threading.Condition()  # frames, counters, state; wakes wait_for
        self._wire = threading.RLock()  # one writer at a time; guards the CSeq slots
        self._slots: dict[int, _Slot] = {}
        self._cseq = 0
        self._parser = rtsp.RtspParser()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._closing = False  # stop() began: the connection's end is no error now
        self._close_reason = "stopped"
        self._ended = False
        self._show_from: float | None = None
        self._held: list[tuple[TrackReceiver, RtpPacket, float]] = []
        self._public: set[str] = set()
        self._ssrc = secrets.randbits(32)

    # -- public API ---------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> Player:
        """Connect and play; return once PLAY is answered. Raises :class:`PlayerError` (and
        sets :attr:`error`) when a step fails or all take over ``timeout`` (4 requests')."""
        if self.state != "new":
            raise RuntimeError("a Player can be started only once")
        self.state = "starting"
        deadline = time.monotonic() + (timeout or 4 * self.request_timeout)
        try:
            self._handshake(deadline)
        except Exception as exc:
            self._fail(str(exc) if isinstance(exc, PlayerError) else f"internal error: {exc!r}")
            self._end()
            raise exc if isinstance(exc, PlayerError) else PlayerError(str(self.error)) from exc
        assert self._sock is not None
        self._sock.settimeout(2.0)  # bounds writes: a link that stopped cannot block for ever
        self._reader = threading.Thread(target=self._read_loop, name="rtsp-player", daemon=True)
        self._reader.start()
        return self

    def pause(self) -> None:
        """PAUSE (RFC 2326 §10.6); returns once the server has answered."""
        self._may("pause")
        self._ok(self._request("PAUSE", self.aggregate_url, {"Session": self.session_id or ""},
                               on_answer=self._paused), "pause")

    def resume(self) -> None:
        """PLAY without Range: carry on from where PAUSE stopped."""
        self._may("resume")
        self._ok(self._play(None, "resumed"), "resume")

    def seek(self, t: float) -> float:
        """PLAY with ``Range: npt=t-``; returns where the server starts (the keyframe at or
        before ``t``). With ``exact``, nothing before ``t`` is shown."""
        if not t >= 0:
            raise ValueError(f"cannot seek to {t!r}")
        self._may("seek")
        self._ok(self._play(float(t), "seeked"), "seek")
        return float(self.range_start or 0.0)

    def stop(self) -> None:
        """TEARDOWN (RFC 2326 §10.7), then close; idempotent, and back within about
        ``teardown_timeout`` even when the link has gone silent."""
        self._finish(teardown=True)

    def close_abruptly(self) -> None:
        """Close the connection without TEARDOWN (as a crashing player would)."""
        self._finish(teardown=False)

    def __enter__(self) -> Player:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.state != "new" and not self._ended

    @property
    def last_frame(self) -> ShownFrame | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    @property
    def frames(self) -> list[ShownFrame]:
        """A copy of the frames shown, oldest first (the newest ``max_frames`` of them)."""
        with self._cond:
            return list(self._frames)

    def counters(self) -> PlayerCounters:
        with self._cond:
            snapshot = replace(self._counters)
        snapshot.packets_lost = sum(t.lost for t in self.tracks)
        snapshot.malformed_packets += sum(t.malformed for t in self.tracks)
        snapshot.decode_errors = sum(t.decode_errors for t in self.tracks)
        return snapshot

    @property
    def frames_shown(self) -> int:
        return self._counters.frames_shown

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait at most ``timeout`` s until ``predicate()`` is true (checked at each frame,
        heartbeat and change of state, and once the player ends); return its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()) and not self._ended:
                if not self._cond.wait(deadline - time.monotonic()):
                    return predicate()
            return result

    def wait_frames(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` frames in all have been shown since start."""
        return bool(self.wait_for(lambda: self._counters.frames_shown >= n, timeout))

    # -- the handshake (RFC 2326 §10), on the caller's thread ----------------------------

    def _handshake(self, deadline: float) -> None:
        try:
            self._sock = socket.create_connection((self.host, self.port), self.request_timeout)
        except OSError as exc:
            raise PlayerError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._emit("connected", {"peer": self._sock.getpeername()[:2]})
        # OPTIONS only tells which keep-alive the server prefers: a refusal is no failure.
        options = self._request("OPTIONS", self.url, {}, deadline)
        with contextlib.suppress(ValueError):
            if options.status < 300:
                self._public = rtsp.parse_public(options.headers.get("Public") or "")
        answer = self._ok(self._request("DESCRIBE", self.url, {"Accept": "application/sdp"},
                                        deadline), "DESCRIBE refused")
        with _reading("DESCRIBE"):
            kind = (answer.headers.get("Content-Type") or "application/sdp").split(";")[0]
            if kind.strip().lower() != "application/sdp":
                raise ValueError(f"DESCRIBE answered with {kind!r}, not application/sdp")
            self.sdp = sdp.parse(answer.body.decode("utf-8"))
            base = (answer.headers.get("Content-Base") or answer.headers.get("Content-Location")
                    or self.url)
            self.aggregate_url = sdp.resolve_control(base, self.sdp.control)
            for media in self.sdp.media:
                try:
                    url = sdp.resolve_control(base, media.control)
                    self.tracks.append(TrackReceiver(media, url))
                except sdp.SdpError as exc:
                    log.info("track skipped: %s", exc)
            if not self.tracks:
                raise ValueError("no H.264 or AAC track in the session description")
        self._emit("described", {"tracks": [(t.kind, t.codec, t.url) for t in self.tracks]})
        for index, track in enumerate(self.tracks):
            self._setup(index, track, deadline)
        self._ok(self._play(self.start_at, "playing", deadline), "PLAY refused")

    def _setup(self, index: int, track: TrackReceiver, deadline: float) -> None:
        """SETUP one track (§10.4): interleaved channels, or a UDP port pair (§12.39)."""
        assert self._sock is not None
        if self.transport == "tcp":
            transport = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
        else:
            track.rtp_socket, track.rtcp_socket = bind_udp_pair(self._sock.getsockname()[0],
                                                                receive_buffer=1 << 21)
            port = track.rtp_socket.getsockname()[1]
            transport = f"RTP/AVP;unicast;client_port={port}-{port + 1}"
        headers = {"Transport": transport}
        if self.session_id is not None:
            headers["Session"] = self.session_id
        answer = self._ok(self._request("SETUP", track.url, headers, deadline), "SETUP refused")
        with _reading("SETUP"):
            session, value = answer.headers.get("Session"), answer.headers.get("Transport")
            if session is None or value is None:
                raise ValueError("SETUP answer without a Session or Transport header")
            session_id, timeout = rtsp.parse_session(session)
            if self.session_id not in (None, session_id):
                raise ValueError(f"SETUP answered another session ({session_id})")
            self.session_id = session_id
            self.session_timeout = float(timeout) if timeout else self.session_timeout
            reply = rtsp.parse_transport(value)[0]
            track.ssrc = reply.ssrc
            if reply.is_tcp != (self.transport == "tcp") or (
                    reply.interleaved if reply.is_tcp else reply.server_port) is None:
                raise ValueError(f"asked for {self.transport}, the server answered {value!r}")
            if reply.interleaved is not None and reply.is_tcp:
                track.channel = reply.interleaved[0]
            elif reply.server_port is not None:
                track.server_rtcp = (reply.source or self._sock.getpeername()[0],
                                     reply.server_port[1])
        self._emit("setup", {"track": track.url, "transport": value, "session": session_id})

    # -- requests -----------------------------------------------------------------------

    def _request(self, method: str, uri: str, headers: dict[str, str],
                 deadline: float | None = None,
                 on_answer: Callable[[rtsp.Response], None] | None = None,
                 timeout: float | None = None) -> rtsp.Response:
        """Send a request and wait for the answer with its CSeq (§12.17): read by the caller
        itself during the handshake, by the reader thread after it."""
        limit = time.monotonic() + (timeout or self.request_timeout)
        limit = min(limit, deadline) if deadline is not None else limit
        cseq, slot = self._send(method, uri, headers, on_answer)
        if self._reader is None:
            self._read_until(slot.done, limit)
        else:
            slot.done.wait(max(0.0, limit - time.monotonic()))
        with self._wire:
            self._slots.pop(cseq, None)
        if slot.error is not None:
            raise PlayerError(slot.error)
        if slot.response is None:
            raise PlayerError(f"{method}: no answer within {timeout or self.request_timeout:.1f} s")
        return slot.response

    def _send(self, method: str, uri: str, headers: dict[str, str],
              on_answer: Callable[[rtsp.Response], None] | None = None) -> tuple[int, _Slot]:
        with self._wire:
            self._cseq += 1
            slot = self._slots[self._cseq] = _Slot(method, on_answer)
            out = rtsp.Headers({**headers, "CSeq": str(self._cseq), "User-Agent": USER_AGENT})
            self._write(bytes(rtsp.Request(method, uri, out)))
            return self._cseq, slot

    def _write(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            with self._wire:
                self._sock.sendall(data)
        except OSError as exc:  # includes the send timeout of a link that stopped
            raise PlayerError(f"cannot write to the server: {exc}") from exc

    @staticmethod
    def _ok(answer: rtsp.Response, what: str) -> rtsp.Response:
        if not 200 <= answer.status < 300:
            raise PlayerError(f"{what}: {answer.status} {answer.reason}", answer.status)
        return answer

    def _may(self, name: str) -> None:
        if not self.running or self.state == "starting" or self._closing:
            state = "stopping" if self._closing and self.running else self.state
            raise PlayerError(f"cannot {name}: the player is {state}"
                              + (f" ({self.error})" if self.error else ""))

    def _play(self, start: float | None, event: str, deadline: float | None = None
              ) -> rtsp.Response:
        """PLAY (§10.5); a start or seek repositions, a resume carries on."""
        headers = {"Session": self.session_id or ""}
        if start is not None:
            headers["Range"] = rtsp.format_range(start)
        for track in self.tracks:
            track.play_sent(repositions=event != "resumed")
        return self._request("PLAY", self.aggregate_url, headers, deadline,
                             lambda answer: self._played(answer, start, event))

    def _played(self, answer: rtsp.Response, requested: float | None, event: str) -> None:
        """Apply a PLAY answer's Range and RTP-Info (§12.29, §12.33) to every track."""
        if not 200 <= answer.status < 300:
            return
        value = answer.headers.get("Range")
        begin = rtsp.parse_range(value)[0] if value else None
        if begin is None:
            begin = requested if requested is not None else (self.range_start or 0.0)
        value = answer.headers.get("RTP-Info")
        infos = rtsp.parse_rtp_info(value) if value else []
        if event != "resumed":
            self.range_start = begin
            self._show_from = requested if self.exact and requested is not None else None
        for track in self.tracks:
            held = track.play_answered(begin, match_rtp_info(track.url, infos), event != "resumed")
            self._held += [(track, packet, arrival) for packet, arrival in held]
        with self._cond:
            self.state = "playing"
            self._cond.notify_all()
        extra = {"session": self.session_id} if event == "playing" else {}
        self._emit(event, {"range_start": self.range_start, **extra})

    def _paused(self, answer: rtsp.Response) -> None:
        if 200 <= answer.status < 300:
            with self._cond:
                self.state = "paused"
                self._cond.notify_all()
            self._emit("paused", {})

    # -- reading ------------------------------------------------------------------------

    def _read_until(self, done: threading.Event, limit: float) -> None:
        assert self._sock is not None
        while not done.is_set() and (remaining := limit - time.monotonic()) > 0:
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                return
            except OSError as exc:
                raise PlayerError(f"control connection failed: {exc}") from exc
            self._received(data)

    def _received(self, data: bytes) -> None:
        if not data:
            raise PlayerError("the server closed the control connection")
        now = time.monotonic()
        for event in self._parser.feed(data):
            if isinstance(event, rtsp.BadInput):
                raise PlayerError(f"malformed message from the server: {event.status} "
                                  f"{event.reason}")
            if isinstance(event, rtsp.InterleavedFrame):
                for track in self.tracks:
                    if track.channel == event.channel:
                        self._rtp(track, event.data, now)
                    elif track.channel is not None and track.channel + 1 == event.channel:
                        self._rtcp(track, event.data, now)
            elif isinstance(event, rtsp.Request):
                reply = answer_server_request(event)
                self._write(bytes(reply))
                with self._cond:
                    self._counters.heartbeats_answered += 1
                    self._cond.notify_all()
                self._emit("heartbeat", {"method": event.method, "cseq": event.cseq,
                                         "session": event.headers.get("Session"),
                                         "status": reply.status, "time": time.time()})
            else:
                self._answered(event)

    def _answered(self, answer: rtsp.Response) -> None:
        with self._wire:
            slot = self._slots.pop(answer.cseq, None) if answer.cseq is not None else None
        if slot is None:
            log.debug("answer with unknown CSeq %s ignored", answer.cseq)
            return
        try:
            if slot.on_answer is not None:
                slot.on_answer(answer)
        except ValueError as exc:
            slot.error = f"bad {slot.method} answer: {exc}"
            raise PlayerError(slot.error) from exc
        except PlayerError as exc:
            slot.error = str(exc)
            raise
        finally:
            slot.response = answer
            slot.done.set()
        # Packets that came while the PLAY answer was awaited, shown once the caller is free.
        held, self._held = self._held, []
        for track, packet, arrival in held:
            self._deliver(track, track.receive(packet, arrival))

    def _read_loop(self) -> None:
        """The reader thread: media, answers and heartbeats, and two timers: keep-alive at
        half the session timeout (§12.37) and an RTCP receiver report every
        ``rr_interval`` (RFC 3550 §6.2)."""
        assert self._sock is not None
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ)
        for track in self.tracks:
            for sock, rtcp in ((track.rtp_socket, False), (track.rtcp_socket, True)):
                if sock is not None:
                    selector.register(sock, selectors.EVENT_READ, (track, sock, rtcp))
        keepalive_every = (self.session_timeout or DEFAULT_SESSION_TIMEOUT) / 2
        next_rr = time.monotonic() + self.rr_interval
        next_keepalive = time.monotonic() + keepalive_every
        try:
            while True:
                ready = selector.select(max(0.0, min(next_rr, next_keepalive) - time.monotonic()))
                # UDP first: datagrams already waiting were sent before any RTSP answer read
                # now, so a PAUSE answer is never handled before the media it ended.
                for key, _ in sorted(ready, key=lambda item: item[0].data is None):
                    if key.data is not None:
                        self._read_udp(*key.data)
                    elif not self._read_control():
                        return
                now = time.monotonic()
                if now >= next_rr:
                    next_rr = now + self.rr_interval
                    self._send_receiver_reports(now)
                if now >= next_keepalive:
                    next_keepalive = now + keepalive_every
                    self._keepalive()
        except PlayerError as exc:
            if not self._closing:
                self._fail(str(exc))
        except Exception as exc:  # a bug must end the player cleanly, never silently
            log.exception("player failed")
            self._fail(f"internal error: {exc!r}")
        finally:
            selector.close()
            self._end()

    def _read_control(self) -> bool:
        """Read the RTSP connection; False once it has ended after stop()."""
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return True
        except OSError as exc:
            if self._closing:
                return False
            raise PlayerError(f"control connection failed: {exc}") from exc
        if not data and self._closing:
            return False
        self._received(data)
        return True

    def _read_udp(self, track: TrackReceiver, sock: socket.socket, rtcp: bool) -> None:
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:  # drained, or an ICMP error reported on a later read
                return
            (self._rtcp if rtcp else self._rtp)(track, data, time.monotonic())

    def _keepalive(self) -> None:
        """GET_PARAMETER, or OPTIONS when the server's Public list lacks it (as FFmpeg)."""
        method = "GET_PARAMETER" if not self._public or "GET_PARAMETER" in self._public \
            else "OPTIONS"
        self._send(method, self.aggregate_url, {"Session": self.session_id or ""},
                   self._kept_alive)
        with self._cond:
            self._counters.keepalives_sent += 1
        self._emit("keepalive", {"method": method})

    @staticmethod
    def _kept_alive(answer: rtsp.Response) -> None:
        if answer.status == 454:
            raise PlayerError("the server no longer knows the session (454)", 454)

    # -- media --------------------------------------------------------------------------

    def _rtp(self, track: TrackReceiver, data: bytes, now: float) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            with self._cond:
                self._counters.malformed_packets += 1
            return
        with self._cond:
            self._counters.packets_received += 1
        self._deliver(track, track.receive(packet, now))

    def _rtcp(self, track: TrackReceiver, data: bytes, now: float) -> None:
        reports = track.rtcp_received(data, now)
        with self._cond:
            self._counters.sender_reports_received += reports

    def _deliver(self, track: TrackReceiver, decoded: list[DecodedVideo | DecodedAudio]) -> None:
        for item in decoded:
            if isinstance(item, DecodedAudio):
                with self._cond:
                    self._counters.audio_frames += 1
                    self._counters.audio_samples += item.samples
                continue
            with self._cond:
                self._counters.frames_decoded += 1
            # Exact resume: the frame nearest the requested start comes first, the earlier
            # of two at a tie (a resume is never late); the microsecond absorbs float noise
            # such as 4.54 - 0.02 = 4.5200000000000005.
            half_frame = 0.5 / (track.fps or FALLBACK_FPS)
            if self._show_from is not None and item.pts < self._show_from - half_frame - 1e-6:
                with self._cond:
                    self._counters.frames_hidden += 1
                continue
            shown = ShownFrame(read_frame_index(item.frame), item.pts, time.time(), item.frame)
            with self._cond:
                if self._frames:  # only the newest picture stays in memory
                    self._frames[-1] = replace(self._frames[-1], image=None)
                self._frames.append(shown)
                self._counters.frames_shown += 1
                self.first_frame_at = self.first_frame_at or time.monotonic()
                self._cond.notify_all()
            self._callback(self.on_frame, shown)

    def _send_receiver_reports(self, now: float) -> None:
        sent = 0
        for track in self.tracks:
            report = track.receiver_report(self._ssrc, f"{USER_AGENT}-{self._ssrc:08x}", now)
            if report is not None and track.channel is not None:
                self._write(bytes(rtsp.InterleavedFrame(track.channel + 1, report)))
            elif report is not None and track.rtcp_socket and track.server_rtcp:
                with contextlib.suppress(OSError):
                    track.rtcp_socket.sendto(report, track.server_rtcp)
            else:
                continue
            sent += 1
        if sent:
            with self._cond:
                self._counters.receiver_reports_sent += sent
                self._cond.notify_all()
            self._emit("receiver_report", {"reports": sent})

    # -- ending -------------------------------------------------------------------------

    def _finish(self, teardown: bool) -> None:
        with self._cond:
            first, self._closing = not self._closing, True
        reader = self._reader
        if first and reader is not None and reader.is_alive():
            self._close_reason = "stopped" if teardown else "closed without TEARDOWN"
            if teardown and self.session_id is not None:
                try:
                    self._request("TEARDOWN", self.aggregate_url, {"Session": self.session_id},
                                  timeout=self.teardown_timeout)
                except PlayerError:
                    self._close_reason = "stopped (TEARDOWN unanswered)"
            with contextlib.suppress(OSError):
                assert self._sock is not None
                self._sock.shutdown(socket.SHUT_RDWR)  # the reader sees the end and leaves
        if reader is not None and reader is not threading.current_thread():
            reader.join(self.teardown_timeout + 2.0)

    def _fail(self, message: str) -> None:
        with self._cond:
            self.error, self.state = message, "failed"
            self._cond.notify_all()
        log.info("player: %s", message)
        self._emit("error", {"message": message})

    def _end(self) -> None:
        """Close every socket, fail every request still waiting, then say "closed"."""
        for sock in [self._sock, *(s for t in self.tracks for s in (t.rtp_socket, t.rtcp_socket))]:
            if sock is not None:
                sock.close()
        with self._wire:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.error = self.error or "the player stopped"
            slot.done.set()
        with self._cond:
            self.state = "failed" if self.error else "stopped"
        self._emit("closed", {"reason": self.error or self._close_reason})
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        self._callback(self.on_event, name, data)

    @staticmethod
    def _callback(function: Callable[..., None] | None, *args: Any) -> None:
        if function is not None:
            try:
                function(*args)
            except Exception:
                log.exception("player callback %r failed", function)
