"""The whole story with FFmpeg's RTSP client (PyAV) as the terminal's player.

A standard player knows nothing of bookmarks: it opens a URL and plays. Here the viewer
logs in at the portal with the project's portal client, gets the play URL and opens it
in PyAV running in a process of its own (tests/pyav_player.py). The handset then loses
its signal the hard way: the process is frozen with SIGSTOP, sockets open, nothing read
or answered. The streaming server's heartbeat goes unanswered, it declares the
interruption and its outbox stores the bookmark at the portal. The viewer logs in again,
asks the bookmark interface for the resume URL and opens it in a fresh PyAV, which does
no seek of its own: the server starts it at the keyframe at or before the bookmark. So
its first frame is at most one GOP (50 frames) before the bookmark's frame, never after
it, and never after the last frame the frozen player had shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyav_player import PlayerProcess
from story import DEADLINE, GOP, Story, frame_of, running_story


@pytest.fixture
def story(tmp_path: Path, sample_dir: Path) -> Iterator[Story]:
    with running_story(tmp_path / "data", sample_dir) as s:
        yield s


def test_ffmpeg_player_frozen_then_resumed_from_the_bookmark(story: Story) -> None:
    portal = story.login("alice")
    play = portal.play("sample")
    with PlayerProcess(play["url"]) as handset:
        handset.wait_frames(frame_of(3.2) + 1, deadline=DEADLINE)
        handset.freeze()
        event = story.wait_interruption(play["EncryptToken"])
        delivery = story.wait_answered(play["EncryptToken"])
        seen = [f.index for f in handset.frames if f.index >= 0]
    # The server gave the frozen player up and released its session.
    streaming = story.system.streaming
    assert streaming.call(lambda: event.session_id not in streaming.sessions)
    assert (event.user_id, event.content_id) == ("alice", "sample")
    assert delivery.status == "delivered"

    again = story.login("alice")
    marks = again.bookmarks()
    assert [m["ContentID"] for m in marks] == ["sample"]
    bookmark = frame_of(marks[0]["ContentBM"])
    assert 0 < bookmark <= max(seen) + 1  # the bookmark is a frame the viewer reached

    interface = again.bookmark_interface(marks[0])
    with PlayerProcess(interface["url"]) as fresh:
        first = fresh.wait_frames(1, deadline=DEADLINE)[0].index
    assert bookmark - GOP <= first <= bookmark
    assert first <= max(seen) + 1  # nothing skipped
