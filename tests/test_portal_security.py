"""Security of the portal: forged, expired and cross-user tokens, unsigned and replayed
reverse calls, SQL-ish and oversized input, junk of every shape (a property test finds no
5xx), CSRF on the pages, cookie flags, path traversal."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from portal_support import Http, Portal, running_portal

from rtsp_resume import tokens
from rtsp_resume.portal.app import MAX_BODY
from rtsp_resume.portal.store import DB_NAME

BEARER_ROUTES = [("GET", "/api/contents"), ("GET", "/api/bookmarks"), ("POST", "/api/play"),
                 ("POST", "/api/logout")]
JSON_ROUTES = [("POST", "/api/login"), ("POST", "/api/play"), ("POST", "/api/bookmark/set"),
               ("POST", "/api/bookmark/interface"), ("GET", "/api/bookmarks"),
               ("GET", "/api/contents"), ("POST", "/api/logout")]


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


def is_json_error(reply: Any) -> bool:
    body = reply.json
    return isinstance(body, dict) and ("error" in body or "ResultCode" in body)


# --- tokens on the JSON API -------------------------------------------------------------


@pytest.mark.parametrize("method,path", BEARER_ROUTES)
def test_forged_expired_and_logged_out_user_tokens_refused(portal: Portal, method: str,
                                                           path: str) -> None:
    body = {"ContentID": "sample"} if path == "/api/play" else None
    good = portal.login("alice")
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for bad in ("", "nonsense", forged, "Bearer", good + " extra"):
        reply = portal.http.request(method, path, body, bearer=bad)
        assert reply.status == 401 and is_json_error(reply), (bad, reply.text)
    portal.clock.advance(8 * 3600 + 1)
    assert portal.http.request(method, path, body, bearer=good).status == 401
    other = portal.login("alice")
    portal.http.post("/api/logout", bearer=other)
    assert portal.http.request(method, path, body, bearer=other).status == 401


def test_basic_auth_is_not_a_bearer(portal: Portal) -> None:
    reply = portal.http.get("/api/bookmarks", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert reply.status == 401


def test_one_user_never_sees_anothers_bookmarks(portal: Portal) -> None:
    alice, bob = portal.login("alice"), portal.login("bob")
    portal.interrupt(alice, 12.4)
    portal.interrupt(bob, 3.0, "sample_slices")
    assert [m["ContentID"] for m in portal.bookmarks(alice)] == ["sample"]
    assert [m["ContentID"] for m in portal.bookmarks(bob)] == ["sample_slices"]
    alice_mark = portal.bookmarks(alice)[0]
    reply = portal.interface(EncryptToken=alice_mark["EncryptToken"], UserToken=bob,
                             ContentID="sample", ContentBM=12.4)
    assert reply.status == 403


def test_a_play_token_cannot_be_moved_to_another_user(portal: Portal) -> None:
    alice = portal.login("alice")
    play = portal.play(alice)
    bob_session = portal.server.store.session_for_token(portal.login("bob")).session_id
    req = portal.bookmark_request(play["EncryptToken"], 5.0, UserID="bob", UserToken=bob_session)
    assert portal.set_bookmark(req).json["ResultCode"] == 13
    req = portal.bookmark_request(play["EncryptToken"], 5.0, UserToken=bob_session)
    assert portal.set_bookmark(req).json["ResultCode"] == 12


# --- the reverse interface: unsigned, altered, replayed ------------------------------------


def test_unsigned_and_wrongly_signed_reverse_calls_refused(portal: Portal) -> None:
    req = portal.bookmark_request(portal.play(portal.login("alice"))["EncryptToken"], 5.0)
    raw = json.dumps(req).encode()
    assert portal.http.post("/api/bookmark/set", raw).json["ResultCode"] == 3
    signed = tokens.sign_request(portal.secret, raw, portal.clock())
    altered = raw.replace(b"5.0", b"9.0")
    reply = portal.http.post("/api/bookmark/set", altered, headers=signed)
    assert (reply.status, reply.json["ResultCode"]) == (403, 4)
    signed[tokens.SIGNATURE_HEADER] = "v1=" + "0" * 64
    assert portal.http.post("/api/bookmark/set", raw, headers=signed).json["ResultCode"] == 4
    assert portal.server.store.history("alice") == []


def test_replayed_reverse_call_stores_nothing_more(portal: Portal) -> None:
    req = portal.bookmark_request(portal.play(portal.login("alice"))["EncryptToken"], 5.0)
    raw = json.dumps(req).encode()
    captured = tokens.sign_request(portal.secret, raw, portal.clock())
    first = portal.http.post("/api/bookmark/set", raw, headers=captured)
    assert first.json["ResultCode"] == 0
    # The very same bytes again, inside the time window: recognised by the nonce.
    again = portal.http.post("/api/bookmark/set", raw, headers=captured)
    assert again.json["ResultCode"] == 1
    # And after the window: refused as stale before anything else.
    portal.clock.advance(301)
    late = portal.http.post("/api/bookmark/set", raw, headers=captured)
    assert (late.status, late.json["ResultCode"]) == (403, 5)
    assert len(portal.server.store.history("alice")) == 1


# --- SQL-ish, oversized and malformed input ------------------------------------------------

SQLISH = ["' OR '1'='1", "x'; DROP TABLE bookmarks; --", "\" OR \"\"=\"", "1; SELECT *",
          "sample' --", "%' OR 1=1 --"]


@pytest.mark.parametrize("text", SQLISH)
def test_sqlish_input_is_refused_cleanly_and_changes_nothing(portal: Portal, text: str) -> None:
    alice = portal.login("alice")
    portal.interrupt(alice, 4.0)
    reply = portal.http.post("/api/login", {"user": text, "password": text})
    assert (reply.status, reply.json["error"]) == (401, "bad_credentials")
    reply = portal.http.post("/api/login", {"user": "alice", "password": text})
    assert reply.status == 401
    reply = portal.http.post("/api/play", {"ContentID": text}, bearer=alice)
    assert (reply.status, reply.json["error"]) == (404, "unknown_content")
    reply = portal.interface(EncryptToken=text, UserToken=alice, ContentID=text, ContentBM=4.0)
    assert reply.status == 403
    req = portal.bookmark_request(portal.play(alice)["EncryptToken"], 5.0, ContentID=text)
    assert portal.set_bookmark(req).json["ResultCode"] == 12
    assert [m["ContentBM"] for m in portal.bookmarks(alice)] == [4.0]
    with sqlite3.connect(portal.server.data_dir / DB_NAME) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "login_sessions", "bookmarks", "bookmark_history"} <= tables


@pytest.mark.parametrize("method,path", [r for r in JSON_ROUTES if r[0] == "POST"])
def test_oversized_body_gets_413_json(portal: Portal, method: str, path: str) -> None:
    body = json.dumps({"user": "a" * (MAX_BODY + 10), "password": "x"}).encode()
    reply = portal.http.request(method, path, body, headers={"Content-Type": "application/json"})
    assert reply.status == 413 and is_json_error(reply)
    # The connection and the server are still fine afterwards.
    assert portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"}).status == 200


def test_a_huge_upload_does_not_hurt_the_server(portal: Portal) -> None:
    host, port = portal.http.host, portal.http.port
    size = 20 * 1024 * 1024
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(size).encode() + b"\r\n\r\n")
        answer = b""
        try:
            sock.sendall(b"{" * (256 * 1024))
            answer = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may drop the connection instead of reading 20 MB
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413")
    assert portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"}).status == 200


MALFORMED = [
    (b"", "bad_json"),
    (b"{", "bad_json"),
    (b"[]", "bad_json"),
    (b"null", "bad_json"),
    (b'"alice"', "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    (b'{"user": "a", "user": "b", "password": "x"}', "bad_json"),
    (b'{"user": "alice", "password": NaN}', "bad_json"),
    (b'{"user": "alice", "password": 1e999}', "bad_field"),
    (b"[" * 50000 + b"]" * 50000, "bad_json"),
    (b'{"user": "alice"}', "missing_field"),
    (b'{"user": "alice", "password": "x", "admin": true}', "unknown_field"),
    (b'{"user": ["alice"], "password": "x"}', "bad_field"),
    (b'{"user": "alice", "password": 12345}', "bad_field"),
    (b'{"user": "", "password": "x"}', "bad_field"),
    (b'{"user": "al\\u0000ice", "password": "x"}', "bad_field"),
]


@pytest.mark.parametrize("raw,error", MALFORMED)
def test_malformed_login_bodies_get_400_json(portal: Portal, raw: bytes, error: str) -> None:
    reply = portal.http.post("/api/login", raw, headers={"Content-Type": "application/json"})
    if len(raw) > MAX_BODY:
        assert reply.status == 413
        return
    assert (reply.status, reply.json["error"]) == (400, error), reply.text


def test_wrong_types_in_a_bookmark_request(portal: Portal) -> None:
    req = portal.bookmark_request(portal.play(portal.login("alice"))["EncryptToken"], 5.0)
    for field, value in [("ContentBM", "5"), ("ContentBM", True), ("ContentBM", None),
                         ("ContentID", 7), ("EncryptToken", {"a": 1}), ("InterruptedAt", "now")]:
        reply = portal.set_bookmark(dict(req, **{field: value}))
        assert (reply.status, reply.json["ResultCode"]) == (400, 2), (field, value)
    reply = portal.set_bookmark(dict(req, Extra=1))
    assert "unknown field" in reply.json["ResultDesc"]


def test_content_type_and_transfer_encoding(portal: Portal) -> None:
    reply = portal.http.post("/api/login", b"user=alice&password=alice-pw",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (reply.status, reply.json["error"]) == (415, "unsupported_media_type")
    reply = portal.http.request("POST", "/api/login", b"0\r\n\r\n",
                                headers={"Transfer-Encoding": "chunked"})
    assert reply.status == 411 and is_json_error(reply)


def test_unknown_paths_and_methods_answer_json(portal: Portal) -> None:
    reply = portal.http.get("/api/nothing/here")
    assert reply.status == 404 and reply.json["error"] == "not_found"
    reply = portal.http.request("DELETE", "/api/bookmarks")
    assert reply.status == 405 and is_json_error(reply)
    reply = portal.http.request("BREW", "/api/bookmarks")
    assert reply.status == 501 and is_json_error(reply)


def test_overlong_header_refused(portal: Portal) -> None:
    reply = portal.http.get("/api/contents", headers={"X-Junk": "j" * 70000})
    assert 400 <= reply.status < 500


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py",
                                  "/static/..%2fapp.py", "/static/%2e%2e%2f%2e%2e%2fcli.py"])
def test_static_files_do_not_escape_their_folder(portal: Portal, path: str) -> None:
    reply = portal.http.get(path)
    assert reply.status in (403, 404)
    assert b"import" not in reply.raw


# --- pages: CSRF and cookies ---------------------------------------------------------------


def page_login(http: Http, user: str = "alice", password: str = "alice-pw") -> str:
    """Log in through the form; return the session cookie value."""
    form = http.get("/login")
    cookie = form.headers["Set-Cookie"].split(";")[0]
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    reply = http.post("/login", f"csrf={csrf}&user={user}&password={password}".encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded",
                               "Cookie": cookie})
    assert reply.status == 303, reply.text
    return reply.headers["Set-Cookie"]


def test_session_cookie_is_httponly_and_samesite(portal: Portal) -> None:
    set_cookie = page_login(portal.http)
    assert set_cookie.startswith("rtsp_resume_session=")
    flags = {part.strip().lower() for part in set_cookie.split(";")}
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags


def test_login_form_without_its_csrf_cookie_refused(portal: Portal) -> None:
    reply = portal.http.post("/login", b"csrf=x&user=alice&password=alice-pw",
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      "Cookie": "rtsp_resume_login=y"})
    assert reply.status == 400
    assert "rtsp_resume_session" not in reply.headers.get("Set-Cookie", "")


@pytest.mark.parametrize("path,fields", [("/play", "ContentID=sample"),
                                         ("/resume", "ContentID=sample&ContentBM=1&EncryptToken=x"),
                                         ("/logout", "")])
def test_page_forms_need_the_csrf_token(portal: Portal, path: str, fields: str) -> None:
    cookie = page_login(portal.http).split(";")[0]
    for csrf in ("", "csrf=0000&"):
        reply = portal.http.post(path, f"{csrf}{fields}".encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        assert reply.status == 403, (path, csrf)
    # The session is still valid: the refused logout did not log anyone out.
    assert portal.http.get("/bookmarks", headers={"Cookie": cookie}).status == 200


def test_pages_send_protective_headers(portal: Portal) -> None:
    reply = portal.http.get("/login")
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == "no-store"


# --- property test: no input makes the portal answer 5xx ---------------------------------

FIELDS = ["user", "password", "ContentID", "ContentBM", "EncryptToken", "UserToken", "UserID",
          "InterruptedAt", "junk"]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
field_objects = st.dictionaries(st.sampled_from(FIELDS), json_value, max_size=7)
bodies = st.one_of(
    field_objects.map(lambda d: json.dumps(d).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(route=st.sampled_from(JSON_ROUTES), body=bodies,
       auth=st.sampled_from(["none", "valid", "junk"]),
       sign=st.booleans(), ctype=st.sampled_from(["application/json", "text/plain", ""]))
def test_no_input_makes_a_5xx(portal: Portal, route: tuple[str, str], body: bytes, auth: str,
                              sign: bool, ctype: str) -> None:
    method, path = route
    headers: dict[str, str] = {}
    if ctype:
        headers["Content-Type"] = ctype
    if auth == "valid":
        headers["Authorization"] = f"Bearer {_valid_token(portal)}"
    elif auth == "junk":
        headers["Authorization"] = "Bearer \u00e9' OR 1=1"
    if sign:
        headers.update(tokens.sign_request(portal.secret, body, portal.clock()))
    reply = portal.http.request(method, path, body if method == "POST" else None,
                                headers=headers)
    assert reply.status < 500, reply.text
    if reply.status >= 400:
        assert is_json_error(reply), reply.text


_tokens: dict[int, str] = {}


def _valid_token(portal: Portal) -> str:
    # Examples may log the token out (POST /api/logout): then log in again.
    token = _tokens.get(id(portal))
    session = portal.server.store.session_for_token(token) if token else None
    if session is None or not session.valid(portal.clock()):
        token = _tokens[id(portal)] = portal.login("alice")
    return token
