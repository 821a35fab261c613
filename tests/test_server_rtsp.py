"""The streaming server method by method, over a raw TCP socket.

Each test speaks RTSP 1.0 (RFC 2326) to a real :class:`StreamingServer` with nothing but
a socket and :mod:`rtsp_resume.rtsp`, and checks what comes back on the wire: status
codes, headers, the SDP, and the RTP/RTCP packets interleaved on the connection (or sent
over UDP). Media is checked by decoding it: H.264 access units are put back together with
:class:`rtsp_resume.payload.H264Depacketizer` and decoded with PyAV, and the frame index drawn
into every picture of the sample says which frame a player would show.

The sample is 30 s of 640x360 at 25 fps with a keyframe every 2 s (50 frames) and B-frames,
plus 48 kHz mono AAC.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import pytest

from rtsp_resume import rtsp, sdp
from rtsp_resume.media import MediaFile
from rtsp_resume.payload import H264Depacketizer
from rtsp_resume.ports import bind_udp_pair
from rtsp_resume.rtp import (
    RtpPacket,
    SenderReport,
    parse_rtcp,
)
from rtsp_resume.sample import draw_frame, read_frame_index
from rtsp_resume.server import ServerConfig, StreamingServer

FPS = 25
GOP = 50  # frames from one keyframe to the next
VIDEO_TICKS_PER_FRAME = 90_000 // FPS
AAC_SAMPLES_PER_FRAME = 1024
AUDIO_RATE = 48_000
DEADLINE = 5.0  # seconds any single wait may take before the test fails


# --------------------------------------------------------------------------------------
# A raw RTSP client: one socket, one reader thread, an ordered log of what arrived


@dataclass
class Arrival:
    at: float  # time.monotonic() when the bytes were read
    event: rtsp.Response | rtsp.InterleavedFrame


class RawClient:
    """An RTSP connection driven by hand.

    A reader thread parses everything the server sends into one ordered log, so a test can
    ask what arrived after a given response. It answers the server's heartbeat OPTIONS
    with 200 (as FFmpeg does), so sessions stay alive while a test runs.
    """

    def __init__(self, port: int, reader: bool = True, rcvbuf: int | None = None) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self.parser = rtsp.RtspParser()
        self.log: list[Arrival] = []
        self.closed = False  # the server closed the connection
        self.heartbeats_answered = 0
        self._cseq = 0
        self._changed = threading.Condition()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if reader:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    @property
    def base(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}"

    def _read(self) -> None:
        self.sock.settimeout(None)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                with self._changed:
                    self.closed = True
                    self._changed.notify_all()
                return
            for event in self.parser.feed(data):
                if isinstance(event, rtsp.Request):
                    self._answer_heartbeat(event)
                    continue
                with self._changed:
                    self.log.append(Arrival(now, event))
                    self._changed.notify_all()

    def _answer_heartbeat(self, request: rtsp.Request) -> None:
        headers = rtsp.Headers({"CSeq": request.headers.get("CSeq", "0")})
        self.send_raw(bytes(rtsp.Response(200, "OK", headers)))
        self.heartbeats_answered += 1

    def send_raw(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
        """Block until ``predicate()`` holds (checked whenever something arrives)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._changed.wait(left)

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None,
                body: bytes = b"", cseq: str | None = None) -> rtsp.Response:
        """Send a request and return the response carrying its CSeq."""
        self._cseq += 1
        cseq = cseq if cseq is not None else str(self._cseq)
        all_headers = rtsp.Headers({"CSeq": cseq, **(headers or {})})
        self.send_raw(bytes(rtsp.Request(method, uri, all_headers, body)))
        found: list[rtsp.Response] = []

        def answered() -> bool:
            found[:] = [a.event for a in self.log if isinstance(a.event, rtsp.Response)
                        and a.event.headers.get("CSeq") == cseq]
            return bool(found)

        self.wait(answered, f"the answer to {method} (CSeq {cseq})")
        return found[0]

    def arrival_of(self, response: rtsp.Response) -> int:
        """Position of ``response`` in the log."""
        return next(i for i, a in enumerate(self.log) if a.event is response)

    def frames(self, channel: int, after: rtsp.Response | None = None,
               before: rtsp.Response | None = None) -> list[Arrival]:
        """Interleaved frames on ``channel``, optionally between two responses."""
        with self._changed:
            start = self.arrival_of(after) + 1 if after is not None else 0
            end = self.arrival_of(before) if before is not None else len(self.log)
            return [a for a in self.log[start:end]
                    if isinstance(a.event, rtsp.InterleavedFrame) and a.event.channel == channel]

    def wait_for_packets(self, channel: int, count: int,
                         after: rtsp.Response | None = None, timeout: float = DEADLINE) -> None:
        self.wait(lambda: len(self.frames(channel, after)) >= count,
                  f"{count} packets on channel {channel}", timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._thread is not None:
            self._thread.join(DEADLINE)


@pytest.fixture
def client(rtsp_server: StreamingServer) -> Iterator[RawClient]:
    c = RawClient(rtsp_server.port)
    yield c
    c.close()


# --------------------------------------------------------------------------------------
# Session helpers


@dataclass
class TcpSession:
    id: str
    setup_uris: list[str]  # the SETUP request URI of each track, in SDP order
    channels: list[int]  # the interleaved RTP channel of each track (RTCP is +1)
    setups: list[rtsp.Response]


def describe(client: RawClient, content: str = "sample") -> sdp.SessionDescription:
    response = client.request("DESCRIBE", f"{client.base}/{content}",
                              {"Accept": "application/sdp"})
    assert response.status == 200, response
    return sdp.parse(response.body.decode())


def setup_tcp(client: RawClient, content: str = "sample",
              audio: bool = True) -> TcpSession:
    """DESCRIBE, then SETUP the video (channels 0-1) and audio (2-3) over interleaved TCP."""
    description = describe(client, content)
    tracks = description.media if audio else description.media[:1]
    session_id: str | None = None
    uris, channels, setups = [], [], []
    for number, media in enumerate(tracks):
        uri = sdp.resolve_control(f"{client.base}/{content}/", media.control)
        headers = {"Transport": f"RTP/AVP/TCP;unicast;interleaved={2 * number}-{2 * number + 1}"}
        if session_id is not None:
            headers["Session"] = session_id
        response = client.request("SETUP", uri, headers)
        assert response.status == 200, response
        session_id = rtsp.parse_session(response.headers["Session"])[0]
        uris.append(uri)
        channels.append(2 * number)
        setups.append(response)
    assert session_id is not None
    return TcpSession(session_id, uris, channels, setups)


def play(client: RawClient, session: TcpSession, start: float | None = None,
         content: str = "sample") -> rtsp.Response:
    headers = {"Session": session.id}
    if start is not None:
        headers["Range"] = rtsp.format_range(start)
    response = client.request("PLAY", f"{client.base}/{content}", headers)
    assert response.status == 200, response
    return response


def video_frames(client: RawClient, after: rtsp.Response) -> list[float]:
    """Arrival times of the last packet (marker set) of each video frame on channel 0."""
    return [a.at for a in client.frames(0, after=after)
            if RtpPacket.parse(a.event.data).marker]  # type: ignore[union-attr]


def wait_for_frames(client: RawClient, count: int, after: rtsp.Response,
                    timeout: float = DEADLINE) -> None:
    client.wait(lambda: len(video_frames(client, after)) >= count,
                f"{count} video frames", timeout)


def rtp_packets(arrivals: list[Arrival]) -> list[RtpPacket]:
    return [RtpPacket.parse(a.event.data) for a in arrivals]  # type: ignore[union-attr]


def unwrap(timestamp: int, origin: int) -> int:
    """A 32-bit RTP timestamp as a signed distance from ``origin`` (no session is 13 h)."""
    delta = (timestamp - origin) % (1 << 32)
    return delta - (1 << 32) if delta >= 1 << 31 else delta


def seq_after(seq: int, previous: int) -> int:
    """How many sequence numbers ``seq`` comes after ``previous`` (mod 2**16)."""
    return (seq - previous) % (1 << 16)


@dataclass
class Picture:
    index: int | None  # the frame number drawn into the picture
    timestamp: int  # RTP timestamp of the access unit it was decoded from, unwrapped


def decode_video(packets: list[RtpPacket], origin: int) -> list[Picture]:
    """Depacketize and decode H.264 RTP packets that arrived in this order.

    Each packet's RTP timestamp (relative to ``origin``) becomes the decoder's pts, so a
    picture shown carries the timestamp of the access unit that coded it.
    """
    depacketizer = H264Depacketizer()
    decoder = av.CodecContext.create("h264", "r")
    pictures: list[Picture] = []

    def decode(packet: av.Packet | None) -> None:
        for frame in decoder.decode(packet):
            pictures.append(Picture(read_frame_index(frame), int(frame.pts)))

    units = [u for p in packets for u in depacketizer.feed(p)] + depacketizer.flush()
    for unit in units:
        assert unit.complete, f"access unit {unit.rtp_timestamp} lost packets"
        packet = av.Packet(b"".join(b"\x00\x00\x00\x01" + nal for nal in unit.nals))
        packet.pts = unwrap(unit.rtp_timestamp, origin)
        packet.time_base = Fraction(1, 90_000)
        decode(packet)
    decode(None)
    return pictures


def write_clip(path: Path, video: str, audio: str | None) -> Path:
    """A one-second file made with PyAV, in codecs the sample does not use."""
    with av.open(str(path), "w") as out:
        vstream = out.add_stream(video, rate=FPS)
        astream = out.add_stream(audio, rate=AUDIO_RATE, layout="mono") if audio else None
        vstream.width, vstream.height, vstream.pix_fmt = 640, 360, "yuv420p"
        for i in range(FPS):
            out.mux(vstream.encode(draw_frame(i, 640, 360, FPS)))
        out.mux(vstream.encode(None))
        if astream is not None:
            size = astream.codec_context.frame_size or 1024
            for first in range(0, AUDIO_RATE, size):
                frame = av.AudioFrame(format=astream.codec_context.format.name,
                                      layout="mono", samples=size)
                for plane in frame.planes:
                    plane.update(bytes(plane.buffer_size))
                frame.sample_rate, frame.pts = AUDIO_RATE, first
                frame.time_base = Fraction(1, AUDIO_RATE)
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


# --------------------------------------------------------------------------------------
# OPTIONS, CSeq, DESCRIBE


def test_options_lists_every_method(client: RawClient) -> None:
    response = client.request("OPTIONS", "*")
    assert response.status == 200
    assert rtsp.parse_public(response.headers["Public"]) >= {
        "OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN",
        "GET_PARAMETER", "SET_PARAMETER",
    }


def test_cseq_is_echoed_on_every_response(client: RawClient) -> None:
    base = client.base
    asked = [
        ("OPTIONS", "*", {}, 200),
        ("DESCRIBE", f"{base}/sample", {}, 200),
        ("DESCRIBE", f"{base}/no_such_clip", {}, 404),
        ("PLAY", f"{base}/sample", {"Session": "0123456789abcdef"}, 454),
        ("SETUP", f"{base}/sample/track1", {"Transport": "RTP/SAVP;unicast;client_port=0-1"},
         461),
        ("RECORD", f"{base}/sample", {}, 501),
    ]
    for number, (method, uri, headers, status) in enumerate(asked):
        cseq = str(1000 + 7 * number)  # not the count of requests: it must be copied
        response = client.request(method, uri, headers, cseq=cseq)
        assert (response.status, response.headers.get("CSeq")) == (status, cseq), method


def test_describe_returns_an_sdp_with_range_and_absolute_controls(client: RawClient) -> None:
    response = client.request("DESCRIBE", f"{client.base}/sample")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/sdp"
    assert int(response.headers["Content-Length"]) == len(response.body)
    text = response.body.decode()
    assert "a=range:npt=0-30.000" in text.splitlines()
    description = sdp.parse(text)
    assert description.range == (0.0, 30.0)
    video, audio = description.media
    assert (video.kind, video.encoding, video.clock_rate) == ("video", "H264", 90_000)
    assert video.fmtp["packetization-mode"] == "1"
    assert len(video.sprop_parameter_sets()) == 2
    assert (audio.kind, audio.encoding, audio.clock_rate) == ("audio", "MPEG4-GENERIC",
                                                              AUDIO_RATE)
    assert audio.aac_config()
    assert video.control == f"{client.base}/sample/track1"
    assert audio.control == f"{client.base}/sample/track2"


def test_unknown_content_is_404(client: RawClient) -> None:
    assert client.request("DESCRIBE", f"{client.base}/no_such_clip").status == 404
    assert client.request("SETUP", f"{client.base}/no_such_clip/track1",
                          {"Transport": "RTP/AVP/TCP;interleaved=0-1"}).status == 404
    assert client.request("DESCRIBE", f"{client.base}/sample/track9/extra").status == 404


def test_garbage_gets_400_and_the_server_keeps_serving(rtsp_server: StreamingServer) -> None:
    junk = RawClient(rtsp_server.port)
    try:
        junk.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not rtsp at all\r\n\r\n")
        junk.wait(lambda: junk.closed, "the server to close the connection")
        statuses = [a.event.status for a in junk.log if isinstance(a.event, rtsp.Response)]
        assert statuses == [400]
    finally:
        junk.close()
    other = RawClient(rtsp_server.port)
    try:
        assert other.request("OPTIONS", "*").status == 200
        assert describe(other).range == (0.0, 30.0)
    finally:
        other.close()


def test_missing_cseq_is_400(client: RawClient) -> None:
    client.send_raw(b"OPTIONS * RTSP/1.0\r\nUser-Agent: forgetful\r\n\r\n")
    client.wait(lambda: any(isinstance(a.event, rtsp.Response) for a in client.log),
                "an answer without CSeq")
    first = client.log[0].event
    assert isinstance(first, rtsp.Response) and first.status == 400
    assert "CSeq" not in first.headers
    assert client.request("OPTIONS", "*").status == 200  # the connection still works


# --------------------------------------------------------------------------------------
# Error statuses of the session methods


def test_unknown_session_is_454(client: RawClient) -> None:
    forged = {"Session": "deadbeefdeadbeef"}
    for method in ("PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER"):
        assert client.request(method, f"{client.base}/sample", forged).status == 454, method
    response = client.request("SETUP", f"{client.base}/sample/track1",
                              {**forged, "Transport": "RTP/AVP/TCP;interleaved=0-1"})
    assert response.status == 454


@pytest.mark.parametrize("transport", [
    "RTP/AVP;multicast",
    "RTP/AVP;multicast;destination=232.1.2.3;port=5000-5001",
    "RTP/SAVP;unicast;client_port=5000-5001",
    "RAW/RAW/UDP;unicast;client_port=5000-5001",
])
def test_unsupported_transport_is_461(client: RawClient, transport: str) -> None:
    response = client.request("SETUP", f"{client.base}/sample/track1", {"Transport": transport})
    assert response.status == 461
    assert "Session" not in response.headers  # no half-made session is left behind


def test_supported_offer_after_unsupported_ones_is_taken(client: RawClient) -> None:
    offers = "RTP/SAVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=0-1"
    response = client.request("SETUP", f"{client.base}/sample/track1", {"Transport": offers})
    assert response.status == 200
    assert rtsp.parse_transport(response.headers["Transport"])[0].interleaved == (0, 1)


def test_play_before_setup_is_455(client: RawClient) -> None:
    assert client.request("PLAY", f"{client.base}/sample").status == 455
    assert client.request("PAUSE", f"{client.base}/sample").status == 455
    assert client.request("PLAY", f"{client.base}/no_such_clip").status == 404


def test_pause_before_play_is_455(client: RawClient) -> None:
    session = setup_tcp(client)
    response = client.request("PAUSE", f"{client.base}/sample", {"Session": session.id})
    assert response.status == 455


@pytest.fixture
def odd_media(tmp_path: Path) -> Path:
    """A folder with a file nothing in which is playable, and one with an mp3 track."""
    write_clip(tmp_path / "old.mp4", "mpeg4", None)
    write_clip(tmp_path / "mixed.mp4", "libx264", "libmp3lame")
    write_clip(tmp_path / "opus.mkv", "libx264", "libopus")
    return tmp_path


def test_nothing_playable_is_415_and_other_codecs_are_left_out(odd_media: Path) -> None:
    with StreamingServer(odd_media, ServerConfig(port=0)) as server:
        c = RawClient(server.port)
        try:
            assert c.request("DESCRIBE", f"{c.base}/old").status == 415
            assert c.request("SETUP", f"{c.base}/old/track1",
                             {"Transport": "RTP/AVP/TCP;interleaved=0-1"}).status == 415
            for content in ("mixed", "opus"):
                description = describe(c, content)
                assert [(m.kind, m.encoding) for m in description.media] == [("video", "H264")]
            session = setup_tcp(c, "mixed")
            play(c, session, content="mixed")
            c.wait_for_packets(0, 1)  # the video still plays
        finally:
            c.close()


# --------------------------------------------------------------------------------------
# SETUP


def test_session_header_has_a_long_random_id_and_a_timeout(client: RawClient) -> None:
    first = setup_tcp(client)
    session_header = first.setups[0].headers["Session"]
    session_id, timeout = rtsp.parse_session(session_header)
    assert re.fullmatch(r"[0-9a-fA-F]{8,}", session_id), session_id
    assert re.fullmatch(r"[0-9a-fA-F]+;timeout=\d+", session_header), session_header
    assert timeout is not None and timeout >= 1
    # The second SETUP of the same session answers the same id.
    assert rtsp.parse_session(first.setups[1].headers["Session"])[0] == session_id
    second = setup_tcp(client)
    assert second.id != session_id


def test_setup_udp_answers_server_ports_and_ssrc(rtsp_server: StreamingServer,
                                                 client: RawClient) -> None:
    rtp_sock, rtcp_sock = bind_udp_pair("127.0.0.1", blocking=True)
    try:
        port = rtp_sock.getsockname()[1]
        uri = f"{client.base}/sample/track1"
        response = client.request(
            "SETUP", uri, {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"})
        assert response.status == 200
        (answer,) = rtsp.parse_transport(response.headers["Transport"])
        assert answer.client_port == (port, port + 1)
        assert answer.server_port is not None
        assert answer.server_port[0] % 2 == 0
        assert answer.server_port[1] == answer.server_port[0] + 1
        assert answer.ssrc is not None
        assert re.search(r"ssrc=[0-9A-Fa-f]{8}\b", response.headers["Transport"])

        session_id = rtsp.parse_session(response.headers["Session"])[0]
        reply = client.request("PLAY", f"{client.base}/sample", {"Session": session_id})
        assert reply.status == 200
        rtp_sock.settimeout(DEADLINE)
        data, sender = rtp_sock.recvfrom(65536)
        packet = RtpPacket.parse(data)
        assert sender[1] == answer.server_port[0]
        assert packet.ssrc == answer.ssrc
        (info,) = rtsp.parse_rtp_info(reply.headers["RTP-Info"])
        assert (info.url, info.seq, info.rtptime) == (uri, packet.sequence_number,
                                                     packet.timestamp)
        # The first sender report comes from the odd port to the client's odd port.
        rtcp_sock.settimeout(DEADLINE)
        data, sender = rtcp_sock.recvfrom(65536)
        assert sender[1] == answer.server_port[1]
        report = parse_rtcp(data)[0]
        assert isinstance(report, SenderReport) and report.ssrc == answer.ssrc
    finally:
        rtp_sock.close()
        rtcp_sock.close()


def test_tcp_interleaved_channels_are_echoed(client: RawClient) -> None:
    video = client.request("SETUP", f"{client.base}/sample/track1",
                           {"Transport": "RTP/AVP/TCP;unicast;interleaved=6-7"})
    session_id = rtsp.parse_session(video.headers["Session"])[0]
    audio = client.request("SETUP", f"{client.base}/sample/track2",
                           {"Transport": "RTP/AVP/TCP;unicast;interleaved=10-11",
                            "Session": session_id})
    for response, channels in ((video, (6, 7)), (audio, (10, 11))):
        assert response.status == 200
        (answer,) = rtsp.parse_transport(response.headers["Transport"])
        assert answer.is_tcp and answer.interleaved == channels
        assert answer.ssrc is not None
    play(client, TcpSession(session_id, [], [6, 10], [video, audio]))
    client.wait_for_packets(6, 1)
    client.wait_for_packets(10, 1)
    assert RtpPacket.parse(client.frames(6)[0].event.data).payload_type == 96  # type: ignore[union-attr]
    assert RtpPacket.parse(client.frames(10)[0].event.data).payload_type == 97  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------
# PLAY: Range, RTP-Info, timestamps


def test_play_answers_range_from_the_keyframe_and_rtp_info_of_the_first_packets(
        client: RawClient) -> None:
    session = setup_tcp(client)
    reply = play(client, session, start=13.0)  # keyframes at 12 s and 14 s
    assert reply.headers["Range"] == "npt=12.000-30.000"
    assert rtsp.parse_session(reply.headers["Session"])[0] == session.id
    video_info, audio_info = rtsp.parse_rtp_info(reply.headers["RTP-Info"])
    assert [video_info.url, audio_info.url] == session.setup_uris  # exactly, as FFmpeg wants
    for channel in session.channels:
        client.wait_for_packets(channel, 1, after=reply)
    video = rtp_packets(client.frames(0, after=reply))[0]
    audio = rtp_packets(client.frames(2, after=reply))[0]
    assert video_info.seq == video.sequence_number
    assert audio_info.seq == audio.sequence_number
    # rtptime is the RTP time of the Range start (RFC 2326 §12.33). The video starts with
    # the keyframe at that very time; the first AAC frame starts within one frame of it.
    assert video_info.rtptime == video.timestamp
    assert video.payload[0] & 0x1F in (7, 5, 28)  # SPS, IDR or an FU-A of one: a keyframe
    assert 0 <= unwrap(audio.timestamp, audio_info.rtptime) < AAC_SAMPLES_PER_FRAME  # type: ignore[arg-type]


def test_play_from_the_start_and_out_of_range(client: RawClient) -> None:
    session = setup_tcp(client)
    reply = play(client, session)  # no Range: from the start
    assert reply.headers["Range"] == "npt=0.000-30.000"
    client.request("PAUSE", f"{client.base}/sample", {"Session": session.id})
    too_far = client.request("PLAY", f"{client.base}/sample",
                             {"Session": session.id, "Range": "npt=31-"})
    assert too_far.status == 457


def test_rtp_clocks_and_random_origins(rtsp_server: StreamingServer) -> None:
    """Video on 90 kHz, audio on 48 kHz, numbering from random values per session."""
    firsts = []
    for _ in range(2):
        c = RawClient(rtsp_server.port)
        try:
            session = setup_tcp(c)
            reply = play(c, session)
            c.wait_for_packets(2, 10, after=reply)
            wait_for_frames(c, 6, after=reply)
            video = rtp_packets(c.frames(0, after=reply))
            audio = rtp_packets(c.frames(2, after=reply))
            origin = video[0].timestamp
            # Presentation times of the first pictures, in display order: one frame apart.
            shown = sorted({unwrap(p.timestamp, origin) for p in video})[:5]
            assert {b - a for a, b in pairwise(shown)} == {VIDEO_TICKS_PER_FRAME}, shown
            audio_steps = {unwrap(b.timestamp, a.timestamp) for a, b in pairwise(audio)}
            assert audio_steps == {AAC_SAMPLES_PER_FRAME}
            firsts.append((video[0].sequence_number, video[0].timestamp, video[0].ssrc,
                           audio[0].timestamp, audio[0].ssrc))
        finally:
            c.close()
    assert all(a != b for a, b in zip(*firsts, strict=True)), firsts


@pytest.fixture(scope="module")
def decode_order(sample_dir: Path) -> list[int]:
    """Frame numbers of the sample's pictures in decode order, read from the file."""
    media = MediaFile(sample_dir / "sample.mp4")
    video = next(t for t in media.tracks if t.kind == "video")
    return [round(u.pts * FPS) for u in media.access_units(0.0) if u.track == video.index]


def sent_frames(packets: list[RtpPacket], npt0_rtptime: int) -> list[int]:
    """Frame numbers the access units claim, in the order they were sent.

    ``npt0_rtptime`` is the RTP time of npt 0; a unit's timestamp over 3600 (90 kHz at
    25 fps) is then the number of the picture it presents.
    """
    numbers = []
    for packet in packets:
        if packet.marker:
            ticks = unwrap(packet.timestamp, npt0_rtptime)
            assert ticks % VIDEO_TICKS_PER_FRAME == 0, ticks
            numbers.append(ticks // VIDEO_TICKS_PER_FRAME)
    return numbers


def assert_pictures_match_timestamps(packets: list[RtpPacket], npt0_rtptime: int) -> None:
    """Decode: every picture shows the frame its RTP timestamp says, none is missing."""
    pictures = decode_video(packets, npt0_rtptime)
    assert all(p.timestamp == p.index * VIDEO_TICKS_PER_FRAME for p in pictures), [  # type: ignore[operator]
        (p.index, p.timestamp) for p in pictures]
    assert sorted(p.index for p in pictures) == sorted(sent_frames(packets, npt0_rtptime))  # type: ignore[type-var]


def test_b_frames_go_in_decode_order_stamped_by_presentation_time(
        client: RawClient, decode_order: list[int]) -> None:
    session = setup_tcp(client, audio=False)
    reply = play(client, session)
    wait_for_frames(client, 12, after=reply)
    packets = rtp_packets(client.frames(0, after=reply))
    (info,) = rtsp.parse_rtp_info(reply.headers["RTP-Info"])
    sent = sent_frames(packets, info.rtptime)  # type: ignore[arg-type]
    assert sent == decode_order[:len(sent)]
    assert sent != sorted(sent), sent  # the sample has B-frames: the orders differ
    assert_pictures_match_timestamps(packets, info.rtptime)  # type: ignore[arg-type]


def test_pause_and_resume_continue_without_a_gap(client: RawClient,
                                                 decode_order: list[int]) -> None:
    session = setup_tcp(client)
    reply = play(client, session)
    origins = [info.rtptime for info in rtsp.parse_rtp_info(reply.headers["RTP-Info"])]
    wait_for_frames(client, 15, after=reply)
    paused = client.request("PAUSE", f"{client.base}/sample", {"Session": session.id})
    assert paused.status == 200
    before = [rtp_packets(client.frames(ch, after=reply, before=paused))
              for ch in session.channels]
    # Nothing is sent while paused: an OPTIONS round trip later, still no media.
    probe = client.request("OPTIONS", "*")
    assert all(client.frames(ch, after=paused, before=probe) == [] for ch in session.channels)

    resumed = client.request("PLAY", f"{client.base}/sample", {"Session": session.id})
    assert resumed.status == 200
    resume_at, _ = rtsp.parse_range(resumed.headers["Range"])
    assert resume_at is not None and 0.4 < resume_at < 2.0
    infos = rtsp.parse_rtp_info(resumed.headers["RTP-Info"])
    for channel, sent, info, origin, rate in zip(session.channels, before, infos, origins,
                                                 (90_000, AUDIO_RATE), strict=True):
        client.wait_for_packets(channel, 1, after=resumed)
        first = rtp_packets(client.frames(channel, after=resumed))[0]
        assert first.sequence_number == (sent[-1].sequence_number + 1) % (1 << 16)
        assert info.seq == first.sequence_number
        # The npt <-> RTP time mapping is the one before the pause (Range has 1 ms steps).
        assert abs(unwrap(info.rtptime, origin) - resume_at * rate) <= rate / 1000 + 1  # type: ignore[arg-type]
    wait_for_frames(client, 10, after=resumed)
    video = before[0] + rtp_packets(client.frames(0, after=resumed))
    # Sequence numbers run on without a hole; units go on in the file's decode order, the
    # first after the pause being the next one; every picture decodes as stamped.
    assert all(seq_after(b.sequence_number, a.sequence_number) == 1 for a, b in pairwise(video))
    sent = sent_frames(video, origins[0])  # type: ignore[arg-type]
    assert sent == decode_order[:len(sent)]
    assert len(sent) >= 25
    assert_pictures_match_timestamps(video, origins[0])  # type: ignore[arg-type]
    audio = before[1] + rtp_packets(client.frames(2, after=resumed))
    assert {unwrap(b.timestamp, a.timestamp) for a, b in pairwise(audio)} == {
        AAC_SAMPLES_PER_FRAME}
    assert all(seq_after(b.sequence_number, a.sequence_number) == 1 for a, b in pairwise(audio))


def test_timestamps_keep_growing_across_a_backward_seek(client: RawClient,
                                                        decode_order: list[int]) -> None:
    session = setup_tcp(client, audio=False)
    first = play(client, session, start=20.0)
    assert first.headers["Range"] == "npt=20.000-30.000"
    wait_for_frames(client, 5, after=first)
    # FFmpeg seeks with PAUSE then PLAY with a Range; a PLAY while playing must work too.
    second = play(client, session, start=0.0)
    assert second.headers["Range"] == "npt=0.000-30.000"
    earlier = rtp_packets(client.frames(0, after=first, before=second))
    (info,) = rtsp.parse_rtp_info(second.headers["RTP-Info"])
    wait_for_frames(client, 5, after=second)
    later = rtp_packets(client.frames(0, after=second))
    origin = earlier[0].timestamp
    assert min(unwrap(p.timestamp, origin) for p in later) > max(
        unwrap(p.timestamp, origin) for p in earlier)
    assert later[0].sequence_number == (earlier[-1].sequence_number + 1) % (1 << 16)
    assert (info.seq, info.rtptime) == (later[0].sequence_number, later[0].timestamp)
    # RTP-Info's rtptime is where npt 0 now lies; the pictures keep that mapping.
    sent = sent_frames(later, info.rtptime)  # type: ignore[arg-type]
    assert sent == decode_order[:len(sent)]
    assert_pictures_match_timestamps(later, info.rtptime)  # type: ignore[arg-type]


def test_rtcp_sender_reports_arrive_on_the_odd_channel_and_agree(client: RawClient) -> None:
    """Each track's first SR comes on its RTCP channel. Read through RTP-Info, the SRs of
    both tracks give the same media time for the same wall-clock instant (RFC 3550
    §6.4.1), which is what players synchronise audio and video with: also after a seek
    between keyframes, while the server catches up from the keyframe, and although
    B-frames make video decode times earlier than presentation times. They agree, on an
    instant that is a whole number of ticks of both clocks: FFmpeg rescales one
    track's SR offset into the other's clock and rounds, and any error there placed a
    frame a tick before the position asked for, which ``-ss`` then dropped."""
    session = setup_tcp(client)
    reply = play(client, session, start=13.0)  # the server sends 12-13 s at once
    start = Fraction(reply.headers["Range"].split("=")[1].split("-")[0])
    infos = rtsp.parse_rtp_info(reply.headers["RTP-Info"])
    media_minus_wall = []
    for channel, setup, info, rate in zip(session.channels, session.setups, infos,
                                          (90_000, AUDIO_RATE), strict=True):
        client.wait_for_packets(channel + 1, 1, after=reply)
        data = client.frames(channel + 1, after=reply)[0].event.data  # type: ignore[union-attr]
        report = parse_rtcp(data)[0]
        ssrc = rtsp.parse_transport(setup.headers["Transport"])[0].ssrc
        assert isinstance(report, SenderReport) and report.ssrc == ssrc
        media = start + Fraction(unwrap(report.rtp_timestamp, info.rtptime), rate)  # type: ignore[arg-type]
        wall = (report.ntp_timestamp >> 32) + Fraction(report.ntp_timestamp & 0xFFFFFFFF, 1 << 32)
        media_minus_wall.append(media - wall)
        # Real time starts at the position asked for, not at the keyframe before it.
        assert 13 <= media < Fraction(27, 2), float(media)
        assert (media * 6000).denominator == 1, media  # whole ticks at 90 kHz and 48 kHz
    video, audio = media_minus_wall
    # To a microsecond (float wall-clock arithmetic); half a 90 kHz tick is 5.6 µs.
    assert abs(video - audio) < Fraction(1, 10**6), float(video - audio)


def test_get_and_set_parameter_keep_a_session_alive(sample_dir: Path) -> None:
    # A short idle timeout: a session nobody sends requests for is reclaimed in about 1 s.
    with StreamingServer(sample_dir, ServerConfig(port=0, session_timeout=1.0)) as server:
        c = RawClient(server.port)
        try:
            assert c.request("GET_PARAMETER", f"{c.base}/sample").status == 200
            kept, forgotten = setup_tcp(c), setup_tcp(c)
            deadline = time.monotonic() + 10
            method = "GET_PARAMETER"
            while server.call(lambda: forgotten.id in server.sessions):
                assert time.monotonic() < deadline, "the idle session was never reclaimed"
                response = c.request(method, f"{c.base}/sample", {"Session": kept.id})
                assert response.status == 200, method
                method = "SET_PARAMETER" if method == "GET_PARAMETER" else "GET_PARAMETER"
                time.sleep(0.2)  # the pace of a keep-alive, not a wait for a result
            assert server.call(lambda: kept.id in server.sessions)
            gone = c.request("GET_PARAMETER", f"{c.base}/sample", {"Session": forgotten.id})
            assert gone.status == 454
        finally:
            c.close()


def test_teardown_ends_the_session(client: RawClient) -> None:
    session = setup_tcp(client)
    reply = play(client, session)
    client.wait_for_packets(0, 1, after=reply)
    down = client.request("TEARDOWN", f"{client.base}/sample", {"Session": session.id})
    assert down.status == 200
    probe = client.request("OPTIONS", "*")
    assert client.frames(0, after=down, before=probe) == []
    again = client.request("PLAY", f"{client.base}/sample", {"Session": session.id})
    assert again.status == 454
    assert client.request("TEARDOWN", f"{client.base}/sample",
                          {"Session": session.id}).status == 454


# --------------------------------------------------------------------------------------
# Many clients, slow clients, start-up latency


def _first_keyframe_index(port: int) -> tuple[str, int | None]:
    c = RawClient(port)
    try:
        session = setup_tcp(c, audio=False)
        reply = play(c, session)
        wait_for_frames(c, 1, after=reply, timeout=15)
        packets = rtp_packets(c.frames(0, after=reply))
        marked = next(i for i, p in enumerate(packets) if p.marker)
        pictures = decode_video(packets[:marked + 1], packets[0].timestamp)
        return session.id, pictures[0].index if pictures else None
    finally:
        c.close()


def test_twenty_sessions_at_once(rtsp_server: StreamingServer) -> None:
    count = 20
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(_first_keyframe_index, [rtsp_server.port] * count))
    assert len({session_id for session_id, _ in results}) == count
    assert [index for _, index in results] == [0] * count


def test_a_client_that_stops_reading_does_not_stall_another(sample_dir: Path) -> None:
    # A long heartbeat timeout keeps the stalled sessions alive while we watch.
    config = ServerConfig(port=0, heartbeat_timeout=30.0)
    with StreamingServer(sample_dir, config) as server:
        stalled = [RawClient(server.port, reader=False, rcvbuf=4096) for _ in range(3)]
        watcher = RawClient(server.port)
        try:
            stalled_ids = [_setup_and_play_blind(s) for s in stalled]

            def shrink_send_buffers() -> None:
                # Small kernel buffers, as on a slow radio link: the stall then reaches
                # the server's own write buffer within a second or two.
                for session_id in stalled_ids:
                    connection = server.sessions[session_id].connection
                    sock = connection.transport.get_extra_info("socket")  # type: ignore[union-attr]
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

            def queued() -> list[int]:
                return [server.sessions[i].connection.transport.get_write_buffer_size()  # type: ignore[union-attr]
                        for i in stalled_ids]

            server.call(shrink_send_buffers)
            session = setup_tcp(watcher)
            reply = play(watcher, session)
            seconds = 4.0
            wait_for_frames(watcher, int(seconds * FPS), after=reply, timeout=seconds + DEADLINE)
            deadline = time.monotonic() + DEADLINE
            while not all(server.call(queued)):
                assert time.monotonic() < deadline, "the stalled clients never filled a buffer"
                wait_for_frames(watcher, len(video_frames(watcher, reply)) + 1, after=reply)
            arrivals = video_frames(watcher, reply)
            gaps = [b - a for a, b in pairwise(arrivals)]
            # 40 ms apart at 25 fps; a generous bound shows nobody waited on the others.
            assert max(gaps) < 0.5, max(gaps)
            assert arrivals[-1] - arrivals[0] < len(arrivals) / FPS + 1.0
        finally:
            watcher.close()
            for s in stalled:
                s.close()


def _setup_and_play_blind(client: RawClient) -> str:
    """SETUP and PLAY on a connection that is read only up to the SETUP answer."""
    uri = f"{client.base}/sample"
    setup = rtsp.Request("SETUP", f"{uri}/track1", {
        "CSeq": "1", "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
    client.send_raw(bytes(setup))
    parser = rtsp.RtspParser()
    events: list[rtsp.Event] = []
    while not events:
        events = parser.feed(client.sock.recv(65536))
    answer = events[0]
    assert isinstance(answer, rtsp.Response) and answer.status == 200
    session_id = rtsp.parse_session(answer.headers["Session"])[0]
    client.send_raw(bytes(rtsp.Request("PLAY", uri, {"CSeq": "2", "Session": session_id})))
    return session_id


def test_first_packet_follows_the_play_response_at_once(client: RawClient) -> None:
    delays = []
    for start in (0.0, 13.0, 24.0):
        session = setup_tcp(client, audio=False)
        reply = play(client, session, start=start)
        client.wait_for_packets(0, 1, after=reply)
        delays.append(client.frames(0, after=reply)[0].at - client.log[
            client.arrival_of(reply)].at)
        client.request("TEARDOWN", f"{client.base}/sample", {"Session": session.id})
    # The real figure is in benchmarks/stream_load.py; here only a generous bound.
    assert max(delays) < 0.5, delays


def _play_udp(client: RawClient, rtp_sock: socket.socket) -> str:
    """SETUP the video track over UDP to ``rtp_sock`` (and the port above) and PLAY."""
    port = rtp_sock.getsockname()[1]
    setup = client.request("SETUP", f"{client.base}/sample/track1",
                           {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"})
    assert setup.status == 200
    session_id = rtsp.parse_session(setup.headers["Session"])[0]
    assert client.request("PLAY", f"{client.base}/sample", {"Session": session_id}).status == 200
    return session_id


def test_a_failing_udp_send_ends_that_session_only(rtsp_server: StreamingServer) -> None:
    first, second = RawClient(rtsp_server.port), RawClient(rtsp_server.port)
    socks = [*bind_udp_pair("127.0.0.1", blocking=True), *bind_udp_pair("127.0.0.1", blocking=True)]
    try:
        broken = _play_udp(first, socks[0])
        kept = _play_udp(second, socks[2])

        def break_destination() -> None:
            # As if a client_port of 65535 had got through: its RTCP would go to 65536.
            for setup in rtsp_server.sessions[broken].tracks.values():
                setup.client_addr, setup.last_sr = ("127.0.0.1", 65535), 0.0

        rtsp_server.call(break_destination)
        deadline = time.monotonic() + DEADLINE
        while rtsp_server.call(lambda: broken in rtsp_server.sessions):
            assert time.monotonic() < deadline, "the session with the failing send lives on"
            time.sleep(0.05)
        assert rtsp_server.call(lambda: kept in rtsp_server.sessions)
        # The shared sockets still work: the other viewer and a new one get media.
        socks[2].settimeout(DEADLINE)
        for _ in range(30):
            socks[2].recvfrom(65536)
        third = RawClient(rtsp_server.port)
        try:
            extra = bind_udp_pair("127.0.0.1", blocking=True)
            _play_udp(third, extra[0])
            extra[0].settimeout(DEADLINE)
            assert RtpPacket.parse(extra[0].recvfrom(65536)[0]).payload_type == 96
        finally:
            third.close()
            for sock in extra:
                sock.close()
    finally:
        first.close()
        second.close()
        for sock in socks:
            sock.close()


def _open_media_files(sample_dir: Path) -> int:
    """How many of this process's file descriptors are open on a sample clip."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += Path(os.readlink(fd)).parent == sample_dir.resolve()
    return count


def _files_settle(sample_dir: Path, at_most: int) -> int:
    """The open clip count once it is at most ``at_most``, or when the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while (count := _open_media_files(sample_dir)) > at_most and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_media_files_are_closed_on_seek_and_session_end(sample_dir: Path) -> None:
    with StreamingServer(sample_dir, ServerConfig(port=0)) as server:
        baseline = _open_media_files(sample_dir)
        client = RawClient(server.port)
        try:
            session = setup_tcp(client)
            for start in (0.0, 10.0, 20.0, 4.0):  # every seek opens the file anew
                reply = play(client, session, start)
                wait_for_frames(client, 1, after=reply)
            # A file with a read in flight is closed when that read is done.
            assert _files_settle(sample_dir, baseline + 1) <= baseline + 1  # the current read
            client.request("TEARDOWN", f"{client.base}/sample", {"Session": session.id})
            assert _files_settle(sample_dir, baseline) == baseline
        finally:
            client.close()


def test_an_idle_connection_without_a_session_is_closed(sample_dir: Path) -> None:
    config = ServerConfig(port=0, connection_timeout=0.5, heartbeat_timeout=30.0)
    with StreamingServer(sample_dir, config) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        playing = RawClient(server.port)
        try:
            session = setup_tcp(playing)
            reply = play(playing, session)
            idle.settimeout(DEADLINE)
            assert idle.recv(1) == b""  # closed by the server, not by our timeout
            # A connection with a session is kept however quiet its client is.
            wait_for_frames(playing, int(1.5 * FPS), after=reply)
            assert server.call(lambda: session.id in server.sessions)
        finally:
            idle.close()
            playing.close()
