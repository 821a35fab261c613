"""Session descriptions (SDP, RFC 4566) for RTSP DESCRIBE: the server writes one with
:func:`describe`, the terminal reads one with :func:`parse`. Codec parameters follow the payload
formats: H.264 ``fmtp`` per RFC 6184 §8.1, AAC-hbr per RFC 3640 (``config`` is the
AudioSpecificConfig in hex); control URLs follow RFC 2326 §C.1.1."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

from rtsp_resume import rtsp
from rtsp_resume.media import Track

VIDEO_PAYLOAD_TYPE, AUDIO_PAYLOAD_TYPE = 96, 97  # dynamic (RFC 3551 §6)


class SdpError(ValueError):
    """Malformed SDP, or a track that cannot be described."""


def payload_type(track: Track) -> int:
    """The dynamic RTP payload type :func:`describe` announces for ``track``."""
    if track.codec not in ("h264", "aac"):
        raise SdpError(f"track {track.index}: codec {track.codec!r} has no RTP mapping here")
    return VIDEO_PAYLOAD_TYPE if track.codec == "h264" else AUDIO_PAYLOAD_TYPE


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
        # RFC 6184 §8.1: profile-level-id is profile_idc, constraints, level_idc (SPS 1-3).
        lines = [f"m=video 0 RTP/AVP {pt}", f"a=rtpmap:{pt} H264/{track.clock_rate}",
                 f"a=fmtp:{pt} packetization-mode=1;profile-level-id="
                 f"{track.sps[1:4].hex().upper()};sprop-parameter-sets={sprop}"]
    else:
        if not track.config or track.channels <= 0:
            raise SdpError(f"track {track.index}: AAC without AudioSpecificConfig or channels")
        lines = [f"m=audio 0 RTP/AVP {pt}",
                 f"a=rtpmap:{pt} MPEG4-GENERIC/{track.clock_rate}/{track.channels}",
                 f"a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;"
                 f"indexlength=3;indexdeltalength=3;config={track.config.hex()}"]
    return lines + [f"a=control:{_single_line('control URL', control)}"]


def describe(tracks: Sequence[Track], duration: float, session_id: int,
             server_address: str = "127.0.0.1", control: Callable[[Track], str] | None = None,
             title: str = "", session_control: str = "*") -> str:
    """The SDP a DESCRIBE answers with: one media section per track, CRLF line endings.
    ``control(track)`` gives each track's ``a=control`` (an absolute URL carrying a token,
    say), by default ``track.control`` relative to the Content-Base; ``session_control``
    is the aggregate one (``*``: the Content-Base). ``duration`` <= 0 announces ``npt=0-``."""
    if not tracks:
        raise SdpError("nothing to describe: no track")
    lines = ["v=0",
             f"o=- {session_id} 1 IN {'IP6' if ':' in server_address else 'IP4'} "
             f"{_single_line('address', server_address)}",
             f"s={_single_line('title', title) or 'rtsp-resume'}", "c=IN IP4 0.0.0.0", "t=0 0",
             f"a=control:{_single_line('session control', session_control)}",
             f"a=range:npt=0-{f'{duration:.3f}' if duration > 0 else ''}"]
    for track in tracks:
        lines += _media_lines(track, control(track) if control else track.control)
    return "\r\n".join(lines) + "\r\n"


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

    def sprop_parameter_sets(self) -> list[bytes]:
        """H.264 SPS, PPS... from ``sprop-parameter-sets`` (RFC 6184 §8.1); [] if absent."""
        text = self.fmtp.get("sprop-parameter-sets", "")
        try:
            return [base64.b64decode(item, validate=True) for item in text.split(",") if item]
        except ValueError as exc:  # binascii.Error is one
            raise SdpError(f"sprop-parameter-sets {text!r} is not base64") from exc

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
    """A parsed SDP, session level then media sections. ``range``: (start, end) seconds of
    ``a=range:npt=`` (end None if open), None if absent, not npt, or starting at now."""
    version: int
    origin: str = ""
    session_name: str = ""
    connection: str | None = None
    control: str | None = None
    range: tuple[float, float | None] | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)


_LINE = re.compile(r"([a-z])=(.*)")
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() also accepts "²", which int() refuses


def _parse_range(value: str) -> tuple[float, float | None] | None:
    """An ``a=range`` value (RFC 2326 §3.6); None for another unit or a start at ``now``."""
    try:
        start, end = rtsp.parse_range(value)
    except rtsp.RtspProtocolError as exc:
        if exc.status == 457 and value.strip()[:3].lower() != "npt":  # smpte, clock...
            return None
        raise SdpError(f"a=range:{value}: not an NPT range ({exc.reason})") from None
    return None if start is None else (start, end)


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


def _apply_format(number: int, media: MediaDescription, name: str, value: str) -> None:
    """An rtpmap or fmtp (RFC 4566 §6) of the section's first format; others are ignored."""
    fmt, _, rest = value.partition(" ")
    if fmt != media.formats[0]:
        return
    if name == "fmtp":
        pairs = (param.strip().partition("=") for param in rest.split(";"))
        media.fmtp.update((key.strip().lower(), v.strip()) for key, _, v in pairs if key)
        return
    encoding, *numbers = rest.strip().split("/")
    if not encoding or not numbers or not all(_DIGITS.fullmatch(item) for item in numbers):
        raise SdpError(f"line {number}: bad rtpmap {value!r} (expected 'PT NAME/RATE[/CH]')")
    media.encoding, media.clock_rate = encoding, int(numbers[0])
    media.channels = int(numbers[1]) if len(numbers) > 1 else None


def parse(text: str) -> SessionDescription:
    """Read an SDP with CRLF or LF line endings."""
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
            (media or session).connection = value
        elif kind in ("o", "s") and media is None:
            setattr(session, "origin" if kind == "o" else "session_name", value)
        elif kind == "v":
            raise SdpError(f"line {number}: a second v= line")
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            (media or session).attributes.append((name, attr_value if sep else None))
            if name == "control":
                (media or session).control = attr_value
            elif name == "range" and media is None:
                session.range = _parse_range(attr_value)
            elif name in ("rtpmap", "fmtp") and media is not None:
                _apply_format(number, media, name, attr_value)
        # Other line types (i, u, e, p, b, t, r, z, k) carry nothing a player needs here.
    return session


def resolve_control(base_url: str, control: str | None) -> str:
    """The URL to SETUP/PLAY for an ``a=control`` (RFC 2326 §C.1.1): an absolute URL as it is,
    ``*`` or none the base, a relative one joined to ``base_url`` as a directory like FFmpeg
    and live555 (``rtsp://h/clip`` + ``track1`` -> ``rtsp://h/clip/track1``), query dropped."""
    control = (control or "").strip()
    if control in ("", "*"):
        return base_url
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", control):
        return control
    scheme, netloc, path, _query, _fragment = urlsplit(base_url)
    if not scheme or not netloc:
        raise SdpError(f"cannot resolve control {control!r} against {base_url!r}")
    path += "" if path.endswith("/") else "/"
    # urljoin resolves only for schemes it knows (not rtsps): join as http, then swap back.
    joined = urljoin(urlunsplit(("http", netloc, path, "", "")), control)
    return urlunsplit((scheme,) + tuple(urlsplit(joined))[1:])
