"""The stage: the streaming server, the portal and the outbox running in the kernel.

:class:`Stage` starts a :class:`~rtsp_resume.together.System` on background threads and
fans its events (interruptions, bookmark deliveries) out to the terminals and views; it
owns the log, the 10 Hz ticker that refreshes the views, a worker thread for what an event
handler must not block on, and :meth:`Stage.wait`, the deadline-bounded wait every
``wait_for_*`` helper uses.

Every stage is kept in a registry under its key: a new stage stops the previous one with
the same key, so re-running a cell never leaves old servers driving old widgets;
:func:`stop_all` runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import DEMO_USERS, System
from rtsp_resume.widgets.display import EventLog
from rtsp_resume.widgets.messages import REQ_MEANINGS, RESP_MEANINGS, FieldsView
from rtsp_resume.widgets.terminal import Terminal

REFRESH = 0.1  # seconds between picture updates: 10 frames a second is plenty to watch


_running: dict[str, Stage] = {}
_registry_lock = threading.Lock()


def _register(key: str, stage: Stage) -> None:
    with _registry_lock:
        previous = _running.get(key)
        _running[key] = stage
    if previous is not None and previous is not stage:
        previous.stop()


def _unregister(key: str, stage: Stage) -> None:
    with _registry_lock:
        if _running.get(key) is stage:
            del _running[key]


def running() -> dict[str, Stage]:
    """The stages running in this kernel, by key."""
    with _registry_lock:
        return dict(_running)


def stop_all() -> None:
    """Stop every stage of this kernel (also run at kernel shutdown)."""
    with _registry_lock:
        stages = list(_running.values())
    for stage in stages:
        stage.stop()


atexit.register(stop_all)


def sample_media() -> Path:
    """The folder with the project's sample clips, made if it does not exist yet.

    Looked for in ``$RTSP_RESUME_MEDIA``, next to the current folder (notebooks run in
    ``notebooks/``) and next to the package (an editable install); generated into the
    repository's ``sample_media`` when none has them (as ``make sample`` does).
    """
    repo = Path(__file__).resolve().parents[2]  # rtsp_resume/widgets/stage.py
    candidates = [Path.cwd() / "sample_media", Path.cwd().parent / "sample_media",
                  repo / "sample_media"]
    if os.environ.get("RTSP_RESUME_MEDIA"):
        candidates.insert(0, Path(os.environ["RTSP_RESUME_MEDIA"]))
    for folder in candidates:
        if (folder / "sample.mp4").exists():
            return folder
    from argparse import Namespace

    from rtsp_resume.sample import main as make_samples

    target = repo / "sample_media"
    make_samples(Namespace(out=target, missing_only=True))
    return target


class _Ticker:
    """Calls the registered functions every ``period`` seconds on one daemon thread."""

    def __init__(self, period: float, on_error: Callable[[str], None]) -> None:
        self.period = period
        self.on_error = on_error
        self._functions: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: set[str] = set()

    def add(self, function: Callable[[], None]) -> None:
        self._functions.append(function)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="widgets-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for function in list(self._functions):
                try:
                    function()
                except Exception as exc:  # a broken view must not stop the others
                    name = getattr(function, "__qualname__", repr(function))
                    if name not in self._failed:  # once, not ten times a second
                        self._failed.add(name)
                        self.on_error(f"refresh of {name} failed: {exc!r}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)


class _Worker:
    """Runs jobs in order on one thread: event handlers hand over what may block."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self.on_error = on_error
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="widgets-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:
                self.on_error(f"{getattr(job, '__qualname__', 'job')} failed: {exc!r}")

    def stop(self) -> None:
        self._jobs.put(None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)


