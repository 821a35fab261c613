"""Claim 6: the portal answers the streaming server's bookmark-set request with a response
carrying UserID, the save result (ResultCode, 0 = saved) and a description (ResultDesc).

Every documented ResultCode is produced here by a real request, and the answer is checked
against the OpenAPI description the streaming server is built from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from portal_support import Portal, Reply, running_portal

from rtsp_resume import tokens
from rtsp_resume.portal import ResultCode
from rtsp_resume.portal.app import HTTP_STATUS, OPENAPI
from rtsp_resume.portal.store import DB_NAME

SPEC = yaml.safe_load(OPENAPI.read_text())


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


def fresh_request(portal: Portal, position: float = 6.0) -> dict:
    play = portal.play(portal.login("alice"))
    return portal.bookmark_request(play["EncryptToken"], position)


def session_id(portal: Portal) -> str:
    return portal.server.store.session_for_token(portal.login("alice")).session_id


def saved(portal: Portal) -> Reply:
    return portal.set_bookmark(fresh_request(portal))


def duplicate(portal: Portal) -> Reply:
    req = fresh_request(portal)
    assert portal.set_bookmark(req, nonce="retry-0001").json["ResultCode"] == 0
    return portal.set_bookmark(req, nonce="retry-0001")  # re-signed, same nonce


def bad_request(portal: Portal) -> Reply:
    return portal.set_bookmark(b'{"EncryptToken": ')


def unsigned(portal: Portal) -> Reply:
    return portal.http.post("/api/bookmark/set", fresh_request(portal))


def bad_signature(portal: Portal) -> Reply:
    return portal.set_bookmark(fresh_request(portal), key=b"not the shared key at all")


def stale(portal: Portal) -> Reply:
    return portal.set_bookmark(fresh_request(portal), now=portal.clock() - 301)


def nonce_reused(portal: Portal) -> Reply:
    req = fresh_request(portal)
    portal.set_bookmark(req, nonce="reused-0001")
    return portal.set_bookmark(dict(req, ContentBM=7.0), nonce="reused-0001")


def bad_play_token(portal: Portal) -> Reply:
    forged = tokens.issue_play_token(b"x" * 32, user_id="alice", content_id="sample",
                                     login_session=session_id(portal), now=portal.clock())
    return portal.set_bookmark(dict(fresh_request(portal), EncryptToken=forged))


def play_token_expired(portal: Portal) -> Reply:
    req = fresh_request(portal)
    portal.clock.advance(tokens.DEFAULT_TTL + 24 * 3600 + 1)  # token life plus the grace
    return portal.set_bookmark(req)


def token_mismatch(portal: Portal) -> Reply:
    return portal.set_bookmark(dict(fresh_request(portal), ContentID="sample_slices"))


def user_mismatch(portal: Portal) -> Reply:
    return portal.set_bookmark(dict(fresh_request(portal), UserID="bob"))


def unknown_login(portal: Portal) -> Reply:
    token = tokens.issue_play_token(portal.secret, user_id="alice", content_id="sample",
                                    login_session="ls-never-issued", now=portal.clock())
    return portal.set_bookmark(portal.bookmark_request(token, 6.0))


def unknown_content(portal: Portal) -> Reply:
    token = tokens.issue_play_token(portal.secret, user_id="alice", content_id="no-such-file",
                                    login_session=session_id(portal), now=portal.clock())
    return portal.set_bookmark(portal.bookmark_request(token, 6.0))


def position_out_of_range(portal: Portal) -> Reply:
    return portal.set_bookmark(fresh_request(portal, position=30.0 + 1.5))


def storage_error(portal: Portal) -> Reply:
    req = fresh_request(portal)
    with sqlite3.connect(portal.server.data_dir / DB_NAME) as db:
        db.execute("ALTER TABLE bookmark_history RENAME TO lost")
    return portal.set_bookmark(req)


SCENARIOS: dict[ResultCode, Callable[[Portal], Reply]] = {
    ResultCode.SAVED: saved,
    ResultCode.DUPLICATE: duplicate,
    ResultCode.BAD_REQUEST: bad_request,
    ResultCode.UNSIGNED: unsigned,
    ResultCode.BAD_SIGNATURE: bad_signature,
    ResultCode.STALE: stale,
    ResultCode.NONCE_REUSED: nonce_reused,
    ResultCode.BAD_PLAY_TOKEN: bad_play_token,
    ResultCode.PLAY_TOKEN_EXPIRED: play_token_expired,
    ResultCode.TOKEN_MISMATCH: token_mismatch,
    ResultCode.USER_MISMATCH: user_mismatch,
    ResultCode.UNKNOWN_LOGIN: unknown_login,
    ResultCode.UNKNOWN_CONTENT: unknown_content,
    ResultCode.POSITION_OUT_OF_RANGE: position_out_of_range,
    ResultCode.STORAGE_ERROR: storage_error,
}


def test_every_code_has_a_scenario_and_is_documented() -> None:
    assert set(SCENARIOS) == set(ResultCode)
    schema = SPEC["components"]["schemas"]["BookMarkResp"]["properties"]["ResultCode"]
    assert sorted(schema["enum"]) == sorted(int(c) for c in ResultCode)
    for code in ResultCode:
        assert f"{int(code)} {code.slug} " in schema["description"].replace("\n", " ")


@pytest.mark.parametrize("code", list(ResultCode), ids=lambda c: c.slug)
def test_code_is_reachable_and_the_response_is_complete(portal: Portal,
                                                        code: ResultCode) -> None:
    reply = SCENARIOS[code](portal)
    body = reply.json
    assert body["ResultCode"] == code, body
    assert reply.status == HTTP_STATUS[code]
    assert str(reply.status) in SPEC["paths"]["/api/bookmark/set"]["post"]["responses"]
    # Claim 6: UserID, the save result and its description.
    required = SPEC["components"]["schemas"]["BookMarkResp"]["required"]
    assert set(required) <= set(body)
    assert isinstance(body["UserID"], str)
    assert isinstance(body["ResultDesc"], str) and body["ResultDesc"]
    assert body["Result"] == code.slug
    assert reply.headers.get_content_type() == "application/json"


def test_saved_response_names_the_user_and_the_position(portal: Portal) -> None:
    body = saved(portal).json
    assert body["UserID"] == body["UserToken"] == "alice"
    assert body["ResultCode"] == 0 and "0:06.0" in body["ResultDesc"]
    assert body["Current"] is True


def test_refusals_store_nothing(portal: Portal) -> None:
    for code, scenario in SCENARIOS.items():
        if code not in (ResultCode.SAVED, ResultCode.DUPLICATE, ResultCode.NONCE_REUSED,
                        ResultCode.STORAGE_ERROR):
            scenario(portal)
    assert portal.server.store.history("alice") == []
    assert portal.bookmarks(portal.login("alice")) == []


def test_a_request_that_keeps_the_newer_bookmark_says_so(portal: Portal) -> None:
    user = portal.login("alice")
    old_play = portal.play(user)
    portal.clock.advance(10)
    portal.interrupt(user, 20.0)  # a newer play session, already bookmarked
    late = portal.set_bookmark(portal.bookmark_request(old_play["EncryptToken"], 3.0))
    assert late.json["ResultCode"] == 0 and late.json["Current"] is False
    assert "newer bookmark at 0:20.0 was kept" in late.json["ResultDesc"]
    zero = portal.set_bookmark(portal.bookmark_request(portal.play(user)["EncryptToken"], 0))
    assert zero.json["ResultCode"] == 0 and zero.json["Current"] is False
    assert [b["ContentBM"] for b in portal.bookmarks(user)] == [20.0]
