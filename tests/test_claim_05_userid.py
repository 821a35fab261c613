"""Claim 5: the user information in the bookmark-set request includes the user identifier,
UserID, and it is what the portal files the bookmark under.

The portal checks UserID against the user the play token (EncryptToken) was issued to, so a
request naming another user, or nobody, is refused and stores nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from portal_support import DROP, Portal, running_portal

from rtsp_resume.portal import ResultCode


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


def test_bookmark_is_filed_under_the_userid(portal: Portal) -> None:
    alice, bob = portal.login("alice"), portal.login("bob")
    play = portal.play(alice)
    reply = portal.set_bookmark(portal.bookmark_request(play["EncryptToken"], 7.0))
    assert reply.status == 200
    assert reply.json["ResultCode"] == 0 and reply.json["UserID"] == "alice"
    assert [b["UserID"] for b in portal.bookmarks(alice)] == ["alice"]
    assert portal.bookmarks(bob) == []


def test_userid_of_another_user_refused(portal: Portal) -> None:
    alice, bob = portal.login("alice"), portal.login("bob")
    play = portal.play(alice)
    reply = portal.set_bookmark(portal.bookmark_request(play["EncryptToken"], 7.0, UserID="bob"))
    assert reply.status == 403
    assert reply.json["ResultCode"] == ResultCode.USER_MISMATCH
    assert reply.json["UserID"] == "bob"
    assert portal.bookmarks(alice) == [] and portal.bookmarks(bob) == []


@pytest.mark.parametrize("user_id", ["mallory", "ALICE", "alice ", "' OR 1=1 --"])
def test_unknown_userid_refused(portal: Portal, user_id: str) -> None:
    alice = portal.login("alice")
    play = portal.play(alice)
    reply = portal.set_bookmark(
        portal.bookmark_request(play["EncryptToken"], 7.0, UserID=user_id))
    assert reply.json["ResultCode"] == ResultCode.USER_MISMATCH
    assert portal.bookmarks(alice) == []


@pytest.mark.parametrize("user_id", [DROP, "", 42, None, ["alice"]])
def test_missing_or_malformed_userid_refused(portal: Portal, user_id: object) -> None:
    alice = portal.login("alice")
    play = portal.play(alice)
    reply = portal.set_bookmark(
        portal.bookmark_request(play["EncryptToken"], 7.0, UserID=user_id))
    assert (reply.status, reply.json["ResultCode"]) == (400, ResultCode.BAD_REQUEST)
    assert portal.bookmarks(alice) == []


def test_userid_is_stable_across_logins_and_restarts(tmp_path: Path, sample_dir: Path) -> None:
    with running_portal(tmp_path / "data", sample_dir) as portal:
        first = portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"}).json
        second = portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"}).json
        assert first["UserID"] == second["UserID"] == "alice"
        assert first["UserToken"] != second["UserToken"]  # a new temporary token each time
        portal.interrupt(first["UserToken"], 4.0)
    with running_portal(tmp_path / "data", sample_dir) as portal:
        again = portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"}).json
        assert again["UserID"] == "alice"
        assert [b["ContentBM"] for b in portal.bookmarks(again["UserToken"])] == [4.0]
