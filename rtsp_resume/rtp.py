"""RTP and RTCP packets (RFC 3550), as pure code: bytes in, dataclasses out, and back. Every
packet type's ``bytes(...)`` is its wire form and its ``parse`` reads it back; anything
malformed raises :class:`RtpError` (a ``ValueError``) saying what is wrong, so a server or a
terminal drops the packet and carries on. :class:`RtpStream` numbers a sender's packets
(§5.1) and :class:`ReceptionStats` fills a receiver's report blocks (Appendix A.3, A.8). The
payload formats (H.264, AAC) are in :mod:`rtsp_resume.payload`."""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQUENCE_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
RTCP_SR, RTCP_RR, RTCP_SDES = 200, 201, 202
SDES_CNAME = 1
_FIXED_HEADER = struct.Struct("!BBHII")  # §5.1: V P X CC, M PT, sequence, timestamp, SSRC


class RtpError(ValueError):
    """A malformed RTP or RTCP packet or payload, or a value that cannot be encoded."""


def _check(bits: int, **values: int) -> None:
    # struct.pack would raise struct.error, or wrap silently in a bit field; name the field.
    for name, value in values.items():
        if not 0 <= value < (1 << bits):
            raise RtpError(f"{name}={value} does not fit in {bits} bits")


@dataclass
class RtpHeaderExtension:
    """The header extension of §5.3.1: a profile-defined value and data in 32-bit words."""
    profile: int
    data: bytes = b""


