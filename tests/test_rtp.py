"""RTP/RTCP packets, H.264 and AAC payloads, stream numbering and receiver statistics.

Pure code: no socket. Real H.264 comes from PyAV's libx264 encoder, and what the
depacketizer puts back together is decoded by FFmpeg's H.264 decoder.
"""

from __future__ import annotations

import functools
import re
import struct
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsp_resume.rtp import (
    Goodbye,
    H264AccessUnit,
    H264Depacketizer,
    H264Packetizer,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpHeaderExtension,
    RtpPacket,
    RtpStream,
    SdesChunk,
    SenderReport,
    SequenceUnwrapper,
    SourceDescription,
    aac_frames,
    aac_payload,
    ntp_middle,
    ntp_now,
    ntp_to_unix,
    parse_rtcp,
    unwrap_sequence,
)

# ---------------------------------------------------------------------------------------
# helpers


def split_annexb(data: bytes) -> list[bytes]:
    return [nal for nal in re.split(rb"\x00\x00\x00?\x01", data) if nal]


@functools.cache
def encoded_h264(frames: int = 6, slices: int = 2) -> tuple[tuple[bytes, ...], ...]:
    """Access units (tuples of bare NAL units) of a small noisy clip encoded by libx264."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 176, 144, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"preset": "ultrafast", "x264-params": f"slices={slices}"}
    packets = []
    seed = 12345
    for i in range(frames):
        frame = av.VideoFrame(176, 144, "yuv420p")
        for plane in frame.planes:
            # Pseudo-random pixels so that intra frames are bigger than the test MTU.
            noise = bytearray()
            while len(noise) < plane.buffer_size:
                seed = (seed * 1103515245 + 12345) % (1 << 31)
                noise += seed.to_bytes(4, "little")
            plane.update(bytes(noise[:plane.buffer_size]))
        frame.pts = i
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return tuple(tuple(split_annexb(bytes(packet))) for packet in packets)


def decode_h264(units: list[list[bytes]]) -> int:
    """Number of pictures FFmpeg's decoder gets out of these access units."""
    decoder = av.CodecContext.create("h264", "r")
    frames = 0
    for nals in units:
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)
        frames += len(decoder.decode(av.Packet(data)))
    frames += len(decoder.decode(None))
    return frames


def nal(kind: int, size: int, nri: int = 3, fill: int = 0xAB) -> bytes:
    """A synthetic NAL unit: header byte (NRI, type) then ``size - 1`` payload bytes."""
    body = bytes((fill + i) % 256 for i in range(size - 1))
    return bytes([(nri << 5) | kind]) + body


def send(units: list[list[bytes]], stream: RtpStream, mtu: int, step: int = 3000,
         aggregate: bool = False) -> list[RtpPacket]:
    """Packetize access units as a server would, through the wire format and back."""
    packetizer = H264Packetizer(mtu, aggregate=aggregate)
    packets = []
    for i, nals in enumerate(units):
        for payload, marker in packetizer.packetize(nals):
            assert len(payload) <= mtu
            wire = bytes(stream.packet(payload, i * step, marker))
            packets.append(RtpPacket.parse(wire))
    return packets


def receive(packets: list[RtpPacket]) -> tuple[list[H264AccessUnit], H264Depacketizer]:
    depacketizer = H264Depacketizer()
    units = []
    for packet in packets:
        units += depacketizer.feed(packet)
    units += depacketizer.flush()
    return units, depacketizer


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
        SourceDescription.cname(0x1234, "server@example"),
        SourceDescription([SdesChunk(1, [(1, b"abc"), (2, b"Name")]), SdesChunk(2, []),
                           SdesChunk(3, [(1, b"")])]),
        Goodbye([1, 2, 3]),
        Goodbye([9], b"session ended"),
        Goodbye([], b"no"),
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
    assert len(wire) % 4 == 0
    (sdes,) = parse_rtcp(wire)
    assert sdes == SourceDescription([SdesChunk(5, [(1, text.encode())])])


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
        bytes(Goodbye([1], b"bye")),
    ]
    boundaries = [0]
    for part in parts:
        boundaries.append(boundaries[-1] + len(part))
    return b"".join(parts), boundaries


def test_rtcp_compound_and_every_truncation() -> None:
    wire, boundaries = compound()
    assert [type(p) for p in parse_rtcp(wire)] == [SenderReport, SourceDescription, Goodbye]
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
        (b"\x81\xca\x00\x01" + b"\x00\x00\x00\x01", "end of list"),
        (b"\x81\xca\x00\x02" + b"\x00\x00\x00\x01" + b"\x01\x09abcd", "overruns"),
        (b"\x82\xcb\x00\x01" + bytes(4), "sources"),
        (b"\x81\xcb\x00\x02" + bytes(4) + b"\x09abc", "reason"),
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
    assert ntp_to_unix(ntp_now(1_700_000_000.25)) == 1_700_000_000.25
    assert ntp_middle(0x1122334455667788) == 0x33445566


# ---------------------------------------------------------------------------------------
# H.264 packetization (RFC 6184)

