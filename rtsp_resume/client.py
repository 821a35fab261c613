"""The patent's mobile terminal: the portal client, which with :mod:`rtsp_resume.player`
is the terminal. :class:`PortalClient` speaks the web portal's JSON API (claims 1, 3, 7,
9): log in, list programs, get a play URL, list the reverse bookmarks, ask the bookmark
interface for a resume URL::

    portal = PortalClient("http://127.0.0.1:8080")
    portal.login("alice", "alice-pw")
    answer = portal.bookmark_interface(portal.bookmarks()[0])
    Player(answer["url"], start=answer["ContentBM"]).start()
"""

from __future__ import annotations

from typing import Any

from rtsp_resume.httpjson import request_json


class PortalError(Exception):
    """The portal refused or could not be reached: ``status`` is the HTTP status (None
    without an answer), ``body`` its JSON ``{"error", "detail"}`` or its text."""

    def __init__(self, status: int | None, body: Any) -> None:
        self.status, self.body = status, body
        fields = isinstance(body, dict)  # the portal's JSON refusal, else its text
        self.error: str | None = body.get("error") if fields else None
        self.detail: str | None = body.get("detail") if fields else (str(body) if body else None)
        super().__init__(f"portal: {status if status is not None else 'no answer'}: "
                         f"{self.error or ''} {self.detail or ''}".rstrip())


def interface_request(bookmark: dict[str, Any], user_token: str | None) -> dict[str, Any]:
    """The bookmark interface's request for a listed bookmark (claims 3, 4, 9): its play
    token, program and time point, with the terminal's current login."""
    return {"EncryptToken": bookmark["EncryptToken"], "UserToken": user_token,
            "ContentID": bookmark["ContentID"], "ContentBM": bookmark["ContentBM"]}


class PortalClient:
    """The portal's JSON API as the terminal uses it, at ``base_url`` (``http://host:port``),
    each request within ``timeout`` s; after :meth:`login` with ``Authorization: Bearer``."""

    def __init__(self, base_url: str, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.user_id: str | None = None
        self.user_token: str | None = None

    def login(self, user: str, password: str) -> dict[str, Any]:
        """``POST /api/login`` -> ``{UserID, UserToken, expires_in}``; keeps the token."""
        answer = self._call("POST", "/api/login", {"user": user, "password": password}, dict)
        if not isinstance(answer.get("UserToken"), str):
            raise PortalError(200, {"error": "bad_answer", "detail": "login without a UserToken"})
        self.user_id, self.user_token = answer.get("UserID"), answer["UserToken"]
        return answer

    def contents(self) -> list[dict[str, Any]]:
        """``GET /api/contents``: the programs, ``{ContentID, title, duration}`` each."""
        return self._call("GET", "/api/contents", expect=list)

    def play(self, content_id: str) -> dict[str, Any]:
        """``POST /api/play`` -> ``{EncryptToken, url, ...}``: the RTSP URL to open."""
        return self._call("POST", "/api/play", {"ContentID": content_id}, dict)

    def bookmarks(self) -> list[dict[str, Any]]:
        """``GET /api/bookmarks``: this user's reverse bookmarks (claim 3: all of them)."""
        return self._call("GET", "/api/bookmarks", expect=list)

    def bookmark_interface(self, bookmark: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/bookmark/interface`` (claims 3, 9) for a listed bookmark -> ``{url,
        ContentBM, EncryptToken, ...}``: a resume URL starting at the bookmark."""
        if self.user_token is None:
            raise RuntimeError("log in first: the bookmark interface needs a UserToken")
        body = interface_request(bookmark, self.user_token)
        return self._call("POST", "/api/bookmark/interface", body, dict)

    def logout(self) -> None:
        """``POST /api/logout``; forgets the UserToken. Does nothing when logged out."""
        if self.user_token is None:
            return
        try:
            self._call("POST", "/api/logout", {})
        finally:
            self.user_token = self.user_id = None

    def _call(self, method: str, path: str, body: Any = None, expect: type = object) -> Any:
        """One exchange; anything but a 2xx JSON answer of type ``expect`` raises."""
        bearer = self.user_token is not None and path != "/api/login"  # a login starts afresh
        headers = {"Authorization": f"Bearer {self.user_token}"} if bearer else {}
        try:
            status, answer = request_json(method, self.base_url + path, body, headers, self.timeout)
        except OSError as exc:  # refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise PortalError(None, {"error": "unreachable",
                                     "detail": f"{self.base_url}: {reason}"}) from exc
        if not 200 <= status < 300:
            raise PortalError(status, answer)
        if not isinstance(answer, expect) or isinstance(answer, str):
            raise PortalError(status, {"error": "bad_answer", "detail": f"{method} {path}: "
                                       f"expected a JSON {expect.__name__}"})
        return answer
