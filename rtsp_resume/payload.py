"""RTP payload formats: H.264 per RFC 6184 (packetization-mode 1) and AAC-hbr per RFC 3640.
Pure code, as :mod:`rtsp_resume.rtp` is for the packets themselves: access units and audio
frames in, RTP payloads out, and back. A malformed payload raises :class:`RtpError` when
building it, and is dropped and counted when a depacketizer receives it."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from rtsp_resume.rtp import SEQUENCE_MOD, RtpError, RtpPacket

# NAL unit types (H.264 Table 7-1) and the RTP aggregation/fragmentation units.
NAL_SLICE, NAL_IDR, NAL_SPS, NAL_PPS, NAL_AUD = 1, 5, 7, 8, 9
H264_STAP_A = 24  # RFC 6184 §5.7.1
H264_FU_A = 28  # RFC 6184 §5.8


def nal_type(nal: bytes) -> int:
    """The type of a NAL unit or RTP payload (H.264 §7.4.1; RFC 6184 §5.3: 24 is STAP-A,
    28 FU-A); 0 for an empty one, a type that is not defined."""
    return nal[0] & 0x1F if nal else 0


class H264Packetizer:
    """Cuts one access unit's NAL units into RTP payloads of at most ``mtu`` bytes (RFC 6184
    §6.3): a NAL unit that fits goes alone (§5.6), a larger one as FU-A fragments (§5.8);
    with ``aggregate``, runs of small ones (SPS, PPS, SEI...) share a STAP-A (§5.7.1)."""

    def __init__(self, mtu: int = 1400, aggregate: bool = False) -> None:
        if mtu < 3:
            raise ValueError(f"mtu={mtu}: an FU-A packet needs 2 header bytes and 1 of data")
        self.mtu, self.aggregate = mtu, aggregate

    def packetize(self, nals: Sequence[bytes]) -> list[tuple[bytes, bool]]:
        """(payload, marker) pairs for one access unit; the marker is set on the last."""
        payloads: list[bytes] = []
        pending: list[bytes] = []  # small NAL units waiting for a STAP-A
        for nal in nals:
            if not nal:
                raise RtpError("empty NAL unit")
            if not 1 <= nal_type(nal) <= 23:
                raise RtpError(f"NAL unit type {nal_type(nal)} cannot be sent as is "
                               "(expected 1-23: bare NAL units, no start code)")
            if self.aggregate and self._stap_size(pending + [nal]) > self.mtu:
                payloads.extend(self._flush_stap(pending))  # full: what waits goes first
                pending = []
            if self.aggregate and self._stap_size(pending + [nal]) <= self.mtu:
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
        body, step = memoryview(nal)[1:], self.mtu - 2
        fragments = []
        for start in range(0, len(body), step):
            first, last = start == 0, start + step >= len(body)
            header = nal_type(nal) | (0x80 if first else 0) | (0x40 if last else 0)
            fragments.append(indicator + bytes([header]) + body[start:start + step])
        return fragments


@dataclass
class H264AccessUnit:
    """The NAL units of one RTP timestamp, put back together. ``complete`` is False when a
    packet of it may be lost (a gap inside or just before it) or was malformed: the picture
    may lack slices. ``first_sequence``/``last_sequence`` number its first and last packet."""
    rtp_timestamp: int
    nals: list[bytes]
    complete: bool
    first_sequence: int
    last_sequence: int


class H264Depacketizer:
    """RTP packets back into H.264 access units, RFC 6184 packetization-mode 1: single NAL
    unit packets, STAP-A and FU-A (interleaved-mode STAP-B, MTAP, FU-B are dropped). A unit
    ends at its marker or, the marker lost, at another timestamp. A duplicate or late packet
    is dropped; a gap counts in ``lost`` and voids an FU-A missing fragments; a malformed
    payload counts in ``discarded``, never raised, so a bad packet cannot stop a player."""

    def __init__(self) -> None:
        self.lost = self.discarded = 0
        self._last_sequence: int | None = None
        self._unit: H264AccessUnit | None = None
        self._fragment: bytearray | None = None

    def feed(self, packet: RtpPacket) -> list[H264AccessUnit]:
        finished: list[H264AccessUnit] = []
        sequence = packet.sequence_number
        gap = False
        if self._last_sequence is not None:
            step = (sequence - self._last_sequence) % SEQUENCE_MOD
            if step == 0 or step >= SEQUENCE_MOD // 2:
                self.discarded += 1
                return finished
            self.lost += step - 1
            gap = step > 1
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
        kind = nal_type(payload)
        if kind != H264_FU_A and self._fragment is not None:  # an FU-A that never ended
            self._fragment = None
            unit.complete = False
        if 1 <= kind <= 23:
            unit.nals.append(bytes(payload))
            return True
        if kind == H264_STAP_A:
            nals, pos = [], 1
            while pos + 2 <= len(payload):
                size = struct.unpack_from("!H", payload, pos)[0]
                nals.append(bytes(payload[pos + 2 : pos + 2 + size]))
                pos += 2 + size
            # A stray last byte, a unit overrunning the payload, or an empty unit or STAP-A.
            if pos != len(payload) or not nals or not all(nals):
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
            self._fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])  # §5.8's NAL header
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


# AAC, RFC 3640 mode AAC-hbr: sizeLength=13, indexLength=3, indexDeltaLength=3
AAC_MAX_FRAME = (1 << 13) - 1


def aac_payload(frames: Sequence[bytes]) -> bytes:
    """An RFC 3640 AAC-hbr payload (§3.2.1) of whole frames: AU-headers-length (in bits), a
    16-bit AU-header per frame (13-bit size, 3-bit index(-delta) 0: in order), the frames.
    No fragments (§3.2.3): a frame is at most 768 bytes per channel, near an Ethernet MTU."""
    if not frames:
        raise RtpError("an AAC payload needs at least one frame")
    if bad := [len(frame) for frame in frames if not 1 <= len(frame) <= AAC_MAX_FRAME]:
        raise RtpError(f"AAC frame of {bad[0]} bytes: AU-size has 13 bits")
    sizes = [len(frame) << 3 for frame in frames]
    return struct.pack(f"!{1 + len(frames)}H", 16 * len(frames), *sizes) + b"".join(frames)


def aac_frames(payload: bytes) -> list[bytes]:
    """The AAC frames of an RFC 3640 AAC-hbr payload, every length checked; RtpError when
    malformed, interleaved (AU-Index-delta not 0) or a fragment of a frame (§3.2.3)."""
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
    headers = struct.unpack_from(f"!{count}H", payload, 2)
    if any(header & 0x7 for header in headers[1:]):
        raise RtpError("interleaved AAC (non-zero AU-Index-delta) is not supported")
    sizes = [header >> 3 for header in headers]
    available = len(payload) - data_start
    if count == 1 and sizes[0] > available:
        raise RtpError(f"AAC frame of {sizes[0]} bytes but only {available} present "
                       "(truncated, or a fragment: fragmented frames are not supported)")
    if sum(sizes) != available:
        raise RtpError(f"AU-headers announce {sum(sizes)} bytes of AAC frames, "
                       f"the payload holds {available}")
    if 0 in sizes:
        raise RtpError("AAC frame of size 0")
    ends = itertools.accumulate(sizes, initial=data_start)
    return [bytes(payload[start:end]) for start, end in itertools.pairwise(ends)]
