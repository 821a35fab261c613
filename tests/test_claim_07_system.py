"""Claim 7: the system, every party doing its part, and the commands users run.

The claim in our words: a system of a streaming server and a portal. The streaming server
watches the state of each terminal's connection and, when one breaks abnormally, takes
down the user information and the program information (program number, play time point)
and sends the portal a bookmark-set request. The portal saves it as a bookmark, answers
the streaming server, returns a user's bookmarks when asked, and, for the program and
time point the terminal picks, has the program sent to the terminal from that point.

- One test runs the whole story, as ``python -m rtsp_resume demo`` tells it, here with
  RTP over UDP (the demo uses TCP) and checks each party: the streaming server detected
  the break and released the session, its outbox delivered the request exactly once, the
  portal stored and returned the bookmark, the terminal resumed on its frame.
- ``python -m rtsp_resume demo``, the demo users run, exits 0 and prints the timeline.
- ``python -m rtsp_resume serve`` (both servers in one process) on free ports prints the
  portal URL and the accounts, answers, and stops with exit status 0 on Ctrl-C.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from story import (
    DEADLINE,
    HEARTBEAT_TIMEOUT,
    RawRtsp,
    Service,
    Story,
    frame_of,
    free_port,
    running_story,
)

from rtsp_resume.client import PortalClient
from rtsp_resume.player import Player
from rtsp_resume.together import DEMO_USERS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def story(tmp_path: Path, sample_dir: Path) -> Iterator[Story]:
    with running_story(tmp_path / "data", sample_dir) as s:
        yield s


def test_claim_7_each_party_does_its_part_in_the_whole_story(story: Story) -> None:
    streaming, outbox = story.system.streaming, story.system.outbox
    assert outbox is not None
    portal = story.login("alice")
    cut = story.play_and_cut(portal, "sample", seconds=3.2, transport="udp")

    # The streaming server judged the connection state: silent past the timeout while
    # its heartbeats went unanswered; it dropped the session at once.
    event = cut.interruption
    assert (event.session_id, event.transport) == (cut.player.session_id, "udp")
    assert event.unanswered >= 1
    assert event.detected_at - event.last_life >= HEARTBEAT_TIMEOUT - 0.05
    assert streaming.call(lambda: event.session_id not in streaming.sessions)
    # It recorded user and program information: who, which program, which time point.
    assert (event.user_id, event.content_id) == ("alice", "sample")
    assert 0 < event.position <= cut.last_seen.pts

    # The outbox sent one BookMarkReq and the portal took it the first time.
    assert [d.nonce for d in outbox.deliveries()] == [cut.delivery.nonce]
    assert (cut.delivery.status, cut.delivery.attempts) == ("delivered", 1)
    assert cut.delivery.response is not None
    assert cut.delivery.response["ResultCode"] == 0

    # The portal saved it, once, and returns it to the user at the next login.
    history = story.store.history("alice")
    assert [(h["nonce"], h["content_id"]) for h in history] == [(cut.delivery.nonce, "sample")]
    again = story.login("alice")
    marks = again.bookmarks()
    assert [(m["ContentID"], m["ContentBM"]) for m in marks] == [
        ("sample", cut.delivery.request["ContentBM"])]

    # For the program and time point picked, the program is sent from that point.
    interface = again.bookmark_interface(marks[0])
    resumed = Player(interface["url"], transport="udp",
                     start=float(interface["ContentBM"])).start()
    try:
        assert resumed.wait_frames(1, timeout=DEADLINE), resumed.error
        first = resumed.frames[0]
    finally:
        resumed.stop()
    assert first.index == frame_of(marks[0]["ContentBM"])
    assert first.index <= cut.last_seen.index + 1  # the viewer missed nothing


TIMELINE = [
    r"logs in: UserID alice",
    r"plays 'sample'",
    r"THE LINK IS CUT .* Last frame shown: frame (?P<before>\d+)",
    r"heartbeat OPTIONS CSeq \d+ sent: no answer",
    r"interruption detected [\d.]+ s after the cut",
    r"BookMarkReq -> portal: \{.*\"ContentBM\"",
    r"BookMarkResp <- portal: \{.*\"ResultCode\": 0",
    r"logs in again",
    r"the portal returns 1 bookmark\(s\): sample at",
    r"bookmark interface returned: resume at",
    r"resumed: first frame",
    r"first frame after resume: frame (?P<after>\d+)",
    r"nothing skipped",
]


def test_claim_7_the_demo_runs_the_story_and_prints_the_timeline(sample_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtsp_resume", "demo", "--media", str(sample_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    position, found = 0, {}
    for step in TIMELINE:  # every step, in this order
        regex = re.compile(step)
        for index in range(position, len(lines)):
            if match := regex.search(lines[index]):
                found.update(match.groupdict())
                position = index + 1
                break
        else:
            raise AssertionError(f"no {step!r} after line {position}:\n{done.stdout}")
    assert int(found["after"]) <= int(found["before"]) + 1
    assert "ffplay" in done.stdout


def test_claim_7_serve_runs_both_servers_until_ctrl_c(tmp_path: Path, sample_dir: Path) -> None:
    rtsp_port, portal_port = free_port(), free_port()
    with Service("serve", "--media", str(sample_dir), "--data", str(tmp_path / "data"),
                 "--rtsp-port", str(rtsp_port), "--portal-port", str(portal_port),
                 "--heartbeat-interval", "0.5", "--heartbeat-timeout", "2") as serve:
        url = serve.wait_line(r"portal: +(http://127\.0\.0\.1:\d+)/").group(1)
        assert url == f"http://127.0.0.1:{portal_port}"
        accounts = serve.wait_line(r"accounts: +(.*)").group(1)
        assert accounts == ", ".join(f"{n} / {p}" for n, p in DEMO_USERS)
        serve.wait_line(r"heartbeat: every 0.5 s, interrupted after 2 s")

        # The portal answers with the printed account, and hands out URLs of the
        # streaming server in the same process, which answers too.
        client = PortalClient(url)
        client.login(*DEMO_USERS[0])
        assert "sample" in [c["ContentID"] for c in client.contents()]
        play_url = client.play("sample")["url"]
        assert play_url.startswith(f"rtsp://127.0.0.1:{rtsp_port}/sample?token=")
        with RawRtsp("127.0.0.1", rtsp_port) as conn:
            assert conn.request("DESCRIBE", play_url).status == 200

        assert serve.interrupt() == 0, serve.output
        assert "stopping" in serve.output
