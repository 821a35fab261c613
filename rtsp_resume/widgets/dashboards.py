"""The dashboards of the notebooks: the tour (``00_tour``), the heartbeat lab (claims 2
and 8, ``01_heartbeat``), the system panel (claim 7, ``05_system``) and the position plot
(``06_position_estimators``)."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import ipywidgets as w
from IPython.display import HTML

from rtsp_resume.player import ShownFrame
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import Chart, table
from rtsp_resume.widgets.stage import Stage, sample_media
from rtsp_resume.widgets.terminal import Terminal
from rtsp_resume.widgets.views import heartbeat_outcomes


class Tour(Terminal):
    """The whole story on one dashboard, on a stage of its own: player, link toggle, heartbeat
    timeline, BookMarkReq/BookMarkResp, bookmarks, the frames before and after, the log."""

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5, user: str = "alice",
                 transport: str = "tcp") -> None:
        stage = Stage(media or sample_media(lesson=True), heartbeat_interval=heartbeat_interval,
                      heartbeat_timeout=heartbeat_timeout).start()
        super().__init__(stage, user, transport)
        portal = stage.system.portal_url
        servers = w.HTML(f"portal <a href='{portal}/' target='_blank'>{portal}/</a> (log in "
                         f"as {html.escape(user)} / {html.escape(self.password)}) · "
                         f"streaming server {stage.system.rtsp_url}/")
        player = w.HBox([self.view, w.VBox([self.link, self.comparison],
                                           layout=w.Layout(margin="0 0 0 16px"))])
        messages = w.HBox([stage.bookmark_req, stage.bookmark_resp],
                          layout=w.Layout(grid_gap="16px"))
        self.dashboard = w.VBox([servers, player, self.timeline, messages, self.bookmarks,
                                 stage.log], layout=w.Layout(width="100%"))
        self.dashboard.add_class("rr-dashboard")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.dashboard._repr_mimebundle_(**kwargs)

    def stop(self) -> None:
        self.stage.stop()

    def stop_when_done(self, linger: float = 20.0) -> str:
        """Stop now if a resume was seen, else ``linger`` seconds after it ("Run All" in
        JupyterLab runs this last cell before anything was pressed)."""

        def stop_after_linger() -> None:
            first = next((e.resumed for e in self.episodes if e.resumed), None)
            if first is not None and time.time() - first.wallclock >= linger:
                self.stop()

        if any(e.resumed for e in self.episodes) or self.stage.stopped:
            self.stop()
            return "stopped"
        self.stage.on_tick.append(stop_after_linger)
        return f"will stop {linger:g} s after the resume"


class HeartbeatSummary(NamedTuple):
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
        beats = heartbeat_outcomes(event.heartbeat_log)
        last_answer = max((b.sent_at for b in beats if b.answered), default=-math.inf)
        return cls(interval, timeout, cut_at,
                   sum(b.answered for b in beats if cut_at is None or b.sent_at < cut_at),
                   sum(not b.answered and b.sent_at > last_answer for b in beats),
                   event.detected_at - event.last_life,
                   None if cut_at is None else event.detected_at - cut_at)


class HeartbeatLab(w.VBox):
    """Claims 2 and 8 live: interval and timeout sliders, a player, its link and timeline."""

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5) -> None:
        self.stage = Stage(media, heartbeat_interval=heartbeat_interval,
                           heartbeat_timeout=heartbeat_timeout).start()
        self.terminal = Terminal(self.stage, "alice")
        self.timeline, self.link = self.terminal.timeline, self.terminal.link
        self.interval = w.FloatSlider(value=heartbeat_interval, min=0.1, max=2.0, step=0.05,
                                      description="interval (s)", readout_format=".2f")
        self.timeout = w.FloatSlider(value=heartbeat_timeout, min=0.3, max=6.0, step=0.1,
                                     description="timeout (s)")
        self.connect_button = w.Button(description="Connect a player", icon="plug",
                                       button_style="primary")
        self.connect_button.on_click(self.connect)
        self.stage.on_stop.append(lambda: setattr(self.connect_button, "disabled", True))
        settings = w.VBox([self.interval, self.timeout, self.connect_button, self.link])
        super().__init__([w.HBox([settings, self.terminal.view]), self.timeline, self.stage.log])

    def connect(self, _: Any = None) -> None:  # the button: play with the sliders' settings
        self.stage.config.heartbeat_interval = float(self.interval.value)
        self.stage.config.heartbeat_timeout = float(self.timeout.value)
        self.timeline.since = time.time()
        self.terminal.play()

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        return self.terminal.wait_for_play(seconds, timeout)

    def wait_for_interruption(self, timeout: float = 10.0) -> HeartbeatSummary:
        """Wait for the current session's interruption; returns a summary of it."""
        event = self.terminal.wait_for_interruption(timeout)
        cuts = [t for t, kind in self.terminal.link_events
                if kind == "cut" and t <= event.detected_at]
        self.terminal.draw_timeline()
        return HeartbeatSummary.of(event, cuts[-1] if cuts else None, self.interval.value,
                                   self.timeout.value)

    def wait_for_recovery(self, timeout: float = 5.0) -> float:
        """Wait until the current session's heartbeat is answered after the link was
        restored; returns when (Unix time). Raises if the session ended instead."""
        restored = [t for t, kind in self.terminal.link_events if kind == "restored"]
        session_id = self.terminal.player.session_id if self.terminal.player else None
        if not restored or session_id is None:
            raise RuntimeError("restore the link of a playing session first")

        def answered_again() -> float | None:
            if (log := self.stage.heartbeat_log(session_id)) is None:
                raise RuntimeError("the session ended: the link was down too long")
            return next((t for t, kind, _ in log if kind == "answered" and t > restored[-1]), None)

        answered: float = self.stage.wait(answered_again, timeout, "answered heartbeat")
        self.terminal.draw_timeline()
        return answered

    def stop(self) -> None:
        self.stage.stop()


