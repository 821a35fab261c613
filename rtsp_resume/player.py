"""The terminal's player: RTSP control, RTP reception and PyAV decoding, on its own thread.

This is the mobile terminal of CN101662474A as far as playing goes. It is built on the
project's own protocol code (:mod:`rtsp_resume.rtsp`, :mod:`rtsp_resume.rtp`,
:mod:`rtsp_resume.sdp`) and decodes with PyAV codec contexts, so a test can see exactly
which frame of the sample reached the screen, and when.

Layers, from the wire up:

- :class:`ControlChannel` (sans-I/O): numbers our requests, matches answers by CSeq, and
  answers the requests the server sends us (its heartbeat OPTIONS, claims 2 and 8).
- :class:`rtsp_resume.receiver.TrackReceiver` (no sockets, PyAV for decoding): one SETUP
  track, from RTP packets to decoded frames stamped with the program's play time.
- :class:`Player`: sockets, a selector loop and timers on one thread. Other threads talk
  to it through a command queue and wait on a :class:`threading.Condition`, so it works
  from pytest, from a notebook whose main thread already runs an asyncio loop, and from
  the demo.

Exact resume (issue 5): asked to start at ``t``, the server starts at the keyframe at or
before ``t``; the player decodes from there (a picture needs its keyframe) and hands
nothing earlier than ``t`` to ``on_frame``, so the first frame shown is the one at ``t``:
the frame nearest to ``t``, the earlier of two when ``t`` is exactly between them
(index ``ceil(t * fps - 0.5)``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.receiver import (
    DecodedAudio,
    DecodedVideo,
    TrackReceiver,
    match_rtp_info,
)
from rtsp_resume.rtp import RtpError, RtpPacket
from rtsp_resume.sample import read_frame_index

log = logging.getLogger(__name__)

USER_AGENT = "rtsp-resume-player/0.1"
# RFC 2326 §12.37: a session without an announced timeout times out after 60 s.
DEFAULT_SESSION_TIMEOUT = 60.0
# Shown frames assumed when the stream does not tell its frame rate (for "half a frame").
FALLBACK_FPS = 25.0


class PlayerError(RuntimeError):
    """The player could not do what was asked: a refused request, no answer, or a player
    that has already ended. ``status`` is the RTSP status when the server refused."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------------------
# What the player shows


@dataclass
class ShownFrame:
    """A decoded picture handed to the screen.

    ``index`` is the frame number drawn into the sample clip (None for other media),
    ``pts`` its presentation time in seconds of the program (npt), ``wallclock`` the
    :func:`time.time` at which it was decoded and shown. ``image`` is the decoded
    ``av.VideoFrame``; the player keeps it only for the latest frame of
    :attr:`Player.frames` (older entries hold None), so hours of play do not keep every
    picture alive.
    """

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
        """The picture as JPEG bytes."""
        return encode_jpeg(self._need_image())

    def _need_image(self) -> av.VideoFrame:
        if self.image is None:
            raise ValueError("this frame's picture was released; only the latest is kept")
        return self.image


def _encode_still(frame: av.VideoFrame, codec: str, pix_fmt: str) -> bytes:
    encoder = av.CodecContext.create(codec, "w")
    encoder.width = frame.width
    encoder.height = frame.height
    encoder.pix_fmt = pix_fmt
    encoder.time_base = Fraction(1, 25)
    picture = frame.reformat(format=pix_fmt)
    picture.pts = 0
    packets = encoder.encode(picture) + encoder.encode(None)
    return b"".join(bytes(packet) for packet in packets)


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


# ---------------------------------------------------------------------------------------
# Sans-I/O: the control connection


@dataclass
class Outstanding:
    """One of our requests waiting for its answer. ``tag`` is the caller's own data."""

    method: str
    uri: str
    cseq: int
    sent_at: float
    tag: Any = None


@dataclass
class Answer:
    """The server answered one of our requests."""

    request: Outstanding
    response: rtsp.Response


@dataclass
class ServerRequest:
    """The server sent us a request (its heartbeat); ``reply`` is what to write back."""

    request: rtsp.Request
    reply: rtsp.Response


