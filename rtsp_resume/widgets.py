"""Live dashboards for the notebooks: the patent's story with widgets you can press.

The notebooks in ``notebooks/`` hold the explanation and the calls; everything that runs
lives here, so a notebook cell reads like the step it performs::

    tour = Tour()                      # streaming server + portal + outbox, in the kernel
    tour.login()                       # the viewer logs in to the portal
    tour.play()                        # plays through a link that can be cut
    tour.link.toggle.value = True      # what pressing "Cut the link" does
    tour.wait_for_bookmark(timeout=10) # heartbeat misses -> BookMarkReq -> BookMarkResp
    tour.resume_button.click()         # log in again, bookmark interface, resume
    tour.wait_for_resume(timeout=10)   # first frame after resume vs last before the cut

The pieces, from the bottom up:

- :class:`Stage`: a :class:`~rtsp_resume.together.System` (streaming server, portal and
  the bookmark outbox between them) on background threads, plus the event fan-out that
  the widgets listen to, a log, and wait helpers with deadlines.
- :class:`Terminal`: one viewer's phone: a :class:`~rtsp_resume.linkcut.LinkCutter` (its
  radio link), a :class:`~rtsp_resume.client.PortalClient` and the
  :class:`~rtsp_resume.player.Player`. It owns the views: :class:`PlayerView`,
  :class:`LinkToggle`, :class:`HeartbeatTimeline`, :class:`BookmarkTable` (with the
  bookmark buttons that resume) and :class:`ComparisonView`.
- Dashboards for the notebooks: :class:`Tour`, :class:`HeartbeatLab`, :class:`TokenLab`,
  :class:`SystemPanel`, :class:`PositionPlot`, :class:`ProbeTable`.

Threads. Widgets are updated from background threads (a 10 Hz ticker for pictures,
counters and plots; the server's, the outbox's and a worker thread for events), never
by blocking the kernel, so buttons stay responsive while a video plays. Thread output
goes to an ``Output`` widget (:class:`EventLog`), never to ``print``.

Clean-up. Every :class:`Stage` is kept in a module registry under a key ("stage" by
default): creating a new one stops the previous one with the same key, so re-running a
cell never leaves old servers driving old widgets. :func:`stop_all` runs at interpreter
exit (kernel shutdown) and every notebook calls ``stop()`` in its last cell.

Plots are drawn as SVG in ``ipywidgets.HTML``: no plotting library needed.
"""

from __future__ import annotations

import atexit
import html
import json
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import ipywidgets as w
import numpy as np

from rtsp_resume import tokens
from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.client import PortalClient, PortalError
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, PlayerError, ShownFrame, encode_jpeg
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import DEMO_USERS, System

REFRESH = 0.1  # seconds between picture updates: 10 frames a second is plenty to watch
PLOT_REFRESH = 0.25  # seconds between redraws of a live plot
PICTURE_WIDTH = 320  # pixels of the pictures sent to the browser (the clip is 640x360)

# ---------------------------------------------------------------------------------------
# Registry: what runs in this kernel


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
    repo = Path(__file__).resolve().parent.parent
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


# ---------------------------------------------------------------------------------------
# Small helpers


def clock(seconds: float) -> str:
    """``83.25`` -> ``"1:23.2"`` (how the portal's bookmark button names a position)."""
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def shorten(value: Any, keep: int = 10) -> str:
    """Long tokens as ``abcdefghij…wxyz`` (in a URL, only its token); the rest as text."""
    text = value if isinstance(value, str) else json.dumps(value)
    base, sep, token = text.partition("?token=")
    if sep:
        return base + sep + shorten(token, keep)
    return text if len(text) <= 2 * keep + 6 else f"{text[:keep]}…{text[-4:]}"


def describe_frame(frame: ShownFrame | None) -> str:
    if frame is None:
        return "none"
    number = f"frame {frame.index}" if frame.index is not None else "a frame"
    return f"{number} (npt {frame.pts:.2f} s)"


def picture(frame: ShownFrame | None, width: int = PICTURE_WIDTH) -> bytes:
    """A shown frame as a small JPEG for ``ipywidgets.Image`` (a grey one for None)."""
    if frame is None or frame.image is None:
        return _placeholder(width)
    image = frame.image
    height = max(2, round(image.height * width / image.width / 2) * 2)
    return encode_jpeg(image.reformat(width=width, height=height))


_placeholders: dict[int, bytes] = {}


def _placeholder(width: int) -> bytes:
    if width not in _placeholders:
        grey = np.full((width * 9 // 16 // 2 * 2, width, 3), 48, dtype=np.uint8)
        _placeholders[width] = encode_jpeg(av.VideoFrame.from_ndarray(grey, format="rgb24"))
    return _placeholders[width]


def decode_token(token: str) -> dict[str, Any]:
    """What a play token (EncryptToken) says, WITHOUT checking it: for display only.

    The payload is readable by anyone; only the MAC makes it trustworthy, and only the
    holders of the shared key can check that (:func:`rtsp_resume.tokens.verify_play_token`).
    """
    import base64

    body = token.partition(".")[0]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    names = {"v": "version", "u": "UserID", "c": "ContentID", "s": "login session",
             "b": "start (s)", "i": "issued", "e": "expires", "n": "nonce"}
    return {names.get(k, k): v for k, v in json.loads(raw).items()}


def _table(rows: Iterable[Sequence[Any]], header: Sequence[str], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<table class="rr-table {css}" style="border-collapse:collapse;font-size:12px;'
            f'line-height:1.35">'
            f"<tr>{head}</tr>{body}</table>")


def _compact(text: str) -> str:
    """HTML widgets inherit a 28 px line height in JupyterLab: too airy for a dashboard."""
    return f'<div style="line-height:1.4">{text}</div>'



_CSS = """<style>
.rr-table td, .rr-table th {border:1px solid #ddd; padding:2px 6px; text-align:left;
  vertical-align:top}
.rr-table th {background:#f3f3f3}
.rr-ok {color:#1a7f37; font-weight:bold}
.rr-bad {color:#c62828; font-weight:bold}
</style>"""


class EventLog:
    """A timestamped log written from any thread into an ``Output`` widget."""

    def __init__(self, t0: float | None = None, height: str = "220px") -> None:
        self.t0 = time.time() if t0 is None else t0
        self.output = w.Output(layout=w.Layout(max_height=height, overflow="auto",
                                               border="1px solid #ddd", width="100%"))
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def say(self, text: str, at: float | None = None) -> None:
        stamp = (time.time() if at is None else at) - self.t0
        line = f"[{stamp:6.2f} s] {text}"
        with self._lock:
            self.lines.append(line)
            self.output.append_stdout(line + "\n")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.output._repr_mimebundle_(**kwargs)


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


# ---------------------------------------------------------------------------------------
# The stage: both servers in the kernel


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


REQ_MEANINGS = {
    "EncryptToken": "the play token the portal signed when play began",
    "UserToken": "the viewer's login session (temporary login token)",
    "ContentID": "program number",
    "ContentBM": "program play time point (seconds)",
    "UserID": "who was watching (claim 5)",
}
INTERFACE_REQUEST_MEANINGS = {
    "EncryptToken": "the play token stored with the bookmark",
    "UserToken": "the terminal's current login (temporary login token)",
    "ContentID": "the program of the chosen bookmark",
    "ContentBM": "the bookmark's time point (seconds)",
}
INTERFACE_MEANINGS = {
    "ContentID": "the program",
    "EncryptToken": "a fresh play token; it names the start position",
    "url": "the bookmark interface: the RTSP URL to call",
    "ContentBM": "where playing starts (seconds)",
    "expires_in": "seconds the play token stays valid",
}
RESP_MEANINGS = {
    "UserID": "whose bookmark (claim 6)",
    "UserToken": "holds the UserID (embodiment, step 3)",
    "ResultCode": "0: bookmark added; anything else: failure",
    "Result": "the code's name",
    "ResultDesc": "what happened, in words",
    "Current": "whether it is now the user's bookmark for the program (newer ones win)",
}


class FieldsView:
    """A message shown as a table of its fields: name, value, what the field means."""

    def __init__(self, title: str, meanings: dict[str, str] | None = None) -> None:
        self.title = title
        self.meanings = meanings or {}
        self.fields: dict[str, Any] | None = None
        self.html = w.HTML(self._render())
        self.html.add_class("rr-fields")

    def show(self, fields: dict[str, Any]) -> None:
        self.fields = dict(fields)
        self.html.value = self._render()

    def _render(self) -> str:
        caption = _compact(f"<b>{html.escape(self.title)}</b>")
        if self.fields is None:
            return _CSS + caption + "<br><i>nothing yet</i>"
        rows = []
        for name, value in self.fields.items():
            full = value if isinstance(value, str) else json.dumps(value)
            rows.append((f"<code>{html.escape(name)}</code>",
                         f'<code title="{html.escape(full)}">{html.escape(shorten(value))}</code>',
                         html.escape(self.meanings.get(name, ""))))
        return _CSS + caption + _table(rows, ("field", "value", "meaning"))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.html._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------
# The terminal and its views


class PlayerView:
    """The latest decoded frame of a player as a picture, with its frame number and npt.

    :meth:`refresh` (called by the stage's ticker, 10 times a second) sends a new
    picture only when the player has shown a new frame.
    """

    def __init__(self, title: str, width: int = PICTURE_WIDTH) -> None:
        self.player: Player | None = None
        self.image = w.Image(value=_placeholder(width), format="jpeg",
                             layout=w.Layout(width=f"{width}px"))
        self.image.add_class("rr-player")
        self.label = w.Label("no player yet")
        self.label.add_class("rr-frame")
        self.width = width
        self.widget = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), self.image, self.label])
        self._shown: ShownFrame | None = None
        self._state = ""

    def show(self, player: Player) -> None:
        self.player = player

    def refresh(self) -> None:
        player = self.player
        if player is None:
            return
        frame = player.last_frame
        if frame is not None and frame is not self._shown and frame.image is not None:
            self._shown = frame
            self.image.value = picture(frame, self.width)
        state = player.state if player.running else f"{player.state} (closed)"
        text = f"{describe_frame(self._shown)} · {state}"
        if text != self._state:
            self._state = text
            self.label.value = text

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class LinkToggle:
    """A toggle that cuts and restores a :class:`LinkCutter`, with its counters.

    Pressing it (or ``toggle.value = True`` in code) makes the link silent both ways, as
    a lost radio signal would; pressing it again lets traffic through again.
    """

    def __init__(self, cutter: LinkCutter) -> None:
        self.cutter = cutter
        self.toggle = w.ToggleButton(value=False, description="Cut the link", icon="scissors",
                                     tooltip="drop everything between player and server",
                                     layout=w.Layout(width="200px"))
        self.toggle.add_class("rr-link-toggle")
        self.counters = w.HTML()
        self.widget = w.VBox([self.toggle, self.counters])
        self.toggle.observe(self._changed, "value")
        self._text = ""

    def _changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.cutter.cut()
            self.toggle.description = "Link cut: restore"
            self.toggle.button_style = "danger"
        else:
            self.cutter.restore()
            self.toggle.description = "Cut the link"
            self.toggle.button_style = ""

    def refresh(self) -> None:
        c = self.cutter.counters()
        text = (f"link <b>{'CUT' if c.is_cut else 'up'}</b> · cuts {c.cuts}<br>"
                f"server→phone: {c.down.tcp_bytes / 1e6:.2f} MB relayed, "
                f"{c.down.tcp_bytes_cut / 1e3:.0f} kB dropped<br>"
                f"phone→server: {c.up.tcp_bytes / 1e3:.1f} kB relayed, "
                f"{c.up.tcp_bytes_cut / 1e3:.1f} kB dropped")
        if text != self._text:
            self._text = text
            self.counters.value = _compact(f'<span style="font-size:12px">{text}</span>')

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


