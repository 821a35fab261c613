"""A terminal: one viewer's phone, with its radio link, its portal client and its player.

:class:`Terminal` logs in, plays through a link that can be cut, follows each of its
sessions' interruptions (an :class:`~rtsp_resume.widgets.episode.Episode` each), lists the
bookmarks after logging in again and resumes from them; its ``wait_for_*`` helpers wait
for each step with a deadline. Made by :meth:`Stage.terminal
<rtsp_resume.widgets.stage.Stage.terminal>`.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.client import PortalClient, interface_request
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import _compact, clock, describe_frame, shorten
from rtsp_resume.widgets.episode import Episode, ResumeCheck
from rtsp_resume.widgets.messages import (
    INTERFACE_MEANINGS,
    INTERFACE_REQUEST_MEANINGS,
    FieldsView,
)
from rtsp_resume.widgets.timeline import HeartbeatTimeline, SessionTrace
from rtsp_resume.widgets.views import BookmarkTable, ComparisonView, LinkToggle, PlayerView

if TYPE_CHECKING:
    from rtsp_resume.widgets.stage import Stage


class Terminal:
    """One viewer's phone: its link to the server, its portal client, its player.

    Made by :meth:`Stage.terminal`. Views: :attr:`view` (the picture), :attr:`link`
    (the toggle), :attr:`timeline` (heartbeats), :attr:`bookmarks` (the portal's list
    with a resume button per bookmark), :attr:`comparison` (before/after frames),
    :attr:`status`. Every interruption of its sessions becomes an :class:`Episode`.
    """

    def __init__(self, stage: Stage, user: str = "alice", transport: str = "tcp") -> None:
        if not stage.started:
            raise RuntimeError("start() the stage first")
        self.stage = stage
        self.user = user
        self.password = dict(stage.system.users)[user]
        self.transport = transport
        self.log = stage.log
        self.cutter = LinkCutter(to=(stage.system.host, stage.system.streaming.port),
                                 on_event=self._on_link).start()
        self.view = PlayerView(f"{user}'s player")
        self.link = LinkToggle(self.cutter)
        self.timeline = HeartbeatTimeline(self)
        self.bookmarks = BookmarkTable(self._resume_clicked)
        self.comparison = ComparisonView()
        self.interface_req = FieldsView("request for the bookmark interface: terminal → "
                                        "portal", INTERFACE_REQUEST_MEANINGS)
        self.interface_resp = FieldsView("the bookmark interface: portal → terminal",
                                         INTERFACE_MEANINGS)
        self.status = w.HTML(_compact(f"<b>{html.escape(user)}</b>: not logged in"))
        self.status.add_class("rr-status")
        self.portal: PortalClient | None = None
        self.login_answer: dict[str, Any] | None = None
        self.player: Player | None = None
        self.players: list[Player] = []
        self.traces: list[SessionTrace] = []
        self.link_events: list[tuple[float, str]] = []
        self.episodes: list[Episode] = []
        self.error: BaseException | None = None
        stage.terminals.append(self)
        for view in (self.view, self.link, self.timeline):
            stage.every_tick(view.refresh)

    @property
    def panel(self) -> w.VBox:
        """Picture, link toggle and status in one box."""
        return w.VBox([self.view.widget, self.link.widget, self.status])

    def say(self, text: str) -> None:
        self.log.say(f"{self.user}: {text}")

    def set_status(self, text: str) -> None:
        self.status.value = _compact(f"<b>{html.escape(self.user)}</b>: {text}")

    # -- the portal ------------------------------------------------------------------

    def login(self) -> dict[str, Any]:
        """Log in to the portal (a new UserToken each time)."""
        portal = PortalClient(self.stage.system.portal_url)
        answer = portal.login(self.user, self.password)
        first = self.portal is None
        self.portal = portal
        self.login_answer = answer
        self.say(f"logs in to the portal{'' if first else ' again'}: UserID "
                 f"{answer['UserID']}, UserToken {shorten(answer['UserToken'], 6)}")
        self.set_status(f"logged in (UserID {html.escape(answer['UserID'])})")
        return answer

    def _logged_in(self) -> PortalClient:
        """The portal client, logging in first if this terminal has not yet."""
        if self.portal is None:
            self.login()
        assert self.portal is not None
        return self.portal

    def list_bookmarks(self) -> list[dict[str, Any]]:
        """The get-bookmarks request (claim 1): all of this user's bookmarks."""
        found = self._logged_in().bookmarks()
        self.bookmarks.show(found)
        return found

    # -- playing ---------------------------------------------------------------------

    def play(self, content_id: str | None = None) -> Player:
        """Ask the portal to play a program (the first one by default) and open the URL
        through this terminal's link. Restores the link first if it is cut."""
        portal = self._logged_in()
        if content_id is None:
            content_id = portal.contents()[0]["ContentID"]
        answer = portal.play(content_id)
        self.say(f"plays '{content_id}': the portal signs a play token (EncryptToken "
                 f"{shorten(answer['EncryptToken'], 6)}) into the RTSP URL")
        return self._start_player(answer["url"], None, f"PLAY {content_id}")

    def _through_link(self, url: str) -> str:
        """The same URL, through this terminal's link instead of straight to the server."""
        server = f":{self.stage.system.streaming.port}/"
        return url.replace(server, f":{self.cutter.port}/", 1)

    def _start_player(self, url: str, start: float | None, label: str,
                      episode: Episode | None = None) -> Player:
        if self.link.toggle.value:
            self.say("the signal is back (link restored)")
            self.link.toggle.value = False
        old = self.player
        if old is not None and old.running:
            old.close_abruptly()

        def on_frame(frame: ShownFrame) -> None:
            if episode is not None and episode.resumed is None:
                episode.resumed = frame
                check = episode.check
                self.comparison.show(episode.truth, frame, check)
                self.stage.notify()

        player = Player(self._through_link(url), transport=self.transport, on_frame=on_frame,
                        start=start)
        if episode is not None:
            episode.resumed_player = player
        player.start()
        assert player.session_id is not None
        with self.stage.cond:
            self.player = player
            self.players.append(player)
            self.traces.append(SessionTrace(player.session_id, time.time(), label))
        self.view.show(player)
        if start is None:
            where = f"from {player.range_start or 0:.2f} s"
        else:
            where = (f"asked for npt={start:.2f}-; the server starts at the keyframe "
                     f"{player.range_start or 0:.2f} s and the player shows nothing before "
                     f"{start:.2f} s")
        self.say(f"{label}: RTSP session {player.session_id[:8]} over {self.transport}, "
                 f"{where}")
        self.set_status(f"playing ({label})")
        self.stage.notify()
        return player

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        """Wait until the current player has shown ``seconds`` of the program since it
        started; returns the frame on screen then."""
        player = self.player
        if player is None:
            raise RuntimeError("play() first")
        target = (player.start_at or 0.0) + seconds
        reached = player.wait_for(
            lambda: bool(player.frames) and player.frames[-1].pts >= target - 1e-6, timeout)
        if not reached:
            raise TimeoutError(f"the player did not reach {target:.2f} s within {timeout:g} s "
                               f"(state {player.state}, {player.error or 'no error'})")
        frame = player.last_frame
        assert frame is not None
        return frame

    # -- the link --------------------------------------------------------------------

    def cut(self) -> None:
        """Press the link toggle to cut (the same as clicking it)."""
        self.link.toggle.value = True

    def restore(self) -> None:
        self.link.toggle.value = False

    def _on_link(self, kind: str) -> None:
        now = time.time()
        with self.stage.cond:
            self.link_events.append((now, kind))
        player = self.player
        shown = describe_frame(player.last_frame if player else None)
        if kind == "cut":
            self.say(f"THE LINK IS CUT (signal lost); on screen: {shown}")
            self.set_status("link cut: the server's heartbeats go unanswered…")
        else:
            self.say("link restored")
        self.stage.notify()

    # -- interruption and bookmark (called on the server's / outbox's threads) ------------

    def _interrupted(self, event: Interruption) -> None:
        player = next((p for p in self.players if p.session_id == event.session_id), None)
        if player is None:
            return
        episode = Episode(event, player)
        with self.stage.cond:
            self.episodes.append(episode)
            for trace in self.traces:
                if trace.session_id == event.session_id:
                    trace.interruption = event
        self.set_status(f"interrupted: bookmark at {event.position:.2f} s is on its way "
                        f"to the portal")

        def close_player() -> None:
            # The phone's player gives up too; what it showed last is the truth the
            # bookmark is compared with.
            player.close_abruptly()
            episode.truth = player.last_frame
            episode.closed = True
            self.comparison.show(episode.truth, None, None)
            self.say(f"the player gave up; the last frame it showed: "
                     f"{describe_frame(episode.truth)}")
            self.stage.notify()

        self.stage.later(close_player)

    def _delivered(self, what: str, delivery: Delivery) -> None:
        episode = next((e for e in self.episodes
                        if e.interruption.play_token == delivery.request.get("EncryptToken")),
                       None)
        if episode is None:
            return
        episode.delivery = delivery
        if what != "answered":
            return
        code = (delivery.response or {}).get("ResultCode")
        if code not in (0, 1):
            self.set_status(f"the portal refused the bookmark (ResultCode {code})")
            return

        def come_back() -> None:
            # The viewer opens the portal again: a new login, then the bookmark list.
            self.login()
            listed = self.list_bookmarks()
            content = episode.interruption.content_id
            episode.bookmark = next((b for b in listed if b["ContentID"] == content), None)
            if episode.bookmark is not None:
                self.set_status(f"bookmark on the portal: {content} at "
                                f"{clock(float(episode.bookmark['ContentBM']))}; press "
                                f"its Resume button")
            self.stage.notify()

        self.stage.later(come_back)

    def wait_for_interruption(self, timeout: float = 10.0) -> Interruption:
        """Wait until the current session was declared interrupted and the player gave
        up; returns the server's :class:`~rtsp_resume.server.Interruption`."""
        player = self.player

        def found() -> Episode | None:
            return next((e for e in self.episodes if e.player is player and e.closed), None)

        return self.stage.wait(found, timeout, "interruption").interruption

    def wait_for_bookmark(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the bookmark of the latest interruption is on the portal and this
        terminal has listed it after logging in again; returns the listed bookmark."""

        def listed() -> dict[str, Any] | None:
            episode = self.episodes[-1] if self.episodes else None
            if episode is None:
                return None
            response = episode.delivery.response if episode.delivery else None
            if response is not None and response.get("ResultCode") not in (0, 1):
                raise RuntimeError(f"the portal refused the bookmark: {response}")
            return episode.bookmark

        return self.stage.wait(listed, timeout, "bookmark")

    # -- resume ----------------------------------------------------------------------

    def ask_interface(self, bookmark: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the portal for the bookmark interface of a listed bookmark (claims 3, 4):
        the request and the answer are shown in :attr:`interface_req`/:attr:`interface_resp`."""
        portal = self._logged_in()
        if bookmark is None:
            if not self.bookmarks.rows:
                raise RuntimeError("no bookmark listed")
            bookmark = self.bookmarks.rows[0]
        self.interface_req.show(interface_request(bookmark, portal.user_token))
        answer = portal.bookmark_interface(bookmark)
        self.interface_resp.show(answer)
        return answer

    def resume(self, bookmark: dict[str, Any] | None = None) -> Player:
        """What a bookmark's button does: ask the portal for the bookmark interface
        (claims 3, 4) and play from ContentBM through the link (restored if cut)."""
        self._logged_in()
        if bookmark is None:
            if not self.bookmarks.rows:
                raise RuntimeError("no bookmark to resume")
            bookmark = self.bookmarks.rows[0]
        episode = next((e for e in reversed(self.episodes) if e.bookmark is not None
                        and e.bookmark["ContentID"] == bookmark["ContentID"]), None)
        self.say(f"presses 'Resume at {clock(float(bookmark['ContentBM']))}' under "
                 f"'{bookmark['ContentID']}': asks the portal for the bookmark interface")
        answer = self.ask_interface(bookmark)
        self.say(f"bookmark interface returned: play from {answer['ContentBM']} s with a "
                 f"fresh play token")
        if episode is not None:
            self.comparison.show(episode.truth, None, None)
        return self._start_player(answer["url"], float(answer["ContentBM"]),
                                  f"resume at {clock(float(answer['ContentBM']))}", episode)

    def _resume_clicked(self, bookmark: dict[str, Any]) -> None:
        try:
            self.error = None
            self.resume(bookmark)
        except Exception as exc:  # shown, and raised again by wait_for_resume
            self.error = exc
            self.say(f"resume failed: {exc}")
            self.stage.notify()

    def wait_for_resume(self, timeout: float = 10.0) -> ResumeCheck:
        """Wait for the first frame after the latest resume; returns the comparison with
        the last frame shown before the interruption."""

        def resumed() -> ResumeCheck | None:
            if self.error is not None:
                raise self.error
            episode = next((e for e in reversed(self.episodes)
                            if e.resumed_player is not None), None)
            return episode.check if episode is not None else None

        check: ResumeCheck = self.stage.wait(resumed, timeout, "frame after the resume")
        self.say(f"last frame before the cut: {describe_frame(check.before)}; first after "
                 f"the resume: {describe_frame(check.after)}: {check.describe()}")
        self.set_status(f"resumed: {check.describe()}")
        return check

    @property
    def resume_button(self) -> w.Button:
        """The Resume button of the latest interrupted program on the bookmark list."""
        content = self.episodes[-1].interruption.content_id if self.episodes else None
        return self.bookmarks.button(content)

    def stop(self) -> None:
        for player in self.players:
            if player.running:
                player.close_abruptly()
        self.cutter.stop()
