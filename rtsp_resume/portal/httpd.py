"""A small threaded WSGI server with HTTP/1.1 keep-alive, on the standard library.

Why not ``wsgiref.simple_server`` with ``ThreadingMixIn``: its handler answers one request
per connection (HTTP/1.0), so a streaming server posting bookmarks, or a page loading its
stylesheet, pays a TCP handshake and a new thread for every request. Here each connection
gets one thread that serves requests until the client closes it or stays idle for
``IDLE_TIMEOUT`` seconds. The plumbing (threads, sockets, responses) is :mod:`http.server`'s;
this module reads the request head itself, builds the WSGI environ (PEP 3333) and writes
the application's answer in one piece.

Request bodies are handed to the application through a reader that stops at
Content-Length, so an application that reads too little or too much cannot desynchronise
the next request; chunked request bodies are refused (411) since no client of the portal
sends them.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from rtsp_resume.portal.cpu import pin_current_thread

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 30.0
MAX_LINE = 8192  # request line, and each header line
MAX_HEADERS = 100
# Methods passed to the application, which answers 405 where a route does not take one.
_date_cache: list = [0, ""]  # [second, Date header value]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# An unread request body larger than this closes the connection rather than being drained.
DRAIN_LIMIT = 1 << 20

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _BodyReader(io.RawIOBase):
    """``wsgi.input``: the request body, and not one byte past it."""

    def __init__(self, rfile: Any, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size == 0:
            return b""
        data = self._rfile.read(size)
        if data is None:  # the kernel's receive timeout (see _Handler.setup)
            raise TimeoutError("the client stopped sending its request body")
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._rfile.readline(size)
        self.remaining -= len(data)
        return data


class _Headers:
    """Request headers: case-insensitive, repeated ones joined with commas."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, str]] = {}

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        if key in self._items:
            value = f"{self._items[key][1]},{value}"
        self._items[key] = (name, value)

    def get(self, name: str, default: str = "") -> str:
        item = self._items.get(name.lower())
        return item[1] if item else default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rtsp-resume-portal"
    sys_version = ""
    # No Python socket timeout: with one, CPython polls the socket before every recv and
    # send, and each poll gives up the GIL; with sixteen busy connections every such
    # release became a thread switch, a good part of the portal's CPU. The idle limit is
    # left to the kernel instead (setup): a read that times out returns no data, which
    # ends the connection as a close by the client would.
    timeout = None
    disable_nagle_algorithm = True
    server: _Server

    def handle_one_request(self) -> None:
        try:
            if self._read_request():
                self._run_app()
        except (ConnectionError, TimeoutError, BlockingIOError):
            # BlockingIOError: a send that hit the kernel's timeout (a client not reading).
            self.close_connection = True

    def _read_request(self) -> bool:
        """Read the request line and headers (RFC 9112 section 3 and 5); False if the
        connection is to end (an error has then been answered).

        Written here instead of :mod:`http.server`'s ``parse_request``, which reads headers
        with the e-mail parser: a fifth of the portal's time under load went there.
        """
        self.command = None  # send_error looks at it
        self.request_version = "HTTP/1.0"
        self.close_connection = True
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        self.raw_requestline = line
        self.requestline = line.decode("latin-1").rstrip("\r\n")
        if len(line) > MAX_LINE:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            return False
        words = self.requestline.split()
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, "bad request line")
            return False
        method, target, version = words
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            status = (HTTPStatus.HTTP_VERSION_NOT_SUPPORTED if version.startswith("HTTP/")
                      else HTTPStatus.BAD_REQUEST)
            self.send_error(status, "HTTP/1.0 or HTTP/1.1 only")
            return False
        self.command, self.request_version = method, version
        # "//host/x" would read as a network path in a redirect: keep one slash.
        self.path = "/" + target.lstrip("/") if target.startswith("//") else target
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if len(line) > MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("latin-1").partition(":")
            # Obsolete line folding and spaces before the colon are refused (RFC 9112 5).
            if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                self.send_error(HTTPStatus.BAD_REQUEST, "malformed header line")
                return False
            headers.add(name, value.strip())
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = {t.strip() for t in headers.get("Connection", "").lower().split(",")}
        if version == "HTTP/1.1":
            self.close_connection = "close" in connection
        else:
            self.close_connection = "keep-alive" not in connection
        if method not in _METHODS:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"method {method} not supported")
            return False
        if version == "HTTP/1.1" and headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def setup(self) -> None:
        pin_current_thread(self.server.cpu)
        super().setup()
        seconds, fraction = divmod(IDLE_TIMEOUT, 1.0)
        limit = struct.pack("ll", int(seconds), int(fraction * 1e6))  # a struct timeval
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
        self.server.connection_opened(self.connection)

    def finish(self) -> None:
        self.server.connection_closed(self.connection)
        super().finish()

    def _run_app(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self._plain_error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length body")
            return
        length_text = self.headers.get("Content-Length", "0").strip() or "0"
        if not length_text.isdigit() or len(length_text) > 15:
            self._plain_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        body = _BodyReader(self.rfile, int(length_text))
        environ = self._environ(body, length_text)
        chunks: list[bytes] = []
        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            # Nothing is sent before the application returns, so a second call (with
            # exc_info, after an error) may always replace the first.
            status_headers[:] = [status, headers]
            return chunks.append

        result = self.server.app(environ, start_response)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = status_headers
        payload = b"".join(chunks)
        if body.remaining:
            # The application did not read the whole body (it refused it early): drain a
            # small one so the connection stays usable, drop the connection on a big one.
            if body.remaining <= DRAIN_LIMIT:
                body.read()
            else:
                self.close_connection = True
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(code, len(payload))
        # The head is built in one string rather than through send_response and one
        # send_header per line: the same bytes, for a fraction of the calls.
        lines = [f"{self.protocol_version} {code} {reason or self.responses.get(code, ('',))[0]}",
                 f"Server: {self.server_version}", f"Date: {self.date_time_string()}"]
        has_length = False
        for name, value in headers:
            lines.append(f"{name}: {value}")
            has_length = has_length or name.lower() == "content-length"
        if not has_length:
            lines.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            lines.append("Connection: close")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("latin-1")
        # One write for head and body: two small writes would meet Nagle's algorithm and
        # the client's delayed ACK, costing 40 ms per request on a keep-alive connection.
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    def _environ(self, body: _BodyReader, length_text: str) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[-1]  # an absolute-form request target
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            # PEP 3333: the path is percent-decoded bytes carried as latin-1 text.
            "PATH_INFO": urllib.parse.unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": length_text,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            # "X-A" and "X_A" both map to HTTP_X_A: keep both values rather than let one
            # silently replace the other.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _plain_error(self, status: HTTPStatus, detail: str) -> None:
        self.close_connection = True
        self.send_error(status, detail)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        # http.server's own errors (bad request line, header too long, ...) as JSON, like
        # every other error of the portal's API.
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        body = json.dumps({"error": phrase.lower().replace(" ", "_") or str(code),
                           "detail": message or phrase}).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header changes once a second; formatting it for every answer is waste.
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached = _date_cache
        if cached[0] != second:
            cached[:] = [second, super().date_time_string(second)]
        return cached[1]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The default backlog of 5 drops connections when a few dozen clients arrive at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WsgiApp, cpu: int | None) -> None:
        self.app = app
        self.cpu = cpu
        super().__init__(address, _Handler)

        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def connection_opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def connection_closed(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """End idle keep-alive connections, so that a stopped server answers nobody."""
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("portal: error while serving %s", client_address)


class WsgiServer:
    """Serve a WSGI application on a background thread: ``start()``, ``stop()``.

    ``cpu``: run the connection threads on that CPU only (see :mod:`rtsp_resume.portal.cpu`).
    """

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0,
                 cpu: int | None = None) -> None:
        self._httpd = _Server((host, port), app, cpu)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="portal-http", daemon=True,
        )
        self._thread.start()

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self._httpd.close_connections()
