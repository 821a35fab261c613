"""Portal load: reverse bookmark writes/s and bookmark-list reads/s under concurrent clients.

Starts a real :class:`rtsp_resume.portal.PortalServer` on loopback (cheroot; SQLite in WAL
mode, ``synchronous=FULL``: every acknowledged bookmark is fsynced) and runs N client processes
(default 16), each with one keep-alive HTTP connection:

1. writes: ``POST /api/bookmark/set`` signed with the shared key, a new nonce each time,
   exactly what the streaming server sends; only ResultCode 0 counts;
2. reads: ``GET /api/bookmarks`` with the client's UserToken.

The clients prepare their requests before the clock starts and parse answers minimally:
they share the machine's CPUs with the portal, and what is measured is the portal.

Next to them it measures the raw SQLite commit rate with the same settings on the same disk
(one connection, one small INSERT per transaction), the ceiling for "one fsync per write",
before and after the write phase; the ratio uses the higher of the two.
The portal commits each request on its own (one fsync per write), so that figure is its
ceiling. Then it checks that every acknowledged write is in the history table.

    python benchmarks/portal_load.py [--clients 16] [--seconds 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import shlex
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rtsp_resume import tokens
from rtsp_resume.portal import Kdf, PortalServer

ROOT = Path(__file__).resolve().parent.parent


def raw_commit_rate(directory: Path, seconds: float) -> float:
    """Commits/s of one connection doing one small INSERT per transaction."""
    path = directory / "raw-commit-test.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, nonce TEXT UNIQUE, body TEXT)")
    payload = "x" * 300  # about a bookmark request's size
    n = 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (nonce, body) VALUES (?, ?)", (f"n{n}", payload))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return n / elapsed


def _build_requests(kind: str, host: str, secret: bytes, job: dict, count: int
                    ) -> list[bytes]:
    """Whole HTTP requests, ready to send: built before the clock starts so that the load
    generator spends its CPU (two cores are shared with the portal) on sending, not on
    signing. Each write is a distinct request with its own nonce, signed as the streaming
    server signs it (the portal accepts a timestamp up to 300 s old)."""
    if kind == "read":
        one = (f"GET /api/bookmarks HTTP/1.1\r\nHost: {host}\r\n"
               f"Authorization: Bearer {job['user_token']}\r\n\r\n").encode()
        return [one]
    base = json.loads(job["request"])
    built = []
    now = time.time()
    for i in range(count):
        base["ContentBM"] = round((i % 290) / 10 + 0.1, 1)
        body = json.dumps(base).encode()
        headers = tokens.sign_request(secret, body, now)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        built.append((f"POST /api/bookmark/set HTTP/1.1\r\nHost: {host}\r\n{head}"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      f"\r\n").encode() + body)
    return built


def client(kind: str, url: str, secret: bytes, job: dict, seconds: float, ready: mp.Queue,
           go: mp.Event, start: mp.Value, results: mp.Queue) -> None:
    """One client process: one keep-alive connection, requests back to back."""
    host, port = url.removeprefix("http://").split(":")
    # Enough for well over the fastest rate seen here (about 10,000 requests/s in all).
    per_second = max(1000, 15000 // job["clients"])
    requests = _build_requests(kind, f"{host}:{port}", secret, job,
                               int(seconds * per_second))
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ok = failed = 0
    latencies: list[float] = []
    ready.put(True)
    go.wait()
    end_at = start.value + seconds
    i = 0
    while time.time() < end_at:
        if kind == "write" and i == len(requests):
            raise RuntimeError("prepared too few requests for this rate")
        t0 = time.perf_counter()
        sock.sendall(requests[i] if kind == "write" else requests[0])
        i += 1
        status, body = _read_response(sock)
        latencies.append(time.perf_counter() - t0)
        if status == 200 and (kind == "read" or b'"ResultCode": 0,' in body):
            ok += 1
        else:
            failed += 1
    sock.close()
    results.put((ok, failed, latencies))


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the portal closed the connection")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the portal closed the connection")
        body += chunk
    return int(head[9:12]), body


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_phase(kind: str, server: PortalServer, jobs: list[dict], seconds: float
              ) -> tuple[float, int, int, list[float], float]:
    """Run one phase; return requests/s, successes, failures, latencies and the portal
    process's CPU seconds per successful request (the clients are other processes)."""
    ctx = mp.get_context("fork")
    results: mp.Queue = ctx.Queue()
    ready: mp.Queue = ctx.Queue()
    go = ctx.Event()
    start = ctx.Value("d", 0.0)
    jobs = [dict(job, clients=len(jobs)) for job in jobs]
    procs = [ctx.Process(target=client, args=(kind, server.url, server.secret, job, seconds,
                                              ready, go, start, results)) for job in jobs]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    cpu_before = _cpu()
    start.value = time.time()
    go.set()
    collected = [results.get(timeout=seconds + 60) for _ in procs]
    cpu = _cpu() - cpu_before
    for p in procs:
        p.join(30)
    ok = sum(c[0] for c in collected)
    failed = sum(c[1] for c in collected)
    latencies = [x for c in collected for x in c[2]]
    return ok / seconds, ok, failed, latencies, cpu / max(ok, 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder (default: a temporary folder under ./artifacts, "
                             "i.e. on the project's disk)")
    parser.add_argument("--media", type=Path, default=ROOT / "sample_media")
    args = parser.parse_args(argv)

    if args.data is None:
        (ROOT / "artifacts").mkdir(exist_ok=True)
        tmp = tempfile.TemporaryDirectory(dir=ROOT / "artifacts", prefix="portal-load-")
        data = Path(tmp.name)
    else:
        data = args.data
        data.mkdir(parents=True, exist_ok=True)
    users = [(f"bench{i:02d}", "pw") for i in range(args.clients)]
    # Logins are not measured: a cheap password hash keeps the set-up quick.
    server = PortalServer(data, args.media, "rtsp://127.0.0.1:8554", users,
                          kdf=Kdf(n=2**4, r=1, p=1)).start()
    try:
        jobs = _prepare(server, users)
        print(f"command: {shlex.join([sys.executable, *sys.argv])}")
        print(f"data folder: {data.resolve()} (SQLite WAL, synchronous=FULL)")
        print(f"clients: {args.clients} processes, one keep-alive connection each; "
              f"{os.cpu_count()} CPU(s); {args.seconds:g} s per phase")

        raw_before = raw_commit_rate(data, args.seconds)
        rate, ok, failed, lat, cpu = run_phase("write", server, jobs, args.seconds)
        raw_after = raw_commit_rate(data, args.seconds)
        # The disk is shared with whatever else runs: measure the raw rate on both sides of
        # the write phase and compare with the higher figure.
        raw = max(raw_before, raw_after)
        print(f"raw SQLite commits/s (1 connection, 1 INSERT per commit): {raw:8.0f}"
              f"  (before the write phase {raw_before:.0f}, after {raw_after:.0f})")
        print(f"portal bookmark writes/s (POST /api/bookmark/set, ResultCode 0): {rate:8.0f}"
              f"  = {rate / raw:.2f} x raw;  p50 {percentile(lat, 50) * 1e3:.1f} ms, "
              f"p99 {percentile(lat, 99) * 1e3:.1f} ms; {failed} failed; "
              f"portal CPU {cpu * 1e6:.0f} us/request")

        stored = _history_rows(server)
        print(f"  acknowledged {ok}, in the history table {stored}: "
              f"{'all kept' if stored == ok else 'MISMATCH'}")

        rate_r, ok_r, failed_r, lat_r, cpu_r = run_phase("read", server, jobs, args.seconds)
        print(f"portal bookmark-list reads/s (GET /api/bookmarks): {rate_r:8.0f};  "
              f"p50 {percentile(lat_r, 50) * 1e3:.1f} ms, p99 {percentile(lat_r, 99) * 1e3:.1f}"
              f" ms; {failed_r} failed; portal CPU {cpu_r * 1e6:.0f} us/request")
        load = os.getloadavg()[0]
        print(f"machine load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs "
              "(other work on the machine lowers every figure)")
        target = "met" if rate >= 1000 and rate_r >= 2000 else "NOT met"
        print(f"target (>= 1,000 writes/s and >= 2,000 reads/s on 2 cores): {target}")
        return 0 if stored == ok and failed == 0 and failed_r == 0 else 1
    finally:
        server.stop()


def _prepare(server: PortalServer, users: list[tuple[str, str]]) -> list[dict]:
    """Log every client in, start a play and leave one bookmark so reads have data."""
    import http.client

    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))

    def call(method: str, path: str, body: dict, headers: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=json.dumps(body).encode(), headers=headers)
        response = conn.getresponse()
        data = json.loads(response.read())
        assert response.status == 200, data
        return data

    jobs = []
    for name, password in users:
        user_token = call("POST", "/api/login", {"user": name, "password": password})[
            "UserToken"]
        bearer = {"Authorization": f"Bearer {user_token}"}
        plays = [call("POST", "/api/play", {"ContentID": c}, bearer)
                 for c in ("sample", "sample_slices")]
        requests = []
        for play in plays:
            grant = tokens.verify_play_token(server.secret, play["EncryptToken"], time.time())
            requests.append({"EncryptToken": play["EncryptToken"],
                             "UserToken": grant.login_session, "ContentID": grant.content_id,
                             "ContentBM": 1.0, "UserID": grant.user_id})
        body = json.dumps(requests[1]).encode()
        headers = tokens.sign_request(server.secret, body, time.time())
        conn.request("POST", "/api/bookmark/set", body=body,
                     headers={**headers, "Content-Type": "application/json"})
        assert json.loads(conn.getresponse().read())["ResultCode"] == 0
        jobs.append({"user_token": user_token, "request": json.dumps(requests[0])})
    conn.close()
    return jobs


def _history_rows(server: PortalServer) -> int:
    """Accepted requests in the history, minus the one per user made by _prepare."""
    with sqlite3.connect(server.store.path) as db:
        (n,) = db.execute("SELECT count(*) FROM bookmark_history "
                          "WHERE content_id = 'sample'").fetchone()
    return n


if __name__ == "__main__":
    raise SystemExit(main())
