"""What a terminal shows: its player's picture, its link toggle, the heartbeat timeline
(claims 2, 8: drawn from plain data, the server's heartbeat logs, link events and verdicts),
the portal's bookmark list with a Resume button each, and the frames around a resume."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ipywidgets as w
from IPython.display import HTML

from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.position import format_clock
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import CSS, Chart, compact, image, picture

LogEntry = tuple[float, str, int | None]  # (Unix time, kind, CSeq), as the monitor logs
GREEN, RED, CUT_RED, UP_GREEN = "#2e7d32", "#c62828", "#e53935", "#43a047"


@dataclass
class SessionTrace:
    """A terminal's RTSP session: its heartbeat log, its interruption once judged, and
    ``live`` until it ended or was judged."""
    session_id: str
    started_at: float  # Unix time the PLAY was answered
    label: str
    log: list[LogEntry] = field(default_factory=list)
    interruption: Interruption | None = None
    live: bool = True


class HeartbeatOutcome(NamedTuple):
    """One heartbeat (a server OPTIONS) and when its own answer came, if it did."""
    cseq: int | None
    sent_at: float
    answered_at: float | None

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


def heartbeat_outcomes(log: Iterable[LogEntry]) -> list[HeartbeatOutcome]:
    """Each heartbeat sent in a monitor log, paired with the answer of the same CSeq."""
    entries = list(log)
    answers = {cseq: t for t, kind, cseq in entries if kind == "answered"}
    return [HeartbeatOutcome(n, t, answers.get(n)) for t, kind, n in entries if kind == "sent"]


def timeline_svg(traces: Sequence[SessionTrace], link_events: Sequence[tuple[float, str]],
                 interval: float, timeout: float, now: float, window: float = 24.0) -> str:
    """The whole of the sessions (oldest first) and of the link, so a cut and its verdict
    stay in view; answered heartbeats older than ``window`` seconds merge into a bar."""
    origin = traces[0].started_at
    end = max([now if any(t.live for t in traces) else origin]
              + [t for trace in traces for t, _, _ in trace.log]
              + [trace.interruption.detected_at for trace in traces if trace.interruption])
    end, recent = max(end + 0.3, origin + 6), end - window
    chart = Chart((880, 210), (0, end - origin), (0, 4), (150, 15, 50, 30))
    for y, lane in ((3.5, "radio link"), (2.5, "heartbeat OPTIONS"),
                    (1.5, "other signs of life"), (0.5, "server's verdict")):
        chart.text(8, chart.y(y) + 4, lane, size=12)
        chart.line([(0, y), (end - origin, y)], "#f0f0f0", width=1)
    cut, since = False, origin  # the link lane: green while up, red while cut
    for t, kind in [*link_events, (end, "end")]:
        if t > since:
            chart.band((since - origin, t - origin), (3.4, 3.6), CUT_RED if cut else UP_GREEN, 0.85)
        cut, since = kind == "cut", max(t, since)
    for trace in traces:
        chart.vline(trace.started_at - origin, "#777", trace.label, "2,3", 14)
        beats = heartbeat_outcomes(trace.log)
        if old := [b.sent_at - origin for b in beats if b.answered and b.sent_at < recent]:
            chart.band((old[0], old[-1]), (2.42, 2.58), GREEN, 0.6)
        for beat in beats:
            at, name = beat.sent_at - origin, f"CSeq {beat.cseq}"
            if beat.answered_at is not None and beat.sent_at >= recent:
                rtt = (beat.answered_at - beat.sent_at) * 1000
                chart.glyph(at, 2.5, "●", GREEN, f"{name}: answered after {rtt:.1f} ms")
            elif trace.live and now - beat.sent_at < min(0.3, interval):
                chart.glyph(at, 2.5, "○", "#999", f"{name}: waiting")
            elif beat.answered_at is None:
                chart.glyph(at, 2.5, "✕", RED, f"{name}: never answered")
        for t, kind, _ in trace.log:
            if kind == "life" and t >= recent:
                chart.glyph(t - origin, 1.5, "●", "#607d8b", "keep-alive / RTCP", 8)
        if (event := trace.interruption) is not None:
            last, verdict = event.last_life - origin, event.detected_at - origin
            chart.band((last, verdict), (0, 4), CUT_RED, 0.08)
            # Labels left of the line near the right edge, so that none is cut off.
            right = chart.x(verdict) > chart.width - chart.right - 160
            px, anchor = chart.x(verdict) + (-9 if right else 9), "end" if right else "start"
            chart.text(px, chart.y(0.5) - 12, f"silent {verdict - last:.2f} s ≥ timeout", RED, 10,
                       anchor)
            chart.vline(verdict, "#111")
            chart.glyph(verdict, 0.5, "◆", "#111", "interruption declared: bookmark sent")
            chart.text(px, chart.y(0.5) + 4, "interrupted", "#111", anchor=anchor, bold=True)
    for t, kind in link_events:
        cut = kind == "cut"
        chart.vline(t - origin, CUT_RED if cut else UP_GREEN, kind, "5,3", 28 if cut else 41)
    chart.axes("seconds since the first PLAY")
    return chart.render([(GREEN, "● answered"), (RED, "✕ never answered"),
                         ("#444", f"heartbeat every {interval:g} s, timeout {timeout:g} s")])


class HeartbeatTimeline(w.HTML):
    """Lanes: the link (up or cut), the heartbeats (answered or not), other signs of life
    (keep-alives, RTCP) and the verdict: the silence that reached the timeout."""

    def __init__(self) -> None:
        super().__init__("<i>heartbeat timeline: no session yet</i>")
        self.add_class("rr-timeline")
        self.since: float | None = None  # show only the sessions started after this

    def draw(self, traces: Sequence[SessionTrace], link_events: Sequence[tuple[float, str]],
             interval: float, timeout: float) -> None:
        if shown := [t for t in traces if self.since is None or t.started_at >= self.since]:
            self.value = timeline_svg(shown, link_events, interval, timeout, time.time())

    def snapshot(self) -> object:  # the timeline as drawn now, a static picture for the output
        return HTML(self.value)


class PlayerView(w.VBox):
    """The latest frame a player showed, with its frame number and npt."""

    def __init__(self, title: str) -> None:
        self.player: Player | None = None
        self.image, self.label = image("rr-player"), w.Label("no player yet")
        self.label.add_class("rr-frame")
        self._shown: ShownFrame | None = None
        super().__init__([w.HTML(f"<b>{html.escape(title)}</b>"), self.image, self.label])

    def refresh(self) -> None:
        if (player := self.player) is None:
            return
        frame = player.last_frame
        if frame is not None and frame is not self._shown and frame.image is not None:
            self._shown = frame  # a new picture only for a new frame
            self.image.value = picture(frame)
        state = player.state if player.running else f"{player.state} (closed)"
        if player.running and frame is not None and (idle := time.time() - frame.wallclock) > 2:
            state += f", no new frame for {idle:.0f} s"  # the program's end, or a cut link
        self.label.value = f"{self._shown or 'no frame yet'} · {state}"


class LinkToggle(w.VBox):
    """Cuts and restores a :class:`~rtsp_resume.linkcut.LinkCutter`: silence both ways."""

    def __init__(self, cutter: LinkCutter) -> None:
        self.cutter = cutter
        self.toggle = w.ToggleButton(description="Cut the link", icon="scissors",
                                     tooltip="drop everything between player and server",
                                     layout=w.Layout(width="200px"))
        self.toggle.add_class("rr-link-toggle")
        self.toggle.observe(self._pressed, "value")
        super().__init__([self.toggle])

    def _pressed(self, change: dict[str, Any]) -> None:
        self.cutter.toggle(change["new"])
        self.toggle.description = "Link cut: restore" if change["new"] else "Cut the link"
        self.toggle.button_style = "danger" if change["new"] else ""


class BookmarkTable(w.VBox):
    """The portal's bookmark list, each with a "Resume at m:ss.d" button (embodiment step 4)."""

    def __init__(self, on_resume: Callable[[dict[str, Any]], None]) -> None:
        self.on_resume = on_resume
        self.rows: list[dict[str, Any]] = []
        self.buttons: dict[str, w.Button] = {}  # by ContentID
        self.heading = w.HTML("<b>My bookmarks</b> (the portal's list)")
        self.outcome = w.HTML()  # what the latest Resume did, right under the buttons
        self.outcome.add_class("rr-resume-outcome")
        super().__init__([self.heading, w.HTML("<i>no bookmark yet</i>"), self.outcome])
        self.add_class("rr-bookmarks")

    def show(self, bookmarks: list[dict[str, Any]]) -> None:
        lines: list[w.Widget] = [self.heading]
        self.rows, self.buttons = list(bookmarks), {}
        for bookmark in bookmarks:
            at = float(bookmark["ContentBM"])
            button = w.Button(description=f"Resume at {format_clock(at)}", icon="play",
                              button_style="success", layout=w.Layout(width="170px"))
            button.add_class("rr-resume")
            button.on_click(lambda _, chosen=bookmark: self.on_resume(chosen))
            self.buttons[bookmark["ContentID"]] = button
            name = html.escape(str(bookmark.get("title") or bookmark["ContentID"]))
            lines.append(w.HBox([button, w.HTML(
                f"<b>{name}</b> ({html.escape(bookmark['ContentID'])}) · ContentBM <code>"
                f"{at:.3f}</code> s · saved {html.escape(str(bookmark['saved_at']))}")]))
        self.children = [*lines, *([] if bookmarks else [w.HTML("<i>no bookmark</i>")]),
                         self.outcome]

    def button(self, content_id: str | None = None) -> w.Button:
        """The Resume button of a program's bookmark (the first one by default)."""
        if not self.buttons:
            raise LookupError("no bookmark listed yet: wait_for_bookmark() first")
        return self.buttons[content_id] if content_id else next(iter(self.buttons.values()))