class SystemPanel(w.VBox):
    """Claim 7's three parties at a glance, live: the streaming server's sessions and
    verdicts, the bookmark requests between the servers, what each user's portal lists."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.server, self.outbox, self.portal = w.HTML(), w.HTML(), w.HTML()
        super().__init__([self.server, self.outbox, self.portal])
        stage.on_tick.append(self.refresh)

    def refresh(self) -> None:
        sessions, outbox = len(self.stage.system.streaming.sessions), self.stage.system.outbox
        verdicts = [(e.session_id[:8], html.escape(str(e.user_id)), html.escape(e.content_id),
                     f"{e.position:.2f}", e.estimator, f"{e.frames_sent:.2f}",
                     f"{e.confirmed:.2f}") for e in self.stage.interruptions]
        self.server.value = (f"<b>Streaming server</b>: {sessions} session(s); interrupted:"
                             + table(verdicts, ("session", "UserID", "ContentID", "position",
                                                "estimator", "frames_sent", "confirmed")))
        requests = [(html.escape(d.request["UserID"]), html.escape(d.request["ContentID"]),
                     d.request["ContentBM"], d.status, d.attempts,
                     (d.response or {}).get("ResultCode", "–"))
                    for d in (outbox.deliveries() if outbox else [])]
        self.outbox.value = "<b>Between the servers: BookMarkReq / BookMarkResp</b>" + table(
            requests, ("UserID", "ContentID", "ContentBM", "status", "attempts", "ResultCode"))

    def show_portal(self, terminals: Iterable[Terminal]) -> None:
        """What each terminal's get-bookmarks request returns now."""
        rows = [(html.escape(t.user), len(listed), ", ".join(
                    f"{html.escape(b['ContentID'])} at {float(b['ContentBM']):.2f} s"
                    for b in listed) or "–")
                for t in terminals for listed in [t.list_bookmarks()]]
        self.portal.value = "<b>Portal: each user's bookmarks</b>" + table(
            rows, ("user", "bookmarks", "which"))


class PositionPlot(w.HTML):
    """The npt of every frame the terminal showed (the truth) against wall time; at each
    interruption the last frame shown (◆), ``frames_sent`` (▲) and ``confirmed`` (▼)."""

    def __init__(self, terminal: Terminal) -> None:
        super().__init__("<i>no frames yet</i>")
        self.terminal, self._drawn = terminal, 0.0
        terminal.stage.on_tick.append(self.refresh)

    def refresh(self, force: bool = False) -> None:
        if force or time.time() - self._drawn >= 0.5:
            self._drawn, self.value = time.time(), self.svg()

    def svg(self) -> str:
        lines = [[(f.wallclock, f.pts) for f in p.frames] for p in list(self.terminal.players)]
        points = [point for line in lines for point in line]
        episodes = list(self.terminal.episodes)
        if not points:
            return "<i>no frames yet</i>"
        origin = min(t for t, _ in points)
        end = max([t for t, _ in points] + [e.interruption.detected_at for e in episodes])
        top = max([v for _, v in points] + [e.interruption.frames_sent for e in episodes])
        chart = Chart((880, 300), (0, end - origin + 0.5), (0, top + 0.8), (55, 15, 26, 32))
        for line in lines:
            chart.line([(t - origin, v) for t, v in line], "#9e9e9e", width=2)
        for n, episode in enumerate(episodes, 1):
            event, at = episode.interruption, episode.interruption.detected_at - origin
            if episode.truth is not None:
                seen, pts = episode.truth.wallclock - origin, episode.truth.pts
                chart.line([(seen, pts), (at, pts)], "#111", "3,3", 1)
                chart.glyph(seen, pts, "◆", "#111", f"cut {n}: last frame shown {pts:.2f} s")
            chart.glyph(at, event.frames_sent, "▲", "#e53935",
                        f"cut {n}: frames_sent {event.frames_sent:.2f} s")
            chart.glyph(at, event.confirmed, "▼", "#1e88e5",
                        f"cut {n}: confirmed {event.confirmed:.2f} s")
            chart.text(chart.x(at) + 8, chart.y(event.frames_sent) + 4, f"cut {n}", "#555", 10)
        chart.axes("wall-clock seconds", "play position (npt, s)")
        return chart.render([("#9e9e9e", "— frames shown (the truth)"),
                             ("#111", "◆ last shown before the cut"),
                             ("#e53935", "▲ frames_sent (literal rule)"),
                             ("#1e88e5", "▼ confirmed (default)")])

    def snapshot(self) -> HTML:  # the plot as it is now, a static picture for the output
        self.refresh(force=True)
        return HTML(self.value)
