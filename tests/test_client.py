"""The terminal: the player against the real streaming server over loopback sockets, its
sans-I/O parts on their own, and the portal client against a real portal.

Every wait has a deadline and waits on a condition (the player's, or an Event a server
listener sets); nothing sleeps and hopes.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtsp_resume import rtsp, sdp
from rtsp_resume.client import PortalClient, PortalError
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.media import MediaFile
from rtsp_resume.payload import H264Packetizer, aac_payload
from rtsp_resume.player import USER_AGENT, Player, PlayerError
from rtsp_resume.receiver import TrackReceiver, match_rtp_info
from rtsp_resume.rtp import RtpPacket, RtpStream
from rtsp_resume.sample import read_frame_index
from rtsp_resume.server import Interruption, ServerConfig, StreamingServer
from rtsp_resume.widgets.display import encode_jpeg

FPS = 25
HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 0.8
TRANSPORTS = ["tcp", "udp"]


@pytest.fixture(scope="module")
def server(sample_dir: Path) -> Iterator[StreamingServer]:
    """A streaming server with a fast heartbeat, shared by the tests of this module."""
    config = ServerConfig(port=0, heartbeat_interval=HEARTBEAT_INTERVAL,
                          heartbeat_timeout=HEARTBEAT_TIMEOUT)
    srv = StreamingServer(sample_dir, config).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def player_factory() -> Iterator[Any]:
    """Makes players and stops every one of them at the end of the test."""
    players: list[Player] = []

    def make(url: str, **kw: Any) -> Player:
        player = Player(url, **kw)
        players.append(player)
        return player

    yield make
    for player in players:
        player.stop()


def poll(predicate: Any, timeout: float) -> bool:
    """For server state no event announces: ask every 20 ms until true or the deadline."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.02)
    return True


def interruption_watch(srv: StreamingServer) -> tuple[dict[str, Interruption], threading.Event]:
    """Interruptions by session id, and an Event set at each one (the server's listener)."""
    seen: dict[str, Interruption] = {}
    event = threading.Event()

    def listener(interruption: Interruption) -> None:
        seen[interruption.session_id] = interruption
        event.set()

    srv.listeners.append(listener)
    return seen, event


# ---------------------------------------------------------------------------------------
# Playing against the real streaming server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_plays_every_frame_in_order_with_program_time(server: StreamingServer,
                                                      player_factory: Any,
                                                      transport: str) -> None:
    events: list[str] = []
    shown: list[int | None] = []
    player = player_factory(server.url("sample"), transport=transport,
                            on_frame=lambda f: shown.append(f.index),
                            on_event=lambda name, data: events.append(name)).start()
    assert player.session_id in server.sessions
    assert player.range_start == 0.0
    assert player.wait_frames(3 * FPS, timeout=10), player.counters()

    frames = list(player.frames)[: 3 * FPS]
    assert [f.index for f in frames] == list(range(3 * FPS))
    for frame in frames:
        assert frame.pts == pytest.approx(frame.index / FPS, abs=0.001)
    assert shown[: 3 * FPS] == list(range(3 * FPS))
    counters = player.counters()
    assert counters.frames_hidden == 0 and counters.packets_lost == 0
    assert counters.audio_frames > 0 and counters.audio_samples == 1024 * counters.audio_frames
    assert counters.heartbeats_answered > 0  # 3 s at one OPTIONS every 0.2 s
    assert {"connected", "described", "setup", "playing", "heartbeat"} <= set(events)

    # Only the newest picture is kept alive.
    assert player.frames[-1].image is not None
    assert all(f.image is None for f in list(player.frames)[:-1])
    image = player.frames[-1].image
    assert image is not None and encode_jpeg(image).startswith(b"\xff\xd8")

    player.stop()
    assert player.state == "stopped" and player.error is None
    assert not player.running
    assert player.session_id not in server.sessions  # TEARDOWN reached the server
    assert events[-1] == "closed"
    player.stop()  # idempotent


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("start", "exact", "keyframe", "first_index"), [
    (12.4, True, 300, 310),  # 12.4 s is frame 310; the GOP is 2 s: keyframe 300
    (12.4, False, 300, 300),  # a standard player's behaviour: the keyframe
    (4.54, True, 100, 113),  # exactly between 113 (4.52 s) and 114: the earlier one
    (4.55, True, 100, 114),  # nearer to 114 (4.56 s)
])
def test_start_mid_gop_lands_on_the_exact_frame(server: StreamingServer, player_factory: Any,
                                                transport: str, start: float, exact: bool,
                                                keyframe: int, first_index: int) -> None:
    player = player_factory(server.url("sample"), transport=transport, start=start,
                            exact=exact).start()
    assert player.range_start == pytest.approx(keyframe / FPS)
    assert player.wait_frames(5, timeout=10), player.counters()
    indices = [f.index for f in player.frames][:5]
    assert indices == list(range(first_index, first_index + 5))
    assert player.frames[0].pts == pytest.approx(first_index / FPS, abs=0.001)
    assert player.counters().frames_hidden == first_index - keyframe


