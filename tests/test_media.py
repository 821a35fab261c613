"""MediaFile and MediaLibrary on real files written with PyAV (no sockets)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest

from rtsp_resume.media import (
    AccessUnit,
    AvcConfig,
    MediaFile,
    MediaLibrary,
    UnplayableMedia,
    split_annexb,
    split_length_prefixed,
    valid_content_id,
)
from rtsp_resume.payload import NAL_IDR, NAL_PPS, NAL_SPS, nal_type
from rtsp_resume.sample import draw_frame, make_sample, read_frame_index


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clip.mp4 (16 s) and clip.mkv (13 s) from the sample generator, about 2 s to write."""
    folder = tmp_path_factory.mktemp("media")
    make_sample(folder / "clip.mp4", duration=16.0)
    make_sample(folder / "clip_mkv.mkv", duration=13.0)
    return folder


@pytest.fixture(scope="session")
def clip(media_dir: Path) -> MediaFile:
    return MediaFile(media_dir / "clip.mp4")


def _write_clip(path: Path, video: str | None, audio: str | None, fmt: str | None = None) -> Path:
    """A one-second file with the given encoders: for codecs the sample does not use."""
    with av.open(str(path), "w", format=fmt) as out:
        # Every stream is added before anything is muxed: the header is written then.
        vstream = out.add_stream(video, rate=25) if video else None
        astream = out.add_stream(audio, rate=48_000, layout="mono") if audio else None
        if vstream is not None:
            vstream.width, vstream.height, vstream.pix_fmt = 640, 360, "yuv420p"
            for i in range(25):
                out.mux(vstream.encode(draw_frame(i, 640, 360, 25)))
            out.mux(vstream.encode(None))
        if astream is not None:
            size = astream.codec_context.frame_size or 1024
            for first in range(0, 48_000, size):
                frame = av.AudioFrame(
                    format=astream.codec_context.format.name, layout="mono", samples=size
                )
                for plane in frame.planes:
                    plane.update(bytes(plane.buffer_size))
                frame.sample_rate, frame.pts = 48_000, first
                frame.time_base = Fraction(1, 48_000)
                out.mux(astream.encode(frame))
            out.mux(astream.encode(None))
    return path


def _decode_video(media: MediaFile, units: list[AccessUnit]) -> list[int | None]:
    """Frame indices an H.264 decoder shows for these access units, in display order.

    The units go in as Annex B with SPS/PPS from the Track before each keyframe, as an
    RTP receiver rebuilds them: proof that the NAL units were cut out correctly.
    """
    track = next(t for t in media.tracks if t.kind == "video")
    decoder = av.CodecContext.create("h264", "r")
    shown: list[int | None] = []
    for au in units:
        if au.track != track.index:
            continue
        nals = ((track.sps, track.pps) if au.keyframe else ()) + au.nals
        packet = av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in nals))
        packet.pts, packet.dts = round(au.pts * 90_000), round(au.dts * 90_000)
        packet.time_base = Fraction(1, 90_000)
        shown += [read_frame_index(f) for f in decoder.decode(packet)]
    shown += [read_frame_index(f) for f in decoder.decode(None)]
    return shown


# --- pure helpers -----------------------------------------------------------------------


def test_nal_splitting() -> None:
    assert split_annexb(b"\x00\x00\x00\x01\x67AB\x00\x00\x01\x68C\x00\x00\x00\x01\x65D") == [
        b"\x67AB",
        b"\x68C",
        b"\x65D",
    ]
    assert split_length_prefixed(b"\x00\x00\x00\x02\x41X\x00\x00\x00\x01\x06", 4) == [
        b"\x41X",
        b"\x06",
    ]
    with pytest.raises(ValueError, match="overruns"):
        split_length_prefixed(b"\x00\x00\x00\x09\x41X", 4)


def test_avcc_parsing_rejects_damage() -> None:
    good = bytes([1, 100, 0, 30, 0xFF, 0xE1, 0, 2, 0x67, 0x64, 1, 0, 2, 0x68, 0xEE])
    config = AvcConfig.parse(good)
    assert (config.length_size, config.sps, config.pps) == (4, (b"\x67\x64",), (b"\x68\xee",))
    for broken in (good[:-1], good[:9], b"\x00" + good[1:], b""):
        with pytest.raises(ValueError):
            AvcConfig.parse(broken)


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "..x", "a\x00"])
def test_content_id_must_be_a_plain_name(name: str) -> None:
    assert not valid_content_id(name)


# --- one file ----------------------------------------------------------------------------


