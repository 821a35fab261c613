"""Session descriptions (SDP, RFC 4566) for RTSP DESCRIBE, written and read.

The server writes one with :func:`describe`; the terminal reads one with :func:`parse`.
Codec parameters follow the payload formats: H.264 ``fmtp`` per RFC 6184 §8.1
(``profile-level-id``, ``sprop-parameter-sets``), AAC per RFC 3640 (mode ``AAC-hbr``,
``config`` = AudioSpecificConfig in hex). Control URLs follow RFC 2326 §C.1.1.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

from rtsp_resume.media import Track

VIDEO_PAYLOAD_TYPE = 96
AUDIO_PAYLOAD_TYPE = 97


class SdpError(ValueError):
    """Malformed SDP, or a track that cannot be described."""


def payload_type(track: Track) -> int:
    """The dynamic RTP payload type :func:`describe` announces for ``track``."""
    if track.codec == "h264":
        return VIDEO_PAYLOAD_TYPE
    if track.codec == "aac":
        return AUDIO_PAYLOAD_TYPE
    raise SdpError(f"track {track.index}: codec {track.codec!r} has no RTP mapping here")


def _single_line(what: str, text: str) -> str:
    # A CR or LF inside a value would start a new SDP line: refuse rather than inject.
    if "\r" in text or "\n" in text:
        raise SdpError(f"{what} contains a line break: {text!r}")
    return text


def _media_lines(track: Track, control: str) -> list[str]:
    pt = payload_type(track)
    if track.codec == "h264":
        if len(track.sps) < 4 or not track.pps:
            raise SdpError(f"track {track.index}: H.264 without a usable SPS and PPS")
        sprop = ",".join(base64.b64encode(ps).decode("ascii") for ps in (track.sps, track.pps))
        # RFC 6184 §8.1: profile_idc, constraint flags and level_idc, the SPS bytes 1-3.
        profile_level_id = track.sps[1:4].hex().upper()
        lines = [
            f"m=video 0 RTP/AVP {pt}",
            f"a=rtpmap:{pt} H264/{track.clock_rate}",
            f"a=fmtp:{pt} packetization-mode=1;profile-level-id={profile_level_id};"
            f"sprop-parameter-sets={sprop}",
        ]
    else:
        if not track.config or track.channels <= 0:
            raise SdpError(f"track {track.index}: AAC without AudioSpecificConfig or channels")
        lines = [
            f"m=audio 0 RTP/AVP {pt}",
            f"a=rtpmap:{pt} MPEG4-GENERIC/{track.clock_rate}/{track.channels}",
            f"a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;"
            f"indexlength=3;indexdeltalength=3;config={track.config.hex()}",
        ]
    lines.append(f"a=control:{_single_line('control URL', control)}")
    return lines


def describe(tracks: Sequence[Track], duration: float, session_id: int,
             server_address: str = "127.0.0.1",
             control: Callable[[Track], str] | None = None, title: str = "",
             session_control: str = "*") -> str:
    """The SDP a DESCRIBE answers with: one media section per track, CRLF line endings.

    ``control(track)`` gives each track's ``a=control`` (e.g. an absolute URL carrying a
    token); by default it is ``track.control``, relative to the Content-Base.
    ``session_control`` is the session-level (aggregate) control: ``*`` means the
    Content-Base itself, or pass an absolute URL. A ``duration`` of 0 or less announces
    an open range (``npt=0-``).
    """
    if not tracks:
        raise SdpError("nothing to describe: no track")
    if session_id < 0:
        raise SdpError(f"session id {session_id} must be a non-negative integer")
    address_type = "IP6" if ":" in server_address else "IP4"
    end = f"{duration:.3f}" if duration > 0 else ""
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN {address_type} {_single_line('address', server_address)}",
        f"s={_single_line('title', title) or 'rtsp-resume'}",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        f"a=control:{_single_line('session control', session_control)}",
        f"a=range:npt=0-{end}",
    ]
    for track in tracks:
        lines += _media_lines(track, control(track) if control else track.control)
    return "\r\n".join(lines) + "\r\n"


# ---------------------------------------------------------------------------------------
# Reading


@dataclass
class MediaDescription:
    """One ``m=`` section. RTP details come from the first format's rtpmap and fmtp."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    payload_type: int | None = None
    encoding: str | None = None
    clock_rate: int | None = None
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict)  # parameter names in lower case
    control: str | None = None
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` of this section (None if absent)."""
        return next((value for key, value in self.attributes if key == name), None)

    def sprop_parameter_sets(self) -> list[bytes]:
        """H.264 SPS, PPS... from ``sprop-parameter-sets`` (RFC 6184 §8.1); [] if absent."""
        text = self.fmtp.get("sprop-parameter-sets", "")
        sets = []
        for item in filter(None, text.split(",")):
            try:
                sets.append(base64.b64decode(item, validate=True))
            except binascii.Error as exc:
                raise SdpError(f"sprop-parameter-sets item {item!r} is not base64") from exc
        return sets

    def aac_config(self) -> bytes:
        """The AudioSpecificConfig from the RFC 3640 ``config`` parameter."""
        text = self.fmtp.get("config")
        if text is None:
            raise SdpError(f"{self.kind} section has no config parameter in its fmtp")
        try:
            return bytes.fromhex(text)
        except ValueError as exc:
            raise SdpError(f"config {text!r} is not hexadecimal") from exc


@dataclass
class SessionDescription:
    """A parsed SDP: the session-level fields a player needs, then the media sections.

    ``range`` is (start, end) in seconds from ``a=range:npt=``, end None for an open
    range; ``range`` is None when absent, not in NPT, or starting at ``now``.
    """

    version: int
    origin: str = ""
    session_name: str = ""
    connection: str | None = None
    control: str | None = None
    range: tuple[float, float | None] | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first session-level ``a=name:value`` (None if absent)."""
        return next((value for key, value in self.attributes if key == name), None)


_LINE = re.compile(r"([a-z])=(.*)")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() also accepts "²", which int() refuses
_NPT_TIME = re.compile(r"(?:(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)|(\d+(?:\.\d*)?))")


def _npt_seconds(text: str) -> float:
    match = _NPT_TIME.fullmatch(text)
    if not match:
        raise SdpError(f"bad NPT time {text!r}")
    hours, minutes, seconds, plain = match.groups()
    if plain is not None:
        return float(plain)
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _parse_range(value: str) -> tuple[float, float | None] | None:
    """RFC 2326 §3.6 NPT range, as used by ``a=range``; None for other units or ``now``."""
    unit, sep, span = value.strip().partition("=")
    if not sep or unit.strip() != "npt":
        return None
    start, sep, end = span.strip().partition("-")
    if not sep:
        raise SdpError(f"a=range:{value}: no '-' in the NPT range")
    if start.strip() == "now":
        return None
    return _npt_seconds(start.strip()), _npt_seconds(end.strip()) if end.strip() else None


def _parse_media(number: int, value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"line {number}: m={value!r} needs media, port, proto and a format")
    kind, port_text, proto, *formats = parts
    port = port_text.partition("/")[0]
    if not _DIGITS.fullmatch(port) or int(port) > 65535:
        raise SdpError(f"line {number}: bad port {port_text!r} in m= line")
    payload = int(formats[0]) if _DIGITS.fullmatch(formats[0]) else None
    if payload is not None and payload > 127:
        raise SdpError(f"line {number}: RTP payload type {payload} is above 127")
    return MediaDescription(kind, int(port), proto, formats, payload_type=payload)


def _apply_rtpmap(number: int, media: MediaDescription, value: str) -> None:
    fmt, _, mapping = value.partition(" ")
    if fmt != media.formats[0]:
        return
    encoding, *rest = mapping.strip().split("/")
    if not encoding or not rest or not all(_DIGITS.fullmatch(item) for item in rest):
        raise SdpError(f"line {number}: bad rtpmap {value!r} (expected 'PT NAME/RATE[/CH]')")
    media.encoding = encoding
    media.clock_rate = int(rest[0])
    media.channels = int(rest[1]) if len(rest) > 1 else None


def _apply_fmtp(media: MediaDescription, value: str) -> None:
    fmt, _, params = value.partition(" ")
    if fmt != media.formats[0]:
        return
    for param in params.split(";"):
        name, _, param_value = param.strip().partition("=")
        if name:
            media.fmtp[name.strip().lower()] = param_value.strip()


def parse(text: str) -> SessionDescription:
    """Read an SDP (CRLF or LF line endings); raise :class:`SdpError` if it is malformed."""
    lines = [line for line in re.split(r"\r?\n", text) if line.strip()]
    if not lines:
        raise SdpError("empty session description")
    if lines[0].strip() != "v=0":
        raise SdpError(f"an SDP starts with 'v=0', got {lines[0][:40]!r}")
    session = SessionDescription(version=0)
    media: MediaDescription | None = None
    for number, line in enumerate(lines[1:], start=2):
        match = _LINE.fullmatch(line.rstrip())
        if not match:
            raise SdpError(f"line {number}: {line[:60]!r} is not of the form x=value")
        kind, value = match.groups()
        if kind == "m":
            media = _parse_media(number, value)
            session.media.append(media)
        elif kind == "c":
            if media is None:
                session.connection = value
            else:
                media.connection = value
        elif kind == "o" and media is None:
            session.origin = value
        elif kind == "s" and media is None:
            session.session_name = value
        elif kind == "v":
            raise SdpError(f"line {number}: a second v= line")
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            attribute = (name, attr_value if sep else None)
            if media is None:
                session.attributes.append(attribute)
                if name == "control":
                    session.control = attr_value
                elif name == "range":
                    session.range = _parse_range(attr_value)
            else:
                media.attributes.append(attribute)
                if name == "control":
                    media.control = attr_value
                elif name == "rtpmap":
                    _apply_rtpmap(number, media, attr_value)
                elif name == "fmtp":
                    _apply_fmtp(media, attr_value)
        # Other line types (i, u, e, p, b, t, r, z, k) carry nothing a player needs here.
    return session


def resolve_control(base_url: str, control: str | None) -> str:
    """The URL to SETUP/PLAY for an ``a=control`` value (RFC 2326 §C.1.1).

    An absolute URL is kept; ``*`` or no control means the base (aggregate) URL itself;
    a relative one is joined to ``base_url`` (the Content-Base, else the DESCRIBE URL),
    treated as a directory whether or not it ends in ``/``, as FFmpeg and live555 do:
    ``rtsp://h/clip`` + ``track1`` -> ``rtsp://h/clip/track1``. The base's query is not
    carried over: a server needing one (e.g. a token) should send absolute controls.
    """
    if control is None or control.strip() in ("", "*"):
        return base_url
    control = control.strip()
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", control):
        return control
    scheme, netloc, path, _query, _fragment = urlsplit(base_url)
    if not scheme or not netloc:
        raise SdpError(f"cannot resolve control {control!r} against {base_url!r}")
    if not path.endswith("/"):
        path += "/"
    # urljoin only resolves relative references for schemes it knows (rtsps is not one):
    # resolve as http, then put the real scheme back.
    joined = urljoin(urlunsplit(("http", netloc, path, "", "")), control)
    return urlunsplit((scheme,) + tuple(urlsplit(joined))[1:])
