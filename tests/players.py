"""The players a user has at hand, each behind one face for tests and benchmarks:
Debian's FFmpeg 5.1 command line and GStreamer 1.22's ``rtspsrc`` (grey pictures on
stdout, the frame number drawn in each read as it arrives) and FFmpeg's client inside
PyAV (tests/pyav_player.py)."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time

import numpy as np
from pyav_player import SAMPLE_FPS, PlayerProcess

from rtsp_resume.sample import read_frame_index

WIDTH, HEIGHT = 640, 360
KINDS = ("ffmpeg", "gstreamer", "pyav")
TOOLS = {"ffmpeg": ("ffmpeg", "/usr/bin/ffmpeg"), "gstreamer": ("gst-launch-1.0",)}


def last_shown(frames: list[tuple[int, float]], before: float) -> float:
    """Media time of the latest of ``frames`` (frame number, time shown) before ``before``."""
    return max(index for index, at in frames if at <= before) / SAMPLE_FPS


class RawPlayer:
    """A command-line player writing grey 640x360 pictures to stdout; the frame number of
    each is read as it arrives."""

    def __init__(self, command: list[str]) -> None:
        self._errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._errors)
        self.shown: list[tuple[int, float]] = []  # (frame number, time.time() read)
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        size = WIDTH * HEIGHT
        while len(data := self.process.stdout.read(size)) == size:
            index = read_frame_index(np.frombuffer(data, np.uint8).reshape(HEIGHT, WIDTH))
            with self._changed:
                if index is not None:  # a damaged picture (loss) shows no readable number
                    self.shown.append((index, time.time()))
                self._changed.notify_all()

    def frames(self) -> list[tuple[int, float]]:
        with self._changed:
            return list(self.shown)

    def last_shown(self, before: float) -> float:
        """Media time of the latest picture put out before ``before`` (``time.time()``)."""
        return last_shown(self.frames(), before)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(10)
        self._errors.seek(0)
        self.stderr = self._errors.read().decode(errors="replace")[-2000:]
        self._errors.close()


class PyAvPlayer:
    """tests/pyav_player.py behind the same face as :class:`RawPlayer`."""

    def __init__(self, url: str, transport: str) -> None:
        self.inner = PlayerProcess(url, transport)
        self.freeze = self.inner.freeze

    def frames(self) -> list[tuple[int, float]]:
        return [(f.index, f.wallclock) for f in list(self.inner.frames) if f.index >= 0]

    def last_shown(self, before: float) -> float:
        return last_shown(self.frames(), before)

    def close(self) -> None:
        self.inner.kill()
        self.stderr = self.inner.stderr


def start_player(kind: str, url: str, transport: str, program: str | None = None) -> Viewer:
    """A player of ``kind`` (:data:`KINDS`); ``program``: the command-line tool's path."""
    if kind == "pyav":
        return PyAvPlayer(url, transport)
    if kind == "ffmpeg":
        return RawPlayer([program or "ffmpeg", "-v", "error", "-rtsp_transport", transport,
                          "-i", url, "-map", "0:v", "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"])
    # A 200 ms jitter buffer: with rtspsrc's default 2 s the pictures lag what arrived by
    # 2 s, which only a playout allowance that long covers.
    return RawPlayer([program or "gst-launch-1.0", "-q", "rtspsrc", f"location={url}",
                      f"protocols={transport}", "latency=200", "!", "rtph264depay", "!",
                      "h264parse", "!", "avdec_h264", "!", "videoconvert", "!",
                      "video/x-raw,format=GRAY8", "!", "fdsink", "fd=1"])


Viewer = RawPlayer | PyAvPlayer
