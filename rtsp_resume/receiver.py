"""Receiving one RTP track without sockets: timing, reassembly, decoding, reports. A
:class:`TrackReceiver` takes a SETUP track's RTP and RTCP packets and gives back decoded
pictures and audio frames stamped with play time (npt), tied to RTP time by the PLAY
answer's ``Range`` and ``RTP-Info`` (RFC 2326 §12.29, §12.33). Payloads: H.264 (RFC 6184)
and AAC-hbr (RFC 3640), decoded by PyAV; RTCP receiver reports per RFC 3550 §6.4.2."""

from __future__ import annotations

import contextlib
import logging
import socket
from fractions import Fraction
from typing import NamedTuple
from urllib.parse import urlsplit

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.payload import NAL_IDR, NAL_SPS, H264Depacketizer, aac_frames, nal_type
from rtsp_resume.rtp import (
    ReceiverReport,
    ReceptionStats,
    RtpError,
    RtpPacket,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    unwrap_sequence,
)

log = logging.getLogger(__name__)

ANNEX_B_START = b"\x00\x00\x00\x01"
MAX_HELD_PACKETS = 4096  # kept while a PLAY awaits the answer that says how to time them
_CODECS = {("video", "H264"): "h264", ("audio", "MPEG4-GENERIC"): "aac"}  # SDP -> PyAV names


class Decoded(NamedTuple):
    """A decoded picture or audio frame and its presentation time in seconds (npt)."""
    pts: float
    frame: av.VideoFrame | av.AudioFrame


