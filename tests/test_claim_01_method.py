"""Claim 1, end to end: the reverse bookmark method with the real streaming server.

The claim in our words: when the streaming server decides that a terminal's connection
broke abnormally, it takes down who was watching (user information) and what and where
(the program's number and its play time point), and sends both to the portal in a
bookmark-set request; the portal keeps them as a bookmark and answers the server. When
the user logs in to the portal again and asks for bookmarks, the portal finds every
bookmark of that user and returns them; the user picks one, and the terminal plays that
program from the streaming server starting at the bookmark's time point.

Here with real sockets on loopback: the project's own terminal plays through a link that
is cut, the streaming server notices by heartbeat and its outbox posts BookMarkReq to the
portal, the viewer logs in again, sees both interrupted programs (newest first), picks
one and resumes on exactly the bookmark's frame. The claim's boundary: a viewing that
ends normally (TEARDOWN) is no abnormal interruption and leaves no bookmark.

(The portal alone, over HTTP, is tested in test_portal_claims_http.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from story import FPS, Story, frame_of, running_story

from rtsp_resume import tokens
from rtsp_resume.player import Player


@pytest.fixture
def story(tmp_path: Path, sample_dir: Path) -> Iterator[Story]:
    with running_story(tmp_path / "data", sample_dir) as s:
        yield s


def test_claim_1_interrupted_programs_are_bookmarked_listed_and_resumed_on_the_frame(
    story: Story,
) -> None:
    portal = story.login("alice")
    first = story.play_and_cut(portal, "sample", seconds=3.0)
    second = story.play_and_cut(portal, "sample_slices", seconds=3.0)

    # The streaming server judged both connections interrupted and recorded the user
    # information, the program number and the play time point.
    for cut, content in ((first, "sample"), (second, "sample_slices")):
        event = cut.interruption
        assert (event.user_id, event.content_id) == ("alice", content)
        assert event.session_id == cut.player.session_id
        assert event.play_token == cut.token
        grant = tokens.verify_play_token(story.system.secret, cut.token, event.detected_at)
        assert event.login_session == grant.login_session
        # A bookmark the viewer reached: never past the last frame shown before the cut.
        assert 0 < event.position <= cut.last_seen.pts
        # The request carried both kinds of information; the portal answered it.
        req = cut.delivery.request
        assert req == {"EncryptToken": cut.token, "UserToken": grant.login_session,
                       "ContentID": content, "ContentBM": round(event.position, 3),
                       "UserID": "alice", "InterruptedAt": round(event.detected_at, 3)}
        assert cut.delivery.status == "delivered"
        assert cut.delivery.response is not None
        assert (cut.delivery.response["ResultCode"], cut.delivery.response["UserID"]) == (
            0, "alice")
        # ... and the portal saved it as a bookmark with the tokens of that viewing.
        saved = story.store.bookmark("alice", content)
        assert saved is not None
        assert (saved.position, saved.encrypt_token, saved.login_session) == (
            req["ContentBM"], cut.token, grant.login_session)

    # Logging in again (a new UserToken): all of alice's bookmarks, the newest first.
    again = story.login("alice")
    assert again.user_token != portal.user_token
    marks = again.bookmarks()
    assert [(m["ContentID"], m["ContentBM"], m["UserID"]) for m in marks] == [
        ("sample_slices", second.delivery.request["ContentBM"], "alice"),
        ("sample", first.delivery.request["ContentBM"], "alice"),
    ]
    assert [m["EncryptToken"] for m in marks] == [second.token, first.token]
    # Looked up by the requesting user: bob has none of them.
    assert story.login("bob").bookmarks() == []

    # The user picks the older one; the terminal plays that program from its time point.
    chosen = marks[1]
    interface = again.bookmark_interface(chosen)
    assert interface["ContentID"] == "sample"
    resumed = Player(interface["url"], start=float(interface["ContentBM"]), exact=True).start()
    try:
        assert resumed.wait_frames(1, timeout=10), resumed.error
        shown = resumed.frames[0]
    finally:
        resumed.stop()
    assert shown.index == frame_of(chosen["ContentBM"])
    assert shown.pts == pytest.approx(chosen["ContentBM"], abs=0.5 / FPS + 1e-6)
    # Nothing the viewer had not seen was skipped.
    assert shown.index <= first.last_seen.index + 1


def test_claim_1_a_normal_end_is_no_interruption_and_leaves_no_bookmark(story: Story) -> None:
    portal = story.login("alice")
    play = portal.play("sample")
    player = Player(story.through_link(play["url"])).start()
    session = player.session_id
    assert player.wait_frames(25, timeout=10), player.error
    assert session in story.system.streaming.sessions
    player.stop()  # TEARDOWN: the viewer ended it

    # The server forgot the session at once: no heartbeat can time out for it any more.
    assert story.system.streaming.call(lambda: session not in story.system.streaming.sessions)
    assert [e for e in story.system.streaming.interruptions if e.session_id == session] == []
    assert story.system.outbox is not None
    assert story.system.outbox.deliveries() == []
    assert portal.bookmarks() == []
    assert story.store.history("alice") == []
