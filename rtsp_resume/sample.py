"""The project's own sample clip, and the reader that tells which frame a player shows.

Every frame carries its number twice: as digits a person can read (a timecode and the
frame number, drawn with a small built-in 5x7 font) and as a strip of large black and
white blocks a program can read back after H.264 compression (16 bits of frame number and
an 8-bit CRC). Tests and notebooks decode what a player received, call
:func:`read_frame_index` and so prove which frame arrived, whatever the transport did.

Pictures are drawn straight into the YUV planes with byte slices, so the generator needs
nothing beyond PyAV.
"""

from __future__ import annotations

import argparse
import math
import time
from array import array
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import av

# Limited-range ("TV") luma levels: what every decoder and player maps to black and white.
BLACK = 16
WHITE = 235

INDEX_BITS = 16
CRC_BITS = 8
# Two reference cells (white, black) come first: the reader derives its threshold from
# them, so a darker or brighter decode, or an RGB conversion, does not matter.
STRIP_CELLS = 2 + INDEX_BITS + CRC_BITS

AUDIO_RATE = 48_000
AUDIO_FRAME = 1024  # samples per AAC frame

SAMPLE_FILES = {
    # name: keyword arguments of make_sample
    "sample.mp4": {"duration": 30.0, "slices": 1},
    # Real encoders cut pictures into several slices; the packetizer must cope. Shorter,
    # to keep the repository small.
    "sample_slices.mp4": {"duration": 20.0, "slices": 2},
}


# --- the frame index strip -------------------------------------------------------------


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
    bits = [1, 0]
    bits += [(index >> (INDEX_BITS - 1 - i)) & 1 for i in range(INDEX_BITS)]
    bits += [(check >> (CRC_BITS - 1 - i)) & 1 for i in range(CRC_BITS)]
    return bits