def test_seek_lands_on_the_exact_frame(server: StreamingServer, player_factory: Any) -> None:
    player = player_factory(server.url("sample"), transport="tcp").start()
    assert player.wait_frames(10, timeout=10)
    before = player.frames_shown
    assert player.seek(20.36) == pytest.approx(20.0)  # frame 509, a keyframe at 500
    assert player.range_start == pytest.approx(20.0)
    assert player.wait_frames(before + 3, timeout=10)
    after = [f.index for f in player.frames][before:before + 3]
    assert after == [509, 510, 511]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pause_keeps_the_session_alive_and_resume_skips_nothing(
        server: StreamingServer, player_factory: Any, transport: str) -> None:
    interruptions, _ = interruption_watch(server)
    player = player_factory(server.url("sample"), transport=transport).start()
    assert player.wait_frames(10, timeout=10)
    player.pause()
    assert player.state == "paused"
    shown = player.frames_shown
    last = player.frames[-1].index
    heartbeats = player.counters().heartbeats_answered
    monitor = server.sessions[player.session_id].monitor

    def answered_on_server() -> int:
        return server.call(lambda: sum(e.kind == "answered" for e in monitor.log))

    answered_before = answered_on_server()

    # Longer than the heartbeat timeout: heartbeats keep coming and being answered, no
    # frame arrives, and the server does not take the pause for a lost link.
    quiet_until = time.monotonic() + HEARTBEAT_TIMEOUT + 0.4
    moved = player.wait_for(lambda: player.frames_shown > shown,
                            timeout=quiet_until - time.monotonic())
    assert not moved, "a frame arrived while paused"
    assert player.counters().heartbeats_answered >= heartbeats + 3
    # The server matched our answers to its heartbeats (keep-alives and RTCP reports
    # would keep the session alive too; this shows the heartbeats themselves work).
    assert answered_on_server() >= answered_before + 3
    assert player.session_id in server.sessions
    assert player.session_id not in interruptions

    player.resume()
    assert player.state == "playing"
    assert player.wait_frames(shown + 5, timeout=10)
    resumed = [f.index for f in list(player.frames) if f.index is not None and f.index > last][:5]
    assert [f.index for f in player.frames].count(last) == 1  # nothing shown twice
    assert resumed == list(range(last + 1, last + 6))  # nothing skipped


def test_receiver_reports_reach_the_server_over_udp(server: StreamingServer,
                                                    player_factory: Any) -> None:
    player = player_factory(server.url("sample"), transport="udp", rr_interval=0.2).start()
    session = server.sessions[player.session_id]

    def received() -> float:
        return server.call(session.position.received)

    # Over UDP heartbeat answers prove nothing about media: only RTCP RRs move this.
    assert player.wait_for(lambda: received() >= 1.0, timeout=10), received()
    first = server.call(session.position.confirmed)
    assert player.wait_for(lambda: server.call(session.position.confirmed) > first + 0.5,
                           timeout=10)
    assert player.counters().receiver_reports_sent >= 5
    assert server.call(session.position.confirmed) <= player.frames[-1].pts + 0.001


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cut_link_gets_the_session_interrupted_and_stop_does_not_hang(
        server: StreamingServer, player_factory: Any, transport: str) -> None:
    interruptions, event = interruption_watch(server)
    with LinkCutter(to=("127.0.0.1", server.port)) as cutter:
        player = player_factory(cutter.url("sample"), transport=transport).start()
        assert player.wait_frames(10, timeout=10)
        session_id = player.session_id
        cutter.cut()
        cut_at = time.monotonic()
        deadline = cut_at + HEARTBEAT_TIMEOUT + 0.5
        while session_id not in interruptions and event.wait(deadline - time.monotonic()):
            event.clear()
        detected = time.monotonic()
        assert session_id in interruptions, "no interruption within timeout + 0.5 s"
        assert detected - cut_at <= HEARTBEAT_TIMEOUT + 0.5
        assert interruptions[session_id].transport == transport

        # The player has no idea yet (a cut link is silent); stopping must still be quick.
        assert player.running
        started = time.monotonic()
        player.stop()
        assert time.monotonic() - started < player.teardown_timeout + 1.0
        assert not player.running


