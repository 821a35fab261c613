"""The brake on password guessing: the pure GuessBrake, then the JSON and form logins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from portal_support import Clock, running_portal

from rtsp_resume.portal.passwords import GuessBrake


def test_free_tries_then_a_doubling_wait_up_to_the_cap() -> None:
    clock = Clock(1000.0)
    brake = GuessBrake(clock, free=3, base=1.0, cap=4.0)
    waits = []
    for _ in range(11):  # a patient guesser: a try, and when told to wait, the wait
        wait = brake.attempt("user:alice")
        waits.append(wait)
        clock.advance(wait)
    assert waits == [0, 0, 0, 1, 0, 2, 0, 4, 0, 4, 0]
    assert brake.attempt("user:alice") == 4  # trying again at once: still waiting


def test_success_frees_the_keys_and_keys_are_separate() -> None:
    clock = Clock(1000.0)
    brake = GuessBrake(clock, free=2)
    for _ in range(2):
        brake.attempt("user:alice", "addr:a")
    assert brake.attempt("user:alice", "addr:b") > 0  # the account is braked
    assert brake.attempt("user:bob", "addr:a") > 0  # and so is the address
    assert brake.attempt("user:bob", "addr:b") == 0
    brake.succeeded("user:alice", "addr:a")
    assert brake.attempt("user:alice", "addr:a") == 0


def test_a_try_in_progress_counts_so_parallel_guesses_do_not_slip_through() -> None:
    brake = GuessBrake(Clock(1000.0), free=2)
    assert [brake.attempt("user:alice") for _ in range(3)][-1] > 0  # none of them finished


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


def test_json_login_is_braked_and_the_right_password_works_once_the_wait_is_over(portal) -> None:
    replies = [portal.http.post("/api/login", {"user": "alice", "password": f"guess{i}"})
               for i in range(8)]
    statuses = [r.status for r in replies]
    assert statuses[:5] == [401] * 5 and 429 in statuses
    braked = replies[statuses.index(429)]
    assert braked.json["error"] == "too_many_attempts"
    assert int(braked.headers["Retry-After"]) >= 1
    right = {"user": "alice", "password": "alice-pw"}
    assert portal.http.post("/api/login", right).status == 429  # even the right one waits
    portal.clock.advance(30)  # the cap: never locked out for longer
    assert portal.http.post("/api/login", right).status == 200
    assert portal.http.post("/api/login", {"user": "alice", "password": "x"}).status == 401


def test_form_login_is_braked_too(portal) -> None:
    http = portal.http
    for attempt in range(7):
        page = http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        cookie = page.headers["Set-Cookie"].split(";")[0]
        reply = http.post("/login", f"csrf={csrf}&user=alice&password=guess{attempt}".encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "Cookie": cookie})
    assert reply.status == 429 and "Too many wrong passwords" in reply.text
    assert int(reply.headers["Retry-After"]) >= 1
