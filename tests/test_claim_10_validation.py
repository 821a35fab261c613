"""Claim 10, end to end: in the system, the bookmark interface is given only to a request
whose play token and temporary login token match what the portal stored.

The claim in our words: the program information the streaming server reports carries the
play token (EncryptToken) and the viewer's temporary login token; when the terminal later
asks for the bookmark interface, the portal checks both against what it keeps and hands
the interface out only if they match.

Claim 4 states the same rule for the method; test_claim_04_tokens.py breaks it at the
portal alone, one field at a time. Here the bookmark comes from a real interruption (own
terminal, link cut, heartbeat, the server's signed reverse call), and each refusal is
checked on both sides of the system: the portal answers 403, and the streaming server
would not play for the refused request either, since no resume URL was given out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from story import Cut, RawRtsp, Story, frame_of, running_story

from rtsp_resume import tokens
from rtsp_resume.client import PortalClient, PortalError, interface_request
from rtsp_resume.player import Player


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path
                ) -> Iterator[tuple[Story, Cut, dict[str, Any]]]:
    """alice's viewing of the sample was cut; she has logged in again and sees it listed."""
    with running_story(tmp_path_factory.mktemp("claim10"), sample_dir) as story:
        cut = story.play_and_cut(story.login("alice"), "sample", seconds=2.5)
        assert cut.delivery.status == "delivered"
        marks = story.login("alice").bookmarks()
        assert [m["ContentID"] for m in marks] == ["sample"]
        yield story, cut, marks[0]


def assert_plays_from_the_bookmark(interface: dict[str, Any], mark: dict[str, Any]) -> None:
    """The interface's URL, played from its ContentBM, first shows the bookmark's frame."""
    player = Player(interface["url"], start=float(interface["ContentBM"])).start()
    try:
        assert player.wait_frames(1, timeout=10), player.error
        assert player.frames[0].index == frame_of(float(mark["ContentBM"]))
    finally:
        player.stop()


def ask(portal: PortalClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/bookmark/interface with a hand-made body (the client's own call would
    always send its current login)."""
    return portal._call("POST", "/api/bookmark/interface", body, dict)


def refused(portal: PortalClient, body: dict[str, Any]) -> int | None:
    with pytest.raises(PortalError) as caught:
        ask(portal, body)
    return caught.value.status


def test_matching_tokens_get_the_interface_and_it_plays_from_the_bookmark(interrupted) -> None:
    story, cut, mark = interrupted
    portal = story.login("alice")
    # The EncryptToken the portal stored is the one the streaming server reported.
    assert mark["EncryptToken"] == cut.interruption.play_token == cut.token
    interface = ask(portal, interface_request(mark, portal.user_token))
    assert interface["ContentBM"] == mark["ContentBM"]
    assert_plays_from_the_bookmark(interface, mark)


def test_a_play_token_other_than_the_stored_one_is_refused(interrupted) -> None:
    story, _, mark = interrupted
    portal = story.login("alice")
    # A genuine, correctly signed token of alice's, for the same program, but not the
    # one stored with this bookmark: it was never reported by the streaming server.
    fresh = portal.play("sample")["EncryptToken"]
    body = interface_request(mark, portal.user_token) | {"EncryptToken": fresh}
    assert refused(portal, body) == 403


def test_a_tampered_play_token_is_refused(interrupted) -> None:
    story, _, mark = interrupted
    portal = story.login("alice")
    payload, mac = mark["EncryptToken"].split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    body = interface_request(mark, portal.user_token) | {"EncryptToken": f"{payload}.{flipped}"}
    assert refused(portal, body) == 403
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_play_token(story.system.secret, f"{payload}.{flipped}", 0.0)


def test_a_logged_out_login_token_is_refused(interrupted) -> None:
    story, _, mark = interrupted
    portal = story.login("alice")
    old_token = portal.user_token
    portal.logout()
    again = story.login("alice")
    assert refused(again, interface_request(mark, old_token)) in (401, 403)


def test_another_users_login_token_is_refused(interrupted) -> None:
    story, _, mark = interrupted
    bob = story.login("bob")
    # bob holds a perfectly valid login token, and alice's stored play token.
    assert refused(bob, interface_request(mark, bob.user_token)) in (401, 403)


def test_a_changed_program_or_time_point_is_refused(interrupted) -> None:
    story, _, mark = interrupted
    portal = story.login("alice")
    genuine = interface_request(mark, portal.user_token)
    assert refused(portal, genuine | {"ContentID": "sample_slices"}) in (403, 404)
    assert refused(portal, genuine | {"ContentBM": float(mark["ContentBM"]) + 5}) == 403


def test_a_short_lived_play_token_starts_a_session_that_outlives_it(
    tmp_path: Path, sample_dir: Path,
) -> None:
    """Expiry governs starting a session, not the session it started nor its bookmark: a
    viewing that runs past its token's expiry plays on (PAUSE and PLAY included), and
    when it is cut its bookmark is stored and its bookmark interface given."""
    ttl = 2.0
    with running_story(tmp_path, sample_dir, portal={"play_ttl": ttl}) as story:
        portal = story.login("alice")
        play = portal.play("sample")
        issued = tokens.verify_play_token(story.system.secret, play["EncryptToken"],
                                          now=0.0, leeway=float("inf")).issued
        player = Player(story.through_link(play["url"])).start()
        try:
            assert player.wait_for(lambda: bool(player.frames)
                                   and player.frames[-1].wallclock > issued + ttl + 0.5,
                                   timeout=ttl + 10), player.error
            player.pause()  # the token has expired: the session's own requests still work
            shown = len(player.frames)
            player.resume()
            assert player.wait_for(lambda: len(player.frames) > shown + 5, timeout=10)
            story.cutter.cut()
            delivery = story.wait_answered(play["EncryptToken"])
        finally:
            player.close_abruptly()
            story.cutter.restore()
        assert delivery.status == "delivered", delivery.response
        # The expired token starts nothing new.
        host, port = story.system.host, story.system.streaming.port
        with RawRtsp(host, port) as raw:
            assert raw.request("DESCRIBE", play["url"]).status == 401
        # The bookmark is listed and its interface plays from it, with a fresh token.
        again = story.login("alice")
        (mark,) = again.bookmarks()
        interface = again.bookmark_interface(mark)
        assert interface["EncryptToken"] != play["EncryptToken"]
        assert_plays_from_the_bookmark(interface, mark)