MTU = 100


@pytest.mark.parametrize("size", [1, MTU - 1, MTU, MTU + 1, MTU + 2, 10 * MTU])
def test_fu_a_split_and_reassembly_around_the_mtu(size: int) -> None:
    unit = nal(5, size, nri=3)
    payloads = H264Packetizer(MTU).packetize([unit])
    assert all(len(payload) <= MTU for payload, _ in payloads)
    assert [marker for _, marker in payloads] == [False] * (len(payloads) - 1) + [True]
    if size <= MTU:
        assert payloads == [(unit, True)]
    else:
        # Each FU-A carries MTU-2 bytes of the NAL unit minus its header byte.
        assert len(payloads) == -(-(size - 1) // (MTU - 2))
        for i, (payload, _) in enumerate(payloads):
            assert payload[0] == (3 << 5) | 28  # FU indicator: NRI of the NAL, type 28
            start, end = bool(payload[1] & 0x80), bool(payload[1] & 0x40)
            assert (start, end) == (i == 0, i == len(payloads) - 1)
            assert payload[1] & 0x1F == 5
    units, depacketizer = receive(send([[unit]], RtpStream(96, 90000), MTU))
    assert [u.nals for u in units] == [[unit]]
    assert units[0].complete and depacketizer.lost == 0


def test_multi_nal_access_unit_marker_only_on_the_last_packet() -> None:
    au = [nal(7, 20), nal(8, 6), nal(5, 3 * MTU, fill=1), nal(5, 2 * MTU + 17, fill=2),
          nal(6, 10)]
    payloads = H264Packetizer(MTU).packetize(au)
    assert [marker for _, marker in payloads].count(True) == 1
    assert payloads[-1][1]
    stream = RtpStream(96, 90000)
    units, _ = receive(send([au, au[2:4], [nal(1, MTU + 5)]], stream, MTU))
    assert [u.nals for u in units] == [au, au[2:4], [nal(1, MTU + 5)]]
    assert [u.rtp_timestamp for u in units] == [stream.rtp_timestamp(i * 3000)
                                                for i in range(3)]
    assert all(u.complete for u in units)


def test_stap_a_aggregates_parameter_sets() -> None:
    sps, pps, idr = nal(7, 20, nri=3), nal(8, 6, nri=2), nal(5, 3 * MTU)
    payloads = H264Packetizer(MTU, aggregate=True).packetize([sps, pps, idr])
    stap = payloads[0][0]
    assert stap[0] == (3 << 5) | 24  # highest NRI of the aggregated units, type 24
    assert stap[1:] == struct.pack("!H", 20) + sps + struct.pack("!H", 6) + pps
    assert len(payloads) == 1 + 4  # STAP-A, then the IDR in FU-A fragments
    units, _ = receive(send([[sps, pps, idr]], RtpStream(96, 90000), MTU, aggregate=True))
    assert units[0].nals == [sps, pps, idr]


def test_packetizer_rejects_what_it_cannot_send() -> None:
    with pytest.raises(RtpError):
        H264Packetizer().packetize([b""])
    with pytest.raises(RtpError, match="type 28"):
        H264Packetizer().packetize([bytes([0x7C, 0x85, 0])])
    with pytest.raises(ValueError):
        H264Packetizer(2)
    assert H264Packetizer().packetize([]) == []


def test_loss_in_the_middle_of_an_fu_a_drops_only_that_nal_unit() -> None:
    big, small = nal(5, 5 * MTU, fill=3), nal(5, 30, fill=4)
    packets = send([[small, big, small], [nal(1, 40)]], RtpStream(96, 90000), MTU)
    # packets: small, FU-A x6 (big), small | next unit. Lose the third FU-A fragment.
    del packets[3]
    units, depacketizer = receive(packets)
    assert depacketizer.lost == 1
    assert [u.nals for u in units] == [[small, small], [nal(1, 40)]]
    assert [u.complete for u in units] == [False, True]


def test_lost_marker_packet_finishes_the_unit_at_the_next_timestamp() -> None:
    packets = send([[nal(5, 3 * MTU)], [nal(1, 50)], [nal(1, 60)]], RtpStream(96, 90000), MTU)
    del packets[3]  # last FU-A fragment of the first unit, the one with the marker
    units, depacketizer = receive(packets)
    assert depacketizer.lost == 1
    assert [u.nals for u in units] == [[nal(1, 50)], [nal(1, 60)]]
    # Nothing of the first unit survived; the second follows a gap, so it is suspect.
    assert [u.complete for u in units] == [False, True]


def test_sequence_wrap_is_not_loss() -> None:
    stream = RtpStream(96, 90000, sequence=65530)
    packets = send([[nal(5, 4 * MTU)], [nal(1, 3 * MTU)], [nal(1, 20)]], stream, MTU)
    # 5 FU-A fragments, 4 FU-A fragments, then a single NAL unit packet.
    assert [p.sequence_number for p in packets] == [*range(65530, 65536), 0, 1, 2, 3]
    units, depacketizer = receive(packets)
    assert depacketizer.lost == 0 and all(u.complete for u in units)
    assert (units[1].first_sequence, units[1].last_sequence) == (65535, 2)


def test_duplicates_and_late_packets_are_discarded() -> None:
    packets = send([[nal(5, 3 * MTU)]], RtpStream(96, 90000), MTU)
    units, depacketizer = receive([packets[0], packets[0], packets[1], packets[0], packets[2],
                                   packets[3]])
    assert [u.nals for u in units] == [[nal(5, 3 * MTU)]]
    assert depacketizer.discarded == 2 and depacketizer.lost == 0


def test_malformed_payloads_are_dropped_not_raised() -> None:
    depacketizer = H264Depacketizer()
    stream = RtpStream(96, 90000)
    junk = [b"", b"\x18\x00\x05ab", b"\x18", b"\x1c", b"\x19abc", b"\x00xyz", b"\x18\x00\x00"]
    for payload in junk:
        assert depacketizer.feed(stream.packet(payload, 0)) == []
    (unit,) = depacketizer.feed(stream.packet(nal(1, 9), 0, marker=True))
    assert unit.nals == [nal(1, 9)] and not unit.complete
    assert depacketizer.discarded == len(junk)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 3), st.booleans(),
                          st.binary(max_size=12)), max_size=30))
