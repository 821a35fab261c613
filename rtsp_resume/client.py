"""The terminal (the patent's mobile terminal): a portal client and a player.

:class:`PortalClient` talks to the web portal's JSON API (claims 1, 3, 7, 9): log in, list
programs, get a play URL, list the reverse bookmarks the streaming server left, and ask
the bookmark interface for a resume URL. The player lives in :mod:`rtsp_resume.player`
and is re-exported here, so ``from rtsp_resume.client import PortalClient, Player`` is
the whole terminal.

A resume, as a terminal does it::

    portal = PortalClient("http://127.0.0.1:8080")
    portal.login("alice", "alice-pw")
    bookmark = portal.bookmarks()[0]
    answer = portal.bookmark_interface(bookmark)
    Player(answer["url"], start=answer["ContentBM"]).start()

Only the standard library is used for HTTP, so the terminal needs nothing the portal
needs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from rtsp_resume.player import Player, PlayerCounters, PlayerError, ShownFrame

__all__ = [
    "Player",
    "PlayerCounters",
    "PlayerError",
    "PortalClient",
    "PortalError",
    "ShownFrame",
]


class PortalError(Exception):
    """The portal refused or could not be reached.

    ``status`` is the HTTP status (None when no answer came at all), ``body`` the decoded
    JSON answer (``{"error": ..., "detail": ...}`` from the portal), or the raw text when
    it was not JSON. :attr:`error` and :attr:`detail` read the two usual fields.
    """

    def __init__(self, status: int | None, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"portal: {status if status is not None else 'no answer'}: "
                         f"{self.error or ''} {self.detail or ''}".rstrip())

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @property
    def detail(self) -> str | None:
        if isinstance(self.body, dict):
            return self.body.get("detail")
        return str(self.body) if self.body else None


def interface_request(bookmark: dict[str, Any], user_token: str | None) -> dict[str, Any]:
    """The request for the bookmark interface of a listed bookmark (claims 3, 4, 9): its
    play token, program and time point, with the terminal's current login."""
    return {"EncryptToken": bookmark["EncryptToken"], "UserToken": user_token,
            "ContentID": bookmark["ContentID"], "ContentBM": bookmark["ContentBM"]}


class PortalClient:
    """The portal's JSON API as the terminal uses it.

    ``base_url`` is the portal's root (``http://host:port``); ``timeout`` bounds every
    request in seconds. After :meth:`login` the client keeps the UserToken and sends
    ``Authorization: Bearer <UserToken>`` with every request.
    """

    def __init__(self, base_url: str, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user_id: str | None = None
        self.user_token: str | None = None

    # -- the API -----------------------------------------------------------------------

    def login(self, user: str, password: str) -> dict[str, Any]:
        """``POST /api/login`` -> ``{UserID, UserToken, expires_in}``; keeps the token."""
        answer = self._call("POST", "/api/login", {"user": user, "password": password},
                            auth=False)
        if not isinstance(answer, dict) or not isinstance(answer.get("UserToken"), str):
            raise PortalError(200, {"error": "bad_answer",
                                    "detail": "login answer without a UserToken"})
        self.user_id = answer.get("UserID")
        self.user_token = answer["UserToken"]
        return answer

    def contents(self) -> list[dict[str, Any]]:
        """``GET /api/contents``: the programs, ``{ContentID, title, duration}`` each."""
        return self._expect_list(self._call("GET", "/api/contents"))

    def play(self, content_id: str) -> dict[str, Any]:
        """``POST /api/play`` -> ``{EncryptToken, url, ...}``: the RTSP URL to open."""
        return self._expect_dict(self._call("POST", "/api/play", {"ContentID": content_id}))

    def bookmarks(self) -> list[dict[str, Any]]:
        """``GET /api/bookmarks``: this user's reverse bookmarks (claim 3: all of them)."""
        return self._expect_list(self._call("GET", "/api/bookmarks"))

    def bookmark_interface(self, bookmark: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/bookmark/interface`` (claims 3, 9) with the chosen bookmark's
        EncryptToken, ContentID and ContentBM and our UserToken -> ``{url, ContentBM,
        EncryptToken, ...}``: a resume URL starting at the bookmark."""
        if self.user_token is None:
            raise RuntimeError("log in first: the bookmark interface needs a UserToken")
        body = interface_request(bookmark, self.user_token)
        return self._expect_dict(self._call("POST", "/api/bookmark/interface", body))

    def logout(self) -> None:
        """``POST /api/logout``; forgets the UserToken. Does nothing when logged out."""
        if self.user_token is None:
            return
        try:
            self._call("POST", "/api/logout", {})
        finally:
            self.user_token = None
            self.user_id = None

    # -- HTTP ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              auth: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth and self.user_token is not None:
            headers["Authorization"] = f"Bearer {self.user_token}"
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            raw = b""
            try:
                raw = exc.read()
            except OSError:
                pass
            raise PortalError(exc.code, _decode(raw)) from None
        except OSError as exc:  # URLError, refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise PortalError(None, {"error": "unreachable",
                                     "detail": f"{self.base_url}: {reason}"}) from exc
        decoded = _decode(raw)
        if isinstance(decoded, str):
            raise PortalError(status, {"error": "bad_answer",
                                       "detail": f"{method} {path}: the answer is not JSON"})
        return decoded

    @staticmethod
    def _expect_dict(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise PortalError(200, {"error": "bad_answer", "detail": "expected a JSON object"})
        return value

    @staticmethod
    def _expect_list(value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise PortalError(200, {"error": "bad_answer", "detail": "expected a JSON list"})
        return value


def _decode(raw: bytes) -> Any:
    """The JSON in ``raw``, or its text when it is not JSON (kept for the error)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", "replace")
