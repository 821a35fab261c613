"""RTP and RTCP packets and the H.264 and AAC payload formats, as pure code.

Nothing here opens a socket or reads a clock: callers pass bytes, packets and times in,
and get bytes, packets and reports out. Every packet type is a dataclass whose
``bytes(...)`` is its wire form and whose ``parse`` classmethod reads it back. Anything
malformed raises :class:`RtpError` (a ``ValueError``) with a message saying what is wrong,
so a server or a terminal can drop the packet and carry on.

Standards:
- RFC 3550: RTP fixed header (§5.1), header extension (§5.3.1), RTCP (§6.4-6.6),
  receiver statistics (Appendix A.1, A.3, A.8).
- RFC 6184: H.264 payload, non-interleaved mode (``packetization-mode=1``).
- RFC 3640: MPEG-4 audio (AAC) payload, mode ``AAC-hbr``.

How a sender uses it (one :class:`RtpStream` per track):

    stream = RtpStream(payload_type=96, clock_rate=90000)
    for payload, marker in H264Packetizer().packetize(access_unit.nals):
        sock.send(bytes(stream.packet(payload, stream.ticks(access_unit.pts), marker)))
    sock_rtcp.send(stream.rtcp_report(time.time(), stream.ticks(position), cname="server"))
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQUENCE_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32
# Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2_208_988_800

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1

H264_STAP_A = 24
H264_FU_A = 28


class RtpError(ValueError):
    """A malformed RTP or RTCP packet or payload, or a value that cannot be encoded."""


def _check_range(name: str, value: int, bits: int) -> None:
    # struct.pack would raise struct.error; say which field is wrong instead.
    if not 0 <= value < (1 << bits):
        raise RtpError(f"{name}={value} does not fit in {bits} bits")


# ---------------------------------------------------------------------------------------
# RTP data packets


@dataclass
class RtpHeaderExtension:
    """RTP header extension, RFC 3550 §5.3.1: a profile-defined 16-bit value and data.

    ``data`` is kept as is; its length must be a multiple of 4 (the wire length is in
    32-bit words).
    """

    profile: int
    data: bytes = b""


@dataclass
class RtpPacket:
    """An RTP data packet, RFC 3550 §5.1.

    ``padding`` is the number of padding octets at the end of the packet, count octet
    included (0: no padding). The padding octets before the count are written as zeros.
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension: RtpHeaderExtension | None = None
    padding: int = 0
    payload: bytes = b""

    def __bytes__(self) -> bytes:
        _check_range("payload_type", self.payload_type, 7)
        _check_range("sequence_number", self.sequence_number, 16)
        _check_range("timestamp", self.timestamp, 32)
        _check_range("ssrc", self.ssrc, 32)
        _check_range("padding", self.padding, 8)
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs, at most 15 fit the CC field")
        for source in self.csrc:
            _check_range("csrc", source, 32)
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            struct.pack("!BBHII", first, second, self.sequence_number, self.timestamp,
                        self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            ext = self.extension
            _check_range("extension profile", ext.profile, 16)
            if len(ext.data) % 4:
                raise RtpError(f"header extension of {len(ext.data)} bytes: not 32-bit words")
            _check_range("extension length", len(ext.data) // 4, 16)
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Read one RTP packet; raise :class:`RtpError` if it is not a valid one."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet of {size} bytes: the fixed header alone needs 12")
        first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6}, expected 2")
        count = first & 0x0F
        pos = RTP_HEADER_SIZE + 4 * count
        if size < pos:
            raise RtpError(f"RTP packet of {size} bytes is too short for {count} CSRCs")
        csrc = list(struct.unpack_from(f"!{count}I", data, RTP_HEADER_SIZE))
        extension = None
        if first & 0x10:
            if size < pos + 4:
                raise RtpError("RTP extension bit set but the extension header is missing")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if size < pos + 4 * words:
                raise RtpError(f"RTP header extension of {words} words overruns the packet")
            extension = RtpHeaderExtension(profile, bytes(data[pos:pos + 4 * words]))
            pos += 4 * words
        end = size
        padding = 0
        if first & 0x20:
            if size == pos:
                raise RtpError("RTP padding bit set but there is no padding count octet")
            padding = data[-1]
            if padding == 0:
                raise RtpError("RTP padding count is 0 (it includes itself, so >= 1)")
            if padding > size - pos:
                raise RtpError(f"RTP padding of {padding} bytes overruns the header")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            csrc=csrc,
            extension=extension,
            padding=padding,
            payload=bytes(data[pos:end]),
        )


