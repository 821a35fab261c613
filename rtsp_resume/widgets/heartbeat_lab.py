"""The heartbeat lab: claims 2 and 8 with sliders (``01_heartbeat_claims_2_8.ipynb``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import ipywidgets as w

from rtsp_resume.player import ShownFrame
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.stage import Stage
from rtsp_resume.widgets.terminal import Terminal
from rtsp_resume.widgets.timeline import heartbeat_outcomes


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
    """Claims 2 and 8 live: interval and timeout sliders, a player, the link toggle and
    the heartbeat timeline of one connection at a time."""

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
        settings = w.VBox([self.interval, self.timeout, self.connect_button, self.link])
        super().__init__([w.HBox([settings, self.terminal.view]), self.timeline,
                          self.stage.log])

    def connect(self, _: Any = None) -> None:
        """Play with the sliders' settings (what the button does)."""
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
        """After the link was restored, wait until a heartbeat of the current session is
        answered again; returns when (Unix time). Raises if the session ended instead."""
        restored = [t for t, kind in self.terminal.link_events if kind == "restored"]
        session_id = self.terminal.player.session_id if self.terminal.player else None
        if not restored or session_id is None:
            raise RuntimeError("restore the link of a playing session first")

        def answered_again() -> float | None:
            if (log := self.stage.heartbeat_log(session_id)) is None:
                raise RuntimeError("the session ended: the link was down too long")
            return next((t for t, kind, _ in log if kind == "answered" and t > restored[-1]),
                        None)

        answered: float = self.stage.wait(answered_again, timeout, "answered heartbeat")
        self.terminal.draw_timeline()
        return answered

    def stop(self) -> None:
        self.stage.stop()
