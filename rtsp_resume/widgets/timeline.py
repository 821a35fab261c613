"""The heartbeat timeline: a terminal's sessions as the streaming server's heartbeat sees
them (claims 2, 8), drawn live.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from rtsp_resume.server import Interruption, StreamingServer
from rtsp_resume.widgets.chart import _Chart
from rtsp_resume.widgets.display import PLOT_REFRESH, Shown

if TYPE_CHECKING:
    from rtsp_resume.widgets.terminal import Terminal


@dataclass
class SessionTrace:
    """The heartbeat log of one RTSP session of a terminal, for the timeline."""

    session_id: str
    started_at: float  # Unix time the PLAY was answered
    label: str
    log: list[tuple[float, str, int | None]] = field(default_factory=list)  # Unix time
    interruption: Interruption | None = None
    live: bool = True


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


def session_log(streaming: StreamingServer, session_id: str
                ) -> list[tuple[float, str, int | None]] | None:
    """The heartbeat monitor's log of a live session (Unix time, kind, CSeq), read on the
    server's loop; None once the session has ended (TEARDOWN, closed connection)."""

    def grab() -> list[Any] | None:
        session = streaming.sessions.get(session_id)
        return None if session is None else list(session.monitor.log)

    entries = streaming.call(grab)
    if entries is None:
        return None
    shift = time.time() - time.monotonic()
    return [(t + shift, kind, cseq) for t, kind, cseq in entries]


class HeartbeatTimeline(Shown):
    """Live plot of a terminal's sessions as the streaming server's heartbeat sees them.

    Lanes: the link (up or cut), the heartbeats (answered, unanswered), other signs of
    life (keep-alive requests, RTCP), and the verdict: the silence that reached the
    timeout and the moment the interruption was declared (claims 2, 8). Data comes from
    the server's own :class:`~rtsp_resume.heartbeat.HeartbeatMonitor` log, read on the
    server's loop; after an interruption, from the log the interruption carries.
    """

    _shown = "html"

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
            log = session_log(streaming, trace.session_id)
            if log is None:  # ended (TEARDOWN, closed connection)
                trace.live = False
                continue
            trace.log = log
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
        chart.legend((("#2e7d32", "● answered"), ("#c62828", "✕ never answered"),
                      ("#444", f"heartbeat every {config.heartbeat_interval:g} s, "
                               f"timeout {config.heartbeat_timeout:g} s")),
                     chart.height - 4, 24)
        return chart.render()

    def snapshot(self) -> Any:
        """The plot as it is now, as a static picture for the notebook's output."""
        from IPython.display import HTML

        self.refresh(force=True)
        return HTML(self.html.value)
