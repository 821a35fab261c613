"""A bookmark the portal acknowledged (ResultCode 0) survives ``kill -9`` of the portal.

The portal runs as the user runs it, ``python -m rtsp_resume serve-portal``, with the real
password hashing cost; it is killed with SIGKILL right after its answers and started again
on the same data folder.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from portal_support import Clock, Http, Portal

from rtsp_resume import tokens
from rtsp_resume.portal.store import DB_NAME

START_DEADLINE = 30.0


class PortalProcess:
    def __init__(self, data: Path, media: Path, users_file: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtsp_resume", "serve-portal", "--port", "0",
             "--data", str(data), "--media", str(media), "--user", "alice:alice-pw",
             "--users-file", str(users_file), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.output: list[str] = []
        # A thread reads the output: select() on a buffered text pipe would miss lines
        # already sitting in Python's buffer.
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_url(self) -> str:
        """Read the start-up lines (up to "press Ctrl-C") and return the portal's URL."""
        deadline = time.monotonic() + START_DEADLINE
        url = None
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            match = re.match(r"portal: (http://\S+?)/\s", line)
            if match:
                url = match.group(1)
            if "press Ctrl-C" in line and url:
                return url
        self.proc.kill()
        raise AssertionError("portal did not start:\n" + "".join(self.output))

    def rest_of_output(self) -> str:
        """Everything printed, once the process has ended."""
        while (line := self._lines.get(timeout=10)) is not None:
            self.output.append(line)
        return "".join(self.output)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class _Server:
    """The bits of PortalServer that portal_support.Portal needs, for a subprocess."""

    def __init__(self, url: str, secret: bytes) -> None:
        self.url = url
        self.secret = secret


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    users = tmp_path / "users.txt"
    users.write_text("# demo accounts\n\nbob:bob-pw\n")
    return tmp_path / "data", users


def client(process: PortalProcess, data: Path) -> Portal:
    portal = Portal.__new__(Portal)
    portal.server = _Server(process.url, tokens.load_or_create_secret(data / "secret"))
    portal.clock = Clock()
    portal.http = Http(process.url)
    return portal


def test_acknowledged_bookmarks_survive_kill_9(folders: tuple[Path, Path],
                                               sample_dir: Path) -> None:
    data, users = folders
    first = PortalProcess(data, sample_dir, users)
    try:
        portal = client(first, data)
        started = time.monotonic()
        alice = portal.login("alice")  # the real scrypt cost, once
        assert time.monotonic() - started < 5.0
        bob = portal.login("bob", "bob-pw")  # from --users-file

        # Sixteen reports at once from "the streaming server", then kill -9 at once.
        plays = [portal.play(alice if i % 2 else bob, "sample") for i in range(16)]
        replies: list[int] = []

        def report(i: int) -> None:
            own = Portal.__new__(Portal)
            own.server, own.clock, own.http = portal.server, portal.clock, Http(first.url)
            reply = own.set_bookmark(own.bookmark_request(plays[i]["EncryptToken"], 1.0 + i))
            replies.append(reply.json["ResultCode"])

        threads = [threading.Thread(target=report, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        last = portal.set_bookmark(portal.bookmark_request(
            portal.play(alice, "sample_slices")["EncryptToken"], 4.2))
        assert last.json["ResultCode"] == 0
        first.kill9()
    finally:
        first.stop()
    assert replies == [0] * 16
    assert first.proc.returncode == -signal.SIGKILL

    second = PortalProcess(data, sample_dir, users)
    try:
        portal = client(second, data)
        marks = portal.bookmarks(portal.login("alice"))
        # The last report, acknowledged a moment before the kill, is the newest bookmark.
        assert (marks[0]["ContentID"], marks[0]["ContentBM"]) == ("sample_slices", 4.2)
        # Which of the concurrent reports is current depends on their arrival order; that
        # each of them was kept is what the history shows.
        assert [m["ContentID"] for m in marks] == ["sample_slices", "sample"]
        assert len(portal.bookmarks(portal.login("bob", "bob-pw"))) == 1
    finally:
        second.stop()
    with sqlite3.connect(data / DB_NAME) as db:
        positions = sorted(r[0] for r in db.execute("SELECT position FROM bookmark_history"))
        (cost,) = db.execute("SELECT password_hash FROM users WHERE user_id = 'alice'").fetchone()
    assert positions == sorted([1.0 + i for i in range(16)] + [4.2])
    assert cost.startswith("scrypt$32768$8$1$")  # the real cost was used above


def test_play_token_life_is_set_on_the_command_line(folders: tuple[Path, Path],
                                                    sample_dir: Path) -> None:
    data, users = folders
    process = PortalProcess(data, sample_dir, users, "--play-token-ttl", "42")
    try:
        portal = client(process, data)
        play = portal.play(portal.login("bob", "bob-pw"), "sample")
        grant = tokens.verify_play_token(portal.secret, play["EncryptToken"], time.time())
        assert play["expires_in"] == 42 and grant.expires - grant.issued == pytest.approx(42)
    finally:
        process.proc.kill()
        process.proc.wait(10)


def test_ctrl_c_and_sigterm_stop_cleanly(folders: tuple[Path, Path], sample_dir: Path) -> None:
    data, users = folders
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = PortalProcess(data, sample_dir, users)
        try:
            output = "".join(process.output)
            assert "accounts: alice, bob" in output
            process.proc.send_signal(sig)
            assert process.proc.wait(10) == 0
            assert "portal: stopped" in process.rest_of_output()
        finally:
            process.stop()


def test_bad_users_file_is_a_clear_error(tmp_path: Path, sample_dir: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("alice-without-password\n")
    result = subprocess.run(
        [sys.executable, "-m", "rtsp_resume", "serve-portal", "--port", "0",
         "--data", str(tmp_path / "data"), "--users-file", str(users)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert "users.txt:1: expected NAME:PASSWORD" in result.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://db/portal", "expected sqlite:///FILE or postgresql://..."),
    ("postgresql://nobody@127.0.0.1:1/portal", "cannot use the PostgreSQL database"),
])
def test_a_bad_database_url_is_a_clear_error(tmp_path: Path, url: str, says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rtsp_resume", "serve-portal", "--port", "0",
         "--data", str(tmp_path / "data"), "--database", url],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
