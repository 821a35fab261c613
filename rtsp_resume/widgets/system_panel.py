"""The system panel: claim 7's three parties at a glance (``05_system_claim_7.ipynb``)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable

import ipywidgets as w

from rtsp_resume.widgets.display import _CSS, Shown, _table
from rtsp_resume.widgets.stage import Stage
from rtsp_resume.widgets.terminal import Terminal


class SystemPanel(Shown):
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
