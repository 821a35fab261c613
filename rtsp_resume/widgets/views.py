"""What a terminal shows: its player's picture, its link toggle, the portal's bookmark
list with a Resume button per bookmark, and the frames before and after a resume
(:class:`ResumeCheck` compares them)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.position import format_clock
from rtsp_resume.widgets.display import CSS, compact, image, picture


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
        if change["new"]:
            self.cutter.cut()
        else:
            self.cutter.restore()
        self.toggle.description = "Link cut: restore" if change["new"] else "Cut the link"
        self.toggle.button_style = "danger" if change["new"] else ""


class BookmarkTable(w.VBox):
    """The portal's bookmark list, each with a "Resume at m:ss.d" button (embodiment step 4)."""

    def __init__(self, on_resume: Callable[[dict[str, Any]], None]) -> None:
        self.on_resume = on_resume
        self.rows: list[dict[str, Any]] = []
        self.buttons: dict[str, w.Button] = {}  # by ContentID
        self.heading = w.HTML("<b>My bookmarks</b> (the portal's list)")
        super().__init__([self.heading, w.HTML("<i>no bookmark yet</i>")])
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
        self.children = lines if bookmarks else [*lines, w.HTML("<i>no bookmark</i>")]

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
        self.after_label.value = compact(f"first frame after the resume:<br><b>{after or '–'}"
                                         "</b>")
        self.verdict.value = "" if check is None else compact(
            f'{CSS}<span class="{"rr-ok" if check.ok else "rr-bad"}">'
            f"{html.escape(check.describe())}</span> (resumed from ContentBM "
            f"{check.bookmark:.3f} s)")
