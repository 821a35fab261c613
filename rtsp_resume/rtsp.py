"""RTSP 1.0 messages (RFC 2326), sans-I/O: bytes in, events out, and the reverse.
:class:`RtspParser` turns whatever bytes arrived into :class:`Request`, :class:`Response`
and :class:`InterleavedFrame` events (a last :class:`BadInput` for input it cannot trust);
``bytes(message)`` is what to write. Server and terminal share it: either may send requests
(§10; the heartbeat is the server's OPTIONS). Helpers read and write Transport (§12.39),
Range and npt (§12.29, §3.6), Session (§12.37), RTP-Info (§12.33) and Public (§12.28), and
raise :class:`RtspProtocolError` with the status to answer: 400 for syntax, 413 over the
size limits, 457 for a Range not in npt or ending before it starts, 505 for not RTSP/1.0."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NamedTuple, Self

RTSP_VERSION = "RTSP/1.0"

# RFC 2326 §7.1.1: the reason phrases RTSP adds to (or words otherwise than) HTTP/1.1's.
_RTSP_REASONS = {
    250: "Low on Storage Space", 451: "Parameter Not Understood", 452: "Conference Not Found",
    453: "Not Enough Bandwidth", 454: "Session Not Found", 455: "Method Not Valid in This State",
    456: "Header Field Not Valid for Resource", 457: "Invalid Range",
    458: "Parameter Is Read-Only", 459: "Aggregate operation not allowed",
    460: "Only aggregate operation allowed", 461: "Unsupported transport",
    462: "Destination unreachable", 505: "RTSP Version not supported", 551: "Option not supported",
}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("" for a code that has none)."""
    return _RTSP_REASONS.get(status) or next((s.phrase for s in HTTPStatus if s == status), "")


class RtspProtocolError(ValueError):
    """Input that breaks RFC 2326: ``status`` is the code to answer with, ``reason`` says
    what was wrong. Handlers raise it; the parser reports a :class:`BadInput` instead."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason = status, reason

    @property
    def phrase(self) -> str:
        return reason_phrase(self.status) or "Error"


# RFC 2616 §2.2 (which RFC 2326 borrows): token characters.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION_RE = re.compile(r"[A-Za-z]+/\d+\.\d+")
_VISIBLE = frozenset(range(0x21, 0x7F))
_FRAME_HEADER = struct.Struct("!BBH")  # §10.12: "$", channel, length


def _is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _is_uri(text: str) -> bool:
    return bool(text) and all(ord(c) in _VISIBLE for c in text)


class Headers:
    """Message headers: a case-insensitive multi-dict that keeps order and the names as
    written. ``h["cseq"]`` and ``h.get("CSeq")`` find the first ``CSeq``; ``h["X"] = v``
    replaces every ``X`` where the first was; ``h.add("X", v)`` appends another."""

    def __init__(self, items: HeadersLike = None) -> None:
        self._items: list[tuple[str, str]] = []
        pairs = items.items() if isinstance(items, Mapping | Headers) else items or ()
        for name, value in pairs:
            self.add(name, value)

    @staticmethod
    def _checked(name: str, value: str | int) -> tuple[str, str]:
        # A CR or LF in a value would let a caller inject headers or end the message.
        if not _is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in str(value) or "\n" in str(value):
            raise ValueError(f"line break in the value of header {name!r}")
        return name, str(value)

    def _where(self, name: str) -> list[int]:
        return [i for i, (old, _) in enumerate(self._items) if old.lower() == name.lower()]

    def add(self, name: str, value: str | int) -> None:
        self._items.append(self._checked(name, value))

    def __setitem__(self, name: str, value: str | int) -> None:
        item, (first, *rest) = self._checked(name, value), self._where(name) or [len(self)]
        self._items = [old for i, old in enumerate(self._items) if i not in rest]
        self._items[first:first + 1] = [item]  # in the first one's place, or at the end

    def __getitem__(self, name: str) -> str:
        if (value := self.get(name)) is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        return next(iter(self.get_all(name)), default)

    def get_all(self, name: str) -> list[str]:
        return [self._items[i][1] for i in self._where(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._where(name))

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    out = Headers(headers)
    # Content-Length always tells the truth about the body we are about to write.
    if body or "Content-Length" in out:
        out["Content-Length"] = str(len(body))
    lines = [start_line, *(f"{name}: {value}" for name, value in out.items()), "", ""]
    return "\r\n".join(lines).encode("utf-8") + body


class _Event:
    """What the parser's events share: ``parse`` reads exactly one, whole."""

    @classmethod
    def parse(cls, data: bytes) -> Self:
        parser = RtspParser()
        events = parser.feed(data)
        if len(events) != 1 or not isinstance(events[0], cls) or parser.buffered:
            raise RtspProtocolError(400, f"expected exactly one complete {cls.__name__}")
        return events[0]