def test_close_without_teardown_ends_the_session_normally(server: StreamingServer,
                                                          player_factory: Any) -> None:
    interruptions, _ = interruption_watch(server)
    player = player_factory(server.url("sample")).start()
    assert player.wait_frames(2, timeout=10)
    session_id = player.session_id
    player.close_abruptly()
    assert not player.running and player.error is None
    # The server notices the closed connection on its own loop; ask it until it has.
    assert poll(lambda: session_id not in server.call(lambda: set(server.sessions)), 5)
    assert session_id not in interruptions  # a clean close is not an abnormal interruption


def test_callback_errors_do_not_stop_the_player_and_frames_are_bounded(server: StreamingServer,
                                                player_factory: Any) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("a widget bug")

    player = player_factory(server.url("sample"), on_frame=broken, on_event=broken,
                            max_frames=5).start()
    assert player.wait_frames(10, timeout=10)
    assert player.error is None
    kept = player.frames  # bounded: the newest five
    assert len(kept) == 5 and player.frames_shown >= 10
    assert [f.index for f in kept] == list(range(kept[0].index, kept[0].index + 5))


def test_unknown_program_fails_start_with_the_status(server: StreamingServer,
                                                     player_factory: Any) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    player = player_factory(server.url("no-such-program"),
                            on_event=lambda n, d: events.append((n, d)))
    with pytest.raises(PlayerError) as caught:
        player.start()
    assert caught.value.status == 404
    assert "DESCRIBE" in str(caught.value) and player.error == str(caught.value)
    assert player.state == "failed" and not player.running
    assert ("error", {"message": player.error}) in events
    with pytest.raises(PlayerError):
        player.pause()


def test_nothing_listening_fails_start() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    player = Player(f"rtsp://127.0.0.1:{port}/sample")
    with pytest.raises(PlayerError, match="cannot connect"):
        player.start()


# ---------------------------------------------------------------------------------------
# A misbehaving server (a test peer written here: bad input the real server never sends)


class ScriptedServer:
    """Accepts one player, answers its setup like a real server, then runs ``script``
    with the connection and the parser of what the player sends."""

    def __init__(self, media: MediaFile, script: Any, session_timeout: int = 60,
                 public: str | None = None) -> None:
        self.media = media
        self.script = script
        self.session_timeout, self.public = session_timeout, public
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.failure: BaseException | None = None
        self.requests: list[rtsp.Request] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(10)
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                parser = rtsp.RtspParser()
                while True:
                    request = self.next_request(conn, parser)
                    self.requests.append(request)
                    conn.sendall(bytes(self.answer(request)))
                    if request.method == "PLAY":
                        break
                self.script(conn, parser)
        except BaseException as exc:  # reported by the test
            self.failure = exc
        finally:
            self.listener.close()

    @staticmethod
    def next_message(conn: socket.socket, parser: rtsp.RtspParser) -> rtsp.Event:
        while True:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("player closed")
            events = parser.feed(data)
            if events:
                assert len(events) == 1, events
                return events[0]

    def next_request(self, conn: socket.socket, parser: rtsp.RtspParser) -> rtsp.Request:
        while True:
            message = self.next_message(conn, parser)
            if isinstance(message, rtsp.Request):
                return message

    def answer(self, request: rtsp.Request) -> rtsp.Response:
        headers = rtsp.Headers({"CSeq": request.headers["CSeq"]})
        body = b""
        base = f"rtsp://127.0.0.1:{self.port}/sample"
        if request.method == "OPTIONS" and self.public is not None:
            headers["Public"] = self.public
        elif request.method == "DESCRIBE":
            headers["Content-Type"] = "application/sdp"
            headers["Content-Base"] = base + "/"
            body = sdp.describe(self.media.tracks[:1], self.media.duration, 1).encode()
        elif request.method == "SETUP":
            headers["Session"] = f"abc;timeout={self.session_timeout}"
            headers["Transport"] = "RTP/AVP/TCP;unicast;interleaved=0-1"
        elif request.method == "PLAY":
            headers["Session"] = "abc"
            headers["Range"] = "npt=0.000-"
            headers["RTP-Info"] = f"url={base}/track1;seq=1;rtptime=0"
        return rtsp.Response(200, "", headers, body)


