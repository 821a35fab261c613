"""Claim 9: the system's two interfaces, each between two separate parties.

The claim in our words: in the system of claim 7 there is a reverse bookmark-set
interface between the streaming server and the portal, and a bookmark interface between
the terminal and the streaming server; the terminal asks the portal for the bookmark
interface, the portal returns it, and the terminal calls it to fetch and play the program
from the streaming server.

To make "between" literal, the portal and the streaming server run here as two processes
started the way a user starts them (``serve-portal`` and ``serve-rtsp --portal-url``),
sharing only the secret file; the terminal is the project's own player behind a link
that is cut.

- Reverse bookmark-set interface: the interruption detected in the streaming server's
  process arrives as a bookmark in the portal's process, through the server's outbox.
- Bookmark interface: what the portal returns is a resume URL whose token is what
  authorises the RTSP session. Without a token, with a token for another program, with
  an expired or tampered token, the streaming server answers 401 and sends nothing; with
  the interface's token it describes, sets up and plays from the bookmark.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from story import (
    DEADLINE,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    RawRtsp,
    Service,
    frame_of,
    free_port,
)

from rtsp_resume import rtsp, tokens
from rtsp_resume.client import PortalClient
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player

USER, PASSWORD = "carol", "carol-pw"


@dataclass
class TwoProcesses:
    portal: Service
    streaming: Service
    portal_url: str
    rtsp_port: int
    data: Path
    outbox: Path
    bookmark: dict[str, Any]  # carol's bookmark, as the portal lists it
    last_seen: int  # the last frame her terminal showed before the cut

    def login(self) -> PortalClient:
        client = PortalClient(self.portal_url)
        client.login(USER, PASSWORD)
        return client


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path
           ) -> Iterator[TwoProcesses]:
    base = tmp_path_factory.mktemp("claim9")
    data, outbox = base / "portal-data", base / "outbox.db"
    rtsp_port = free_port()
    with Service("serve-portal", "--port", "0", "--data", str(data), "--media",
                 str(sample_dir), "--rtsp-url", f"rtsp://127.0.0.1:{rtsp_port}",
                 "--user", f"{USER}:{PASSWORD}") as portal:
        portal_url = portal.wait_line(r"portal: (http://\S+)/ ").group(1)
        with Service("serve-rtsp", "--media", str(sample_dir), "--port", str(rtsp_port),
                     "--portal-url", portal_url, "--secret-file", str(data / "secret"),
                     "--outbox", str(outbox),
                     "--heartbeat-interval", str(HEARTBEAT_INTERVAL),
                     "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)) as streaming:
            streaming.wait_line(rf"rtsp://127\.0\.0\.1:{rtsp_port}/sample ")
            yield interrupt_once(portal, streaming, portal_url, rtsp_port, data, outbox)


def interrupt_once(portal: Service, streaming: Service, portal_url: str, rtsp_port: int,
                   data: Path, outbox: Path) -> TwoProcesses:
    """Carol plays the sample through a link that is cut after about 3 s."""
    client = PortalClient(portal_url)
    client.login(USER, PASSWORD)
    play = client.play("sample")
    with LinkCutter(to=("127.0.0.1", rtsp_port)).start() as cutter:
        url = play["url"].replace(f":{rtsp_port}/", f":{cutter.port}/")
        player = Player(url).start()
        try:
            assert player.wait_for(lambda: bool(player.frames) and player.frames[-1].pts
                                   >= 3.2, timeout=DEADLINE), player.error
            cutter.cut()
            # Another process decides and delivers: ask the portal until it knows, with
            # a deadline (heartbeat timeout plus the outbox's first try, with margin).
            deadline = time.monotonic() + DEADLINE
            while not (marks := client.bookmarks()):
                assert time.monotonic() < deadline, "no bookmark reached the portal"
                time.sleep(0.05)
            last_seen = player.last_frame
            assert last_seen is not None and last_seen.index is not None
        finally:
            player.close_abruptly()
    return TwoProcesses(portal, streaming, portal_url, rtsp_port, data, outbox,
                        marks[0], last_seen.index)


def outbox_rows(outbox: Path) -> list[tuple[str, int, str]]:
    """(status, attempts, body) of every request in the streaming server's outboxes."""
    rows = []
    for path in outbox.parent.glob(f"{outbox.stem}*.db"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows += db.execute("SELECT status, attempts, body FROM outbox").fetchall()
    return rows


def test_claim_9_the_reverse_interface_carries_the_bookmark_from_one_process_to_the_other(
    system: TwoProcesses,
) -> None:
    mark = system.bookmark
    assert (mark["UserID"], mark["ContentID"]) == (USER, "sample")
    assert 0 < frame_of(mark["ContentBM"]) <= system.last_seen + 1
    # The streaming server's process used its outbox: one request, delivered once. (With
    # several workers, the default on a machine of several CPUs, each has an outbox-n.db.)
    # The portal may list the bookmark a moment before the outbox has noted its answer.
    deadline = time.monotonic() + DEADLINE
    while not (rows := outbox_rows(system.outbox)) or rows[0][0] == "pending":
        assert time.monotonic() < deadline, "the outbox never noted the portal's answer"
        time.sleep(0.05)
    assert [(status, attempts) for status, attempts, _ in rows] == [("delivered", 1)]
    assert f'"ContentBM":{mark["ContentBM"]}' in rows[0][2]
    assert f'"EncryptToken":"{mark["EncryptToken"]}"' in rows[0][2]


def test_claim_9_only_the_bookmark_interfaces_token_opens_the_rtsp_session(
    system: TwoProcesses,
) -> None:
    client = system.login()
    interface = client.bookmark_interface(system.bookmark)
    good = interface["EncryptToken"]
    base = f"rtsp://127.0.0.1:{system.rtsp_port}/sample"
    secret = tokens.load_or_create_secret(system.data / "secret")
    grant = tokens.verify_play_token(secret, good, time.time())
    other_program = client.play("sample_slices")["EncryptToken"]
    expired = tokens.issue_play_token(
        secret, user_id=USER, content_id="sample", login_session=grant.login_session,
        start=grant.start, ttl=60, now=time.time() - 3600)
    body, mac = good.split(".")
    tampered_start = tokens.issue_play_token(  # a later start, signed with a wrong key
        b"x" * 32, user_id=USER, content_id="sample", login_session=grant.login_session,
        start=20.0, now=time.time())
    refused = {
        "no token": base,
        "a token for another program": f"{base}?token={other_program}",
        "an expired token": f"{base}?token={expired}",
        "a tampered token": f"{base}?token={body}.{mac[::-1]}",
        "a token signed with another key": f"{base}?token={tampered_start}",
    }
    transport = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
    for why, url in refused.items():
        with RawRtsp("127.0.0.1", system.rtsp_port) as conn:
            assert conn.request("DESCRIBE", url).status == 401, why
            assert conn.request("SETUP", f"{url.replace('/sample', '/sample/track1')}",
                                transport).status == 401, why
            # PLAY needs a session, and only an authorised SETUP makes one.
            assert conn.request("PLAY", url).status == 455, why
            assert conn.media_frames == 0, why

    # The interface's own token: described, set up, and played from the bookmark's keyframe.
    url = interface["url"]
    with RawRtsp("127.0.0.1", system.rtsp_port) as conn:
        described = conn.request("DESCRIBE", url)
        assert described.status == 200 and b"m=video" in described.body
        setup = conn.request("SETUP", url.replace("/sample?", "/sample/track1?"), transport)
        assert setup.status == 200
        session, _ = rtsp.parse_session(setup.headers["Session"])
        played = conn.request("PLAY", url, {"Session": session})
        assert played.status == 200
        start, _ = rtsp.parse_range(played.headers["Range"])
        assert start is not None and 0 < start <= interface["ContentBM"]
        assert interface["ContentBM"] - start < 2.0  # the keyframe at or before it
        deadline = time.monotonic() + DEADLINE
        while conn.media_frames == 0:  # read on the server's reader thread: moments later
            assert time.monotonic() < deadline, "no media after PLAY"
            conn.request("GET_PARAMETER", url, {"Session": session})
        conn.request("TEARDOWN", url, {"Session": session})

    # And the terminal calling the interface shows the bookmark's frame first.
    player = Player(url, start=float(interface["ContentBM"])).start()
    try:
        assert player.wait_frames(1, timeout=DEADLINE), player.error
        assert player.frames[0].index == frame_of(interface["ContentBM"])
    finally:
        player.stop()
