"""The portal as a component: PortalServer embedding, the shared secret, the OpenAPI file
matching the routes, login/logout on the JSON API."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest
import yaml
from portal_support import FAST_KDF, USERS, Http, running_portal

from rtsp_resume import tokens
from rtsp_resume.portal import PortalServer
from rtsp_resume.portal.app import OPENAPI


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path, database: str | None):
    """A running portal, once on SQLite and once on PostgreSQL."""
    with running_portal(tmp_path / "data", sample_dir, database=database) as p:
        yield p


def test_every_api_route_is_documented(portal) -> None:
    spec = yaml.safe_load(OPENAPI.read_text())
    routes = {(r.method.lower(), r.rule) for r in portal.server.app.routes
              if r.rule.startswith("/api/")}
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert routes == documented
    served = portal.http.get("/api/openapi.yaml")
    assert served.status == 200 and yaml.safe_load(served.raw) == spec


def test_login_and_logout(portal) -> None:
    reply = portal.http.post("/api/login", {"user": "alice", "password": "alice-pw"})
    body = reply.json
    assert reply.status == 200 and body["UserID"] == "alice" and body["expires_in"] == 8 * 3600
    token = body["UserToken"]
    assert portal.http.get("/api/contents", bearer=token).status == 200
    assert portal.http.post("/api/logout", bearer=token).json == {"UserID": "alice",
                                                                  "logged_out": True}
    assert portal.http.get("/api/contents", bearer=token).status == 401
    wrong = portal.http.post("/api/login", {"user": "alice", "password": "nope"})
    assert (wrong.status, wrong.json["error"]) == (401, "bad_credentials")


def test_server_creates_a_private_secret_in_its_data_folder(tmp_path: Path,
                                                            sample_dir: Path) -> None:
    data = tmp_path / "data"
    server = PortalServer(data, sample_dir, "rtsp://h:1", USERS, kdf=FAST_KDF)
    try:
        secret_file = data / "secret"
        assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
        assert tokens.load_or_create_secret(secret_file) == server.secret
    finally:
        server.stop()
    again = PortalServer(data, sample_dir, "rtsp://h:1", kdf=FAST_KDF)
    try:
        assert again.secret == server.secret  # the streaming server can rely on the file
    finally:
        again.stop()


def test_a_given_secret_is_used_and_no_file_written(tmp_path: Path, sample_dir: Path) -> None:
    key = b"k" * 32
    with PortalServer(tmp_path, sample_dir, "rtsp://h:1", USERS, secret=key,
                      kdf=FAST_KDF) as server:
        assert server.secret == key and not (tmp_path / "secret").exists()
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith("/")
        assert server.start() is server  # starting twice is harmless
        http = Http(server.url)
        token = http.post("/api/login", {"user": "bob", "password": "bob-pw"}).json["UserToken"]
        play = http.post("/api/play", {"ContentID": "sample"}, bearer=token).json
        assert tokens.verify_play_token(key, play["EncryptToken"], time.time()).user_id == "bob"
        http.close()


def test_missing_media_folder_is_an_empty_catalogue(tmp_path: Path) -> None:
    with running_portal(tmp_path / "data", tmp_path / "no-such-folder") as portal:
        token = portal.login("alice")
        assert portal.http.get("/api/contents", bearer=token).json == []
        reply = portal.http.post("/api/play", {"ContentID": "sample"}, bearer=token)
        assert reply.status == 404


def test_a_stopped_server_answers_nobody(tmp_path: Path, sample_dir: Path) -> None:
    server = PortalServer(tmp_path, sample_dir, "rtsp://h:1", USERS, kdf=FAST_KDF).start()
    http = Http(server.url, timeout=2)
    assert http.get("/login").status == 200
    server.stop()
    with pytest.raises(OSError):
        http.get("/login")


def test_keep_alive_connections_are_reused_and_not_cut_beyond_ten(portal) -> None:
    # Many clients (a streaming server, browsers) keep connections open between requests:
    # the server must neither answer one request per connection nor reset idle ones.
    clients = [Http(portal.server.url) for _ in range(14)]
    try:
        for _ in range(2):
            for http in clients:
                reply = http.get("/api/openapi.yaml")
                assert reply.status == 200 and reply.headers.get("Connection") != "close"
        socks = {http._conn.sock for http in clients if http._conn is not None}
        assert len(socks) == 14  # each client still on its first connection
        for http in clients:  # and every one of them still answers on it
            sock = http._conn.sock
            assert http.get("/login").status == 200 and http._conn.sock is sock
    finally:
        for http in clients:
            http.close()


def test_bad_http_gets_a_4xx_and_the_server_goes_on(portal) -> None:
    endless_head = b"GET / HTTP/1.1\r\n" + b"X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 10_000
    for raw in (b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
                b"POST /api/login HTTP/1.1\r\nContent-Length: -1\r\n\r\n", endless_head):
        with socket.create_connection((portal.http.host, portal.http.port), timeout=5) as s:
            s.sendall(raw)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 4"), (raw, answer[:80])
    assert portal.http.get("/login").status == 200


def test_plays_go_to_each_streaming_server_in_turn(tmp_path: Path, sample_dir: Path) -> None:
    # Several streaming servers of the same media behind one portal: each play, and each
    # resume, is a URL of the next server.
    servers = ["rtsp://site-a:8554", "rtsp://site-b:8554/"]
    with running_portal(tmp_path / "data", sample_dir, rtsp_url=servers) as portal:
        token = portal.login()
        urls = [portal.play(token)["url"] for _ in range(4)]
        urls.append(portal.interrupt(token, 3.0)["url"])  # the fifth play
        mark = portal.bookmarks(token)[0]
        resume = portal.interface(EncryptToken=mark["EncryptToken"], UserToken=token,
                                  ContentID="sample", ContentBM=mark["ContentBM"])
    hosts = [url.split("/")[2] for url in [*urls, resume.json["url"]]]
    assert hosts == ["site-a:8554", "site-b:8554"] * 3
    assert all(url.split("/", 3)[3].startswith("sample?token=") for url in urls)
