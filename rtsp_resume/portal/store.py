"""The portal's storage: accounts, login sessions and bookmarks in one SQLite file.

Durability is the point of a bookmark: once the portal has answered the streaming server
with ResultCode 0, the bookmark must survive the portal being killed. So the database runs
in WAL mode with ``synchronous=FULL`` (the write-ahead log is fsynced at every commit), and
an answer is sent only after its commit returned.

Writes go through one writer thread that commits in groups: every write waiting when the
writer becomes free joins the same transaction, and one fsync covers them all (if one write
of a group fails, the group is rolled back and each write retried alone, so a bad write
cannot spoil the others). Nobody is answered before the commit that holds their write.
Under load this costs one fsync per batch instead of one per request; alone, a write costs
exactly one commit. Reads use a pool of connections and never wait for the writer (WAL
readers see the last commit). Login sessions and account names are also kept in memory
(see ``Store.__init__``): one portal process per data folder.

Bookmark rules (claims 1, 5):

* One *current* bookmark per (user, content), plus a history row for every accepted
  bookmark request.
* "Newer" is decided by the pair (issue time of the play token the session was started
  with, time of the interruption), compared in that order: a bookmark from a later play
  session always wins; within one play session the later interruption wins; on a tie the
  later arrival wins. The interruption time is the request's ``InterruptedAt`` when the
  streaming server sends it, else the time the portal received the request. A late retry
  from an older session therefore never overwrites the bookmark of a newer one.
* A position of 0 means the viewer saw nothing worth resuming: it is kept in the history
  but never creates or replaces a current bookmark.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import queue
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rtsp_resume.portal.cpu import pin_current_thread

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_NAME = "portal.sqlite3"
USER_NAME_RE = re.compile(r"[A-Za-z0-9._@-]{1,64}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS bookmark_history (
    id INTEGER PRIMARY KEY,
    nonce TEXT NOT NULL UNIQUE,
    body_sha256 TEXT NOT NULL,
    user_id TEXT NOT NULL,
    content_id TEXT NOT NULL,
    position REAL NOT NULL,
    encrypt_token TEXT NOT NULL,
    login_session TEXT NOT NULL,
    token_issued REAL NOT NULL,
    interrupted_at REAL NOT NULL,
    received_at REAL NOT NULL,
    became_current INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bookmarks (
    user_id TEXT NOT NULL,
    content_id TEXT NOT NULL,
    position REAL NOT NULL,
    encrypt_token TEXT NOT NULL,
    login_session TEXT NOT NULL,
    token_issued REAL NOT NULL,
    interrupted_at REAL NOT NULL,
    saved_at REAL NOT NULL,
    history_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, content_id)
) WITHOUT ROWID;
-- No index on saved_at: a user has a handful of bookmarks, found through the primary key
-- and sorted in memory; an index would be one more page to write per bookmark.
DROP INDEX IF EXISTS bookmarks_newest;
"""


class StorageError(RuntimeError):
    """The database could not do what was asked (disk full, file removed, ...)."""


# --- passwords ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kdf:
    """scrypt parameters for password hashes; the cost is stored in each hash.

    The default (n=2**15, r=8: 32 MiB, about 70 ms here) makes a guess expensive while
    keeping a login well under a tenth of a second. Tests pass a cheaper one.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = _scrypt(password, salt, self.n, self.r, self.p)
        return "$".join(
            ["scrypt", str(self.n), str(self.r), str(self.p), _b64(salt), _b64(digest)]
        )

    @staticmethod
    def verify(password: str, encoded: str) -> bool:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(actual, _unb64(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def token_hash(token: str) -> str:
    """How a bearer secret is stored: its SHA-256 (the secret itself never hits the disk)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- records -----------------------------------------------------------------------------


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
    login_session: str  # the login session that session was started from
    token_issued: float
    interrupted_at: float
    saved_at: float


@dataclass(frozen=True)
class BookmarkWrite:
    """An accepted bookmark request, ready to be stored."""

    nonce: str
    body_sha256: str
    user_id: str
    content_id: str
    position: float
    encrypt_token: str
    login_session: str
    token_issued: float
    interrupted_at: float
    received_at: float


@dataclass(frozen=True)
class WriteOutcome:
    """What storing a bookmark request did."""

    duplicate: bool  # this nonce was already stored: nothing was written
    same_body: bool  # for a duplicate: the stored request had the same body
    became_current: bool  # the current bookmark is now this one
    current: Bookmark | None  # the current bookmark for (user, content) afterwards


