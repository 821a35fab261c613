"""The heartbeat timeline (claims 2, 8): a terminal's sessions as the server's heartbeat
saw them, drawn from plain data: heartbeat logs, link events and verdicts."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import ipywidgets as w
from IPython.display import HTML

from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import Chart

LogEntry = tuple[float, str, int | None]  # (Unix time, kind, CSeq), as the monitor logs
GREEN, RED, CUT_RED, UP_GREEN = "#2e7d32", "#c62828", "#e53935", "#43a047"


@dataclass
class SessionTrace:
    """One RTSP session of a terminal: its heartbeat log so far and, once judged, the
    interruption; ``live`` until it ended or was judged."""

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
    """The last ``window`` seconds of the sessions (oldest first) and of the link."""
    origin = traces[0].started_at
    end = max([now if any(t.live for t in traces) else origin]
              + [t for trace in traces for t, _, _ in trace.log]
              + [trace.interruption.detected_at for trace in traces if trace.interruption])
    end = max(end + 0.3, origin + 6)
    begin = max(origin, end - window)
    chart = Chart((880, 210), (begin - origin, end - origin), (0, 4), (150, 15, 50, 30))
    for y, lane in ((3.5, "radio link"), (2.5, "heartbeat OPTIONS"),
                    (1.5, "other signs of life"), (0.5, "server's verdict")):
        chart.text(8, chart.y(y) + 4, lane, size=12)
        chart.line([(begin - origin, y), (end - origin, y)], "#f0f0f0", width=1)
    cut, since = False, begin  # the link lane: green while up, red while cut
    for t, kind in [*link_events, (end, "end")]:
        if t > since:
            chart.band((since - origin, t - origin), (3.4, 3.6), CUT_RED if cut else UP_GREEN,
                       0.85)
        cut, since = kind == "cut", max(t, since)
    for trace in traces:
        chart.vline(trace.started_at - origin, "#777", trace.label, "2,3", 14)
        for beat in heartbeat_outcomes(trace.log):
            at, name = beat.sent_at - origin, f"CSeq {beat.cseq}"
            if beat.answered_at is not None and beat.sent_at >= begin:
                rtt = (beat.answered_at - beat.sent_at) * 1000
                chart.glyph(at, 2.5, "●", GREEN, f"{name}: answered after {rtt:.1f} ms")
            elif trace.live and now - beat.sent_at < min(0.3, interval):
                chart.glyph(at, 2.5, "○", "#999", f"{name}: waiting")
            elif beat.sent_at >= begin:
                chart.glyph(at, 2.5, "✕", RED, f"{name}: never answered")
        for t, kind, _ in trace.log:
            if kind == "life" and t >= begin:
                chart.glyph(t - origin, 1.5, "●", "#607d8b", "keep-alive / RTCP", 8)
        if (event := trace.interruption) is not None:
            last, verdict = event.last_life - origin, event.detected_at - origin
            chart.band((last, verdict), (0, 4), CUT_RED, 0.08)
            chart.text((chart.x(max(last, begin - origin)) + chart.x(verdict)) / 2,
                       chart.y(0.5) - 12, f"silent {verdict - last:.2f} s ≥ timeout", RED, 10,
                       "middle")
            chart.vline(verdict, "#111")
            chart.glyph(verdict, 0.5, "◆", "#111", "interruption declared: bookmark sent")
            chart.text(chart.x(verdict) + 9, chart.y(0.5) + 4, "interrupted", "#111", bold=True)
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

    def snapshot(self) -> object:
        """The timeline as drawn now, as a static picture for the notebook's output."""
        return HTML(self.value)
