"""The project's own sample clip, and the reader that tells which frame a player shows.
Every frame carries its number twice: as digits a person reads (timecode and frame number in
a small 5x7 font) and as a strip of large black and white blocks that a program reads back
after H.264 compression (16 bits of frame number, an 8-bit CRC), so tests and notebooks
prove which frame arrived with :func:`read_frame_index`. Pictures are drawn straight into
the YUV planes as NumPy arrays: no drawing library is needed."""

from __future__ import annotations

import argparse
import math
import re
import time
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BLACK, WHITE = 16, 235  # limited-range ("TV") luma: what every decoder maps to black, white
INDEX_BITS, CRC_BITS = 16, 8
# Two reference cells (white, black) come first: the reader derives its threshold from
# them, so a darker or brighter decode, or an RGB conversion, does not matter.
STRIP_CELLS = 2 + INDEX_BITS + CRC_BITS

AUDIO_RATE = 48_000  # samples per second

# make_sample's arguments per file. Real encoders cut pictures into several slices and the
# packetizer must cope; that variant is shorter, to keep the repository small.
SAMPLE_FILES = {"sample.mp4": {"duration": 30.0, "slices": 1},
                "sample_slices.mp4": {"duration": 20.0, "slices": 2}}
# The tour's program, long enough for a class to talk before cutting; made on demand.
LESSON_FILES = {"lesson/lesson.mp4": {"duration": 600.0, "preset": "veryfast"}}