# ---------------------------------------------------------------------------------------
# RTCP


def ntp_now(wallclock: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 §4) of a Unix time in seconds.

    Named for its use: pass ``time.time()`` at the instant a sender report describes.
    """
    seconds = int(wallclock // 1)
    fraction = int((wallclock - seconds) * (1 << 32))
    return (((seconds + NTP_UNIX_OFFSET) % (1 << 32)) << 32) | fraction


def ntp_to_unix(ntp: int) -> float:
    """Unix time in seconds of a 64-bit NTP timestamp (era 0, i.e. before 2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    # §6.4.1: the length field counts 32-bit words minus one, header included.
    if len(body) % 4:
        raise RtpError(f"RTCP body of {len(body)} bytes is not a whole number of words")
    _check_range("RTCP count", count, 5)
    _check_range("RTCP length", len(body) // 4, 16)
    return struct.pack("!BBH", (RTP_VERSION << 6) | count, packet_type, len(body) // 4) + body


def _rtcp_split(data: bytes, packet_type: int | None = None) -> tuple[int, int, bytes]:
    """(packet type, count, body without padding) of exactly one RTCP packet."""
    if len(data) < 4:
        raise RtpError(f"RTCP packet of {len(data)} bytes: the header needs 4")
    first, kind, words = struct.unpack_from("!BBH", data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTCP version {first >> 6}, expected 2")
    if packet_type is not None and kind != packet_type:
        raise RtpError(f"RTCP packet type {kind}, expected {packet_type}")
    if len(data) != 4 * (words + 1):
        raise RtpError(f"RTCP length field says {4 * (words + 1)} bytes, got {len(data)}")
    body = bytes(data[4:])
    if first & 0x20:
        padding = data[-1] if body else 0
        if not 1 <= padding <= len(body):
            raise RtpError(f"RTCP padding count {padding} is invalid")
        body = body[:-padding]
    return kind, first & 0x1F, body


@dataclass
class ReportBlock:
    """One reception report block, RFC 3550 §6.4.1 (in SR and RR packets).

    ``packets_lost`` is signed (duplicates can make it negative) and is clamped to the
    24-bit field when written, as Appendix A.3 says. ``highest_sequence`` is the extended
    (cycle-counting) sequence number; ``jitter``, ``lsr`` and ``dlsr`` are in the units
    of the RFC: timestamp units, middle 32 bits of an NTP time, 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    SIZE: ClassVar[int] = 24

    def __bytes__(self) -> bytes:
        _check_range("ssrc", self.ssrc, 32)
        _check_range("fraction_lost", self.fraction_lost, 8)
        for name in ("highest_sequence", "jitter", "lsr", "dlsr"):
            _check_range(name, getattr(self, name), 32)
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return struct.pack("!IIIIII", self.ssrc, (self.fraction_lost << 24) | lost,
                           self.highest_sequence, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def parse(cls, data: bytes) -> ReportBlock:
        if len(data) != cls.SIZE:
            raise RtpError(f"report block of {len(data)} bytes, expected 24")
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", data)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[list[ReportBlock], bytes]:
    end = offset + count * ReportBlock.SIZE
    if len(body) < end:
        raise RtpError(f"RTCP report announces {count} blocks but is too short for them")
    blocks = [
        ReportBlock.parse(body[pos:pos + ReportBlock.SIZE])
        for pos in range(offset, end, ReportBlock.SIZE)
    ]
    return blocks, body[end:]


@dataclass
class SenderReport:
    """RTCP sender report (SR), RFC 3550 §6.4.1.

    ``ntp_timestamp`` (64-bit, see :func:`ntp_now`) and ``rtp_timestamp`` name the same
    instant, which lets a receiver map RTP time to wall-clock time. ``extension`` holds
    profile-specific data after the report blocks, kept as is.
    """

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        _check_range("ssrc", self.ssrc, 32)
        _check_range("ntp_timestamp", self.ntp_timestamp, 64)
        for name in ("rtp_timestamp", "packet_count", "octet_count"):
            _check_range(name, getattr(self, name), 32)
        body = struct.pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                           self.packet_count, self.octet_count)
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _rtcp_header(RTCP_SR, len(self.reports), body)

    @classmethod
    def parse(cls, data: bytes) -> SenderReport:
        _, count, body = _rtcp_split(data, RTCP_SR)
        if len(body) < 24:
            raise RtpError(f"RTCP SR body of {len(body)} bytes, the sender info needs 24")
        ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", body)
        reports, rest = _parse_blocks(body, 24, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, rest)


@dataclass
class ReceiverReport:
    """RTCP receiver report (RR), RFC 3550 §6.4.2."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        _check_range("ssrc", self.ssrc, 32)
        body = struct.pack("!I", self.ssrc)
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _rtcp_header(RTCP_RR, len(self.reports), body)

    @classmethod
    def parse(cls, data: bytes) -> ReceiverReport:
        _, count, body = _rtcp_split(data, RTCP_RR)
        if len(body) < 4:
            raise RtpError("RTCP RR without the reporter's SSRC")
        (ssrc,) = struct.unpack_from("!I", body)
        reports, rest = _parse_blocks(body, 4, count)
        return cls(ssrc, reports, rest)


@dataclass
class SdesChunk:
    """One SDES chunk: a source and its (item type, text) pairs, RFC 3550 §6.5."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        _check_range("ssrc", self.ssrc, 32)
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, text in self.items:
            if not 1 <= kind <= 255:
                raise RtpError(f"SDES item type {kind} (0 is the end of list marker)")
            if len(text) > 255:
                raise RtpError(f"SDES item of {len(text)} bytes, at most 255")
            out += bytes([kind, len(text)]) + text
        # The item list ends with at least one null octet, then pads to a word boundary.
        out += bytes(4 - len(out) % 4)
        return bytes(out)


@dataclass
class SourceDescription:
    """RTCP source description (SDES), RFC 3550 §6.5."""

    chunks: list[SdesChunk] = field(default_factory=list)

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The one SDES every compound RTCP packet must carry (§6.1): the CNAME item."""
        return cls([SdesChunk(ssrc, [(SDES_CNAME, cname.encode("utf-8"))])])

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(chunk) for chunk in self.chunks)
        return _rtcp_header(RTCP_SDES, len(self.chunks), body)

    @classmethod
    def parse(cls, data: bytes) -> SourceDescription:
        _, count, body = _rtcp_split(data, RTCP_SDES)
        chunks = []
        pos = 0
        for _ in range(count):
            if len(body) < pos + 4:
                raise RtpError("SDES chunk is missing its SSRC")
            chunk = SdesChunk(struct.unpack_from("!I", body, pos)[0])
            pos += 4
            while True:
                if pos >= len(body):
                    raise RtpError("SDES chunk is missing its end of list null octet")
                kind = body[pos]
                if kind == 0:
                    pos = (pos + 4) & ~3  # skip the null octet and the padding to a word
                    break
                if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                    raise RtpError("SDES item overruns its packet")
                length = body[pos + 1]
                chunk.items.append((kind, body[pos + 2:pos + 2 + length]))
                pos += 2 + length
            chunks.append(chunk)
        if pos > len(body):
            raise RtpError("SDES padding overruns its packet")
        return cls(chunks)


@dataclass
class Goodbye:
    """RTCP BYE, RFC 3550 §6.6: these sources are leaving, with an optional reason."""

    sources: list[int] = field(default_factory=list)
    reason: bytes = b""

    def __bytes__(self) -> bytes:
        for source in self.sources:
            _check_range("ssrc", source, 32)
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            if len(self.reason) > 255:
                raise RtpError(f"BYE reason of {len(self.reason)} bytes, at most 255")
            tail = bytes([len(self.reason)]) + self.reason
            body += tail + bytes(-len(tail) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), body)

    @classmethod
    def parse(cls, data: bytes) -> Goodbye:
        _, count, body = _rtcp_split(data, RTCP_BYE)
        if len(body) < 4 * count:
            raise RtpError(f"BYE announces {count} sources but is too short for them")
        sources = list(struct.unpack_from(f"!{count}I", body))
        reason = b""
        if len(body) > 4 * count:
            length = body[4 * count]
            if 4 * count + 1 + length > len(body):
                raise RtpError("BYE reason overruns its packet")
            reason = body[4 * count + 1:4 * count + 1 + length]
        return cls(sources, reason)


@dataclass
class RtcpPacket:
    """Any other RTCP packet (APP, feedback...), kept as type, count field and body."""

    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        _check_range("packet_type", self.packet_type, 8)
        return _rtcp_header(self.packet_type, self.count, self.body)

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        kind, count, body = _rtcp_split(data)
        return cls(kind, count, body)


Rtcp = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpPacket

_RTCP_TYPES: dict[int, type[SenderReport | ReceiverReport | SourceDescription | Goodbye]] = {
    RTCP_SR: SenderReport,
    RTCP_RR: ReceiverReport,
    RTCP_SDES: SourceDescription,
    RTCP_BYE: Goodbye,
}


def parse_rtcp(data: bytes) -> list[Rtcp]:
    """Split a compound RTCP packet (RFC 3550 §6.1) and parse each part.

    Every part must be well formed, and its packet type in 192-223 (the range RFC 5761 §4
    keeps for RTCP, which tells RTCP apart from RTP). The compound rules of §6.1 (SR or
    RR first, an SDES CNAME present) are not enforced here: some senders break them and
    the reports are still usable.
    """
    if not data:
        raise RtpError("empty RTCP packet")
    packets: list[Rtcp] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpError(f"{len(data) - pos} trailing bytes after the last RTCP packet")
        kind = data[pos + 1]
        if not 192 <= kind <= 223:
            raise RtpError(f"RTCP packet type {kind} is outside 192-223")
        size = 4 * (struct.unpack_from("!H", data, pos + 2)[0] + 1)
        if pos + size > len(data):
            raise RtpError(f"RTCP packet of {size} bytes overruns the compound packet")
        parser = _RTCP_TYPES.get(kind, RtcpPacket)
        packets.append(parser.parse(data[pos:pos + size]))
        pos += size
    return packets


# ---------------------------------------------------------------------------------------
# H.264, RFC 6184, packetization-mode=1 (single NAL unit, STAP-A, FU-A)


def _nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


class H264Packetizer:
    """Cuts the NAL units of one access unit into RTP payloads, RFC 6184 §6.3.

    ``mtu`` is the largest payload (RTP header not counted) a packet may carry. A NAL
    unit that fits goes alone in a single NAL unit packet (§5.6); a larger one is cut into
    FU-A fragments (§5.8). With ``aggregate=True``, runs of consecutive small NAL units
    (SPS, PPS, SEI...) share a STAP-A packet (§5.7.1) when they fit together.
    """

    def __init__(self, mtu: int = 1400, aggregate: bool = False) -> None:
        if mtu < 3:
            raise ValueError(f"mtu={mtu}: an FU-A packet needs 2 header bytes and 1 of data")
        self.mtu = mtu
        self.aggregate = aggregate

    def packetize(self, nals: Sequence[bytes]) -> list[tuple[bytes, bool]]:
        """(payload, marker) pairs for one access unit; the marker is set on the last."""
        for nal in nals:
            if not nal:
                raise RtpError("empty NAL unit")
            if not 1 <= _nal_type(nal) <= 23:
                raise RtpError(f"NAL unit type {_nal_type(nal)} cannot be sent as is "
                               "(expected 1-23: bare NAL units, no start code)")
        payloads: list[bytes] = []
        pending: list[bytes] = []  # small NAL units waiting for a STAP-A
        for nal in nals:
            if self.aggregate and self._stap_size(pending + [nal]) <= self.mtu:
                pending.append(nal)
                continue
            payloads.extend(self._flush_stap(pending))
            pending = []
            if self.aggregate and self._stap_size([nal]) <= self.mtu:
                pending.append(nal)
            elif len(nal) <= self.mtu:
                payloads.append(bytes(nal))
            else:
                payloads.extend(self._fragment(nal))
        payloads.extend(self._flush_stap(pending))
        return [(payload, i == len(payloads) - 1) for i, payload in enumerate(payloads)]

    @staticmethod
    def _stap_size(nals: Sequence[bytes]) -> int:
        return 1 + sum(2 + len(nal) for nal in nals)

    @staticmethod
    def _flush_stap(nals: list[bytes]) -> list[bytes]:
        if len(nals) < 2:
            return [bytes(nal) for nal in nals]
        # §5.7.1: F is the OR of the F bits, NRI the highest NRI of the aggregated units.
        forbidden = max(nal[0] & 0x80 for nal in nals)
        nri = max(nal[0] & 0x60 for nal in nals)
        return [bytes([forbidden | nri | H264_STAP_A])
                + b"".join(struct.pack("!H", len(nal)) + nal for nal in nals)]

    def _fragment(self, nal: bytes) -> list[bytes]:
        # §5.8: the NAL header byte is not sent as such; its F and NRI bits go into the
        # FU indicator and its type into the FU header of every fragment.
        indicator = bytes([(nal[0] & 0xE0) | H264_FU_A])
        body = memoryview(nal)[1:]
        step = self.mtu - 2
        starts = range(0, len(body), step)
        fragments = []
        for start in starts:
            header = _nal_type(nal)
            if start == 0:
                header |= 0x80
            if start + step >= len(body):
                header |= 0x40
            fragments.append(indicator + bytes([header]) + body[start:start + step])
        return fragments


@dataclass
class H264AccessUnit:
    """NAL units the depacketizer put back together for one RTP timestamp.

    ``complete`` is False when a packet of this unit may have been lost (a sequence gap
    inside it or just before it) or a malformed packet was dropped: such a picture may
    lack slices. ``first_sequence``/``last_sequence`` are the 16-bit RTP sequence numbers
    of the first and last packet that contributed.
    """

    rtp_timestamp: int
    nals: list[bytes]
    complete: bool
    first_sequence: int
    last_sequence: int


class H264Depacketizer:
    """Puts RTP packets back into H.264 access units, RFC 6184 packetization-mode 1.

    Accepts single NAL unit packets, STAP-A and FU-A (the interleaved-mode types STAP-B,
    MTAP and FU-B are dropped). A unit is finished by its marker bit or, if the marker
    packet was lost, by the first packet with another timestamp. Packets are expected in
    order: a duplicate or a late (reordered) packet is dropped, a gap counts the missing
    numbers in ``lost`` and throws away an FU-A whose fragments are no longer all there.
    Packet content is never trusted: a malformed payload is dropped and counted in
    ``discarded``, never raised, so a bad packet cannot stop a player.
    """

    def __init__(self) -> None:
        self.lost = 0
        self.discarded = 0
        self._last_sequence: int | None = None
        self._unit: H264AccessUnit | None = None
        self._fragment: bytearray | None = None

    def feed(self, packet: RtpPacket) -> list[H264AccessUnit]:
        """Take one packet; return the access units it finished (often none)."""
        finished: list[H264AccessUnit] = []
        sequence = packet.sequence_number
        gap = False
        if self._last_sequence is not None:
            step = (sequence - self._last_sequence) % SEQUENCE_MOD
            if step == 0 or step >= SEQUENCE_MOD // 2:
                self.discarded += 1
                return finished
            if step > 1:
                self.lost += step - 1
                gap = True
        self._last_sequence = sequence

        if gap and self._unit is not None:
            # The missing packets were the end of this unit, the start of the next, or both.
            self._unit.complete = False
            self._fragment = None
        if self._unit is not None and self._unit.rtp_timestamp != packet.timestamp:
            finished.extend(self.flush())
        if self._unit is None:
            self._unit = H264AccessUnit(packet.timestamp, [], not gap, sequence, sequence)
        unit = self._unit
        unit.last_sequence = sequence
        if not self._take(packet.payload, unit):
            self.discarded += 1
            unit.complete = False
        if packet.marker:
            finished.extend(self.flush())
        return finished

    def flush(self) -> list[H264AccessUnit]:
        """Finish the unit in progress (call at the end of a stream); [] if none."""
        unit, self._unit = self._unit, None
        if unit is None:
            return []
        if self._fragment is not None:
            self._fragment = None
            unit.complete = False
        return [unit] if unit.nals else []

    def _take(self, payload: bytes, unit: H264AccessUnit) -> bool:
        """Add a payload's NAL units to ``unit``; False if the payload had to be dropped."""
        if not payload:
            return False
        kind = _nal_type(payload)
        if kind != H264_FU_A and self._fragment is not None:  # an FU-A that never ended
            self._fragment = None
            unit.complete = False
        if 1 <= kind <= 23:
            unit.nals.append(bytes(payload))
            return True
        if kind == H264_STAP_A:
            nals = []
            pos = 1
            while pos < len(payload):
                if pos + 2 > len(payload):
                    return False
                size = struct.unpack_from("!H", payload, pos)[0]
                pos += 2
                if size == 0 or pos + size > len(payload):
                    return False
                nals.append(bytes(payload[pos:pos + size]))
                pos += size
            if not nals:
                return False
            unit.nals.extend(nals)
            return True
        if kind == H264_FU_A:
            return self._take_fragment(payload, unit)
        return False  # STAP-B, MTAP16/24, FU-B (interleaved mode) or undefined types

    def _take_fragment(self, payload: bytes, unit: H264AccessUnit) -> bool:
        if len(payload) < 2:
            return False
        header = payload[1]
        start, end = bool(header & 0x80), bool(header & 0x40)
        if start:
            if self._fragment is not None:
                unit.complete = False
            nal_header = (payload[0] & 0xE0) | (header & 0x1F)
            self._fragment = bytearray([nal_header])
        elif self._fragment is None:
            # The start of this NAL unit was lost: skip the rest of it silently (the loss
            # was already counted when the gap was seen).
            unit.complete = False
            return True
        self._fragment += payload[2:]
        if end:
            unit.nals.append(bytes(self._fragment))
            self._fragment = None
        return True


# ---------------------------------------------------------------------------------------
# AAC, RFC 3640 mode AAC-hbr: sizeLength=13, indexLength=3, indexDeltaLength=3

AAC_MAX_FRAME = (1 << 13) - 1


def aac_payload(frames: Sequence[bytes]) -> bytes:
    """An RFC 3640 AAC-hbr payload (§3.2.1) carrying whole AAC frames.

    Layout: AU-headers-length (16 bits, counted in bits), one 16-bit AU-header per frame
    (13-bit size, 3-bit index or index-delta, all 0: frames in order), then the frames.
    Fragmenting a frame across packets (§3.2.3) is not done: an AAC frame is at most 768
    bytes per channel, so one frame per packet stays near or under an Ethernet MTU.
    """
    if not frames:
        raise RtpError("an AAC payload needs at least one frame")
    headers = []
    for frame in frames:
        if not 1 <= len(frame) <= AAC_MAX_FRAME:
            raise RtpError(f"AAC frame of {len(frame)} bytes: AU-size has 13 bits")
        headers.append(struct.pack("!H", len(frame) << 3))
    return struct.pack("!H", 16 * len(frames)) + b"".join(headers) + b"".join(frames)


def aac_frames(payload: bytes) -> list[bytes]:
    """The AAC frames of an RFC 3640 AAC-hbr payload, checking every length.

    Raises :class:`RtpError` for a malformed payload, for interleaving (a non-zero
    AU-Index-delta) and for a fragment of a frame spread over several packets (§3.2.3),
    which :func:`aac_payload` never produces.
    """
    if len(payload) < 2:
        raise RtpError(f"AAC payload of {len(payload)} bytes has no AU-headers-length")
    bits = struct.unpack_from("!H", payload)[0]
    if bits == 0 or bits % 16:
        raise RtpError(f"AU-headers-length of {bits} bits is not a whole number of "
                       "16-bit AAC-hbr headers")
    count = bits // 16
    data_start = 2 + 2 * count
    if len(payload) < data_start:
        raise RtpError(f"AAC payload of {len(payload)} bytes is too short for {count} headers")
    sizes = []
    for i in range(count):
        header = struct.unpack_from("!H", payload, 2 + 2 * i)[0]
        if i and header & 0x7:
            raise RtpError("interleaved AAC (non-zero AU-Index-delta) is not supported")
        sizes.append(header >> 3)
    available = len(payload) - data_start
    if count == 1 and sizes[0] > available:
        raise RtpError(f"AAC frame of {sizes[0]} bytes but only {available} present "
                       "(truncated, or a fragment: fragmented frames are not supported)")
    if sum(sizes) != available:
        raise RtpError(f"AU-headers announce {sum(sizes)} bytes of AAC frames, "
                       f"the payload holds {available}")
    frames = []
    pos = data_start
    for size in sizes:
        if size == 0:
            raise RtpError("AAC frame of size 0")
        frames.append(bytes(payload[pos:pos + size]))
        pos += size
    return frames


# ---------------------------------------------------------------------------------------
# Stream state: sender numbering and receiver statistics


class RtpStream:
    """Numbering state of one outgoing RTP stream (one track of one session).

    SSRC, first sequence number and timestamp origin are random unless given
    (RFC 3550 §5.1, §8). Timestamps handed to :meth:`packet` and :meth:`sender_report` are
    *media ticks*: the media time on the track's clock (``ticks(pts)``); the stream adds
    its random origin and wraps modulo 2**32. Keep a track's ticks continuous across
    PAUSE and seeks by always deriving them from the media time.
    """

    def __init__(self, payload_type: int, clock_rate: int, ssrc: int | None = None,
                 sequence: int | None = None, timestamp_base: int | None = None) -> None:
        _check_range("payload_type", payload_type, 7)
        if clock_rate <= 0:
            raise ValueError(f"clock_rate={clock_rate} must be positive")
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp_base = secrets.randbits(32) if timestamp_base is None else timestamp_base
        _check_range("ssrc", self.ssrc, 32)
        _check_range("sequence", self.sequence, 16)
        _check_range("timestamp_base", self.timestamp_base, 32)
        self.packet_count = 0
        self.octet_count = 0

    def ticks(self, seconds: float) -> int:
        """Media time in seconds as ticks of this stream's clock."""
        return round(seconds * self.clock_rate)

    def rtp_timestamp(self, ticks: int) -> int:
        """The RTP timestamp on the wire for media ``ticks`` (for RTP-Info ``rtptime``)."""
        return (self.timestamp_base + ticks) % TIMESTAMP_MOD

    @property
    def next_sequence(self) -> int:
        """The sequence number the next packet will carry (for RTP-Info ``seq``)."""
        return self.sequence

    def packet(self, payload: bytes, timestamp: int, marker: bool = False) -> RtpPacket:
        """Number the next packet; ``timestamp`` in media ticks."""
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence_number=self.sequence,
            timestamp=self.rtp_timestamp(timestamp),
            ssrc=self.ssrc,
            marker=marker,
            payload=bytes(payload),
        )
        self.sequence = (self.sequence + 1) % SEQUENCE_MOD
        self.packet_count += 1
        self.octet_count += len(payload)  # §6.4.1: payload octets only
        return packet

    def sender_report(self, wallclock: float, timestamp: int,
                      reports: Sequence[ReportBlock] = ()) -> SenderReport:
        """An SR saying media ``timestamp`` (ticks) is being sent at Unix time ``wallclock``.

        Pass the media position the stream has reached at ``wallclock`` (not the
        timestamp of the last packet sent) so receivers can map RTP time to wall time.
        """
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp_now(wallclock),
            rtp_timestamp=self.rtp_timestamp(timestamp),
            packet_count=self.packet_count % (1 << 32),
            octet_count=self.octet_count % (1 << 32),
            reports=list(reports),
        )

    def rtcp_report(self, wallclock: float, timestamp: int, cname: str) -> bytes:
        """A compound RTCP packet valid per RFC 3550 §6.1: SR then SDES CNAME."""
        sr = self.sender_report(wallclock, timestamp)
        return bytes(sr) + bytes(SourceDescription.cname(self.ssrc, cname))


