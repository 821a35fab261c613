"""SDP written for DESCRIBE and read back by the terminal; FFmpeg's SDP parser agrees."""

from __future__ import annotations

import base64
from pathlib import Path

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtsp_resume.media import Track
from rtsp_resume.sdp import (
    SdpError,
    describe,
    parse,
    payload_type,
    resolve_control,
)

# SPS and PPS written by libx264 (High profile, level 1.0, 64x64).
SPS = bytes.fromhex("6764000aacd9442684000003000400000300c83c489658")
PPS = bytes.fromhex("68ebe3cb22c0")
AAC_CONFIG = bytes.fromhex("1190")  # AAC-LC, 48 kHz, stereo

VIDEO = Track(index=0, kind="video", codec="h264", clock_rate=90000, control="track1",
              sps=SPS, pps=PPS, width=64, height=64, fps=25.0)
AUDIO = Track(index=1, kind="audio", codec="aac", clock_rate=48000, control="track2",
              sample_rate=48000, channels=2, config=AAC_CONFIG)

EXPECTED = (
    "v=0\r\n"
    "o=- 4242 1 IN IP4 10.0.0.5\r\n"
    "s=rtsp-resume\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "t=0 0\r\n"
    "a=control:*\r\n"
    "a=range:npt=0-30.040\r\n"
    "m=video 0 RTP/AVP 96\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1;profile-level-id=64000A;"
    "sprop-parameter-sets=Z2QACqzZRCaEAAADAAQAAAMAyDxIllg=,aOvjyyLA\r\n"
    "a=control:track1\r\n"
    "m=audio 0 RTP/AVP 97\r\n"
    "a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"
    "a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
    "indexdeltalength=3;config=1190\r\n"
    "a=control:track2\r\n"
)


def test_describe_exact_text() -> None:
    assert describe([VIDEO, AUDIO], 30.04, 4242, "10.0.0.5") == EXPECTED


def test_describe_parse_round_trip() -> None:
    session = parse(describe([VIDEO, AUDIO], 12.5, 7, title="My clip"))
    assert session.session_name == "My clip"
    assert session.origin == "- 7 1 IN IP4 127.0.0.1"
    assert session.control == "*" and session.range == (0.0, 12.5)
    video, audio = session.media
    assert (video.kind, video.port, video.proto, video.payload_type) == ("video", 0, "RTP/AVP",
                                                                         96)
    assert (video.encoding, video.clock_rate, video.channels) == ("H264", 90000, None)
    assert video.fmtp["packetization-mode"] == "1"
    assert video.fmtp["profile-level-id"] == "64000A"
    assert video.sprop_parameter_sets() == [SPS, PPS]
    assert video.control == "track1"
    assert (audio.kind, audio.payload_type, audio.encoding) == ("audio", 97, "MPEG4-GENERIC")
    assert (audio.clock_rate, audio.channels) == (48000, 2)
    assert audio.fmtp["mode"] == "AAC-hbr" and audio.fmtp["sizelength"] == "13"
    assert audio.aac_config() == AAC_CONFIG
    assert ("control", "track2") in audio.attributes


def test_describe_with_absolute_controls_and_open_range() -> None:
    def control(track: Track) -> str:
        return f"rtsp://h:8554/clip/{track.control}?token=abc"

    text = describe([AUDIO], 0, 1, "::1", control=control,
                    session_control="rtsp://h:8554/clip?token=abc")
    assert "o=- 1 1 IN IP6 ::1\r\n" in text
    session = parse(text)
    assert session.range == (0.0, None)
    assert session.control == "rtsp://h:8554/clip?token=abc"
    assert session.media[0].control == "rtsp://h:8554/clip/track2?token=abc"
    assert resolve_control("rtsp://h:8554/clip/", session.media[0].control) == (
        "rtsp://h:8554/clip/track2?token=abc")


