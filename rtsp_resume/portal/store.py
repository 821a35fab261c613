"""The portal's storage: accounts, login sessions and bookmarks in one SQL database.

A bookmark answered with ResultCode 0 outlives a ``kill -9``: one transaction per request,
answered after its COMMIT (SQLite in WAL mode with ``synchronous=FULL``, or PostgreSQL). The
statements are portable (:mod:`.database` holds the differences); the bookmark rules (claims
1, 5) are one statement each, in :meth:`Store.record_bookmark`, and keep the newer bookmark
whichever portal process writes it."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtsp_resume.portal.database import Database, StorageError  # noqa: F401 (a contract)
from rtsp_resume.portal.passwords import Kdf, token_hash

DB_NAME = "portal.sqlite3"
USER_NAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")

_SCHEMA = """CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS login_sessions (
    session_id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id),
    token_hash TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL, revoked DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS bookmark_history (
    id {serial}, nonce TEXT NOT NULL UNIQUE, body_sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL, content_id TEXT NOT NULL, position DOUBLE PRECISION NOT NULL,
    encrypt_token TEXT NOT NULL, login_session TEXT NOT NULL,
    token_issued DOUBLE PRECISION NOT NULL, interrupted_at DOUBLE PRECISION NOT NULL,
    received_at DOUBLE PRECISION NOT NULL, became_current INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bookmarks (
    user_id TEXT NOT NULL, content_id TEXT NOT NULL, position DOUBLE PRECISION NOT NULL,
    encrypt_token TEXT NOT NULL, login_session TEXT NOT NULL,
    token_issued DOUBLE PRECISION NOT NULL, interrupted_at DOUBLE PRECISION NOT NULL,
    saved_at DOUBLE PRECISION NOT NULL, history_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, content_id));
