"""The tour: the whole story on one dashboard (``00_tour.ipynb``)."""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import Shown
from rtsp_resume.widgets.episode import ResumeCheck
from rtsp_resume.widgets.stage import Stage


class Tour(Shown):
    """The whole story on one dashboard: ``00_tour.ipynb``.

    One stage (both servers), one terminal (alice's phone), and a dashboard with the
    player, the link toggle, the heartbeat timeline, BookMarkReq/BookMarkResp, the
    bookmark list with its Resume buttons and the before/after comparison.
    """

    _shown = "dashboard"

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
