"""The terminal's player: RTSP control, RTP reception and PyAV decoding.

CN101662474A's mobile terminal, as far as playing goes. :meth:`Player.start` runs the RFC
2326 handshake (OPTIONS, DESCRIBE, SETUP per track, PLAY) as blocking requests; one reader
thread takes the answers, the media (TCP interleaved or UDP) and the server's heartbeat
requests (claims 2, 8), and sends keep-alives and RTCP receiver reports. Exact resume:
asked to start at ``t``, the server starts at the keyframe before; the player decodes
from there but first shows the frame nearest ``t`` (the earlier one at a tie)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import secrets
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.receiver import Decoded, TrackReceiver, match_rtp_info
from rtsp_resume.rtp import RtpError, RtpPacket
from rtsp_resume.sample import read_frame_index

log = logging.getLogger(__name__)
USER_AGENT = "rtsp-resume-player/0.1"
DEFAULT_SESSION_TIMEOUT = 60.0  # RFC 2326 §12.37, when the Session header names none
FALLBACK_FPS = 25.0  # for "half a frame" when the stream does not tell its frame rate
OnAnswer = Callable[[rtsp.Response], None]  # applies a 2xx answer, on the reader thread


class PlayerError(RuntimeError):
    """A refused request (``status``: the RTSP status), no answer, or a player that ended."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ShownFrame:
    """A picture shown: ``index`` drawn into the sample (None elsewhere), ``pts`` in npt
    seconds, ``wallclock`` when shown; only the newest of :attr:`Player.frames` keeps its
    decoded ``image``."""

    index: int | None
    pts: float
    wallclock: float
    image: av.VideoFrame | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        number = f"frame {self.index}" if self.index is not None else "a frame"
        return f"{number} (npt {self.pts:.2f} s)"


@dataclass
class PlayerCounters:
    """A snapshot of what the player has done so far (see :meth:`Player.counters`)."""

    packets_lost: int = 0
    frames_shown: int = 0
    frames_hidden: int = 0  # decoded but before the requested start (exact resume)
    audio_frames: int = 0
    audio_samples: int = 0
    heartbeats_answered: int = 0
    receiver_reports_sent: int = 0