"""
_BOOKMARK = ("user_id, content_id, position, encrypt_token, login_session, token_issued,"
             " interrupted_at, saved_at")
# The history's columns in BookmarkWrite's field order (its received_at is saved_at).
_HISTORY = _BOOKMARK.replace("saved_at", "received_at") + ", nonce, body_sha256"
# What a newer bookmark replaces: every column but the key.
_REPLACE = ", ".join(f"{c} = excluded.{c}" for c in [*_BOOKMARK.split(", ")[2:], "history_id"])
_SESSION = "session_id, user_id, created, expires, revoked"


@dataclass(frozen=True)
class LoginSession:
    session_id: str
    user_id: str
    created: float
    expires: float
    revoked: float | None

    def valid(self, now: float) -> bool:
        return self.revoked is None and now < self.expires


@dataclass(frozen=True)
class Bookmark:
    user_id: str
    content_id: str
    position: float  # ContentBM, seconds
    encrypt_token: str  # the play token of the interrupted session
    login_session: str  # the login session that play session was started from
    token_issued: float
    interrupted_at: float
    saved_at: float


@dataclass(frozen=True)
class BookmarkWrite(Bookmark):
    """An accepted bookmark request: the bookmark it brings, its nonce and body hash."""

    nonce: str
    body_sha256: str


@dataclass(frozen=True)
class WriteOutcome:
    duplicate: bool  # this nonce was already stored: nothing was written
    same_body: bool  # for a duplicate: the stored request had the same body
    became_current: bool  # the current bookmark is now this one
    current: Bookmark | None  # the current bookmark for (user, content) afterwards


class Store:
    """Accounts, login sessions and bookmarks; safe to use from many threads."""

    def __init__(self, data_dir: Path, *, kdf: Kdf | None = None,
                 database: str | None = None) -> None:
        """``database``: a URL (see :mod:`.database`); default, a SQLite file in data_dir."""
        self.kdf = kdf or Kdf()
        # Checked when the user does not exist, so an unknown name costs a wrong password's time.
        self._dummy_hash = self.kdf.hash(secrets.token_urlsafe(8))
        self.db = Database(database or f"sqlite:///{Path(data_dir) / DB_NAME}", _SCHEMA)

    def _one(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        """The first row, if any (psycopg, unlike sqlite3, refuses to fetch from an UPDATE)."""
        with self.db.transaction() as cur:
            found = cur.execute(sql, params)
            return found.fetchone() if found.description else None

    def _all(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.db.transaction() as cur:
            return cur.execute(sql, params).fetchall()

    def close(self) -> None:
        self.db.close()

    def add_user(self, name: str, password: str, now: float) -> str:
        """Create the account, or set its password; return its UserID (the account name)."""
        if not USER_NAME_RE.fullmatch(name):
            raise ValueError(f"user name must be 1-64 characters of [A-Za-z0-9._@-]: {name!r}")
        if not password:
            raise ValueError("empty password")
        row = self._one("SELECT password_hash FROM users WHERE user_id = ?", name)
        if row is None or not self.kdf.verify(password, row[0]):  # else keep hash and salt
            self._one("INSERT INTO users (user_id, password_hash, created) VALUES (?, ?, ?)"
                      " ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
                      name, self.kdf.hash(password), now)
        return name

    def authenticate(self, name: str, password: str) -> str | None:
        """The UserID when the password is right, else None (in about the same time)."""
        row = None
        if USER_NAME_RE.fullmatch(name):
            row = self._one("SELECT password_hash FROM users WHERE user_id = ?", name)
        right = self.kdf.verify(password, self._dummy_hash if row is None else row[0])
        return name if row is not None and right else None

    def user_exists(self, user_id: str) -> bool:
        return self._one("SELECT 1 FROM users WHERE user_id = ?", user_id) is not None

    def users(self) -> list[str]:
        return [row[0] for row in self._all("SELECT user_id FROM users ORDER BY user_id")]

    def create_session(self, user_id: str, ttl: float, now: float) -> tuple[LoginSession, str]:
        """A new login session and its UserToken (a bearer secret, stored only hashed)."""
        user_token = secrets.token_urlsafe(32)
        session = LoginSession("ls-" + secrets.token_urlsafe(12), user_id, now, now + ttl, None)
        self._one(f"INSERT INTO login_sessions ({_SESSION}, token_hash) VALUES (?, ?, ?, ?, ?, ?)",
                  *vars(session).values(), token_hash(user_token))
        return session, user_token

    def session_for_token(self, user_token: str) -> LoginSession | None:
        """The session a UserToken belongs to, whatever its state (check ``valid(now)``)."""
        row = self._one(f"SELECT {_SESSION} FROM login_sessions WHERE token_hash = ?",
                        token_hash(user_token))
        return LoginSession(*row) if row else None

    def session(self, session_id: str) -> LoginSession | None:
        """A login session by its id (no secret: play tokens name it), whatever its state."""
        row = self._one(f"SELECT {_SESSION} FROM login_sessions WHERE session_id = ?", session_id)
        return LoginSession(*row) if row else None

    def revoke_session(self, session_id: str, now: float) -> None:
        """End a login session (logout); the row stays for late bookmarks to match."""
        self._one("UPDATE login_sessions SET revoked = ? WHERE session_id = ? AND revoked IS NULL",
                  now, session_id)

    def record_bookmark(self, req: BookmarkWrite) -> WriteOutcome:
        """Keep an accepted bookmark request in the history and, if it is newer and its
        position not 0 (nothing worth resuming), as the current bookmark."""
        values = tuple(vars(req).values())  # in field order (astuple would deep-copy them)
        with self.db.transaction() as cur:
            # Idempotency: the history takes each nonce once; a retry writes nothing.
            added = cur.execute(
                f"INSERT INTO bookmark_history ({_HISTORY}, became_current)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (nonce) DO NOTHING"
                " RETURNING id", values).fetchone()
            if added is None:
                (stored,) = cur.execute("SELECT body_sha256 FROM bookmark_history"
                                        " WHERE nonce = ?", (req.nonce,)).fetchone()
                return WriteOutcome(True, hmac.compare_digest(stored, req.body_sha256), False,
                                    _current(cur, req.user_id, req.content_id))
            # Newer wins: (play token issue time, interruption time), in that order, a tie
            # to the later arrival; so a late retry from an older play never overwrites.
            newer = req.position > 0 and cur.execute(
                f"INSERT INTO bookmarks ({_BOOKMARK}, history_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, content_id)"
                f" DO UPDATE SET {_REPLACE} WHERE (excluded.token_issued, excluded.interrupted_at)"
                " >= (bookmarks.token_issued, bookmarks.interrupted_at)",
                (*values[:8], added[0])).rowcount == 1
            if not newer:
                return WriteOutcome(False, True, False, _current(cur, req.user_id, req.content_id))
            cur.execute("UPDATE bookmark_history SET became_current = 1 WHERE id = ?", added)
            return WriteOutcome(False, True, True, Bookmark(*values[:8]))

    def bookmarks(self, user_id: str) -> list[Bookmark]:
        """All current bookmarks of a user, the most recently saved first (claim 1)."""
        return [Bookmark(*row) for row in self._all(
            f"SELECT {_BOOKMARK} FROM bookmarks WHERE user_id = ?"
            " ORDER BY saved_at DESC, history_id DESC", user_id)]

    def bookmark(self, user_id: str, content_id: str) -> Bookmark | None:
        with self.db.transaction() as cur:
            return _current(cur, user_id, content_id)

    def history(self, user_id: str) -> list[dict[str, Any]]:
        """Every accepted bookmark request of a user, oldest first."""
        with self.db.transaction() as cur:
            found = cur.execute("SELECT * FROM bookmark_history WHERE user_id = ? ORDER BY id",
                                (user_id,))
            names = [d[0] for d in found.description]
            return [dict(zip(names, row, strict=True)) for row in found.fetchall()]


def _current(cur: Any, user_id: str, content_id: str) -> Bookmark | None:
    row = cur.execute(f"SELECT {_BOOKMARK} FROM bookmarks WHERE user_id = ? AND content_id = ?",
                      (user_id, content_id)).fetchone()
    return Bookmark(*row) if row else None
