"""One interruption of a terminal and what came of it, down to the resumed frame.

An :class:`Episode` collects, as they happen, the server's interruption, the last frame
the player showed, the bookmark request and answer, the bookmark as listed and the first
frame after the resume; :class:`ResumeCheck` compares the two frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.server import Interruption


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
