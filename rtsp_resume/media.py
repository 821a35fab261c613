"""Reading real media with PyAV: tracks, access units and keyframes.

A :class:`MediaFile` is probed once (its tracks, codec configuration, duration and a
table of keyframe times). Each call of :meth:`MediaFile.access_units` then opens a demuxer
of its own, so any number of sessions read the same file at once, from threads or an
event loop, without sharing state. Only demuxing happens here, never decoding: the
server forwards coded access units as they are.

Times are seconds on the file's timeline: the first video frame is presented at 0.0
(the first track's start when there is no video), and audio shares that origin so the
two stay in sync.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av

log = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".mp4", ".mov", ".mkv")

# NAL unit types (ITU-T H.264 table 7-1) that matter here.
NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# Half a millisecond: rounding slack when time bases are converted to float seconds.
_EPSILON = 5e-4
# A track that goes quiet must not make the merge buffer grow without bound.
_MAX_BUFFERED = 256


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


class UnplayableMedia(Exception):
    """The file cannot be opened or read, or none of its tracks is H.264 or AAC."""


# --- H.264 bitstream framing -----------------------------------------------------------


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
        length_size = (data[4] & 0x03) + 1
        pos = 6  # after the header and the SPS count

        def read_sets(count: int) -> tuple[bytes, ...]:
            nonlocal pos
            sets = []
            for _ in range(count):
                size = int.from_bytes(data[pos : pos + 2], "big")
                unit = data[pos + 2 : pos + 2 + size]
                if len(unit) != size or size == 0:
                    raise ValueError("truncated parameter set in avcC")
                sets.append(bytes(unit))
                pos += 2 + size
            return tuple(sets)

        sps = read_sets(data[5] & 0x1F)
        if pos >= len(data):
            raise ValueError("avcC ends before its PPS count")
        pps_count = data[pos]
        pos += 1
        pps = read_sets(pps_count)
        return cls(length_size, sps, pps)


def split_length_prefixed(data: bytes, length_size: int) -> list[bytes]:
    """NAL units of an MP4/MKV sample: each preceded by its length (ISO 14496-15)."""
    units = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0:
            continue
        if pos + size > len(data):
            raise ValueError(f"NAL unit of {size} bytes overruns the {len(data)}-byte sample")
        units.append(data[pos : pos + size])
        pos += size
    return units


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream: separated by 00 00 01 start codes."""
    units = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        # Zero bytes before the next start code belong to it (4-byte start codes,
        # trailing_zero_8bits), never to this NAL unit.
        unit = data[begin:end].rstrip(b"\x00") if nxt >= 0 else data[begin:end]
        if unit:
            units.append(unit)
        start = nxt
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


# --- one file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """How to turn one demuxed stream's packets into access units of one Track."""

    stream_index: int  # in the container
    track: int  # in MediaFile.tracks
    kind: str
    time_base: float  # seconds per tick
    length_size: int  # H.264 in avcC framing; 0 = Annex B (or audio)