@dataclass
class SessionTrace:
    """The heartbeat log of one RTSP session of a terminal, for the timeline."""

    session_id: str
    started_at: float  # Unix time the PLAY was answered
    label: str
    log: list[tuple[float, str, int | None]] = field(default_factory=list)  # Unix time
    interruption: Interruption | None = None
    live: bool = True


@dataclass
class Episode:
    """One abnormal interruption of a terminal, and what followed it."""

    interruption: Interruption
    player: Player
    truth: ShownFrame | None = None  # the last frame the interrupted player showed
    closed: bool = False  # the interrupted player was closed and truth taken
    delivery: Delivery | None = None  # BookMarkReq and, once answered, BookMarkResp
    bookmark: dict[str, Any] | None = None  # as the portal lists it after a new login
    resumed_player: Player | None = None
    resumed: ShownFrame | None = None  # the first frame shown after resuming from it

    @property
    def check(self) -> ResumeCheck | None:
        if self.truth is None or self.resumed is None or self.bookmark is None:
            return None
        return ResumeCheck(self.truth, self.resumed, float(self.bookmark["ContentBM"]))


@dataclass(frozen=True)
class ResumeCheck:
    """The last frame shown before the interruption against the first after the resume."""

    before: ShownFrame
    after: ShownFrame
    bookmark: float  # ContentBM resumed from
    fps: float = 25.0

    @property
    def step(self) -> int:
        """Frames from the last one before to the first one after (1 is seamless)."""
        if self.before.index is not None and self.after.index is not None:
            return self.after.index - self.before.index
        return round((self.after.pts - self.before.pts) * self.fps)

    @property
    def skipped(self) -> int:
        """Frames the viewer never saw (0 when nothing was skipped)."""
        return max(0, self.step - 1)

    @property
    def repeated(self) -> int:
        """Frames shown again after the resume (the price of staying on the safe side)."""
        return max(0, 1 - self.step)

    @property
    def ok(self) -> bool:
        return self.skipped == 0

    def describe(self) -> str:
        if not self.ok:
            return f"the resume SKIPPED {self.skipped} frame(s) the viewer never saw"
        if self.repeated:
            return (f"nothing skipped; {self.repeated} frame(s) "
                    f"({self.repeated / self.fps:.2f} s) shown again")
        return "seamless: the first frame after the resume is the next one"


