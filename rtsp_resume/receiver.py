"""Receiving one RTP track: timing, reassembly and decoding, without sockets.

A :class:`TrackReceiver` is one track the terminal has SETUP. The player's thread hands it
RTP and RTCP packets with their arrival time; it gives back decoded pictures and audio
frames stamped with the program's play time (npt), and the report blocks for RTCP
receiver reports. Standards:

- RFC 2326 §12.29, §12.33: the PLAY answer's ``Range`` and ``RTP-Info`` tie a track's RTP
  time to npt;
- RFC 6184 (H.264, through :class:`rtsp_resume.rtp.H264Depacketizer`) and RFC 3640
  (AAC-hbr, :func:`rtsp_resume.rtp.aac_frames`);
- RFC 3550 §6.4.2 and Appendix A: reception statistics and receiver reports.

Decoding uses PyAV codec contexts: H.264 fed as Annex B with the SPS and PPS of the SDP's
``sprop-parameter-sets``, AAC with the SDP's ``config`` as extradata.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urlsplit

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.rtp import (
    H264Depacketizer,
    ReceiverReport,
    ReceptionStats,
    RtpError,
    RtpPacket,
    SenderReport,
    SourceDescription,
    aac_frames,
    parse_rtcp,
)

log = logging.getLogger(__name__)

ANNEX_B_START = b"\x00\x00\x00\x01"
NAL_IDR = 5
NAL_SPS = 7
# Packets kept while a PLAY is awaiting its answer (the answer says how to time them).
MAX_HELD_PACKETS = 4096


@dataclass
class DecodedVideo:
    """A decoded picture and its presentation time in seconds of the program (npt)."""

    pts: float
    frame: av.VideoFrame


@dataclass
class DecodedAudio:
    """A decoded audio frame: its npt and how many samples it holds."""

    pts: float
    samples: int


def _signed32(value: int) -> int:
    value %= 1 << 32
    return value - (1 << 32) if value >= 1 << 31 else value


def _seq_at_or_after(seq: int, first: int) -> bool:
    return (seq - first) % 65536 < 32768


class TrackReceiver:
    """One track of the session as the terminal receives it.

    ``media`` is the track's SDP section and ``url`` its control URL (what SETUP was
    sent to, and what the server names in RTP-Info). Times: the PLAY answer says that
    RTP time ``rtptime`` of this track is play time ``npt_start`` (RFC 2326 §12.33), so a
    packet with timestamp ``ts`` is presented at ``npt_start + (ts - rtptime) / rate``,
    counting ``ts - rtptime`` modulo 2**32 as a signed step.

    While a PLAY is on its way (:meth:`play_sent`) incoming packets are held: until the
    answer arrives nobody knows how to time them, and after a seek the ones numbered
    before the answer's ``seq`` belong to the old position and are dropped.
    """

    def __init__(self, media: sdp.MediaDescription, url: str) -> None:
        encoding = (media.encoding or "").upper()
        if encoding == "H264" and media.kind == "video":
            self.kind, self.codec = "video", "h264"
        elif encoding == "MPEG4-GENERIC" and media.kind == "audio":
            self.kind, self.codec = "audio", "aac"
        else:
            raise sdp.SdpError(f"{media.kind} track {encoding or '?'} is not H.264 or AAC")
        if not media.clock_rate:
            raise sdp.SdpError(f"{media.kind} track without a clock rate in its rtpmap")
        self.media = media
        self.url = url
        self.clock_rate = media.clock_rate
        self.payload_type = media.payload_type
        self.parameter_sets = media.sprop_parameter_sets() if self.codec == "h264" else []
        self.config = media.aac_config() if self.codec == "aac" else b""
        self.stats = ReceptionStats(self.clock_rate)
        self.ssrc: int | None = None  # from the SETUP answer's Transport, when given
        # Transport, filled in by the player after SETUP.
        self.channel: int | None = None  # TCP: interleaved RTP channel (RTCP is + 1)
        self.rtp_socket: socket.socket | None = None  # UDP
        self.rtcp_socket: socket.socket | None = None
        self.server_rtcp: tuple[str, int] | None = None
        self.lost = 0
        self.malformed = 0
        self.decode_errors = 0
        self._depacketizer = H264Depacketizer()
        self._decoder = self._new_decoder()
        self._rtptime: int | None = None
        self._npt_start = 0.0
        self._first_seq: int | None = None
        self._held: list[tuple[RtpPacket, float]] | None = None
        self._drop_before_answer = False

    def _new_decoder(self) -> av.CodecContext:
        decoder = av.CodecContext.create(self.codec, "r")
        if self.codec == "aac":
            decoder.extradata = self.config
        return decoder

    # -- PLAY ---------------------------------------------------------------------------

    def play_sent(self, repositions: bool) -> None:
        """A PLAY went out; ``repositions`` when it moves the play point (start or seek)."""
        self._held = []
        self._drop_before_answer = repositions and self._rtptime is not None

    def play_answered(self, npt_start: float, info: rtsp.RtpInfo | None,
                      repositions: bool) -> list[tuple[RtpPacket, float]]:
        """Take the PLAY answer's timing and stop holding packets. Returns the held
        (packet, arrival) pairs still worth feeding to :meth:`receive`."""
        if repositions:
            # Pictures still inside the decoder belong to the old position, and the new
            # position starts with a keyframe: a fresh decoder forgets the old ones.
            self._decoder = self._new_decoder()
            self._depacketizer = H264Depacketizer()
        if info is not None:
            self._npt_start = npt_start
            self._rtptime = info.rtptime
            self._first_seq = info.seq
        elif repositions or self._rtptime is None:
            # No RTP-Info: the first packet after PLAY is taken to be at the range start.
            # (A resume without it keeps the mapping it had: RTP time runs on.)
            self._npt_start = npt_start
            self._rtptime = None
            self._first_seq = None
        held, self._held = self._held or [], None
        if self._first_seq is None and self._drop_before_answer:
            held = []  # no seq to tell old from new: what came before the answer is old
        return held

    def npt(self, rtp_timestamp: int) -> float:
        """Play time of an RTP timestamp (needs a PLAY answer or a first packet)."""
        return self._ticks(rtp_timestamp) / self.clock_rate

    def _ticks(self, rtp_timestamp: int) -> int:
        if self._rtptime is None:
            # No RTP-Info: the first packet after PLAY is taken to be at the range start.
            self._rtptime = rtp_timestamp
        base = round(self._npt_start * self.clock_rate)
        return base + _signed32(rtp_timestamp - self._rtptime)

    # -- packets ------------------------------------------------------------------------

    def receive(self, packet: RtpPacket, arrival: float) -> list[DecodedVideo | DecodedAudio]:
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
            if not _seq_at_or_after(packet.sequence_number, self._first_seq):
                return []  # sent before the last PLAY moved the play point
            # Once the new numbering has started, old packets can no longer be told
            # apart by comparison alone after 32768 packets: stop filtering.
            if (packet.sequence_number - self._first_seq) % 65536 > 16384:
                self._first_seq = None
        self.stats.packet_received(packet, arrival)
        if self.codec == "h264":
            out: list[DecodedVideo | DecodedAudio] = []
            before = self._depacketizer.lost
            for unit in self._depacketizer.feed(packet):
                out += self._decode_video(unit.rtp_timestamp, unit.nals)
            self.lost += self._depacketizer.lost - before
            return out
        try:
            frames = aac_frames(packet.payload)
        except RtpError:
            self.malformed += 1
            return []
        base = self._ticks(packet.timestamp)
        out = []
        for i, frame in enumerate(frames):
            # AAC-hbr: consecutive frames of one packet follow each other by 1024 samples.
            out += self._decode_audio(base + 1024 * i, frame)
        return out

    def _decode_video(self, rtp_timestamp: int, nals: list[bytes]) -> list[DecodedVideo]:
        types = {nal[0] & 0x1F for nal in nals if nal}
        if NAL_IDR in types and NAL_SPS not in types:
            # The parameter sets travel in the SDP (sprop-parameter-sets), not in band.
            nals = [*self.parameter_sets, *nals]
        data = b"".join(ANNEX_B_START + nal for nal in nals)
        packet = av.Packet(data)
        packet.pts = self._ticks(rtp_timestamp)
        packet.time_base = Fraction(1, self.clock_rate)
        try:
            frames = self._decoder.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            self.decode_errors += 1
            log.debug("video decode error: %s", exc)
            return []
        return [DecodedVideo(self._frame_npt(f, packet.pts), f) for f in frames]

    def _decode_audio(self, ticks: int, frame: bytes) -> list[DecodedAudio]:
        packet = av.Packet(frame)
        packet.pts = ticks
        packet.time_base = Fraction(1, self.clock_rate)
        try:
            frames = self._decoder.decode(packet)
        except (av.error.FFmpegError, ValueError) as exc:
            self.decode_errors += 1
            log.debug("audio decode error: %s", exc)
            return []
        return [DecodedAudio(self._frame_npt(f, ticks), f.samples) for f in frames]

    def _frame_npt(self, frame: av.frame.Frame, fallback_ticks: int) -> float:
        ticks = frame.pts if frame.pts is not None else fallback_ticks
        return ticks / self.clock_rate

    @property
    def fps(self) -> float | None:
        """The frame rate the decoder read from the SPS timing info, if any."""
        if self.codec != "h264":
            return None
        rate = self._decoder.framerate
        return float(rate) if rate else None

    # -- RTCP ---------------------------------------------------------------------------

    def rtcp_received(self, data: bytes, arrival: float) -> int:
        """Take an RTCP compound packet; returns how many sender reports it held."""
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self.malformed += 1
            return 0
        reports = 0
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.stats.sender_report_received(packet, arrival)
                reports += 1
        return reports

    def receiver_report(self, reporter_ssrc: int, cname: str, now: float) -> bytes | None:
        """A compound RR + SDES CNAME (RFC 3550 §6.1) for this track; None before any
        packet arrived."""
        block = self.stats.report_block(now)
        if block is None:
            return None
        return (bytes(ReceiverReport(reporter_ssrc, [block]))
                + bytes(SourceDescription.cname(reporter_ssrc, cname)))


def match_rtp_info(url: str, infos: list[rtsp.RtpInfo]) -> rtsp.RtpInfo | None:
    """The RTP-Info entry of the track whose control URL is ``url``.

    An exact match first (what the server echoes from SETUP, as FFmpeg requires), then
    the same path (a server that drops the query or names another host), then a
    relative URL naming our last path segment (``url=track1``, as some servers write).
    """
    for info in infos:
        if info.url == url:
            return info
    path = urlsplit(url).path.rstrip("/")
    for info in infos:
        if urlsplit(info.url).path.rstrip("/") == path:
            return info
    for info in infos:
        relative = info.url.split("?", 1)[0].strip("/")
        if "://" not in relative and relative and path.endswith("/" + relative):
            return info
    return None
