"""``make demo``: the patent's whole story, headless, told as a timeline.

The viewer logs in and plays the sample through a link that is then cut (a lost signal);
heartbeats go unanswered (claim 2); the server declares the interruption and the outbox
sends BookMarkReq to the portal, which answers BookMarkResp (claims 1, 3, 5, 6); the viewer
logs in again, lists the bookmarks (claim 1), asks for the bookmark interface (claims 3, 4,
9, 10) and resumes. Exit status 0 only if the first frame after the resume skipped nothing
the viewer had not seen. All real: loopback sockets, RTSP/RTP, the portal, H.264 decoding."""

from __future__ import annotations

import json
import queue
import tempfile
import time
from typing import Any

from rtsp_resume.client import PortalClient
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import DEMO_USERS, System


def _show(data: dict[str, Any]) -> str:
    return json.dumps({k: (v[:16] + "..." if isinstance(v, str) and len(v) > 24 else v)
                       for k, v in data.items()})


def run(media: str, transport: str = "tcp", play_seconds: float = 6.0,
        config: ServerConfig | None = None) -> int:
    """Tell the story; return 0 when the first frame after the resume skipped nothing."""
    t0 = time.time()

    def say(text: str, at: float | None = None) -> None:  # the timeline, told by this thread
        print(f"[{(time.time() if at is None else at) - t0:6.2f} s] {text}", flush=True)

    config = config or ServerConfig()
    user, password = DEMO_USERS[0]
    with (tempfile.TemporaryDirectory(prefix="rtsp-resume-demo-") as data,
          System(media, data, config=config) as system,
          LinkCutter(to=(system.host, system.streaming.port)) as cutter):
        # After the outbox's listener: an interruption heard here has its BookMarkReq queued.
        interruptions: queue.SimpleQueue[Interruption] = queue.SimpleQueue()
        system.streaming.listeners.append(interruptions.put)
        assert system.outbox is not None
        say(f"portal {system.portal_url}/ and streaming server {system.rtsp_url}/ up; heartbeat "
            f"every {config.heartbeat_interval:g} s, timeout {config.heartbeat_timeout:g} s")
        portal = PortalClient(system.portal_url)
        login = portal.login(user, password)
        say(f"{user} logs in: UserID {login['UserID']}, a new UserToken")
        content = portal.contents()[0]
        play = portal.play(content["ContentID"])
        say(f"plays '{content['ContentID']}' ({content['duration']:.0f} s): "
            f"the portal signs a play token (EncryptToken) into the URL")
        url = play["url"].replace(f":{system.streaming.port}/", f":{cutter.port}/")

        player = Player(url, transport=transport).start()
        say(f"player connected through the link ({transport}); session {player.session_id}")
        player.wait_for(lambda: bool(player.frames) and player.frames[-1].pts
                        >= play_seconds, timeout=play_seconds + 10)
        cutter.cut()
        cut_at, before = time.time(), player.last_frame
        say(f"THE LINK IS CUT (signal lost). Last frame shown: {before}")
        try:
            event = interruptions.get(timeout=config.heartbeat_timeout + 5)
        except queue.Empty:
            say("no interruption detected: FAIL")
            return 1
        for at, kind, cseq in event.heartbeat_log:
            if at >= cut_at and kind == "sent":
                say(f"heartbeat OPTIONS CSeq {cseq} sent: no answer", at=at)
        # Less than the timeout after the cut: the silence began at the last answer,
        # which came before the cut.
        say(f"interruption detected {event.detected_at - cut_at:.2f} s after the cut: "
            f"the last answer came {cut_at - event.last_life:.2f} s before it, and "
            f"{event.detected_at - event.last_life:.2f} s of silence reach the "
            f"{config.heartbeat_timeout:g} s timeout; position {event.position:.2f} s "
            f"by '{event.estimator}' (frames_sent would say {event.frames_sent:.2f} s)",
            at=event.detected_at)
        for queued in system.outbox.deliveries():
            delivery = system.outbox.wait(queued.nonce, 10) or queued
            say(f"BookMarkReq -> portal: {_show(delivery.request)}")
            if delivery.response is not None:
                say(f"BookMarkResp <- portal: {_show(delivery.response)}")
        player.close_abruptly()
        cutter.restore()

        portal.login(user, password)
        say(f"{user} logs in again (another UserToken)")
        bookmarks = portal.bookmarks()
        say(f"the portal returns {len(bookmarks)} bookmark(s): " + ", ".join(
            f"{b['ContentID']} at {b['ContentBM']:.2f} s" for b in bookmarks))
        if not bookmarks:
            say("no bookmark: FAIL")
            return 1
        chosen = bookmarks[0]
        say(f"{user} presses the bookmark button of '{chosen['ContentID']}'")
        interface = portal.bookmark_interface(chosen)
        say(f"bookmark interface returned: resume at {interface['ContentBM']:.2f} s, "
            f"URL with a fresh play token")
        pressed = time.time()
        resumed = Player(interface["url"], transport=transport,
                         start=float(interface["ContentBM"])).start()
        if not resumed.wait_frames(1, timeout=10):
            say("no frame after resume: FAIL")
            return 1
        first = resumed.frames[0]
        say(f"resumed: first frame {first.wallclock - pressed:.3f} s after pressing "
            f"resume (the server started at the keyframe {resumed.range_start:.2f} s)")
        resumed.stop()
        say(f"last frame before the cut: {before}")
        say(f"first frame after resume: {first}")
        skipped = (first.index or 0) - ((before.index or 0) + 1) if before else 0
        if skipped > 0:
            say(f"the resume SKIPPED {skipped} frame(s): FAIL")
            return 1
        say(f"nothing skipped; {-skipped} frame(s) shown again "
            f"(the '{config.position}' estimator stays on the safe side)")
        print(f"\nTry it with a real player: python -m rtsp_resume serve, log in at the "
              f"portal as {user}/{password}, press Play and run the ffplay command shown.")
        return 0
