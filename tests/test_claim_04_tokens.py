"""Claims 4 and 10: the portal hands out the bookmark interface only after validating the
request's play token (EncryptToken) and temporary login token (UserToken) against what it
stored.

The reading this project takes: "matches what the portal stored" means the EncryptToken is the
very token stored with that user's bookmark, and the UserToken is a currently valid login
token of the same user (each login issues a new one). Each rule is shown passing once and
then broken in one way at a time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from portal_support import Portal, running_portal

from rtsp_resume import tokens
from rtsp_resume.portal.store import DB_NAME


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


def interrupted(portal: Portal, position: float = 12.4) -> tuple[dict, str]:
    """Alice watched to ``position`` and was cut off; she then logs in again."""
    first_login = portal.login("alice")
    portal.interrupt(first_login, position)
    mark = portal.bookmarks(first_login)[0]
    return mark, portal.login("alice")


def request(mark: dict, user_token: str, **changes: object) -> dict:
    body = {"EncryptToken": mark["EncryptToken"], "UserToken": user_token,
            "ContentID": mark["ContentID"], "ContentBM": mark["ContentBM"]}
    body.update(changes)
    return body


def test_matching_tokens_return_the_bookmark_interface(portal: Portal) -> None:
    mark, user_token = interrupted(portal, 12.4)
    reply = portal.interface(**request(mark, user_token))
    assert reply.status == 200, reply.text
    answer = reply.json
    assert answer["ContentBM"] == 12.4
    grant = tokens.verify_play_token(portal.secret, answer["EncryptToken"], portal.clock())
    # The fresh token belongs to the new login and starts at the bookmark.
    assert (grant.user_id, grant.content_id, grant.start) == ("alice", "sample", 12.4)
    assert grant.login_session == portal.server.store.session_for_token(user_token).session_id
    assert answer["url"] == f"rtsp://127.0.0.1:8554/sample?token={answer['EncryptToken']}"


def test_tampered_play_token_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal)
    token = mark["EncryptToken"]
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    reply = portal.interface(**request(mark, user_token, EncryptToken=tampered))
    assert (reply.status, reply.json["error"]) == (403, "token_mismatch")


def test_a_genuine_play_token_that_is_not_the_stored_one_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal)
    other = portal.play(user_token)["EncryptToken"]  # signed by the portal, never bookmarked
    reply = portal.interface(**request(mark, user_token, EncryptToken=other))
    assert (reply.status, reply.json["error"]) == (403, "token_mismatch")


def test_the_token_of_a_replaced_bookmark_refused(portal: Portal) -> None:
    old_mark, user_token = interrupted(portal, 5.0)
    portal.interrupt(user_token, 9.0)  # a later interruption replaces the bookmark
    reply = portal.interface(**request(old_mark, user_token))
    assert (reply.status, reply.json["error"]) == (403, "token_mismatch")


def test_a_forged_token_written_into_the_database_is_still_refused(portal: Portal,
                                                                   tmp_path: Path) -> None:
    mark, user_token = interrupted(portal)
    forged = tokens.issue_play_token(b"k" * 32, user_id="alice", content_id="sample",
                                     login_session="ls-x", now=portal.clock())
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:
        db.execute("UPDATE bookmarks SET encrypt_token = ?", (forged,))
    reply = portal.interface(**request(mark, user_token, EncryptToken=forged))
    assert (reply.status, reply.json["error"]) == (403, "bad_play_token")


def test_expired_login_token_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal)
    portal.clock.advance(8 * 3600 + 1)  # past the UserToken's time to live
    reply = portal.interface(**request(mark, user_token))
    assert (reply.status, reply.json["error"]) == (403, "invalid_user_token")
    # Logging in again (a new temporary login token) makes it pass.
    fresh = portal.login("alice")
    assert portal.interface(**request(mark, fresh)).status == 200


def test_logged_out_login_token_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal)
    assert portal.http.post("/api/logout", bearer=user_token).status == 200
    reply = portal.interface(**request(mark, user_token))
    assert (reply.status, reply.json["error"]) == (403, "invalid_user_token")


def test_unknown_or_forged_login_token_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal)
    for bad in ("not-a-token", user_token[:-1] + ("A" if user_token[-1] != "A" else "B")):
        reply = portal.interface(**request(mark, bad))
        assert (reply.status, reply.json["error"]) == (403, "invalid_user_token")


def test_another_users_login_token_refused(portal: Portal) -> None:
    mark, _alice = interrupted(portal)
    bob = portal.login("bob")
    reply = portal.interface(**request(mark, bob))
    assert (reply.status, reply.json["error"]) == (403, "no_bookmark")
    # Bob with a bookmark of his own for the same program still cannot use Alice's token.
    portal.interrupt(bob, 3.0)
    reply = portal.interface(**request(mark, bob))
    assert (reply.status, reply.json["error"]) == (403, "token_mismatch")


def test_bearer_of_another_user_refused(portal: Portal) -> None:
    mark, alice = interrupted(portal)
    bob = portal.login("bob")
    reply = portal.http.post("/api/bookmark/interface", request(mark, alice), bearer=bob)
    assert (reply.status, reply.json["error"]) == (403, "user_mismatch")
    same = portal.http.post("/api/bookmark/interface", request(mark, alice), bearer=alice)
    assert same.status == 200


def test_changed_position_or_content_refused(portal: Portal) -> None:
    mark, user_token = interrupted(portal, 12.4)
    reply = portal.interface(**request(mark, user_token, ContentBM=20.0))
    assert (reply.status, reply.json["error"]) == (403, "position_mismatch")
    reply = portal.interface(**request(mark, user_token, ContentID="sample_slices"))
    assert (reply.status, reply.json["error"]) == (403, "no_bookmark")


def test_an_old_play_token_still_identifies_its_bookmark(portal: Portal) -> None:
    # The bookmark outlives the play session: its token (6 h) may have expired by the time
    # the viewer comes back, and a fresh token is issued anyway. Only the login must be
    # current.
    mark, _ = interrupted(portal)
    portal.clock.advance(24 * 3600)
    reply = portal.interface(**request(mark, portal.login("alice")))
    assert reply.status == 200, reply.text
    tokens.verify_play_token(portal.secret, reply.json["EncryptToken"], portal.clock())
