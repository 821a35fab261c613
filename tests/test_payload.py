"""H.264 (RFC 6184) and AAC-hbr (RFC 3640) payloads: packetizing and putting back together.

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

from rtsp_resume.payload import (
    H264AccessUnit,
    H264Depacketizer,
    H264Packetizer,
    aac_frames,
    aac_payload,
    nal_type,
)
from rtsp_resume.rtp import RtpError, RtpPacket, RtpStream

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
    junk = [b"", b"\x18\x00\x05ab", b"\x18", b"\x1c", b"\x19abc", b"\x00xyz", b"\x18\x00\x00",
            b"\x18\x00\x01\x41\x00"]  # STAP-A: overrun, empty, size 0, a stray last byte
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


def test_nal_type_is_the_low_five_bits() -> None:
    assert [nal_type(bytes([b])) for b in (0x67, 0x68, 0x65, 0x41, 0x7C, 0x18)] == [
        7, 8, 5, 1, 28, 24]
    assert nal_type(b"") == 0