class Player:
    """An RTSP/RTP player of ``url`` (a portal play or resume URL with its ``?token=``).
    ``transport``: ``"tcp"`` (interleaved) or ``"udp"``. ``on_frame(ShownFrame)`` and
    ``on_event(name, data)`` run on the reader thread; their exceptions are logged.
    ``start``: PLAY with ``Range: npt=start-``, and with ``exact`` nothing earlier shown.
    Events: connected, described, setup, playing, heartbeat, error, closed."""

    def __init__(self, url: str, transport: str = "tcp",
                 on_frame: Callable[[ShownFrame], None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 start: float | None = None, exact: bool = True, rr_interval: float = 1.0, *,
                 request_timeout: float = 5.0, teardown_timeout: float = 1.0,
                 max_frames: int = 10_000) -> None:
        parts = urlsplit(url)
        if transport not in ("tcp", "udp") or parts.scheme.lower() != "rtsp" or not parts.hostname:
            raise ValueError(f"need an rtsp://host[:port]/... URL and tcp or udp: {url!r}, "
                             f"{transport!r}")
        if (start is not None and not start >= 0) or not rr_interval > 0:
            raise ValueError(f"need start >= 0 and rr_interval > 0: {start!r}, {rr_interval!r}")
        self.url, self.transport, self.on_frame, self.on_event = url, transport, on_frame, on_event
        self.start_at, self.exact, self.rr_interval = start, exact, rr_interval
        self.request_timeout, self.teardown_timeout = request_timeout, teardown_timeout
        self.address = (parts.hostname, parts.port or 554)
        self.state = "new"  # new, starting, playing, paused, stopped, failed
        self.error: str | None = None
        self.session_id: str | None = None
        self.session_timeout = DEFAULT_SESSION_TIMEOUT
        self.range_start: float | None = None  # where the server really started
        self.tracks: list[TrackReceiver] = []
        self.aggregate_url = url
        self._frames: deque[ShownFrame] = deque(maxlen=max_frames)
        self._counters = PlayerCounters()  # changed by the reader thread only
        self._cond = threading.Condition()  # guards the frames; wakes wait_for
        self._wire = threading.RLock()  # one writer at a time; guards the waiting requests
        self._waiting: dict[int, tuple[str, OnAnswer | None, Future[rtsp.Response]]] = {}
        self._cseqs = itertools.count(1)
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._closing = self._ended = False  # once closing, the link's end is no error
        self._show_from: float | None = None
        self._keepalive = "GET_PARAMETER"
        self._next_rr = self._next_keepalive = math.inf
        self._ssrc = secrets.randbits(32)

    def start(self) -> Player:
        """Connect and play; return once PLAY is answered, else raise :class:`PlayerError`."""
        if self.state != "new":
            raise RuntimeError("a Player can be started only once")
        self._set_state("starting")
        try:
            self._sock = socket.create_connection(self.address, self.request_timeout)
        except OSError as exc:
            self.error = f"cannot connect to {self.address[0]}:{self.address[1]}: {exc}"
            self._end()
            raise PlayerError(self.error) from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = threading.Thread(target=self._read, name="rtsp-player", daemon=True)
        self._reader.start()
        try:
            self._handshake()
        except Exception as exc:  # a bug (or no UDP port) must not leave the reader behind
            known = isinstance(exc, PlayerError)
            self.error = self.error or (str(exc) if known else f"internal error: {exc!r}")
            self.close_abruptly()
            raise PlayerError(self.error, exc.status if known else None) from exc
        return self

    def pause(self) -> None:
        """PAUSE (RFC 2326 §10.6); returns once the server has answered."""
        self._request("PAUSE", self.aggregate_url, on_answer=lambda _: self._set_state("paused"))

    def resume(self) -> None:
        """PLAY without Range: carry on from where PAUSE stopped."""
        self._play(None)

    def seek(self, t: float) -> float:
        """PLAY from ``t``; returns where the server starts (the keyframe at or before)."""
        self._play(float(t))
        return float(self.range_start or 0.0)

    def stop(self, teardown: bool = True) -> None:
        """TEARDOWN (§10.7) if ``teardown``, and close; idempotent, quick (``teardown_timeout``)."""
        with self._cond:
            first, self._closing = not self._closing, True
        if first and teardown and self.state in ("playing", "paused"):
            with contextlib.suppress(PlayerError):  # closed all the same
                self._request("TEARDOWN", self.aggregate_url, timeout=self.teardown_timeout)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # the reader reads the end and leaves
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(self.teardown_timeout + 2.0)

    def close_abruptly(self) -> None:
        """Close the connection without TEARDOWN (as a crashing player would)."""
        self.stop(teardown=False)

    @property
    def running(self) -> bool:
        return self.state != "new" and not self._ended

    @property
    def last_frame(self) -> ShownFrame | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    @property
    def frames(self) -> list[ShownFrame]:
        """A copy of the newest ``max_frames`` frames shown, oldest first."""
        with self._cond:
            return list(self._frames)

    @property
    def frames_shown(self) -> int:
        return self._counters.frames_shown

    def counters(self) -> PlayerCounters:
        with self._cond:
            return replace(self._counters, packets_lost=sum(t.lost for t in self.tracks))

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait at most ``timeout`` s for ``predicate()``, checked whenever the player moves
        on (a frame, heartbeat, report, change of state, its end); return its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate()) and not self._ended:
                if not self._cond.wait(deadline - time.monotonic()):
                    return predicate()
            return result

    def wait_frames(self, n: int, timeout: float) -> bool:
        return bool(self.wait_for(lambda: self._counters.frames_shown >= n, timeout))

    def _handshake(self) -> None:
        assert self._sock is not None
        self._emit("connected", {"peer": self._sock.getpeername()[:2]})
        public = self._request("OPTIONS", self.url).headers.get("Public")
        with contextlib.suppress(ValueError):  # only a hint: which keep-alive it prefers
            if public and "GET_PARAMETER" not in rtsp.parse_public(public):
                self._keepalive = "OPTIONS"
        self._request("DESCRIBE", self.url, {"Accept": "application/sdp"}, self._described)
        for index, track in enumerate(self.tracks):
            if self.transport == "tcp":
                transport = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
            else:
                track.rtp_socket, track.rtcp_socket = bind_udp_pair(
                    self._sock.getsockname()[0], receive_buffer=1 << 21)
                port = track.rtp_socket.getsockname()[1]
                transport = f"RTP/AVP;unicast;client_port={port}-{port + 1}"
            self._request("SETUP", track.url, {"Transport": transport},
                          lambda answer, t=track: self._set_up(t, answer))
        self._play(self.start_at)

    def _described(self, answer: rtsp.Response) -> None:
        description = sdp.parse(answer.body.decode("utf-8"))
        base = (answer.headers.get("Content-Base") or answer.headers.get("Content-Location")
                or self.url)
        self.aggregate_url = sdp.resolve_control(base, description.control)
        for media in description.media:
            try:
                self.tracks.append(TrackReceiver(media, sdp.resolve_control(base, media.control)))
            except sdp.SdpError as exc:
                log.info("track skipped: %s", exc)
        if not self.tracks:
            raise ValueError("no H.264 or AAC track in the session description")
        self._emit("described", {"tracks": [(t.kind, t.codec, t.url) for t in self.tracks]})

    def _set_up(self, track: TrackReceiver, answer: rtsp.Response) -> None:
        """The SETUP answer's Session (§12.37) and Transport (§12.39) for ``track``."""
        session, value = answer.headers.get("Session"), answer.headers.get("Transport")
        if session is None or value is None:
            raise ValueError("SETUP answer without a Session or Transport header")
        self.session_id, timeout = rtsp.parse_session(session)
        self.session_timeout = timeout or self.session_timeout
        reply = rtsp.parse_transport(value)[0]
        track.ssrc = reply.ssrc
        if self.transport == "tcp" and reply.is_tcp and reply.interleaved is not None:
            track.channel = reply.interleaved[0]
        elif self.transport == "udp" and not reply.is_tcp and reply.server_port is not None:
            assert self._sock is not None
            peer = reply.source or self._sock.getpeername()[0]
            track.server_rtcp = (peer, reply.server_port[1])
        else:
            raise ValueError(f"asked for {self.transport}, the server answered {value!r}")
        self._emit("setup", {"track": track.url, "transport": value, "session": self.session_id})

    def _play(self, start: float | None) -> None:
        """PLAY (§10.5) from ``start``; None once playing carries on from the pause point."""
        headers = {"Range": rtsp.format_range(start)} if start is not None else {}
        moves = start is not None or self.state == "starting"  # not a resume
        for track in self.tracks:
            track.play_sent(moves)
        self._request("PLAY", self.aggregate_url, headers,
                      lambda answer: self._played(answer, start, moves))

    def _played(self, answer: rtsp.Response, requested: float | None, moves: bool) -> None:
        """Apply a PLAY answer's Range and RTP-Info (§12.29, §12.33) to every track."""
        value = answer.headers.get("Range")
        begin = rtsp.parse_range(value)[0] if value else None
        if begin is None:
            begin = requested if requested is not None else (self.range_start or 0.0)
        value = answer.headers.get("RTP-Info")
        infos = rtsp.parse_rtp_info(value) if value else []
        if moves:
            self.range_start = begin
            self._show_from = requested if self.exact else None
        for track in self.tracks:  # and what came while the answer was awaited is shown
            for packet, arrival in track.play_answered(begin, match_rtp_info(track.url, infos),
                                                       moves):
                self._show(track, track.receive(packet, arrival))
        if self.state == "starting":  # the timers start: keep-alive at half the session timeout
            self._next_rr = time.monotonic() + self.rr_interval
            self._next_keepalive = time.monotonic() + self.session_timeout / 2
            self._emit("playing", {"range_start": begin, "session": self.session_id})
        self._set_state("playing")

    def _request(self, method: str, uri: str, headers: dict[str, str] | None = None,
                 on_answer: OnAnswer | None = None, timeout: float | None = None
                 ) -> rtsp.Response:
        """Send a request and wait for its 2xx answer, matched by CSeq (§12.17)."""
        timeout = timeout or self.request_timeout
        try:  # an answer that comes too late is still applied when it comes
            answer = self._send(method, uri, headers or {}, on_answer).result(timeout)
        except TimeoutError:
            raise PlayerError(f"{method}: no answer within {timeout:.1f} s") from None
        if not 200 <= answer.status < 300:
            raise PlayerError(f"{method} refused: {answer.status} {answer.reason}", answer.status)
        return answer

    def _send(self, method: str, uri: str, headers: dict[str, str],
              on_answer: OnAnswer | None = None) -> Future[rtsp.Response]:
        """Write a request, in the session once SETUP has named it (§12.37)."""
        with self._wire:
            cseq, answer = next(self._cseqs), Future[rtsp.Response]()
            self._waiting[cseq] = (method, on_answer, answer)
            session = {"Session": self.session_id} if self.session_id else {}
            out = {**headers, **session, "CSeq": str(cseq), "User-Agent": USER_AGENT}
            self._write(bytes(rtsp.Request(method, uri, out)))
            return answer

    def _write(self, data: bytes) -> None:
        if self._sock is None or self.state not in ("starting", "playing", "paused"):
            raise PlayerError(f"the player is {self.state}")
        try:
            with self._wire:
                self._sock.sendall(data)
        except OSError as exc:  # includes the send timeout of a link that stopped
            raise PlayerError(f"cannot write to the server: {exc}") from exc

    def _read(self) -> None:
        """Read until the connection ends: media first, then RTSP, then the timers."""
        parser = rtsp.RtspParser()
        try:
            while True:
                udp = [s for t in self.tracks for s in (t.rtp_socket, t.rtcp_socket) if s]
                wait = min(self._next_rr, self._next_keepalive, time.monotonic() + 3600)
                ready = select.select([*udp, self._sock], [], [],
                                      max(0.0, wait - time.monotonic()))[0]
                # UDP first: datagrams waiting now were sent before any RTSP answer read now,
                # so a PAUSE answer is never handled before the media it ended.
                for track in self.tracks:
                    for sock, rtcp in ((track.rtp_socket, False), (track.rtcp_socket, True)):
                        while sock in ready and (data := _datagram(sock)):
                            self._media(track, data, time.monotonic(), rtcp)
                if self._sock in ready and not self._read_control(parser):
                    return
                self._timers(time.monotonic())
        except (PlayerError, OSError) as exc:
            if not self._closing:
                self.error = str(exc)
        except Exception as exc:  # a bug must end the player cleanly, never silently
            log.exception("player failed")
            self.error = f"internal error: {exc!r}"
        finally:
            self._end()

    def _read_control(self, parser: rtsp.RtspParser) -> bool:
        """One read of the RTSP connection; False when it has ended after stop()."""
        assert self._sock is not None
        data = self._sock.recv(1 << 16)  # an OSError ends the reader
        if not data:
            if self._closing:
                return False
            raise PlayerError("the server closed the control connection")
        now = time.monotonic()
        for event in parser.feed(data):
            if isinstance(event, rtsp.BadInput):
                raise PlayerError(f"malformed message from the server: {event.status} "
                                  f"{event.reason}")
            if isinstance(event, rtsp.InterleavedFrame):
                for track in self.tracks:
                    if track.channel is not None and event.channel - track.channel in (0, 1):
                        self._media(track, event.data, now, event.channel != track.channel)
            elif isinstance(event, rtsp.Request):
                reply = rtsp.answer_server_request(event, USER_AGENT)
                self._write(bytes(reply))
                self._counters.heartbeats_answered += 1
                self._notify()
                self._emit("heartbeat", {"method": event.method, "cseq": event.cseq,
                                         "status": reply.status, "time": time.time()})
            else:
                self._answered(event)
        return True

    def _answered(self, answer: rtsp.Response) -> None:
        with self._wire:  # an unknown CSeq: an answer to nothing we asked
            method, on_answer, waiter = self._waiting.pop(answer.cseq or 0, ("", None, None))
        if waiter is None:
            return
        try:
            if on_answer is not None and 200 <= answer.status < 300:
                on_answer(answer)
        except ValueError as exc:  # includes RtspProtocolError and SdpError
            error = PlayerError(f"bad {method} answer: {exc}")
            waiter.set_exception(error)
            raise error from exc
        waiter.set_result(answer)
        if answer.status == 454 and self.state != "starting":  # a keep-alive's, say
            raise PlayerError("the server no longer knows the session (454)", 454)

    def _timers(self, now: float) -> None:
        """Keep-alive at half the session timeout (§12.37; GET_PARAMETER unless the server's
        Public lacks it, as FFmpeg) and an RTCP receiver report (RFC 3550 §6.4.2)."""
        if now >= self._next_keepalive:
            self._next_keepalive = now + self.session_timeout / 2
            self._send(self._keepalive, self.aggregate_url, {})
        if now < self._next_rr:
            return
        self._next_rr = now + self.rr_interval
        for track in self.tracks:
            report = track.receiver_report(self._ssrc, f"{USER_AGENT}-{self._ssrc:08x}", now)
            if report is None:
                continue
            if track.channel is not None:
                self._write(bytes(rtsp.InterleavedFrame(track.channel + 1, report)))
            elif track.rtcp_socket and track.server_rtcp:
                with contextlib.suppress(OSError):
                    track.rtcp_socket.sendto(report, track.server_rtcp)
            self._counters.receiver_reports_sent += 1
        self._notify()

    def _media(self, track: TrackReceiver, data: bytes, now: float, rtcp: bool) -> None:
        if rtcp:
            track.rtcp_received(data, now)
            return
        with contextlib.suppress(RtpError):  # not an RTP packet: nothing to show
            self._show(track, track.receive(RtpPacket.parse(data), now))

    def _show(self, track: TrackReceiver, decoded: list[Decoded]) -> None:
        for item in decoded:
            if isinstance(item.frame, av.AudioFrame):
                self._counters.audio_frames += 1
                self._counters.audio_samples += item.frame.samples
                continue
            # Exact resume: the frame nearest the requested start first, the earlier at a
            # tie; the microsecond absorbs float noise (4.54 - 0.02 = 4.5200000000000005).
            half = 0.5 / (track.fps or FALLBACK_FPS)
            if self._show_from is not None and item.pts < self._show_from - half - 1e-6:
                self._counters.frames_hidden += 1
                continue
            shown = ShownFrame(read_frame_index(item.frame), item.pts, time.time(), item.frame)
            with self._cond:
                if self._frames:  # only the newest picture stays in memory
                    self._frames[-1] = replace(self._frames[-1], image=None)
                self._frames.append(shown)
                self._counters.frames_shown += 1
                self._cond.notify_all()
            self._call(self.on_frame, shown)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _end(self) -> None:
        """Close every socket, fail what still awaits an answer, say why it ended."""
        for sock in [self._sock, *(s for t in self.tracks for s in (t.rtp_socket, t.rtcp_socket))]:
            if sock is not None:
                sock.close()
        with self._wire:
            waiting, self._waiting = self._waiting, {}
        for _, _, waiter in waiting.values():
            waiter.set_exception(PlayerError(self.error or "the player stopped"))
        if self.error:
            log.info("player: %s", self.error)
            self._emit("error", {"message": self.error})
        self._set_state("failed" if self.error else "stopped")
        self._emit("closed", {"reason": self.error or "stopped"})
        self._ended = True  # after "closed": whoever waits for the end sees it said
        self._notify()

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        self._call(self.on_event, name, data)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: Any) -> None:
        try:
            if callback is not None:
                callback(*args)
        except Exception:
            log.exception("player callback failed")


def _datagram(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:  # none waiting, or an ICMP error surfacing here
        return b""