class Stage:
    """The streaming server, the portal and the outbox running in this kernel.

    ``heartbeat_interval``/``heartbeat_timeout``: the server's heartbeat (claims 2, 8);
    short by default so that a notebook shows an interruption within two seconds.
    ``position``: which estimate goes into bookmarks (``"confirmed"`` or the embodiment's
    ``"frames_sent"``). ``key``: the registry slot; a new stage stops the old one there.
    ``quiet``: keep the servers' own logging to errors (the stage's log tells the story).
    """

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5, position: str = "confirmed",
                 playout_allowance: float = 0.5,
                 users: Iterable[tuple[str, str]] = DEMO_USERS, key: str = "stage",
                 quiet: bool = True) -> None:
        self.key = key
        if quiet:
            # The log below tells the story; the servers' own log lines would land in
            # whichever cell happens to run.
            logging.getLogger("rtsp_resume").setLevel(logging.ERROR)
        self.log = EventLog()
        self.data = Path(tempfile.mkdtemp(prefix="rtsp-resume-notebook-"))
        self._remove_data = weakref.finalize(self, shutil.rmtree, self.data, True)
        config = ServerConfig(heartbeat_interval=heartbeat_interval,
                              heartbeat_timeout=heartbeat_timeout, position=position,
                              playout_allowance=playout_allowance)
        self.system = System(media if media is not None else sample_media(), self.data,
                             users, config=config)
        self.terminals: list[Terminal] = []
        self.interruptions: list[Interruption] = []
        self.deliveries: list[tuple[str, Delivery]] = []
        self.bookmark_req = FieldsView("BookMarkReq: streaming server → portal "
                                       "(reverse bookmark-set interface)", REQ_MEANINGS)
        self.bookmark_resp = FieldsView("BookMarkResp: portal → streaming server",
                                        RESP_MEANINGS)
        self.cond = threading.Condition()
        self._ticker = _Ticker(REFRESH, self.log.say)
        self._worker = _Worker(self.log.say)
        self.started = False
        self.stopped = False
        _register(key, self)  # stops the stage the previous run of this cell started

    @property
    def config(self) -> ServerConfig:
        """The streaming server's settings; changes apply to sessions set up afterwards
        (``position`` applies to the next interruption)."""
        return self.system.streaming.config

    @property
    def secret(self) -> bytes:
        """The key the portal and the streaming server share (tokens, signatures)."""
        return self.system.secret

    def start(self) -> Stage:
        if self.started:
            return self
        self.system.start()
        self.started = True
        # First in line: the stage must know of an interruption before the outbox's
        # worker can report the BookMarkReq made from it.
        self.system.streaming.listeners.insert(0, self._on_interruption)
        assert self.system.outbox is not None
        self.system.outbox.listeners.append(self._on_delivery)
        self._ticker.start()
        self._worker.start()
        cfg = self.config
        self.log.say(f"portal {self.system.portal_url}/ and streaming server "
                     f"{self.system.rtsp_url}/ running in this kernel; heartbeat every "
                     f"{cfg.heartbeat_interval:g} s, interrupted after "
                     f"{cfg.heartbeat_timeout:g} s of silence")
        return self

    def stop(self) -> None:
        """Stop players, links, servers and threads; remove the data folder. Idempotent."""
        with self.cond:
            if self.stopped:
                return
            self.stopped = True
        _unregister(self.key, self)
        self._ticker.stop()
        for terminal in self.terminals:
            terminal.stop()
        self._worker.stop()
        if self.started:
            self.system.stop()
        self._remove_data()
        self.log.say("stopped: players, links, streaming server, portal and outbox")
        with self.cond:
            self.cond.notify_all()

    def terminal(self, user: str = "alice", transport: str = "tcp") -> Terminal:
        """A new viewer's phone (its own link), for a user of the portal."""
        return Terminal(self, user, transport)

    def every_tick(self, function: Callable[[], None]) -> None:
        """Call ``function`` ten times a second on the ticker thread (views refresh)."""
        self._ticker.add(function)

    def later(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread (for what must not block an event thread)."""
        self._worker.submit(job)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until ``predicate()`` is true (re-checked on every event); its value.
        Raises TimeoutError naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            # Checked without the lock held: a predicate may ask the server's loop, whose
            # event handlers take the lock to notify.
            value = predicate()
            if value:
                return value
            if self.stopped:
                raise RuntimeError(f"the stage stopped while waiting for {what}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout:g} s")
            with self.cond:
                # Bounded: a notification between the check and this wait is not lost
                # for longer than a quarter of a second.
                self.cond.wait(min(remaining, 0.25))

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # -- events (on the server's and the outbox's threads: quick, never blocking) --------

    def _on_interruption(self, event: Interruption) -> None:
        with self.cond:
            self.interruptions.append(event)
        self.log.say(
            f"streaming server: session {event.session_id[:8]} of {event.user_id} "
            f"INTERRUPTED: no answer for {event.detected_at - event.last_life:.2f} s; "
            f"play position {event.position:.2f} s by '{event.estimator}' "
            f"(frames_sent says {event.frames_sent:.2f} s)", at=event.detected_at)
        for terminal in self.terminals:
            terminal._interrupted(event)
        self.notify()

    def _on_delivery(self, what: str, delivery: Delivery) -> None:
        with self.cond:
            self.deliveries.append((what, delivery))
        if what == "sent":
            self.bookmark_req.show(delivery.request)
            self.log.say(f"BookMarkReq -> portal: ContentID {delivery.request['ContentID']}, "
                         f"ContentBM {delivery.request['ContentBM']} s, UserID "
                         f"{delivery.request['UserID']} (attempt {delivery.attempts + 1})")
        elif delivery.response is not None:
            self.bookmark_resp.show(delivery.response)
            response = delivery.response
            self.log.say(f"BookMarkResp <- portal: ResultCode {response.get('ResultCode')} "
                         f"({response.get('Result')}): {response.get('ResultDesc')}")
        for terminal in self.terminals:
            terminal._delivered(what, delivery)
        self.notify()