def test_tracks_and_codec_configuration(clip: MediaFile) -> None:
    assert clip.content_id == "clip"
    assert clip.duration == pytest.approx(16.0, abs=0.05)
    assert clip.skipped == []
    video, audio = clip.tracks
    assert (video.index, video.kind, video.codec, video.clock_rate, video.control) == (
        0, "video", "h264", 90_000, "track1",
    )
    assert (video.width, video.height, video.fps) == (640, 360, 25.0)
    assert nal_type(video.sps) == NAL_SPS and nal_type(video.pps) == NAL_PPS
    with av.open(str(clip.path)) as container:
        avcc = bytes(container.streams.video[0].codec_context.extradata)
        asc = bytes(container.streams.audio[0].codec_context.extradata)
    # profile_idc, constraint flags, level_idc: the SDP's profile-level-id
    assert video.sps[1:4] == avcc[1:4]
    assert video.sps[1] == 100  # High profile, as libx264 writes by default
    assert (audio.index, audio.kind, audio.codec, audio.control) == (1, "audio", "aac", "track2")
    assert (audio.clock_rate, audio.sample_rate, audio.channels) == (48_000, 48_000, 1)
    assert audio.config == asc
    # AudioSpecificConfig: 5 bits object type (2 = AAC LC), 4 bits rate index (3 = 48 kHz)
    assert audio.config[0] >> 3 == 2 and ((audio.config[0] & 7) << 1 | audio.config[1] >> 7) == 3


def test_keyframe_table(clip: MediaFile) -> None:
    assert clip.keyframes == [float(t) for t in range(0, 16, 2)]
    assert clip.keyframe_at_or_before(-3.0) == 0.0
    assert clip.keyframe_at_or_before(1.99) == 0.0
    assert clip.keyframe_at_or_before(2.0) == 2.0
    assert clip.keyframe_at_or_before(11.0) == 10.0
    assert clip.keyframe_at_or_before(12.0) == 12.0
    assert clip.keyframe_at_or_before(99.0) == 14.0


def test_access_units_from_the_start(clip: MediaFile) -> None:
    units = list(clip.access_units(0.0))
    first = units[0]
    assert (first.track, first.pts, first.keyframe) == (0, 0.0, True)
    assert NAL_IDR in {nal_type(n) for n in first.nals}
    assert [u.dts for u in units] == sorted(u.dts for u in units)  # decode order overall
    video = [u for u in units if u.track == 0]
    audio = [u for u in units if u.track == 1]
    assert len(video) == 400
    assert all(u.nals and all(u.nals) for u in units)
    assert all(len(u.nals) == 1 and u.keyframe for u in audio)
    assert audio[0].pts >= 0.0 and audio[-1].pts == pytest.approx(16.0, abs=0.05)
    assert [u.pts for u in audio] == sorted(u.pts for u in audio)
    assert [u.pts for u in video if u.keyframe] == clip.keyframes


def test_b_frames_are_kept_in_decode_order(clip: MediaFile) -> None:
    video = [u for u in clip.access_units(0.0) if u.track == 0]
    assert any(u.pts != u.dts for u in video)
    assert [u.pts for u in video] != sorted(u.pts for u in video)  # reordered
    assert sorted(round(u.pts * 25) for u in video) == list(range(400))
    assert all(u.dts <= u.pts + 1e-9 for u in video)


@pytest.mark.parametrize(("start", "keyframe"), [(12.0, 12.0), (11.0, 10.0), (0.5, 0.0)])
def test_access_units_start_at_the_keyframe_at_or_before(
    clip: MediaFile, start: float, keyframe: float
) -> None:
    units = list(clip.access_units(start))
    assert (units[0].track, units[0].keyframe, units[0].pts) == (0, True, keyframe)
    assert all(u.pts >= keyframe for u in units if u.track == 1)
    assert min(u.pts for u in units if u.track == 1) < keyframe + 0.05  # audio not lost
    for track in (0, 1):
        dts = [u.dts for u in units if u.track == track]
        assert dts == sorted(dts)
    shown = _decode_video(clip, units)
    first = round(keyframe * 25)
    assert shown == list(range(first, 400))


def test_iterators_are_independent(clip: MediaFile) -> None:
    # Two sessions reading alternately, as an event loop would drive them.
    readers = [clip.access_units(0.0), clip.access_units(12.0)]
    got: list[list[AccessUnit]] = [[], []]
    going = {0, 1}
    while going:
        for n in sorted(going):
            unit = next(readers[n], None)
            if unit is None:
                going.discard(n)
            else:
                got[n].append(unit)
    assert got[0] == list(clip.access_units(0.0))
    assert got[1] == list(clip.access_units(12.0))


def test_threads_read_concurrently(clip: MediaFile) -> None:
    expected = list(clip.access_units(4.0))
    results: dict[int, list[AccessUnit]] = {}

    def read(n: int) -> None:
        results[n] = list(clip.access_units(4.0))

    threads = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results.get(n) == expected for n in range(4))


def test_mkv_variant(media_dir: Path) -> None:
    mkv = MediaFile(media_dir / "clip_mkv.mkv")
    assert [t.codec for t in mkv.tracks] == ["h264", "aac"]
    assert mkv.keyframes == [float(t) for t in range(0, 13, 2)]
    units = list(mkv.access_units(12.0))
    assert (units[0].track, units[0].keyframe, units[0].pts) == (0, True, 12.0)
    assert _decode_video(mkv, units) == list(range(300, 325))
    everything = list(mkv.access_units(0.0))
    for track in (0, 1):
        dts = [u.dts for u in everything if u.track == track]
        assert dts == sorted(dts)
    assert _decode_video(mkv, everything) == list(range(325))


