"""Reading real media with PyAV: tracks, coded access units (never decoded) and keyframes. A
:class:`MediaFile` is probed once; each :meth:`MediaFile.access_units` opens a demuxer of
its own, so many sessions read one file at once. Times are seconds from the first video
frame (the first track's start without video), shared by audio so the two stay in sync."""

from __future__ import annotations

import functools
import heapq
import logging
import math
import os
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av

from rtsp_resume.payload import NAL_AUD, NAL_PPS, NAL_SPS, nal_type

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".mp4", ".mov", ".mkv")
_EPSILON = 5e-4  # seconds of rounding slack when time bases become float seconds
_MAX_BUFFERED = 256  # a track that goes quiet must not grow the merge buffer unbounded


@dataclass(frozen=True)
class Track:
    """One playable elementary stream of a file, as the SDP will announce it."""
    index: int  # position in MediaFile.tracks
    kind: str  # "video" or "audio"
    codec: str  # "h264" or "aac"
    clock_rate: int  # RTP clock: 90000 for video, the sample rate for audio
    control: str  # SDP a=control value, "track1", "track2", ...
    sps: bytes = b""  # video: parameter sets, picture size, frame rate
    pps: bytes = b""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    sample_rate: int = 0  # audio
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


class UnplayableMedia(Exception):
    """The file cannot be opened or read, or none of its tracks is H.264 or AAC."""


@dataclass(frozen=True)
class AvcConfig:
    """What an MP4/MKV H.264 track's extradata says (ISO 14496-15 5.3.3.1, "avcC")."""
    length_size: int  # bytes of the big-endian length before each NAL unit
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    @classmethod
    def parse(cls, data: bytes) -> AvcConfig:
        if len(data) < 7 or data[0] != 1:
            raise ValueError("not an AVCDecoderConfigurationRecord")
        pos, found = 5, []  # the SPS count, then the SPS; the PPS count, then the PPS
        for mask in (0x1F, 0xFF):
            if pos >= len(data):
                raise ValueError("avcC ends before its PPS count")
            count, pos, sets = data[pos] & mask, pos + 1, []
            for _ in range(count):
                size = int.from_bytes(data[pos : pos + 2], "big")
                unit = data[pos + 2 : pos + 2 + size]
                if len(unit) != size or size == 0:
                    raise ValueError("truncated parameter set in avcC")
                sets.append(bytes(unit))
                pos += 2 + size
            found.append(tuple(sets))
        return cls((data[4] & 0x03) + 1, found[0], found[1])


def split_length_prefixed(data: bytes, length_size: int) -> list[bytes]:
    """NAL units of an MP4/MKV sample: each preceded by its length (ISO 14496-15)."""
    units, pos = [], length_size
    while pos <= len(data):
        size = int.from_bytes(data[pos - length_size : pos], "big")
        if pos + size > len(data):
            raise ValueError(f"NAL unit of {size} bytes overruns the {len(data)}-byte sample")
        units.append(data[pos : pos + size])
        pos += size + length_size
    return [u for u in units if u]


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream: separated by 00 00 01 start codes."""
    parts = data.split(b"\x00\x00\x01")[1:]
    # Zeros before a start code belong to it (4-byte start codes), not to the unit before.
    return [u for u in [p.rstrip(b"\x00") for p in parts[:-1]] + parts[-1:] if u]


@dataclass(frozen=True)
class _Source:
    """How to turn one demuxed stream's packets into access units of one Track."""
    track: int  # in MediaFile.tracks
    kind: str
    time_base: float  # seconds per tick
    length_size: int  # H.264 in avcC framing; 0 = Annex B (or audio)


