"""The patent's story as test steps: a running system, a link to cut, a viewer who resumes.

Shared by the end-to-end claim tests (claims 1, 3, 7, 9), the outbox tests and the FFmpeg
story. Everything is real: :class:`rtsp_resume.together.System` (streaming server, portal,
bookmark outbox) on loopback, the project's own terminal, a
:class:`rtsp_resume.linkcut.LinkCutter` standing in for the radio link.

Heartbeat settings are short (every 0.3 s, interrupted after 1.0 s of silence) so a cut
is noticed quickly; everything else is the servers' defaults.

"The bookmark's frame" is the frame nearest to ContentBM (:func:`frame_of`). With the
default playout allowance of 0.5 s (12.5 frames) a ``confirmed`` bookmark lies exactly
half way between two frames; the player's exact resume then starts with the earlier one,
so a resume is never late. (Python's ``round`` would pick the even one of the two.)

Waiting is always on an event with a deadline: interruptions and outbox answers arrive
through the servers' listeners and wake :meth:`Story.wait_interruption` and
:meth:`Story.wait_answered`.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal_support import FAST_KDF

from rtsp_resume import rtsp
from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.client import PortalClient
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import System

FPS = 25  # the sample clips' frame rate
GOP = 50  # frames between keyframes in the sample clips (a keyframe every 2 s)
USERS = [("alice", "alice-pw"), ("bob", "bob-pw")]
HEARTBEAT_INTERVAL = 0.3
HEARTBEAT_TIMEOUT = 1.0
# Long enough on a loaded 2-core machine, far beyond what any step needs here.
DEADLINE = 10.0


def frame_of(seconds: float) -> int:
    """The sample frame nearest to ``seconds`` of media time (frame N is at N / 25 s),
    the earlier of the two when ``seconds`` lies exactly half way (within float noise)."""
    return math.ceil(seconds * FPS - 0.5 - 1e-6)


def fast_config(position: str = "confirmed", **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = dict(heartbeat_interval=HEARTBEAT_INTERVAL,
                                    heartbeat_timeout=HEARTBEAT_TIMEOUT, position=position)
    settings.update(overrides)
    return ServerConfig(**settings)


@dataclass
class Cut:
    """One viewing ended by a cut link, as every party saw it."""

    play: dict[str, Any]  # the portal's /api/play answer (EncryptToken, url)
    player: Player  # the terminal that was playing (closed by now)
    last_seen: ShownFrame  # the newest frame it showed before the server gave up
    interruption: Interruption  # what the streaming server declared
    delivery: Delivery  # what became of the BookMarkReq in the outbox

    @property
    def token(self) -> str:
        return str(self.play["EncryptToken"])


class Story:
    """A started :class:`System` with a :class:`LinkCutter` in front of its RTSP port."""

    def __init__(self, system: System, cutter: LinkCutter) -> None:
        self.system = system
        self.cutter = cutter
        self._cond = threading.Condition()
        self.interruptions: list[Interruption] = []
        self.answered: list[Delivery] = []
        self.sent: list[Delivery] = []  # one per attempt, as the attempt starts
        system.streaming.listeners.append(self._on_interruption)
        assert system.outbox is not None
        system.outbox.listeners.append(self._on_outbox)

    # -- the parties ---------------------------------------------------------------------

    @property
    def store(self) -> Any:
        assert self.system.portal is not None
        return self.system.portal.store

    def login(self, user: str = "alice") -> PortalClient:
        portal = PortalClient(self.system.portal_url)
        portal.login(user, dict(USERS)[user])
        return portal

    def through_link(self, url: str) -> str:
        """The same RTSP URL, reached through the link that can be cut."""
        port = self.system.streaming.port
        assert f":{port}/" in url, url
        return url.replace(f":{port}/", f":{self.cutter.port}/")

    # -- events --------------------------------------------------------------------------

    def _on_interruption(self, event: Interruption) -> None:
        with self._cond:
            self.interruptions.append(event)
            self._cond.notify_all()

    def _on_outbox(self, what: str, delivery: Delivery) -> None:
        with self._cond:
            (self.answered if what == "answered" else self.sent).append(delivery)
            self._cond.notify_all()

    def _wait(self, find: Any, what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (found := find()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s")
                self._cond.wait(left)
            return found

    def wait_interruption(self, token: str, timeout: float = DEADLINE) -> Interruption:
        """The interruption of the session that was opened with play token ``token``."""
        return self._wait(
            lambda: next((e for e in self.interruptions if e.play_token == token), None),
            "interruption", timeout)

    def wait_answered(self, token: str, timeout: float = DEADLINE) -> Delivery:
        """The outbox's final answer (delivered or refused) for the bookmark of ``token``."""
        return self._wait(
            lambda: next((d for d in self.answered
                          if d.request.get("EncryptToken") == token), None),
            "BookMarkResp", timeout)

    def wait_attempts(self, token: str, count: int, timeout: float = DEADLINE) -> None:
        """Until the outbox has started ``count`` attempts at the bookmark of ``token``."""
        self._wait(lambda: True if sum(d.request.get("EncryptToken") == token
                                       for d in self.sent) >= count else None,
                   f"{count} attempts", timeout)

    # -- steps ---------------------------------------------------------------------------

    def play_and_cut(self, portal: PortalClient, content_id: str, seconds: float,
                     transport: str = "tcp", deliver: bool = True,
                     play: dict[str, Any] | None = None) -> Cut:
        """Play ``content_id`` through the link until ``seconds`` of it were shown, cut the
        link, and wait until the server declared the interruption (and, with ``deliver``,
        until the outbox has the portal's answer). The player is closed without TEARDOWN
        and the link restored. ``play``: a /api/play answer got earlier (else asked now).
        """
        play = play or portal.play(content_id)
        player = Player(self.through_link(play["url"]), transport=transport).start()
        try:
            reached = player.wait_for(
                lambda: bool(player.frames) and player.frames[-1].pts >= seconds,
                timeout=seconds + DEADLINE)
            assert reached, f"played only up to {player.last_frame} ({player.error})"
            self.cutter.cut()
            event = self.wait_interruption(play["EncryptToken"])
            delivery = (self.wait_answered(play["EncryptToken"]) if deliver
                        else None)
            last_seen = player.last_frame
            assert last_seen is not None
        finally:
            player.close_abruptly()
            self.cutter.restore()
        return Cut(play, player, last_seen, event, delivery)  # type: ignore[arg-type]


