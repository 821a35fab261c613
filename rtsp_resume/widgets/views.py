"""What a terminal shows: its player's picture, its link toggle, the portal's bookmark
list with a Resume button per bookmark, and the before/after comparison of a resume.

Each view wraps a few ipywidgets; :class:`~rtsp_resume.widgets.terminal.Terminal` owns
one of each and the stage's ticker calls their ``refresh``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.widgets.display import (
    _CSS,
    PICTURE_WIDTH,
    Shown,
    _compact,
    _placeholder,
    clock,
    describe_frame,
    picture,
)
from rtsp_resume.widgets.episode import ResumeCheck


class PlayerView(Shown):
    """The latest decoded frame of a player as a picture, with its frame number and npt.

    :meth:`refresh` (called by the stage's ticker, 10 times a second) sends a new
    picture only when the player has shown a new frame.
    """

    def __init__(self, title: str, width: int = PICTURE_WIDTH) -> None:
        self.player: Player | None = None
        self.image = w.Image(value=_placeholder(width), format="jpeg",
                             layout=w.Layout(width=f"{width}px"))
        self.image.add_class("rr-player")
        self.label = w.Label("no player yet")
        self.label.add_class("rr-frame")
        self.width = width
        self.widget = w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), self.image, self.label])
        self._shown: ShownFrame | None = None
        self._state = ""

    def show(self, player: Player) -> None:
        self.player = player

    def refresh(self) -> None:
        player = self.player
        if player is None:
            return
        frame = player.last_frame
        if frame is not None and frame is not self._shown and frame.image is not None:
            self._shown = frame
            self.image.value = picture(frame, self.width)
        state = player.state if player.running else f"{player.state} (closed)"
        text = f"{describe_frame(self._shown)} · {state}"
        if text != self._state:
            self._state = text
            self.label.value = text


class LinkToggle(Shown):
    """A toggle that cuts and restores a :class:`LinkCutter`, with its counters.

    Pressing it (or ``toggle.value = True`` in code) makes the link silent both ways, as
    a lost radio signal would; pressing it again lets traffic through again.
    """

    def __init__(self, cutter: LinkCutter) -> None:
        self.cutter = cutter
        self.toggle = w.ToggleButton(value=False, description="Cut the link", icon="scissors",
                                     tooltip="drop everything between player and server",
                                     layout=w.Layout(width="200px"))
        self.toggle.add_class("rr-link-toggle")
        self.counters = w.HTML()
        self.widget = w.VBox([self.toggle, self.counters])
        self.toggle.observe(self._changed, "value")
        self._text = ""

    def _changed(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.cutter.cut()
            self.toggle.description = "Link cut: restore"
            self.toggle.button_style = "danger"
        else:
            self.cutter.restore()
            self.toggle.description = "Cut the link"
            self.toggle.button_style = ""

    def refresh(self) -> None:
        c = self.cutter.counters()
        text = (f"link <b>{'CUT' if c.is_cut else 'up'}</b> · cuts {c.cuts}<br>"
                f"server→phone: {c.down.tcp_bytes / 1e6:.2f} MB relayed, "
                f"{c.down.tcp_bytes_cut / 1e3:.0f} kB dropped<br>"
                f"phone→server: {c.up.tcp_bytes / 1e3:.1f} kB relayed, "
                f"{c.up.tcp_bytes_cut / 1e3:.1f} kB dropped")
        if text != self._text:
            self._text = text
            self.counters.value = _compact(f'<span style="font-size:12px">{text}</span>')


class BookmarkTable(Shown):
    """The portal's bookmark page as the terminal sees it: one row per bookmark, each
    with its button ("Resume at m:ss.d"), as in the embodiment's step 4."""

    _shown = "box"

    def __init__(self, on_resume: Callable[[dict[str, Any]], None]) -> None:
        self.on_resume = on_resume
        self.rows: list[dict[str, Any]] = []
        self.buttons: dict[str, w.Button] = {}
        self.title = w.HTML("<b>My bookmarks</b> (the portal's list)")
        self.box = w.VBox([self.title, w.HTML("<i>no bookmark yet</i>")])
        self.box.add_class("rr-bookmarks")

    def show(self, bookmarks: list[dict[str, Any]]) -> None:
        rows: list[w.Widget] = [self.title]
        buttons: dict[str, w.Button] = {}
        for bookmark in bookmarks:
            at = float(bookmark["ContentBM"])
            button = w.Button(description=f"Resume at {clock(at)}", icon="play",
                              button_style="success", layout=w.Layout(width="170px"))
            button.add_class("rr-resume")
            button.on_click(lambda _, b=bookmark: self.on_resume(b))
            buttons[bookmark["ContentID"]] = button
            text = (f"<b>{html.escape(str(bookmark.get('title') or bookmark['ContentID']))}"
                    f"</b> ({html.escape(bookmark['ContentID'])}) · ContentBM "
                    f"<code>{at:.3f}</code> s · saved {html.escape(str(bookmark['saved_at']))}")
            rows.append(w.HBox([button, w.HTML(text)]))
        if not bookmarks:
            rows.append(w.HTML("<i>no bookmark</i>"))
        self.rows = list(bookmarks)
        self.buttons = buttons
        self.box.children = rows

    def button(self, content_id: str | None = None) -> w.Button:
        """The Resume button of a program's bookmark (the first one by default)."""
        if not self.buttons:
            raise LookupError("no bookmark listed yet: wait_for_bookmark() first")
        if content_id is None:
            return next(iter(self.buttons.values()))
        return self.buttons[content_id]


class ComparisonView(Shown):
    """The last frame shown before the cut next to the first frame after the resume."""

    def __init__(self, width: int = 240) -> None:
        self.width = width
        self.before = w.Image(value=_placeholder(width), format="jpeg",
                              layout=w.Layout(width=f"{width}px"))
        self.before.add_class("rr-before")
        self.after = w.Image(value=_placeholder(width), format="jpeg",
                             layout=w.Layout(width=f"{width}px"))
        self.after.add_class("rr-after")
        self.before_label = w.HTML(_compact("last frame before the cut:<br>–"))
        self.after_label = w.HTML(_compact("first frame after the resume:<br>–"))
        self.verdict = w.HTML("")
        self.verdict.add_class("rr-verdict")
        self.widget = w.VBox([
            w.HBox([w.VBox([self.before_label, self.before]),
                    w.VBox([self.after_label, self.after])]),
            self.verdict,
        ])
        self.check: ResumeCheck | None = None

    def show(self, before: ShownFrame | None, after: ShownFrame | None,
             check: ResumeCheck | None) -> None:
        if before is not None:
            self.before.value = picture(before, self.width)
            self.before_label.value = _compact(
                f"last frame before the cut:<br><b>{describe_frame(before)}</b>")
        self.after.value = picture(after, self.width)
        self.after_label.value = _compact("first frame after the resume:<br><b>"
                                          f"{describe_frame(after) if after else '–'}</b>")
        self.check = check
        if check is None:
            self.verdict.value = ""
        else:
            css = "rr-ok" if check.ok else "rr-bad"
            self.verdict.value = _compact(
                f'{_CSS}<span class="{css}">{html.escape(check.describe())}</span> '
                f"(resumed from ContentBM {check.bookmark:.3f} s)")