class MediaFile:
    """A media file probed once, read many times; UnplayableMedia when it has no H.264/AAC
    track. Tracks in other codecs are left out; ``skipped`` says which and why."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.content_id = self.path.stem
        self.tracks: list[Track] = []
        self.skipped: list[str] = []
        self.duration = 0.0  # seconds
        self._sources: dict[int, _Source] = {}  # by container stream index
        self._origin = 0.0  # seconds on the container's clock that map to 0.0
        self.keyframes: list[float] = []  # every video keyframe time, ascending
        self._seek_stream: int | None = None  # container index of the video we seek on
        self._reorder = 0  # most video frames decoded before one presented earlier (B-frames)
        with self._open() as container:
            self._probe(container)

    def _open(self, demux_only: bool = False) -> av.container.InputContainer:
        # Opening decodes a picture to learn what the file leaves out (20 ms for 720p);
        # a reader needs none of it once the probe has learnt the reordering, and reads no
        # packets ahead to guess at streams the container's header describes (2.4 -> 1 ms).
        quick = {"skip_frame": "all", "probesize": "32", "analyzeduration": "0"}
        try:
            return av.open(str(self.path), options=quick if demux_only else {})
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise UnplayableMedia(f"{self.path.name}: cannot open: {exc}") from exc

    def _skip(self, stream: av.stream.Stream, why: str) -> None:
        self.skipped.append(f"{self.path.name}: stream #{stream.index} ({stream.type}) "
                            f"left out: {why}")
        log.warning("%s", self.skipped[-1])

    def _probe(self, container: av.container.InputContainer) -> None:
        unresolved: dict[int, int] = {}  # stream -> track index still lacking SPS/PPS
        for stream in container.streams:
            ctx = stream.codec_context
            name = ctx.codec.canonical_name if ctx is not None else "unknown"
            if stream.type == "video" and name == "h264":
                self._add_video(stream, unresolved)
            elif stream.type == "audio" and name == "aac":
                self._add_audio(stream)
            elif stream.type in ("video", "audio"):
                self._skip(stream, f"codec {name} is not H.264 or AAC")
        if not self.tracks:
            raise UnplayableMedia("; ".join([
                f"{self.path.name}: no playable track (H.264 video or AAC audio)",
                *self.skipped]))
        video = next((i for i, s in self._sources.items() if s.kind == "video"), None)
        self._seek_stream = video
        first = container.streams[next(iter(self._sources)) if video is None else video]
        if first.start_time is not None:
            self._origin = first.start_time * float(first.time_base)
        self._scan(container, unresolved)
        if container.duration is not None:
            start = container.start_time or 0
            self.duration = max(0.0, (start + container.duration) / av.time_base - self._origin)
        else:
            self.duration = self.keyframes[-1] if self.keyframes else 0.0

    def _add_video(self, stream: av.stream.Stream, unresolved: dict[int, int]) -> None:
        ctx = stream.codec_context
        extradata = bytes(ctx.extradata or b"")
        if extradata[:1] == b"\x01":
            try:
                avcc = AvcConfig.parse(extradata)
            except ValueError as exc:
                self._skip(stream, f"bad H.264 configuration: {exc}")
                return
            length_size, sps, pps = avcc.length_size, avcc.sps, avcc.pps
        else:  # Annex B parameter sets, or none at all (then they come in-band)
            units, length_size = split_annexb(extradata), 0
            sps = tuple(u for u in units if nal_type(u) == NAL_SPS)
            pps = tuple(u for u in units if nal_type(u) == NAL_PPS)
        rate = stream.average_rate or stream.guessed_rate
        index = len(self.tracks)
        self.tracks.append(Track(
            index=index, kind="video", codec="h264", clock_rate=90_000,
            control=f"track{index + 1}", sps=sps[0] if sps else b"", pps=pps[0] if pps else b"",
            width=ctx.width, height=ctx.height, fps=float(rate) if rate else 0.0))
        self._sources[stream.index] = _Source(index, "video", float(stream.time_base), length_size)
        if not sps or not pps:
            unresolved[stream.index] = index

    def _add_audio(self, stream: av.stream.Stream) -> None:
        ctx = stream.codec_context
        config = bytes(ctx.extradata or b"")
        if not config:  # RFC 3640 needs it for the SDP; ADTS-only AAC lacks it
            self._skip(stream, "AAC without an AudioSpecificConfig")
            return
        index = len(self.tracks)
        self.tracks.append(Track(
            index=index, kind="audio", codec="aac", clock_rate=ctx.sample_rate,
            control=f"track{index + 1}", sample_rate=ctx.sample_rate, channels=ctx.channels,
            config=config))
        self._sources[stream.index] = _Source(index, "audio", float(stream.time_base), 0)

    def _scan(self, container: av.container.InputContainer, unresolved: dict[int, int]) -> None:
        """One pass over the packets (no decoding): keyframe times, in-band SPS/PPS."""
        wanted = {s for s in (self._seek_stream, *unresolved) if s is not None}
        if not wanted:
            return
        found: dict[int, tuple[bytes, bytes]] = {}
        keyframes, recent = [], deque(maxlen=16)
        try:
            for packet in container.demux([container.streams[i] for i in sorted(wanted)]):
                if packet.pts is None or packet.size == 0:
                    continue
                index = packet.stream.index
                if index == self._seek_stream:
                    self._reorder = max(self._reorder, sum(p > packet.pts for p in recent))
                    recent.append(packet.pts)
                if index == self._seek_stream and packet.is_keyframe:
                    keyframes.append(packet.pts * self._sources[index].time_base - self._origin)
                if index in unresolved and index not in found:
                    sets = {nal_type(u): u for u in reversed(split_annexb(bytes(packet)))}
                    if sets.get(NAL_SPS) and sets.get(NAL_PPS):
                        found[index] = (sets[NAL_SPS], sets[NAL_PPS])
        except av.FFmpegError as exc:  # a damaged tail: keep what was readable, as players do
            log.warning("%s: stopped reading at a damaged packet: %s", self.path.name, exc)
        self.keyframes = sorted(set(keyframes))
        for stream_index, track_index in unresolved.items():
            if stream_index not in found:
                raise UnplayableMedia(f"{self.path.name}: H.264 track without SPS/PPS")
            sps, pps = found[stream_index]
            self.tracks[track_index] = replace(self.tracks[track_index], sps=sps, pps=pps)
        if self._seek_stream is not None and not self.keyframes:
            raise UnplayableMedia(f"{self.path.name}: the video track has no keyframe")

    def keyframe_at_or_before(self, t: float) -> float:
        """The last keyframe not later than ``t`` (the first if t is before it). Without
        video any audio frame can start playback: ``t`` itself, kept within the file."""
        if not self.keyframes:
            return min(max(0.0, t), self.duration)
        return self.keyframes[max(0, bisect_right(self.keyframes, t + _EPSILON) - 1)]

    def access_units(self, start: float = 0.0) -> Iterator[AccessUnit]:
        """Access units of every track in decode order from the keyframe at or before
        ``start``, read by a demuxer of their own (closed with the generator)."""
        with self._open(demux_only=True) as container:
            try:
                yield from self._read(container, self.keyframe_at_or_before(start))
            except av.FFmpegError as exc:
                raise UnplayableMedia(f"{self.path.name}: read error: {exc}") from exc

    def _read(self, container: av.container.InputContainer, begin: float) -> Iterator[AccessUnit]:
        if begin > (self.keyframes[0] + _EPSILON if self.keyframes else 0):  # none: no video
            stream = None if self._seek_stream is None else container.streams[self._seek_stream]
            tick = float(stream.time_base) if stream else 1 / av.time_base
            container.seek(round((begin + self._origin) / tick), stream=stream, backward=True)
        # Video starts at its first keyframe from `begin` (a coarse index may land early).
        started: set[int] = set()
        last_dts: dict[int, float] = {}
        # Matroska stores no decode times. FFmpeg's guess, made here: the smallest of this
        # and the `reorder` latest presentation times, once there are that many.
        later = {i: [-math.inf] * (self._reorder if s.kind == "video" else 0)
                 for i, s in self._sources.items()}
        # k-way merge: each stream is in decode order, so the smallest head is safe to send
        # once every stream still going has one queued.
        pending = dict.fromkeys(self._sources, 0)  # units queued per stream
        live = set(self._sources)
        heap: list[tuple[float, int, int, AccessUnit]] = []  # (dts, arrival, stream, unit)

        def ready() -> Iterator[AccessUnit]:
            while heap and (not live or len(heap) > _MAX_BUFFERED
                            or all(pending[i] for i in live)):
                _, _, stream_index, unit = heapq.heappop(heap)
                pending[stream_index] -= 1
                yield unit

        streams = [container.streams[i] for i in self._sources]
        for number, packet in enumerate(container.demux(streams)):
            index = packet.stream.index
            if packet.size == 0:  # end of this stream
                live.discard(index)
                yield from ready()
                continue
            if packet.pts is None:
                continue
            source = self._sources[index]
            pts = packet.pts * source.time_base - self._origin
            guess = heapq.heappushpop(later[index], pts)  # fed every picture, as FFmpeg's is
            # Before the start (as an open GOP's leading pictures), or video before a keyframe.
            if pts < begin - _EPSILON or (source.kind == "video" and index not in started
                                          and not packet.is_keyframe):
                continue
            started.add(index)
            if packet.dts is not None:
                dts = packet.dts * source.time_base - self._origin
            else:  # none guessed yet for the first pictures: the last one, or this one's pts
                dts = guess if guess > -math.inf else last_dts.get(index, pts)
            dts = last_dts[index] = max(dts, last_dts.get(index, dts))  # never goes back
            unit = AccessUnit(source.track, pts, dts, source.kind == "audio"
                              or packet.is_keyframe, self._payload(source, bytes(packet)))
            pending[index] += 1
            heapq.heappush(heap, (dts, number, index, unit))
            yield from ready()
        live.clear()
        yield from ready()

    @staticmethod
    def _payload(source: _Source, data: bytes) -> tuple[bytes, ...]:
        if source.kind == "audio":
            return (data,)
        units = (split_length_prefixed(data, source.length_size) if source.length_size
                 else split_annexb(data))
        # Access unit delimiters carry nothing RTP does not already say with its marker.
        return tuple(u for u in units if nal_type(u) != NAL_AUD)


def valid_content_id(content_id: str) -> bool:
    """A plain file name stem: no path separators, not '.', '..' or empty."""
    return content_id not in ("", ".") and ".." not in content_id and not any(
        c in content_id for c in "/\\\x00")


@functools.lru_cache(maxsize=256)
def _probe(path: str, mtime_ns: int, size: int) -> MediaFile | UnplayableMedia:
    """One probe per version (modification time, size) of a file; its error is kept too."""
    try:
        return MediaFile(Path(path))
    except UnplayableMedia as exc:
        return exc


class MediaLibrary:
    """Every .mp4/.mov/.mkv file of one folder, probed on demand, again once it changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _find(self, content_id: str) -> Path | None:
        for suffix in MEDIA_SUFFIXES:
            for path in (self.directory / (content_id + s) for s in (suffix, suffix.upper())):
                try:
                    if path.is_file():
                        return path
                except OSError:  # e.g. a name longer than the file system allows
                    return None
        return None

    def get(self, content_id: str) -> MediaFile | None:
        """The file named ``content_id`` plus a suffix: None when that is no plain name or no
        file (RTSP 404); UnplayableMedia when nothing in it can be played (RTSP 415)."""
        path = self._find(content_id) if valid_content_id(content_id) else None
        return None if path is None else self._load(path)

    @staticmethod
    def _load(path: Path) -> MediaFile:
        try:
            stat = os.stat(path)
        except OSError:
            raise UnplayableMedia(f"{path.name}: vanished while being opened") from None
        found = _probe(str(path), stat.st_mtime_ns, stat.st_size)
        if isinstance(found, UnplayableMedia):
            raise found
        return found

    def list(self) -> list[MediaFile]:
        """Every playable file, sorted by content_id; unplayable ones are logged, skipped."""
        try:
            entries = list(self.directory.iterdir())
        except OSError as exc:
            log.warning("cannot list %s: %s", self.directory, exc)
            return []
        files = []
        for stem in sorted({p.stem for p in entries if p.suffix.lower() in MEDIA_SUFFIXES}):
            try:
                files.append(self.get(stem))  # what get() finds: an earlier suffix wins
            except UnplayableMedia as exc:
                log.warning("skipping %s", exc)
        return [media for media in files if media is not None]
