"""The portal's JSON API (``/api/...``) with the reverse bookmark-set interface.

The patent's **UserToken** is the bearer secret a login returns (stored only as its SHA-256,
beside a random *login session id*); its **EncryptToken** is a play token
(:mod:`rtsp_resume.tokens`) naming user, content and login session id, which the streaming
server sends as the BookMarkReq's ``UserToken`` (it never holds the viewer's secret). The
**bookmark interface** (claims 3, 4, 9, 10) answers with an ``rtsp://`` URL whose fresh play
token starts at the bookmark, so a player that does not seek still begins there."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import bottle

from rtsp_resume import tokens
from rtsp_resume.portal import checks
from rtsp_resume.portal.catalogue import Catalogue, Program
from rtsp_resume.portal.checks import MAX_BODY, ApiError
from rtsp_resume.portal.pages import Pages, iso_time, render
from rtsp_resume.portal.passwords import GuessBrake
from rtsp_resume.portal.store import BookmarkWrite, LoginSession, StorageError, Store
from rtsp_resume.position import format_clock

log = logging.getLogger(__name__)

OPENAPI = Path(__file__).parent / "openapi.yaml"
POSITION_TOLERANCE = 1.0  # s: a position estimate may run a frame or so past the end
_CHALLENGE = 'Bearer realm="rtsp-resume"'
# The bookmark interface's request; a BookMarkReq adds UserID (and may add InterruptedAt).
_BOOKMARK_FIELDS = {"EncryptToken": "text", "UserToken": "text", "ContentID": "text",
                    "ContentBM": "number"}
_SIGNED_HEADERS = (tokens.TIMESTAMP_HEADER, tokens.NONCE_HEADER, tokens.SIGNATURE_HEADER,
                   tokens.IDEMPOTENCY_HEADER)


class ResultCode(IntEnum):
    """BookMarkResp.ResultCode of the reverse bookmark-set interface (claim 6).
    0: stored; 1: this nonce was stored already and nothing more was written (a retry may
    count it delivered). The rest are refusals a retry cannot change, except 30 (the
    database failed: retry later)."""

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
# The HTTP status of each ResultCode: 403 unless said otherwise.
HTTP_STATUS = {code: 403 for code in ResultCode} | {
    _R.SAVED: 200, _R.DUPLICATE: 200, _R.BAD_REQUEST: 400, _R.UNSIGNED: 401,
    _R.NONCE_REUSED: 409, _R.UNKNOWN_CONTENT: 404, _R.POSITION_OUT_OF_RANGE: 422,
    _R.STORAGE_ERROR: 503}
# Why tokens.verify_request refused a reverse call, as a ResultCode.
_SIGNATURE_CODES = {"missing": _R.UNSIGNED, "malformed": _R.BAD_SIGNATURE,
                    "bad signature": _R.BAD_SIGNATURE, "stale": _R.STALE}


class BookmarkRefused(Exception):
    """A refused BookMarkReq, raised as ``BookmarkRefused(code, detail)``."""


@dataclass(frozen=True)
class Settings:
    rtsp_url: str | Sequence[str]  # several streaming servers: plays go to each in turn
    login_ttl: float = 8 * 3600.0
    play_ttl: float = tokens.DEFAULT_TTL
    max_skew: float = 300.0
    # A play session is checked when it starts, so it may outlive its token; its bookmark
    # (or a queued retry of it) is still accepted this long after the token expired.
    bookmark_grace: float = 24 * 3600.0


def _bookmark_resp(user_id: str, code: ResultCode, detail: str) -> dict[str, Any]:
    # Claim 6: UserID, the result and its description; the embodiment's UserToken field
    # "holding the UserID" is echoed as such.
    return {"UserID": user_id, "UserToken": user_id, "ResultCode": int(code),
            "Result": code.slug, "ResultDesc": detail}


class Portal:
    """The routes, bound to one store, catalogue, key and clock."""

    def __init__(self, store: Store, catalogue: Catalogue, secret: bytes, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.catalogue, self.secret = store, catalogue, secret
        self.settings, self.clock = settings, clock
        self.brake = GuessBrake(clock)  # in this process's memory: see docs/deploy.md
        urls = settings.rtsp_url
        self._rtsp_urls = itertools.cycle([urls] if isinstance(urls, str) else urls)
        self.app = app = bottle.Bottle(catchall=True, autojson=True)
        app.add_hook("before_request", checks.before_request)
        app.add_hook("after_request", checks.after_request)
        app.default_error_handler = self._error_page  # type: ignore[method-assign]
        for method, path, handler in [
            ("POST", "/api/login", self.api_login), ("POST", "/api/logout", self.api_logout),
            ("GET", "/api/contents", self.api_contents), ("POST", "/api/play", self.api_play),
            ("GET", "/api/bookmarks", self.api_bookmarks),
            ("POST", "/api/bookmark/interface", self.api_bookmark_interface),
        ]:
            app.route(path, method, checks.json_route(handler))
        app.route("/api/bookmark/set", "POST", self.api_bookmark_set)
        app.route("/api/openapi.yaml", "GET", self.api_openapi)
        self.pages = Pages(self)

    # -- shared by the routes --

    def _error_page(self, error: bottle.HTTPError) -> str:
        status, path = error.status_code, bottle.request.path
        detail = error.body if isinstance(error.body, str) else ""
        if status >= 500:
            log.error("portal: %s %s -> %s", bottle.request.method, path, error.traceback or detail)
        if path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            if path == "/api/bookmark/set":  # the streaming server reads a BookMarkResp
                code = _R.STORAGE_ERROR if status >= 500 else _R.BAD_REQUEST
                return json.dumps(_bookmark_resp("", code, detail or error.status_line))
            slug = error.status_line.partition(" ")[2].lower().replace(" ", "_").replace("-", "_")
            return json.dumps({"error": slug, "detail": detail or error.status_line})
        bottle.response.content_type = "text/html; charset=utf-8"
        return render("error.tpl", title=error.status_line, status=error.status_line,
                      detail=detail, user=None)

    def _json_body(self) -> dict[str, Any]:
        if bottle.request.content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
        return checks.parse_json_object(bottle.request.body.read(MAX_BODY + 1))

    def _bearer(self) -> LoginSession:
        """The login session named by ``Authorization: Bearer <UserToken>``, or 401."""
        scheme, _, token = checks.request_header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <UserToken>",
                           WWW_Authenticate=_CHALLENGE)
        session = self.valid_session(token.strip())
        if session is None:
            raise ApiError(401, "invalid_token", "the UserToken is unknown, expired or logged out",
                           WWW_Authenticate=_CHALLENGE + ', error="invalid_token"')
        return session

    def valid_session(self, user_token: str) -> LoginSession | None:
        if not user_token or len(user_token) > checks.MAX_TEXT:
            return None
        session = self.store.session_for_token(user_token)
        return session if session is not None and session.valid(self.clock()) else None

    def login(self, name: str, password: str) -> tuple[str, str]:
        """A new login session's UserID and UserToken; behind the guessing brake (ApiError
        429 while it holds), and ApiError 401 for a wrong password."""
        keys = ("user:" + name, "addr:" + bottle.request.environ.get("REMOTE_ADDR", ""))
        wait = math.ceil(self.brake.attempt(*keys))
        if wait:
            raise ApiError(429, "too_many_attempts", f"too many wrong passwords; retry in "
                           f"{wait} s", Retry_After=str(wait))
        user_id = self.store.authenticate(name, password)
        if user_id is None:
            raise ApiError(401, "bad_credentials", "unknown user or wrong password")
        self.brake.succeeded(*keys)
        _, user_token = self.store.create_session(user_id, self.settings.login_ttl, self.clock())
        return user_id, user_token

    # -- JSON API --

    def api_login(self) -> dict[str, Any]:
        body = checks.check_fields(self._json_body(), {"user": "text", "password": "text"})
        user_id, user_token = self.login(body["user"], body["password"])
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
        body = checks.check_fields(self._json_body(), {"ContentID": "text"})
        program = self.catalogue.get(body["ContentID"])
        if program is None:
            raise ApiError(404, "unknown_content", "no such ContentID in the catalogue")
        return self.start_play(session, program, start=0.0)

    def start_play(self, session: LoginSession, program: Program, start: float) -> dict[str, Any]:
        token = tokens.issue_play_token(
            self.secret, user_id=session.user_id, content_id=program.content_id,
            login_session=session.session_id, start=start, ttl=self.settings.play_ttl,
            now=self.clock())
        base = next(self._rtsp_urls).rstrip("/")
        url = f"{base}/{urllib.parse.quote(program.content_id, safe='')}?token={token}"
        return {"ContentID": program.content_id, "EncryptToken": token, "url": url,
                "ContentBM": round(start, 3), "expires_in": int(self.settings.play_ttl)}

    def api_bookmarks(self) -> list[dict[str, Any]]:
        answer = []
        for b in self.store.bookmarks(self._bearer().user_id):
            title, duration = self.catalogue.describe(b.content_id)
            answer.append({"UserID": b.user_id, "ContentID": b.content_id, "title": title,
                           "ContentBM": round(b.position, 3),
                           "duration": None if duration is None else round(duration, 3),
                           "saved_at": iso_time(b.saved_at), "EncryptToken": b.encrypt_token})
        return answer

    def api_bookmark_interface(self) -> dict[str, Any]:
        body = checks.check_fields(self._json_body(), _BOOKMARK_FIELDS)
        # The UserToken in the body is the credential (claims 4, 10); a bearer header is
        # optional, and when present must be a login of the same user.
        bearer_user = self._bearer().user_id if checks.request_header("Authorization") else None
        return self.bookmark_interface(
            user_token=body["UserToken"], encrypt_token=body["EncryptToken"],
            content_id=body["ContentID"], content_bm=float(body["ContentBM"]),
            bearer_user=bearer_user)

    def bookmark_interface(self, *, user_token: str, encrypt_token: str, content_id: str,
                           content_bm: float, bearer_user: str | None = None) -> dict[str, Any]:
        """Claims 3, 4, 9, 10: a valid login's UserToken, and the EncryptToken and ContentBM
        of its user's current bookmark for ContentID, get a resume URL starting there."""
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
            # The signature's headers alone, as sent (another header may not even decode).
            sent = bottle.request.headers
            headers = {name: sent[name] for name in _SIGNED_HEADERS if name in sent}
            nonce = tokens.verify_request(self.secret, raw, headers, self.clock(),
                                          max_skew=self.settings.max_skew)
            body = checks.parse_json_object(raw)
            if isinstance(body.get("UserID"), str):
                user_id = body["UserID"][:checks.MAX_TEXT]
            checks.check_fields(body, _BOOKMARK_FIELDS | {"UserID": "text"},
                                {"InterruptedAt": "number", "Server": "text"})
            code, detail, current = self._set_bookmark(nonce, raw, body)
            log.info("BookMarkReq from %s for %s: %s", body.get("Server", "?"), user_id, detail)
            return {**_bookmark_resp(user_id, code, detail), "Current": current}
        except tokens.InvalidSignature as exc:
            code, detail = _SIGNATURE_CODES[exc.reason], f"signature refused: {exc}"
        except ApiError as exc:  # not a BookMarkReq
            code, detail = _R.BAD_REQUEST, exc.detail
        except BookmarkRefused as exc:
            code, detail = exc.args
        except StorageError as exc:
            log.error("portal: storage failed while setting a bookmark: %s", exc)
            code, detail = _R.STORAGE_ERROR, "the bookmark could not be stored; retry later"
        bottle.response.status = HTTP_STATUS[code]
        return _bookmark_resp(user_id, code, detail)

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
        known = own_login or self.store.user_exists(grant.user_id)
        if body["UserID"] != grant.user_id or not known:
            raise BookmarkRefused(_R.USER_MISMATCH, "UserID is not the EncryptToken's user")
        if body["ContentID"] != grant.content_id:
            raise BookmarkRefused(_R.TOKEN_MISMATCH, "ContentID is not the EncryptToken's content")
        if not hmac.compare_digest(body["UserToken"].encode(), grant.login_session.encode()):
            raise BookmarkRefused(_R.TOKEN_MISMATCH, "UserToken is not the EncryptToken's login")
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
            raise BookmarkRefused(_R.BAD_REQUEST, "InterruptedAt is before the token or after now")
        outcome = self.store.record_bookmark(BookmarkWrite(
            user_id=grant.user_id, content_id=grant.content_id,
            position=round(min(position, program.duration), 3), encrypt_token=grant.token,
            login_session=grant.login_session, token_issued=grant.issued,
            interrupted_at=interrupted_at, saved_at=now, nonce=nonce,
            body_sha256=hashlib.sha256(raw).hexdigest()))
        if outcome.duplicate and not outcome.same_body:
            raise BookmarkRefused(_R.NONCE_REUSED, "this nonce was used for another request")
        if outcome.duplicate:
            return (_R.DUPLICATE,
                    "already stored by an earlier request with this nonce; nothing changed", False)
        if outcome.became_current:
            return _R.SAVED, f"bookmark saved at {format_clock(position)}", True
        if position <= 0:
            return _R.SAVED, "recorded in the history; a position of 0 makes no bookmark", False
        kept = format_clock(outcome.current.position) if outcome.current else "?"
        return _R.SAVED, f"recorded in the history; the newer bookmark at {kept} was kept", False