def strip_geometry(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the strip sits in a ``width`` x ``height`` picture: (x, y, cell_w, cell_h).

    Cells are whole 16x16 macroblocks (one wide, two high) aligned to the macroblock grid,
    so each is coded as a flat block and its centre survives heavy quantization.
    """
    cell_w = 16 * max(1, width // 640)
    cell_h = 2 * cell_w
    x = (width - STRIP_CELLS * cell_w) // 2 // 16 * 16
    y = (height - cell_h - 8) // 16 * 16
    if x < 0 or y < 0:
        raise ValueError(f"{width}x{height} is too small for the frame index strip")
    return x, y, cell_w, cell_h


def read_frame_index(image: Any) -> int | None:
    """The frame number a decoded picture of the sample carries, or None.

    ``image`` is an ``av.VideoFrame`` (any pixel format), a numpy array of RGB (or YUV)
    pixels shaped HxWx3, or a 2-D array of luma (the Y plane; a whole yuv420p array
    shaped (H*3/2)xW works too). None means the strip is not there or its CRC does not
    match: a damaged picture, or a picture that is not from the sample.
    """
    if isinstance(image, av.VideoFrame):
        return _read_video_frame(image)
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) not in (2, 3):
        raise TypeError(f"expected av.VideoFrame or an HxW(x3) array, got {type(image)!r}")
    height, width = int(shape[0]), int(shape[1])
    color = len(shape) == 3

    def mean(x0: int, y0: int, w: int, h: int) -> float:
        region = image[y0 : y0 + h, x0 : x0 + w]
        if not color:
            return float(region.mean())
        # Rec. 601 weights; for a YUV array the thresholds still fall between the
        # reference cells, because chroma is flat over the strip.
        return float(
            0.299 * region[..., 0].mean()
            + 0.587 * region[..., 1].mean()
            + 0.114 * region[..., 2].mean()
        )

    found = _decode_strip(mean, width, height)
    if found is None and not color and height % 3 == 0:
        # A yuv420p frame as one array: the Y plane is the top two thirds.
        found = _decode_strip(mean, width, height * 2 // 3)
    return found


def _read_video_frame(frame: av.VideoFrame) -> int | None:
    if not frame.format.name.startswith(("yuv", "yuvj", "gray", "nv")):
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    data = memoryview(plane)
    stride = plane.line_size

    def mean(x0: int, y0: int, w: int, h: int) -> float:
        total = 0
        for row in range(y0, y0 + h):
            start = row * stride + x0
            total += sum(data[start : start + w])
        return total / (w * h)

    return _decode_strip(mean, frame.width, frame.height)


def _decode_strip(mean: Any, width: int, height: int) -> int | None:
    try:
        x, y, cell_w, cell_h = strip_geometry(width, height)
    except ValueError:
        return None
    # The centre half of each cell: compression smears edges, not centres.
    levels = [
        mean(x + i * cell_w + cell_w // 4, y + cell_h // 4, cell_w // 2, cell_h // 2)
        for i in range(STRIP_CELLS)
    ]
    white, black = levels[0], levels[1]
    if white - black < 48:
        return None
    middle = (white + black) / 2
    margin = (white - black) / 4
    bits = []
    for level in levels[2:]:
        if abs(level - middle) < margin:
            return None  # neither black nor white: not a clean strip
        bits.append(1 if level > middle else 0)
    index = int("".join(map(str, bits[:INDEX_BITS])), 2)
    check = int("".join(map(str, bits[INDEX_BITS:])), 2)
    return index if crc8(index.to_bytes(2, "big")) == check else None


# --- drawing into YUV planes ------------------------------------------------------------

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
    rects = []
    for row, line in enumerate(_FONT[char]):
        col = 0
        while col < _GLYPH_W:
            if line[col] != "#":
                col += 1
                continue
            end = col
            while end < _GLYPH_W and line[end] == "#":
                end += 1
            rects.append((col * scale, row * scale, (end - col) * scale, scale))
            col = end
    return tuple(rects)


class _Plane:
    """One 8-bit picture plane as a bytearray laid out like the frame's (row stride)."""

    def __init__(self, width: int, height: int, stride: int, value: int) -> None:
        self.width, self.height, self.stride = width, height, stride
        self.data = bytearray(bytes([value]) * (stride * height))

    def fill(self, x: int, y: int, w: int, h: int, value: int) -> None:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        run = bytes([value]) * (x1 - x0)
        for row in range(y0, y1):
            start = row * self.stride + x0
            self.data[start : start + len(run)] = run

    def text(self, x: int, y: int, text: str, scale: int, value: int) -> None:
        for i, char in enumerate(text):
            left = x + i * (_GLYPH_W + 1) * scale
            for dx, dy, w, h in _glyph_rects(char, scale):
                self.fill(left + dx, y + dy, w, h, value)


_STRIPE_PERIOD = 64


@cache
def _stripe_pattern(width: int) -> bytes:
    """One row of background, a period longer than the picture so it can be shifted."""
    # A soft triangle wave of mid greys: moves visibly, compresses well.
    half = _STRIPE_PERIOD // 2
    levels = [70 + (60 * abs(half - i)) // half for i in range(_STRIPE_PERIOD)]
    return bytes(levels * (width // _STRIPE_PERIOD + 2))


def draw_frame(index: int, width: int, height: int, fps: int) -> av.VideoFrame:
    """Picture number ``index`` of the clip, as a yuv420p frame ready to encode."""
    frame = av.VideoFrame(width, height, "yuv420p")
    y_plane = frame.planes[0]
    luma = _Plane(width, height, y_plane.line_size, BLACK)

    # Background: diagonal stripes drifting two pixels a frame.
    pattern = _stripe_pattern(width)
    rows = []
    pad = bytes(y_plane.line_size - width)
    for row in range(height):
        phase = (2 * index + row) % _STRIPE_PERIOD
        rows.append(pattern[phase : phase + width] + pad)
    luma.data[:] = b"".join(rows)

    # A box bouncing across the picture, in colour, so motion is easy to see.
    box = max(16, height // 8) // 2 * 2
    span_x, span_y = width - box, height // 2 - box
    step = index * 6
    bx = step % (2 * span_x)
    bx = bx if bx < span_x else 2 * span_x - bx
    by = height // 4 + int(span_y * (0.5 + 0.5 * math.sin(index / fps * math.pi)))
    by = min(by, height - box) // 2 * 2
    bx = bx // 2 * 2
    luma.fill(bx, by, box, box, 150)

    chroma = []
    for plane, value in zip(frame.planes[1:], (60, 200), strict=True):
        c = _Plane(plane.width, plane.height, plane.line_size, 128)
        c.fill(bx // 2, by // 2, box // 2, box // 2, value)
        chroma.append(c)

    # Human-readable: timecode HH:MM:SS:FF and the frame number, white on a black panel.
    scale = max(2, height // 90)
    seconds, ff = divmod(index, fps)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    lines = [f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}", f"F {index:06d}"]
    line_h = (_GLYPH_H + 3) * scale
    panel_w = (max(len(s) for s in lines) * (_GLYPH_W + 1) + 2) * scale
    luma.fill(8, 8, panel_w, len(lines) * line_h + scale, BLACK)
    for i, line in enumerate(lines):
        luma.text(8 + 2 * scale, 8 + 2 * scale + i * line_h, line, scale, WHITE)

    # Machine-readable: the index strip, on a black band so its edges are clean.
    x, y, cell_w, cell_h = strip_geometry(width, height)
    luma.fill(x - cell_w // 2, y - 4, STRIP_CELLS * cell_w + cell_w, cell_h + 8, BLACK)
    for i, bit in enumerate(strip_bits(index)):
        luma.fill(x + i * cell_w, y, cell_w, cell_h, WHITE if bit else BLACK)
    for c in chroma:  # colourless, even when the box passes behind the strip
        c.fill(x // 2 - cell_w // 4, y // 2 - 2, (STRIP_CELLS + 1) * cell_w // 2,
               cell_h // 2 + 4, 128)

    y_plane.update(luma.data)
    for plane, c in zip(frame.planes[1:], chroma, strict=True):
        plane.update(c.data)
    frame.pts = index
    frame.time_base = Fraction(1, fps)
    return frame


# --- sound ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _one_second_of_sound() -> bytes:
    """48 000 float samples: a quiet 440 Hz tone, with a 1 kHz beep in the first 100 ms.

    Both frequencies complete whole cycles in a second, so the second repeats seamlessly.
    """
    samples = array("f")
    beep_end = AUDIO_RATE // 10
    for n in range(AUDIO_RATE):
        t = n / AUDIO_RATE
        value = 0.05 * math.sin(2 * math.pi * 440 * t)
        if n < beep_end:
            value += 0.3 * math.sin(2 * math.pi * 1000 * t)
        samples.append(value)
    return samples.tobytes()


def _audio_frame(first_sample: int, count: int) -> av.AudioFrame:
    second = _one_second_of_sound()
    size = 4  # bytes per float sample
    start = (first_sample % AUDIO_RATE) * size
    chunk = second[start : start + count * size]
    while len(chunk) < count * size:  # wrapped past the end of the second
        chunk += second[: count * size - len(chunk)]
    frame = av.AudioFrame(format="fltp", layout="mono", samples=count)
    frame.planes[0].update(chunk + bytes(frame.planes[0].buffer_size - len(chunk)))
    frame.sample_rate = AUDIO_RATE
    frame.pts = first_sample
    frame.time_base = Fraction(1, AUDIO_RATE)
    return frame


# --- the clip ---------------------------------------------------------------------------


def make_sample(
    path: Path,
    duration: float = 30.0,
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    gop_seconds: float = 2.0,
    slices: int = 1,
    audio: bool = True,
) -> Path:
    """Write the sample clip: H.264 (+ AAC) in MP4, or MKV when ``path`` ends in .mkv.

    The GOP is fixed: a keyframe every ``gop_seconds * fps`` frames and nowhere else
    (scene-cut detection off), so tests know where seeks must land. B-frames stay on, as
    in most real files. ``slices`` is the number of slices per picture; frame threading
    keeps x264 from adding slices of its own.
    """
    path = Path(path)
    frames = round(duration * fps)
    gop = round(gop_seconds * fps)
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (4:2:0 chroma)")
    if frames < 1 or gop < 1:
        raise ValueError("duration and gop_seconds must cover at least one frame")
    if frames > 1 << INDEX_BITS:
        raise ValueError(f"at most {1 << INDEX_BITS} frames fit in the index strip")
    strip_geometry(width, height)  # fails early when the picture is too small
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    container_format = "matroska" if path.suffix.lower() == ".mkv" else "mp4"

    with av.open(str(partial), "w", format=container_format) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_type = "FRAME"
        options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "crf": "30",
            "preset": "fast",
            "x264-params": "scenecut=0:open-gop=0",
        }
        if slices > 1:
            options["slices"] = str(slices)
        video.options = options

        sound = None
        if audio:
            sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            sound.bit_rate = 48_000
        total_samples = round(frames / fps * AUDIO_RATE)
        samples_done = 0

        for index in range(frames):
            out.mux(video.encode(draw_frame(index, width, height, fps)))
            # Keep the audio level with the pictures, so the muxer interleaves finely.
            due = min(total_samples, (index + 1) * AUDIO_RATE // fps)
            while sound is not None and samples_done + AUDIO_FRAME <= due:
                out.mux(sound.encode(_audio_frame(samples_done, AUDIO_FRAME)))
                samples_done += AUDIO_FRAME
        while sound is not None and samples_done < total_samples:
            count = min(AUDIO_FRAME, total_samples - samples_done)
            out.mux(sound.encode(_audio_frame(samples_done, count)))
            samples_done += count
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    partial.replace(path)  # never leave a half-written clip under the real name
    return path


def main(args: argparse.Namespace) -> int:
    """``make-sample``: write the sample clips into ``args.out``."""
    out = Path(args.out)
    for name, kwargs in SAMPLE_FILES.items():
        target = out / name
        if args.missing_only and target.exists():
            print(f"kept {target} (exists)")
            continue
        started = time.perf_counter()
        make_sample(target, **kwargs)
        took = time.perf_counter() - started
        print(f"wrote {target}: {target.stat().st_size / 1e6:.2f} MB in {took:.1f} s")
    return 0
