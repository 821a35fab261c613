"""The portal's store: accounts, login sessions, the bookmark rules, durability setup.

Tests taking the ``store`` fixture run on both backends, SQLite and PostgreSQL; the others
check what is SQLite's own (its files, pragmas and damage)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from portal_support import FAST_KDF

from rtsp_resume.portal.store import DB_NAME, BookmarkWrite, Kdf, StorageError, Store

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path, database: str | None):
    s = Store(tmp_path, kdf=FAST_KDF, database=database)
    try:
        yield s
    finally:
        s.close()


def write(nonce: str, position: float, *, issued: float = NOW, interrupted: float = NOW + 10,
          user: str = "alice", content: str = "sample", body: str | None = None) -> BookmarkWrite:
    return BookmarkWrite(
        nonce=nonce, body_sha256=body or f"sha-{nonce}", user_id=user, content_id=content,
        position=position, encrypt_token=f"token-{nonce}", login_session="ls-1",
        token_issued=issued, interrupted_at=interrupted, saved_at=interrupted + 1,
    )


def test_sqlite_database_is_wal_with_full_sync(tmp_path: Path) -> None:
    store = Store(tmp_path, kdf=FAST_KDF)
    try:
        assert store._one("PRAGMA journal_mode") == ("wal",)
        assert store._one("PRAGMA synchronous") == (2,)  # FULL
    finally:
        store.close()


def test_a_database_url_names_the_backend(tmp_path: Path) -> None:
    store = Store(tmp_path / "unused", kdf=FAST_KDF, database=f"sqlite:///{tmp_path}/my.db")
    store.add_user("alice", "pw", NOW)
    store.close()
    assert (tmp_path / "my.db").exists() and not (tmp_path / "unused").exists()
    for url in ("mysql://x/y", "sqlite://relative.db", str(tmp_path / "my.db")):
        with pytest.raises(ValueError, match="sqlite:///FILE or postgresql://"):
            Store(tmp_path, kdf=FAST_KDF, database=url)


def test_an_unreachable_postgresql_is_a_storage_error(tmp_path: Path, postgres_url: str) -> None:
    closed_port = postgres_url.rsplit(":", 1)[0] + ":1/nothing"
    with pytest.raises(StorageError, match="cannot use the PostgreSQL database"):
        Store(tmp_path, kdf=FAST_KDF, database=closed_port)


def test_data_folder_and_database_files_are_private(tmp_path: Path) -> None:
    # The database holds live login sessions: nobody but the owner may read it, its
    # write-ahead log and shared-memory index included.
    s = Store(tmp_path / "data", kdf=FAST_KDF)
    try:
        s.add_user("alice", "pw", NOW)
        files = [p for p in (tmp_path / "data").iterdir() if p.name.startswith(DB_NAME)]
        assert {p.name for p in files} >= {DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"}
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
        assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    finally:
        s.close()


def test_files_left_readable_by_an_older_version_are_made_private(tmp_path: Path) -> None:
    Store(tmp_path, kdf=FAST_KDF).close()
    os.chmod(tmp_path / DB_NAME, 0o644)
    Store(tmp_path, kdf=FAST_KDF).close()
    assert stat.S_IMODE((tmp_path / DB_NAME).stat().st_mode) == 0o600


def test_accounts(store: Store) -> None:
    assert store.add_user("alice", "pw", NOW) == "alice"
    assert store.authenticate("alice", "pw") == "alice"
    assert store.authenticate("alice", "wrong") is None
    assert store.authenticate("nobody", "pw") is None
    assert store.authenticate("x' OR '1'='1", "pw") is None
    store.add_user("alice", "new", NOW)  # a new password replaces the old one
    assert store.authenticate("alice", "pw") is None
    assert store.authenticate("alice", "new") == "alice"
    assert store.users() == ["alice"]


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 65, "robert'); DROP TABLE--"])
def test_bad_user_names_refused(store: Store, name: str) -> None:
    with pytest.raises(ValueError):
        store.add_user(name, "pw", NOW)


def test_passwords_and_user_tokens_never_stored_in_clear(store: Store, tmp_path: Path) -> None:
    store.add_user("alice", "correct horse battery", NOW)
    _session, user_token = store.create_session("alice", 3600, NOW)
    rows = [store._all(f"SELECT * FROM {table}") for table in ("users", "login_sessions")]
    store.close()
    raw = repr(rows).encode()  # every row, on either backend; and SQLite's files
    raw += b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_NAME))
    assert b"correct horse battery" not in raw
    assert user_token.encode() not in raw
    assert b"scrypt$" in raw


def test_default_kdf_is_scrypt_with_real_cost() -> None:
    encoded = Kdf().hash("pw")
    scheme, n, r, p, _salt, _digest = encoded.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**15, 8, 1)
    assert Kdf.verify("pw", encoded) and not Kdf.verify("pW", encoded)
    assert not Kdf.verify("pw", "garbage") and not Kdf.verify("pw", "md5$1$2$3$4$5")


def test_sessions_expire_and_revoke(store: Store) -> None:
    store.add_user("alice", "pw", NOW)
    session, token = store.create_session("alice", 60, NOW)
    found = store.session_for_token(token)
    assert found is not None and found.session_id == session.session_id
    assert found.valid(NOW + 59) and not found.valid(NOW + 60)
    assert store.session_for_token(token + "x") is None
    store.revoke_session(session.session_id, NOW + 1)
    revoked = store.session_for_token(token)
    assert revoked is not None and not revoked.valid(NOW + 2)
    # The session row stays: a late bookmark from a play it started can still be matched.
    assert store.session(session.session_id) is not None


def test_first_bookmark_saved_with_history(store: Store) -> None:
    outcome = store.record_bookmark(write("n1", 12.4))
    assert not outcome.duplicate and outcome.became_current
    assert outcome.current is not None and outcome.current.position == 12.4
    assert [h["nonce"] for h in store.history("alice")] == ["n1"]


def test_later_interruption_replaces_even_at_a_smaller_position(store: Store) -> None:
    store.record_bookmark(write("n1", 20.0, interrupted=NOW + 10))
    assert store.record_bookmark(write("n2", 5.0, interrupted=NOW + 20)).became_current
    assert store.bookmark("alice", "sample").position == 5.0


def test_newer_play_session_wins_over_a_late_report_of_an_older_one(store: Store) -> None:
    store.record_bookmark(write("new", 8.0, issued=NOW + 100, interrupted=NOW + 110))
    # The older session's report arrives last (say, a retry from the server's outbox).
    late = store.record_bookmark(write("old", 25.0, issued=NOW, interrupted=NOW + 200))
    assert not late.duplicate and not late.became_current
    assert store.bookmark("alice", "sample").position == 8.0
    assert [h["nonce"] for h in store.history("alice")] == ["new", "old"]
    assert [h["became_current"] for h in store.history("alice")] == [1, 0]


def test_zero_position_never_makes_or_replaces_a_bookmark(store: Store) -> None:
    assert not store.record_bookmark(write("z1", 0.0)).became_current
    assert store.bookmark("alice", "sample") is None
    store.record_bookmark(write("n1", 9.0, interrupted=NOW + 10))
    assert not store.record_bookmark(write("z2", 0.0, interrupted=NOW + 50)).became_current
    assert store.bookmark("alice", "sample").position == 9.0
    assert len(store.history("alice")) == 3


def test_on_a_tie_the_later_arrival_wins_and_points_at_its_history_row(store: Store) -> None:
    store.record_bookmark(write("t1", 5.0))
    assert store.record_bookmark(write("t2", 6.0)).became_current
    assert store.bookmark("alice", "sample").encrypt_token == "token-t2"
    (history_id,) = store._one("SELECT history_id FROM bookmarks")
    assert history_id == store.history("alice")[1]["id"]
    assert [h["became_current"] for h in store.history("alice")] == [1, 1]


def test_same_nonce_is_a_duplicate_and_writes_nothing(store: Store) -> None:
    store.record_bookmark(write("n1", 10.0))
    again = store.record_bookmark(write("n1", 10.0))
    assert again.duplicate and again.same_body and not again.became_current
    other_body = store.record_bookmark(write("n1", 11.0, body="different"))
    assert other_body.duplicate and not other_body.same_body
    assert len(store.history("alice")) == 1
    assert store.bookmark("alice", "sample").position == 10.0


def test_bookmarks_newest_first_and_per_user(store: Store) -> None:
    store.record_bookmark(write("a", 1.0, content="one", interrupted=NOW + 1))
    store.record_bookmark(write("b", 2.0, content="two", interrupted=NOW + 3))
    store.record_bookmark(write("c", 3.0, content="three", interrupted=NOW + 2))
    store.record_bookmark(write("d", 4.0, content="one", user="bob", interrupted=NOW + 9))
    assert [b.content_id for b in store.bookmarks("alice")] == ["two", "three", "one"]
    assert [b.content_id for b in store.bookmarks("bob")] == ["one"]
    assert store.bookmarks("carol") == []


def test_bookmark_list_follows_every_commit(store: Store) -> None:
    # A later write shows up at once; a position of 0 (history only) leaves it unchanged.
    assert store.bookmarks("alice") == []
    store.record_bookmark(write("a", 1.0, content="one", interrupted=NOW + 1))
    assert [(b.content_id, b.position) for b in store.bookmarks("alice")] == [("one", 1.0)]
    store.record_bookmark(write("b", 2.0, content="one", interrupted=NOW + 2))
    store.record_bookmark(write("c", 0.0, content="two", interrupted=NOW + 3))
    assert [(b.content_id, b.position) for b in store.bookmarks("alice")] == [("one", 2.0)]
    returned = store.bookmarks("alice")
    returned.clear()  # a caller's copy: changing it changes nothing stored
    assert len(store.bookmarks("alice")) == 1


def test_bookmark_list_read_during_writes_is_never_stale_after(store: Store) -> None:
    # Readers racing the writer may see an older list while a write is in flight, but once
    # record_bookmark has returned, every read must show that write.
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            store.bookmarks("alice")

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for i in range(1, 60):
            store.record_bookmark(write(f"r{i}", float(i), interrupted=NOW + i))
            assert [b.position for b in store.bookmarks("alice")] == [float(i)]
    finally:
        stop.set()
        for t in readers:
            t.join(10)


def test_concurrent_writers_lose_nothing(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for i in range(25):
                store.record_bookmark(write(f"w{w}-{i}", 1.0 + i, content=f"c{w}",
                                            interrupted=NOW + i))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(store.history("alice")) == 16 * 25
    assert sorted(b.position for b in store.bookmarks("alice")) == [25.0] * 16


def test_a_failing_write_is_reported_and_spoils_nothing_else(store: Store) -> None:
    store.add_user("alice", "pw", NOW)
    # Break the history table, as a damaged database would be.
    store._one("ALTER TABLE bookmark_history RENAME TO gone")
    with pytest.raises(StorageError):
        store.record_bookmark(write("n1", 3.0))
    # Other writes in the same store still commit.
    session, token = store.create_session("alice", 60, NOW)
    assert store.session_for_token(token) == session


def test_data_survives_reopening(tmp_path: Path, database: str | None) -> None:
    first = Store(tmp_path, kdf=FAST_KDF, database=database)
    first.add_user("alice", "pw", NOW)
    first.record_bookmark(write("n1", 7.5))
    first.close()
    again = Store(tmp_path, kdf=FAST_KDF, database=database)
    try:
        assert again.authenticate("alice", "pw") == "alice"
        assert again.bookmark("alice", "sample").position == 7.5
    finally:
        again.close()


def test_closed_store_refuses_writes(tmp_path: Path, database: str | None) -> None:
    s = Store(tmp_path, kdf=FAST_KDF, database=database)
    s.close()
    with pytest.raises(StorageError):
        s.record_bookmark(write("n1", 1.0))


def test_two_stores_on_one_postgresql_are_one_portal(tmp_path: Path, postgres_url: str) -> None:
    # Two stores are two pools of connections, as two portal processes would have: a login
    # made through one is valid on the other, and racing writes keep the newest bookmark.
    stores = [Store(tmp_path / f"p{i}", kdf=FAST_KDF, database=postgres_url) for i in (0, 1)]
    try:
        stores[0].add_user("alice", "pw", NOW)
        session, token = stores[0].create_session("alice", 60, NOW)
        assert stores[1].session_for_token(token) == session
        assert stores[1].authenticate("alice", "pw") == "alice"
        errors: list[BaseException] = []

        def writer(which: int) -> None:  # store 0 writes the even instants, store 1 the odd
            try:
                for i in range(which, 80, 2):
                    stores[which].record_bookmark(write(f"s{which}-{i}", 1.0 + i,
                                                        interrupted=NOW + i))
            except BaseException as exc:  # surfaced by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for store in stores:
            assert store.bookmark("alice", "sample").position == 80.0
            assert len(store.history("alice")) == 80
        # Each nonce once, whichever store sees it first.
        assert stores[1].record_bookmark(write("s0-0", 1.0)).duplicate
    finally:
        for store in stores:
            store.close()
