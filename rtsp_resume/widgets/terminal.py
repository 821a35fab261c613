"""A terminal: one viewer's phone, with its radio link, its portal client and its player.
On the stage's events it does what a phone does: gives up on an interrupted session, logs
in again once the bookmark is saved and lists it; a bookmark's button resumes."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.client import PortalClient, interface_request
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.position import format_clock
from rtsp_resume.server import Interruption
from rtsp_resume.widgets.display import STOPPED, FieldsView, shorten
from rtsp_resume.widgets.stage import Stage
from rtsp_resume.widgets.views import (
    BookmarkTable,
    ComparisonView,
    HeartbeatTimeline,
    LinkToggle,
    PlayerView,
    ResumeCheck,
    SessionTrace,
)

PLOT_REFRESH = 0.25  # seconds between redraws of the heartbeat timeline


@dataclass
class Episode:
    """An interrupted session: the server's verdict, the last frame shown (the truth),
    BookMarkReq/BookMarkResp, the bookmark as listed, and the first frame resumed."""
    interruption: Interruption
    player: Player
    truth: ShownFrame | None = None
    delivery: Delivery | None = None
    bookmark: dict[str, Any] | None = None
    resumed_player: Player | None = None
    resumed: ShownFrame | None = None

    @property
    def check(self) -> ResumeCheck | None:
        if self.truth is None or self.resumed is None or self.bookmark is None:
            return None
        return ResumeCheck(self.truth, self.resumed, float(self.bookmark["ContentBM"]))


class Terminal:
    """A viewer's phone on a started :class:`Stage`; each ``wait_for_*`` waits for a step."""

    def __init__(self, stage: Stage, user: str = "alice", transport: str = "tcp") -> None:
        if not stage.started:
            raise RuntimeError("start() the stage first")
        self.stage, self.user, self.transport = stage, user, transport
        self.password = dict(stage.system.users)[user]
        self.cutter = LinkCutter(to=(stage.system.host, stage.system.streaming.port),
                                 on_event=self._on_link).start()
        self.view, self.link = PlayerView(f"{user}'s player"), LinkToggle(self.cutter)
        self.timeline, self.comparison = HeartbeatTimeline(), ComparisonView()
        self.bookmarks = BookmarkTable(self.resume)
        self.interface_req = FieldsView("request for the bookmark interface: terminal → portal")
        self.interface_resp = FieldsView("the bookmark interface: portal → terminal")
        self.panel = w.VBox([self.view, self.link])
        self.portal = PortalClient(stage.system.portal_url)
        self.player: Player | None = None
        self.players: list[Player] = []
        self.traces: list[SessionTrace] = []
        self.link_events: list[tuple[float, str]] = []  # (Unix time, "cut" or "restored")
        self.episodes: list[Episode] = []
        self.error: BaseException | None = None
        self._drawn = 0.0
        self.say("switched on")
        self.login()
        stage.on_interruption.append(self._interrupted)
        stage.on_delivery.append(self._delivered)
        stage.on_stop.append(self.close)
        stage.on_tick.append(self.refresh)

    def say(self, text: str) -> None:
        self.stage.log.say(f"{self.user}: {text}")

    def refresh(self) -> None:
        self.view.refresh()
        if time.time() - self._drawn >= PLOT_REFRESH:
            self.draw_timeline()

    def draw_timeline(self) -> None:
        """Redraw the heartbeat timeline with the server's heartbeat logs as they are now."""
        self._drawn = time.time()
        for trace in self.traces:
            if trace.live:
                log = self.stage.heartbeat_log(trace.session_id)
                trace.live = log is not None and trace.interruption is None
                trace.log = log if log is not None and trace.live else trace.log
        config = self.stage.config
        self.timeline.draw(self.traces, self.link_events, config.heartbeat_interval,
                           config.heartbeat_timeout)

    def login(self) -> dict[str, Any]:
        """Log in to the portal (as when switched on; a new UserToken each time)."""
        answer = self.portal.login(self.user, self.password)
        self.say(f"logged in: UserID {answer['UserID']}, "
                 f"UserToken {shorten(answer['UserToken'], 6)}")
        return answer

    def list_bookmarks(self) -> list[dict[str, Any]]:
        """The get-bookmarks request (claim 1): all of this user's bookmarks."""
        found = self.portal.bookmarks()
        self.bookmarks.show(found)
        return found

    def play(self, content_id: str | None = None) -> Player:
        """Play a program (the first by default) from the portal's play URL (a play token)."""
        content_id = content_id or self.portal.contents()[0]["ContentID"]
        return self._start_player(self.portal.play(content_id)["url"], None, f"PLAY {content_id}")

    def _start_player(self, url: str, start: float | None, label: str,
                      episode: Episode | None = None) -> Player:
        self.link.toggle.value = False  # a new connection finds the signal back
        if self.player is not None:
            self.player.close_abruptly()

        def on_frame(frame: ShownFrame) -> None:
            if episode is not None and episode.resumed is None:
                episode.resumed = frame
                self.comparison.show(episode.truth, frame, episode.check)
                self.bookmarks.outcome.value = f"first frame after the resume: {frame}" + (
                    f"; {episode.check.describe()}" if episode.check else "")

        server = f":{self.stage.system.streaming.port}/"  # through the link instead
        player = Player(url.replace(server, f":{self.cutter.port}/", 1),
                        transport=self.transport, on_frame=on_frame, start=start)
        if episode is not None:
            episode.resumed_player = player
        self.player = self.view.player = player.start()
        self.players.append(player)
        self.traces.append(SessionTrace(player.session_id or "", time.time(), label))
        self.say(f"{label}: session {(player.session_id or '')[:8]} over {self.transport}; "
                 f"the server starts at {player.range_start or 0:.2f} s")
        return player

    def wait_for_play(self, seconds: float = 2.0, timeout: float = 15.0) -> ShownFrame:
        """Wait until the player has shown ``seconds`` since it started; returns that frame."""
        if (player := self.player) is None:
            raise RuntimeError("play() first")
        target = (player.start_at or 0.0) + seconds - 1e-6
        if not player.wait_for(lambda: player.frames and player.frames[-1].pts >= target,
                               timeout) or player.last_frame is None:
            raise TimeoutError(f"the player did not reach {target:.2f} s within {timeout:g} "
                               f"s (state {player.state}, {player.error or 'no error'})")
        return player.last_frame

    def _on_link(self, kind: str) -> None:
        self.link_events.append((time.time(), kind))
        shown = self.player.last_frame if self.player else None
        self.say(f"THE LINK IS CUT; on screen: {shown}" if kind == "cut" else "link restored")

    def _interrupted(self, event: Interruption) -> None:
        player = next((p for p in self.players if p.session_id == event.session_id), None)
        if player is None:
            return  # another terminal's session
        for trace in self.traces:
            if trace.session_id == event.session_id:
                trace.interruption, trace.log = event, list(event.heartbeat_log)
        episode = Episode(event, player)
        self.episodes.append(episode)  # before closing the player, which may take a while
        # The phone gives up too: what it showed last is the truth the bookmark is held to.
        player.close_abruptly()
        episode.truth = player.last_frame
        self.comparison.show(player.last_frame, None)
        self.say(f"the player gave up on {player.last_frame}; a bookmark is on its way")

    def _delivered(self, what: str, delivery: Delivery) -> None:
        token = delivery.request.get("EncryptToken")
        episode = next((e for e in self.episodes if e.interruption.play_token == token), None)
        if episode is None:
            return
        episode.delivery = delivery
        if what == "answered" and (delivery.response or {}).get("ResultCode") in (0, 1):
            self.login()  # the viewer opens the portal again and finds the bookmark
            content = episode.interruption.content_id
            episode.bookmark = next((b for b in self.list_bookmarks()
                                     if b["ContentID"] == content), None)
            self.say(f"the portal lists a bookmark of {content}: press its Resume button")

    def wait_for_interruption(self, timeout: float = 10.0) -> Interruption:
        """Wait until the server declared the current session interrupted (claims 2, 8)."""
        player = self.player
        return self.stage.wait(lambda: next((e.interruption for e in self.episodes
                                             if e.player is player), None),
                               timeout, "interruption")

    def wait_for_bookmark(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the latest interruption's bookmark is listed here; returns it."""

        def listed() -> dict[str, Any] | None:
            episode = self.episodes[-1] if self.episodes else None
            response = episode.delivery.response if episode and episode.delivery else None
            if response is not None and response.get("ResultCode") not in (0, 1):
                raise RuntimeError(f"the portal refused the bookmark: {response}")
            return episode.bookmark if episode else None

        return self.stage.wait(listed, timeout, "bookmark")

    def ask_interface(self, bookmark: dict[str, Any]) -> dict[str, Any]:
        """Ask the portal for a listed bookmark's bookmark interface (claims 3, 4)."""
        self.interface_req.show(interface_request(bookmark, self.portal.user_token))
        answer = self.portal.bookmark_interface(bookmark)
        self.interface_resp.show(answer)
        return answer

    def resume(self, bookmark: dict[str, Any]) -> None:
        """What a bookmark's button does: ask for its bookmark interface, then play from
        ContentBM through the link. A failure is logged, and raised by wait_for_resume."""
        episode = next((e for e in reversed(self.episodes) if e.bookmark is not None
                        and e.bookmark["ContentID"] == bookmark["ContentID"]), None)
        try:
            if self.stage.stopped:
                raise RuntimeError(STOPPED)
            self.bookmarks.outcome.value = "asking the portal for the bookmark interface…"
            self.error, answer = None, self.ask_interface(bookmark)
            at = float(answer["ContentBM"])
            self.bookmarks.outcome.value = f"playing from {format_clock(at)}…"
            self.comparison.show(episode.truth if episode else None, None)
            self._start_player(answer["url"], at, f"resume at {format_clock(at)}", episode)
        except Exception as exc:  # a button's handler has nobody to raise to
            self.error = exc
            self.say(f"resume failed: {exc}")
            self.bookmarks.outcome.value = html.escape(f"resume failed: {exc}")

    def wait_for_resume(self, timeout: float = 10.0) -> ResumeCheck:
        """Wait for the first frame after the latest resume; returns how it compares."""

        def resumed() -> ResumeCheck | None:
            if self.error is not None:
                raise self.error
            episode = next((e for e in reversed(self.episodes) if e.resumed_player), None)
            return episode.check if episode is not None else None

        check: ResumeCheck = self.stage.wait(resumed, timeout, "frame after the resume")
        self.say(f"resumed: {check.before} before, {check.after} after: {check.describe()}")
        return check

    @property
    def resume_button(self) -> w.Button:
        """The Resume button of the latest interrupted program on the bookmark list."""
        return self.bookmarks.button(
            self.episodes[-1].interruption.content_id if self.episodes else None)

    def close(self) -> None:
        """Close the players and the link, and say so on the buttons (the stage calls it
        when it stops): a dashboard that stopped must not look live."""
        for player in self.players:  # idempotent: ended ones are left as they are
            player.close_abruptly()
        self.cutter.stop()
        for button in [self.link.toggle, *self.bookmarks.buttons.values()]:
            button.disabled = True
        self.view.label.value = self.bookmarks.outcome.value = STOPPED
