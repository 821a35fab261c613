"""The streaming server's side of the reverse bookmark-set interface (claims 1, 3, 6, 9).

The portal may be down or slow when an interruption is declared, and the server must not
wait for it: each BookMarkReq goes first into a durable outbox (SQLite) and a worker thread
delivers it. Its nonce, given when queued, is its idempotency key: every retry is signed
afresh with the *same* nonce, so a retry whose first try arrived is a "duplicate", not a
second bookmark. Network errors, 5xx and ResultCode 30 (storage failed) are retried with
exponential backoff; 0 (saved) and 1 (duplicate) are delivered; any other ResultCode is a
refusal no retry can change. It speaks only HTTP to the portal, never imports it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtsp_resume import tokens
from rtsp_resume.httpjson import request_json
from rtsp_resume.session import Interruption

log = logging.getLogger("rtsp_resume.outbox")

DELIVERED_CODES = {0, 1}  # saved, duplicate
RETRY_CODES = {30}  # the portal's storage failed


def bookmark_request(event: Interruption, server: str = "") -> dict[str, Any] | None:
    """The BookMarkReq of the embodiment's step 2, or None when nobody is logged in.

    ``UserToken`` carries the login session named in the play token: the streaming server
    never holds the viewer's bearer secret (see :mod:`rtsp_resume.portal`). ``server``, the
    streaming server's name, tells the portal's log which of several sent it.
    """
    if event.user_id is None or event.play_token is None:
        return None
    return {
        "EncryptToken": event.play_token,
        "UserToken": event.login_session,
        "ContentID": event.content_id,
        "ContentBM": round(max(0.0, event.position), 3),
        "UserID": event.user_id,
        # When it happened, so that the portal orders late retries correctly.
        "InterruptedAt": round(event.detected_at, 3),
    } | ({"Server": server} if server else {})


@dataclass(frozen=True)
class Delivery:
    """One BookMarkReq and what became of it (for logs, the demo and widgets)."""

    nonce: str
    request: dict[str, Any]
    status: str  # "pending", "delivered", "refused"
    attempts: int
    response: dict[str, Any] | None


class BookmarkOutbox:
    """A durable, retrying sender of BookMarkReq to ``{portal_url}/api/bookmark/set``, each
    naming the streaming server ``name``."""

    def __init__(self, portal_url: str, key: bytes, path: Path | str, *, name: str = "",
                 first_retry: float = 0.25, max_retry: float = 30.0,
                 http_timeout: float = 5.0) -> None:
        self.endpoint = portal_url.rstrip("/") + "/api/bookmark/set"
        self.key, self.name, self.http_timeout = key, name, http_timeout
        self.first_retry, self.max_retry = first_retry, max_retry
        self.listeners: list[Callable[[str, Delivery], Any]] = []  # ("sent"|"answered", ...)
        path = Path(path)
        # The queue holds live play tokens: a private folder and file (SQLite gives the
        # WAL and shared-memory files the database file's mode).
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE IF NOT EXISTS outbox ("
            " nonce TEXT PRIMARY KEY, body TEXT NOT NULL, queued REAL NOT NULL,"
            " status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
            " next_try REAL NOT NULL, response TEXT)")
        self._wake = threading.Condition()  # guards the connection, wakes the worker
        self._stop = False
        self._thread: threading.Thread | None = None

    def submit(self, event: Interruption) -> str | None:
        """Queue the bookmark of an interruption; returns its nonce (None: no user). Called
        on the streaming server's loop, so it only writes a row and wakes the worker."""
        request = bookmark_request(event, self.name)
        if request is None:
            log.info("interruption of %s without a play token: no bookmark", event.content_id)
            return None
        nonce = secrets.token_urlsafe(18)
        now = time.time()
        with self._wake:
            self._db.execute(
                "INSERT INTO outbox (nonce, body, queued, next_try) VALUES (?, ?, ?, ?)",
                (nonce, json.dumps(request, separators=(",", ":")), now, now),
            )
            self._wake.notify_all()  # the worker, whoever else waits
        return nonce

    def get(self, nonce: str) -> Delivery | None:
        return next(iter(self._select("WHERE nonce = ?", nonce)), None)

    def deliveries(self) -> list[Delivery]:
        return self._select("ORDER BY queued")

    def _select(self, rest: str, *params: Any) -> list[Delivery]:
        with self._wake:
            rows = self._db.execute(
                f"SELECT nonce, body, status, attempts, response FROM outbox {rest}", params
            ).fetchall()
        return [Delivery(nonce, json.loads(body), status, attempts,
                         json.loads(response) if response else None)
                for nonce, body, status, attempts, response in rows]

    def wait(self, nonce: str, timeout: float) -> Delivery | None:
        """Block until the request is no longer pending, or ``timeout`` passes."""
        with self._wake:  # get() takes this (reentrant) lock again
            self._wake.wait_for(lambda: getattr(self.get(nonce), "status", "") != "pending",
                                timeout)
            return self.get(nonce)

    def start(self) -> BookmarkOutbox:
        self._thread = threading.Thread(target=self._run, name="bookmark-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(self.http_timeout + 2)
            self._thread = None
        with self._wake:
            self._db.close()

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
                row = self._db.execute(
                    "SELECT nonce, body, attempts, next_try FROM outbox WHERE status = 'pending'"
                    " ORDER BY next_try LIMIT 1"
                ).fetchone()
                now = time.time()
                if row is None or row[3] > now:
                    self._wake.wait(None if row is None else row[3] - now)
                    continue
            self._attempt(row[0], row[1], row[2])

    def _attempt(self, nonce: str, body: str, attempts: int) -> None:
        data = body.encode()
        headers = {"Content-Type": "application/json",
                   **tokens.sign_request(self.key, data, time.time(), nonce=nonce)}
        self._notify("sent", nonce)
        try:
            status, answer = request_json("POST", self.endpoint, data, headers,
                                          timeout=self.http_timeout)
        except OSError as exc:
            log.info("bookmark %s: portal unreachable (%s); will retry", nonce[:8], exc)
            status, answer = 0, None
        response = answer if isinstance(answer, dict) else None
        # Refusals come as 4xx with a BookMarkResp body; 5xx means try again later.
        code = response.get("ResultCode") if response is not None and status < 500 else None
        if code is None or code in RETRY_CODES:
            status = "pending"
        elif code in DELIVERED_CODES:
            status = "delivered"
        else:
            status = "refused"
            log.warning("bookmark %s refused by the portal: %s", nonce[:8], response)
        backoff = min(self.max_retry, self.first_retry * (2 ** attempts))
        with self._wake:
            self._db.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, next_try = ?,"
                " response = ? WHERE nonce = ?",
                (status, time.time() + backoff, json.dumps(response) if response else None,
                 nonce),
            )
            self._wake.notify_all()
        if status != "pending":
            self._notify("answered", nonce)

    def _notify(self, what: str, nonce: str) -> None:
        delivery = self.get(nonce) if self.listeners else None
        if delivery is None:
            return
        for listener in self.listeners:
            try:
                listener(what, delivery)
            except Exception:
                log.exception("outbox listener failed")