class Terminal:
    """One viewer's phone: its link to the server, its portal client, its player.

    Made by :meth:`Stage.terminal`. Views: :attr:`view` (the picture), :attr:`link`
    (the toggle), :attr:`timeline` (heartbeats), :attr:`bookmarks` (the portal's list
    with a resume button per bookmark), :attr:`comparison` (before/after frames),
    :attr:`status`. Every interruption of its sessions becomes an :class:`Episode`.
    """

    def __init__(self, stage: Stage, user: str = "alice", transport: str = "tcp") -> None:
        if not stage.started:
            raise RuntimeError("start() the stage first")
        self.stage = stage
        self.user = user
        self.password = dict(stage.system.users)[user]
        self.transport = transport
        self.log = stage.log
        self.cutter = LinkCutter(to=(stage.system.host, stage.system.streaming.port),
                                 on_event=self._on_link).start()
        self.view = PlayerView(f"{user}'s player")
        self.link = LinkToggle(self.cutter)
        self.timeline = HeartbeatTimeline(self)
        self.bookmarks = BookmarkTable(self._resume_clicked)
        self.comparison = ComparisonView()
        self.interface_req = FieldsView("request for the bookmark interface: terminal → "
                                        "portal", INTERFACE_REQUEST_MEANINGS)
        self.interface_resp = FieldsView("the bookmark interface: portal → terminal",
                                         INTERFACE_MEANINGS)
        self.status = w.HTML(_compact(f"<b>{html.escape(user)}</b>: not logged in"))
        self.status.add_class("rr-status")
        self.portal: PortalClient | None = None
        self.login_answer: dict[str, Any] | None = None
        self.player: Player | None = None
        self.players: list[Player] = []
        self.traces: list[SessionTrace] = []
        self.link_events: list[tuple[float, str]] = []
        self.episodes: list[Episode] = []
        self.error: BaseException | None = None
        stage.terminals.append(self)
        for view in (self.view, self.link, self.timeline):
            stage.every_tick(view.refresh)

    @property
    def panel(self) -> w.VBox:
        """Picture, link toggle and status in one box."""
        return w.VBox([self.view.widget, self.link.widget, self.status])

    def say(self, text: str) -> None:
        self.log.say(f"{self.user}: {text}")

    def set_status(self, text: str) -> None:
        self.status.value = _compact(f"<b>{html.escape(self.user)}</b>: {text}")

    # -- the portal ------------------------------------------------------------------

    def login(self) -> dict[str, Any]:
        """Log in to the portal (a new UserToken each time)."""
        portal = PortalClient(self.stage.system.portal_url)
        answer = portal.login(self.user, self.password)
        first = self.portal is None
        self.portal = portal
        self.login_answer = answer
        self.say(f"logs in to the portal{'' if first else ' again'}: UserID "
                 f"{answer['UserID']}, UserToken {shorten(answer['UserToken'], 6)}")
        self.set_status(f"logged in (UserID {html.escape(answer['UserID'])})")
        return answer

    def list_bookmarks(self) -> list[dict[str, Any]]:
        """The get-bookmarks request (claim 1): all of this user's bookmarks."""
        if self.portal is None:
            self.login()
        assert self.portal is not None
        found = self.portal.bookmarks()
        self.bookmarks.show(found)
        return found

    # -- playing ---------------------------------------------------------------------

    def play(self, content_id: str | None = None) -> Player:
        """Ask the portal to play a program (the first one by default) and open the URL
        through this terminal's link. Restores the link first if it is cut."""
        if self.portal is None:
            self.login()
        assert self.portal is not None
        if content_id is None:
            content_id = self.portal.contents()[0]["ContentID"]
        answer = self.portal.play(content_id)
        self.say(f"plays '{content_id}': the portal signs a play token (EncryptToken "
                 f"{shorten(answer['EncryptToken'], 6)}) into the RTSP URL")
        return self._start_player(answer["url"], None, f"PLAY {content_id}")

    def _through_link(self, url: str) -> str:
        """The same URL, through this terminal's link instead of straight to the server."""
        server = f":{self.stage.system.streaming.port}/"
        return url.replace(server, f":{self.cutter.port}/", 1)

    def _start_player(self, url: str, start: float | None, label: str,
                      episode: Episode | None = None) -> Player:
        if self.link.toggle.value:
            self.say("the signal is back (link restored)")
            self.link.toggle.value = False
        old = self.player
        if old is not None and old.running:
            old.close_abruptly()

        def on_frame(frame: ShownFrame) -> None:
            if episode is not None and episode.resumed is None:
                episode.resumed = frame
                check = episode.check
                self.comparison.show(episode.truth, frame, check)
                self.stage.notify()

        player = Player(self._through_link(url), transport=self.transport, on_frame=on_frame,
                        start=start)
        if episode is not None:
            episode.resumed_player = player
        player.start()
        assert player.session_id is not None
        with self.stage.cond:
            self.player = player
            self.players.append(player)
            self.traces.append(SessionTrace(player.session_id, time.time(), label))
        self.view.show(player)
        if start is None:
            where = f"from {player.range_start or 0:.2f} s"
        else:
            where = (f"asked for npt={start:.2f}-; the server starts at the keyframe "
                     f"{player.range_start or 0:.2f} s and the player shows nothing before "
                     f"{start:.2f} s")
        self.say(f"{label}: RTSP session {player.session_id[:8]} over {self.transport}, "
                 f"{where}")
        self.set_status(f"playing ({label})")
        self.stage.notify()
        return player

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        """Wait until the current player has shown ``seconds`` of the program since it
        started; returns the frame on screen then."""
        player = self.player
        if player is None:
            raise RuntimeError("play() first")
        target = (player.start_at or 0.0) + seconds
        reached = player.wait_for(
            lambda: bool(player.frames) and player.frames[-1].pts >= target - 1e-6, timeout)
        if not reached:
            raise TimeoutError(f"the player did not reach {target:.2f} s within {timeout:g} s "
                               f"(state {player.state}, {player.error or 'no error'})")
        frame = player.last_frame
        assert frame is not None
        return frame

    # -- the link --------------------------------------------------------------------

    def cut(self) -> None:
        """Press the link toggle to cut (the same as clicking it)."""
        self.link.toggle.value = True

    def restore(self) -> None:
        self.link.toggle.value = False

    def _on_link(self, kind: str) -> None:
        now = time.time()
        with self.stage.cond:
            self.link_events.append((now, kind))
        player = self.player
        shown = describe_frame(player.last_frame if player else None)
        if kind == "cut":
            self.say(f"THE LINK IS CUT (signal lost); on screen: {shown}")
            self.set_status("link cut: the server's heartbeats go unanswered…")
        else:
            self.say("link restored")
        self.stage.notify()

    # -- interruption and bookmark (called on the server's / outbox's threads) ------------

    def _interrupted(self, event: Interruption) -> None:
        player = next((p for p in self.players if p.session_id == event.session_id), None)
        if player is None:
            return
        episode = Episode(event, player)
        with self.stage.cond:
            self.episodes.append(episode)
            for trace in self.traces:
                if trace.session_id == event.session_id:
                    trace.interruption = event
        self.set_status(f"interrupted: bookmark at {event.position:.2f} s is on its way "
                        f"to the portal")

        def close_player() -> None:
            # The phone's player gives up too; what it showed last is the truth the
            # bookmark is compared with.
            player.close_abruptly()
            episode.truth = player.last_frame
            episode.closed = True
            self.comparison.show(episode.truth, None, None)
            self.say(f"the player gave up; the last frame it showed: "
                     f"{describe_frame(episode.truth)}")
            self.stage.notify()

        self.stage.later(close_player)

    def _delivered(self, what: str, delivery: Delivery) -> None:
        episode = next((e for e in self.episodes
                        if e.interruption.play_token == delivery.request.get("EncryptToken")),
                       None)
        if episode is None:
            return
        episode.delivery = delivery
        if what != "answered":
            return
        code = (delivery.response or {}).get("ResultCode")
        if code not in (0, 1):
            self.set_status(f"the portal refused the bookmark (ResultCode {code})")
            return

        def come_back() -> None:
            # The viewer opens the portal again: a new login, then the bookmark list.
            self.login()
            listed = self.list_bookmarks()
            content = episode.interruption.content_id
            episode.bookmark = next((b for b in listed if b["ContentID"] == content), None)
            if episode.bookmark is not None:
                self.set_status(f"bookmark on the portal: {content} at "
                                f"{clock(float(episode.bookmark['ContentBM']))}; press "
                                f"its Resume button")
            self.stage.notify()

        self.stage.later(come_back)

    def wait_for_interruption(self, timeout: float = 10.0) -> Interruption:
        """Wait until the current session was declared interrupted and the player gave
        up; returns the server's :class:`~rtsp_resume.server.Interruption`."""
        player = self.player

        def found() -> Episode | None:
            return next((e for e in self.episodes if e.player is player and e.closed), None)

        return self.stage.wait(found, timeout, "interruption").interruption

    def wait_for_bookmark(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the bookmark of the latest interruption is on the portal and this
        terminal has listed it after logging in again; returns the listed bookmark."""

        def listed() -> dict[str, Any] | None:
            episode = self.episodes[-1] if self.episodes else None
            if episode is None:
                return None
            response = episode.delivery.response if episode.delivery else None
            if response is not None and response.get("ResultCode") not in (0, 1):
                raise RuntimeError(f"the portal refused the bookmark: {response}")
            return episode.bookmark

        return self.stage.wait(listed, timeout, "bookmark")

    # -- resume ----------------------------------------------------------------------

    def ask_interface(self, bookmark: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the portal for the bookmark interface of a listed bookmark (claims 3, 4):
        the request and the answer are shown in :attr:`interface_req`/:attr:`interface_resp`."""
        if self.portal is None:
            self.login()
        assert self.portal is not None
        if bookmark is None:
            if not self.bookmarks.rows:
                raise RuntimeError("no bookmark listed")
            bookmark = self.bookmarks.rows[0]
        self.interface_req.show({
            "EncryptToken": bookmark["EncryptToken"], "UserToken": self.portal.user_token,
            "ContentID": bookmark["ContentID"], "ContentBM": bookmark["ContentBM"]})
        answer = self.portal.bookmark_interface(bookmark)
        self.interface_resp.show(answer)
        return answer

    def resume(self, bookmark: dict[str, Any] | None = None) -> Player:
        """What a bookmark's button does: ask the portal for the bookmark interface
        (claims 3, 4) and play from ContentBM through the link (restored if cut)."""
        if self.portal is None:
            self.login()
        assert self.portal is not None
        if bookmark is None:
            if not self.bookmarks.rows:
                raise RuntimeError("no bookmark to resume")
            bookmark = self.bookmarks.rows[0]
        episode = next((e for e in reversed(self.episodes) if e.bookmark is not None
                        and e.bookmark["ContentID"] == bookmark["ContentID"]), None)
        self.say(f"presses 'Resume at {clock(float(bookmark['ContentBM']))}' under "
                 f"'{bookmark['ContentID']}': asks the portal for the bookmark interface")
        answer = self.ask_interface(bookmark)
        self.say(f"bookmark interface returned: play from {answer['ContentBM']} s with a "
                 f"fresh play token")
        if episode is not None:
            self.comparison.show(episode.truth, None, None)
        return self._start_player(answer["url"], float(answer["ContentBM"]),
                                  f"resume at {clock(float(answer['ContentBM']))}", episode)

    def _resume_clicked(self, bookmark: dict[str, Any]) -> None:
        try:
            self.error = None
            self.resume(bookmark)
        except Exception as exc:  # shown, and raised again by wait_for_resume
            self.error = exc
            self.say(f"resume failed: {exc}")
            self.stage.notify()

    def wait_for_resume(self, timeout: float = 10.0) -> ResumeCheck:
        """Wait for the first frame after the latest resume; returns the comparison with
        the last frame shown before the interruption."""

        def resumed() -> ResumeCheck | None:
            if self.error is not None:
                raise self.error
            episode = next((e for e in reversed(self.episodes)
                            if e.resumed_player is not None), None)
            return episode.check if episode is not None else None

        check: ResumeCheck = self.stage.wait(resumed, timeout, "frame after the resume")
        self.say(f"last frame before the cut: {describe_frame(check.before)}; first after "
                 f"the resume: {describe_frame(check.after)}: {check.describe()}")
        self.set_status(f"resumed: {check.describe()}")
        return check

    @property
    def resume_button(self) -> w.Button:
        """The Resume button of the latest interrupted program on the bookmark list."""
        content = self.episodes[-1].interruption.content_id if self.episodes else None
        return self.bookmarks.button(content)

    def stop(self) -> None:
        for player in self.players:
            if player.running:
                player.close_abruptly()
        self.cutter.stop()


class BookmarkTable:
    """The portal's bookmark page as the terminal sees it: one row per bookmark, each
    with its button ("Resume at m:ss.d"), as in the embodiment's step 4."""

    def __init__(self, on_resume: Callable[[dict[str, Any]], None]) -> None:
        self.on_resume = on_resume
        self.rows: list[dict[str, Any]] = []
        self.buttons: dict[str, w.Button] = {}
        self.title = w.HTML("<b>My bookmarks</b> (the portal's list)")
        self.box = w.VBox([self.title, w.HTML("<i>no bookmark yet</i>")])
        self.box.add_class("rr-bookmarks")

    def show(self, bookmarks: list[dict[str, Any]]) -> None:
        rows: list[w.Widget] = [self.title]
        buttons: dict[str, w.Button] = {}
        for bookmark in bookmarks:
            at = float(bookmark["ContentBM"])
            button = w.Button(description=f"Resume at {clock(at)}", icon="play",
                              button_style="success", layout=w.Layout(width="170px"))
            button.add_class("rr-resume")
            button.on_click(lambda _, b=bookmark: self.on_resume(b))
            buttons[bookmark["ContentID"]] = button
            text = (f"<b>{html.escape(str(bookmark.get('title') or bookmark['ContentID']))}"
                    f"</b> ({html.escape(bookmark['ContentID'])}) · ContentBM "
                    f"<code>{at:.3f}</code> s · saved {html.escape(str(bookmark['saved_at']))}")
            rows.append(w.HBox([button, w.HTML(text)]))
        if not bookmarks:
            rows.append(w.HTML("<i>no bookmark</i>"))
        self.rows = list(bookmarks)
        self.buttons = buttons
        self.box.children = rows

    def button(self, content_id: str | None = None) -> w.Button:
        """The Resume button of a program's bookmark (the first one by default)."""
        if not self.buttons:
            raise LookupError("no bookmark listed yet: wait_for_bookmark() first")
        if content_id is None:
            return next(iter(self.buttons.values()))
        return self.buttons[content_id]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


class ComparisonView:
    """The last frame shown before the cut next to the first frame after the resume."""

    def __init__(self, width: int = 240) -> None:
        self.width = width
        self.before = w.Image(value=_placeholder(width), format="jpeg",
                              layout=w.Layout(width=f"{width}px"))
        self.before.add_class("rr-before")
        self.after = w.Image(value=_placeholder(width), format="jpeg",
                             layout=w.Layout(width=f"{width}px"))
        self.after.add_class("rr-after")
        self.before_label = w.HTML(_compact("last frame before the cut:<br>–"))
        self.after_label = w.HTML(_compact("first frame after the resume:<br>–"))
        self.verdict = w.HTML("")
        self.verdict.add_class("rr-verdict")
        self.widget = w.VBox([
            w.HBox([w.VBox([self.before_label, self.before]),
                    w.VBox([self.after_label, self.after])]),
            self.verdict,
        ])
        self.check: ResumeCheck | None = None

    def show(self, before: ShownFrame | None, after: ShownFrame | None,
             check: ResumeCheck | None) -> None:
        if before is not None:
            self.before.value = picture(before, self.width)
            self.before_label.value = _compact(
                f"last frame before the cut:<br><b>{describe_frame(before)}</b>")
        self.after.value = picture(after, self.width)
        self.after_label.value = _compact("first frame after the resume:<br><b>"
                                          f"{describe_frame(after) if after else '–'}</b>")
        self.check = check
        if check is None:
            self.verdict.value = ""
        else:
            css = "rr-ok" if check.ok else "rr-bad"
            self.verdict.value = _compact(
                f'{_CSS}<span class="{css}">{html.escape(check.describe())}</span> '
                f"(resumed from ContentBM {check.bookmark:.3f} s)")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------
# Plots (SVG)


class _Chart:
    """A little SVG canvas with data coordinates: just what the two plots need."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float],
                 y_range: tuple[float, float], margin: tuple[int, int, int, int]) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right, self.top, self.bottom = margin
        self.parts: list[str] = []

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (
            self.height - self.top - self.bottom)

    def add(self, svg: str) -> None:
        self.parts.append(svg)

    def text(self, x: float, y: float, text: str, size: int = 11, color: str = "#333",
             anchor: str = "start", weight: str = "normal") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{color}" '
                 f'text-anchor="{anchor}" font-weight="{weight}">{html.escape(text)}</text>')

    def vline(self, t: float, color: str, label: str = "", dash: str = "",
              width: float = 1.5, label_y: float | None = None) -> None:
        """A vertical line at ``t``, labelled at ``label_y`` (pixels; default: top)."""
        if not self.x0 <= t <= self.x1:
            return
        x = self.x(t)
        y = self.top - 4 if label_y is None else label_y
        style = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 10}" '
                 f'y2="{self.height - self.bottom}" stroke="{color}" '
                 f'stroke-width="{width}"{style}/>')
        if label:
            self.text(x + 3, y, label, 11, color, weight="bold")

    def marker(self, x: float, y: float, shape: str, color: str, size: float = 5,
               title: str = "") -> None:
        px, py = self.x(x), self.y(y)
        tip = f"<title>{html.escape(title)}</title>" if title else ""
        if shape == "dot":
            self.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{size}" fill="{color}">{tip}'
                     "</circle>")
        elif shape == "ring":
            self.add(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{size}" fill="none" '
                     f'stroke="{color}" stroke-width="1.5">{tip}</circle>')
        elif shape == "cross":
            s = size
            self.add(f'<path d="M{px - s:.1f},{py - s:.1f} L{px + s:.1f},{py + s:.1f} '
                     f'M{px - s:.1f},{py + s:.1f} L{px + s:.1f},{py - s:.1f}" '
                     f'stroke="{color}" stroke-width="2.2">{tip}</path>')
        elif shape in ("up", "down", "diamond"):
            s = size + 1
            points = {
                "up": [(px, py - s), (px - s, py + s * 0.8), (px + s, py + s * 0.8)],
                "down": [(px, py + s), (px - s, py - s * 0.8), (px + s, py - s * 0.8)],
                "diamond": [(px, py - s), (px + s, py), (px, py + s), (px - s, py)],
            }[shape]
            text = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            self.add(f'<polygon points="{text}" fill="{color}">{tip}</polygon>')

    def x_axis(self, label: str) -> None:
        base = self.height - self.bottom
        self.add(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" '
                 f'y2="{base}" stroke="#888"/>')
        for tick in _ticks(self.x0, self.x1):
            x = self.x(tick)
            self.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" '
                     f'stroke="#888"/>')
            self.text(x, base + 15, f"{tick:g}", 10, "#555", "middle")
        self.text(self.width - self.right, base + 28, label, 11, "#555", "end")

    def y_axis(self, label: str) -> None:
        self.add(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" '
                 f'y2="{self.height - self.bottom}" stroke="#888"/>')
        for tick in _ticks(self.y0, self.y1):
            y = self.y(tick)
            self.add(f'<line x1="{self.left - 4}" x2="{self.width - self.right}" '
                     f'y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            self.text(self.left - 7, y + 3, f"{tick:g}", 10, "#555", "end")
        self.text(12, self.top - 8, label, 11, "#555")

    def render(self) -> str:
        # Scales down with the output area (a narrow notebook), never up.
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                f'style="font-family:sans-serif;background:#fff;width:100%;'
                f'max-width:{self.width}px;height:auto">' + "".join(self.parts) + "</svg>")


def _ticks(low: float, high: float, wanted: int = 8) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / wanted
    step = min((s * 10 ** math.floor(math.log10(raw)) for s in (1, 2, 5, 10)),
               key=lambda s: abs(s - raw) if s >= raw else math.inf)
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 6) for i in range(count)]


@dataclass(frozen=True)
class HeartbeatOutcome:
    """What happened to one heartbeat of a session."""

    cseq: int | None
    sent_at: float  # Unix time
    answered_at: float | None  # its own answer, if one came

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


def heartbeat_outcomes(log: Iterable[tuple[float, str, int | None]]
                       ) -> list[HeartbeatOutcome]:
    """Each heartbeat of a monitor log (Unix time, kind, CSeq) with its own answer."""
    entries = list(log)
    answers = {cseq: t for t, kind, cseq in entries if kind == "answered"}
    return [HeartbeatOutcome(cseq, t, answers.get(cseq))
            for t, kind, cseq in entries if kind == "sent"]


class HeartbeatTimeline:
    """Live plot of a terminal's sessions as the streaming server's heartbeat sees them.

    Lanes: the link (up or cut), the heartbeats (answered, unanswered), other signs of
    life (keep-alive requests, RTCP), and the verdict: the silence that reached the
    timeout and the moment the interruption was declared (claims 2, 8). Data comes from
    the server's own :class:`~rtsp_resume.heartbeat.HeartbeatMonitor` log, read on the
    server's loop; after an interruption, from the log the interruption carries.
    """

    WIDTH, HEIGHT = 880, 230

    def __init__(self, terminal: Terminal, window: float = 24.0) -> None:
        self.terminal = terminal
        self.window = window
        self.since: float | None = None  # forget what happened before (HeartbeatLab)
        self.html = w.HTML(self._empty())
        self.html.add_class("rr-timeline")
        self._drawn = 0.0
        self._signature: Any = None

    def _empty(self) -> str:
        return "<i>heartbeat timeline: no session yet</i>"

    def refresh(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._drawn < PLOT_REFRESH:
            return
        traces = self._update_traces()
        if not traces:
            return
        signature = (now if any(t.live for t in traces) else None,
                     tuple(len(t.log) for t in traces), len(self.terminal.link_events))
        if signature == self._signature and not force:
            return
        self._signature = signature
        self._drawn = now
        self.html.value = self.svg(traces, now)

    def _update_traces(self) -> list[SessionTrace]:
        streaming = self.terminal.stage.system.streaming
        traces = [t for t in self.terminal.traces
                  if self.since is None or t.started_at >= self.since]
        for trace in traces:
            if not trace.live:
                continue
            if trace.interruption is not None:
                trace.log = list(trace.interruption.heartbeat_log)
                trace.live = False
                continue
            if streaming.loop is None or self.terminal.stage.stopped:
                trace.live = False
                continue

            def grab(sid: str = trace.session_id) -> list[Any] | None:
                session = streaming.sessions.get(sid)
                return None if session is None else list(session.monitor.log)

            entries = streaming.call(grab)
            if entries is None:  # ended (TEARDOWN, closed connection)
                trace.live = False
                continue
            shift = time.time() - time.monotonic()
            trace.log = [(t + shift, kind, cseq) for t, kind, cseq in entries]
        return traces

    def svg(self, traces: list[SessionTrace], now: float) -> str:
        """The plot of ``traces`` as SVG text (also used for static snapshots)."""
        origin = traces[0].started_at
        last = max([now if any(t.live for t in traces) else origin]
                   + [e[0] for t in traces for e in t.log]
                   + [t.interruption.detected_at for t in traces if t.interruption])
        end = max(last + 0.3, origin + 6.0)
        begin = max(origin, end - self.window)
        chart = _Chart(self.WIDTH, self.HEIGHT, (begin - origin, end - origin), (0, 4),
                       (150, 15, 50, 40))
        lanes = {"link": 3.5, "heartbeat": 2.5, "life": 1.5, "verdict": 0.5}
        names = {"link": "radio link", "heartbeat": "heartbeat OPTIONS",
                 "life": "other signs of life", "verdict": "server's verdict"}
        for lane, y in lanes.items():
            chart.text(8, chart.y(y) + 4, names[lane], 12, "#333")
            chart.add(f'<line x1="{chart.left}" x2="{chart.width - chart.right}" '
                      f'y1="{chart.y(y):.1f}" y2="{chart.y(y):.1f}" stroke="#f0f0f0"/>')
        # The link lane: green while up, red while cut (earlier events set the state).
        events = list(self.terminal.link_events)
        state_cut, since = False, begin
        for t, kind in events + [(end, "end")]:
            t = max(t, begin)
            color = "#e53935" if state_cut else "#43a047"
            if t > since:
                x0, x1 = chart.x(since - origin), chart.x(min(t, end) - origin)
                chart.add(f'<rect x="{x0:.1f}" y="{chart.y(3.5) - 5:.1f}" '
                          f'width="{max(0.5, x1 - x0):.1f}" height="10" fill="{color}" '
                          f'opacity="0.85"/>')
            if kind != "end":
                state_cut, since = kind == "cut", t
        config = self.terminal.stage.config
        for trace in traces:
            chart.vline(trace.started_at - origin, "#777", trace.label, "2,3", 1, label_y=14)
            interruption = trace.interruption
            if interruption is not None:
                x0 = chart.x(max(interruption.last_life, begin) - origin)
                x1 = chart.x(interruption.detected_at - origin)
                chart.add(f'<rect x="{x0:.1f}" y="{chart.top}" width="{max(0.5, x1 - x0):.1f}"'
                          f' height="{chart.height - chart.top - chart.bottom}" '
                          f'fill="#e53935" opacity="0.08"/>')
                silence = interruption.detected_at - interruption.last_life
                chart.text((x0 + x1) / 2, chart.y(0.5) - 12,
                           f"silent {silence:.2f} s ≥ timeout", 10, "#c62828", "middle")
                chart.vline(interruption.detected_at - origin, "#111")
                chart.marker(interruption.detected_at - origin, 0.5, "diamond", "#111", 6,
                             "interruption declared: session torn down, bookmark sent")
                chart.text(x1 + 9, chart.y(0.5) + 4, "interrupted", 11, "#111", weight="bold")
            for outcome in heartbeat_outcomes(trace.log):
                if outcome.sent_at < begin:
                    continue
                x = outcome.sent_at - origin
                if outcome.answered:
                    rtt = (outcome.answered_at or 0) - outcome.sent_at
                    chart.marker(x, 2.5, "dot", "#2e7d32", 4.5,
                                 f"CSeq {outcome.cseq}: answered after {rtt * 1000:.1f} ms")
                elif trace.live and now - outcome.sent_at < min(0.3, config.heartbeat_interval):
                    chart.marker(x, 2.5, "ring", "#999", 4.5, f"CSeq {outcome.cseq}: waiting")
                else:
                    chart.marker(x, 2.5, "cross", "#c62828", 5,
                                 f"CSeq {outcome.cseq}: never answered")
            for t, kind, _ in trace.log:
                if kind == "life" and t >= begin:
                    chart.marker(t - origin, 1.5, "dot", "#607d8b", 3, "keep-alive / RTCP")
        for t, kind in events:
            if begin <= t <= end:
                cut = kind == "cut"
                chart.vline(t - origin, "#e53935" if cut else "#43a047",
                            "cut" if cut else "restored", "5,3", label_y=28 if cut else 41)
        chart.x_axis("seconds since the first PLAY")
        x = chart.left
        for color, text in (("#2e7d32", "● answered"), ("#c62828", "✕ never answered"),
                            ("#444", f"heartbeat every {config.heartbeat_interval:g} s, "
                                     f"timeout {config.heartbeat_timeout:g} s")):
            chart.text(x, chart.height - 4, text, 11, color, weight="bold")
            x += 6.3 * len(text) + 24
        return chart.render()

    def snapshot(self) -> Any:
        """The plot as it is now, as a static picture for the notebook's output."""
        from IPython.display import HTML

        self.refresh(force=True)
        return HTML(self.html.value)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.html._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------
# Dashboards


class Tour:
    """The whole story on one dashboard: ``00_tour.ipynb``.

    One stage (both servers), one terminal (alice's phone), and a dashboard with the
    player, the link toggle, the heartbeat timeline, BookMarkReq/BookMarkResp, the
    bookmark list with its Resume buttons and the before/after comparison.
    """

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5, user: str = "alice",
                 transport: str = "tcp") -> None:
        self.stage = Stage(media, heartbeat_interval=heartbeat_interval,
                           heartbeat_timeout=heartbeat_timeout).start()
        self.terminal = self.stage.terminal(user, transport)
        t = self.terminal
        self.link = t.link
        self.bookmarks = t.bookmarks
        self.comparison = t.comparison
        self.timeline = t.timeline
        self.log = self.stage.log
        servers = w.HTML(
            f"portal <a href='{self.stage.system.portal_url}/' target='_blank'>"
            f"{self.stage.system.portal_url}/</a> (log in as {html.escape(user)} / "
            f"{html.escape(t.password)}) · streaming server {self.stage.system.rtsp_url}/")
        self.dashboard = w.VBox([
            servers,
            w.HBox([t.view.widget,
                    w.VBox([t.link.widget, t.status, self.comparison.widget],
                           layout=w.Layout(margin="0 0 0 16px"))]),
            t.timeline.html,
            w.HBox([self.stage.bookmark_req.html, self.stage.bookmark_resp.html],
                   layout=w.Layout(grid_gap="16px")),
            t.bookmarks.box,
            self.log.output,
        ], layout=w.Layout(width="100%"))
        self.dashboard.add_class("rr-dashboard")
        self._finisher: threading.Thread | None = None

    def login(self) -> dict[str, Any]:
        return self.terminal.login()

    def play(self, content_id: str | None = None) -> Player:
        return self.terminal.play(content_id)

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        return self.terminal.wait_for_play(seconds, timeout)

    def wait_for_interruption(self, timeout: float = 10.0) -> Interruption:
        return self.terminal.wait_for_interruption(timeout)

    def wait_for_bookmark(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.terminal.wait_for_bookmark(timeout)

    def wait_for_resume(self, timeout: float = 10.0) -> ResumeCheck:
        return self.terminal.wait_for_resume(timeout)

    @property
    def resume_button(self) -> w.Button:
        return self.terminal.resume_button

    def stop(self) -> None:
        self.stage.stop()

    def stop_when_done(self, linger: float = 20.0) -> str:
        """Stop now if the story has been told (a resume was seen); otherwise stop by
        itself ``linger`` seconds after the resume. (In JupyterLab's "Run All" this last
        cell runs before you have pressed anything.)"""
        done = any(e.resumed is not None for e in self.terminal.episodes)
        if done or self.stage.stopped:
            self.stop()
            return "stopped"

        def finish() -> None:
            try:
                self.stage.wait(lambda: any(e.resumed is not None
                                            for e in self.terminal.episodes),
                                3600, "resume")
            except (TimeoutError, RuntimeError):
                pass
            else:
                time.sleep(linger)  # let the resumed video play before stopping it
            self.stop()

        self._finisher = threading.Thread(target=finish, name="tour-finish", daemon=True)
        self._finisher.start()
        return f"will stop {linger:g} s after the resume"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.dashboard._repr_mimebundle_(**kwargs)


class HeartbeatLab:
    """Claims 2 and 8 live: heartbeat interval and timeout sliders, a player, the link
    toggle and the timeline of one session at a time (``01_heartbeat_claims_2_8``)."""

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5) -> None:
        self.stage = Stage(media, heartbeat_interval=heartbeat_interval,
                           heartbeat_timeout=heartbeat_timeout).start()
        self.terminal = self.stage.terminal("alice")
        self.timeline = self.terminal.timeline
        self.link = self.terminal.link
        self.interval = w.FloatSlider(value=heartbeat_interval, min=0.1, max=2.0, step=0.05,
                                      description="interval (s)", readout_format=".2f")
        self.timeout = w.FloatSlider(value=heartbeat_timeout, min=0.3, max=6.0, step=0.1,
                                     description="timeout (s)", readout_format=".1f")
        self.interval.observe(self._settings, "value")
        self.timeout.observe(self._settings, "value")
        self.connect_button = w.Button(description="Connect a player", icon="plug",
                                       button_style="primary")
        self.connect_button.on_click(lambda _: self._connect())
        self.summary = w.HTML()
        self.widget = w.VBox([
            w.HBox([w.VBox([self.interval, self.timeout,
                            w.HTML("<small>settings apply to the next connection</small>"),
                            self.connect_button, self.link.widget]),
                    self.terminal.view.widget]),
            self.timeline.html, self.summary, self.stage.log.output,
        ])
        self.error: BaseException | None = None

    def _settings(self, _: Any = None) -> None:
        self.stage.config.heartbeat_interval = float(self.interval.value)
        self.stage.config.heartbeat_timeout = float(self.timeout.value)

    def _connect(self) -> None:
        try:
            self.error = None
            self._settings()
            self.timeline.since = time.time()
            self.summary.value = ""
            self.terminal.play()
        except Exception as exc:  # shown; raised again by the wait helpers
            self.error = exc
            self.stage.log.say(f"connect failed: {exc}")

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        if self.error is not None:
            raise self.error
        return self.terminal.wait_for_play(seconds, timeout)

    def wait_for_interruption(self, timeout: float = 10.0) -> HeartbeatSummary:
        """Wait for the current session's interruption; returns (and shows) a summary."""
        event = self.terminal.wait_for_interruption(timeout)
        cuts = [t for t, kind in self.terminal.link_events if kind == "cut"
                and t <= event.detected_at]
        summary = HeartbeatSummary.of(event, cuts[-1] if cuts else None,
                                      self.interval.value, self.timeout.value)
        self.summary.value = summary.html()
        self.timeline.refresh(force=True)
        return summary

    def wait_for_recovery(self, timeout: float = 5.0) -> float:
        """After the link was restored: wait until a heartbeat of the current session is
        answered again; returns when (Unix time). Raises if the session ended instead."""
        restored = [t for t, kind in self.terminal.link_events if kind == "restored"]
        if not restored or self.terminal.player is None:
            raise RuntimeError("restore the link of a playing session first")
        since, session_id = restored[-1], self.terminal.player.session_id
        streaming = self.stage.system.streaming

        def answered_again() -> float | None:
            def grab() -> list[float] | None:
                session = streaming.sessions.get(session_id or "")
                if session is None:
                    return None
                return [t for t, kind, _ in session.monitor.log if kind == "answered"]

            times = streaming.call(grab)
            if times is None:
                raise RuntimeError("the session ended: the link was down too long")
            shift = time.time() - time.monotonic()
            return next((t + shift for t in times if t + shift > since), None)

        answered: float = self.stage.wait(answered_again, timeout, "answered heartbeat")
        self.timeline.refresh(force=True)
        return answered

    def stop(self) -> None:
        self.stage.stop()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