class _Message(_Event):
    """What requests and responses share: their headers, and the CSeq among them."""
    headers: Headers

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    @property
    def cseq(self) -> int | None:
        """The CSeq header as an int, or None when missing or not a number."""
        value = (self.headers.get("CSeq") or "").strip()
        return int(value) if value.isascii() and value.isdigit() else None


@dataclass
class Request(_Message):
    """An RTSP request (RFC 2326 §6). ``bytes(req)`` is the wire form."""
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    def __bytes__(self) -> bytes:
        if not _is_token(self.method) or not _is_uri(self.uri):
            raise ValueError(f"invalid request line {self.method!r} {self.uri!r}")
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass
class Response(_Message):
    """An RTSP response (§7); an empty ``reason`` is written as :func:`reason_phrase`'s."""
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    def __bytes__(self) -> bytes:
        reason = self.reason or reason_phrase(self.status)
        if not 100 <= self.status <= 999 or "\r" in reason or "\n" in reason:
            raise ValueError(f"invalid status line {self.status} {reason!r}")
        return _serialize(f"{self.version} {self.status} {reason}", self.headers, self.body)


@dataclass
class InterleavedFrame(_Event):
    """Binary data interleaved on the RTSP connection (§10.12): ``$``, a one-byte channel,
    a 16-bit length, then the data (one RTP or RTCP packet)."""
    channel: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.channel <= 255 or len(self.data) > 0xFFFF:
            raise ValueError(f"channel {self.channel} (0-255), {len(self.data)} bytes (at "
                             "most 65535): not an interleaved frame")

    def __bytes__(self) -> bytes:
        return interleave(self.channel, [self.data])


def interleave(channel: int, packets: Iterable[bytes]) -> bytes:
    """Packets framed for one channel of the RTSP connection (§10.12), in one write's bytes."""
    return b"".join(_FRAME_HEADER.pack(0x24, channel, len(data)) + data for data in packets)


@dataclass(frozen=True)
class BadInput:
    """The event that ends a stream the parser cannot trust any more (h11's error event):
    ``status`` is the code to answer with (400, 413, 505), ``reason`` what was wrong."""
    status: int
    reason: str
    phrase = RtspProtocolError.phrase


Event = Request | Response | InterleavedFrame | BadInput


_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")  # the blank line ending a head, CRLF or LF


