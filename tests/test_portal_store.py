"""The portal's SQLite store: accounts, login sessions, the bookmark rules, durability setup."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from portal_support import FAST_KDF

from rtsp_resume.portal.store import DB_NAME, BookmarkWrite, Kdf, StorageError, Store

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path, kdf=FAST_KDF)
    try:
        yield s
    finally:
        s.close()


def write(nonce: str, position: float, *, issued: float = NOW, interrupted: float = NOW + 10,
          user: str = "alice", content: str = "sample", body: str | None = None) -> BookmarkWrite:
    return BookmarkWrite(
        nonce=nonce, body_sha256=body or f"sha-{nonce}", user_id=user, content_id=content,
        position=position, encrypt_token=f"token-{nonce}", login_session="ls-1",
        token_issued=issued, interrupted_at=interrupted, received_at=interrupted + 1,
    )


def test_database_is_wal_with_full_sync(store: Store) -> None:
    with store._reader() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


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
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_NAME))
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
    # The list is kept in memory after a read: a later write must still show up at once,
    # and a position of 0 (history only) must leave it unchanged.
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
            time.sleep(0)  # let the writer have the GIL: a cache hit never gives it up

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


def test_requests_committed_together_keep_every_rule(store: Store) -> None:
    # Hold the writer so that the next requests are queued and stored as one group: a
    # nonce repeated inside the group is still a duplicate, and the current bookmark is the
    # newest of the group, pointing at its own history row.
    gate, holding = threading.Event(), threading.Event()
    blocker = threading.Thread(target=store._write,
                               args=(lambda _conn: holding.set() or gate.wait(10),))
    blocker.start()
    assert holding.wait(10)  # the writer is inside the blocker's transaction
    requests = [write("g1", 5.0, interrupted=NOW + 1), write("g1", 5.0, interrupted=NOW + 1),
                write("g1", 6.0, interrupted=NOW + 1, body="other"),
                write("g2", 7.0, interrupted=NOW + 2), write("g3", 4.0, interrupted=NOW + 0.5)]
    outcomes: dict[int, object] = {}

    def send(i: int) -> None:
        outcomes[i] = store.record_bookmark(requests[i])

    senders = []
    for i in range(len(requests)):  # queued in this order
        senders.append(threading.Thread(target=send, args=(i,)))
        senders[-1].start()
        deadline = time.monotonic() + 10
        while store._queue.qsize() < i + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    commits = store.commits
    gate.set()
    for t in [blocker, *senders]:
        t.join(10)
    assert store.commits - commits == 2  # the blocker, then the group in one commit
    first, again, other, newer, older = (outcomes[i] for i in range(5))
    assert not first.duplicate and first.became_current
    assert again.duplicate and again.same_body
    assert other.duplicate and not other.same_body
    assert newer.became_current and not older.became_current
    assert store.bookmark("alice", "sample").position == 7.0
    history = store.history("alice")
    assert [h["nonce"] for h in history] == ["g1", "g2", "g3"]
    with store._reader() as conn:
        (history_id,) = conn.execute("SELECT history_id FROM bookmarks").fetchone()
    assert history_id == history[1]["id"]


def test_a_batch_larger_than_one_group_is_stored_whole(store: Store) -> None:
    # More queued requests than one group of statements takes: all in one commit still.
    gate, holding = threading.Event(), threading.Event()
    blocker = threading.Thread(target=store._write,
                               args=(lambda _conn: holding.set() or gate.wait(10),))
    blocker.start()
    assert holding.wait(10)  # the writer is inside the blocker's transaction
    count = 150
    senders = [threading.Thread(target=store.record_bookmark,
                                args=(write(f"big{i}", 1.0 + i, content=f"c{i}"),))
               for i in range(count)]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 10
    while store._queue.qsize() < count and time.monotonic() < deadline:
        time.sleep(0.001)
    commits = store.commits
    gate.set()
    for t in [blocker, *senders]:
        t.join(10)
    assert store.commits - commits == 2
    assert len(store.history("alice")) == count
    assert len(store.bookmarks("alice")) == count


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


def test_a_failing_write_is_reported_and_spoils_nothing_else(store: Store, tmp_path: Path) -> None:
    store.add_user("alice", "pw", NOW)
    # Break the history table behind the store's back, as a damaged database would be.
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("ALTER TABLE bookmark_history RENAME TO gone")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError):
        store.record_bookmark(write("n1", 3.0))
    # Other writes in the same store still commit.
    session, token = store.create_session("alice", 60, NOW)
    assert store.session_for_token(token) == session


def test_data_survives_reopening(tmp_path: Path) -> None:
    first = Store(tmp_path, kdf=FAST_KDF)
    first.add_user("alice", "pw", NOW)
    first.record_bookmark(write("n1", 7.5))
    first.close()
    again = Store(tmp_path, kdf=FAST_KDF)
    try:
        assert again.authenticate("alice", "pw") == "alice"
        assert again.bookmark("alice", "sample").position == 7.5
    finally:
        again.close()


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = Store(tmp_path, kdf=FAST_KDF)
    s.close()
    with pytest.raises(StorageError):
        s.record_bookmark(write("n1", 1.0))


def wait_until(condition, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


def test_a_failing_write_in_a_batch_fails_alone(store: Store) -> None:
    """Writes queued together share one transaction; when one of them fails, the others are
    retried one by one and still commit."""
    gate = threading.Event()
    # Hold the writer inside a first write so that the next ones queue up as one batch.
    holder = threading.Thread(target=store._write, args=(lambda conn: gate.wait(10),))
    holder.start()
    wait_until(lambda: store._queue.qsize() == 0)
    outcomes: dict[str, object] = {}

    def run(name: str, fn) -> None:
        try:
            outcomes[name] = fn()
        except StorageError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(f"good{i}", lambda i=i: store.record_bookmark(
        write(f"g{i}", 1.0 + i, content=f"c{i}")))) for i in range(6)]
    threads.insert(3, threading.Thread(target=run, args=("bad", lambda: store._write(
        lambda conn: conn.execute("INSERT INTO no_such_table VALUES (1)")))))
    for t in threads:
        t.start()
    wait_until(lambda: store._queue.qsize() == 7)
    commits = store.commits
    gate.set()
    for t in threads + [holder]:
        t.join(10)
    assert isinstance(outcomes.pop("bad"), StorageError)
    assert all(o.became_current for o in outcomes.values())  # type: ignore[union-attr]
    assert len(store.history("alice")) == 6
    # The holder committed alone; the batch of seven failed and its six good writes were
    # then committed one by one.
    assert store.commits - commits == 1 + 6


def test_writer_thread_kept_on_the_chosen_cpu(tmp_path: Path) -> None:
    import os

    from rtsp_resume.portal.cpu import pick_cpu

    cpu = pick_cpu()
    if cpu is None:
        pytest.skip("one CPU only, or no CPU affinity control here")
    store = Store(tmp_path, kdf=FAST_KDF, cpu=cpu)
    try:
        store.add_user("alice", "pw", NOW)  # the writer has started and written
        assert os.sched_getaffinity(store._writer.native_id) == {cpu}
    finally:
        store.close()