@dataclass(frozen=True)
class HeartbeatSummary:
    """One interruption as the heartbeat saw it."""

    interval: float
    timeout: float
    cut_at: float | None
    answered_before_cut: int
    unanswered: int  # heartbeats sent after the last answer, never answered
    silence: float  # from the last sign of life to the verdict
    detected_after_cut: float | None

    @classmethod
    def of(cls, event: Interruption, cut_at: float | None, interval: float,
           timeout: float) -> HeartbeatSummary:
        outcomes = heartbeat_outcomes(event.heartbeat_log)
        before = [o for o in outcomes if cut_at is None or o.sent_at < cut_at]
        last_answer = max((o.sent_at for o in outcomes if o.answered), default=-math.inf)
        return cls(
            interval=interval, timeout=timeout, cut_at=cut_at,
            answered_before_cut=sum(1 for o in before if o.answered),
            unanswered=sum(1 for o in outcomes if not o.answered and o.sent_at > last_answer),
            silence=event.detected_at - event.last_life,
            detected_after_cut=None if cut_at is None else event.detected_at - cut_at,
        )

    def html(self) -> str:
        rows = [
            ("heartbeat interval / timeout", f"{self.interval:g} s / {self.timeout:g} s"),
            ("heartbeats answered before the cut", str(self.answered_before_cut)),
            ("heartbeats sent after the last answer, never answered", str(self.unanswered)),
            ("silence when the interruption was declared", f"{self.silence:.2f} s"),
            ("declared after the cut", "–" if self.detected_after_cut is None
             else f"{self.detected_after_cut:.2f} s"),
        ]
        return _CSS + _table(rows, ("", "this run"))