@dataclass
class RtpPacket:
    """An RTP data packet (§5.1). ``padding`` counts the padding octets, the final count
    octet included (0: none); the others are written as zeros."""
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
        _check(7, payload_type=self.payload_type)
        _check(8, padding=self.padding)
        _check(16, sequence_number=self.sequence_number)
        _check(32, timestamp=self.timestamp, ssrc=self.ssrc,
               **{f"csrc{i}": source for i, source in enumerate(self.csrc)})
        if len(self.csrc) > 15:
            raise RtpError(f"{len(self.csrc)} CSRCs, at most 15 fit the CC field")
        ext = self.extension
        first = (RTP_VERSION << 6) | (0x20 if self.padding else 0) | len(self.csrc)
        parts = [_FIXED_HEADER.pack(first | (0x10 if ext else 0),
                                    self.payload_type | (0x80 if self.marker else 0),
                                    self.sequence_number, self.timestamp, self.ssrc),
                 struct.pack(f"!{len(self.csrc)}I", *self.csrc)]
        if ext is not None:
            if len(ext.data) % 4:
                raise RtpError(f"header extension of {len(ext.data)} bytes: not 32-bit words")
            _check(16, extension_profile=ext.profile, extension_length=len(ext.data) // 4)
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
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
        padding = (data[-1] if size > pos else 0) if first & 0x20 else 0
        if first & 0x20 and not 1 <= padding <= size - pos:
            raise RtpError(f"RTP padding count is {padding}: it counts itself (>= 1) and "
                           f"overruns the header past {size - pos}")
        return cls(second & 0x7F, sequence, timestamp, ssrc, bool(second & 0x80), csrc,
                   extension, padding, bytes(data[pos:size - padding]))


def ntp_now(wallclock: float) -> int:
    """The 64-bit NTP timestamp (§4) of Unix time ``wallclock``, e.g. ``time.time()``."""
    seconds = int(wallclock // 1)
    return ((seconds + NTP_UNIX_OFFSET) % (1 << 32)) << 32 | int((wallclock - seconds) * 2**32)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def _rtcp_header(packet_type: int, count: int, body: bytes) -> bytes:
    # §6.4.1: the length field counts 32-bit words minus one, header included.
    if len(body) % 4:
        raise RtpError(f"RTCP body of {len(body)} bytes is not a whole number of words")
    _check(5, rtcp_count=count)
    _check(16, rtcp_length=len(body) // 4)
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
    """A reception report block (§6.4.1); ``packets_lost`` is signed and clamped to its 24
    bits when written (Appendix A.3), ``highest_sequence`` is the extended number."""
    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def __bytes__(self) -> bytes:
        _check(8, fraction_lost=self.fraction_lost)
        _check(32, ssrc=self.ssrc, highest_sequence=self.highest_sequence,
                   jitter=self.jitter, lsr=self.lsr, dlsr=self.dlsr)
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return struct.pack("!IIIIII", self.ssrc, (self.fraction_lost << 24) | lost,
                           self.highest_sequence, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def parse(cls, data: bytes) -> ReportBlock:
        if len(data) != 24:
            raise RtpError(f"report block of {len(data)} bytes, expected 24")
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", data)
        lost = (lost_word & 0xFFFFFF) - (0x1000000 if lost_word & 0x800000 else 0)
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


def _parse_report(data: bytes, packet_type: int, head: str,
                  size: int) -> tuple[bytes, list[ReportBlock], bytes]:
    """An SR's or RR's body (its ``head`` of ``size`` bytes first), blocks, and what follows."""
    _, count, body = _rtcp_split(data, packet_type)
    end = size + 24 * count
    if len(body) < end:
        raise RtpError(f"RTCP report of {len(body)} bytes is too short for its {size}-byte "
                       f"{head} and {count} blocks")
    return body, [ReportBlock.parse(body[pos:pos + 24]) for pos in range(size, end, 24)], body[end:]


@dataclass
class SenderReport:
    """RTCP sender report (§6.4.1): ``ntp_timestamp`` and ``rtp_timestamp`` name one
    instant; ``extension`` is the profile-specific data after the blocks, kept as it is."""
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        _check(64, ntp_timestamp=self.ntp_timestamp)
        _check(32, ssrc=self.ssrc, rtp_timestamp=self.rtp_timestamp,
                   packet_count=self.packet_count, octet_count=self.octet_count)
        body = struct.pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                           self.packet_count, self.octet_count)
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _rtcp_header(RTCP_SR, len(self.reports), body)

    @classmethod
    def parse(cls, data: bytes) -> SenderReport:
        body, reports, rest = _parse_report(data, RTCP_SR, "sender info", 24)
        return cls(*struct.unpack_from("!IQIII", body), reports, rest)


@dataclass
class ReceiverReport:
    """RTCP receiver report (§6.4.2)."""
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    def __bytes__(self) -> bytes:
        _check(32, ssrc=self.ssrc)
        body = struct.pack("!I", self.ssrc)
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _rtcp_header(RTCP_RR, len(self.reports), body)

    @classmethod
    def parse(cls, data: bytes) -> ReceiverReport:
        body, reports, rest = _parse_report(data, RTCP_RR, "reporter's SSRC", 4)
        return cls(struct.unpack_from("!I", body)[0], reports, rest)


@dataclass
class SourceDescription:
    """RTCP SDES (§6.5), a CNAME item per ``(ssrc, cname)``; received ones are RtcpPackets."""
    cnames: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The SDES every compound RTCP packet must carry (§6.1)."""
        return cls([(ssrc, cname)])

    def __bytes__(self) -> bytes:
        body = b""
        for ssrc, cname in self.cnames:
            text = cname.encode("utf-8")
            _check(32, ssrc=ssrc)
            _check(8, cname_length=len(text))
            chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(text)) + text
            body += chunk + bytes(4 - len(chunk) % 4)  # at least one null octet ends the list
        return _rtcp_header(RTCP_SDES, len(self.cnames), body)


@dataclass
class RtcpPacket:
    """Any other RTCP packet (SDES, BYE, APP...), kept as type, count field and body."""
    packet_type: int
    count: int
    body: bytes

    def __bytes__(self) -> bytes:
        _check(8, packet_type=self.packet_type)
        return _rtcp_header(self.packet_type, self.count, self.body)

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        return cls(*_rtcp_split(data))


Rtcp = SenderReport | ReceiverReport | RtcpPacket


def parse_rtcp(data: bytes) -> list[Rtcp]:
    """The parts of a compound RTCP packet (§6.1), each well formed, types 192-223 (RFC 5761
    §4); SR or RR first and an SDES are not required: reports of senders that skip them count."""
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
        parser = {RTCP_SR: SenderReport, RTCP_RR: ReceiverReport}.get(kind, RtcpPacket)
        packets.append(parser.parse(data[pos:pos + size]))
        pos += size
    return packets


class RtpStream:
    """Numbering of one outgoing RTP stream (one track of one session). SSRC, first
    sequence number and timestamp origin are random unless given (§5.1, §8). Timestamps
    passed in are media ticks (``ticks(pts)``), so they stay continuous across seeks."""

    def __init__(self, payload_type: int, clock_rate: int, ssrc: int | None = None,
                 sequence: int | None = None, timestamp_base: int | None = None) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate={clock_rate} must be positive")
        self.payload_type, self.clock_rate = payload_type, clock_rate
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp_base = secrets.randbits(32) if timestamp_base is None else timestamp_base
        _check(7, payload_type=payload_type)
        _check(16, sequence=self.sequence)
        _check(32, ssrc=self.ssrc, timestamp_base=self.timestamp_base)
        self.packet_count = self.octet_count = 0

    def ticks(self, seconds: float) -> int:
        return round(seconds * self.clock_rate)

    def rtp_timestamp(self, ticks: int) -> int:
        """The RTP timestamp on the wire for media ``ticks`` (RTP-Info's ``rtptime``)."""
        return (self.timestamp_base + ticks) % TIMESTAMP_MOD

    @property
    def next_sequence(self) -> int:
        """The sequence number the next packet will carry (RTP-Info's ``seq``)."""
        return self.sequence

    def packet(self, payload: bytes, timestamp: int, marker: bool = False) -> RtpPacket:
        """Number the next packet; ``timestamp`` in media ticks."""
        return RtpPacket.parse(self.packets([(payload, marker)], timestamp)[0])

    def packets(self, payloads: Sequence[tuple[bytes, bool]], timestamp: int) -> list[bytes]:
        """:meth:`packet` for each (payload, marker), straight to the wire: a sender's hot
        path writes only the fixed header (§5.1) and makes no packet objects."""
        stamp, kind, wire = self.rtp_timestamp(timestamp), self.payload_type, []
        for payload, marker in payloads:
            wire.append(_FIXED_HEADER.pack(RTP_VERSION << 6, kind | (0x80 if marker else 0),
                                           self.sequence, stamp, self.ssrc) + payload)
            self.sequence = (self.sequence + 1) % SEQUENCE_MOD
            self.octet_count += len(payload)  # §6.4.1: payload octets only
        self.packet_count += len(wire)
        return wire

    def sender_report(self, wallclock: float, timestamp: int,
                      reports: Sequence[ReportBlock] = ()) -> SenderReport:
        """An SR: media ``timestamp`` (ticks reached, not the last packet's) at ``wallclock``."""
        return SenderReport(self.ssrc, ntp_now(wallclock), self.rtp_timestamp(timestamp),
                            self.packet_count % (1 << 32), self.octet_count % (1 << 32),
                            list(reports))

    def rtcp_report(self, wallclock: float, timestamp: int, cname: str) -> bytes:
        """A compound RTCP packet valid per §6.1: SR then SDES CNAME."""
        return (bytes(self.sender_report(wallclock, timestamp))
                + bytes(SourceDescription.cname(self.ssrc, cname)))


def unwrap_sequence(sequence: int, highest: int | None) -> int:
    """The extended (cycle-counting) number of a 16-bit ``sequence`` (Appendix A.1): the one
    nearest ``highest``, the highest extended number so far, so 65535 -> 0 is one step on."""
    if highest is None:
        return sequence
    step = (sequence - highest) % SEQUENCE_MOD
    return highest + step - (SEQUENCE_MOD if step >= SEQUENCE_MOD // 2 else 0)


class ReceptionStats:
    """Reception statistics of one RTP source for RR report blocks: loss per Appendix A.3,
    jitter per A.8, without A.1's probation (one unicast source). The first packet fixes
    ``ssrc``; others are ignored. Times are seconds on one clock that does not jump."""

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock_rate={clock_rate} must be positive")
        self.clock_rate, self.received, self.jitter = clock_rate, 0, 0.0  # jitter: ticks
        self.ssrc: int | None = None
        self.highest: int | None = None  # extended sequence number
        self._base: int | None = None
        self._expected_prior = self._received_prior = self._last_timestamp = self._lsr = 0
        self._last_arrival, self._sr_arrival = 0.0, None

    def packet_received(self, packet: RtpPacket, arrival: float) -> None:
        self.ssrc = packet.ssrc if self.ssrc is None else self.ssrc
        if packet.ssrc != self.ssrc:
            return
        extended = unwrap_sequence(packet.sequence_number, self.highest)
        self.highest = extended if self.highest is None else max(self.highest, extended)
        self._base = extended if self._base is None else min(self._base, extended)
        if self.received:
            # A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units, the RTP timestamps
            # compared modulo 2**32 so that a wrap is a small step.
            sent = (packet.timestamp - self._last_timestamp) % TIMESTAMP_MOD
            sent -= TIMESTAMP_MOD if sent >= TIMESTAMP_MOD // 2 else 0
            d = (arrival - self._last_arrival) * self.clock_rate - sent
            self.jitter += (abs(d) - self.jitter) / 16
        self.received += 1
        self._last_arrival, self._last_timestamp = arrival, packet.timestamp

    def sender_report_received(self, report: SenderReport, arrival: float) -> None:
        """Remember the source's last SR, for the LSR and DLSR fields."""
        if self.ssrc is None or report.ssrc == self.ssrc:
            self._lsr, self._sr_arrival = ntp_middle(report.ntp_timestamp), arrival

    def report_block(self, now: float) -> ReportBlock | None:
        """The block for an RR sent at ``now`` (None before any packet); it starts a new
        interval for ``fraction_lost``, so call it once per report."""
        highest, base = self.highest, self._base
        if self.ssrc is None or highest is None or base is None:
            return None
        expected = highest - base + 1
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        since = 0.0 if self._sr_arrival is None else now - self._sr_arrival
        dlsr = max(0, min(0xFFFFFFFF, round(since * 65536)))
        return ReportBlock(self.ssrc, fraction, expected - self.received, highest % (1 << 32),
                           min(0xFFFFFFFF, int(self.jitter)), self._lsr, dlsr)
