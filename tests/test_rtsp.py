"""RTSP 1.0 messages and header helpers, without a socket."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtsp_resume.rtsp import (
    BadInput,
    Headers,
    InterleavedFrame,
    Request,
    Response,
    RtpInfo,
    RtspParser,
    RtspProtocolError,
    Transport,
    answer_server_request,
    format_range,
    format_rtp_info,
    format_session,
    parse_npt,
    parse_public,
    parse_range,
    parse_rtp_info,
    parse_session,
    parse_transport,
    reason_phrase,
)

# What FFmpeg's client sends, give or take the numbers.
SETUP = (
    b"SETUP rtsp://127.0.0.1:8554/clip/track1 RTSP/1.0\r\n"
    b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
    b"CSeq: 3\r\n"
    b"User-Agent: Lavf61.7.100\r\n"
    b"\r\n"
)
PLAY_REPLY = (
    b"RTSP/1.0 200 OK\r\n"
    b"CSeq: 5\r\n"
    b"Session: 1a2b3c4d;timeout=3\r\n"
    b"Range: npt=12.000-\r\n"
    b"RTP-Info: url=rtsp://127.0.0.1:8554/clip/track1;seq=4711;rtptime=123456\r\n"
    b"\r\n"
)
SET_PARAMETER = (
    b"SET_PARAMETER rtsp://127.0.0.1:8554/clip RTSP/1.0\r\n"
    b"CSeq: 9\r\n"
    b"Content-Type: text/parameters\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b"barparam: foo"
)
SERVER_OPTIONS = b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\nSession: 1a2b3c4d\r\n\r\n"


def feed_all(data: bytes, chunk: int | None = None) -> tuple[list, int | None]:
    """Events from feeding ``data`` in chunks, and the error status if the input was bad."""
    parser = RtspParser()
    events: list = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
        if events and isinstance(events[-1], BadInput):
            return events[:-1], events[-1].status
    return events, None


# ------------------------------------------------------------------------- Headers


def test_headers_are_case_insensitive_ordered_and_keep_names() -> None:
    h = Headers([("CSeq", "1"), ("x-One", "a"), ("X-ONE", "b")])
    assert h["cseq"] == "1" and h.get("CSEQ") == "1"
    assert h.get_all("x-one") == ["a", "b"]
    assert "X-One" in h and "nope" not in h and 3 not in h
    h.add("Extra", "z")
    h["x-one"] = "c"  # replaces both, at the first one's place
    assert h.items() == [("CSeq", "1"), ("x-one", "c"), ("Extra", "z")]
    assert h.get("missing") is None and h.get("missing", "d") == "d"
    assert list(h) == ["CSeq", "x-one", "Extra"] and len(h) == 3
    with pytest.raises(KeyError):
        h["missing"]


def test_headers_refuse_injection() -> None:
    with pytest.raises(ValueError):
        Headers({"CSeq": "1\r\nSession: evil"})
    with pytest.raises(ValueError):
        Headers().add("Bad Name", "x")


# -------------------------------------------------------------------- serializing


def test_request_bytes_and_content_length() -> None:
    req = Request("SET_PARAMETER", "rtsp://h/clip", {"CSeq": "9"}, b"hello")
    assert bytes(req) == (
        b"SET_PARAMETER rtsp://h/clip RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert req.cseq == 9
    assert "Content-Length" not in req.headers  # serializing does not change the message
    assert bytes(Request("OPTIONS", "*", {"CSeq": "1"})) == b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"


def test_response_bytes_use_standard_reason() -> None:
    resp = Response(454, headers={"CSeq": "4"})
    assert bytes(resp) == b"RTSP/1.0 454 Session Not Found\r\nCSeq: 4\r\n\r\n"
    assert Response(200, "Fine").cseq is None
    assert Response(200, headers={"CSeq": "x"}).cseq is None


@pytest.mark.parametrize(
    "code",
    [200, 301, 400, 401, 403, 404, 405, 415, 453, 454, 455, 457, 459, 461, 500, 501, 503, 505],
)
def test_every_code_the_server_uses_has_its_phrase(code: int) -> None:
    assert reason_phrase(code)


def test_bad_messages_refuse_to_serialize() -> None:
    with pytest.raises(ValueError):
        bytes(Request("GET PARAM", "*"))
    with pytest.raises(ValueError):
        bytes(Request("OPTIONS", "rtsp://h/a b"))
    with pytest.raises(ValueError):
        bytes(Response(42))
    with pytest.raises(ValueError):
        InterleavedFrame(256, b"")
    with pytest.raises(ValueError):
        InterleavedFrame(0, bytes(70000))


def test_interleaved_frame_layout() -> None:
    assert bytes(InterleavedFrame(1, b"\x80\x00")) == b"$\x01\x00\x02\x80\x00"
    assert InterleavedFrame.parse(b"$\x03\x00\x01z") == InterleavedFrame(3, b"z")


# ------------------------------------------------------------------------ parsing


def test_parse_request_fields() -> None:
    (req,) = RtspParser().feed(SETUP)
    assert isinstance(req, Request)
    assert (req.method, req.uri, req.version, req.cseq) == (
        "SETUP",
        "rtsp://127.0.0.1:8554/clip/track1",
        "RTSP/1.0",
        3,
    )
    assert req.headers["transport"] == "RTP/AVP/TCP;unicast;interleaved=0-1"
    assert req.body == b""


def test_parse_response_as_the_terminal_does() -> None:
    (resp,) = RtspParser().feed(PLAY_REPLY)
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason, resp.cseq) == (200, "OK", 5)
    assert parse_session(resp.headers["Session"]) == ("1a2b3c4d", 3)
    assert parse_range(resp.headers["Range"]) == (12.0, None)


def test_server_sent_request_parses_on_the_client_side() -> None:
    # The terminal's parser sees the server's heartbeat between media frames.
    stream = bytes(InterleavedFrame(0, b"rtp")) + SERVER_OPTIONS + bytes(InterleavedFrame(1, b""))
    events = RtspParser().feed(stream)
    assert [type(e) for e in events] == [InterleavedFrame, Request, InterleavedFrame]
    assert events[1].method == "OPTIONS" and events[1].uri == "*" and events[1].cseq == 7


def test_server_requests_get_ffmpegs_answers() -> None:
    """OPTIONS and GET_PARAMETER (heartbeat, keep-alive probes) get 200, anything else
    501; CSeq and Session are echoed, since the server matches its heartbeat by them."""
    for method, status in (("OPTIONS", 200), ("GET_PARAMETER", 200), ("SET_PARAMETER", 501),
                           ("ANNOUNCE", 501)):
        request = Request(method, "*", {"CSeq": "41", "Session": "s"})
        reply = answer_server_request(request, "agent/1")
        assert reply.status == status
        assert (reply.headers["CSeq"], reply.headers["Session"]) == ("41", "s")
        assert reply.headers["User-Agent"] == "agent/1"
        assert Response.parse(bytes(reply)).status == status  # well formed on the wire
    bare = answer_server_request(Request("OPTIONS", "*", {}), "agent/1")
    assert bare.headers.get("CSeq") is None and bare.headers.get("Session") is None


def test_request_with_body() -> None:
    (req,) = RtspParser().feed(SET_PARAMETER)
    assert req.body == b"barparam: foo"
    assert Request.parse(bytes(req)) == req


def test_bare_lf_line_endings() -> None:
    data = b"OPTIONS * RTSP/1.0\nCSeq: 2\n\nRTSP/1.0 200 OK\nCSeq: 2\nContent-Length: 2\n\nok"
    req, resp = RtspParser().feed(data)
    assert req.cseq == 2 and resp.body == b"ok"


def test_round_trips() -> None:
    for data in (SETUP, PLAY_REPLY, SET_PARAMETER, SERVER_OPTIONS):
        (message,) = RtspParser().feed(data)
        assert bytes(message) == data
    resp = Response(200, "OK", [("CSeq", "2"), ("Public", "OPTIONS, PLAY")], b"x")
    assert Response.parse(bytes(resp)) == Response(
        200, "OK", [("CSeq", "2"), ("Public", "OPTIONS, PLAY"), ("Content-Length", "1")], b"x"
    )


MIXED_STREAM = (
    bytes(InterleavedFrame(0, bytes(range(200))))
    + SETUP
    + bytes(InterleavedFrame(1, b"$$$\r\n\r\n"))
    + bytes(InterleavedFrame(2, b""))
    + SET_PARAMETER
    + b"\r\n"  # a stray line break between messages is tolerated
    + PLAY_REPLY
    + bytes(InterleavedFrame(3, b"RTSP/1.0 200 OK\r\n\r\n"))
)


def test_interleaved_frames_between_messages() -> None:
    events, error = feed_all(MIXED_STREAM)
    assert error is None
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "InterleavedFrame",
        "Request",
        "InterleavedFrame",
        "InterleavedFrame",
        "Request",
        "Response",
        "InterleavedFrame",
    ]
    assert events[0].data == bytes(range(200))
    assert events[2] == InterleavedFrame(1, b"$$$\r\n\r\n")
    assert events[6].data == b"RTSP/1.0 200 OK\r\n\r\n"


def test_byte_by_byte_gives_the_same_events() -> None:
    whole, _ = feed_all(MIXED_STREAM)
    assert feed_all(MIXED_STREAM, chunk=1) == (whole, None)
    assert feed_all(MIXED_STREAM, chunk=7) == (whole, None)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(MIXED_STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    whole, _ = feed_all(MIXED_STREAM)
    parser = RtspParser()
    events = []
    previous = 0
    for cut in sorted(cuts) + [len(MIXED_STREAM)]:
        events += parser.feed(MIXED_STREAM[previous:cut])
        previous = cut
    assert events == whole
    assert parser.buffered == 0


# --------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"OPTIONS * RTSP/2.0\r\n\r\n", 505),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", 505),
        (b"RTSP/2.0 200 OK\r\n\r\n", 505),
        (b"OPTIONS *\r\n\r\n", 400),
        (b"OPTIONS  * RTSP/1.0\r\n\r\n", 400),
        (b"OPT(IONS * RTSP/1.0\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.x\r\n\r\n", 400),
        (b"RTSP/1.0 2000 OK\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00", 400),  # a TLS ClientHello on the plain port
        (b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\n folded: no\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nCSeq: 1\x00\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nX: \xff\xfe\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"OPTIONS * RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"OPTIONS * RTSP/1.0\r\nX: " + b"a" * 20000, 413),
        (b"OPTIONS " + b"a" * 20000, 413),
    ],
)
def test_malformed_input_gives_bad_input(data: bytes, status: int) -> None:
    assert feed_all(data) == ([], status)
    assert feed_all(data, chunk=1) == ([], status)


def test_error_keeps_earlier_events_and_poisons_the_parser() -> None:
    parser = RtspParser()
    setup, bad = parser.feed(SETUP + b"BAD\x01 * RTSP/1.0\r\n\r\n")
    assert setup.method == "SETUP"
    assert isinstance(bad, BadInput) and bad.status == 400 and bad.phrase == "Bad Request"
    assert parser.error == bad
    assert parser.feed(SERVER_OPTIONS) == [bad]
    assert parser.feed(b"") == [bad]


def test_parse_one_refuses_partial_and_extra() -> None:
    with pytest.raises(RtspProtocolError):
        Request.parse(SETUP[:-2])
    with pytest.raises(RtspProtocolError):
        Request.parse(SETUP + SETUP)
    with pytest.raises(RtspProtocolError):
        Response.parse(SETUP)


def _run_fuzz(data: bytes) -> None:
    parser = RtspParser(max_header_bytes=512, max_body_bytes=1024)
    for i in range(0, len(data), 5):
        for event in parser.feed(data[i : i + 5]):
            assert not isinstance(event, BadInput) or event.status in (400, 413, 505)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_random_bytes_give_only_bad_input_events(data: bytes) -> None:
    _run_fuzz(data)


@settings(max_examples=400)
@given(
    st.sampled_from([SETUP, PLAY_REPLY, SET_PARAMETER, SERVER_OPTIONS]),
    st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=4), st.integers(0, 3)), max_size=4),
)
def test_mutated_messages_give_only_bad_input_events(
    base: bytes, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(base)
    for position, insert, delete in edits:
        position %= len(data) + 1
        data[position : position + delete] = insert
    _run_fuzz(bytes(data))
    # Even broken input gives the same verdict however it is split.
    assert feed_all(bytes(data), chunk=1) == feed_all(bytes(data))
    # The helpers must hold up to whatever a header now says.
    for event in RtspParser().feed(bytes(data)):
        if isinstance(event, BadInput):
            return
        for name, helper in HELPERS.items():
            for value in event.headers.get_all(name):
                try:
                    helper(value)
                except RtspProtocolError:
                    pass


HELPERS = {
    "Transport": parse_transport,
    "Range": parse_range,
    "Session": parse_session,
    "RTP-Info": parse_rtp_info,
    "Public": parse_public,
}


@settings(max_examples=300)
@given(st.sampled_from(sorted(HELPERS)), st.text(max_size=80))
def test_helpers_raise_only_protocol_errors(name: str, value: str) -> None:
    try:
        HELPERS[name](value)
    except RtspProtocolError as error:
        assert error.status in (400, 457)


# ----------------------------------------------------------------------- Transport


def test_transport_tcp_and_udp_from_real_clients() -> None:
    (tcp,) = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1")
    assert tcp.is_tcp and tcp.supported and tcp.interleaved == (0, 1) and tcp.cast == "unicast"
    (udp,) = parse_transport("RTP/AVP/UDP;unicast;client_port=25000-25001")
    assert not udp.is_tcp and udp.supported and udp.client_port == (25000, 25001)
    (plain,) = parse_transport("rtp/avp;unicast;client_port=5000")
    assert plain.protocol == "RTP/AVP" and plain.client_port == (5000, 5001)


def test_transport_alternatives_and_every_parameter() -> None:
    value = (
        "RTP/SAVP;unicast;client_port=4000-4001,RTP/AVP;multicast;destination=224.2.0.1;"
        'port=3456-3457;ttl=16;ssrc=0A0B0C0D;mode="PLAY";append;source=10.0.0.1;x-foo=bar'
    )
    first, second = parse_transport(value)
    assert first.protocol == "RTP/SAVP" and not first.supported
    assert second.cast == "multicast" and second.destination == "224.2.0.1"
    assert (second.port, second.ttl, second.ssrc) == ((3456, 3457), 16, 0x0A0B0C0D)
    assert second.mode == "PLAY" and second.append and second.source == "10.0.0.1"
    assert second.extra == [("x-foo", "bar")]
    assert parse_transport(str(second)) == [second]


def test_transport_reply_string() -> None:
    reply = Transport(
        "RTP/AVP", client_port=(25000, 25001), server_port=(6970, 6971), ssrc=0xDEADBEEF
    )
    assert str(reply) == (
        "RTP/AVP;unicast;client_port=25000-25001;server_port=6970-6971;ssrc=DEADBEEF"
    )
    tcp = Transport("RTP/AVP/TCP", interleaved=(2, 3), mode="PLAY,RECORD")
    assert str(tcp) == 'RTP/AVP/TCP;unicast;interleaved=2-3;mode="PLAY,RECORD"'
    assert parse_transport(str(tcp)) == [tcp]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "RTP",
        "RTP/AVP;client_port=abc",
        "RTP/AVP;client_port=70000-70001",
        "RTP/AVP/TCP;interleaved=0-256",
        "RTP/AVP;ttl=300",
        "RTP/AVP;ssrc=XYZ",
        "RTP/AVP;ssrc=123456789",
        'RTP/AVP;mode="PLAY',
        "RTP/AVP;mode=",
        "RTP/AVP;bad param=1",
        "RTP/AVP;unicast,",
    ],
)
def test_transport_rejects_junk(value: str) -> None:
    with pytest.raises(RtspProtocolError) as caught:
        parse_transport(value)
    assert caught.value.status == 400


# --------------------------------------------------------------------------- Range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("npt=0-", (0.0, None)),
        ("npt=12.000-", (12.0, None)),
        ("npt=12.5-30", (12.5, 30.0)),
        ("npt=7.-", (7.0, None)),
        ("npt = 3 - 4", (3.0, 4.0)),
        ("NPT=1-", (1.0, None)),
        ("npt=0:01:02.5-1:00:00", (62.5, 3600.0)),
        ("npt=now-", (None, None)),
        ("npt=-20", (None, 20.0)),
        ("npt=5-;time=19970123T143720Z", (5.0, None)),
    ],
)
def test_parse_range(value: str, expected: tuple[float | None, float | None]) -> None:
    assert parse_range(value) == expected


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("", 400),
        ("npt", 400),
        ("npt=", 400),
        ("npt=-", 400),
        ("npt=abc-", 400),
        ("npt=1:60:00-", 400),
        ("npt=5-now", 400),
        ("npt=" + "9" * 400 + "-", 400),
        ("npt=-1-", 400),
        ("npt=10-5", 457),
        ("smpte=10:07:00-10:07:33:05.01", 457),
        ("clock=19961108T142300Z-", 457),
    ],
)
def test_parse_range_rejects(value: str, status: int) -> None:
    with pytest.raises(RtspProtocolError) as caught:
        parse_range(value)
    assert caught.value.status == status


def test_format_range() -> None:
    assert format_range(12) == "npt=12.000-"
    assert format_range(0.04, 30) == "npt=0.040-30.000"
    assert format_range(None) == "npt=now-"
    assert parse_range(format_range(1.25, 2.5)) == (1.25, 2.5)
    with pytest.raises(ValueError):
        format_range(-1)
    with pytest.raises(ValueError):
        format_range(float("nan"))


# ------------------------------------------------------- Session, RTP-Info, Public


def test_session_header() -> None:
    assert parse_session("47112344") == ("47112344", None)
    assert parse_session("a1b2c3d4e5;timeout=60") == ("a1b2c3d4e5", 60)
    assert parse_session(" 1a2b ; Timeout = 3 ") == ("1a2b", 3)
    assert format_session("1a2b3c4d", 3) == "1a2b3c4d;timeout=3"
    assert format_session("1a2b3c4d") == "1a2b3c4d"
    assert parse_session(format_session("x.y-z_9+$", 9)) == ("x.y-z_9+$", 9)
    for bad in ("", ";timeout=3", "a b", "abc;timeout=x", "abc;timeout=-1"):
        with pytest.raises(RtspProtocolError):
            parse_session(bad)
    with pytest.raises(ValueError):
        format_session("a;b")


def test_rtp_info_round_trip_with_awkward_urls() -> None:
    entries = [
        ("rtsp://h:8554/clip/track1", 4711, 123456),
        ("rtsp://h/odd,name;x=1/track2", 0, 4294967295),
        ("rtsp://h/clip/track3", None, None),
    ]
    text = format_rtp_info(entries)
    assert text.startswith("url=rtsp://h:8554/clip/track1;seq=4711;rtptime=123456,url=")
    parsed = parse_rtp_info(text)
    assert parsed == [RtpInfo(*e) for e in entries]
    assert parsed[0].seq == 4711
    assert parse_rtp_info("url=rtsp://a/t1;rtptime=5, url=rtsp://a/t2;seq=1") == [
        RtpInfo("rtsp://a/t1", None, 5),
        RtpInfo("rtsp://a/t2", 1, None),
    ]


@pytest.mark.parametrize(
    "value", ["", "seq=1", "url=", "url=x;seq=70000", "url=x;seq=a", "url=x;rtptime=4294967296"]
)
def test_rtp_info_rejects(value: str) -> None:
    with pytest.raises(RtspProtocolError):
        parse_rtp_info(value)


def test_public_header() -> None:
    assert parse_public("OPTIONS, DESCRIBE,SETUP, TEARDOWN, PLAY, PAUSE, GET_PARAMETER") == {
        "OPTIONS",
        "DESCRIBE",
        "SETUP",
        "TEARDOWN",
        "PLAY",
        "PAUSE",
        "GET_PARAMETER",
    }
    assert parse_public("") == set()
    with pytest.raises(RtspProtocolError):
        parse_public("PLAY, BAD METHOD")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("12.5", 12.5), ("7.", 7.0), ("1:02:03.25", 3723.25), ("0:00:59", 59.0)],
)
def test_parse_npt(text: str, seconds: float) -> None:
    assert parse_npt(text) == seconds


@pytest.mark.parametrize("text", ["", "now", "-1", "1:60:00", "1:00:60", "1e3", "9" * 400, " 1"])
def test_parse_npt_rejects(text: str) -> None:
    with pytest.raises(RtspProtocolError) as caught:
        parse_npt(text)
    assert caught.value.status == 400