class MediaFile:
    """A media file probed once: tracks, duration, keyframe table; read many times.

    Raises UnplayableMedia when the file cannot be opened or has no H.264/AAC track.
    Tracks in other codecs are left out; ``skipped`` says which and why (also logged).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.content_id = self.path.stem
        self.tracks: list[Track] = []
        self.skipped: list[str] = []
        self.duration = 0.0  # seconds
        self._sources: list[_Source] = []
        self._origin = 0.0  # seconds on the container's clock that map to 0.0
        self._keyframes: list[float] = []
        self._seek_stream: int | None = None  # container index of the video we seek on
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise UnplayableMedia(f"{self.path.name}: cannot open: {exc}") from exc
        with container:
            self._probe(container)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{t.control}={t.codec}" for t in self.tracks)
        return f"MediaFile({self.content_id!r}, {self.duration:.2f} s, {kinds})"

    # --- probing ---

    def _skip(self, stream: av.stream.Stream, why: str) -> None:
        message = f"{self.path.name}: stream #{stream.index} ({stream.type}) left out: {why}"
        self.skipped.append(message)
        log.warning("%s", message)

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
            raise UnplayableMedia(
                f"{self.path.name}: no playable track (H.264 video or AAC audio)"
                + (f"; {'; '.join(self.skipped)}" if self.skipped else "")
            )

        first = container.streams[self._sources[0].stream_index]
        seek_on = next((s for s in self._sources if s.kind == "video"), None)
        if seek_on is not None:
            self._seek_stream = seek_on.stream_index
            first = container.streams[seek_on.stream_index]
        if first.start_time is not None:
            self._origin = first.start_time * float(first.time_base)

        self._scan(container, unresolved)
        if container.duration is not None:
            start = container.start_time or 0
            self.duration = max(0.0, (start + container.duration) / av.time_base - self._origin)
        else:
            self.duration = self._keyframes[-1] if self._keyframes else 0.0

    def _add_video(self, stream: av.stream.Stream, unresolved: dict[int, int]) -> None:
        ctx = stream.codec_context
        extradata = bytes(ctx.extradata or b"")
        length_size = 0
        sps: tuple[bytes, ...] = ()
        pps: tuple[bytes, ...] = ()
        if extradata[:1] == b"\x01":
            try:
                avcc = AvcConfig.parse(extradata)
            except ValueError as exc:
                self._skip(stream, f"bad H.264 configuration: {exc}")
                return
            length_size, sps, pps = avcc.length_size, avcc.sps, avcc.pps
        else:  # Annex B parameter sets, or none at all (then they come in-band)
            units = split_annexb(extradata)
            sps = tuple(u for u in units if nal_type(u) == NAL_SPS)
            pps = tuple(u for u in units if nal_type(u) == NAL_PPS)
        rate = stream.average_rate or stream.guessed_rate
        index = len(self.tracks)
        self.tracks.append(
            Track(
                index=index,
                kind="video",
                codec="h264",
                clock_rate=90_000,
                control=f"track{index + 1}",
                sps=sps[0] if sps else b"",
                pps=pps[0] if pps else b"",
                width=ctx.width,
                height=ctx.height,
                fps=float(rate) if rate else 0.0,
            )
        )
        self._sources.append(
            _Source(stream.index, index, "video", float(stream.time_base), length_size)
        )
        if not sps or not pps:
            unresolved[stream.index] = index

    def _add_audio(self, stream: av.stream.Stream) -> None:
        ctx = stream.codec_context
        config = bytes(ctx.extradata or b"")
        if not config:
            # RFC 3640 needs the AudioSpecificConfig for the SDP; ADTS-only AAC lacks it.
            self._skip(stream, "AAC without an AudioSpecificConfig")
            return
        index = len(self.tracks)
        self.tracks.append(
            Track(
                index=index,
                kind="audio",
                codec="aac",
                clock_rate=ctx.sample_rate,
                control=f"track{index + 1}",
                sample_rate=ctx.sample_rate,
                channels=ctx.channels,
                config=config,
            )
        )
        self._sources.append(_Source(stream.index, index, "audio", float(stream.time_base), 0))

    def _scan(self, container: av.container.InputContainer, unresolved: dict[int, int]) -> None:
        """One pass over the packets (no decoding): keyframe times, in-band SPS/PPS."""
        wanted = {s for s in (self._seek_stream, *unresolved) if s is not None}
        if not wanted:
            return
        sources = {s.stream_index: s for s in self._sources}
        found: dict[int, tuple[bytes, bytes]] = {}
        keyframes = []
        try:
            for packet in container.demux([container.streams[i] for i in sorted(wanted)]):
                if packet.pts is None or packet.size == 0:
                    continue
                index = packet.stream.index
                if index == self._seek_stream and packet.is_keyframe:
                    keyframes.append(packet.pts * sources[index].time_base - self._origin)
                if index in unresolved and index not in found:
                    units = split_annexb(bytes(packet))
                    sps = next((u for u in units if nal_type(u) == NAL_SPS), None)
                    pps = next((u for u in units if nal_type(u) == NAL_PPS), None)
                    if sps and pps:
                        found[index] = (sps, pps)
        except av.FFmpegError as exc:
            # A damaged tail: keep what was readable, as players do.
            log.warning("%s: stopped reading at a damaged packet: %s", self.path.name, exc)
        self._keyframes = sorted(set(keyframes))
        for stream_index, track_index in unresolved.items():
            track = self.tracks[track_index]
            if stream_index not in found:
                raise UnplayableMedia(f"{self.path.name}: H.264 track without SPS/PPS")
            sps, pps = found[stream_index]
            self.tracks[track_index] = replace(track, sps=sps, pps=pps)
        if self._seek_stream is not None and not self._keyframes:
            raise UnplayableMedia(f"{self.path.name}: the video track has no keyframe")

    # --- reading ---

    def keyframe_at_or_before(self, t: float) -> float:
        """The time of the last keyframe not later than ``t`` (the first one if t is before it).

        Without video every audio frame can start playback, so ``t`` itself comes back
        (kept within the file).
        """
        if not self._keyframes:
            return min(max(0.0, t), self.duration)
        i = bisect_right(self._keyframes, t + _EPSILON)
        return self._keyframes[max(0, i - 1)]

    @property
    def keyframes(self) -> list[float]:
        """Every keyframe time of the video track, ascending."""
        return list(self._keyframes)

    def access_units(self, start: float = 0.0) -> Iterator[AccessUnit]:
        """Every track's access units from the keyframe at or before ``start``.

        Decode order: sorted by dts across tracks. Audio earlier than that keyframe is
        dropped. The generator owns its demuxer, closed when the generator finishes or is
        closed. Raises UnplayableMedia if the file cannot be opened or read any more.
        """
        begin = self.keyframe_at_or_before(start)
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise UnplayableMedia(f"{self.path.name}: cannot open: {exc}") from exc
        with container:
            try:
                yield from self._read(container, begin)
            except av.FFmpegError as exc:
                raise UnplayableMedia(f"{self.path.name}: read error: {exc}") from exc

    def _read(self, container: av.container.InputContainer, begin: float) -> Iterator[AccessUnit]:
        sources = {s.stream_index: s for s in self._sources}
        streams = [container.streams[i] for i in sources]
        if self._seek_stream is not None and begin > self._keyframes[0] + _EPSILON:
            seek_stream = container.streams[self._seek_stream]
            target = round((begin + self._origin) / float(seek_stream.time_base))
            container.seek(target, stream=seek_stream, backward=True)
        elif self._seek_stream is None and begin > 0:
            container.seek(round((begin + self._origin) * av.time_base), backward=True)

        # Video of each stream starts at its first keyframe at or after `begin`: a demuxer
        # may land a keyframe early (coarse index), and pictures before it are useless.
        started: set[int] = set()
        last_dts: dict[int, float] = {}
        # k-way merge: every stream's packets come in its own decode order, so the
        # smallest head is safe to send once every stream still going has one queued.
        pending = dict.fromkeys(sources, 0)  # units queued per stream
        live = set(sources)
        heap: list[tuple[float, int, int, AccessUnit]] = []
        counter = 0

        def ready() -> Iterator[AccessUnit]:
            while heap and (
                all(pending[i] for i in live) or len(heap) > _MAX_BUFFERED or not live
            ):
                _, _, stream_index, unit = heapq.heappop(heap)
                pending[stream_index] -= 1
                yield unit

        for packet in container.demux(streams):
            index = packet.stream.index
            if packet.size == 0:  # end of this stream
                live.discard(index)
                yield from ready()
                continue
            if packet.pts is None:
                continue
            source = sources[index]
            pts = packet.pts * source.time_base - self._origin
            if source.kind == "audio":
                if pts < begin - _EPSILON:
                    continue
            elif index not in started:
                if not packet.is_keyframe or pts < begin - _EPSILON:
                    continue
                started.add(index)
            elif pts < begin - _EPSILON:
                continue  # a leading picture of an open GOP: refers to what we skipped
            if packet.dts is not None:
                dts = packet.dts * source.time_base - self._origin
            else:
                # Matroska stores no dts; FFmpeg guesses it after the first few frames.
                dts = last_dts.get(index, pts)
            dts = max(dts, last_dts.get(index, dts))  # decode order never goes back
            last_dts[index] = dts
            unit = AccessUnit(
                track=source.track,
                pts=pts,
                dts=dts,
                keyframe=source.kind == "audio" or packet.is_keyframe,
                nals=self._payload(source, bytes(packet)),
            )
            pending[index] += 1
            heapq.heappush(heap, (dts, counter, index, unit))
            counter += 1
            yield from ready()
        live.clear()
        yield from ready()

    @staticmethod
    def _payload(source: _Source, data: bytes) -> tuple[bytes, ...]:
        if source.kind == "audio":
            return (data,)
        units = (
            split_length_prefixed(data, source.length_size)
            if source.length_size
            else split_annexb(data)
        )
        # Access unit delimiters carry nothing RTP does not already say with its marker.
        return tuple(u for u in units if nal_type(u) != NAL_AUD)


# --- a folder of files ----------------------------------------------------------------------


def valid_content_id(content_id: str) -> bool:
    """A plain file name stem: no path separators, not '.', '..' or empty."""
    return (
        bool(content_id)
        and content_id not in (".", "..")
        and not any(c in content_id for c in "/\\\x00")
        and ".." not in content_id
    )


class MediaLibrary:
    """Every .mp4/.mov/.mkv file of one folder, probed on demand and cached.

    A file is probed again when its modification time or size changes. Safe to use from
    many threads: probing happens outside the lock, so one slow file never blocks others.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        # content_id -> ((path, mtime_ns, size), MediaFile or the error it raised)
        self._cache: dict[str, tuple[tuple[str, int, int], MediaFile | UnplayableMedia]] = {}

    def _find(self, content_id: str) -> Path | None:
        for suffix in MEDIA_SUFFIXES:
            for candidate in (suffix, suffix.upper()):
                path = self.directory / f"{content_id}{candidate}"
                if path.is_file():
                    return path
        return None

    def get(self, content_id: str) -> MediaFile | None:
        """The file whose name without extension is ``content_id``.

        None when the name is not a plain name or no such file exists (RTSP 404).
        Raises UnplayableMedia when the file exists but nothing in it can be played
        (RTSP 415).
        """
        if not valid_content_id(content_id):
            return None
        path = self._find(content_id)
        if path is None:
            return None
        return self._load(content_id, path)

    def _load(self, content_id: str, path: Path) -> MediaFile:
        try:
            stat = os.stat(path)
        except OSError:
            raise UnplayableMedia(f"{path.name}: vanished while being opened") from None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(content_id)
        if cached is None or cached[0] != key:
            try:
                result: MediaFile | UnplayableMedia = MediaFile(path)
            except UnplayableMedia as exc:
                result = exc
            with self._lock:
                self._cache[content_id] = (key, result)
            cached = (key, result)
        if isinstance(cached[1], UnplayableMedia):
            raise cached[1]
        return cached[1]

    def list(self) -> list[MediaFile]:
        """Every playable file, sorted by content_id; unplayable ones are logged, skipped."""
        try:
            entries = sorted(self.directory.iterdir())
        except OSError as exc:
            log.warning("cannot list %s: %s", self.directory, exc)
            return []
        files: dict[str, MediaFile] = {}
        for path in entries:
            content_id = path.stem
            if (
                path.suffix.lower() not in MEDIA_SUFFIXES
                or not path.is_file()
                or content_id in files
                or not valid_content_id(content_id)
                or self._find(content_id) != path  # an earlier suffix wins, as in get()
            ):
                continue
            try:
                files[content_id] = self._load(content_id, path)
            except UnplayableMedia as exc:
                log.warning("skipping %s", exc)
        return [files[k] for k in sorted(files)]