@dataclass
class StrayResponse:
    """A response whose CSeq matches none of our outstanding requests (a late answer to
    a request we gave up on, or a confused server): reported, not fatal."""

    response: rtsp.Response


ControlEvent = Answer | ServerRequest | StrayResponse | rtsp.InterleavedFrame | rtsp.BadInput


class ControlChannel:
    """The client side of one RTSP connection, without a socket (RFC 2326).

    ``request()`` gives the bytes of a numbered request and remembers it; ``feed()`` takes
    what the server sent and returns :class:`Answer`, :class:`ServerRequest`,
    :class:`StrayResponse` and interleaved frames. Requests from the server are answered
    the way FFmpeg answers them: OPTIONS and GET_PARAMETER (keep-alive and heartbeat
    probes) get ``200 OK``, anything else ``501 Not Implemented``; CSeq and Session are
    echoed, because the server recognises its heartbeat by them. A framing error comes
    as an :class:`rtsp.BadInput` event, as from :class:`rtsp.RtspParser`.
    """

    ANSWERED_METHODS = frozenset({"OPTIONS", "GET_PARAMETER"})

    def __init__(self, user_agent: str = USER_AGENT) -> None:
        self.user_agent = user_agent
        self.parser = rtsp.RtspParser()
        self.outstanding: dict[int, Outstanding] = {}
        self._next_cseq = 1

    def request(self, method: str, uri: str, headers: rtsp.HeadersLike = None,
                now: float = 0.0, tag: Any = None, body: bytes = b"") -> bytes:
        cseq = self._next_cseq
        self._next_cseq += 1
        out = rtsp.Headers(headers)
        out["CSeq"] = str(cseq)
        out["User-Agent"] = self.user_agent
        data = bytes(rtsp.Request(method, uri, out, body))
        self.outstanding[cseq] = Outstanding(method, uri, cseq, now, tag)
        return data

    def feed(self, data: bytes) -> list[ControlEvent]:
        return [self._event(event) for event in self.parser.feed(data)]

    def _event(self, event: rtsp.Event) -> ControlEvent:
        if isinstance(event, rtsp.InterleavedFrame | rtsp.BadInput):
            return event
        if isinstance(event, rtsp.Request):
            return ServerRequest(event, self.answer(event))
        pending = self.outstanding.pop(event.cseq, None) if event.cseq is not None else None
        if pending is None:
            return StrayResponse(event)
        return Answer(pending, event)

    def answer(self, request: rtsp.Request) -> rtsp.Response:
        headers = rtsp.Headers()
        cseq = request.headers.get("CSeq")
        if cseq is not None:
            headers["CSeq"] = cseq
        session = request.headers.get("Session")
        if session is not None:
            headers["Session"] = session
        headers["User-Agent"] = self.user_agent
        status = 200 if request.method in self.ANSWERED_METHODS else 501
        return rtsp.Response(status, "", headers)

    def overdue(self, now: float, timeout: float) -> list[Outstanding]:
        """Forget and return the requests unanswered for ``timeout`` seconds."""
        late = [o for o in self.outstanding.values() if now - o.sent_at >= timeout]
        for item in late:
            del self.outstanding[item.cseq]
        return late

    def next_deadline(self, timeout: float) -> float | None:
        if not self.outstanding:
            return None
        return min(o.sent_at for o in self.outstanding.values()) + timeout


# ---------------------------------------------------------------------------------------
# The threaded player