# --- the store ---------------------------------------------------------------------------

_STOP = object()
_GROUP = 64  # bookmark requests per group of statements (see Store._apply)
_UNKNOWN: Any = object()


class _Pending:
    """A write's result, handed from the writer thread to the waiting request thread.

    A bare lock instead of :class:`concurrent.futures.Future`: the writer wakes each
    waiter with one release, which under load was a noticeable part of its time.
    """

    __slots__ = ("_lock", "_value", "_error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return not self._lock.locked()

    def set_result(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._lock.release()

    def result(self, timeout: float) -> Any:
        if not self._lock.acquire(timeout=timeout):
            raise StorageError("the database did not commit in time")
        if self._error is not None:
            raise self._error
        return self._value


class Store:
    """Accounts, login sessions and bookmarks; safe to use from many threads."""

    def __init__(self, data_dir: Path, *, kdf: Kdf | None = None, readers: int = 32,
                 cpu: int | None = None) -> None:
        """``cpu``: keep the writer thread on that CPU (see :mod:`rtsp_resume.portal.cpu`)."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        self.kdf = kdf or Kdf()
        # A hash to check against when the user does not exist, so that a login for an
        # unknown name costs the same time as one with a wrong password.
        self._dummy_hash = self.kdf.hash(secrets.token_urlsafe(8))
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._max_readers = readers
        self._closed = False
        # Room for the statements of every batch size (see _record_group).
        writer = self._connect(cached_statements=1024)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.executescript(_SCHEMA)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Every request looks up a login session or a user. Those rows never change except
        # by revocation, which goes through this object, so they are kept in memory: a
        # session id is put in _revoked *before* the revocation is written, and every
        # lookup consults _revoked, so a cached row can never outlive a logout. (One portal
        # process per data folder.)
        self._cache_lock = threading.Lock()
        self._sessions: dict[str, LoginSession] = {}  # by token hash and by session id
        self._revoked: dict[str, float] = {}
        self._known_users: set[str] = set()
        # (user, content) -> current Bookmark or None, touched by the writer thread only.
        self._current_bookmarks: dict[tuple[str, str], Bookmark | None] = {}
        # Each user's bookmark list as last read, for GET /api/bookmarks. Reading it from
        # SQLite on every request cost more than the rest of the request: each statement
        # releases the GIL, and with many request threads every release is a thread switch.
        # A list is dropped once a commit changed it (see _publish); a reader stores what it
        # read only if no such commit happened meanwhile (_list_versions), so the cache never
        # holds a list older than the last commit.
        self._lists: dict[str, tuple[Bookmark, ...]] = {}
        self._list_versions: dict[str, int] = {}
        # Users whose current bookmark the open transaction changes (writer thread only).
        self._changed_users: set[str] = set()
        # The id the next history row gets, or None to read it again (writer thread only;
        # forgotten at every rollback).
        self._next_history_id: int | None = None
        # Commits and the writes they carried, for benchmarks (writes / commits = batching).
        self.commits = 0
        self.committed_writes = 0
        self._writer = threading.Thread(
            target=self._write_loop, args=(writer, cpu), name="portal-store-writer",
            daemon=True,
        )
        self._writer.start()

    # -- plumbing --

    def _connect(self, cached_statements: int = 128) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0,
            cached_statements=cached_statements,
        )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        finally:
            if self._closed or self._readers.qsize() >= self._max_readers:
                conn.close()
            else:
                self._readers.put(conn)

    def _write(self, fn: Callable[[sqlite3.Connection], T] | BookmarkWrite,
               timeout: float = 30.0) -> T:
        """Run ``fn`` (or store a bookmark request) in a write transaction; return once it
        is durably committed."""
        if self._closed:
            raise StorageError("the store is closed")
        pending: _Pending = _Pending()
        self._queue.put((fn, pending))
        return pending.result(timeout)

    def _write_loop(self, conn: sqlite3.Connection, cpu: int | None) -> None:
        pin_current_thread(cpu)
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            stop = False
            while len(batch) < 256:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            try:
                self._commit_batch(conn, batch)
            except Exception as exc:  # the writer must outlive any one batch
                log.exception("bookmark store: writer failed")
                for _fn, future in batch:
                    if not future.done():
                        future.set_exception(StorageError(str(exc)))
            if stop:
                break
        conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        """One transaction for the whole batch; if any write in it fails, run each alone.

        Failures are rare (a damaged database, a bug), so the common case pays no
        per-write savepoint; the rare one still fails only the write that caused it.
        """
        if len(batch) > 1:
            try:
                conn.execute("BEGIN IMMEDIATE")
                values = self._apply(conn, [fn for fn, _future in batch])
                conn.execute("COMMIT")
            except Exception as exc:  # retried one by one below
                log.warning("bookmark store: batch of %d failed (%s); retrying singly",
                            len(batch), exc)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._forget_transaction()
            else:
                self._publish()
                self.commits += 1
                self.committed_writes += len(batch)
                for (_fn, future), value in zip(batch, values, strict=True):
                    future.set_result(value)
                return
        for fn, future in batch:
            try:
                conn.execute("BEGIN IMMEDIATE")
                (value,) = self._apply(conn, [fn])
                conn.execute("COMMIT")
            except Exception as exc:  # handed to the caller
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._forget_transaction()
                if isinstance(exc, sqlite3.Error):
                    log.error("bookmark store: write failed: %s", exc)
                    exc = StorageError(str(exc))
                future.set_exception(exc)
            else:
                self._publish()
                self.commits += 1
                self.committed_writes += 1
                future.set_result(value)

    def _apply(self, conn: sqlite3.Connection, items: list[Any]) -> list[Any]:
        """Run a batch's writes, in order, inside the open transaction; their results.

        Bookmark requests that follow each other are stored together (_record_group)."""
        values: list[Any] = []
        start = 0
        while start < len(items):
            end = start
            # At most _GROUP requests at a time: 12 values each stay under the 999 bound
            # variables that SQLite builds before 3.32 put on one statement.
            while (end < len(items) and end - start < _GROUP
                   and isinstance(items[end], BookmarkWrite)):
                end += 1
            if end > start:
                values += self._record_group(conn, items[start:end])
                start = end
            else:
                values.append(items[start](conn))
                start += 1
        return values

    def _forget_transaction(self) -> None:
        """After a rollback: drop what the writer remembered of the undone transaction."""
        self._current_bookmarks.clear()
        self._changed_users.clear()
        self._next_history_id = None

    def _publish(self) -> None:
        """After a commit, before anyone is answered: drop the cached bookmark lists it
        changed, and make sure a read that began before it cannot store its old list."""
        if not self._changed_users:
            return
        with self._cache_lock:
            for user_id in self._changed_users:
                self._list_versions[user_id] = self._list_versions.get(user_id, 0) + 1
                self._lists.pop(user_id, None)
        self._changed_users.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout=10)
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    # -- accounts --

    def add_user(self, name: str, password: str, now: float) -> str:
        """Create the account, or set its password if it exists; return its UserID.

        The UserID is the account name: stable across restarts and readable in logs.
        """
        if not USER_NAME_RE.fullmatch(name):
            raise ValueError(f"user name must be 1-64 characters of [A-Za-z0-9._@-]: {name!r}")
        if not password:
            raise ValueError("empty password")
        with self._reader() as conn:
            row = conn.execute(
                "SELECT password_hash FROM users WHERE user_id = ?", (name,)
            ).fetchone()
        if row is not None and self.kdf.verify(password, row[0]):
            return name  # unchanged: keep the stored hash (and its salt)
        encoded = self.kdf.hash(password)

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO users (user_id, password_hash, created) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
                (name, encoded, now),
            )

        self._write(write)
        with self._cache_lock:
            self._known_users.add(name)
        return name

    def authenticate(self, name: str, password: str) -> str | None:
        """The UserID when the password is right, else None (in about the same time)."""
        row = None
        if USER_NAME_RE.fullmatch(name):
            with self._reader() as conn:
                row = conn.execute(
                    "SELECT user_id, password_hash FROM users WHERE user_id = ?", (name,)
                ).fetchone()
        if row is None:
            self.kdf.verify(password, self._dummy_hash)
            return None
        return row[0] if self.kdf.verify(password, row[1]) else None

    def user_exists(self, user_id: str) -> bool:
        if user_id in self._known_users:
            return True
        with self._reader() as conn:
            row = conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone()
        if row is not None:
            with self._cache_lock:
                self._known_users.add(user_id)
        return row is not None

    def users(self) -> list[str]:
        with self._reader() as conn:
            return [r[0] for r in conn.execute("SELECT user_id FROM users ORDER BY user_id")]

    # -- login sessions (the UserToken) --

    def create_session(self, user_id: str, ttl: float, now: float) -> tuple[LoginSession, str]:
        """Start a login session; return it and its bearer secret, the UserToken.

        Only the SHA-256 of the UserToken is stored. The session's own id is not a secret:
        it is what play tokens and bookmarks refer to.
        """
        user_token = secrets.token_urlsafe(32)
        session = LoginSession(
            session_id="ls-" + secrets.token_urlsafe(12),
            user_id=user_id,
            created=now,
            expires=now + ttl,
            revoked=None,
        )

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO login_sessions (session_id, user_id, token_hash, created, expires)"
                " VALUES (?, ?, ?, ?, ?)",
                (session.session_id, user_id, token_hash(user_token), now, session.expires),
            )

        self._write(write)
        self._remember(token_hash(user_token), session)
        return session, user_token

    def _remember(self, key: str, session: LoginSession) -> None:
        with self._cache_lock:
            if len(self._sessions) > 100_000:  # a crude bound; rows are cheap to re-read
                self._sessions.clear()
            self._sessions["h:" + key] = session
            self._sessions["i:" + session.session_id] = session

    def _with_revocation(self, session: LoginSession) -> LoginSession:
        revoked = self._revoked.get(session.session_id)
        if revoked is not None and session.revoked is None:
            return dataclasses.replace(session, revoked=revoked)
        return session

    def session_for_token(self, user_token: str) -> LoginSession | None:
        """The session a UserToken belongs to, whatever its state (check ``valid(now)``)."""
        wanted = token_hash(user_token)
        session = self._sessions.get("h:" + wanted)
        if session is None:
            row = self._session_row("token_hash", wanted)
            if row is None or not hmac.compare_digest(row[5], wanted):
                return None
            session = LoginSession(*row[:5])
            self._remember(wanted, session)
        return self._with_revocation(session)

    def session(self, session_id: str) -> LoginSession | None:
        """A login session by its id (not a secret), whatever its state."""
        session = self._sessions.get("i:" + session_id)
        if session is None:
            row = self._session_row("session_id", session_id)
            if row is None:
                return None
            session = LoginSession(*row[:5])
            self._remember(row[5], session)
        return self._with_revocation(session)

    def _session_row(self, column: str, value: str) -> tuple[Any, ...] | None:
        """The stored login session whose ``column`` (a fixed name, never user input)
        equals ``value``: its id, user, times, revocation and token hash."""
        assert column in ("token_hash", "session_id")
        with self._reader() as conn:
            row = conn.execute(
                "SELECT session_id, user_id, created, expires, revoked, token_hash "
                f"FROM login_sessions WHERE {column} = ?",
                (value,),
            ).fetchone()
        return tuple(row) if row is not None else None

    def revoke_session(self, session_id: str, now: float) -> None:
        """End a login session (logout). Effective at once, even if the write fails."""
        with self._cache_lock:
            self._revoked.setdefault(session_id, now)

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE login_sessions SET revoked = ? WHERE session_id = ? AND revoked IS NULL",
                (now, session_id),
            )

        self._write(write)

    # -- bookmarks --

    def record_bookmark(self, req: BookmarkWrite) -> WriteOutcome:
        """Store an accepted bookmark request (history + current bookmark), durably.

        A nonce seen before is a retry: nothing is written and the outcome says duplicate.
        """
        return self._write(req)

    def _record_group(
        self, conn: sqlite3.Connection, writes: list[BookmarkWrite]
    ) -> list[WriteOutcome]:
        """Store bookmark requests inside the writer's open transaction; their outcomes.

        The whole group costs three statements (find the nonces already stored, insert the
        history rows, insert or replace the current bookmarks) instead of two per request:
        the writer is the portal's bottleneck under load, and every statement gives up the
        GIL and must win it back from the request threads. Decided here, inside the
        transaction, so nothing can slip between a comparison and its write.
        """
        marks = ",".join("?" * len(writes))
        stored: dict[str, str] = dict(conn.execute(
            f"SELECT nonce, body_sha256 FROM bookmark_history WHERE nonce IN ({marks})",
            [w.nonce for w in writes],
        ).fetchall())
        if self._next_history_id is None:
            # The writer is the only one adding history rows, so it can number them itself
            # (which saves asking SQLite for each new row's id).
            (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM bookmark_history").fetchone()
            self._next_history_id = last + 1
        history: list[Any] = []
        replaced: dict[tuple[str, str], tuple[Any, ...]] = {}
        outcomes = []
        for req in writes:
            key = (req.user_id, req.content_id)
            # The writer keeps the current bookmarks it has seen (only it writes them; the
            # copy is dropped whenever a transaction is rolled back).
            current = self._current_bookmarks.get(key, _UNKNOWN)
            if current is _UNKNOWN:
                current = _current(conn, req.user_id, req.content_id)
            if req.nonce in stored:  # stored already, maybe earlier in this group: a retry
                outcomes.append(WriteOutcome(
                    duplicate=True,
                    same_body=hmac.compare_digest(stored[req.nonce], req.body_sha256),
                    became_current=False,
                    current=current,
                ))
                continue
            stored[req.nonce] = req.body_sha256
            # The "newer wins" rule: replace the current bookmark unless it comes from a
            # later play session or a later interruption (on a tie the later arrival wins).
            newer = req.position > 0 and (
                current is None
                or (req.token_issued, req.interrupted_at)
                >= (current.token_issued, current.interrupted_at)
            )
            history_id = self._next_history_id
            self._next_history_id += 1
            history += (
                history_id, req.nonce, req.body_sha256, req.user_id, req.content_id,
                req.position, req.encrypt_token, req.login_session, req.token_issued,
                req.interrupted_at, req.received_at, int(newer),
            )
            if newer:
                self._changed_users.add(req.user_id)
                current = Bookmark(
                    user_id=req.user_id, content_id=req.content_id, position=req.position,
                    encrypt_token=req.encrypt_token, login_session=req.login_session,
                    token_issued=req.token_issued, interrupted_at=req.interrupted_at,
                    saved_at=req.received_at,
                )
                # A later request of the group for the same bookmark replaces this row.
                replaced[key] = (
                    req.user_id, req.content_id, req.position, req.encrypt_token,
                    req.login_session, req.token_issued, req.interrupted_at,
                    req.received_at, history_id,
                )
            if len(self._current_bookmarks) > 100_000:
                self._current_bookmarks.clear()
            self._current_bookmarks[key] = current
            outcomes.append(WriteOutcome(
                duplicate=False, same_body=True, became_current=newer, current=current
            ))
        if history:
            rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(history) // 12))
            conn.execute(
                "INSERT INTO bookmark_history (id, nonce, body_sha256, user_id, content_id,"
                " position, encrypt_token, login_session, token_issued, interrupted_at,"
                f" received_at, became_current) VALUES {rows}",
                history,
            )
        if replaced:
            rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(replaced))
            conn.execute(
                "INSERT OR REPLACE INTO bookmarks (user_id, content_id, position,"
                " encrypt_token, login_session, token_issued, interrupted_at, saved_at,"
                f" history_id) VALUES {rows}",
                [value for row in replaced.values() for value in row],
            )
        return outcomes

    def bookmarks(self, user_id: str) -> list[Bookmark]:
        """All current bookmarks of a user, the most recently saved first (claim 1)."""
        cached = self._lists.get(user_id)
        if cached is not None:
            return list(cached)
        version = self._list_versions.get(user_id, 0)
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {_BOOKMARK_COLUMNS} FROM bookmarks WHERE user_id = ?"
                " ORDER BY saved_at DESC, history_id DESC",
                (user_id,),
            ).fetchall()
        found = tuple(Bookmark(*row) for row in rows)
        with self._cache_lock:
            if self._list_versions.get(user_id, 0) == version:
                if len(self._lists) > 100_000:  # a crude bound, as for sessions
                    self._lists.clear()
                self._lists[user_id] = found
        return list(found)

    def bookmark(self, user_id: str, content_id: str) -> Bookmark | None:
        with self._reader() as conn:
            return _current(conn, user_id, content_id)

    def history(self, user_id: str) -> list[dict[str, Any]]:
        """Every accepted bookmark request of a user, oldest first."""
        with self._reader() as conn:
            conn.row_factory = sqlite3.Row
            try:
                rows = conn.execute(
                    "SELECT * FROM bookmark_history WHERE user_id = ? ORDER BY id", (user_id,)
                ).fetchall()
            finally:
                conn.row_factory = None
        return [dict(row) for row in rows]


_BOOKMARK_COLUMNS = (
    "user_id, content_id, position, encrypt_token, login_session, token_issued,"
    " interrupted_at, saved_at"
)


def _current(conn: sqlite3.Connection, user_id: str, content_id: str) -> Bookmark | None:
    row = conn.execute(
        f"SELECT {_BOOKMARK_COLUMNS} FROM bookmarks WHERE user_id = ? AND content_id = ?",
        (user_id, content_id),
    ).fetchone()
    return Bookmark(*row) if row else None
