"""Helpers for the portal tests: a plain HTTP client and the streaming server's side of the
reverse bookmark call (signed exactly as :mod:`rtsp_resume.tokens` prescribes).

Everything goes over real HTTP to a running :class:`rtsp_resume.portal.PortalServer`.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtsp_resume import tokens
from rtsp_resume.portal import Kdf, PortalServer

# A cheap scrypt so that logins in tests take microseconds; the real cost is exercised by
# the subprocess test in test_portal_durability.py.
FAST_KDF = Kdf(n=2**4, r=1, p=1)
USERS = [("alice", "alice-pw"), ("bob", "bob-pw")]
RTSP_URL = "rtsp://127.0.0.1:8554"


class Clock:
    """A clock the test moves by hand (to expire tokens without waiting)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")


class Http:
    """One keep-alive connection to the portal (reopened when the server closes it)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        bearer: str | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return Reply(response.status, response.headers, raw)
        raise AssertionError("unreachable")

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Portal:
    """A running portal plus the calls the tests make on it."""

    def __init__(self, server: PortalServer, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.http = Http(server.url)

    @property
    def secret(self) -> bytes:
        return self.server.secret

    def login(self, user: str = "alice", password: str | None = None) -> str:
        password = password if password is not None else dict(USERS)[user]
        reply = self.http.post("/api/login", {"user": user, "password": password})
        assert reply.status == 200, reply.text
        return reply.json["UserToken"]

    def play(self, user_token: str, content_id: str = "sample") -> dict[str, Any]:
        reply = self.http.post("/api/play", {"ContentID": content_id}, bearer=user_token)
        assert reply.status == 200, reply.text
        return reply.json

    def bookmark_request(self, encrypt_token: str, position: float, **overrides: Any
                         ) -> dict[str, Any]:
        """The BookMarkReq the streaming server would build from the play token's grant."""
        grant = tokens.verify_play_token(self.secret, encrypt_token, self.clock(),
                                         leeway=float("inf"))
        req = {
            "EncryptToken": encrypt_token,
            "UserToken": grant.login_session,
            "ContentID": grant.content_id,
            "ContentBM": position,
            "UserID": grant.user_id,
        }
        req.update(overrides)
        return {k: v for k, v in req.items() if v is not _DROP}

    def set_bookmark(
        self,
        body: dict[str, Any] | bytes,
        *,
        nonce: str | None = None,
        key: bytes | None = None,
        now: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """POST /api/bookmark/set signed like the streaming server does."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        signed = tokens.sign_request(key or self.secret, raw,
                                     self.clock() if now is None else now, nonce=nonce)
        signed["Content-Type"] = "application/json"
        signed.update(headers or {})
        return self.http.post("/api/bookmark/set", raw, headers=signed)

    def interrupt(self, user_token: str, position: float, content_id: str = "sample"
                  ) -> dict[str, Any]:
        """Play, then have the 'streaming server' report the interruption at ``position``."""
        play = self.play(user_token, content_id)
        reply = self.set_bookmark(self.bookmark_request(play["EncryptToken"], position))
        assert reply.status == 200 and reply.json["ResultCode"] == 0, reply.text
        return play

    def bookmarks(self, user_token: str) -> list[dict[str, Any]]:
        reply = self.http.get("/api/bookmarks", bearer=user_token)
        assert reply.status == 200, reply.text
        return reply.json

    def interface(self, **body: Any) -> Reply:
        return self.http.post("/api/bookmark/interface", body)


_DROP = object()
DROP: Any = _DROP  # pass as an override to leave a field out of a BookMarkReq


@contextmanager
def running_portal(data_dir: Path, media_dir: Path, **kw: Any) -> Iterator[Portal]:
    clock = kw.pop("clock", None) or Clock()
    server = PortalServer(data_dir, media_dir, kw.pop("rtsp_url", RTSP_URL),
                          kw.pop("users", USERS),
                          kdf=kw.pop("kdf", FAST_KDF), clock=clock, **kw)
    server.start()
    portal = Portal(server, clock)
    try:
        yield portal
    finally:
        portal.http.close()
        server.stop()
