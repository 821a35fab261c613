"""The sample clip generator and the frame index reader, on freshly generated files."""

from __future__ import annotations

import argparse
import math
from array import array
from pathlib import Path

import av
import pytest
from av.video.frame import PictureType

from rtsp_resume import sample
from rtsp_resume.media import MediaFile
from rtsp_resume.payload import NAL_IDR, NAL_SLICE, nal_type
from rtsp_resume.sample import (
    STRIP_CELLS,
    draw_frame,
    make_sample,
    read_frame_index,
    strip_bits,
    strip_geometry,
)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two sample files, written the way `make-sample` writes them (about 3.5 s)."""
    out = tmp_path_factory.mktemp("samples")
    assert sample.main(argparse.Namespace(out=out, missing_only=False)) == 0
    return out


def _decoded_frames(path: Path) -> list[tuple[int, bool, bool, int | None]]:
    """(decode position, keyframe, intra picture, index read back) of every frame."""
    with av.open(str(path)) as container:
        return [
            (n, frame.key_frame, frame.pict_type == PictureType.I, read_frame_index(frame))
            for n, frame in enumerate(container.decode(video=0))
        ]


@pytest.mark.parametrize(("name", "frames"), [("sample.mp4", 750), ("sample_slices.mp4", 500)])
def test_every_frame_reads_back_its_own_index(clips: Path, name: str, frames: int) -> None:
    decoded = _decoded_frames(clips / name)
    assert len(decoded) == frames
    wrong = [(n, got) for n, _, _, got in decoded if got != n]
    assert wrong == []


@pytest.mark.parametrize("name", ["sample.mp4", "sample_slices.mp4"])
def test_keyframes_exactly_every_two_seconds(clips: Path, name: str) -> None:
    decoded = _decoded_frames(clips / name)
    keyframes = [n for n, key, _, _ in decoded if key]
    intra = [n for n, _, is_intra, _ in decoded if is_intra]
    assert keyframes == list(range(0, len(decoded), 50))
    assert intra == keyframes  # no stray I pictures from scene-cut detection


def _slices_per_picture(path: Path) -> set[int]:
    media = MediaFile(path)
    video = next(t.index for t in media.tracks if t.kind == "video")
    return {
        sum(1 for unit in au.nals if nal_type(unit) in (NAL_SLICE, NAL_IDR))
        for au in media.access_units(0.0)
        if au.track == video
    }


def test_slices_variant_has_two_slices_per_picture(clips: Path) -> None:
    assert _slices_per_picture(clips / "sample_slices.mp4") == {2}
    assert _slices_per_picture(clips / "sample.mp4") == {1}


def test_audio_decodes_with_a_beep_each_second(clips: Path) -> None:
    with av.open(str(clips / "sample.mp4")) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        rate = stream.codec_context.sample_rate
        samples = array("f")
        for frame in container.decode(audio=0):
            assert frame.format.name == "fltp"
            samples.frombytes(bytes(frame.planes[0])[: frame.samples * 4])
    assert abs(len(samples) - 30 * rate) <= 2048  # 30 s, give or take codec padding

    def rms(begin: float, end: float) -> float:
        part = samples[int(begin * rate) : int(end * rate)]
        return math.sqrt(sum(x * x for x in part) / len(part))

    for second in range(1, 30):
        beep = rms(second + 0.01, second + 0.08)
        tone = rms(second + 0.3, second + 0.7)
        assert tone > 0.01, f"no tone in second {second}"
        assert beep > 3 * tone, f"no beep at {second} s"


def test_drawn_frames_read_back_without_compression() -> None:
    for index in (0, 1, 2, 255, 256, 4095, 40_000, 65_535):
        assert read_frame_index(draw_frame(index, 640, 360, 25)) == index
    assert read_frame_index(draw_frame(7, 1280, 720, 30)) == 7  # larger cells


def _first_decoded_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    frame.make_writable()
    return frame


def _paint_cell(frame: av.VideoFrame, cell: int, level: int) -> None:
    x, y, cell_w, cell_h = strip_geometry(frame.width, frame.height)
    plane = frame.planes[0]
    data = memoryview(plane)
    for row in range(y, y + cell_h):
        start = row * plane.line_size + x + cell * cell_w
        data[start : start + cell_w] = bytes([level]) * cell_w


@pytest.mark.parametrize(
    "damage",
    ["flip one index bit", "flip one check bit", "grey cell", "strip blacked out"],
)
def test_damaged_strip_reads_as_none(clips: Path, damage: str) -> None:
    frame = _first_decoded_frame(clips / "sample.mp4")
    assert read_frame_index(frame) == 0  # intact before the damage
    bits = strip_bits(0)
    if damage == "flip one index bit":
        _paint_cell(frame, 10, 235 if bits[10] == 0 else 16)
    elif damage == "flip one check bit":
        _paint_cell(frame, STRIP_CELLS - 1, 235 if bits[-1] == 0 else 16)
    elif damage == "grey cell":
        _paint_cell(frame, 5, 128)
    else:
        for cell in range(STRIP_CELLS):
            _paint_cell(frame, cell, 16)
    assert read_frame_index(frame) is None


def test_picture_without_strip_reads_as_none() -> None:
    frame = av.VideoFrame(640, 360, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([128]) * plane.buffer_size)
    assert read_frame_index(frame) is None


def test_rgb_frames_read_back(clips: Path) -> None:
    frame = _first_decoded_frame(clips / "sample.mp4")
    assert read_frame_index(frame.reformat(format="rgb24")) == 0


def test_numpy_arrays_read_back(clips: Path) -> None:
    pytest.importorskip("numpy")
    frame = _first_decoded_frame(clips / "sample.mp4")
    assert read_frame_index(frame.to_ndarray(format="rgb24")) == 0
    assert read_frame_index(frame.to_ndarray(format="gray")) == 0
    assert read_frame_index(frame.to_ndarray()) == 0  # whole yuv420p, planes stacked


def test_missing_only_keeps_existing_files(
    clips: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in clips.iterdir()}
    assert sample.main(argparse.Namespace(out=clips, missing_only=True)) == 0
    assert {p.name: p.stat().st_mtime_ns for p in clips.iterdir()} == before
    printed = capsys.readouterr().out
    assert printed.count("kept") == len(sample.SAMPLE_FILES)


def test_bad_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        make_sample(tmp_path / "odd.mp4", duration=1, width=641)
    with pytest.raises(ValueError, match="too small"):
        make_sample(tmp_path / "tiny.mp4", duration=1, width=320, height=240)
    with pytest.raises(ValueError, match="fit"):
        strip_bits(1 << 16)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
