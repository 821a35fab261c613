"""The portal's routes: the JSON API (``/api/...``) and the server-rendered pages.

Everything a request may send is checked here before it reaches the store: sizes, JSON
shape, field types, tokens and signatures. A refusal is always a 4xx with a JSON body on
the API (``{"error": <slug>, "detail": <text>}``, or a BookMarkResp on the reverse
interface) and a readable page elsewhere; a 5xx means the portal itself is in trouble
(503 when the database fails).

How the patent's fields map onto this portal (see also ``openapi.yaml``):

* **UserToken** (the temporary login token) is the bearer secret a login returns. Only its
  SHA-256 is stored, next to a random *login session id*.
* **EncryptToken** (the play token) is made by :mod:`rtsp_resume.tokens` and names the user,
  the content and the *login session id*. The streaming server puts that id into the
  ``UserToken`` field of its BookMarkReq: it must not hold the viewer's bearer secret, and
  the id is what ties the interrupted play to a login of that user.
* The **bookmark interface** (claims 3, 4, 9, 10) returns what a player needs to resume: an
  ``rtsp://`` URL carrying a fresh play token whose start is the bookmark, so a plain player
  that does not seek still begins at the bookmark.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import bottle

from rtsp_resume import tokens
from rtsp_resume.portal.catalogue import Catalogue, Program, title_for
from rtsp_resume.portal.store import (
    Bookmark,
    BookmarkWrite,
    LoginSession,
    StorageError,
    Store,
)
from rtsp_resume.position import format_clock

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
VIEWS = HERE / "views"
STATIC = HERE / "static"
OPENAPI = HERE / "openapi.yaml"

MAX_BODY = 16 * 1024  # every request the portal takes is far smaller
MAX_TEXT = 2048  # longest string field (tokens are ~250 characters)
SESSION_COOKIE = "rtsp_resume_session"
LOGIN_CSRF_COOKIE = "rtsp_resume_login"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
POSITION_TOLERANCE = 1.0  # s: a position estimate may run a frame or so past the end


class ResultCode(IntEnum):
    """BookMarkResp.ResultCode of the reverse bookmark-set interface (claim 6).

    0 means the request was stored. 1 (duplicate) means an earlier request with the same
    nonce was stored and nothing more was written: a retry can treat it as delivered.
    Every other code is a refusal that a retry of the same request cannot change, except
    30 (the portal's database failed: retry later).
    """

    SAVED = 0
    DUPLICATE = 1
    BAD_REQUEST = 2
    UNSIGNED = 3
    BAD_SIGNATURE = 4
    STALE = 5
    NONCE_REUSED = 6
    BAD_PLAY_TOKEN = 10
    PLAY_TOKEN_EXPIRED = 11
    TOKEN_MISMATCH = 12
    USER_MISMATCH = 13
    UNKNOWN_LOGIN = 14
    UNKNOWN_CONTENT = 20
    POSITION_OUT_OF_RANGE = 21
    STORAGE_ERROR = 30

    @property
    def slug(self) -> str:
        return self.name.lower()


HTTP_STATUS = {
    ResultCode.SAVED: 200,
    ResultCode.DUPLICATE: 200,
    ResultCode.BAD_REQUEST: 400,
    ResultCode.UNSIGNED: 401,
    ResultCode.BAD_SIGNATURE: 403,
    ResultCode.STALE: 403,
    ResultCode.NONCE_REUSED: 409,
    ResultCode.BAD_PLAY_TOKEN: 403,
    ResultCode.PLAY_TOKEN_EXPIRED: 403,
    ResultCode.TOKEN_MISMATCH: 403,
    ResultCode.USER_MISMATCH: 403,
    ResultCode.UNKNOWN_LOGIN: 403,
    ResultCode.UNKNOWN_CONTENT: 404,
    ResultCode.POSITION_OUT_OF_RANGE: 422,
    ResultCode.STORAGE_ERROR: 503,
}


class ApiError(Exception):
    """A refusal: becomes ``status`` with ``{"error": error, "detail": detail}``."""

    def __init__(self, status: int, error: str, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


class BookmarkRefused(Exception):
    def __init__(self, code: ResultCode, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status or HTTP_STATUS[code]


@dataclass(frozen=True)
class Settings:
    rtsp_url: str
    login_ttl: float = 8 * 3600.0
    play_ttl: float = tokens.DEFAULT_TTL
    max_skew: float = 300.0
    # A play session is checked when it starts, so it may outlive its token; its bookmark
    # is still accepted this long after the token expired (and a queued retry with it).
    bookmark_grace: float = 24 * 3600.0


# --- small helpers -------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def request_header(name: str) -> str:
    """A request header as the WSGI server gave it ('' if absent).

    Read from the environ rather than through Bottle, which decodes header values as
    UTF-8 and raises on other bytes; every header the portal reads is ASCII, so anything
    else simply fails the check it is used in.
    """
    return bottle.request.environ.get("HTTP_" + name.upper().replace("-", "_"), "")


# (header name, its WSGI environ key), worked out once rather than on every reverse call.
_SIGNATURE_HEADERS = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_"))
    for name in (tokens.TIMESTAMP_HEADER, tokens.NONCE_HEADER, tokens.SIGNATURE_HEADER,
                 tokens.IDEMPOTENCY_HEADER)
)


def signature_headers() -> dict[str, str]:
    """The headers of a signed reverse call that are present, undecoded."""
    environ = bottle.request.environ
    return {name: environ[key] for name, key in _SIGNATURE_HEADERS if key in environ}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# Strict JSON: duplicate keys and NaN/Infinity are refused. Built once (json.loads with
# hooks would build a new decoder for every request).
_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, or ApiError 400 saying what is wrong."""
    try:
        value = _JSON.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_json", "the body is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return value


def check_fields(
    obj: dict[str, Any], required: dict[str, str], optional: dict[str, str] | None = None
) -> dict[str, Any]:
    """Check an object's fields against ``{"name": "text" | "number"}``; unknown ones refused."""
    optional = optional or {}
    # The usual case, every required field and nothing unknown, costs one set comparison.
    if not (required.keys() <= obj.keys() <= required.keys() | optional.keys()):
        unknown = sorted(set(obj) - set(required) - set(optional))
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
        missing = sorted(set(required) - set(obj))
        if missing:
            raise ApiError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    for name, value in obj.items():
        kind = required.get(name) or optional[name]
        if kind == "text":
            if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
                raise ApiError(
                    400, "bad_field", f"{name} must be a non-empty string of at most "
                    f"{MAX_TEXT} characters"
                )
            if _CONTROL_CHARS.search(value):
                raise ApiError(400, "bad_field", f"{name} contains control characters")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(400, "bad_field", f"{name} must be a number")
            if not math.isfinite(float(value)):
                raise ApiError(400, "bad_field", f"{name} must be finite")
        else:  # pragma: no cover - a programming error in a route
            raise AssertionError(kind)
    return obj


# --- the application ---------------------------------------------------------------------


class Portal:
    """The routes, bound to one store, catalogue, key and clock."""

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        secret: bytes,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.secret = secret
        self.settings = settings
        self.clock = clock
        self._csrf_key = hmac.new(secret, b"rtsp-resume/csrf", hashlib.sha256).digest()
        self.app = bottle.Bottle(catchall=True, autojson=True)
        self._routes()

    # -- wiring --

    def _routes(self) -> None:
        app = self.app
        app.add_hook("before_request", self._before)
        app.add_hook("after_request", self._after)
        app.default_error_handler = self._error_page  # type: ignore[method-assign]

        app.route("/api/login", "POST", self._api(self.api_login))
        app.route("/api/logout", "POST", self._api(self.api_logout))
        app.route("/api/contents", "GET", self._api(self.api_contents))
        app.route("/api/play", "POST", self._api(self.api_play))
        app.route("/api/bookmarks", "GET", self._api(self.api_bookmarks))
        app.route("/api/bookmark/interface", "POST", self._api(self.api_bookmark_interface))
        app.route("/api/bookmark/set", "POST", self.api_bookmark_set)
        app.route("/api/openapi.yaml", "GET", self.api_openapi)

        app.route("/", "GET", self.page_home)
        app.route("/login", "GET", self.page_login)
        app.route("/login", "POST", self.page_login_post)
        app.route("/logout", "POST", self.page_logout)
        app.route("/programs", "GET", self.page_programs)
        app.route("/play", "POST", self.page_play)
        app.route("/bookmarks", "GET", self.page_bookmarks)
        app.route("/resume", "POST", self.page_resume)
        app.route("/static/<name>", "GET", self.static)

    def _before(self) -> None:
        # What the HTTP server lets through but the portal does not serve (RFC 9110 15.6.2,
        # RFC 9112 6.1): other methods, and chunked bodies (no client of the portal sends one).
        if bottle.request.method not in _METHODS:
            raise bottle.HTTPError(501, f"method {bottle.request.method} not supported")
        if request_header("Transfer-Encoding"):
            raise bottle.HTTPError(411, "send the body with a Content-Length")
        length = bottle.request.content_length
        if length > MAX_BODY:
            raise bottle.HTTPError(413, f"the body is larger than {MAX_BODY} bytes")

    def _after(self) -> None:
        headers = bottle.response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        # Tokens are in most answers: keep them out of caches.
        headers.setdefault("Cache-Control", "no-store")
        if not bottle.request.path.startswith("/api/"):
            headers["Content-Security-Policy"] = (
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
            )

    def _error_page(self, error: bottle.HTTPError) -> str:
        status = error.status_code
        detail = error.body if isinstance(error.body, str) else ""
        if status >= 500:
            log.error("portal: %s %s -> %s", bottle.request.method, bottle.request.path,
                      error.traceback or detail)
        if bottle.request.path == "/api/bookmark/set":
            # The streaming server reads a BookMarkResp whatever happened.
            bottle.response.content_type = "application/json"
            code = ResultCode.STORAGE_ERROR if status >= 500 else ResultCode.BAD_REQUEST
            return json.dumps(self._bookmark_resp("", code, detail or error.status_line))
        if bottle.request.path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            return json.dumps({"error": _slug(status), "detail": detail or error.status_line})
        bottle.response.content_type = "text/html; charset=utf-8"
        return self._render("error.tpl", title=error.status_line, status=error.status_line,
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

        route.__name__ = handler.__name__
        return route

    def _body(self, *, json_only: bool = True) -> bytes:
        request = bottle.request
        if json_only:
            ctype = request.content_type.split(";")[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
        return request.body.read(MAX_BODY + 1)

    def _bearer(self) -> LoginSession:
        """The login session named by ``Authorization: Bearer <UserToken>``, or 401."""
        header = request_header("Authorization")
        scheme, _, token = header.partition(" ")
        challenge = 'Bearer realm="rtsp-resume"'
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <UserToken>",
                           WWW_Authenticate=challenge)
        session = self._valid_session(token.strip())
        if session is None:
            raise ApiError(401, "invalid_token", "the UserToken is unknown, expired or logged out",
                           WWW_Authenticate=challenge + ', error="invalid_token"')
        return session

    def _valid_session(self, user_token: str) -> LoginSession | None:
        if not user_token or len(user_token) > MAX_TEXT:
            return None
        session = self.store.session_for_token(user_token)
        if session is None or not session.valid(self.clock()):
            return None
        return session

    def play_url(self, content_id: str, token: str) -> str:
        base = self.settings.rtsp_url.rstrip("/")
        return f"{base}/{urllib.parse.quote(content_id, safe='')}?token={token}"

    # -- JSON API --

    def api_login(self) -> dict[str, Any]:
        body = check_fields(parse_json_object(self._body()), {"user": "text", "password": "text"})
        user_id = self.store.authenticate(body["user"], body["password"])
        if user_id is None:
            raise ApiError(401, "bad_credentials", "unknown user or wrong password")
        session, user_token = self.store.create_session(
            user_id, self.settings.login_ttl, self.clock()
        )
        return {"UserID": user_id, "UserToken": user_token,
                "expires_in": int(self.settings.login_ttl)}

    def api_logout(self) -> dict[str, Any]:
        session = self._bearer()
        self.store.revoke_session(session.session_id, self.clock())
        return {"UserID": session.user_id, "logged_out": True}

    def api_contents(self) -> list[dict[str, Any]]:
        self._bearer()
        return [
            {"ContentID": p.content_id, "title": p.title, "duration": round(p.duration, 3)}
            for p in self.catalogue.list()
        ]

    def api_play(self) -> dict[str, Any]:
        session = self._bearer()
        body = check_fields(parse_json_object(self._body()), {"ContentID": "text"})
        program = self.catalogue.get(body["ContentID"])
        if program is None:
            raise ApiError(404, "unknown_content", "no such ContentID in the catalogue")
        return self.start_play(session, program, start=0.0)

    def start_play(self, session: LoginSession, program: Program, start: float) -> dict[str, Any]:
        token = tokens.issue_play_token(
            self.secret,
            user_id=session.user_id,
            content_id=program.content_id,
            login_session=session.session_id,
            start=start,
            ttl=self.settings.play_ttl,
            now=self.clock(),
        )
        return {
            "ContentID": program.content_id,
            "EncryptToken": token,
            "url": self.play_url(program.content_id, token),
            "ContentBM": round(start, 3),
            "expires_in": int(self.settings.play_ttl),
        }

    def api_bookmarks(self) -> list[dict[str, Any]]:
        session = self._bearer()
        return [self._bookmark_json(b) for b in self.store.bookmarks(session.user_id)]

    def _bookmark_json(self, b: Bookmark) -> dict[str, Any]:
        program = self.catalogue.get(b.content_id)
        return {
            "UserID": b.user_id,
            "ContentID": b.content_id,
            "title": program.title if program else title_for(b.content_id),
            "ContentBM": round(b.position, 3),
            "duration": round(program.duration, 3) if program else None,
            "saved_at": iso_time(b.saved_at),
            "EncryptToken": b.encrypt_token,
        }

    def api_bookmark_interface(self) -> dict[str, Any]:
        body = check_fields(
            parse_json_object(self._body()),
            {"EncryptToken": "text", "UserToken": "text", "ContentID": "text",
             "ContentBM": "number"},
        )
        # The UserToken in the body is the credential (claims 4, 10). A bearer header is
        # optional; when present it must be a login of the same user.
        bearer = request_header("Authorization")
        bearer_user = self._bearer().user_id if bearer else None
        return self.bookmark_interface(
            user_token=body["UserToken"],
            encrypt_token=body["EncryptToken"],
            content_id=body["ContentID"],
            content_bm=float(body["ContentBM"]),
            bearer_user=bearer_user,
        )

    def bookmark_interface(
        self,
        *,
        user_token: str,
        encrypt_token: str,
        content_id: str,
        content_bm: float,
        bearer_user: str | None = None,
    ) -> dict[str, Any]:
        """Claims 3, 4, 9, 10: check the request against what is stored, then return the
        bookmark interface (a resume URL with a fresh play token starting at the bookmark).

        Passes only when the UserToken is a currently valid login, the user has a current
        bookmark for ContentID, the EncryptToken equals the one stored with that bookmark,
        and ContentBM is that bookmark's position. Every failure is the same 403 kind of
        answer with a specific ``error``.
        """
        session = self._valid_session(user_token)
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
            # The stored token was checked when the bookmark was set; checking its MAC
            # again guards against a tampered database row. Its expiry does not matter
            # here: the bookmark outlives the play session, and a fresh token is issued.
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

    def api_openapi(self) -> Any:
        bottle.response.content_type = "application/yaml; charset=utf-8"
        return OPENAPI.read_text(encoding="utf-8")

    # -- the reverse bookmark-set interface (claims 1, 3, 5, 6, 9) --

    def api_bookmark_set(self) -> dict[str, Any]:
        user_id = ""
        try:
            raw = self._body(json_only=False)
            try:
                tokens.verify_request(
                    self.secret, raw, signature_headers(), self.clock(),
                    max_skew=self.settings.max_skew,
                )
            except tokens.InvalidSignature as exc:
                code = {
                    "missing": ResultCode.UNSIGNED,
                    "malformed": ResultCode.BAD_SIGNATURE,
                    "bad signature": ResultCode.BAD_SIGNATURE,
                    "stale": ResultCode.STALE,
                }[exc.reason]
                raise BookmarkRefused(code, f"signature refused: {exc}") from exc
            nonce = request_header(tokens.NONCE_HEADER)
            try:
                body = parse_json_object(raw)
                if isinstance(body.get("UserID"), str):
                    user_id = body["UserID"][:MAX_TEXT]
                check_fields(
                    body,
                    {"EncryptToken": "text", "UserToken": "text", "ContentID": "text",
                     "ContentBM": "number", "UserID": "text"},
                    {"InterruptedAt": "number"},
                )
            except ApiError as exc:
                raise BookmarkRefused(ResultCode.BAD_REQUEST, exc.detail) from exc
            outcome = self._set_bookmark(nonce, raw, body)
        except BookmarkRefused as exc:
            bottle.response.status = exc.status
            return self._bookmark_resp(user_id, exc.code, exc.detail)
        except StorageError as exc:
            log.error("portal: storage failed while setting a bookmark: %s", exc)
            bottle.response.status = 503
            return self._bookmark_resp(user_id, ResultCode.STORAGE_ERROR,
                                       "the bookmark could not be stored; retry later")
        code, detail, current = outcome
        resp = self._bookmark_resp(user_id, code, detail)
        resp["Current"] = current
        return resp

    def _bookmark_resp(self, user_id: str, code: ResultCode, detail: str) -> dict[str, Any]:
        # Claim 6: UserID, the result and its description. The embodiment also names a
        # UserToken field "holding the UserID"; it is echoed as such.
        return {"UserID": user_id, "UserToken": user_id, "ResultCode": int(code),
                "Result": code.slug, "ResultDesc": detail}

    def _set_bookmark(
        self, nonce: str, raw: bytes, body: dict[str, Any]
    ) -> tuple[ResultCode, str, bool]:
        now = self.clock()
        body_sha = hashlib.sha256(raw).hexdigest()
        try:
            grant = tokens.verify_play_token(
                self.secret, body["EncryptToken"], now, leeway=self.settings.bookmark_grace
            )
        except tokens.InvalidToken as exc:
            if exc.reason == "expired":
                raise BookmarkRefused(ResultCode.PLAY_TOKEN_EXPIRED, str(exc)) from exc
            raise BookmarkRefused(
                ResultCode.BAD_PLAY_TOKEN, f"EncryptToken refused: {exc}"
            ) from exc
        # Claim 5: UserID names the user, and must be the user the play token was issued to.
        if body["UserID"] != grant.user_id or not self.store.user_exists(body["UserID"]):
            raise BookmarkRefused(ResultCode.USER_MISMATCH,
                                  "UserID is not the user the EncryptToken was issued to")
        if body["ContentID"] != grant.content_id:
            raise BookmarkRefused(ResultCode.TOKEN_MISMATCH,
                                  "ContentID is not the content the EncryptToken was issued for")
        if not hmac.compare_digest(body["UserToken"].encode(), grant.login_session.encode()):
            raise BookmarkRefused(ResultCode.TOKEN_MISMATCH,
                                  "UserToken is not the login session of the EncryptToken")
        login = self.store.session(grant.login_session)
        if login is None or login.user_id != grant.user_id:
            raise BookmarkRefused(ResultCode.UNKNOWN_LOGIN,
                                  "UserToken names no login session of this user")
        program = self.catalogue.get(grant.content_id)
        if program is None:
            raise BookmarkRefused(ResultCode.UNKNOWN_CONTENT, "no such ContentID in the catalogue")
        position = float(body["ContentBM"])
        if position < 0 or position > program.duration + POSITION_TOLERANCE:
            raise BookmarkRefused(
                ResultCode.POSITION_OUT_OF_RANGE,
                f"ContentBM {position:g} is outside 0..{program.duration:g} s",
            )
        interrupted_at = now
        if "InterruptedAt" in body:
            interrupted_at = float(body["InterruptedAt"])
            skew = self.settings.max_skew
            if not grant.issued - skew <= interrupted_at <= now + skew:
                raise BookmarkRefused(
                    ResultCode.BAD_REQUEST,
                    "InterruptedAt must lie between the token's issue time and now",
                )
        outcome = self.store.record_bookmark(
            BookmarkWrite(
                nonce=nonce,
                body_sha256=body_sha,
                user_id=grant.user_id,
                content_id=grant.content_id,
                position=round(min(position, program.duration), 3),
                encrypt_token=grant.token,
                login_session=grant.login_session,
                token_issued=grant.issued,
                interrupted_at=interrupted_at,
                received_at=now,
            )
        )
        if outcome.duplicate and not outcome.same_body:
            raise BookmarkRefused(ResultCode.NONCE_REUSED,
                                  "this nonce was already used for a different request")
        if outcome.duplicate:
            return (ResultCode.DUPLICATE,
                    "already stored by an earlier request with this nonce; nothing changed",
                    False)
        current = outcome.current
        if outcome.became_current:
            detail = f"bookmark saved at {format_clock(position)}"
        elif position <= 0:
            detail = "recorded in the history; a position of 0 makes no bookmark"
        else:
            kept = format_clock(current.position) if current else "?"
            detail = f"recorded in the history; the newer bookmark at {kept} was kept"
        return ResultCode.SAVED, detail, outcome.became_current

    # -- pages --

    def _render(self, name: str, **values: Any) -> str:
        values.setdefault("csrf", "")
        values.setdefault("fmt_pos", format_clock)
        values.setdefault("fmt_dur", format_duration)
        return bottle.template(name, template_lookup=[str(VIEWS)], **values)

    def _page_session(self) -> LoginSession | None:
        token = bottle.request.get_cookie(SESSION_COOKIE)
        return self._valid_session(token) if token else None

    def _page_user_token(self) -> str:
        return bottle.request.get_cookie(SESSION_COOKIE) or ""

    def _require_page_session(self) -> LoginSession:
        session = self._page_session()
        if session is None:
            bottle.redirect("/login")
        assert session is not None
        return session

    def csrf_token(self, session: LoginSession) -> str:
        return hmac.new(self._csrf_key, session.session_id.encode(), hashlib.sha256).hexdigest()

    def _check_csrf(self, session: LoginSession) -> None:
        sent = bottle.request.forms.get("csrf", "")
        if not hmac.compare_digest(sent.encode(), self.csrf_token(session).encode()):
            raise bottle.HTTPError(403, "The form has expired. Go back, reload and try again.")

    def page_home(self) -> None:
        bottle.redirect("/bookmarks" if self._page_session() else "/login")

    def page_login(self, error: str = "", user: str = "") -> str:
        if self._page_session() is not None and not error:
            bottle.redirect("/bookmarks")
        # Login CSRF: the form carries a value that must match a cookie only this site
        # can set, so another site cannot log the browser into an account of its choice.
        value = secrets.token_urlsafe(16)
        bottle.response.set_cookie(LOGIN_CSRF_COOKIE, value, httponly=True, samesite="lax",
                                   path="/login")
        return self._render("login.tpl", title="Sign in", csrf=value, error=error,
                            user_name=user, user=None)

    def page_login_post(self) -> str | None:
        forms = bottle.request.forms
        expected = bottle.request.get_cookie(LOGIN_CSRF_COOKIE) or ""
        sent = forms.get("csrf", "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            bottle.response.status = 400
            return self.page_login(error="The form has expired; please try again.")
        name = forms.getunicode("user", "") or ""
        password = forms.getunicode("password", "") or ""
        user_id = None
        if 0 < len(name) <= 64 and 0 < len(password) <= MAX_TEXT:
            user_id = self.store.authenticate(name, password)
        if user_id is None:
            bottle.response.status = 401
            return self.page_login(error="Unknown user or wrong password.", user=name[:64])
        _session, user_token = self.store.create_session(
            user_id, self.settings.login_ttl, self.clock()
        )
        bottle.response.set_cookie(SESSION_COOKIE, user_token, httponly=True, samesite="lax",
                                   path="/", max_age=int(self.settings.login_ttl))
        bottle.response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        bottle.redirect("/bookmarks", 303)
        return None

    def page_logout(self) -> None:
        session = self._page_session()
        if session is not None:
            self._check_csrf(session)
            self.store.revoke_session(session.session_id, self.clock())
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.redirect("/login", 303)

    def page_programs(self) -> str:
        session = self._require_page_session()
        marks = {b.content_id: b for b in self.store.bookmarks(session.user_id)}
        return self._render("programs.tpl", title="Programs", user=session.user_id,
                            csrf=self.csrf_token(session), programs=self.catalogue.list(),
                            marks=marks)

    def page_bookmarks(self) -> str:
        session = self._require_page_session()
        items = []
        for b in self.store.bookmarks(session.user_id):
            program = self.catalogue.get(b.content_id)
            items.append((b, program.title if program else title_for(b.content_id),
                          program.duration if program else None))
        return self._render("bookmarks.tpl", title="My bookmarks", user=session.user_id,
                            csrf=self.csrf_token(session), items=items, iso_time=iso_time)

    def page_play(self) -> str:
        session = self._require_page_session()
        self._check_csrf(session)
        program = self.catalogue.get(bottle.request.forms.getunicode("ContentID", "") or "")
        if program is None:
            raise bottle.HTTPError(404, "No such program.")
        play = self.start_play(session, program, start=0.0)
        return self._render("play.tpl", title=f"Play {program.title}", user=session.user_id,
                            csrf=self.csrf_token(session), program=program, play=play,
                            resumed=False)

    def page_resume(self) -> str:
        session = self._require_page_session()
        self._check_csrf(session)
        forms = bottle.request.forms
        try:
            content_bm = float(forms.get("ContentBM", ""))
        except ValueError:
            raise bottle.HTTPError(400, "Bad bookmark position.") from None
        try:
            play = self.bookmark_interface(
                user_token=self._page_user_token(),
                encrypt_token=forms.getunicode("EncryptToken", "") or "",
                content_id=forms.getunicode("ContentID", "") or "",
                content_bm=content_bm,
            )
        except ApiError as exc:
            raise bottle.HTTPError(exc.status, f"Cannot resume: {exc.detail}.") from None
        program = self.catalogue.get(play["ContentID"])
        assert program is not None
        return self._render("play.tpl", title=f"Resume {program.title}", user=session.user_id,
                            csrf=self.csrf_token(session), program=program, play=play,
                            resumed=True)

    def static(self, name: str) -> Any:
        return bottle.static_file(name, root=str(STATIC))


def _slug(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def create_app(
    store: Store,
    catalogue: Catalogue,
    secret: bytes,
    rtsp_url: str,
    *,
    clock: Callable[[], float] = time.time,
    **settings: Any,
) -> bottle.Bottle:
    """The portal as a WSGI application (a :class:`bottle.Bottle`).

    ``settings`` are the fields of :class:`Settings` (``login_ttl``, ``play_ttl``,
    ``max_skew``, ``bookmark_grace``).
    """
    return Portal(store, catalogue, secret, Settings(rtsp_url=rtsp_url, **settings), clock).app