class RtspParser:
    """Incremental parser for one direction of an RTSP connection: ``feed(data)`` returns
    the events completed so far, the same however the input is split. Bodies are read by
    Content-Length (none: no body, §4.3); lines end in CRLF or LF; folded lines are a 400.
    Bad input never raises: ``feed`` returns the events before it, then only a BadInput."""

    def __init__(self, max_header_bytes: int = 16384, max_body_bytes: int = 1 << 20) -> None:
        self.max_header_bytes, self.max_body_bytes = max_header_bytes, max_body_bytes
        self._buffer = bytearray()
        # A message whose head (of this many bytes) is parsed, waiting for its body.
        self._pending: tuple[Request | Response, int, int] | None = None
        self.error: BadInput | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete event."""
        return len(self._buffer) + (self._pending[2] if self._pending else 0)

    def feed(self, data: bytes) -> list[Event]:
        if self.error is not None:
            return [self.error]
        self._buffer += data
        events: list[Event] = []
        try:
            while (event := self._next_event()) is not None:
                events.append(event)
        except RtspProtocolError as exc:
            self.error = BadInput(exc.status, exc.reason)
            self._buffer.clear()
            events.append(self.error)
        return events

    def _next_event(self) -> Event | None:
        buf = self._buffer
        if self._pending is not None:
            message, length, _ = self._pending
            if len(buf) < length:
                return None
            message.body, self._pending = bytes(buf[:length]), None
            del buf[:length]
            return message
        while buf[:1] in (b"\r", b"\n"):  # stray line breaks between messages, as in HTTP
            del buf[:1]
        if not buf:
            return None
        if buf[0] == 0x24:  # "$": an interleaved frame
            end = 4 + int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else None
            if end is None or len(buf) < end:
                return None
            frame = InterleavedFrame(buf[1], bytes(buf[4:end]))
            del buf[:end]
            return frame
        # Junk is rejected as soon as it shows (a start line's first word is printable
        # ASCII), looking only within the header limit so that any split gives one verdict.
        window = bytes(buf[: self.max_header_bytes])
        first_word = window.split(b" ", 1)[0].split(b"\n", 1)[0].rstrip(b"\r")
        if any(byte not in _VISIBLE for byte in first_word):
            raise RtspProtocolError(400, "start line is not text")
        line_end = window.find(b"\n")
        if line_end >= 0:
            _parse_start_line(window[:line_end])
        match = _HEADER_END_RE.search(window)
        if match is None:
            if len(buf) >= self.max_header_bytes:
                raise RtspProtocolError(413, "header block too large")
            return None
        block = window[: match.start()]
        del buf[: match.end()]
        message = _parse_head(block)
        length = _content_length(message.headers)
        if length > self.max_body_bytes:
            raise RtspProtocolError(413, "body too large")
        if length:
            self._pending = (message, length, match.end())
            return self._next_event()
        return message


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RtspProtocolError(400, "header bytes are not UTF-8") from None


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text)


def _parse_start_line(raw: bytes) -> Request | Response:
    line = _decode(raw.rstrip(b"\r"))
    if line[:5] in ("RTSP/", "rtsp/"):
        version, status, reason = (line.split(" ", 2) + ["", ""])[:3]
        if not re.fullmatch(r"\d{3}", status) or _has_control(reason):
            raise RtspProtocolError(400, "malformed status line")
        message: Request | Response = Response(int(status), reason)
    else:
        parts = line.split(" ")
        if len(parts) != 3 or not _is_token(parts[0]) or not _is_uri(parts[1]):
            raise RtspProtocolError(400, "malformed request line")
        method, uri, version = parts
        message = Request(method, uri)
    if not _VERSION_RE.fullmatch(version):
        raise RtspProtocolError(400, "malformed version")
    if version != RTSP_VERSION:
        raise RtspProtocolError(505, f"version {version} not supported")
    return message


def _parse_head(block: bytes) -> Request | Response:
    first, *lines = block.split(b"\n")
    message = _parse_start_line(first)
    for raw in lines:
        line = _decode(raw.removesuffix(b"\r"))
        if line[:1] in (" ", "\t"):
            raise RtspProtocolError(400, "folded header lines are not supported")
        name, colon, value = line.partition(":")
        if not colon or not _is_token(name):
            raise RtspProtocolError(400, f"malformed header line {line[:40]!r}")
        value = value.strip(" \t")
        if _has_control(value):
            raise RtspProtocolError(400, f"control character in header {name!r}")
        message.headers.add(name, value)
    return message


def _content_length(headers: Headers) -> int:
    values = {value.strip() for value in headers.get_all("Content-Length")} or {"0"}
    value = values.pop() if len(values) == 1 else "several"
    if not re.fullmatch(r"[0-9]+", value):
        raise RtspProtocolError(400, f"malformed or conflicting Content-Length: {value[:20]!r}")
    if len(value) > 12:
        raise RtspProtocolError(413, "body too large")
    return int(value)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, start, quoted = [], 0, False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise RtspProtocolError(400, "unbalanced quote")
    return parts + [text[start:]]


_TRANSPORT_PROTOCOL_RE = re.compile(r"[A-Za-z0-9\-_.]+/[A-Za-z0-9\-_.]+(/[A-Za-z0-9\-_.]+)?")


@dataclass
class Transport:
    """One transport-spec of a Transport header (§12.39): ``protocol`` upper-cased (e.g.
    ``RTP/AVP``, UDP implied, or ``RTP/AVP/TCP``); a single port or channel ``a`` reads as
    the RTP/RTCP pair ``(a, a + 1)``; unknown parameters are kept in ``extra``."""
    protocol: str = "RTP/AVP"
    cast: str | None = "unicast"
    destination: str | None = None
    source: str | None = None
    client_port: tuple[int, int] | None = None
    server_port: tuple[int, int] | None = None
    interleaved: tuple[int, int] | None = None
    port: tuple[int, int] | None = None
    ttl: int | None = None
    ssrc: int | None = None
    mode: str | None = None
    append: bool = False
    extra: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def is_tcp(self) -> bool:  # interleaved on the RTSP connection
        return self.protocol.endswith("/TCP")

    @property
    def supported(self) -> bool:
        """Whether this is RTP/AVP over UDP or TCP, the transports rtsp-resume serves."""
        return self.protocol in ("RTP/AVP", "RTP/AVP/UDP", "RTP/AVP/TCP")

    def __str__(self) -> str:
        ports = {n: getattr(self, n) for n in ("interleaved", "port", "client_port", "server_port")}
        mode = self.mode and (f'"{self.mode}"' if "," in self.mode else self.mode)
        params = [("destination", self.destination), ("source", self.source),
                  *((n, p and f"{p[0]}-{p[1]}") for n, p in ports.items()),
                  ("ttl", self.ttl), ("ssrc", None if self.ssrc is None else f"{self.ssrc:08X}"),
                  ("mode", mode)]
        words = [self.protocol, *([self.cast] if self.cast else [])]
        words += [f"{name}={value}" for name, value in params if value is not None]
        words += ["append"] * self.append
        return ";".join(words + [n if v is None else f"{n}={v}" for n, v in self.extra])


def _pair(name: str, value: str, maximum: int) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", value)
    pair = (int(match[1]), int(match[2] or int(match[1]) + 1)) if match else (-1, -1)
    if not 0 <= min(pair) <= max(pair) <= maximum:
        raise RtspProtocolError(400, f"malformed {name} in Transport, or out of range")
    return pair


def parse_transport(value: str) -> list[Transport]:
    """The transport-specs of a Transport header, in the client's order of preference;
    unknown protocols too (see :attr:`Transport.supported`: 461 when none is)."""
    specs: list[Transport] = []
    for spec in _split_outside_quotes(value, ","):
        protocol, *params = (p.strip() for p in _split_outside_quotes(spec, ";"))
        if not _TRANSPORT_PROTOCOL_RE.fullmatch(protocol):
            raise RtspProtocolError(400, f"malformed transport protocol {protocol[:40]!r}")
        transport = Transport(protocol=protocol.upper(), cast=None)
        for param in filter(None, params):
            name, equals, raw = (part.strip() for part in param.partition("="))
            name = name.lower()
            if name in ("unicast", "multicast") and not equals:
                transport.cast = name
            elif name == "append" and not equals:
                transport.append = True
            elif name in ("client_port", "server_port", "port"):
                setattr(transport, name, _pair(name, raw, 65535))
            elif name == "interleaved":
                transport.interleaved = _pair(name, raw, 255)
            elif name == "ttl" and re.fullmatch(r"\d{1,3}", raw) and int(raw) <= 255:
                transport.ttl = int(raw)
            elif name == "ssrc" and re.fullmatch(r"[0-9A-Fa-f]{1,8}", raw):
                transport.ssrc = int(raw, 16)
            elif name == "mode" and raw.strip('"').strip():
                transport.mode = raw.strip('"').strip()
            elif name in ("destination", "source"):
                setattr(transport, name, raw or None)
            elif _is_token(name) and name not in ("ttl", "ssrc", "mode"):
                transport.extra.append((name, raw if equals else None))
            else:
                raise RtspProtocolError(400, f"malformed Transport parameter {param[:40]!r}")
        specs.append(transport)
    return specs


# npt-time (RFC 2326 §3.6): seconds with an optional fraction, or h:mm:ss[.fraction].
_NPT_SEC_RE = re.compile(r"(\d+)(\.\d*)?")
_NPT_HMS_RE = re.compile(r"(\d{1,10}):([0-5]?\d):([0-5]?\d)(\.\d*)?")


def parse_npt(text: str) -> float:
    """An npt-time (§3.6) in seconds: ``12.5`` or ``h:mm:ss[.fraction]``."""
    if match := _NPT_SEC_RE.fullmatch(text):
        seconds = float(match.group(1) + (match.group(2) or "").rstrip("."))
    elif match := _NPT_HMS_RE.fullmatch(text):
        hours, minutes, whole = (int(match.group(i)) for i in (1, 2, 3))
        fraction = float("0" + (match.group(4) or "").rstrip("."))
        seconds = hours * 3600 + minutes * 60 + whole + fraction
    else:
        raise RtspProtocolError(400, f"malformed npt time {text[:40]!r}")
    if not math.isfinite(seconds):
        raise RtspProtocolError(400, "npt time out of range")
    return seconds


def parse_range(value: str) -> tuple[float | None, float | None]:
    """``(start, end)`` in seconds of an npt Range header (§12.29, §3.6): ``end`` None for
    an open range, ``start`` None for ``now`` (``npt=now-``, ``npt=-E``). ``;time=`` is
    ignored; another unit or an end before the start is a 457."""
    unit, equals, span = value.split(";", 1)[0].strip().partition("=")
    unit = unit.strip().lower()
    if not equals or not _is_token(unit):
        raise RtspProtocolError(400, "malformed Range")
    if unit != "npt":  # clock, smpte...
        raise RtspProtocolError(457, f"Range unit {unit[:20]!r} not supported, use npt")
    first, dash, last = (part.strip() for part in span.partition("-"))
    if not dash or not (first or last) or last == "now":
        raise RtspProtocolError(400, "malformed Range")
    start = None if first in ("", "now") else parse_npt(first)
    end = parse_npt(last) if last else None
    if start is not None and end is not None and end < start:
        raise RtspProtocolError(457, "Range ends before it starts")
    return start, end


def format_range(start: float | None, end: float | None = None) -> str:
    """``npt=12.000-`` or ``npt=12.000-30.000``; a None start writes ``now``."""
    if any(value is not None and not value >= 0 for value in (start, end)):
        raise ValueError(f"invalid npt times {start!r}, {end!r}")
    return f"npt={'now' if start is None else f'{start:.3f}'}-{'' if end is None else f'{end:.3f}'}"


# session-id (RFC 2326 §3.4): 1*( ALPHA | DIGIT | safe ), safe = $ - _ . +
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9$\-_.+]+")


def parse_session(value: str) -> tuple[str, int | None]:
    """``"id;timeout=N"`` -> ``("id", N)``; the timeout is None when absent."""
    session_id, *params = (part.strip() for part in value.split(";"))
    if not _SESSION_ID_RE.fullmatch(session_id):
        raise RtspProtocolError(400, "malformed Session id")
    timeout: int | None = None
    for name, _, raw in (param.partition("=") for param in params):
        if name.strip().lower() == "timeout":
            if not re.fullmatch(r"[0-9]{1,9}", raw.strip()):
                raise RtspProtocolError(400, "malformed Session timeout")
            timeout = int(raw)
    return session_id, timeout


def format_session(session_id: str, timeout: int | None = None) -> str:
    if not _SESSION_ID_RE.fullmatch(session_id):
        raise ValueError(f"invalid session id {session_id!r}")
    return session_id if timeout is None else f"{session_id};timeout={int(timeout)}"


class RtpInfo(NamedTuple):
    """One stream of an RTP-Info header (RFC 2326 §12.33)."""
    url: str
    seq: int | None
    rtptime: int | None


def format_rtp_info(entries: Iterable[tuple[str, int | None, int | None]]) -> str:
    """``url=U;seq=S;rtptime=T`` per stream, comma-separated; None values are left out."""
    entries = list(entries)
    if not entries or not all(_is_uri(url) for url, _, _ in entries):
        raise ValueError(f"RTP-Info needs streams with valid urls, got {entries!r}")
    return ",".join(f"url={url}" + ("" if seq is None else f";seq={seq & 0xFFFF}")
                    + ("" if rtptime is None else f";rtptime={rtptime & 0xFFFFFFFF}")
                    for url, seq, rtptime in entries)


def parse_rtp_info(value: str) -> list[RtpInfo]:
    """Read an RTP-Info header. URLs may contain commas and semicolons: a new stream
    starts only at ``,url=`` and a parameter only at ``;seq=`` or ``;rtptime=``."""
    entries: list[RtpInfo] = []
    for chunk in re.split(r",\s*(?=url=)", value.strip(), flags=re.IGNORECASE):
        pieces = re.split(r";\s*(?=(?:seq|rtptime)\s*=)", chunk, flags=re.IGNORECASE)
        head = pieces[0].strip()
        if head[:4].lower() != "url=" or len(head) == 4:
            raise RtspProtocolError(400, "malformed RTP-Info")
        numbers: dict[str, int | None] = {"seq": None, "rtptime": None}
        for piece in pieces[1:]:
            name, _, raw = (part.strip() for part in piece.partition("="))
            name = name.lower()
            limit = 1 << 16 if name == "seq" else 1 << 32
            if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) >= limit:
                raise RtspProtocolError(400, f"malformed RTP-Info {name}")
            numbers[name] = int(raw)
        entries.append(RtpInfo(head[4:], numbers["seq"], numbers["rtptime"]))
    return entries


def parse_public(value: str) -> set[str]:
    """The method names of a Public (or Allow) header; method names are case-sensitive."""
    methods = {part.strip() for part in value.split(",")} - {""}
    if bad := [name for name in methods if not _is_token(name)]:
        raise RtspProtocolError(400, f"malformed method name {bad[0][:40]!r}")
    return methods


def answer_server_request(request: Request, user_agent: str) -> Response:
    """A client's answer to a server's request (§10; the heartbeat of claims 2, 8) as
    FFmpeg's: 200 to OPTIONS and GET_PARAMETER, else 501; CSeq and Session echoed."""
    echoed = {name: value for name in ("CSeq", "Session")
              if (value := request.headers.get(name)) is not None}
    status = 200 if request.method in ("OPTIONS", "GET_PARAMETER") else 501
    return Response(status, "", {**echoed, "User-Agent": user_agent})