@dataclass(frozen=True)
class ResumeCheck:
    """The last frame shown before the interruption against the first after the resume."""
    before: ShownFrame
    after: ShownFrame
    bookmark: float  # ContentBM resumed from
    fps: float = 25.0

    @property
    def step(self) -> int:  # frames from the last one before to the first one after: 1 is seamless
        if self.before.index is not None and self.after.index is not None:
            return self.after.index - self.before.index
        return round((self.after.pts - self.before.pts) * self.fps)

    @property
    def skipped(self) -> int:  # frames the viewer never saw
        return max(0, self.step - 1)

    @property
    def repeated(self) -> int:  # frames shown again: the price of the safe side
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


class ComparisonView(w.VBox):
    """The last frame shown before the cut next to the first frame after the resume."""

    def __init__(self, width: int = 240) -> None:
        self.width = width
        self.before, self.after = image("rr-before", width), image("rr-after", width)
        self.before_label = w.HTML(compact("last frame before the cut:<br>–"))
        self.after_label, self.verdict = w.HTML(), w.HTML()
        self.verdict.add_class("rr-verdict")
        super().__init__([w.HBox([w.VBox([self.before_label, self.before]),
                                  w.VBox([self.after_label, self.after])]), self.verdict])
        self.show(None, None)

    def show(self, before: ShownFrame | None, after: ShownFrame | None,
             check: ResumeCheck | None = None) -> None:
        if before is not None:  # a resume shows the frame before again; none keeps it
            self.before.value = picture(before, self.width)
            self.before_label.value = compact(f"last frame before the cut:<br><b>{before}</b>")
        self.after.value = picture(after, self.width)
        self.after_label.value = compact(f"first frame after the resume:<br><b>{after or '–'}</b>")
        self.verdict.value = "" if check is None else compact(
            f'{CSS}<span class="{"rr-ok" if check.ok else "rr-bad"}">'
            f"{html.escape(check.describe())}</span> (resumed from ContentBM "
            f"{check.bookmark:.3f} s)")