def unwrap_sequence(sequence: int, highest: int | None) -> int:
    """The extended sequence number of a 16-bit ``sequence``: the one nearest ``highest``.

    ``highest`` is the highest extended number seen so far (None before the first).
    Numbers within half the 16-bit space ahead of it count as newer (possibly wrapping
    65535 -> 0), the others as older.
    """
    if highest is None:
        return sequence
    step = (sequence - highest) % SEQUENCE_MOD
    if step >= SEQUENCE_MOD // 2:
        step -= SEQUENCE_MOD
    return highest + step


class SequenceUnwrapper:
    """Turns a stream of 16-bit sequence numbers into extended, cycle-counting ones."""

    def __init__(self) -> None:
        self.highest: int | None = None

    def unwrap(self, sequence: int) -> int:
        extended = unwrap_sequence(sequence, self.highest)
        if self.highest is None or extended > self.highest:
            self.highest = extended
        return extended


class ReceptionStats:
    """Reception statistics of one RTP source, to fill RR report blocks.

    Follows RFC 3550 Appendix A.3 (loss) and A.8 (interarrival jitter). Simplified from
    A.1: no probation period and no resynchronisation after a huge jump, which suits one
    unicast source. Feed only the packets of one source: the first packet fixes ``ssrc``
    and packets with another SSRC are ignored. Times are seconds on any clock that does
    not jump (the same clock for arrivals and ``now``).
    """

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate={clock_rate} must be positive")
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.received = 0
        self.jitter = 0.0  # timestamp units
        self._unwrapper = SequenceUnwrapper()
        self._base: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self._last_arrival = 0.0
        self._last_timestamp = 0
        self._lsr = 0
        self._sr_arrival: float | None = None

    @property
    def highest_sequence(self) -> int | None:
        """Highest extended sequence number received (None before any packet)."""
        return self._unwrapper.highest

    @property
    def expected(self) -> int:
        if self._base is None or self._unwrapper.highest is None:
            return 0
        return self._unwrapper.highest - self._base + 1

    @property
    def cumulative_lost(self) -> int:
        return self.expected - self.received

    def packet_received(self, packet: RtpPacket, arrival: float) -> None:
        if self.ssrc is None:
            self.ssrc = packet.ssrc
        elif packet.ssrc != self.ssrc:
            return
        extended = self._unwrapper.unwrap(packet.sequence_number)
        if self._base is None or extended < self._base:
            self._base = extended
        if self.received:
            # A.8: D(i-1, i) = (Rj - Ri) - (Sj - Si) in timestamp units; the RTP
            # timestamps are compared modulo 2**32 so a wrap is a small step.
            sent = (packet.timestamp - self._last_timestamp) % TIMESTAMP_MOD
            if sent >= TIMESTAMP_MOD // 2:
                sent -= TIMESTAMP_MOD
            d = (arrival - self._last_arrival) * self.clock_rate - sent
            self.jitter += (abs(d) - self.jitter) / 16
        self.received += 1
        self._last_arrival = arrival
        self._last_timestamp = packet.timestamp

    def sender_report_received(self, report: SenderReport, arrival: float) -> None:
        """Remember the source's last SR, for the LSR and DLSR fields."""
        if self.ssrc is not None and report.ssrc != self.ssrc:
            return
        self._lsr = ntp_middle(report.ntp_timestamp)
        self._sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock | None:
        """The report block for an RR sent at ``now``; None before the first packet.

        Starts a new interval for ``fraction_lost``: call it once per report sent.
        """
        if self.ssrc is None or self._unwrapper.highest is None:
            return None
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self._sr_arrival is not None:
            dlsr = max(0, min(0xFFFFFFFF, round((now - self._sr_arrival) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=self.cumulative_lost,
            highest_sequence=self._unwrapper.highest % (1 << 32),
            jitter=min(0xFFFFFFFF, int(self.jitter)),
            lsr=self._lsr,
            dlsr=dlsr,
        )
