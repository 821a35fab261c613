"""Interoperability: FFmpeg's RTSP client (through PyAV) plays and seeks what we serve.

No line of FFmpeg's client was written here, so these tests show the server speaks
standard RTSP 1.0 (RFC 2326), RTP (RFC 3550), H.264 over RTP (RFC 6184) and AAC over RTP
(RFC 3640), not merely a dialect our own terminal happens to share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import av
import pytest

from rtsp_resume.sample import read_frame_index

GOP = 50  # frames between keyframes in the sample (2 s at 25 fps)


@dataclass
class Played:
    indices: list[int | None] = field(default_factory=list)
    audio_frames: int = 0


def play(url: str, transport: str, frames: int, seek: float | None = None,
         deadline: float = 30.0) -> Played:
    """Decode ``frames`` video frames with FFmpeg's RTSP demuxer, after an optional seek."""
    played = Played()
    options = {"rtsp_transport": transport, "analyzeduration": "200000"}
    limit = time.monotonic() + deadline
    with av.open(url, options=options, timeout=10) as container:
        if seek is not None:
            container.seek(int(seek * av.time_base))
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        for packet in container.demux(streams):
            assert time.monotonic() < limit, f"only {len(played.indices)} frames in {deadline} s"
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    played.indices.append(read_frame_index(frame))
                else:
                    played.audio_frames += 1
            if len(played.indices) >= frames:
                break
    return played


@pytest.mark.parametrize("clip", ["sample", "sample_slices"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_plays_from_the_start(rtsp_server, clip: str, transport: str) -> None:
    played = play(rtsp_server.url(clip), transport, frames=5 * 25)
    assert played.indices == list(range(len(played.indices))), played.indices[:20]
    assert played.audio_frames > 100  # 5 s of 1024-sample AAC frames at 44.1/48 kHz


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_seeks_to_the_keyframe_before(rtsp_server, transport: str) -> None:
    target = 13.0  # between the keyframes at 12 s and 14 s
    played = play(rtsp_server.url("sample"), transport, frames=10, seek=target)
    first = played.indices[0]
    assert first is not None
    assert 12 * 25 <= first <= target * 25
    assert first % GOP == 0  # a player can only start decoding at a keyframe
    assert played.indices == list(range(first, first + len(played.indices)))


def test_unknown_content_is_404(rtsp_server) -> None:
    with pytest.raises(av.error.HTTPNotFoundError if hasattr(av.error, "HTTPNotFoundError")
                       else av.error.FFmpegError):
        av.open(rtsp_server.url("no_such_clip"), options={"rtsp_transport": "tcp"}, timeout=5)
