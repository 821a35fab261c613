"""The stage: a :class:`~rtsp_resume.together.System` (streaming server, portal, outbox)
in the kernel, its events handed to subscribers on a thread that also refreshes the views.
A new stage stops the one under the same key: a re-run cell leaves no servers behind."""

from __future__ import annotations

import atexit
import logging
import queue
import shutil
import tempfile
import threading
import time
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtsp_resume import sample
from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import System
from rtsp_resume.widgets.display import STOPPED, EventLog, FieldsView

REFRESH = 0.1  # seconds between view refreshes: ten pictures a second is plenty to watch

_running: dict[str, Stage] = {}
_registry = threading.Lock()


def running() -> dict[str, Stage]:
    """The stages running in this kernel, by key."""
    with _registry:
        return dict(_running)


@atexit.register
def stop_all() -> None:
    """Stop every stage of this kernel (also run at kernel shutdown)."""
    for stage in running().values():
        stage.stop()


def sample_media(lesson: bool = False) -> Path:
    """The repository's ``sample_media``, made first if missing (as ``make sample`` does);
    with ``lesson``, its folder of the tour's ten-minute program (a minute to make once)."""
    folder = Path(__file__).resolve().parents[2] / "sample_media"
    if not (folder / ("lesson/lesson.mp4" if lesson else "sample.mp4")).exists():
        sample.main(Namespace(out=folder, missing_only=True, lesson=lesson))
    return folder / "lesson" if lesson else folder


class Stage:
    """The servers on background threads, a short heartbeat (claims 2, 8) by default.
    Subscribers run on the stage's thread, where they may block; ``on_stop`` ones first."""

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5, key: str = "stage", quiet: bool = True) -> None:
        if quiet:  # the stage's log tells the story; the servers' lines would land anywhere
            logging.getLogger("rtsp_resume").setLevel(logging.ERROR)
        self.key, self.log = key, EventLog()
        self.data = Path(tempfile.mkdtemp(prefix="rtsp-resume-notebook-"))
        config = ServerConfig(heartbeat_interval=heartbeat_interval,
                              heartbeat_timeout=heartbeat_timeout)
        self.system = System(media or sample_media(), self.data, config=config)
        self.secret = self.system.secret  # the key the portal and the streaming server share
        self.interruptions: list[Interruption] = []
        self.deliveries: list[tuple[str, Delivery]] = []  # ("sent" or "answered", delivery)
        self.bookmark_req = FieldsView("BookMarkReq: streaming server → portal")
        self.bookmark_resp = FieldsView("BookMarkResp: portal → streaming server")
        self.on_interruption: list[Callable[[Interruption], None]] = []
        self.on_delivery: list[Callable[[str, Delivery], None]] = []
        self.on_tick: list[Callable[[], None]] = []
        self.on_stop: list[Callable[[], None]] = []
        self.cond = threading.Condition()
        self.started = self.stopped = False
        self._jobs: queue.SimpleQueue[tuple[list[Any], tuple[Any, ...]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="widgets", daemon=True)
        self._failed: set[str] = set()
        with _registry:
            previous, _running[key] = _running.get(key), self
        if previous is not None:
            previous.stop()

    @property
    def config(self) -> ServerConfig:  # changes apply to the sessions set up afterwards
        return self.system.streaming.config

    def start(self) -> Stage:
        self.system.start()
        self.started = True
        # First in line, so that the interruption is known before its BookMarkReq.
        self.system.streaming.listeners.insert(0, self._interrupted)
        assert self.system.outbox is not None
        self.system.outbox.listeners.append(self._delivered)
        self._thread.start()
        self.log.say(f"portal {self.system.portal_url}/ and streaming server "
                     f"{self.system.rtsp_url}/ running in this kernel")
        return self

    def stop(self) -> None:
        """Stop the views, terminals, servers and threads; remove the data. Idempotent."""
        with self.cond:
            if self.stopped:
                return
            self.stopped = True
            self.cond.notify_all()
        with _registry:
            if _running.get(self.key) is self:
                del _running[self.key]
        self._jobs.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
        for close in self.on_stop:
            close()
        if self.started:
            self.system.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        self.log.say(f"players, links, streaming server, portal and outbox {STOPPED}")

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is true (checked after every event and tick); its value."""
        deadline = time.monotonic() + timeout
        # Checked without the lock: a predicate may ask the server's loop.
        while not (value := predicate()):
            if self.stopped:
                raise RuntimeError(f"the stage stopped while waiting for {what}")
            if (remaining := deadline - time.monotonic()) <= 0:
                raise TimeoutError(f"no {what} within {timeout:g} s")
            with self.cond:
                self.cond.wait(min(remaining, 0.25))
        return value

    def heartbeat_log(self, session_id: str) -> list[tuple[float, str, int | None]] | None:
        """A live session's heartbeat log as (Unix time, kind, CSeq); None once it ended."""
        streaming = self.system.streaming

        def grab() -> list[Any] | None:  # on the server's loop, which owns the sessions
            session = streaming.sessions.get(session_id)
            return None if session is None else list(session.monitor.log)

        entries = None if self.stopped else streaming.call(grab)
        shift = time.time() - streaming.clock()  # the monitor keeps the server's clock
        return None if entries is None else [(t + shift, kind, n) for t, kind, n in entries]

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            try:
                item = self._jobs.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                due, item = time.monotonic() + REFRESH, (self.on_tick, ())
            if item is None:
                return
            functions, args = item
            for function in list(functions):
                try:
                    function(*args)
                except Exception as exc:  # one broken view must not stop the others
                    name = getattr(function, "__qualname__", repr(function))
                    if name not in self._failed:  # once, not ten times a second
                        self._failed.add(name)
                        self.log.say(f"{name} failed: {exc!r}")
            with self.cond:
                self.cond.notify_all()

    # On the server's and the outbox's threads: note, and pass on to the stage's thread.

    def _interrupted(self, event: Interruption) -> None:
        self.interruptions.append(event)
        self.log.say(f"streaming server: session {event.session_id[:8]} of {event.user_id} "
                     f"INTERRUPTED after {event.detected_at - event.last_life:.2f} s of "
                     f"silence at {event.position:.2f} s ({event.estimator})",
                     at=event.detected_at)
        self._jobs.put((self.on_interruption, (event,)))

    def _delivered(self, what: str, delivery: Delivery) -> None:
        self.deliveries.append((what, delivery))
        if what == "sent":
            self.bookmark_req.show(delivery.request)
            self.log.say(f"BookMarkReq -> portal (attempt {delivery.attempts + 1})")
        elif delivery.response is not None:
            self.bookmark_resp.show(delivery.response)
            self.log.say(f"BookMarkResp <- portal: {delivery.response.get('ResultDesc')}")
        self._jobs.put((self.on_delivery, (what, delivery)))