class _Waiter:
    """A caller waiting for the answer to one of its requests."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: rtsp.Response | None = None
        self.error: str | None = None
        self.status: int | None = None
        self.value: Any = None

    def finish(self, response: rtsp.Response | None = None, error: str | None = None,
               status: int | None = None, value: Any = None) -> None:
        if self.done.is_set():
            return
        self.response, self.error, self.status, self.value = response, error, status, value
        self.done.set()


@dataclass
class _Tag:
    """What to do when an answer arrives: ``kind`` names the step, ``waiter`` the caller
    to wake, ``data`` step-specific values."""

    kind: str
    waiter: _Waiter | None = None
    data: Any = None


class Player:
    """An RTSP/RTP player on its own thread.

    ``url``: an ``rtsp://`` URL (a portal play or resume URL with its ``?token=``).
    ``transport``: ``"tcp"`` (RTP interleaved on the RTSP connection) or ``"udp"``.
    ``on_frame(ShownFrame)`` and ``on_event(name, data)`` are called on the player's
    thread; an exception in them is logged and never stops the player. ``start``: play
    from this npt (seconds) with ``Range: npt=start-``; with ``exact`` nothing before it
    is shown (the server starts at the keyframe before). ``rr_interval``: seconds between
    RTCP receiver reports.

    Events: ``"connected"``, ``"described"``, ``"setup"``, ``"playing"``, ``"paused"``,
    ``"resumed"``, ``"seeked"``, ``"heartbeat"`` (a server request answered: method,
    cseq, session, status), ``"keepalive"``, ``"receiver_report"``, ``"error"``
    (message), ``"closed"`` (reason).

    After :meth:`start`: :attr:`session_id`, :attr:`range_start` (where the server
    really started), :attr:`frames` (a list of the :class:`ShownFrame` shown, the latest
    ``max_frames`` of them, only the last one keeping its picture), :attr:`last_frame`,
    :attr:`first_frame_at`, :meth:`counters`, :attr:`error`, :attr:`state`.
    """

    def __init__(
        self,
        url: str,
        transport: str = "tcp",
        on_frame: Callable[[ShownFrame], None] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        start: float | None = None,
        exact: bool = True,
        rr_interval: float = 1.0,
        *,
        request_timeout: float = 5.0,
        teardown_timeout: float = 1.0,
        max_frames: int = 10_000,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        parts = urlsplit(url)
        if parts.scheme.lower() != "rtsp" or not parts.hostname:
            raise ValueError(f"expected an rtsp://host[:port]/... URL, got {url!r}")
        if start is not None and not start >= 0:
            raise ValueError(f"start must be >= 0 seconds, got {start!r}")
        if not rr_interval > 0:
            raise ValueError(f"rr_interval must be > 0, got {rr_interval!r}")
        self.url = url
        self.transport = transport
        self.on_frame = on_frame
        self.on_event = on_event
        self.start_at = start
        self.exact = exact
        self.rr_interval = rr_interval
        self.request_timeout = request_timeout
        self.teardown_timeout = teardown_timeout
        self.host = parts.hostname
        self.port = parts.port or 554

        self.session_id: str | None = None
        self.session_timeout: float | None = None
        self.range_start: float | None = None
        self.error: str | None = None
        self.state = "new"  # new, starting, playing, paused, stopped, failed
        self._frames: deque[ShownFrame] = deque(maxlen=max_frames)
        self.tracks: list[TrackReceiver] = []
        self.aggregate_url = url
        self.sdp: sdp.SessionDescription | None = None

        self._cond = threading.Condition()
        self._counters = PlayerCounters()
        self._commands: queue.SimpleQueue[tuple[str, Any, _Waiter | None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started = _Waiter()
        self._finished = False
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._control = ControlChannel()
        self._selector: selectors.BaseSelector | None = None
        self._closing = False
        self._close_reason = ""
        self._teardown_deadline: float | None = None
        self._show_from: float | None = None
        self._ssrc = secrets.randbits(32)
        self._cname = f"{USER_AGENT}-{self._ssrc:08x}"
        self._public: set[str] = set()
        self._next_rr = 0.0
        self._next_keepalive: float | None = None
        self._waiters: list[_Waiter] = []
        self.first_frame_at: float | None = None  # time.monotonic() of the first shown frame

    # -- public API, any thread ----------------------------------------------------------

    def start(self, timeout: float | None = None) -> Player:
        """Connect, DESCRIBE, SETUP every track, PLAY; return once the PLAY is answered.

        Raises :class:`PlayerError` (and sets :attr:`error`) if any step fails or the
        whole setup takes longer than ``timeout`` (default: 4 request timeouts).
        """
        if self._thread is not None:
            raise RuntimeError("a Player can be started only once")
        self.state = "starting"
        self._thread = threading.Thread(target=self._run, name="rtsp-player", daemon=True)
        self._thread.start()
        limit = timeout if timeout is not None else 4 * self.request_timeout
        if not self._started.done.wait(limit):
            self.error = f"no PLAY answer within {limit:.1f} s"
            self.stop()
            self.state = "failed"
            raise PlayerError(self.error)
        if self._started.error is not None:
            self._thread.join(self.teardown_timeout + 1)
            raise PlayerError(self._started.error, self._started.status)
        return self

    def pause(self) -> None:
        """PAUSE (RFC 2326 §10.6); returns once the server has answered."""
        self._command("pause")

    def resume(self) -> None:
        """PLAY without Range: carry on from where PAUSE stopped."""
        self._command("resume")

    def seek(self, t: float) -> float:
        """PLAY with ``Range: npt=t-``; returns where the server starts (the keyframe at
        or before ``t``). With ``exact``, nothing before ``t`` is shown."""
        if not t >= 0:
            raise ValueError(f"cannot seek to {t!r}")
        return float(self._command("seek", t))

    def stop(self) -> None:
        """TEARDOWN, then close. Idempotent; returns within about ``teardown_timeout``
        even when the link has gone silent."""
        self._finish("stop")

    def close_abruptly(self) -> None:
        """Close the connection without TEARDOWN (as a crashing player would)."""
        self._finish("abort")

    def __enter__(self) -> Player:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._finished

    @property
    def last_frame(self) -> ShownFrame | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    @property
    def frames(self) -> list[ShownFrame]:
        """The frames shown so far, oldest first: a copy, safe to read from any thread
        while the player runs. At most ``max_frames`` are kept (the newest ones)."""
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
        """Wait until ``predicate()`` is true (re-checked whenever the player shows a
        frame, answers a heartbeat or changes state), at most ``timeout`` seconds.
        Returns the predicate's last value; also returns early once the player has
        ended, since nothing will change any more."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result or self._finished:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return result
                self._cond.wait(remaining)

    def wait_frames(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` frames in all have been shown since start."""
        return bool(self.wait_for(lambda: self._counters.frames_shown >= n, timeout))

    # -- commands -----------------------------------------------------------------------

    def _command(self, name: str, argument: Any = None) -> Any:
        if not self.running or self.state == "starting":
            raise PlayerError(f"cannot {name}: the player is {self.state}"
                              + (f" ({self.error})" if self.error else ""))
        waiter = _Waiter()
        self._commands.put((name, argument, waiter))
        self._wake()
        if not waiter.done.wait(self.request_timeout + 1.0):
            raise PlayerError(f"{name}: no answer within {self.request_timeout:.1f} s")
        if waiter.error is not None:
            raise PlayerError(f"{name}: {waiter.error}", waiter.status)
        return waiter.value

    def _finish(self, how: str) -> None:
        thread = self._thread
        if thread is None:
            self._close_sockets()
            return
        if thread.is_alive():
            self._commands.put((how, None, None))
            self._wake()
            thread.join(self.teardown_timeout + 2.0)
        if thread.is_alive():  # should not happen: the loop has deadlines everywhere
            log.warning("player thread did not end; closing its sockets from outside")
            self._close_sockets()
            thread.join(1.0)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- the player's thread -----------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect()
            self._loop()
        except _Fatal as exc:
            self._fail(str(exc), exc.status)
        except Exception as exc:  # a bug must end the player cleanly, never silently
            log.exception("player failed")
            self._fail(f"internal error: {exc!r}")
        finally:
            self._close_sockets()
            with self._cond:
                if self.state != "failed":
                    self.state = "stopped"
                self._finished = True
                self._cond.notify_all()
            reason = self.error or self._close_reason or "stopped"
            self._started.finish(error=self.error or f"player ended before PLAY ({reason})")
            for waiter in self._waiters:
                waiter.finish(error=self.error or "the player stopped")
            while True:  # commands that raced with the end
                try:
                    _, _, waiter = self._commands.get_nowait()
                except queue.Empty:
                    break
                if waiter is not None:
                    waiter.finish(error=self.error or "the player stopped")
            self._emit("closed", {"reason": reason})

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.request_timeout)
        except OSError as exc:
            raise _Fatal(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Reads happen only when the selector says there is data; the timeout bounds the
        # writes, so a link that stopped taking data cannot block the thread for ever.
        sock.settimeout(2.0)
        self._sock = sock
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ, "control")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._emit("connected", {"peer": sock.getpeername()[:2]})
        self._send("OPTIONS", self.url, {}, _Tag("options"))

    def _loop(self) -> None:
        assert self._selector is not None
        while not self._closing:
            timeout = self._next_timer() - time.monotonic()
            ready = self._selector.select(max(0.0, timeout))
            # UDP first: datagrams already waiting were sent before any RTSP answer read
            # in this round, so a PAUSE answer is never handled before the media it ended.
            ready.sort(key=lambda item: 0 if isinstance(item[0].data, tuple) else 1)
            for key, _ in ready:
                if self._closing:
                    break
                if key.data == "control":
                    self._read_control()
                elif key.data == "wake":
                    self._drain_commands()
                else:
                    self._read_udp(*key.data)
            self._timers(time.monotonic())

    def _next_timer(self) -> float:
        now = time.monotonic()
        deadlines = [now + 0.5]
        if self.state in ("playing", "paused"):
            deadlines.append(self._next_rr)
        if self._next_keepalive is not None:
            deadlines.append(self._next_keepalive)
        pending = self._control.next_deadline(self.request_timeout)
        if pending is not None:
            deadlines.append(pending)
        if self._teardown_deadline is not None:
            deadlines.append(self._teardown_deadline)
        return min(deadlines)

    def _timers(self, now: float) -> None:
        if self._teardown_deadline is not None and now >= self._teardown_deadline:
            self._close("stopped (TEARDOWN unanswered)")
            return
        for item in self._control.overdue(now, self.request_timeout):
            tag: _Tag = item.tag
            message = f"{item.method}: no answer within {self.request_timeout:.1f} s"
            if tag.kind in ("options", "describe", "setup", "play") and self.state == "starting":
                raise _Fatal(message)
            if tag.kind == "teardown":
                self._close("stopped (TEARDOWN unanswered)")
                return
            if tag.waiter is not None:
                tag.waiter.finish(error=message)
        if self.state in ("playing", "paused") and now >= self._next_rr:
            self._next_rr = now + self.rr_interval
            self._send_receiver_reports(now)
        if self._next_keepalive is not None and now >= self._next_keepalive:
            self._next_keepalive = now + self._keepalive_interval()
            method = "GET_PARAMETER" if "GET_PARAMETER" in self._public or not self._public \
                else "OPTIONS"
            self._send(method, self.aggregate_url, {"Session": self.session_id or ""},
                       _Tag("keepalive"))
            with self._cond:
                self._counters.keepalives_sent += 1
            self._emit("keepalive", {"method": method})

    def _keepalive_interval(self) -> float:
        return (self.session_timeout or DEFAULT_SESSION_TIMEOUT) / 2

    # -- writing ------------------------------------------------------------------------

    def _send(self, method: str, uri: str, headers: dict[str, str], tag: _Tag) -> None:
        data = self._control.request(method, uri, headers, time.monotonic(), tag)
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendall(data)
        except OSError as exc:  # includes the send timeout of a link that stopped
            raise _Fatal(f"cannot write to the server: {exc}") from exc

    # -- reading ------------------------------------------------------------------------

    def _read_control(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError as exc:
            if self._teardown_deadline is not None:
                self._close("stopped")
                return
            raise _Fatal(f"control connection failed: {exc}") from exc
        if not data:
            if self._teardown_deadline is not None:
                self._close("stopped")
                return
            raise _Fatal("the server closed the control connection")
        for event in self._control.feed(data):
            if isinstance(event, rtsp.BadInput):
                raise _Fatal(f"malformed message from the server: {event.status} {event.reason}")
            self._handle_control(event)
            if self._closing:
                return

    def _handle_control(self, event: ControlEvent) -> None:
        now = time.monotonic()
        if isinstance(event, rtsp.InterleavedFrame):
            self._interleaved(event, now)
        elif isinstance(event, ServerRequest):
            self._write(bytes(event.reply))
            request = event.request
            info = {"method": request.method, "cseq": request.cseq,
                    "session": request.headers.get("Session"), "status": event.reply.status,
                    "time": time.time()}
            with self._cond:
                self._counters.heartbeats_answered += 1
                self._cond.notify_all()
            self._emit("heartbeat", info)
        elif isinstance(event, StrayResponse):
            log.debug("answer with unknown CSeq %s ignored", event.response.cseq)
        else:
            self._answered(event.request.tag, event.response)

    def _interleaved(self, frame: rtsp.InterleavedFrame, now: float) -> None:
        for track in self.tracks:
            if track.channel is None:
                continue
            if frame.channel == track.channel:
                self._rtp(track, frame.data, now)
                return
            if frame.channel == track.channel + 1:
                self._rtcp(track, frame.data, now)
                return

    def _read_udp(self, track_index: int, is_rtcp: bool) -> None:
        track = self.tracks[track_index]
        sock = track.rtcp_socket if is_rtcp else track.rtp_socket
        assert sock is not None
        while True:
            try:
                data, _ = sock.recvfrom(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP port unreachable reported on a later read
                return
            now = time.monotonic()
            if is_rtcp:
                self._rtcp(track, data, now)
            else:
                self._rtp(track, data, now)

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
        if reports:
            with self._cond:
                self._counters.sender_reports_received += reports

    def _deliver(self, track: TrackReceiver, decoded: list[DecodedVideo | DecodedAudio]) -> None:
        for item in decoded:
            if isinstance(item, DecodedAudio):
                with self._cond:
                    self._counters.audio_frames += 1
                    self._counters.audio_samples += item.samples
                continue
            self._video_frame(track, item)

    def _video_frame(self, track: TrackReceiver, item: DecodedVideo) -> None:
        with self._cond:
            self._counters.frames_decoded += 1
        if self._show_from is not None:
            # The frame nearest to the requested start comes first; when the start lies
            # exactly between two frames, the earlier one (a resume is never late). The
            # microsecond absorbs float noise such as 4.54 - 0.02 = 4.5200000000000005.
            half_frame = 0.5 / (track.fps or FALLBACK_FPS)
            if item.pts < self._show_from - half_frame - 1e-6:
                with self._cond:
                    self._counters.frames_hidden += 1
                return
        shown = ShownFrame(read_frame_index(item.frame), item.pts, time.time(), item.frame)
        with self._cond:
            if self._frames:
                # Only the newest picture stays in memory; older entries keep their data.
                self._frames[-1] = replace(self._frames[-1], image=None)
            self._frames.append(shown)
            self._counters.frames_shown += 1
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
            self._cond.notify_all()
        if self.on_frame is not None:
            try:
                self.on_frame(shown)
            except Exception:
                log.exception("on_frame callback failed")

    # -- answers ------------------------------------------------------------------------

    def _answered(self, tag: _Tag, response: rtsp.Response) -> None:
        ok = 200 <= response.status < 300
        if tag.kind == "options":
            # Only a hint (which keep-alive the server prefers): a refusal is no reason to
            # give up, DESCRIBE decides.
            self._after_options(response, tag)
            return
        if tag.kind in ("options", "describe", "setup", "play") and self.state == "starting":
            if not ok:
                raise _Fatal(f"{tag.kind.upper()} refused: {response.status} "
                             f"{response.reason}", response.status)
            try:
                getattr(self, f"_after_{tag.kind}")(response, tag)
            except (rtsp.RtspProtocolError, sdp.SdpError, ValueError) as exc:
                raise _Fatal(f"bad {tag.kind.upper()} answer: {exc}") from exc
            return
        if tag.kind == "keepalive":
            if response.status == 454:
                raise _Fatal("the server no longer knows the session (454)", 454)
            return
        if tag.kind == "teardown":
            self._close("stopped")
            return
        waiter = tag.waiter
        if not ok:
            if waiter is not None:
                waiter.finish(response, f"{response.status} {response.reason}", response.status)
            return
        try:
            if tag.kind == "pause":
                self.state = "paused"
                self._emit("paused", {})
                value: Any = None
            else:
                value, show_held = self._play_answered(response, tag.data)
                self.state = "playing"
                self._emit("seeked" if tag.kind == "seek" else "resumed",
                           {"range_start": self.range_start})
        except (rtsp.RtspProtocolError, ValueError) as exc:
            raise _Fatal(f"bad {tag.kind.upper()} answer: {exc}") from exc
        with self._cond:
            self._cond.notify_all()
        if waiter is not None:
            waiter.finish(response, value=value)
        if tag.kind != "pause":
            show_held()

    def _after_options(self, response: rtsp.Response, tag: _Tag) -> None:
        public = response.headers.get("Public")
        if public and 200 <= response.status < 300:
            with contextlib.suppress(rtsp.RtspProtocolError):
                self._public = rtsp.parse_public(public)
        self._send("DESCRIBE", self.url, {"Accept": "application/sdp"}, _Tag("describe"))

    def _after_describe(self, response: rtsp.Response, tag: _Tag) -> None:
        ctype = (response.headers.get("Content-Type") or "application/sdp").split(";")[0]
        if ctype.strip().lower() != "application/sdp":
            raise ValueError(f"DESCRIBE answered with {ctype!r}, not application/sdp")
        description = sdp.parse(response.body.decode("utf-8"))
        base = (response.headers.get("Content-Base")
                or response.headers.get("Content-Location") or self.url)
        self.sdp = description
        self.aggregate_url = sdp.resolve_control(base, description.control)
        for media in description.media:
            try:
                track = TrackReceiver(media, sdp.resolve_control(base, media.control))
            except sdp.SdpError as exc:
                log.info("track skipped: %s", exc)
                continue
            self.tracks.append(track)
        if not self.tracks:
            raise ValueError("no H.264 or AAC track in the session description")
        self._emit("described", {"tracks": [(t.kind, t.codec, t.url) for t in self.tracks]})
        self._setup(0)

    def _setup(self, index: int) -> None:
        track = self.tracks[index]
        if self.transport == "tcp":
            transport = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
        else:
            assert self._sock is not None and self._selector is not None
            local_host = self._sock.getsockname()[0]
            track.rtp_socket, track.rtcp_socket = bind_udp_pair(local_host, receive_buffer=1 << 21)
            self._selector.register(track.rtp_socket, selectors.EVENT_READ, (index, False))
            self._selector.register(track.rtcp_socket, selectors.EVENT_READ, (index, True))
            port = track.rtp_socket.getsockname()[1]
            transport = f"RTP/AVP;unicast;client_port={port}-{port + 1}"
        headers = {"Transport": transport}
        if self.session_id is not None:
            headers["Session"] = self.session_id
        self._send("SETUP", track.url, headers, _Tag("setup", data=index))

    def _after_setup(self, response: rtsp.Response, tag: _Tag) -> None:
        index: int = tag.data
        track = self.tracks[index]
        session = response.headers.get("Session")
        if session is None:
            raise ValueError("SETUP answer without a Session header")
        session_id, timeout = rtsp.parse_session(session)
        if self.session_id is not None and session_id != self.session_id:
            raise ValueError(f"SETUP answered another session ({session_id})")
        self.session_id = session_id
        if timeout:
            self.session_timeout = float(timeout)
        value = response.headers.get("Transport")
        if value is None:
            raise ValueError("SETUP answer without a Transport header")
        answer = rtsp.parse_transport(value)[0]
        track.ssrc = answer.ssrc
        if self.transport == "tcp":
            if not answer.is_tcp or answer.interleaved is None:
                raise ValueError(f"asked for TCP interleaved, the server answered {value!r}")
            track.channel = answer.interleaved[0]
        else:
            if answer.is_tcp or answer.server_port is None:
                raise ValueError(f"asked for UDP, the server answered {value!r}")
            assert self._sock is not None
            server_host = answer.source or self._sock.getpeername()[0]
            track.server_rtcp = (server_host, answer.server_port[1])
        self._emit("setup", {"track": track.url, "transport": value, "session": session_id})
        if index + 1 < len(self.tracks):
            self._setup(index + 1)
            return
        self._send_play(self.start_at, _Tag("play"))

    def _send_play(self, start: float | None, tag: _Tag) -> None:
        headers = {"Session": self.session_id or ""}
        if start is not None:
            headers["Range"] = rtsp.format_range(start)
        repositions = tag.kind != "resume"
        tag.data = (start, repositions)
        for track in self.tracks:
            track.play_sent(repositions)
        self._send("PLAY", self.aggregate_url, headers, tag)

    def _after_play(self, response: rtsp.Response, tag: _Tag) -> None:
        _, held = self._play_answered(response, tag.data)
        self.state = "playing"
        now = time.monotonic()
        self._next_rr = now + self.rr_interval
        self._next_keepalive = now + self._keepalive_interval()
        self._emit("playing", {"range_start": self.range_start, "session": self.session_id})
        with self._cond:
            self._cond.notify_all()
        self._started.finish(response)
        held()

    def _play_answered(self, response: rtsp.Response, data: tuple[float | None, bool]
                       ) -> tuple[float, Callable[[], None]]:
        """Apply a PLAY answer's Range and RTP-Info. Returns where play begins and a
        function that decodes and shows the packets held while the answer was awaited
        (called once the caller has signalled the answer, so it is not kept waiting)."""
        requested, repositions = data
        range_value = response.headers.get("Range")
        begin: float | None = None
        if range_value is not None:
            begin, _ = rtsp.parse_range(range_value)
        if begin is None:
            begin = requested if requested is not None else (self.range_start or 0.0)
        infos = rtsp.parse_rtp_info(response.headers.get("RTP-Info", "")) \
            if response.headers.get("RTP-Info") else []
        if repositions:
            self.range_start = begin
            self._show_from = requested if (self.exact and requested is not None) else None
        held = [(track, track.play_answered(begin, match_rtp_info(track.url, infos),
                                            repositions)) for track in self.tracks]

        def show_held() -> None:
            for track, packets in held:
                for packet, arrival in packets:
                    self._deliver(track, track.receive(packet, arrival))

        return begin, show_held

    # -- commands on the player's thread ------------------------------------------------

    def _drain_commands(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
        while True:
            try:
                name, argument, waiter = self._commands.get_nowait()
            except queue.Empty:
                return
            if name in ("stop", "abort"):
                self._stop(teardown=name == "stop")
                continue
            if self._teardown_deadline is not None or self._closing:
                if waiter is not None:
                    waiter.finish(error="the player is stopping")
                continue
            if waiter is not None:
                self._waiters = [w for w in self._waiters if not w.done.is_set()] + [waiter]
            if name == "pause":
                self._send("PAUSE", self.aggregate_url, {"Session": self.session_id or ""},
                           _Tag("pause", waiter))
            elif name == "resume":
                self._send_play(None, _Tag("resume", waiter))
            elif name == "seek":
                self._send_play(float(argument), _Tag("seek", waiter))

    def _stop(self, teardown: bool) -> None:
        if self._teardown_deadline is not None and teardown:
            return  # a second stop() while the TEARDOWN is on its way
        if teardown and self.session_id is not None and self._sock is not None:
            try:
                self._send("TEARDOWN", self.aggregate_url, {"Session": self.session_id},
                           _Tag("teardown"))
            except _Fatal:
                self._close("stopped")
                return
            self._teardown_deadline = time.monotonic() + self.teardown_timeout
        else:
            self._close("stopped" if teardown else "closed without TEARDOWN")

    def _close(self, reason: str) -> None:
        self._closing = True
        self._close_reason = reason

    # -- RTCP out -----------------------------------------------------------------------

    def _send_receiver_reports(self, now: float) -> None:
        sent = 0
        for track in self.tracks:
            report = track.receiver_report(self._ssrc, self._cname, now)
            if report is None:
                continue
            if track.channel is not None:
                self._write(bytes(rtsp.InterleavedFrame(track.channel + 1, report)))
            elif track.rtcp_socket is not None and track.server_rtcp is not None:
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

    # -- ending ---------------------------------------------------------------------------

    def _fail(self, message: str, status: int | None = None) -> None:
        with self._cond:
            self.error = message
            self.state = "failed"
            self._cond.notify_all()
        log.info("player: %s", message)
        self._started.finish(error=message, status=status)
        self._emit("error", {"message": message})

    def _close_sockets(self) -> None:
        sockets: list[socket.socket | None] = [self._sock]
        for track in self.tracks:
            sockets += [track.rtp_socket, track.rtcp_socket]
        if self._selector is not None:
            with contextlib.suppress(Exception):
                self._selector.close()
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(name, data)
        except Exception:
            log.exception("on_event callback failed for %r", name)


class _Fatal(Exception):
    """Ends the player: the message goes to :attr:`Player.error`."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