def test_server_requests_are_answered_and_malformed_input_ends_the_player(
        sample_dir: Path, player_factory: Any) -> None:
    answers: list[rtsp.Event] = []

    def script(conn: socket.socket, parser: rtsp.RtspParser) -> None:
        # An answer to nothing the player asked (a late or confused one): ignored.
        conn.sendall(bytes(rtsp.Response(200, "", {"CSeq": "99"})))
        for method, cseq in (("OPTIONS", 7), ("GET_PARAMETER", 8), ("ANNOUNCE", 9)):
            request = rtsp.Request(method, "*", {"CSeq": str(cseq), "Session": "abc"})
            conn.sendall(bytes(request))
            answers.append(ScriptedServer.next_message(conn, parser))
        conn.sendall(b"RTSP/1.0 two hundred OK\r\n\r\n")
        ScriptedServer.next_message(conn, parser)  # returns once the player hangs up

    events: list[str] = []
    peer = ScriptedServer(MediaFile(sample_dir / "sample.mp4"), script)
    player = player_factory(f"rtsp://127.0.0.1:{peer.port}/sample",
                            on_event=lambda name, data: events.append(name)).start()
    assert player.session_id == "abc"
    assert [(r.method, r.cseq) for r in peer.requests] == [
        ("OPTIONS", 1), ("DESCRIBE", 2), ("SETUP", 3), ("PLAY", 4)]
    assert all(r.headers["User-Agent"] == USER_AGENT for r in peer.requests)
    assert player.wait_for(lambda: player.error is not None, timeout=10)
    assert "malformed" in player.error
    assert player.wait_for(lambda: not player.running, timeout=5)
    peer.thread.join(5)
    assert isinstance(peer.failure, ConnectionError)  # the player closed: nothing else broke

    statuses = [(a.status, a.headers.get("CSeq"), a.headers.get("Session")) for a in answers
                if isinstance(a, rtsp.Response)]
    assert statuses == [(200, "7", "abc"), (200, "8", "abc"), (501, "9", "abc")]
    assert events.count("heartbeat") == 3
    assert "error" in events and events[-1] == "closed"
    assert player.state == "failed"


@pytest.mark.parametrize(("public", "keepalive"), [
    (None, "GET_PARAMETER"),
    ("OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN", "GET_PARAMETER"),
    ("OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN", "OPTIONS"),  # as FFmpeg: what it has
])
def test_keepalive_at_half_the_session_timeout(sample_dir: Path, player_factory: Any,
                                              public: str | None, keepalive: str) -> None:
    seen: list[tuple[rtsp.Request, float]] = []

    def script(conn: socket.socket, parser: rtsp.RtspParser) -> None:
        played = time.monotonic()
        for _ in range(2):
            request = peer.next_request(conn, parser)
            seen.append((request, time.monotonic() - played))
            conn.sendall(bytes(peer.answer(request)))

    peer = ScriptedServer(MediaFile(sample_dir / "sample.mp4"), script, session_timeout=1,
                          public=public)
    player_factory(f"rtsp://127.0.0.1:{peer.port}/sample").start()
    peer.thread.join(10)
    assert peer.failure is None, peer.failure
    assert [r.method for r, _ in seen] == [keepalive, keepalive]
    assert all(r.headers["Session"] == "abc" for r, _ in seen)
    assert 0.4 <= seen[0][1] < 3.0  # half of "timeout=1", not of the default 60 s


