"""RTP/RTCP packets (RFC 3550), stream numbering and receiver statistics. Pure code."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsp_resume.rtp import (
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpHeaderExtension,
    RtpPacket,
    RtpStream,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_now,
    parse_rtcp,
    unwrap_sequence,
)

# ---------------------------------------------------------------------------------------
# RTP packets

RTP_EXAMPLES = {
    "plain": RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3,
                       payload=b"hello"),
    "marker": RtpPacket(payload_type=97, sequence_number=65535, timestamp=0xFFFFFFFF,
                        ssrc=0xFFFFFFFF, marker=True, payload=b"\x00" * 20),
    "csrc": RtpPacket(payload_type=0, sequence_number=7, timestamp=8, ssrc=9,
                      csrc=list(range(100, 115)), payload=b"x"),
    "extension": RtpPacket(payload_type=96, sequence_number=7, timestamp=8, ssrc=9,
                           extension=RtpHeaderExtension(0xBEDE, b"\x10\xff\x00\x00abcd"),
                           payload=b"payload"),
    "empty extension": RtpPacket(payload_type=96, extension=RtpHeaderExtension(1, b""),
                                 payload=b"p"),
    "padding": RtpPacket(payload_type=96, sequence_number=5, padding=3, payload=b"abcde"),
    "everything": RtpPacket(payload_type=127, sequence_number=40000, timestamp=123456789,
                            ssrc=0xCAFEBABE, marker=True, csrc=[1, 2],
                            extension=RtpHeaderExtension(0x1000, b"\x01\x02\x03\x04"),
                            padding=7, payload=bytes(range(50))),
    "empty payload": RtpPacket(payload_type=13, sequence_number=1, timestamp=1, ssrc=1),
}


@pytest.mark.parametrize("name", RTP_EXAMPLES)
def test_rtp_round_trip(name: str) -> None:
    packet = RTP_EXAMPLES[name]
    wire = bytes(packet)
    parsed = RtpPacket.parse(wire)
    assert parsed == packet
    assert bytes(parsed) == wire


def test_rtp_fields_from_hand_made_bytes() -> None:
    # V=2 P=1 X=1 CC=1 | M=1 PT=96 | seq 0x1234 | ts | ssrc | csrc | ext hdr + 1 word |
    # payload "AB" | padding 2 (00 02)
    wire = (bytes([0b1011_0001, 0x80 | 96]) + b"\x12\x34" + b"\x00\x01\x00\x02"
            + b"\xde\xad\xbe\xef" + b"\x00\x00\x00\x2a" + b"\xbe\xde\x00\x01" + b"wxyz"
            + b"AB" + b"\x00\x02")
    packet = RtpPacket.parse(wire)
    assert packet.marker and packet.payload_type == 96
    assert packet.sequence_number == 0x1234 and packet.timestamp == 0x10002
    assert packet.ssrc == 0xDEADBEEF and packet.csrc == [42]
    assert packet.extension == RtpHeaderExtension(0xBEDE, b"wxyz")
    assert packet.padding == 2 and packet.payload == b"AB"


def test_rtp_every_truncation_of_the_header_is_rejected() -> None:
    wire = bytes(RTP_EXAMPLES["everything"])
    header_end = 12 + 4 * 2 + 4 + 4
    for size in range(len(wire)):
        if size < header_end:
            with pytest.raises(RtpError):
                RtpPacket.parse(wire[:size])
        else:
            # The payload has no length field: a cut there is only caught when the
            # padding count left at the end no longer fits.
            try:
                packet = RtpPacket.parse(wire[:size])
            except RtpError:
                continue
            assert packet.payload == wire[header_end:size - packet.padding]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x40\x60" + bytes(10), "version 1"),
        (b"\x80\x60" + bytes(9), "12"),
        (b"\x82\x60" + bytes(10) + b"\x00\x00\x00\x01", "CSRC"),
        (b"\x90\x60" + bytes(10) + b"\x00\x00", "extension"),
        (b"\x90\x60" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), "extension"),
        (b"\xa0\x60" + bytes(10), "padding"),
        (b"\xa0\x60" + bytes(10) + b"ab\x00", "padding count is 0"),
        (b"\xa0\x60" + bytes(10) + b"ab\x04", "overruns"),
    ],
)
def test_rtp_malformed(wire: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        RtpPacket.parse(wire)


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(sequence_number=65536),
        RtpPacket(payload_type=128),
        RtpPacket(timestamp=-1),
        RtpPacket(csrc=list(range(16))),
        RtpPacket(extension=RtpHeaderExtension(1, b"abc")),
        RtpPacket(padding=256),
    ],
)
def test_rtp_unencodable_fields(packet: RtpPacket) -> None:
    with pytest.raises(RtpError):
        bytes(packet)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_rtp_parse_junk_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(RtpPacket.parse(bytes(packet))) == bytes(packet)


# ---------------------------------------------------------------------------------------
# RTCP

BLOCKS = [
    ReportBlock(ssrc=1, fraction_lost=42, packets_lost=-3, highest_sequence=70000,
                jitter=9, lsr=0x12345678, dlsr=65536),
    ReportBlock(ssrc=0xFFFFFFFF, fraction_lost=255, packets_lost=0x7FFFFF,
                highest_sequence=0xFFFFFFFF, jitter=0, lsr=0, dlsr=0),
]


@pytest.mark.parametrize(
    "packet",
    [
        SenderReport(0xABCD, ntp_now(1_700_000_000.25), 9000, 10, 1000),
        SenderReport(1, 2, 3, 4, 5, reports=list(BLOCKS), extension=b"ext!"),
        ReceiverReport(77),
        ReceiverReport(77, reports=list(BLOCKS)),
        RtcpPacket(203, 3, struct.pack("!III", 1, 2, 3)),  # BYE
        RtcpPacket(204, 3, b"nameDATA"),
    ],
    ids=lambda p: type(p).__name__,
)
def test_rtcp_round_trip(packet: object) -> None:
    wire = bytes(packet)  # type: ignore[call-overload]
    assert len(wire) % 4 == 0
    parsed = parse_rtcp(wire)
    assert parsed == [packet]
    assert bytes(parsed[0]) == wire


@pytest.mark.parametrize("length", range(8))
def test_sdes_cname_of_every_length_mod_4(length: int) -> None:
    text = "c" * length
    wire = bytes(SourceDescription.cname(5, text))
    (sdes,) = parse_rtcp(wire)
    item = struct.pack("!IBB", 5, 1, length) + text.encode()
    # The item list ends with at least one null octet, then pads to a 32-bit word.
    assert sdes == RtcpPacket(202, 1, item + bytes(4 - len(item) % 4))
    assert bytes(sdes) == wire


def test_sdes_of_several_sources() -> None:
    wire = bytes(SourceDescription([(1, "abc"), (2, ""), (3, "server@example")]))
    (sdes,) = parse_rtcp(wire)
    assert isinstance(sdes, RtcpPacket) and (sdes.packet_type, sdes.count) == (202, 3)
    assert sdes.body == (struct.pack("!IBB", 1, 1, 3) + b"abc" + bytes(3)
                         + struct.pack("!IBB", 2, 1, 0) + bytes(2)
                         + struct.pack("!IBB", 3, 1, 14) + b"server@example" + bytes(4))
    with pytest.raises(RtpError):
        bytes(SourceDescription.cname(1, "x" * 256))


def test_receiver_report_from_hand_made_bytes() -> None:
    block = struct.pack("!IIIIII", 0x11, (128 << 24) | 0xFFFFFF, 0x1FFFF, 7, 0xAABBCCDD, 99)
    wire = bytes([0x81, 201]) + struct.pack("!H", 7) + struct.pack("!I", 0x22) + block
    (report,) = parse_rtcp(wire)
    assert report == ReceiverReport(0x22, [ReportBlock(0x11, 128, -1, 0x1FFFF, 7,
                                                       0xAABBCCDD, 99)])


def test_report_block_clamps_cumulative_loss_to_24_bits() -> None:
    high = ReportBlock.parse(bytes(ReportBlock(1, packets_lost=10**9)))
    low = ReportBlock.parse(bytes(ReportBlock(1, packets_lost=-(10**9))))
    assert (high.packets_lost, low.packets_lost) == (0x7FFFFF, -0x800000)


def test_rtcp_padding_is_removed() -> None:
    # An RR with no blocks, P bit set, 4 bytes of padding: length field 2 (3 words).
    wire = bytes([0xA0, 201]) + struct.pack("!HI", 2, 0x55) + b"\x00\x00\x00\x04"
    assert parse_rtcp(wire) == [ReceiverReport(0x55)]


def compound() -> tuple[bytes, list[int]]:
    parts = [
        bytes(SenderReport(1, ntp_now(5.5), 2, 3, 4, reports=[BLOCKS[0]])),
        bytes(SourceDescription.cname(1, "cname")),
        bytes(RtcpPacket(203, 1, struct.pack("!I", 1) + b"\x03bye")),  # BYE with a reason
    ]
    boundaries = [0]
    for part in parts:
        boundaries.append(boundaries[-1] + len(part))
    return b"".join(parts), boundaries


def test_rtcp_compound_and_every_truncation() -> None:
    wire, boundaries = compound()
    assert [type(p) for p in parse_rtcp(wire)] == [SenderReport, RtcpPacket, RtcpPacket]
    for size in range(len(wire)):
        if size in boundaries[1:]:
            # Cut between two packets: a shorter, still valid compound packet.
            assert len(parse_rtcp(wire[:size])) == boundaries.index(size)
        else:
            with pytest.raises(RtpError):
                parse_rtcp(wire[:size])


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"", "empty"),
        (b"\x80\xc8\x00", "trailing"),
        (b"\x80\x60\x00\x00", "outside 192-223"),  # an RTP packet, not RTCP
        (b"\x40\xc9\x00\x01" + bytes(4), "version 1"),
        (b"\x81\xc9\x00\x01" + bytes(4), "blocks"),  # RC=1 but no block
        (b"\x81\xc9\x00\x02" + bytes(4), "overruns"),
        (b"\x80\xc8\x00\x02" + bytes(12), "sender info"),
        (b"\xa0\xc9\x00\x01" + b"\x00\x00\x00\x09", "padding"),
    ],
)
def test_rtcp_malformed(wire: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        parse_rtcp(wire)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_rtcp_parse_junk_raises_only_rtp_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtpError:
        return
    assert packets


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0x80, 0x81, 0x82, 0xA0, 0xC8, 0xC9, 0xCA, 0xCB, 0x00,
                                 0x01, 0x02, 0x04, 0xFF]), max_size=60))
def test_rtcp_parse_near_valid_junk_raises_only_rtp_error(data: list[int]) -> None:
    # Bytes drawn from header-like values reach deeper into the parsers than pure noise.
    try:
        parse_rtcp(bytes(data))
    except RtpError:
        pass


def test_ntp_conversions() -> None:
    assert ntp_now(0.0) == 2_208_988_800 << 32
    assert ntp_now(1.5) == ((2_208_988_801 << 32) | (1 << 31))
    assert ntp_now(1_700_000_000.25) == ((1_700_000_000 + 2_208_988_800) << 32) | (1 << 30)
    assert ntp_middle(0x1122334455667788) == 0x33445566


# ---------------------------------------------------------------------------------------
# Stream numbering and reception statistics


def test_rtp_stream_numbering_and_counters() -> None:
    stream = RtpStream(97, 48000, ssrc=0xAA, sequence=65535, timestamp_base=0xFFFFFF00)
    first = stream.packet(b"12345", stream.ticks(0.0), marker=True)
    second = stream.packet(b"678", stream.ticks(1024 / 48000))
    assert (first.sequence_number, second.sequence_number) == (65535, 0)
    assert (first.timestamp, second.timestamp) == (0xFFFFFF00, (0xFFFFFF00 + 1024) % 2**32)
    assert (first.ssrc, first.payload_type, first.marker) == (0xAA, 97, True)
    assert (stream.packet_count, stream.octet_count, stream.next_sequence) == (2, 8, 1)
    sr = stream.sender_report(1_000.5, stream.ticks(0.5))
    assert sr == SenderReport(0xAA, ntp_now(1_000.5), (0xFFFFFF00 + 24000) % 2**32, 2, 8)
    sr_parsed, sdes = parse_rtcp(stream.rtcp_report(1_000.5, stream.ticks(0.5), "srv"))
    assert sr_parsed == sr
    assert bytes(sdes) == bytes(SourceDescription.cname(0xAA, "srv"))


def test_rtp_stream_random_origins() -> None:
    streams = [RtpStream(96, 90000) for _ in range(8)]
    # 8 independent 16- and 32-bit draws all equal would mean no randomness at all.
    assert len({s.ssrc for s in streams}) > 1
    assert len({s.sequence for s in streams}) > 1
    assert len({s.timestamp_base for s in streams}) > 1


def test_unwrap_sequence() -> None:
    highest, seen = None, []
    for s in [65534, 65535, 0, 1, 65535, 3, 32770, 2]:
        seen.append(unwrap_sequence(s, highest))
        highest = max(seen)
    assert seen == [65534, 65535, 65536, 65537, 65535, 65539, 98306, 65538]
    assert unwrap_sequence(5, None) == 5
    assert unwrap_sequence(65535, 65536 * 3 + 2) == 65536 * 3 - 1


def packet(sequence: int, timestamp: int) -> RtpPacket:
    return RtpPacket(96, sequence, timestamp, ssrc=0x77, payload=b"x")


def test_reception_stats_hand_computed() -> None:
    stats = ReceptionStats(clock_rate=8000)
    assert stats.report_block(0.0) is None
    # 20 ms packets (160 ticks) wrapping past 65535; sequence 1 (ts 1480) is lost.
    for sequence, timestamp, arrival in [(65534, 1000, 0.000), (65535, 1160, 0.020),
                                         (0, 1320, 0.045), (2, 1640, 0.080),
                                         (3, 1800, 0.100)]:
        stats.packet_received(packet(sequence, timestamp), arrival)
    # Transit differences D, in ticks: 0, +40 (200 - 160), -40 (280 - 320), 0.
    # J: 0 -> 40/16 = 2.5 -> 2.5 + (40 - 2.5)/16 = 4.84375 -> 4.84375 * 15/16.
    assert stats.jitter == pytest.approx(4.84375 * 15 / 16)
    stats.packet_received(RtpPacket(96, 9, 9, ssrc=0x99), 0.1)  # another source: ignored
    sr = SenderReport(0x77, ntp_now(1000.5), 1800, 5, 5)
    stats.sender_report_received(sr, arrival=0.05)
    block = stats.report_block(now=0.1)
    assert block == ReportBlock(
        ssrc=0x77,
        fraction_lost=256 // 6,  # 1 lost of 6 expected (65534..65539)
        packets_lost=1,
        highest_sequence=65536 + 3,  # one cycle, sequence 3
        jitter=4,
        lsr=((2_208_988_800 + 1000) % 65536) << 16 | 0x8000,
        dlsr=round(0.05 * 65536),
    )
    # Nothing new: no loss in this interval, the cumulative count stays.
    assert stats.report_block(0.2).fraction_lost == 0  # type: ignore[union-attr]
    # Sequence 4 lost, 5 and 6 received: 1 lost of 3 expected in this interval.
    stats.packet_received(packet(5, 2120), 0.14)
    stats.packet_received(packet(6, 2280), 0.16)
    block = stats.report_block(0.3)
    assert block is not None
    assert (block.fraction_lost, block.packets_lost, block.highest_sequence) == (
        256 // 3, 2, 65536 + 6)
    assert ReportBlock.parse(bytes(block)) == block


def test_reception_stats_duplicates_and_early_late_packet() -> None:
    stats = ReceptionStats(90000)
    for sequence in [10, 11, 11, 9, 12]:  # a duplicate, and 9 arrives after 10
        stats.packet_received(packet(sequence, 0), 0.0)
    block = stats.report_block(1.0)
    assert block is not None
    assert (block.packets_lost, block.highest_sequence) == (-1, 12)  # 4 expected, 5 received


def test_rtp_stream_packets_are_the_wire_form_of_packet() -> None:
    one, other = (RtpStream(96, 90000, ssrc=7, sequence=65534, timestamp_base=5) for _ in "ab")
    payloads = [(b"first", False), (b"second", False), (b"last", True)]
    wire = one.packets(payloads, 3000)
    assert wire == [bytes(RtpPacket(96, sequence, 3005, 7, marker, payload=data))
                    for sequence, (data, marker) in zip((65534, 65535, 0), payloads, strict=True)]
    assert [RtpPacket.parse(w) for w in wire] == [other.packet(data, 3000, marker)
                                                  for data, marker in payloads]
    assert (one.packet_count, one.octet_count) == (other.packet_count, other.octet_count) == (3, 15)