class TrackReceiver:
    """One track of ``media`` (its SDP section) SETUP at control URL ``url``. RTP-Info's
    ``rtptime`` is play time ``npt_start`` (RFC 2326 §12.33): timestamp ``ts`` plays at
    ``npt_start + (ts - rtptime) / rate``. While a PLAY is on its way packets are held: only
    its answer times them, and after a seek those numbered before its ``seq`` are dropped."""

    def __init__(self, media: sdp.MediaDescription, url: str) -> None:
        encoding = (media.encoding or "").upper()
        self.kind, self.codec = media.kind, _CODECS.get((media.kind, encoding), "")
        if not self.codec:
            raise sdp.SdpError(f"{media.kind} track {encoding or '?'} is not H.264 or AAC")
        if not media.clock_rate:
            raise sdp.SdpError(f"{media.kind} track without a clock rate in its rtpmap")
        self.url = url
        self.clock_rate = media.clock_rate
        self.payload_type = media.payload_type
        self.parameter_sets = media.sprop_parameter_sets() if self.codec == "h264" else []
        self.config = media.aac_config() if self.codec == "aac" else b""
        self.stats = ReceptionStats(self.clock_rate)
        # From the SETUP answer's Transport: the source, and the TCP interleaved RTP
        # channel (RTCP is + 1) or the UDP sockets and where the server takes RTCP.
        self.ssrc: int | None = None
        self.channel: int | None = None
        self.rtp_socket: socket.socket | None = None
        self.rtcp_socket: socket.socket | None = None
        self.server_rtcp: tuple[str, int] | None = None
        self.lost = 0
        self._decoder, self._depacketizer = self._fresh_decoding()
        self._rtptime: int | None = None
        self._npt_start = 0.0
        self._first_seq: int | None = None
        self._held: list[tuple[RtpPacket, float]] | None = None
        self._drop_before_answer = False

    def _fresh_decoding(self) -> tuple[av.CodecContext, H264Depacketizer]:
        decoder = av.CodecContext.create(self.codec, "r")
        decoder.extradata = self.config or None
        return decoder, H264Depacketizer()

    def play_sent(self, repositions: bool) -> None:
        """A PLAY went out; ``repositions`` when it moves the play point (start or seek)."""
        self._held = []
        self._drop_before_answer = repositions and self._rtptime is not None

    def play_answered(self, npt_start: float, info: rtsp.RtpInfo | None,
                      repositions: bool) -> list[tuple[RtpPacket, float]]:
        """Take the PLAY answer's timing; returns the held (packet, arrival) pairs to receive."""
        if repositions:
            # Pictures still inside the decoder belong to the old position, and the new
            # position starts with a keyframe: a fresh decoder forgets the old ones.
            self._decoder, self._depacketizer = self._fresh_decoding()
        if info is not None:
            self._npt_start, self._rtptime, self._first_seq = npt_start, info.rtptime, info.seq
        elif repositions or self._rtptime is None:
            # No RTP-Info: the first packet after PLAY is taken to be at the range start.
            # (A resume without it keeps the mapping it had: RTP time runs on.)
            self._npt_start, self._rtptime, self._first_seq = npt_start, None, None
        held, self._held = self._held or [], None
        if self._first_seq is None and self._drop_before_answer:
            held = []  # no seq to tell old from new: what came before the answer is old
        return held

    def _ticks(self, rtp_timestamp: int) -> int:
        if self._rtptime is None:
            self._rtptime = rtp_timestamp  # no RTP-Info: the first packet is the start
        # RTP time wraps at 2**32: the difference is a signed step in [-2**31, 2**31).
        step = (rtp_timestamp - self._rtptime + (1 << 31)) % (1 << 32) - (1 << 31)
        return round(self._npt_start * self.clock_rate) + step

    def receive(self, packet: RtpPacket, arrival: float) -> list[Decoded]:
        """Take one RTP packet; return what it completed and decoded (often nothing)."""
        if self.ssrc is not None and packet.ssrc != self.ssrc:
            return []  # not our source
        if self.payload_type is not None and packet.payload_type != self.payload_type:
            return []
        if self._held is not None:
            if len(self._held) < MAX_HELD_PACKETS:
                self._held.append((packet, arrival))
            return []
        if self._first_seq is not None:
            step = unwrap_sequence(packet.sequence_number, self._first_seq) - self._first_seq
            if step < 0:
                return []  # sent before the last PLAY moved the play point
            # Past a quarter of the sequence space the old numbers can no longer be told
            # from new ones by comparison alone: stop filtering.
            if step > 16384:
                self._first_seq = None
        self.stats.packet_received(packet, arrival)
        out: list[Decoded] = []
        if self.codec == "h264":
            before = self._depacketizer.lost
            for unit in self._depacketizer.feed(packet):
                out += self._decode_video(unit.rtp_timestamp, unit.nals)
            self.lost += self._depacketizer.lost - before
            return out
        try:
            frames = aac_frames(packet.payload)
        except RtpError:
            return []
        base = self._ticks(packet.timestamp)
        for i, frame in enumerate(frames):
            # AAC-hbr: consecutive frames of one packet follow each other by 1024 samples.
            out += self._decode(frame, base + 1024 * i)
        return out

    def _decode_video(self, rtp_timestamp: int, nals: list[bytes]) -> list[Decoded]:
        types = {nal_type(nal) for nal in nals if nal}
        if NAL_IDR in types and NAL_SPS not in types:
            # The parameter sets travel in the SDP (sprop-parameter-sets), not in band.
            nals = [*self.parameter_sets, *nals]
        data = b"".join(ANNEX_B_START + nal for nal in nals)
        return self._decode(data, self._ticks(rtp_timestamp))

    def _decode(self, data: bytes, ticks: int) -> list[Decoded]:
        """Decode one packet stamped ``ticks``; each frame that came out, with its npt."""
        packet = av.Packet(data)
        packet.pts, packet.time_base = ticks, Fraction(1, self.clock_rate)
        try:
            frames = self._decoder.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            log.debug("%s decode error: %s", self.kind, exc)
            return []
        return [Decoded((ticks if f.pts is None else f.pts) / self.clock_rate, f) for f in frames]

    @property
    def fps(self) -> float | None:
        """The frame rate the decoder read from the SPS timing info, if any."""
        rate = self._decoder.framerate if self.codec == "h264" else None
        return float(rate) if rate else None

    def rtcp_received(self, data: bytes, arrival: float) -> None:
        """Take an RTCP compound packet: its sender reports time our receiver reports."""
        with contextlib.suppress(RtpError):
            for packet in parse_rtcp(data):
                if isinstance(packet, SenderReport):
                    self.stats.sender_report_received(packet, arrival)

    def receiver_report(self, reporter_ssrc: int, cname: str, now: float) -> bytes | None:
        """A compound RR + SDES CNAME (RFC 3550 §6.1); None before any packet arrived."""
        block = self.stats.report_block(now)
        if block is None:
            return None
        return (bytes(ReceiverReport(reporter_ssrc, [block]))
                + bytes(SourceDescription.cname(reporter_ssrc, cname)))


def match_rtp_info(url: str, infos: list[rtsp.RtpInfo]) -> rtsp.RtpInfo | None:
    """The RTP-Info entry for control URL ``url``: the same path (queries such as the
    token aside), else a relative ``url=track1`` naming our last path segment."""
    path = urlsplit(url).path.rstrip("/")
    for info in infos:
        if urlsplit(info.url).path.rstrip("/") == path:
            return info
    for info in infos:
        relative = info.url.split("?", 1)[0].strip("/")
        if "://" not in relative and relative and path.endswith("/" + relative):
            return info
    return None