def test_a_server_that_never_answers_fails_start_within_its_deadline(
        sample_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        player = Player(f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x", request_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(PlayerError, match="no answer"):
            player.start()
        assert time.monotonic() - started < 3
        assert not player.running


# ---------------------------------------------------------------------------------------
# Sans-I/O parts


def test_rtp_info_is_matched_to_the_track_control_url() -> None:
    infos = rtsp.parse_rtp_info(
        "url=rtsp://h/a/track1?token=t;seq=1;rtptime=2,url=rtsp://h/a/track2?token=t;seq=3")
    assert match_rtp_info("rtsp://h/a/track2?token=t", infos) == infos[1]
    assert match_rtp_info("rtsp://other:1/a/track1", infos) == infos[0]  # same path
    relative = rtsp.parse_rtp_info("url=track2;seq=5;rtptime=6")
    assert match_rtp_info("rtsp://h/a/track2", relative) == relative[0]
    assert match_rtp_info("rtsp://h/a/track3", infos) is None


def _receivers(media: MediaFile) -> dict[str, TrackReceiver]:
    description = sdp.parse(sdp.describe(media.tracks, media.duration, 1))
    return {m.kind: TrackReceiver(m, f"rtsp://h/sample/{m.control}") for m in description.media}


def test_track_receiver_times_frames_across_a_timestamp_wrap(sample_dir: Path) -> None:
    """Packetize the sample as the server does, with an RTP clock about to wrap, and
    read it back without any socket: every frame, in order, at its own play time."""
    media = MediaFile(sample_dir / "sample.mp4")
    receivers = _receivers(media)
    video, audio = receivers["video"], receivers["audio"]
    start = 4.0
    streams = {
        0: RtpStream(96, 90000, timestamp_base=(1 << 32) - round(start * 90000) - 900),
        1: RtpStream(97, media.tracks[1].clock_rate),
    }
    # What the PLAY answer's RTP-Info says: this seq and this RTP time are at `start`.
    for track, receiver in ((0, video), (1, audio)):
        stream = streams[track]
        receiver.play_sent(repositions=True)
        info = rtsp.RtpInfo(receiver.url, stream.next_sequence,
                            stream.rtp_timestamp(stream.ticks(start)))
        assert receiver.play_answered(start, info, repositions=True) == []
    packetizer = H264Packetizer(1400)
    shown = []
    audio_samples = 0
    for unit in media.access_units(start):
        if unit.dts > start + 2.0:
            break
        stream = streams[unit.track]
        receiver = video if unit.track == 0 else audio
        payloads = (packetizer.packetize(unit.nals) if unit.track == 0
                    else [(aac_payload(unit.nals), True)])
        for payload, marker in payloads:
            packet = stream.packet(payload, stream.ticks(unit.pts), marker)
            for item in receiver.receive(packet, 0.0):
                if unit.track == 0:
                    shown.append((item.pts, item.frame))
                else:
                    audio_samples += item.frame.samples
    indices = [read_frame_index(frame) for _, frame in shown]
    assert indices == list(range(100, 100 + len(indices))) and len(indices) > 40
    for (pts, _), index in zip(shown, indices, strict=True):
        assert pts == pytest.approx(index / FPS, abs=0.001)
    assert audio_samples > 0 and audio.lost == video.lost == 0


def test_track_receiver_drops_packets_from_before_a_seek(sample_dir: Path) -> None:
    """Packets sent before a seek's PLAY answer, whether they arrive while the answer is
    awaited or after it (UDP may reorder), never reach the screen."""
    media = MediaFile(sample_dir / "sample.mp4")
    video = _receivers(media)["video"]
    stream = RtpStream(96, 90000)
    packetizer = H264Packetizer(1400)

    def send(start: float, offset: int) -> list[RtpPacket]:
        units = [u for u in media.access_units(start) if u.track == 0][:8]
        return [stream.packet(payload, stream.ticks(unit.pts) + offset, marker)
                for unit in units for payload, marker in packetizer.packetize(unit.nals)]

    video.play_sent(repositions=True)
    video.play_answered(0.0, rtsp.RtpInfo(video.url, stream.next_sequence,
                                          stream.rtp_timestamp(0)), repositions=True)
    old = send(0.0, 0)  # starts with a keyframe: decodable if it got through
    video.play_sent(repositions=True)  # seek to 20 s while all of `old` is in flight
    half = len(old) // 2
    for packet in old[:half]:
        assert video.receive(packet, 0.0) == []  # held: the answer will say what it is
    # RTP time runs on after a seek: 20 s of program is sent at RTP time 1 s.
    info = rtsp.RtpInfo(video.url, stream.next_sequence, stream.rtp_timestamp(stream.ticks(1.0)))
    new = send(20.0, stream.ticks(1.0) - stream.ticks(20.0))
    held = [packet for packet, _ in video.play_answered(20.0, info, repositions=True)]
    assert held == old[:half]

    frames = []
    for packet in held + old[half:] + new:  # the rest of the old ones arrive late
        frames += video.receive(RtpPacket.parse(bytes(packet)), 0.0)
    assert [read_frame_index(f.frame) for f in frames] == list(range(500, 500 + len(frames)))
    assert len(frames) >= 5 and frames[0].pts == pytest.approx(20.0, abs=0.001)


# ---------------------------------------------------------------------------------------
# The portal client against a real portal


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path) -> Iterator[Any]:
    from tests.portal_support import running_portal

    with running_portal(tmp_path / "portal", sample_dir) as running:
        yield running


def test_portal_client_logs_in_lists_plays_and_logs_out(portal: Any) -> None:
    client = PortalClient(portal.server.url, timeout=5)
    with pytest.raises(PortalError) as caught:
        client.login("alice", "wrong")
    assert caught.value.status == 401 and caught.value.error == "bad_credentials"
    assert client.user_token is None

    answer = client.login("alice", "alice-pw")
    assert answer["UserToken"] == client.user_token and client.user_id == answer["UserID"]
    contents = client.contents()
    assert "sample" in {c["ContentID"] for c in contents}
    play = client.play("sample")
    assert play["url"].endswith(f"/sample?token={play['EncryptToken']}")
    assert client.bookmarks() == []
    with pytest.raises(PortalError) as caught:
        client.play("no-such-program")
    assert caught.value.status == 404 and caught.value.error == "unknown_content"

    token = client.user_token
    client.logout()
    assert client.user_token is None
    client.logout()  # idempotent
    with pytest.raises(PortalError) as caught:
        client.contents()
    assert caught.value.status == 401
    stale = PortalClient(portal.server.url)
    stale.user_token = token  # a logged-out UserToken is refused
    with pytest.raises(PortalError) as caught:
        stale.bookmarks()
    assert caught.value.error == "invalid_token"


def test_portal_client_asks_the_bookmark_interface(portal: Any) -> None:
    first = portal.login("alice")
    portal.interrupt(first, 12.4)  # the streaming server's reverse bookmark, signed
    client = PortalClient(portal.server.url)
    client.login("alice", "alice-pw")  # a new login, as after the interruption
    (bookmark,) = client.bookmarks()
    assert bookmark["ContentID"] == "sample" and bookmark["ContentBM"] == pytest.approx(12.4)
    answer = client.bookmark_interface(bookmark)
    assert answer["ContentBM"] == pytest.approx(12.4)
    assert answer["url"].endswith(f"?token={answer['EncryptToken']}")
    with pytest.raises(PortalError) as caught:
        client.bookmark_interface({**bookmark, "ContentBM": 3.0})
    assert caught.value.status == 403 and caught.value.error == "position_mismatch"
    with pytest.raises(RuntimeError):
        PortalClient(portal.server.url).bookmark_interface(bookmark)


def test_portal_client_reports_an_unreachable_portal() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PortalError) as caught:
        PortalClient(f"http://127.0.0.1:{port}", timeout=2).login("a", "b")
    assert caught.value.status is None and caught.value.error == "unreachable"


