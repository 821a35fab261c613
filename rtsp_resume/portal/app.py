"""The portal's JSON API (``/api/...``), the reverse bookmark-set interface among it, and
what every request goes through (the pages are :mod:`.pages`).

Everything a request sends is checked before it reaches the store: size, JSON shape, field
types, tokens and signatures. A refusal is a 4xx with a JSON body on the API (``{"error":
<slug>, "detail": <text>}``, or a BookMarkResp on the reverse interface) and a readable page
elsewhere; a 5xx means the portal itself is in trouble (503: the database).

The patent's fields here (see also ``openapi.yaml``): the **UserToken** is the bearer secret
a login returns (only its SHA-256 is stored, next to a random *login session id*); the
**EncryptToken** is the play token of :mod:`rtsp_resume.tokens`, naming the user, the
content and that login session id, which the streaming server puts in the ``UserToken``
field of its BookMarkReq (it never holds the viewer's secret). The **bookmark interface**
(claims 3, 4, 9, 10) answers an ``rtsp://`` URL with a fresh play token that starts at the
bookmark, so a plain player that does not seek still begins there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bottle

from rtsp_resume import tokens
from rtsp_resume.portal.catalogue import Catalogue, Program, title_for
from rtsp_resume.portal.checks import (
    MAX_TEXT,
    ApiError,
    check_fields,
    parse_json_object,
    request_header,
)
from rtsp_resume.portal.pages import Pages, iso_time, render
from rtsp_resume.portal.passwords import GuessBrake
from rtsp_resume.portal.store import Bookmark, BookmarkWrite, LoginSession, StorageError, Store
from rtsp_resume.position import format_clock

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).parent / "openapi.yaml"
MAX_BODY = 16 * 1024  # every request the portal takes is far smaller
POSITION_TOLERANCE = 1.0  # s: a position estimate may run a frame or so past the end
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
_CHALLENGE = 'Bearer realm="rtsp-resume"'


class ResultCode(IntEnum):
    """BookMarkResp.ResultCode of the reverse bookmark-set interface (claim 6).

    0: stored. 1 (duplicate): a request with this nonce was stored already and nothing more
    was written, so a retry may count it delivered. Every other code is a refusal a retry
    cannot change, except 30 (the portal's database failed: retry later).
    """

    SAVED, DUPLICATE = 0, 1
    BAD_REQUEST, UNSIGNED, BAD_SIGNATURE, STALE, NONCE_REUSED = 2, 3, 4, 5, 6  # the request
    BAD_PLAY_TOKEN, PLAY_TOKEN_EXPIRED, TOKEN_MISMATCH = 10, 11, 12  # its EncryptToken
    USER_MISMATCH, UNKNOWN_LOGIN = 13, 14  # its UserID and UserToken
    UNKNOWN_CONTENT, POSITION_OUT_OF_RANGE = 20, 21  # its ContentID and ContentBM
    STORAGE_ERROR = 30

    @property
    def slug(self) -> str:
        return self.name.lower()


_R = ResultCode
HTTP_STATUS = {_R.SAVED: 200, _R.DUPLICATE: 200, _R.BAD_REQUEST: 400, _R.UNSIGNED: 401,
               _R.BAD_SIGNATURE: 403, _R.STALE: 403, _R.NONCE_REUSED: 409,
               _R.BAD_PLAY_TOKEN: 403, _R.PLAY_TOKEN_EXPIRED: 403, _R.TOKEN_MISMATCH: 403,
               _R.USER_MISMATCH: 403, _R.UNKNOWN_LOGIN: 403, _R.UNKNOWN_CONTENT: 404,
               _R.POSITION_OUT_OF_RANGE: 422, _R.STORAGE_ERROR: 503}
# Why tokens.verify_request refused a reverse call, as a ResultCode.
_SIGNATURE_CODES = {"missing": _R.UNSIGNED, "malformed": _R.BAD_SIGNATURE,
                    "bad signature": _R.BAD_SIGNATURE, "stale": _R.STALE}


class BookmarkRefused(Exception):
    """A refused BookMarkReq: its ResultCode, explained."""

    def __init__(self, code: ResultCode, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Settings:
    rtsp_url: str
    login_ttl: float = 8 * 3600.0
    play_ttl: float = tokens.DEFAULT_TTL
    max_skew: float = 300.0
    # A play session is checked when it starts, so it may outlive its token; its bookmark
    # (or a queued retry of it) is still accepted this long after the token expired.
    bookmark_grace: float = 24 * 3600.0


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


class Portal:
    """The routes, bound to one store, catalogue, key and clock."""

    def __init__(self, store: Store, catalogue: Catalogue, secret: bytes, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.catalogue, self.secret = store, catalogue, secret
        self.settings, self.clock = settings, clock
        self.brake = GuessBrake(clock)
        self.app = app = bottle.Bottle(catchall=True, autojson=True)
        app.add_hook("before_request", self._before)
        app.add_hook("after_request", self._after)
        app.default_error_handler = self._error_page  # type: ignore[method-assign]
        for method, path, handler in [
            ("POST", "/api/login", self.api_login), ("POST", "/api/logout", self.api_logout),
            ("GET", "/api/contents", self.api_contents), ("POST", "/api/play", self.api_play),
            ("GET", "/api/bookmarks", self.api_bookmarks),
            ("POST", "/api/bookmark/interface", self.api_bookmark_interface),
        ]:
            app.route(path, method, self._api(handler))
        app.route("/api/bookmark/set", "POST", self.api_bookmark_set)
        app.route("/api/openapi.yaml", "GET", self.api_openapi)
        self.pages = Pages(self)

    # -- what every request goes through --

    def _before(self) -> None:
        # What the HTTP server lets through but the portal does not serve: other methods
        # (RFC 9110 15.6.2) and chunked bodies (RFC 9112 6.1; no client of the portal sends one).
        if bottle.request.method not in _METHODS:
            raise bottle.HTTPError(501, f"method {bottle.request.method} not supported")
        if request_header("Transfer-Encoding"):
            raise bottle.HTTPError(411, "send the body with a Content-Length")
        if bottle.request.content_length > MAX_BODY:
            raise bottle.HTTPError(413, f"the body is larger than {MAX_BODY} bytes")

    def _after(self) -> None:
        headers = bottle.response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers.setdefault("Cache-Control", "no-store")  # tokens are in most answers
        if not bottle.request.path.startswith("/api/"):
            headers["Content-Security-Policy"] = (
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'")

    def _error_page(self, error: bottle.HTTPError) -> str:
        status, path = error.status_code, bottle.request.path
        detail = error.body if isinstance(error.body, str) else ""
        if status >= 500:
            log.error("portal: %s %s -> %s", bottle.request.method, path,
                      error.traceback or detail)
        if path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            if path == "/api/bookmark/set":  # the streaming server reads a BookMarkResp
                code = _R.STORAGE_ERROR if status >= 500 else _R.BAD_REQUEST
                return json.dumps(self._bookmark_resp("", code, detail or error.status_line))
            return json.dumps({"error": _slug(status), "detail": detail or error.status_line})
        bottle.response.content_type = "text/html; charset=utf-8"
        return render("error.tpl", title=error.status_line, status=error.status_line,
                      detail=detail, user=None)

    def _api(self, handler: Callable[[], Any]) -> Callable[[], Any]:
        def route() -> Any:
            try:
                result = handler()
            except ApiError as exc:
                bottle.response.status = exc.status
                for name, value in exc.headers.items():
                    bottle.response.set_header(name.replace("_", "-"), value)
                result = {"error": exc.error, "detail": exc.detail}
            except StorageError as exc:
                log.error("portal: storage failed: %s", exc)
                bottle.response.status = 503
                result = {"error": "storage_error", "detail": "the database failed; retry"}
            if isinstance(result, list):
                bottle.response.content_type = "application/json"
                return json.dumps(result)
            return result

        return route

    def _json_body(self) -> dict[str, Any]:
        if bottle.request.content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
        return parse_json_object(bottle.request.body.read(MAX_BODY + 1))

    def _bearer(self) -> LoginSession:
        """The login session named by ``Authorization: Bearer <UserToken>``, or 401."""
        scheme, _, token = request_header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <UserToken>",
                           WWW_Authenticate=_CHALLENGE)
        session = self.valid_session(token.strip())
        if session is None:
            raise ApiError(401, "invalid_token", "the UserToken is unknown, expired or logged out",
                           WWW_Authenticate=_CHALLENGE + ', error="invalid_token"')
        return session

    def valid_session(self, user_token: str) -> LoginSession | None:
        if not user_token or len(user_token) > MAX_TEXT:
            return None
        session = self.store.session_for_token(user_token)
        return session if session is not None and session.valid(self.clock()) else None

    def authenticate(self, name: str, password: str) -> str | None:
        """The store's password check, behind the guessing brake (ApiError 429 meanwhile)."""
        keys = ("user:" + name, "addr:" + bottle.request.environ.get("REMOTE_ADDR", ""))
        wait = math.ceil(self.brake.attempt(*keys))
        if wait:
            raise ApiError(429, "too_many_attempts", f"too many wrong passwords; retry in "
                           f"{wait} s", Retry_After=str(wait))
        user_id = self.store.authenticate(name, password)
        if user_id is not None:
            self.brake.succeeded(*keys)
        return user_id

    # -- JSON API --

    def api_login(self) -> dict[str, Any]:
        body = check_fields(self._json_body(), {"user": "text", "password": "text"})
        user_id = self.authenticate(body["user"], body["password"])
        if user_id is None:
            raise ApiError(401, "bad_credentials", "unknown user or wrong password")
        _, user_token = self.store.create_session(user_id, self.settings.login_ttl, self.clock())
        return {"UserID": user_id, "UserToken": user_token,
                "expires_in": int(self.settings.login_ttl)}

    def api_logout(self) -> dict[str, Any]:
        session = self._bearer()
        self.store.revoke_session(session.session_id, self.clock())
        return {"UserID": session.user_id, "logged_out": True}

    def api_contents(self) -> list[dict[str, Any]]:
        self._bearer()
        return [{"ContentID": p.content_id, "title": p.title, "duration": round(p.duration, 3)}
                for p in self.catalogue.list()]

    def api_play(self) -> dict[str, Any]:
        session = self._bearer()
        body = check_fields(self._json_body(), {"ContentID": "text"})
        program = self.catalogue.get(body["ContentID"])
        if program is None:
            raise ApiError(404, "unknown_content", "no such ContentID in the catalogue")
        return self.start_play(session, program, start=0.0)

    def start_play(self, session: LoginSession, program: Program, start: float) -> dict[str, Any]:
        token = tokens.issue_play_token(
            self.secret, user_id=session.user_id, content_id=program.content_id,
            login_session=session.session_id, start=start, ttl=self.settings.play_ttl,
            now=self.clock())
        base = self.settings.rtsp_url.rstrip("/")
        url = f"{base}/{urllib.parse.quote(program.content_id, safe='')}?token={token}"
        return {"ContentID": program.content_id, "EncryptToken": token, "url": url,
                "ContentBM": round(start, 3), "expires_in": int(self.settings.play_ttl)}

    def api_bookmarks(self) -> list[dict[str, Any]]:
        return [self._bookmark_json(b) for b in self.store.bookmarks(self._bearer().user_id)]

    def _bookmark_json(self, b: Bookmark) -> dict[str, Any]:
        program = self.catalogue.get(b.content_id)
        return {"UserID": b.user_id, "ContentID": b.content_id,
                "title": program.title if program else title_for(b.content_id),
                "ContentBM": round(b.position, 3),
                "duration": round(program.duration, 3) if program else None,
                "saved_at": iso_time(b.saved_at), "EncryptToken": b.encrypt_token}

    def api_bookmark_interface(self) -> dict[str, Any]:
        body = check_fields(self._json_body(), {"EncryptToken": "text", "UserToken": "text",
                                                "ContentID": "text", "ContentBM": "number"})
        # The UserToken in the body is the credential (claims 4, 10); a bearer header is
        # optional, and when present must be a login of the same user.
        bearer_user = self._bearer().user_id if request_header("Authorization") else None
        return self.bookmark_interface(
            user_token=body["UserToken"], encrypt_token=body["EncryptToken"],
            content_id=body["ContentID"], content_bm=float(body["ContentBM"]),
            bearer_user=bearer_user)

    def bookmark_interface(self, *, user_token: str, encrypt_token: str, content_id: str,
                           content_bm: float, bearer_user: str | None = None) -> dict[str, Any]:
        """Claims 3, 4, 9, 10: check the request against what is stored, then answer the
        bookmark interface (a resume URL whose fresh play token starts at the bookmark).

        The UserToken must be a valid login, the user must have a current bookmark for
        ContentID, and the EncryptToken and ContentBM must be the ones stored with it.
        """
        session = self.valid_session(user_token)
        if session is None:
            raise ApiError(403, "invalid_user_token",
                           "the UserToken is unknown, expired or logged out")
        if bearer_user is not None and bearer_user != session.user_id:
            raise ApiError(403, "user_mismatch", "the bearer and the UserToken are different users")
        bookmark = self.store.bookmark(session.user_id, content_id)
        if bookmark is None:
            raise ApiError(403, "no_bookmark", "this user has no bookmark for that ContentID")
        if not hmac.compare_digest(encrypt_token.encode(), bookmark.encrypt_token.encode()):
            raise ApiError(403, "token_mismatch",
                           "the EncryptToken is not the one stored with the bookmark")
        try:
            # Its MAC again, against a tampered database row; not its expiry: the bookmark
            # outlives the play session, and a fresh token is issued.
            tokens.verify_play_token(self.secret, encrypt_token, self.clock(), leeway=math.inf)
        except tokens.InvalidToken as exc:
            raise ApiError(403, "bad_play_token", str(exc)) from exc
        if abs(content_bm - bookmark.position) > 0.0005:
            raise ApiError(403, "position_mismatch",
                           "ContentBM is not the position stored with the bookmark")
        program = self.catalogue.get(content_id)
        if program is None:
            raise ApiError(404, "unknown_content", "the program is no longer in the catalogue")
        return self.start_play(session, program, start=bookmark.position)

    def api_openapi(self) -> str:
        bottle.response.content_type = "application/yaml; charset=utf-8"
        return OPENAPI.read_text(encoding="utf-8")

    # -- the reverse bookmark-set interface (claims 1, 3, 5, 6, 9) --

    def api_bookmark_set(self) -> dict[str, Any]:
        user_id = ""
        try:
            raw = bottle.request.body.read(MAX_BODY + 1)
            environ = bottle.request.environ
            headers = {name: environ[key] for name in (
                tokens.TIMESTAMP_HEADER, tokens.NONCE_HEADER, tokens.SIGNATURE_HEADER,
                tokens.IDEMPOTENCY_HEADER) if (key := "HTTP_" + name.upper().replace("-", "_"))
                in environ}
            try:
                tokens.verify_request(self.secret, raw, headers, self.clock(),
                                      max_skew=self.settings.max_skew)
            except tokens.InvalidSignature as exc:
                raise BookmarkRefused(_SIGNATURE_CODES[exc.reason],
                                      f"signature refused: {exc}") from exc
            try:
                body = parse_json_object(raw)
                if isinstance(body.get("UserID"), str):
                    user_id = body["UserID"][:MAX_TEXT]
                check_fields(body, {"EncryptToken": "text", "UserToken": "text",
                                    "ContentID": "text", "ContentBM": "number", "UserID": "text"},
                             {"InterruptedAt": "number"})
            except ApiError as exc:
                raise BookmarkRefused(_R.BAD_REQUEST, exc.detail) from exc
            code, detail, current = self._set_bookmark(headers[tokens.NONCE_HEADER], raw, body)
        except BookmarkRefused as exc:
            bottle.response.status = HTTP_STATUS[exc.code]
            return self._bookmark_resp(user_id, exc.code, exc.detail)
        except StorageError as exc:
            log.error("portal: storage failed while setting a bookmark: %s", exc)
            bottle.response.status = 503
            return self._bookmark_resp(user_id, _R.STORAGE_ERROR,
                                       "the bookmark could not be stored; retry later")
        return {**self._bookmark_resp(user_id, code, detail), "Current": current}

    def _bookmark_resp(self, user_id: str, code: ResultCode, detail: str) -> dict[str, Any]:
        # Claim 6: UserID, the result and its description; the embodiment's UserToken field
        # "holding the UserID" is echoed as such.
        return {"UserID": user_id, "UserToken": user_id, "ResultCode": int(code),
                "Result": code.slug, "ResultDesc": detail}

    def _set_bookmark(self, nonce: str, raw: bytes, body: dict[str, Any]
                      ) -> tuple[ResultCode, str, bool]:
        now = self.clock()
        try:
            grant = tokens.verify_play_token(self.secret, body["EncryptToken"], now,
                                             leeway=self.settings.bookmark_grace)
        except tokens.InvalidToken as exc:
            if exc.reason == "expired":
                raise BookmarkRefused(_R.PLAY_TOKEN_EXPIRED, str(exc)) from exc
            raise BookmarkRefused(_R.BAD_PLAY_TOKEN, f"EncryptToken refused: {exc}") from exc
        login = self.store.session(grant.login_session)
        own_login = login is not None and login.user_id == grant.user_id  # so the user exists
        # Claim 5: UserID names the user, and must be the user the play token was issued to.
        if body["UserID"] != grant.user_id or not (own_login
                                                  or self.store.user_exists(grant.user_id)):
            raise BookmarkRefused(_R.USER_MISMATCH,
                                  "UserID is not the user the EncryptToken was issued to")
        if body["ContentID"] != grant.content_id:
            raise BookmarkRefused(_R.TOKEN_MISMATCH,
                                  "ContentID is not the content the EncryptToken was issued for")
        if not hmac.compare_digest(body["UserToken"].encode(), grant.login_session.encode()):
            raise BookmarkRefused(_R.TOKEN_MISMATCH,
                                  "UserToken is not the login session of the EncryptToken")
        if not own_login:
            raise BookmarkRefused(_R.UNKNOWN_LOGIN, "UserToken names no login session of this user")
        program = self.catalogue.get(grant.content_id)
        if program is None:
            raise BookmarkRefused(_R.UNKNOWN_CONTENT, "no such ContentID in the catalogue")
        position = float(body["ContentBM"])
        if not 0 <= position <= program.duration + POSITION_TOLERANCE:
            raise BookmarkRefused(_R.POSITION_OUT_OF_RANGE,
                                  f"ContentBM {position:g} is outside 0..{program.duration:g} s")
        interrupted_at, skew = float(body.get("InterruptedAt", now)), self.settings.max_skew
        if "InterruptedAt" in body and not grant.issued - skew <= interrupted_at <= now + skew:
            raise BookmarkRefused(_R.BAD_REQUEST,
                                  "InterruptedAt must lie between the token's issue time and now")
        outcome = self.store.record_bookmark(BookmarkWrite(
            user_id=grant.user_id, content_id=grant.content_id,
            position=round(min(position, program.duration), 3), encrypt_token=grant.token,
            login_session=grant.login_session, token_issued=grant.issued,
            interrupted_at=interrupted_at, saved_at=now, nonce=nonce,
            body_sha256=hashlib.sha256(raw).hexdigest()))
        if outcome.duplicate and not outcome.same_body:
            raise BookmarkRefused(_R.NONCE_REUSED,
                                  "this nonce was already used for a different request")
        if outcome.duplicate:
            return (_R.DUPLICATE,
                    "already stored by an earlier request with this nonce; nothing changed", False)
        if outcome.became_current:
            detail = f"bookmark saved at {format_clock(position)}"
        elif position <= 0:
            detail = "recorded in the history; a position of 0 makes no bookmark"
        else:
            kept = format_clock(outcome.current.position) if outcome.current else "?"
            detail = f"recorded in the history; the newer bookmark at {kept} was kept"
        return _R.SAVED, detail, outcome.became_current


def create_app(store: Store, catalogue: Catalogue, secret: bytes, rtsp_url: str, *,
               clock: Callable[[], float] = time.time, **settings: Any) -> bottle.Bottle:
    """The portal as a WSGI application (a :class:`bottle.Bottle`); ``settings`` are the
    fields of :class:`Settings` (``login_ttl``, ``play_ttl``, ``max_skew``, ``bookmark_grace``)."""
    return Portal(store, catalogue, secret, Settings(rtsp_url=rtsp_url, **settings), clock).app
