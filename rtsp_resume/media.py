"""Reading real media with PyAV: tracks, access units and keyframes.

(Being written: the dataclasses below are the contract other modules rely on.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    """One playable elementary stream of a file, as the SDP will announce it."""

    index: int  # position in MediaFile.tracks
    kind: str  # "video" or "audio"
    codec: str  # "h264" or "aac"
    clock_rate: int  # RTP clock: 90000 for video, the sample rate for audio
    control: str  # SDP a=control value, "track1", "track2", ...
    # video
    sps: bytes = b""
    pps: bytes = b""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    # audio
    sample_rate: int = 0
    channels: int = 0
    config: bytes = b""  # AudioSpecificConfig (ISO 14496-3 1.6.2.1)


@dataclass(frozen=True)
class AccessUnit:
    """One coded picture or one AAC frame, with times in seconds from the file's start."""

    track: int
    pts: float
    dts: float
    keyframe: bool
    nals: tuple[bytes, ...]  # H.264: bare NAL units; AAC: the raw frame as the only item
