"""The portal's small HTTP/1.1 server (rtsp_resume.portal.httpd), byte by byte on a socket."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from rtsp_resume.portal.httpd import MAX_HEADERS, MAX_LINE, WsgiServer


def echo_app(environ, start_response):
    """Answers with what it saw; reads the body only for /read."""
    body = environ["wsgi.input"].read() if environ["PATH_INFO"] == "/read" else b""
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "body": body.decode("latin-1"),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "thread": threading.current_thread().name,
    }
    data = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


@pytest.fixture
def server() -> Iterator[WsgiServer]:
    srv = WsgiServer(echo_app)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Conn:
    """A client socket with a buffered reader, so that responses are read one at a time."""

    def __init__(self, server: WsgiServer) -> None:
        self.sock = socket.create_connection(server.address, timeout=5)
        self.rfile = self.sock.makefile("rb")

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rfile.close()
        self.sock.close()


def connect(server: WsgiServer) -> Conn:
    return Conn(server)


def read_response(conn: Conn, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    status_line = conn.rfile.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    headers = {}
    while (line := conn.rfile.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    return int(status_line.split()[1]), headers, conn.rfile.read(length)


def closed(conn: Conn) -> bool:
    try:
        return conn.rfile.read(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_keep_alive_serves_many_requests_on_one_connection(server: WsgiServer) -> None:
    with connect(server) as sock:
        threads = set()
        for i in range(3):
            sock.sendall(f"GET /x/{i}?q={i} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            seen = json.loads(body)
            assert (status, seen["path"], seen["query"]) == (200, f"/x/{i}", f"q={i}")
            assert headers["content-length"] == str(len(body))
            threads.add(seen["thread"])
        assert len(threads) == 1


def test_http_1_0_and_connection_close_end_the_connection(server: WsgiServer) -> None:
    for request in (b"GET / HTTP/1.0\r\n\r\n",
                    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"):
        with connect(server) as sock:
            sock.sendall(request)
            status, headers, _ = read_response(sock)
            assert status == 200 and headers["connection"] == "close"
            assert closed(sock)
    with connect(server) as sock:  # HTTP/1.0 may ask to keep the connection
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        read_response(sock)
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_headers_reach_the_application(server: WsgiServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX-One: a\r\nx-one: b\r\nAuthorization: Bearer t\r\n"
                     b"Content-Type: text/plain\r\n\r\n")
        seen = json.loads(read_response(sock)[2])
    assert seen["headers"]["HTTP_X_ONE"] == "a,b"
    assert seen["headers"]["HTTP_AUTHORIZATION"] == "Bearer t"
    assert "HTTP_CONTENT_TYPE" not in seen["headers"]


def test_unread_body_is_skipped_and_the_next_request_works(server: WsgiServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /ignore HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world"
                     b"POST /read HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde")
        assert json.loads(read_response(sock)[2])["body"] == ""
        assert json.loads(read_response(sock)[2])["body"] == "abcde"


def test_application_cannot_read_past_the_body(server: WsgiServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")
        assert json.loads(read_response(sock)[2])["body"] == "abc"
        assert read_response(sock)[0] == 200


def test_expect_100_continue(server: WsgiServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.rfile.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert sock.rfile.readline() == b"\r\n"
        sock.sendall(b"ok")
        assert json.loads(read_response(sock)[2])["body"] == "ok"


@pytest.mark.parametrize("request_bytes,status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / FTP/1.0\r\n\r\n", 400),
    (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-A : 1\r\n\r\n", 400),
    (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nX-A: " + b"a" * MAX_LINE + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
])
def test_bad_requests_get_a_json_error_and_the_connection_ends(
    server: WsgiServer, request_bytes: bytes, status: int
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        got, headers, body = read_response(sock)
        assert got == status
        assert headers["content-type"] == "application/json"
        assert "error" in json.loads(body)
        assert closed(sock)


def test_head_sends_no_body(server: WsgiServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        assert read_response(sock, head_only=True)[0] == 200
        # The GET's answer follows the HEAD's head at once: no body came in between.
        status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["method"] == "GET"


def test_stop_ends_idle_keep_alive_connections() -> None:
    srv = WsgiServer(echo_app)
    srv.start()
    with connect(srv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        read_response(sock)
        srv.stop()
        assert closed(sock)
    with pytest.raises(OSError):
        socket.create_connection(srv.address, timeout=2).close()


def test_idle_and_stalled_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The idle limit is the kernel's receive timeout: an idle keep-alive connection, and
    # one that stops in the middle of a body, are both closed, and the server goes on.
    from rtsp_resume.portal import httpd

    monkeypatch.setattr(httpd, "IDLE_TIMEOUT", 0.3)
    srv = WsgiServer(echo_app)
    srv.start()
    try:
        with connect(srv) as idle, connect(srv) as stalled:
            idle.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            assert idle.rfile.readline().startswith(b"HTTP/1.1 200")
            stalled.sendall(b"POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            # Both reads wait at most the client socket's 5 s timeout: a server that kept
            # the connections open would fail here with TimeoutError.
            assert b'"path": "/x"' in idle.rfile.read()  # the answer, then the close
            assert stalled.rfile.read() == b""
        with connect(srv) as fresh:
            fresh.sendall(b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n")
            assert fresh.rfile.readline().startswith(b"HTTP/1.1 200")
    finally:
        srv.stop()


def test_connection_threads_kept_on_the_chosen_cpu() -> None:
    from rtsp_resume.portal.cpu import pick_cpu

    cpu = pick_cpu()
    if cpu is None:
        pytest.skip("one CPU only, or no CPU affinity control here")

    def where(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(sorted(os.sched_getaffinity(0))).encode()]

    srv = WsgiServer(where, cpu=cpu)
    srv.start()
    try:
        with connect(srv) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert json.loads(conn.rfile.read().partition(b"\r\n\r\n")[2]) == [cpu]
    finally:
        srv.stop()
