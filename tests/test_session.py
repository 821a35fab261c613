"""The RTSP session state machine without sockets: requests and the time in, responses
and actions out (RFC 2326 §10, Appendix A.2), and the session's heartbeat verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtsp_resume import rtsp, tokens
from rtsp_resume.media import MediaLibrary
from rtsp_resume.session import (
    INTERRUPTED,
    UDP_DELIVERY_BOUND,
    RtspSessions,
    ServerConfig,
    Session,
)

BASE = "rtsp://127.0.0.1:8554/sample"
KEY = b"k" * 32


@pytest.fixture
def machine(sample_dir: Path) -> RtspSessions:
    return RtspSessions(MediaLibrary(sample_dir), ServerConfig(), rtp_port=6970)


class Client:
    """Numbers the requests and keeps the session id, like a player would."""

    def __init__(self, machine: RtspSessions, now: float = 100.0) -> None:
        self.machine, self.now, self.cseq = machine, now, 0
        self.session: str | None = None

    def __call__(self, method: str, uri: str = BASE, **headers: str
                 ) -> tuple[rtsp.Response, object]:
        self.cseq += 1
        fields = {"CSeq": str(self.cseq), **{k.replace("_", "-"): v for k, v in headers.items()}}
        if self.session is not None and "Session" not in fields:
            fields["Session"] = self.session
        response, action = self.machine.handle(rtsp.Request(method, uri, fields), "10.0.0.7",
                                                self.now, 1_700_000_000.0)
        if "Session" in response.headers and self.session is None:
            self.session = rtsp.parse_session(response.headers["Session"])[0]
        return response, action

    def setup(self, track: str = "track1", transport: str = "RTP/AVP/TCP;interleaved=0-1"
              ) -> tuple[rtsp.Response, object]:
        return self("SETUP", f"{BASE}/{track}", Transport=transport)


def test_options_and_unknown_methods(machine: RtspSessions) -> None:
    client = Client(machine)
    response, action = client("OPTIONS", "*")
    assert response.status == 200 and "PLAY" in response.headers["Public"] and action is None
    response, _ = client("RECORD")
    assert response.status == 501 and "SETUP" in response.headers["Allow"]
    response, _ = machine.handle(rtsp.Request("OPTIONS", "*", {}), "h", 0.0, 0.0)
    assert response.status == 400  # no CSeq


def test_describe_gives_the_sdp_and_a_content_base(machine: RtspSessions) -> None:
    response, action = Client(machine)("DESCRIBE")
    assert response.status == 200 and action is None
    assert response.headers["Content-Base"] == BASE + "/"
    assert f"a=control:{BASE}/track1" in response.body.decode()


def test_setup_creates_a_session_to_watch_once(machine: RtspSessions) -> None:
    client = Client(machine)
    response, action = client.setup()
    assert response.status == 200
    session = machine.sessions[client.session]  # type: ignore[index]
    assert action == ("watch", session, None, 0.0)
    assert "interleaved=0-1" in response.headers["Transport"]
    response, action = client.setup("track2", "RTP/AVP/TCP")  # no channel asked: next free
    assert response.status == 200 and action is None
    assert "interleaved=2-3" in response.headers["Transport"]
    assert session.transport == "tcp" and sorted(session.tracks) == [0, 1]


def test_udp_goes_to_the_control_connection_host_only(machine: RtspSessions) -> None:
    client = Client(machine)
    response, _ = client.setup(transport="RTP/AVP;unicast;client_port=5000-5001;"
                                         "destination=192.0.2.1")
    assert response.status == 200
    assert "server_port=6970-6971" in response.headers["Transport"]
    setup = machine.sessions[client.session].tracks[0]  # type: ignore[index]
    assert setup.client_addr == ("10.0.0.7", 5000)


@pytest.mark.parametrize(("ports", "status"), [
    ("65535-65535", 461), ("65535", 400), ("5001-5002", 461), ("5000-5003", 461), ("0-1", 461),
])
def test_bad_client_port_pairs_are_refused(machine: RtspSessions, ports: str,
                                           status: int) -> None:
    # An RTCP port of 65536 once made the shared socket's send fail for everyone.
    client = Client(machine)
    response, action = client.setup(transport=f"RTP/AVP;unicast;client_port={ports}")
    assert response.status == status and action is None
    assert machine.sessions == {}


def test_malformed_transport_is_400_and_none_usable_is_461(machine: RtspSessions) -> None:
    client = Client(machine)
    assert client.setup(transport="RTP/AVP;client_port=99999-100000")[0].status == 400
    assert client.setup(transport="RTP/AVP;multicast")[0].status == 461
    assert client("SETUP", f"{BASE}/track1")[0].status == 461  # no Transport at all


@pytest.mark.parametrize("uri", [
    "rtsp://[::1", "rtsp://[abc/sample", "rtsp://h/" + "a" * 300, "rtsp://h/" + "é" * 200,
    "rtsp://h/sample/track1/x", "http://h/sample", "rtsp://h/", "rtsp://h/..", "rtsp://h/.",
    "rtsp://h/%00", "*", "rtsp://h/sample/track9",
])
def test_odd_uris_get_400_or_404_never_500(machine: RtspSessions, uri: str) -> None:
    client = Client(machine)
    for method in ("DESCRIBE", "SETUP", "PLAY"):
        response, _ = client(method, uri, Transport="RTP/AVP/TCP")
        assert response.status in (400, 404, 455), (method, uri, response.status)


@pytest.mark.parametrize("uri", ["rtsp://h/sample?token=%zz", "rtsp://h:99999/sample",
                                 "rtsp:sample", "RTSP://H/sample?a=b&a=c", "rtspt://h/sample"])
def test_unusual_but_usable_uris_are_served(machine: RtspSessions, uri: str) -> None:
    assert Client(machine)("DESCRIBE", uri)[0].status == 200


def test_play_pause_resume_and_teardown(machine: RtspSessions) -> None:
    client = Client(machine)
    assert client("PLAY")[0].status == 455  # SETUP first
    client.setup()
    session = machine.sessions[client.session]  # type: ignore[index]
    assert client("PAUSE")[0].status == 455  # not playing yet
    response, action = client("PLAY", Range="npt=5-")
    assert response.status == 200 and session.state == "playing" and session.played
    begin = session.media.keyframe_at_or_before(5.0)
    assert action == ("play", session, begin, 5.0)
    assert rtsp.parse_range(response.headers["Range"])[0] == pytest.approx(begin)
    assert response.headers["RTP-Info"].startswith(f"url={BASE}/track1;seq=")
    response, action = client("PLAY")  # no Range while playing: nothing changes
    assert response.status == 200 and action is None
    response, action = client("PAUSE")
    assert action == ("pause", session, None, 0.0) and session.state == "paused"
    session.paused_at = 7.5  # the I/O layer knows the unit it was waiting for
    response, action = client("PLAY")
    assert action == ("play", session, None, 0.0)
    assert rtsp.parse_range(response.headers["Range"])[0] == pytest.approx(7.5)
    assert client("PLAY", Range="npt=31-")[0].status == 457
    response, action = client("TEARDOWN")
    assert response.status == 200 and action == ("end", session, None, 0.0)
    machine.sessions.pop(session.id)  # what the I/O layer does when it has let go
    assert client("PLAY")[0].status == 454


def test_a_request_is_life_and_keeps_the_session(machine: RtspSessions) -> None:
    client = Client(machine, now=10.0)
    client.setup()
    session = machine.sessions[client.session]  # type: ignore[index]
    client.now = 12.5
    assert client("GET_PARAMETER")[0].status == 200
    assert session.monitor.last_life == 12.5 and session.last_request == 12.5
    assert client("SET_PARAMETER", Session="nosuch")[0].status == 454
    assert client("OPTIONS", "*", Session="nosuch")[0].status == 200


def test_tokens_are_checked_and_a_resume_url_starts_at_the_bookmark(sample_dir: Path) -> None:
    machine = RtspSessions(MediaLibrary(sample_dir), ServerConfig(token_key=KEY))
    client = Client(machine)
    assert client("DESCRIBE")[0].status == 401
    token = tokens.issue_play_token(KEY, user_id="alice", content_id="sample",
                                    login_session="s1", start=12.3, now=1_700_000_000.0)
    other = tokens.issue_play_token(KEY, user_id="alice", content_id="other",
                                    login_session="s1", now=1_700_000_000.0)
    assert client("DESCRIBE", f"{BASE}?token={other}")[0].status == 401
    response, _ = client("DESCRIBE", f"{BASE}?token={token}")
    assert response.headers["Content-Base"] == f"{BASE}?token={token}"
    assert client("SETUP", f"{BASE}/track1?token={token}",
                  Transport="RTP/AVP/TCP")[0].status == 200
    session = machine.sessions[client.session]  # type: ignore[index]
    assert session.grant is not None and session.grant.user_id == "alice"
    _, action = client("PLAY", f"{BASE}?token={token}", Range="npt=0-")
    assert action == ("play", session, session.media.keyframe_at_or_before(12.3), 12.3)


def test_tick_heartbeats_then_interrupted_only_once_played(machine: RtspSessions) -> None:
    config = ServerConfig(heartbeat_interval=1.0, heartbeat_timeout=3.0, session_timeout=60)
    media = machine.library.get("sample")
    assert media is not None
    silent = Session("a", media, None, config, now=0.0)
    assert silent.tick(0.5) is None and silent.tick(1.0) == "heartbeat"
    assert silent.tick(3.0) == "terminal silent before PLAY"
    played = Session("b", media, None, config, now=0.0)
    played.played = True
    request = rtsp.Request.parse(played.heartbeat(7, 1.0))
    assert request.method == "OPTIONS" and request.headers["Session"] == "b"
    played.answered(7, 1.2)
    assert played.tick(4.19) == "heartbeat" and played.tick(4.2) == INTERRUPTED
    event = played.interruption("confirmed", now=5.0, wall=1005.0)
    assert event.last_life == pytest.approx(1001.2) and event.detected_at == 1005.0
    assert event.unanswered == 0 and event.position == event.confirmed
    assert [kind for _, kind, _ in event.heartbeat_log] == ["sent", "answered", "interrupted"]


def test_an_idle_session_is_reclaimed_after_the_session_timeout(machine: RtspSessions) -> None:
    config = ServerConfig(heartbeat_interval=1.0, heartbeat_timeout=3.0, session_timeout=5)
    media = machine.library.get("sample")
    assert media is not None
    session = Session("a", media, None, config, now=0.0)
    for now in (1.0, 2.0, 3.0, 4.0, 5.0):
        session.monitor.response_received(None, now)
    assert session.tick(5.0) is None or session.tick(5.0) == "heartbeat"
    session.monitor.life_seen(5.9)
    assert session.tick(6.0) == "idle past the session timeout"


def test_a_paused_session_is_ended_by_the_announced_session_timeout(sample_dir: Path) -> None:
    """A paused player may stop answering (ffplay does): not the heartbeat timeout but the
    session timeout the server announces ends it, as an interruption with a bookmark."""
    config = ServerConfig(heartbeat_interval=1.0, heartbeat_timeout=3.0, session_timeout=20)
    machine = RtspSessions(MediaLibrary(sample_dir), config, rtp_port=6970)
    client = Client(machine, now=0.0)
    response, _ = client.setup()
    assert response.headers["Session"].endswith(";timeout=20")
    session = machine.sessions[client.session]  # type: ignore[index]
    client("PLAY", Range="npt=0-")
    client.now = 2.0
    client("PAUSE")
    assert session.state == "paused"
    for now in (5.0, 10.0, 21.9):  # silent well past the heartbeat timeout
        assert session.tick(now) in (None, "heartbeat")
    assert session.tick(22.0) == INTERRUPTED
    # Resumed before the session timeout, the heartbeat timeout applies again.
    other = Client(machine, now=0.0)
    other.setup()
    resumed = machine.sessions[other.session]  # type: ignore[index]
    other("PLAY", Range="npt=0-")
    other.now = 2.0
    other("PAUSE")
    other.now = 15.0
    assert other("PLAY")[0].status == 200 and resumed.tick(17.9) in (None, "heartbeat")
    assert resumed.tick(18.0) == INTERRUPTED


def test_udp_heartbeat_answers_prove_what_was_sent_a_bound_earlier(sample_dir: Path) -> None:
    """Over UDP without receiver reports a heartbeat answer at t proves the media sent up
    to t - UDP_DELIVERY_BOUND arrived; the interruption names that evidence."""
    config = ServerConfig(playout_allowance=0.0)
    machine = RtspSessions(MediaLibrary(sample_dir), config, rtp_port=6970)
    client = Client(machine, now=0.0)
    client.setup(transport="RTP/AVP;unicast;client_port=5000-5001")
    session = machine.sessions[client.session]  # type: ignore[index]
    client("PLAY", Range="npt=0-")
    for index in range(100):  # 4 s of 25 fps video, sent in real time
        session.position.frame_sent(index / 25, 2 * index, 2 * index + 1, now=index / 25)
    assert session.interruption("confirmed", 4.0, 4.0).evidence == "none"
    session.heartbeat(1, 2.4)
    session.answered(1, 2.5)
    event = session.interruption("confirmed", 4.0, 4.0)
    assert event.evidence == "heartbeat-answer"
    assert event.confirmed == pytest.approx(2.5 - UDP_DELIVERY_BOUND)