def test_annexb_stream_with_in_band_parameter_sets(tmp_path: Path) -> None:
    # MPEG-TS keeps H.264 as Annex B and AAC as ADTS (no AudioSpecificConfig).
    media = MediaFile(_write_clip(tmp_path / "clip.ts", "libx264", "aac", fmt="mpegts"))
    assert [t.codec for t in media.tracks] == ["h264"]
    assert "AudioSpecificConfig" in media.skipped[0]
    units = list(media.access_units(0.0))
    assert {NAL_SPS, NAL_PPS, NAL_IDR} <= {nal_type(n) for n in units[0].nals}
    assert _decode_video(media, units) == list(range(25))


def test_audio_only_file_starts_where_asked(tmp_path: Path) -> None:
    media = MediaFile(_write_clip(tmp_path / "sound.mp4", None, "aac"))
    assert [(t.kind, t.control) for t in media.tracks] == [("audio", "track1")]
    assert media.keyframe_at_or_before(0.5) == 0.5  # every AAC frame is a sync point
    units = list(media.access_units(0.5))
    assert 0.5 <= units[0].pts < 0.55
    assert [u.dts for u in units] == sorted(u.dts for u in units)


@pytest.mark.parametrize("audio", ["libmp3lame", "libopus"])
def test_unsupported_track_is_left_out_with_a_warning(
    tmp_path: Path, audio: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_clip(tmp_path / "mixed.mp4", "libx264", audio)
    with caplog.at_level(logging.WARNING, logger="rtsp_resume.media"):
        media = MediaFile(path)
    assert [(t.codec, t.control) for t in media.tracks] == [("h264", "track1")]
    assert len(media.skipped) == 1 and "stream #1" in media.skipped[0]
    assert media.skipped[0] in caplog.text
    assert next(media.access_units(0.0)).keyframe


def test_nothing_playable_is_refused(tmp_path: Path) -> None:
    path = _write_clip(tmp_path / "old.mp4", "mpeg4", None)
    with pytest.raises(UnplayableMedia, match="no playable track.*mpeg4"):
        MediaFile(path)


def test_missing_and_junk_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnplayableMedia, match="cannot open"):
        MediaFile(tmp_path / "nothing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a movie\n" * 500)
    with pytest.raises(UnplayableMedia, match="junk.mp4"):
        MediaFile(junk)


def test_file_gone_after_probing(tmp_path: Path, media_dir: Path) -> None:
    path = Path(shutil.copy(media_dir / "clip.mp4", tmp_path / "gone.mp4"))
    media = MediaFile(path)
    path.unlink()
    with pytest.raises(UnplayableMedia, match="cannot open"):
        next(media.access_units(0.0))


# --- a folder ----------------------------------------------------------------------------


@pytest.fixture
def library_dir(tmp_path: Path, media_dir: Path) -> Path:
    shutil.copy(media_dir / "clip.mp4", tmp_path / "b_clip.mp4")
    shutil.copy(media_dir / "clip_mkv.mkv", tmp_path / "a_clip.mkv")
    (tmp_path / "junk.mp4").write_bytes(b"\x00junk" * 100)
    (tmp_path / "notes.txt").write_text("not media")
    return tmp_path


def test_library_lists_playable_files(
    library_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    library = MediaLibrary(library_dir)
    with caplog.at_level(logging.WARNING, logger="rtsp_resume.media"):
        listed = library.list()
    assert [m.content_id for m in listed] == ["a_clip", "b_clip"]
    assert "junk.mp4" in caplog.text


def test_library_get(library_dir: Path) -> None:
    library = MediaLibrary(library_dir)
    clip = library.get("b_clip")
    assert clip is not None and clip.path == library_dir / "b_clip.mp4"
    assert library.get("b_clip") is clip  # cached
    assert library.get("nothing") is None
    for bad in ("../b_clip", "..", "", "x/b_clip", str(library_dir / "b_clip")):
        assert library.get(bad) is None
    with pytest.raises(UnplayableMedia):
        library.get("junk")


def test_library_reprobes_when_the_file_changes(library_dir: Path, media_dir: Path) -> None:
    library = MediaLibrary(library_dir)
    before = library.get("b_clip")
    assert before is not None and before.duration == pytest.approx(16.0, abs=0.05)
    target = library_dir / "b_clip.mp4"
    shutil.copy(media_dir / "clip_mkv.mkv", target)  # same name, other content
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    after = library.get("b_clip")
    assert after is not None and after is not before
    assert after.duration == pytest.approx(13.0, abs=0.05)


def test_library_is_thread_safe(library_dir: Path) -> None:
    library = MediaLibrary(library_dir)
    seen: list[MediaFile | None] = []
    lock = threading.Lock()

    def get() -> None:
        for _ in range(20):
            found = library.get("a_clip")
            with lock:
                seen.append(found)

    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(seen) == 80 and all(m is not None and m.content_id == "a_clip" for m in seen)
