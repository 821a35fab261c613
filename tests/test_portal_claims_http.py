"""Claims 1, 3, 9 and 10 on the portal's side, over HTTP.

The streaming server is played here by a client that signs its calls with the shared key
exactly as the real one does (the end-to-end tests with the real streaming server live in
the test_claim_01/03/07/09 files).

* Claim 1: the portal saves the bookmark-set request as a bookmark and answers; when the
  user logs in again and asks for bookmarks, the portal finds all of that user's
  bookmarks by the requester's identity and returns them.
* Claims 3 and 9: the request arrives through a pre-arranged reverse interface; after the
  user picks a bookmark, the terminal asks the portal for the bookmark interface and gets
  what it needs to fetch the program from the streaming server at the bookmark.
* Claim 10: the bookmark interface is returned only after the tokens check out.

Each test runs with the portal on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
from portal_support import RTSP_URL, Portal, running_portal

from rtsp_resume import tokens


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path, database: str | None):
    """A running portal, once on SQLite and once on PostgreSQL."""
    with running_portal(tmp_path / "data", sample_dir, database=database) as p:
        yield p


def test_claim_1_saved_bookmarks_are_all_returned_at_the_next_login_newest_first(
    portal: Portal,
) -> None:
    session = portal.login("alice")
    portal.interrupt(session, 12.4, "sample")
    portal.clock.advance(60)
    portal.interrupt(session, 3.2, "sample_slices")
    assert portal.http.post("/api/logout", bearer=session).status == 200

    again = portal.login("alice")  # logging in again: a new UserToken
    marks = portal.bookmarks(again)
    assert [(m["ContentID"], m["ContentBM"]) for m in marks] == [
        ("sample_slices", 3.2), ("sample", 12.4)]
    for mark in marks:
        assert set(mark) >= {"ContentID", "title", "ContentBM", "saved_at", "EncryptToken"}
        assert mark["UserID"] == "alice"
        grant = tokens.verify_play_token(portal.secret, mark["EncryptToken"], portal.clock())
        assert grant.content_id == mark["ContentID"]
    assert marks[0]["title"] == "Sample slices" and marks[0]["duration"] == 20.0
    assert marks[0]["saved_at"] > marks[1]["saved_at"]


def test_claim_1_bookmarks_are_looked_up_by_the_requesting_user(portal: Portal) -> None:
    portal.interrupt(portal.login("alice"), 12.4)
    assert portal.bookmarks(portal.login("bob")) == []
    refused = portal.http.get("/api/bookmarks")
    assert refused.status == 401 and refused.json["error"] == "unauthorized"
    assert "Bearer" in refused.headers["WWW-Authenticate"]


def test_claim_1_a_newer_interruption_replaces_the_bookmark(portal: Portal) -> None:
    session = portal.login("alice")
    portal.interrupt(session, 12.4)
    portal.clock.advance(30)
    portal.interrupt(session, 18.0)
    assert [m["ContentBM"] for m in portal.bookmarks(session)] == [18.0]
    history = portal.server.store.history("alice")
    assert [h["position"] for h in history] == [12.4, 18.0]


def test_claim_3_and_9_the_bookmark_interface_resumes_at_the_bookmark(portal: Portal) -> None:
    portal.interrupt(portal.login("alice"), 12.4)
    session = portal.login("alice")
    mark = portal.bookmarks(session)[0]  # the user picks this bookmark
    reply = portal.interface(EncryptToken=mark["EncryptToken"], UserToken=session,
                             ContentID=mark["ContentID"], ContentBM=mark["ContentBM"])
    assert reply.status == 200, reply.text
    answer = reply.json
    assert answer["ContentBM"] == 12.4 and answer["ContentID"] == "sample"
    url = urllib.parse.urlsplit(answer["url"])
    assert f"{url.scheme}://{url.netloc}" == RTSP_URL
    assert url.path == "/sample"
    assert urllib.parse.parse_qs(url.query) == {"token": [answer["EncryptToken"]]}
    # The streaming server, holding the same key, learns from the token alone whom it
    # serves and where to start: a plain player needs no seek of its own.
    grant = tokens.verify_play_token(portal.secret, answer["EncryptToken"], portal.clock())
    assert (grant.user_id, grant.content_id, grant.start) == ("alice", "sample", 12.4)
    assert answer["EncryptToken"] != mark["EncryptToken"]


def test_claim_3_and_9_the_reverse_interface_is_reserved_for_the_streaming_server(
    portal: Portal,
) -> None:
    session = portal.login("alice")
    play = portal.play(session)
    req = portal.bookmark_request(play["EncryptToken"], 12.4)
    # A logged-in terminal cannot deposit bookmarks: the interface wants the server's key.
    as_user = portal.http.post("/api/bookmark/set", req, bearer=session)
    assert as_user.status == 401 and as_user.json["ResultCode"] == 3
    assert portal.bookmarks(session) == []
    assert portal.set_bookmark(req).json["ResultCode"] == 0


def test_claim_10_interface_refused_when_tokens_do_not_match(portal: Portal) -> None:
    portal.interrupt(portal.login("alice"), 12.4)
    session = portal.login("alice")
    mark = portal.bookmarks(session)[0]
    wrong = portal.play(session)["EncryptToken"]
    reply = portal.interface(EncryptToken=wrong, UserToken=session,
                             ContentID="sample", ContentBM=12.4)
    assert reply.status == 403
    reply = portal.interface(EncryptToken=mark["EncryptToken"], UserToken="stolen?",
                             ContentID="sample", ContentBM=12.4)
    assert reply.status == 403
    assert "url" not in reply.json


def test_play_returns_a_url_authorised_by_the_token_alone(portal: Portal) -> None:
    session = portal.login("alice")
    contents = portal.http.get("/api/contents", bearer=session).json
    assert {"ContentID": "sample", "title": "Sample", "duration": 30.0} in contents
    play = portal.play(session, "sample")
    assert play["url"] == f"{RTSP_URL}/sample?token={play['EncryptToken']}"
    grant = tokens.verify_play_token(portal.secret, play["EncryptToken"], portal.clock())
    assert grant.start == 0.0
    assert grant.expires == pytest.approx(portal.clock() + tokens.DEFAULT_TTL)
    missing = portal.http.post("/api/play", {"ContentID": "nope"}, bearer=session)
    assert (missing.status, missing.json["error"]) == (404, "unknown_content")