@contextmanager
def running_story(data_dir: Path, media_dir: Path, position: str = "confirmed",
                  portal: dict[str, Any] | None = None, **config: Any) -> Iterator[Story]:
    """A :class:`Story` on free loopback ports; everything is stopped afterwards.
    ``portal``: settings of the portal (``play_ttl``, ...); ``config``: the server's."""
    system = System(media_dir, data_dir, USERS, config=fast_config(position, **config),
                    kdf=FAST_KDF, **(portal or {})).start()
    cutter: LinkCutter | None = None
    try:
        cutter = LinkCutter(to=(system.host, system.streaming.port)).start()
        yield Story(system, cutter)
    finally:
        if cutter is not None:
            cutter.stop()
        system.stop()


class RawRtsp:
    """One RTSP connection driven by hand: send a request, read its answer.

    Interleaved media and requests from the server that arrive first are counted and
    skipped; one parser is kept for the whole connection, so nothing is misread.
    """

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.parser = rtsp.RtspParser()
        self.cseq = 0
        self.media_frames = 0
        self._events: list[rtsp.Event] = []

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None
                ) -> rtsp.Response:
        self.cseq += 1
        self.sock.sendall(bytes(rtsp.Request(method, uri, {"CSeq": str(self.cseq),
                                                           **(headers or {})})))
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, rtsp.InterleavedFrame):
                    self.media_frames += 1
                elif isinstance(event, rtsp.Response) and event.cseq == self.cseq:
                    return event
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"{method}: connection closed without an answer")
            self._events += self.parser.feed(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRtsp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    """A TCP port nobody listens on right now (for a process that needs one up front)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``python -m rtsp_resume ARGS`` in a subprocess, its output read line by line."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtsp_resume", *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first output line matching ``pattern`` (a regex), waiting at most
        ``timeout`` s (a cold start imports PyAV and probes the media)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if (match := regex.search(line)) is not None:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{' '.join(self.args)}: no line like {pattern!r}; "
                                         f"output:\n{chr(10).join(self.lines)}")
                self._cond.wait(min(left, 0.5))

    def interrupt(self, timeout: float = DEADLINE) -> int:
        """Ctrl-C; returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