def crc8(data: bytes) -> int:
    """CRC-8 with polynomial x^8+x^2+x+1 and a non-zero start, so an all-black strip fails."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def strip_bits(index: int) -> list[int]:
    """The cells of the strip for frame ``index``: 1 = white, 0 = black."""
    if not 0 <= index < 1 << INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    check = crc8(index.to_bytes(2, "big"))
    return [1, 0, *(int(b) for b in f"{index:016b}{check:08b}")]


def strip_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the strip sits in a ``width`` x ``height`` picture: (x, y, cell_w, cell_h). Cells
    are whole macroblocks on their grid: each is coded flat, its centre survives quantizing."""
    cell_w = 16 * max(1, width // 640)
    cell_h = 2 * cell_w
    x = (width - STRIP_CELLS * cell_w) // 2 // 16 * 16
    y = (height - cell_h - 8) // 16 * 16
    if x < 0 or y < 0:
        raise ValueError(f"{width}x{height} is too small for the frame index strip")
    return x, y, cell_w, cell_h


def read_frame_index(image: Any) -> int | None:
    """The frame number a decoded picture of the sample carries, or None (no strip, or a CRC
    that does not match: damaged, or not the sample). ``image``: an ``av.VideoFrame``, an
    HxWx3 RGB (or YUV) array, or a 2-D luma array (a whole (H*3/2)xW yuv420p one too)."""
    # A frame's luma plane (where the strip is) read in place, not through swscale: a
    # display may be reformatting the same frame on another thread, which would crash it.
    if isinstance(image, av.VideoFrame):
        frame = image if image.format.name.startswith(("yuv", "gray", "nv")) else (
            image.reformat(format="gray"))
        rows = np.frombuffer(frame.planes[0], np.uint8).reshape(-1, frame.planes[0].line_size)
        image = rows[: frame.height, : frame.width]
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) not in (2, 3):
        raise TypeError(f"expected av.VideoFrame or an HxW(x3) array, got {type(image)!r}")
    if len(shape) == 3:
        # Rec. 601 weights; for a YUV array the thresholds still fall between the
        # reference cells, because chroma is flat over the strip.
        return _decode_strip(np.asarray(image)[..., :3] @ np.array([0.299, 0.587, 0.114]))
    found = _decode_strip(image)
    if found is None and shape[0] % 3 == 0:
        # A yuv420p frame as one array: the Y plane is the top two thirds.
        found = _decode_strip(image[: shape[0] * 2 // 3])
    return found


def _decode_strip(luma: Any) -> int | None:
    try:
        x, y, cell_w, cell_h = strip_geometry(luma.shape[1], luma.shape[0])
    except ValueError:
        return None
    # The centre half of each cell: compression smears edges, not centres.
    top, left = y + cell_h // 4, x + cell_w // 4
    levels = [float(luma[top : top + cell_h // 2, cx : cx + cell_w // 2].mean())
              for cx in range(left, left + STRIP_CELLS * cell_w, cell_w)]
    white, black = levels[0], levels[1]
    middle, margin = (white + black) / 2, (white - black) / 4
    if white - black < 48 or any(abs(level - middle) < margin for level in levels[2:]):
        return None  # no reference cells, or a cell neither black nor white
    bits = "".join("1" if level > middle else "0" for level in levels[2:])
    index, check = int(bits[:INDEX_BITS], 2), int(bits[INDEX_BITS:], 2)
    return index if crc8(index.to_bytes(2, "big")) == check else None


# A 5x7 pixel font of the characters the clip needs, drawn for this project.
_FONT = {
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    ":": ("     ", "  #  ", "  #  ", "     ", "  #  ", "  #  ", "     "),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    " ": ("     ",) * 7,
}
_GLYPH_W, _GLYPH_H = 5, 7


@cache
def _glyph_rects(char: str, scale: int) -> tuple[tuple[int, int, int, int], ...]:
    """A glyph as horizontal runs of lit pixels, (x, y, w, h) at ``scale``: few fills."""
    return tuple((run.start() * scale, row * scale, len(run.group()) * scale, scale)
                 for row, line in enumerate(_FONT[char]) for run in re.finditer("#+", line))


def _fill(plane: np.ndarray, x: int, y: int, w: int, h: int, value: int) -> None:
    """Fill a rectangle of ``plane``, the part of it inside the picture."""
    plane[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = value


def _text(plane: np.ndarray, x: int, y: int, text: str, scale: int, value: int) -> None:
    for i, char in enumerate(text):
        left = x + i * (_GLYPH_W + 1) * scale
        for dx, dy, w, h in _glyph_rects(char, scale):
            _fill(plane, left + dx, y + dy, w, h, value)


# The background's row: a soft triangle wave of mid greys (it moves visibly and compresses well).
_STRIPES = np.array([70 + (60 * abs(32 - i)) // 32 for i in range(64)], np.uint8)


def draw_frame(index: int, width: int, height: int, fps: int) -> av.VideoFrame:
    """Picture number ``index`` of the clip, as a yuv420p frame ready to encode."""
    frame = av.VideoFrame(width, height, "yuv420p")
    # The planes laid out like the frame's (rows of line_size bytes), drawn where the picture is.
    rows = [np.full((plane.height, plane.line_size), value, np.uint8)
            for plane, value in zip(frame.planes, (BLACK, 128, 128), strict=True)]
    luma, *chroma = (data[:, : p.width] for data, p in zip(rows, frame.planes, strict=True))

    # Background: diagonal stripes drifting two pixels a frame, each row the one above shifted.
    row = np.resize(_STRIPES, width + len(_STRIPES))  # a period longer than the picture
    luma[:] = sliding_window_view(row, width)[(2 * index + np.arange(height)) % len(_STRIPES)]

    # A box bouncing across the picture, in colour, so motion is easy to see.
    box = max(16, height // 8) // 2 * 2
    span_x, span_y = width - box, height // 2 - box
    bx = index * 6 % (2 * span_x)
    bx = min(bx, 2 * span_x - bx) // 2 * 2  # there and back
    by = height // 4 + int(span_y * (0.5 + 0.5 * math.sin(index / fps * math.pi)))
    by = min(by, height - box) // 2 * 2
    _fill(luma, bx, by, box, box, 150)
    for c, value in zip(chroma, (60, 200), strict=True):
        _fill(c, bx // 2, by // 2, box // 2, box // 2, value)

    # Human-readable: timecode HH:MM:SS:FF and the frame number, white on a black panel.
    scale = max(2, height // 90)
    minutes, ss = divmod(index // fps, 60)
    lines = [f"{minutes // 60:02d}:{minutes % 60:02d}:{ss:02d}:{index % fps:02d}", f"F {index:06d}"]
    line_h = (_GLYPH_H + 3) * scale
    panel_w = (max(len(s) for s in lines) * (_GLYPH_W + 1) + 2) * scale
    _fill(luma, 8, 8, panel_w, len(lines) * line_h + scale, BLACK)
    for i, line in enumerate(lines):
        _text(luma, 8 + 2 * scale, 8 + 2 * scale + i * line_h, line, scale, WHITE)

    # Machine-readable: the index strip, on a black band so its edges are clean.
    x, y, cell_w, cell_h = strip_geometry(width, height)
    _fill(luma, x - cell_w // 2, y - 4, STRIP_CELLS * cell_w + cell_w, cell_h + 8, BLACK)
    for i, bit in enumerate(strip_bits(index)):
        _fill(luma, x + i * cell_w, y, cell_w, cell_h, WHITE if bit else BLACK)
    for c in chroma:  # colourless, even when the box passes behind the strip
        _fill(c, x // 2 - cell_w // 4, y // 2 - 2, (STRIP_CELLS + 1) * cell_w // 2,
              cell_h // 2 + 4, 128)

    for plane, data in zip(frame.planes, rows, strict=True):
        plane.update(data)
    frame.pts, frame.time_base = index, Fraction(1, fps)
    return frame


def _audio_frame(first_sample: int, count: int) -> av.AudioFrame:
    """Samples from ``first_sample`` on: a quiet 440 Hz tone, a 1 kHz beep in the first 100 ms
    of each second."""
    n = np.arange(first_sample, first_sample + count)
    t = n / AUDIO_RATE
    sound = 0.05 * np.sin(2 * np.pi * 440 * t) + np.where(
        n % AUDIO_RATE < AUDIO_RATE // 10, 0.3 * np.sin(2 * np.pi * 1000 * t), 0)
    frame = av.AudioFrame.from_ndarray(sound.astype(np.float32)[None], format="fltp",
                                       layout="mono")
    frame.sample_rate, frame.pts = AUDIO_RATE, first_sample
    frame.time_base = Fraction(1, AUDIO_RATE)
    return frame


def make_sample(path: Path, duration: float = 30.0, width: int = 640, height: int = 360,
                fps: int = 25, gop_seconds: float = 2.0, slices: int = 1,
                audio: bool = True, preset: str = "fast") -> Path:
    """Write the sample clip: H.264 (+ AAC) in MP4, or MKV when ``path`` ends in .mkv. A
    keyframe every ``gop_seconds * fps`` frames and nowhere else (no scene cuts), so tests
    know where seeks land; B-frames on, as in most real files; ``slices`` per picture
    (frame threading keeps x264 from adding slices of its own)."""
    path, frames, gop = Path(path), round(duration * fps), round(gop_seconds * fps)
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (4:2:0 chroma)")
    if frames < 1 or gop < 1:
        raise ValueError("duration and gop_seconds must cover at least one frame")
    if frames > 1 << INDEX_BITS:
        raise ValueError(f"at most {1 << INDEX_BITS} frames fit in the index strip")
    strip_geometry(width, height)  # fails early when the picture is too small
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with av.open(str(partial), "w", format="matroska" if path.suffix.lower() == ".mkv"
                 else "mp4") as out:
        video = out.add_stream("libx264", rate=fps, width=width, height=height, pix_fmt="yuv420p")
        video.codec_context.thread_type = "FRAME"
        video.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                         "crf": "30", "preset": preset, "x264-params": "scenecut=0:open-gop=0",
                         **({"slices": str(slices)} if slices > 1 else {})}
        sound = (out.add_stream("aac", rate=AUDIO_RATE, layout="mono", bit_rate=48_000)
                 if audio else None)
        for index in range(frames):
            out.mux(video.encode(draw_frame(index, width, height, fps)))
            # Each picture's sound with it, so the muxer interleaves finely; PyAV cuts it
            # into AAC frames (the last one short at the flush).
            first, end = index * AUDIO_RATE // fps, (index + 1) * AUDIO_RATE // fps
            if sound is not None:
                out.mux(sound.encode(_audio_frame(first, end - first)))
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    partial.replace(path)  # never leave a half-written clip under the real name
    return path


def main(args: argparse.Namespace) -> int:
    """``make-sample``: write the sample clips into ``args.out`` (and the lesson's)."""
    out = Path(args.out)
    for name, kwargs in (SAMPLE_FILES | (LESSON_FILES if getattr(args, "lesson", False)
                                         else {})).items():
        target = out / name
        if args.missing_only and target.exists():
            print(f"kept {target} (exists)")
            continue
        started = time.perf_counter()
        make_sample(target, **kwargs)
        print(f"wrote {target}: {target.stat().st_size / 1e6:.2f} MB in "
              f"{time.perf_counter() - started:.1f} s")
    return 0
