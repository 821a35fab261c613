"""The dashboards of the notebooks: the tour (``00_tour``), the system panel (claim 7,
``05_system_claim_7``) and the position plot (``06_position_estimators``)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ipywidgets as w
from IPython.display import HTML

from rtsp_resume.widgets.display import Chart, table
from rtsp_resume.widgets.stage import Stage
from rtsp_resume.widgets.terminal import Terminal


class Tour(Terminal):
    """The whole story on one dashboard: alice's phone on a stage of its own, with the
    player, the link toggle, the heartbeat timeline, BookMarkReq and BookMarkResp, the
    bookmark list with its Resume buttons, the frames before and after, and the log."""

    def __init__(self, media: Path | str | None = None, *, heartbeat_interval: float = 0.5,
                 heartbeat_timeout: float = 1.5, user: str = "alice",
                 transport: str = "tcp") -> None:
        stage = Stage(media, heartbeat_interval=heartbeat_interval,
                      heartbeat_timeout=heartbeat_timeout).start()
        super().__init__(stage, user, transport)
        portal = stage.system.portal_url
        servers = w.HTML(f"portal <a href='{portal}/' target='_blank'>{portal}/</a> (log in "
                         f"as {html.escape(user)} / {html.escape(self.password)}) · "
                         f"streaming server {stage.system.rtsp_url}/")
        self.dashboard = w.VBox([
            servers,
            w.HBox([self.view, w.VBox([self.link, self.comparison],
                                      layout=w.Layout(margin="0 0 0 16px"))]),
            self.timeline,
            w.HBox([stage.bookmark_req, stage.bookmark_resp], layout=w.Layout(grid_gap="16px")),
            self.bookmarks,
            stage.log,
        ], layout=w.Layout(width="100%"))
        self.dashboard.add_class("rr-dashboard")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.dashboard._repr_mimebundle_(**kwargs)

    def stop(self) -> None:
        self.stage.stop()

    def stop_when_done(self, linger: float = 20.0) -> str:
        """Stop now if a resume was seen, else ``linger`` seconds after it (JupyterLab's
        "Run All" runs this last cell before anything was pressed)."""

        def stop_after_linger() -> None:
            first = next((e.resumed for e in self.episodes if e.resumed), None)
            if first is not None and time.time() - first.wallclock >= linger:
                self.stop()

        if any(e.resumed for e in self.episodes) or self.stage.stopped:
            self.stop()
            return "stopped"
        self.stage.on_tick.append(stop_after_linger)
        return f"will stop {linger:g} s after the resume"


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
    """What the viewer saw against the two position estimates, over several cuts.

    The grey line is the truth: the npt of every frame the terminal's players showed,
    against wall time. At each interruption: the last frame shown (◆), the embodiment's
    ``frames_sent`` (▲, above it: frames sent into the dead link and never seen) and
    ``confirmed`` (▼, at or below it: provably reached, minus an allowance).
    """

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

    def snapshot(self) -> HTML:
        """The plot as it is now, as a static picture for the output."""
        self.refresh(force=True)
        return HTML(self.value)