def test_resume_url_from_the_portal_plays_from_the_bookmarked_frame(
        tmp_path: Path, sample_dir: Path, player_factory: Any) -> None:
    """Portal and streaming server share a key: the bookmark interface's URL, opened by
    the player with start=ContentBM, shows the bookmarked frame first."""
    from rtsp_resume.portal import PortalServer
    from tests.portal_support import FAST_KDF, USERS, Clock, Portal

    key = secrets.token_bytes(32)
    streaming = StreamingServer(sample_dir, ServerConfig(port=0, token_key=key)).start()
    try:
        web = PortalServer(tmp_path / "p", sample_dir, f"rtsp://127.0.0.1:{streaming.port}",
                           USERS, secret=key, kdf=FAST_KDF).start()
        try:
            helper = Portal(web, Clock())
            helper.interrupt(helper.login("bob"), 7.32)
            helper.http.close()
            client = PortalClient(web.url)
            client.login("bob", "bob-pw")
            answer = client.bookmark_interface(client.bookmarks()[0])
            with pytest.raises(PlayerError) as refused:  # no token, no play
                player_factory(answer["url"].split("?")[0]).start()
            assert refused.value.status == 401
            player = player_factory(answer["url"], start=answer["ContentBM"]).start()
            assert player.range_start == pytest.approx(6.0)
            assert player.wait_frames(1, timeout=10)
            assert player.frames[0].index == round(7.32 * FPS)
        finally:
            web.stop()
    finally:
        streaming.stop()