def test_depacketizer_never_raises(packets: list[tuple[int, int, bool, bytes]]) -> None:
    depacketizer = H264Depacketizer()
    for sequence, timestamp, marker, payload in packets:
        for unit in depacketizer.feed(RtpPacket(96, sequence, timestamp, 1, marker,
                                                payload=payload)):
            assert unit.nals
    depacketizer.flush()


def test_real_h264_with_two_slices_survives_rtp_and_decodes() -> None:
    units = [list(au) for au in encoded_h264()]
    assert len(units[0]) > 3 and any(len(n) > 500 for n in units[0])  # SPS, PPS, slices
    packets = send(units, RtpStream(96, 90000), mtu=500)
    received, depacketizer = receive(packets)
    assert [u.nals for u in received] == units
    assert depacketizer.lost == 0
    assert decode_h264([u.nals for u in received]) == len(units)


def test_real_h264_with_a_lost_packet_still_decodes_the_rest() -> None:
    units = [list(au) for au in encoded_h264()]
    packets = send(units, RtpStream(96, 90000), mtu=500)
    del packets[len(packets) // 2]
    received, depacketizer = receive(packets)
    assert depacketizer.lost == 1
    assert sum(not u.complete for u in received) in (1, 2)
    assert decode_h264([u.nals for u in received]) >= len(units) - 1


# ---------------------------------------------------------------------------------------
# AAC (RFC 3640 AAC-hbr)


def test_aac_payload_layout() -> None:
    frame = bytes(range(256)) + b"tail"
    assert aac_payload([frame]) == b"\x00\x10" + struct.pack("!H", 260 << 3) + frame


@pytest.mark.parametrize("sizes", [[1], [300], [8191], [300, 280, 310], [5] * 40])
def test_aac_round_trip(sizes: list[int]) -> None:
    frames = [bytes([i]) * size for i, size in enumerate(sizes)]
    payload = aac_payload(frames)
    assert struct.unpack_from("!H", payload)[0] == 16 * len(frames)
    assert aac_frames(payload) == frames


def test_aac_every_truncation_is_rejected() -> None:
    payload = aac_payload([b"a" * 30, b"b" * 20])
    for size in range(len(payload)):
        with pytest.raises(RtpError):
            aac_frames(payload[:size])
    with pytest.raises(RtpError):
        aac_frames(payload + b"!")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x00", "AU-headers-length of 0"),
        (b"\x00\x0d\x00\x08x", "16-bit"),
        (b"\x00\x20\x00\x08\x00\x09ab", "interleaved"),
        (b"\x00\x10\x01\x00" + b"x" * 10, "fragment"),
        (b"\x00\x20\x00\x08\x00\x00x", "size 0"),
    ],
)
def test_aac_malformed(payload: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message):
        aac_frames(payload)


def test_aac_unencodable() -> None:
    with pytest.raises(RtpError):
        aac_payload([])
    with pytest.raises(RtpError):
        aac_payload([b"x" * 8192])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_aac_junk_raises_only_rtp_error(data: bytes) -> None:
    try:
        frames = aac_frames(data)
    except RtpError:
        return
    assert aac_payload(frames) == data


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
    assert sdes == SourceDescription.cname(0xAA, "srv")


def test_rtp_stream_random_origins() -> None:
    streams = [RtpStream(96, 90000) for _ in range(8)]
    # 8 independent 16- and 32-bit draws all equal would mean no randomness at all.
    assert len({s.ssrc for s in streams}) > 1
    assert len({s.sequence for s in streams}) > 1
    assert len({s.timestamp_base for s in streams}) > 1


def test_unwrap_sequence() -> None:
    unwrapper = SequenceUnwrapper()
    seen = [unwrapper.unwrap(s) for s in [65534, 65535, 0, 1, 65535, 3, 32770, 2]]
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
