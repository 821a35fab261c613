"""A real RTSP player in a process of its own: FFmpeg's RTSP client through PyAV.

Run as a script it opens an ``rtsp://`` URL and prints one line per decoded video frame,
flushed at once::

    frame <index> <pts> <wallclock>

then ``end <wallclock>`` when the stream ended normally, or ``error <wallclock> <why>``
when it failed.

``index`` is the frame number drawn into the sample clip's index strip (-1 when the
picture cannot be read), ``pts`` FFmpeg's presentation time in seconds (-1 when it has
none) and ``wallclock`` the ``time.time()`` at which the frame came out of the decoder.

It runs as a separate process so that a test can do to it what happens to a real
handset: freeze it with SIGSTOP (sockets open, nothing read or answered), kill it, or
cut its link, and then compare what the server believes with what was really decoded.
:class:`PlayerProcess` is the test side: it starts the script and collects its lines
on a reader thread.

FFmpeg's client answers the server's heartbeat OPTIONS only while the application is
reading packets; this player reads continuously, as a playing handset does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve()
SAMPLE_FPS = 25.0  # the sample clip's frame rate: media time of frame N is N / 25


@dataclass(frozen=True)
class Frame:
    """One decoded video frame as the player reported it."""

    index: int  # frame number read from the picture, -1 if unreadable
    pts: float  # FFmpeg's presentation time (s), -1 if none
    wallclock: float  # time.time() when it was decoded

    @property
    def media_time(self) -> float:
        """Position of this picture in the clip, from the number drawn in it."""
        return self.index / SAMPLE_FPS


def play(url: str, transport: str, seconds: float | None) -> int:
    """Decode ``url`` and report every video frame on stdout until the stream ends."""
    import av

    from rtsp_resume.sample import read_frame_index

    options = {"rtsp_transport": transport, "analyzeduration": "200000"}
    stop_at = None if seconds is None else time.monotonic() + seconds
    out = sys.stdout
    with av.open(url, options=options, timeout=10) as container:
        video = container.streams.video[0]
        # Read every stream (as a player would) but decode only the pictures.
        for packet in container.demux():
            if packet.stream is video:
                for frame in packet.decode():
                    index = read_frame_index(frame)
                    pts = frame.time if frame.time is not None else -1.0
                    out.write(f"frame {-1 if index is None else index} {pts:.6f} "
                              f"{time.time():.6f}\n")
                    out.flush()
            if stop_at is not None and time.monotonic() >= stop_at:
                break
    out.write(f"end {time.time():.6f}\n")
    out.flush()
    return 0


class PlayerProcess:
    """``pyav_player.py`` running in a subprocess, its frames collected as they come.

    Use as a context manager: the process is killed (and resumed first if frozen) on
    exit, whatever happened.
    """

    def __init__(self, url: str, transport: str = "tcp", seconds: float | None = None) -> None:
        command = [sys.executable, str(SCRIPT), url, "--transport", transport]
        if seconds is not None:
            command += ["--seconds", str(seconds)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.frames: list[Frame] = []
        self.ended = False  # the process closed its output (it exited)
        self.error: str | None = None  # why the stream failed, if it did
        self.error_at: float | None = None  # time.time() of that failure
        self._changed = threading.Condition()
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, name="pyav-player-out", daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.split()
            with self._changed:
                if len(words) == 4 and words[0] == "frame":
                    self.frames.append(Frame(int(words[1]), float(words[2]), float(words[3])))
                elif words and words[0] == "error":
                    self.error_at = float(words[1])
                    self.error = " ".join(words[2:])
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            del self._stderr[:-40]  # the last lines are enough to explain a failure

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_frames(self, count: int, deadline: float) -> list[Frame]:
        """Block until ``count`` frames were decoded; AssertionError after ``deadline`` s."""
        limit = time.monotonic() + deadline
        with self._changed:
            while len(self.frames) < count:
                left = limit - time.monotonic()
                if left <= 0 or (self.ended and len(self.frames) < count):
                    raise AssertionError(
                        f"player decoded {len(self.frames)} of {count} frames in {deadline} s"
                        f" (exit code {self.process.poll()}):\n{self.stderr}"
                    )
                self._changed.wait(left)
            return list(self.frames)

    def frames_until(self, wallclock: float) -> list[Frame]:
        """The frames decoded before ``wallclock`` (a ``time.time()`` value)."""
        with self._changed:
            return [f for f in self.frames if f.wallclock < wallclock]

    def freeze(self) -> None:
        """SIGSTOP: the process stops dead; its sockets stay open and unread."""
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process must be able to die
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)

    def __enter__(self) -> PlayerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop reading after this long (default: until the stream ends)")
    args = parser.parse_args(argv)
    import av

    try:
        return play(args.url, args.transport, args.seconds)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (av.error.FFmpegError, OSError) as exc:
        # The stream failed (the server closed the connection, a read timed out): say so
        # on stdout too, so that the test sees when and why the player stopped.
        print(f"error {time.time():.6f} {type(exc).__name__}: {exc}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