@pytest.mark.parametrize(
    ("tracks", "kwargs", "message"),
    [
        ([], {}, "no track"),
        ([Track(0, "video", "hevc", 90000, "track1")], {}, "hevc"),
        ([Track(0, "video", "h264", 90000, "track1", sps=b"\x67", pps=PPS)], {}, "SPS"),
        ([Track(0, "audio", "aac", 44100, "track1", channels=2)], {}, "AudioSpecificConfig"),
        ([VIDEO], {"title": "a\r\na=evil"}, "line break"),
        ([VIDEO], {"control": lambda t: "track1\r\nm=x"}, "line break"),
    ],
)
def test_describe_refuses(tracks: list[Track], kwargs: dict, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        describe(tracks, 10, 1, **kwargs)


def test_payload_types() -> None:
    assert (payload_type(VIDEO), payload_type(AUDIO)) == (96, 97)


def test_parse_an_sdp_written_by_someone_else() -> None:
    # LF endings, bandwidth and info lines, several formats, hh:mm:ss range, uppercase
    # fmtp names, a media-level connection: what other servers send.
    text = "\n".join([
        "v=0",
        "o=user 123 456 IN IP4 192.0.2.1",
        "s=Session",
        "i=some info",
        "t=0 0",
        "a=tool:other server",
        "a=range:npt=00:01:05.5-01:00:00",
        "m=video 5004 RTP/AVP 98 96",
        "c=IN IP4 192.0.2.2",
        "b=AS:500",
        "a=rtpmap:96 H263-1998/90000",
        "a=rtpmap:98 H264/90000",
        "a=fmtp:98 Packetization-Mode=1; sprop-parameter-sets=" +
        base64.b64encode(SPS).decode() + "," + base64.b64encode(PPS).decode(),
        "a=control:rtsp://192.0.2.1/live/trackID=0",
        "a=recvonly",
        "m=audio 5006/2 RTP/AVP 0",
        "",
    ])
    session = parse(text)
    assert session.range == (65.5, 3600.0)
    assert ("tool", "other server") in session.attributes
    video, audio = session.media
    assert (video.port, video.formats, video.payload_type) == (5004, ["98", "96"], 98)
    assert (video.encoding, video.clock_rate) == ("H264", 90000)
    assert video.fmtp["packetization-mode"] == "1"
    assert video.sprop_parameter_sets() == [SPS, PPS]
    assert video.connection == "IN IP4 192.0.2.2"
    assert ("recvonly", None) in video.attributes
    assert (audio.port, audio.payload_type, audio.encoding, audio.control) == (5006, 0, None,
                                                                               None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("npt=0-", (0.0, None)), ("npt=now-", None), ("smpte=0:10:00-", None),
     ("npt=1.5-2", (1.5, 2.0)), ("npt = 3 - 4.25", (3.0, 4.25))],
)
def test_parse_ranges(value: str, expected: tuple[float, float | None] | None) -> None:
    assert parse(f"v=0\r\na=range:{value}\r\n").range == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("o=- 1 1 IN IP4 x\r\nv=0\r\n", "starts with 'v=0'"),
        ("v=1\r\n", "starts with 'v=0'"),
        ("v=0\r\nthis is not sdp\r\n", "line 2"),
        ("v=0\r\nv=0\r\n", "second v="),
        ("v=0\r\nm=video\r\n", "needs media"),
        ("v=0\r\nm=video x RTP/AVP 96\r\n", "bad port"),
        ("v=0\r\nm=video 70000 RTP/AVP 96\r\n", "bad port"),
        ("v=0\r\nm=video 0 RTP/AVP 200\r\n", "above 127"),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264\r\n", "bad rtpmap"),
        ("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/fast\r\n", "bad rtpmap"),
        ("v=0\r\na=range:npt=abc-\r\n", "NPT"),
        ("v=0\r\na=range:npt=5\r\n", "NPT"),
    ],
)
def test_parse_malformed(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        parse(text)


def test_codec_parameters_malformed() -> None:
    media = parse("v=0\r\nm=video 0 RTP/AVP 96\r\n"
                  "a=fmtp:96 sprop-parameter-sets=Z2QA!!,aOvj\r\n").media[0]
    with pytest.raises(SdpError, match="base64"):
        media.sprop_parameter_sets()
    with pytest.raises(SdpError, match="no config"):
        media.aac_config()
    audio = parse("v=0\r\nm=audio 0 RTP/AVP 97\r\na=fmtp:97 config=11G0\r\n").media[0]
    with pytest.raises(SdpError, match="hexadecimal"):
        audio.aac_config()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="vmacsot=0123456789 :/;-.,*\r\nRTPAVH", max_size=120))
def test_parse_junk_raises_only_sdp_error(text: str) -> None:
    try:
        session = parse(text)
    except SdpError:
        return
    assert session.version == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_any_text_after_a_valid_start_raises_only_sdp_error(tail: str) -> None:
    # Arbitrary Unicode too: "m=video ² RTP/AVP ³" must be an SdpError, not int()'s error.
    try:
        parse("v=0\r\nm=video 0 RTP/AVP 96\r\n" + tail)
    except SdpError:
        pass


def test_parse_refuses_non_ascii_digits() -> None:
    with pytest.raises(SdpError, match="bad port"):
        parse("v=0\r\nm=video \u00b2 RTP/AVP 96\r\n")


@pytest.mark.parametrize(
    ("base", "control", "expected"),
    [
        ("rtsp://h:8554/clip", "track1", "rtsp://h:8554/clip/track1"),
        ("rtsp://h:8554/clip/", "track1", "rtsp://h:8554/clip/track1"),
        ("rtsp://h/clip?token=x", "track2", "rtsp://h/clip/track2"),
        ("rtsps://h/a/clip", "track1?x=1", "rtsps://h/a/clip/track1?x=1"),
        ("rtsp://h/a/clip", "/other/track", "rtsp://h/other/track"),
        ("rtsp://h/clip", "rtsp://elsewhere:1/clip/t1", "rtsp://elsewhere:1/clip/t1"),
        ("rtsp://h/clip", "*", "rtsp://h/clip"),
        ("rtsp://h/clip", None, "rtsp://h/clip"),
    ],
)
def test_resolve_control(base: str, control: str | None, expected: str) -> None:
    assert resolve_control(base, control) == expected


def test_resolve_control_needs_an_absolute_base() -> None:
    with pytest.raises(SdpError):
        resolve_control("clip", "track1")


def test_ffmpeg_reads_our_sdp(tmp_path: Path) -> None:
    """FFmpeg's SDP demuxer (via PyAV) takes our codec parameters as we meant them.

    Port 0 in the m= lines lets FFmpeg bind any free UDP port; nothing is sent, and the
    open timeout ends the wait for packets once the SDP has been read.
    """
    path = tmp_path / "session.sdp"
    path.write_text(describe([VIDEO, AUDIO], 30, 99), newline="")
    container = av.open(str(path), format="sdp", timeout=0.5,
                        options={"protocol_whitelist": "file,udp,rtp"})
    try:
        video, audio = container.streams
        assert (video.type, video.codec_context.name) == ("video", "h264")
        # FFmpeg turns sprop-parameter-sets into Annex B extradata.
        assert video.codec_context.extradata == b"\x00\x00\x00\x01" + SPS + (
            b"\x00\x00\x00\x01" + PPS)
        assert (audio.type, audio.codec_context.name) == ("audio", "aac")
        assert audio.codec_context.extradata == AAC_CONFIG
        assert (audio.codec_context.sample_rate, audio.codec_context.channels) == (48000, 2)
    finally:
        container.close()