class PositionPlot:
    """What the viewer saw against the two position estimates, over several cuts.

    The grey line is the truth: the npt of every frame the terminal's players showed,
    against wall time. At each interruption: the last frame shown (black diamond), the
    embodiment's ``frames_sent`` (red, above it: frames sent into the dead link and never
    seen) and ``confirmed`` (blue, at or below it: provably reached, minus an allowance).
    """

    WIDTH, HEIGHT = 880, 330

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.html = w.HTML("<i>no frames yet</i>")
        self.table = w.HTML()
        self.widget = w.VBox([self.html, self.table])
        self._drawn = 0.0
        self._signature: Any = None
        terminal.stage.every_tick(self.refresh)

    def refresh(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._drawn < PLOT_REFRESH * 2:
            return
        players = list(self.terminal.players)
        signature = (tuple(len(p.frames) for p in players), len(self.terminal.episodes),
                     tuple(e.closed for e in self.terminal.episodes))
        if not players or (signature == self._signature and not force):
            return
        self._signature = signature
        self._drawn = now
        self.html.value = self.svg()
        self.table.value = self.rows_html()

    def svg(self) -> str:
        players = list(self.terminal.players)
        lines = [[(f.wallclock, f.pts) for f in list(p.frames)] for p in players]
        points = [pt for line in lines for pt in line]
        episodes = [e for e in self.terminal.episodes if e.closed]
        if not points:
            return "<i>no frames yet</i>"
        origin = min(t for t, _ in points)
        end = max([t for t, _ in points] + [e.interruption.detected_at for e in episodes])
        top = max([v for _, v in points] + [e.interruption.frames_sent for e in episodes])
        chart = _Chart(self.WIDTH, self.HEIGHT, (0, end - origin + 0.5), (0, top + 0.8),
                       (55, 15, 26, 58))
        for line in lines:
            if len(line) > 1:
                path = " ".join(f"{chart.x(t - origin):.1f},{chart.y(v):.1f}" for t, v in line)
                chart.add(f'<polyline points="{path}" fill="none" stroke="#9e9e9e" '
                          f'stroke-width="2"/>')
        for number, episode in enumerate(episodes, 1):
            event = episode.interruption
            at = event.detected_at - origin
            if episode.truth is not None:
                seen = episode.truth
                x0 = seen.wallclock - origin
                chart.add(f'<line x1="{chart.x(x0):.1f}" x2="{chart.x(at):.1f}" '
                          f'y1="{chart.y(seen.pts):.1f}" y2="{chart.y(seen.pts):.1f}" '
                          f'stroke="#111" stroke-dasharray="3,3"/>')
                chart.marker(x0, seen.pts, "diamond", "#111", 5,
                             f"cut {number}: last frame shown {seen.pts:.2f} s")
            chart.marker(at, event.frames_sent, "up", "#e53935", 5,
                         f"cut {number}: frames_sent {event.frames_sent:.2f} s")
            chart.marker(at, event.confirmed, "down", "#1e88e5", 5,
                         f"cut {number}: confirmed {event.confirmed:.2f} s")
            chart.text(chart.x(at) + 8, chart.y(event.frames_sent) + 4, f"cut {number}", 10,
                       "#555")
        chart.x_axis("wall-clock seconds")
        chart.y_axis("play position (npt, s)")
        legend = [("#9e9e9e", "— frames shown (the truth)"),
                  ("#111", "◆ last shown before the cut"),
                  ("#e53935", "▲ frames_sent (literal rule)"),
                  ("#1e88e5", "▼ confirmed (default)")]
        x = chart.left
        for color, text in legend:
            chart.text(x, chart.height - 6, text, 11, color, weight="bold")
            x += 6.3 * len(text) + 22
        return chart.render()

    def rows_html(self) -> str:
        rows = []
        for number, episode in enumerate(self.terminal.episodes, 1):
            if not episode.closed or episode.truth is None:
                continue
            event, truth = episode.interruption, episode.truth.pts
            check = episode.check
            rows.append((
                str(number), f"{truth:.2f}",
                f"{event.frames_sent:.2f} ({event.frames_sent - truth:+.2f})",
                f"{event.confirmed:.2f} ({event.confirmed - truth:+.2f})",
                html.escape(event.estimator),
                "–" if check is None else html.escape(check.describe()),
            ))
        return _CSS + _table(rows, ("cut", "last shown (s)", "frames_sent (s)",
                                    "confirmed (s)", "bookmark used", "after the resume"))

    def snapshot(self) -> Any:
        from IPython.display import HTML

        self.refresh(force=True)
        return HTML(self.html.value + self.table.value)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class SystemPanel:
    """Claim 7: the three parties at a glance, live: the streaming server's sessions,
    the bookmark requests between the servers, and what each user's portal lists."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.sessions = w.HTML()
        self.outbox = w.HTML()
        self.portal = w.HTML()
        self.widget = w.VBox([self.sessions, self.outbox, self.portal])
        self._texts: tuple[str, str] = ("", "")
        self._drawn = 0.0
        stage.every_tick(self.refresh)

    def refresh(self) -> None:
        if time.time() - self._drawn < 0.5:
            return
        self._drawn = time.time()
        streaming = self.stage.system.streaming
        outbox = self.stage.system.outbox
        if streaming.loop is None or outbox is None or self.stage.stopped:
            return

        def grab() -> list[tuple[str, ...]]:
            return [(s.id[:8], s.media.content_id, s.grant.user_id if s.grant else "–",
                     s.state, s.transport, str(s.monitor.unanswered),
                     f"{s.position.frames_sent():.2f}", f"{s.position.confirmed():.2f}")
                    for s in streaming.sessions.values()]

        sessions = _CSS + "<b>Streaming server: sessions</b>" + _table(
            streaming.call(grab), ("session", "ContentID", "UserID", "state", "transport",
                                   "unanswered heartbeats", "frames_sent (s)",
                                   "confirmed (s)"))
        deliveries = [(html.escape(d.request["UserID"]), html.escape(d.request["ContentID"]),
                       f"{d.request['ContentBM']}", d.status, str(d.attempts),
                       html.escape(str((d.response or {}).get("ResultCode", "–"))))
                      for d in outbox.deliveries()]
        requests = "<b>Between the servers: BookMarkReq / BookMarkResp</b>" + _table(
            deliveries, ("UserID", "ContentID", "ContentBM", "status", "attempts",
                         "ResultCode"))
        if (sessions, requests) != self._texts:
            self._texts = (sessions, requests)
            self.sessions.value = sessions
            self.outbox.value = requests

    def show_portal(self, terminals: Iterable[Terminal]) -> None:
        """What each terminal's get-bookmarks request returns now."""
        rows = []
        for terminal in terminals:
            listed = terminal.list_bookmarks()
            rows.append((html.escape(terminal.user), str(len(listed)), ", ".join(
                f"{html.escape(b['ContentID'])} at {float(b['ContentBM']):.2f} s"
                for b in listed) or "–"))
        self.portal.value = _CSS + "<b>Portal: each user's bookmarks</b>" + _table(
            rows, ("user", "bookmarks", "which"))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------
# Probes: requests a forger would send, and what the servers answer


@dataclass(frozen=True)
class Probe:
    """One request sent on purpose, what was expected and what came back."""

    what: str
    expected: str
    got: str
    as_expected: bool
    answer: Any = None


def post_json(url: str, body: Any, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """POST ``body`` as JSON; returns (HTTP status, decoded JSON answer or text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json",
                                                 **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class ProbeTable:
    """A table of probes: each row says what was sent, what should happen, what did."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.probes: list[Probe] = []
        self.html = w.HTML(_CSS + f"<b>{html.escape(title)}</b><br><i>nothing sent yet</i>")
        self.html.add_class("rr-probes")

    @property
    def all_as_expected(self) -> bool:
        return bool(self.probes) and all(p.as_expected for p in self.probes)

    def add(self, probe: Probe) -> Probe:
        self.probes.append(probe)
        rows = [(html.escape(p.what), html.escape(p.expected), html.escape(p.got),
                 '<span class="rr-ok">as expected</span>' if p.as_expected
                 else '<span class="rr-bad">UNEXPECTED</span>') for p in self.probes]
        self.html.value = (_CSS + f"<b>{html.escape(self.title)}</b>"
                           + _table(rows, ("sent", "expected", "answer", "")))
        return probe

    def bookmark_set(self, what: str, portal_url: str, body: dict[str, Any],
                     key: bytes | None, expect: int, nonce: str | None = None,
                     signed_at: float | None = None) -> Probe:
        """POST a BookMarkReq to the reverse bookmark-set interface, signed with ``key``
        (None: unsigned) at ``signed_at`` (default now) with ``nonce`` (default a new
        one); ``expect`` is the ResultCode that should come back."""
        data = json.dumps(body, separators=(",", ":")).encode()
        when = time.time() if signed_at is None else signed_at
        headers = tokens.sign_request(key, data, when, nonce) if key else {}
        status, answer = post_json(portal_url.rstrip("/") + "/api/bookmark/set", data,
                                   headers)
        code = answer.get("ResultCode") if isinstance(answer, dict) else None
        result = answer.get("Result") if isinstance(answer, dict) else answer
        name = getattr(expect, "name", "").lower()
        wanted = f"ResultCode {int(expect)}" + (f" ({name})" if name else "")
        return self.add(Probe(what, wanted, f"HTTP {status}, ResultCode {code} ({result})",
                              code == expect, answer))

    def bookmark_interface(self, what: str, portal_url: str, body: dict[str, Any],
                           expect: str) -> Probe:
        """POST a request for the bookmark interface (claims 3, 4, 9, 10); ``expect`` is
        ``"url"`` (accepted) or the portal's error word (refused)."""
        status, answer = post_json(portal_url.rstrip("/") + "/api/bookmark/interface", body)
        if isinstance(answer, dict) and "url" in answer:
            got, word = f"HTTP {status}: a resume URL at {answer.get('ContentBM')} s", "url"
        else:
            word = answer.get("error") if isinstance(answer, dict) else str(answer)
            got = f"HTTP {status}: {word}"
        wanted = "a resume URL" if expect == "url" else f"refused: {expect}"
        return self.add(Probe(what, wanted, got, word == expect, answer))

    def play_url(self, what: str, url: str, expect: int | None) -> Probe:
        """Open an RTSP URL with the project's player; ``expect`` is the RTSP status of
        the refusal, or None when it should play."""
        player = Player(url, request_timeout=3.0)
        try:
            player.start()
        except PlayerError as exc:
            got, status = f"RTSP {exc.status}: {exc}", exc.status
        else:
            got, status = f"playing from {player.range_start or 0:.2f} s", None
        finally:
            player.close_abruptly()
        wanted = "plays" if expect is None else f"RTSP {expect}"
        return self.add(Probe(what, wanted, got, status == expect))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.html._repr_mimebundle_(**kwargs)


def tamper(token: str) -> str:
    """The token with one character of its payload changed (a forger's edit)."""
    middle = len(token.partition(".")[0]) // 2
    swapped = "A" if token[middle] != "A" else "B"
    return token[:middle] + swapped + token[middle + 1:]


class TokenLab:
    """Claims 4 and 10: requests with forged tokens, refused by the portal and by the
    streaming server; one genuine request accepted (``04_tokens_claims_4_10``).

    Needs a terminal whose bookmark is listed (``wait_for_bookmark`` first). The button
    sends every case once.
    """

    def __init__(self, terminal: Terminal, other_user: str = "bob") -> None:
        self.terminal = terminal
        self.other_user = other_user
        self.portal_probes = ProbeTable("The bookmark interface (portal)")
        self.stream_probes = ProbeTable("Play URLs (streaming server)")
        self.try_button = w.Button(description="Try every forgery", icon="user-secret",
                                   button_style="warning", layout=w.Layout(width="220px"))
        self.try_button.on_click(lambda _: self._try_all())
        self.widget = w.VBox([self.try_button, self.portal_probes.html,
                              self.stream_probes.html])
        self.error: BaseException | None = None

    @property
    def all_as_expected(self) -> bool:
        return (self.error is None and self.portal_probes.all_as_expected
                and self.stream_probes.all_as_expected)

    def _try_all(self) -> None:
        try:
            self.error = None
            self._portal_cases()
            self._stream_cases()
        except Exception as exc:  # shown; the notebook's assert then fails
            self.error = exc
            self.terminal.stage.log.say(f"token lab failed: {exc!r}")

    def _portal_cases(self) -> None:
        t = self.terminal
        if t.portal is None or t.portal.user_token is None or not t.bookmarks.rows:
            raise RuntimeError("the terminal needs a listed bookmark first")
        url = t.stage.system.portal_url
        bookmark = t.bookmarks.rows[0]
        genuine = {"EncryptToken": bookmark["EncryptToken"], "UserToken": t.portal.user_token,
                   "ContentID": bookmark["ContentID"], "ContentBM": bookmark["ContentBM"]}
        logged_out = PortalClient(url)
        logged_out.login(t.user, t.password)
        old_token = logged_out.user_token
        logged_out.logout()
        other = PortalClient(url)
        other.login(self.other_user, dict(t.stage.system.users)[self.other_user])
        forged = tokens.issue_play_token(
            os.urandom(32), user_id=bookmark["UserID"], content_id=bookmark["ContentID"],
            login_session="forged", now=time.time())
        probes = self.portal_probes
        probes.bookmark_interface("the genuine request", url, genuine, "url")
        probes.bookmark_interface("EncryptToken with one character changed", url,
                                  {**genuine, "EncryptToken": tamper(bookmark["EncryptToken"])},
                                  "token_mismatch")
        probes.bookmark_interface("EncryptToken signed with another key", url,
                                  {**genuine, "EncryptToken": forged}, "token_mismatch")
        probes.bookmark_interface("UserToken with one character changed", url,
                                  {**genuine, "UserToken": tamper(t.portal.user_token)},
                                  "invalid_user_token")
        probes.bookmark_interface("UserToken of a login that logged out", url,
                                  {**genuine, "UserToken": old_token}, "invalid_user_token")
        probes.bookmark_interface(f"UserToken of another user ({self.other_user})", url,
                                  {**genuine, "UserToken": other.user_token}, "no_bookmark")
        probes.bookmark_interface("ContentBM moved 10 s later", url,
                                  {**genuine, "ContentBM": float(bookmark["ContentBM"]) + 10},
                                  "position_mismatch")

    def _stream_cases(self) -> None:
        t = self.terminal
        assert t.portal is not None
        content = t.bookmarks.rows[0]["ContentID"]
        good = t.portal.play(content)
        token = good["EncryptToken"]
        base = good["url"].split("?", 1)[0]
        others = [c["ContentID"] for c in t.portal.contents() if c["ContentID"] != content]
        forged = tokens.issue_play_token(os.urandom(32), user_id=t.user, content_id=content,
                                         login_session="forged", now=time.time())
        probes = self.stream_probes
        probes.play_url("the genuine play URL", good["url"], None)
        probes.play_url("no token at all", base, 401)
        probes.play_url("token with one character changed", f"{base}?token={tamper(token)}",
                        401)
        probes.play_url("token signed with another key", f"{base}?token={forged}", 401)
        if others:
            other_base = base.rsplit("/", 1)[0] + "/" + others[0]
            probes.play_url(f"this token on another program ({others[0]})",
                            f"{other_base}?token={token}", 401)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


__all__ = [
    "BookmarkTable",
    "ComparisonView",
    "Episode",
    "EventLog",
    "FieldsView",
    "HeartbeatLab",
    "HeartbeatSummary",
    "HeartbeatTimeline",
    "LinkToggle",
    "PlayerView",
    "PortalError",
    "PositionPlot",
    "Probe",
    "ProbeTable",
    "ResumeCheck",
    "Stage",
    "SystemPanel",
    "Terminal",
    "TokenLab",
    "Tour",
    "clock",
    "decode_token",
    "heartbeat_outcomes",
    "post_json",
    "running",
    "sample_media",
    "stop_all",
    "tamper",
]
