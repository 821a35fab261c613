"""The heartbeat lab: claims 2 and 8 with sliders (``01_heartbeat_claims_2_8.ipynb``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as w

from rtsp_resume.player import ShownFrame
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import _CSS, Shown, _table
from rtsp_resume.widgets.stage import Stage
from rtsp_resume.widgets.timeline import heartbeat_outcomes, session_log


class HeartbeatLab(Shown):
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
            log = session_log(streaming, session_id or "")
            if log is None:
                raise RuntimeError("the session ended: the link was down too long")
            return next((t for t, kind, _ in log if kind == "answered" and t > since), None)

        answered: float = self.stage.wait(answered_again, timeout, "answered heartbeat")
        self.timeline.refresh(force=True)
        return answered

    def stop(self) -> None:
        self.stage.stop()


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
