"""Running the portal: :class:`PortalServer`, embedded or behind ``serve-portal``, on
cheroot's threaded WSGI server (HTTP/1.1 keep-alive; idle connections wait in its
selector rather than holding a thread)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cheroot import wsgi

from rtsp_resume import tokens
from rtsp_resume.portal.app import Portal, Settings
from rtsp_resume.portal.catalogue import Catalogue
from rtsp_resume.portal.passwords import Kdf
from rtsp_resume.portal.store import Store

SECRET_FILE = "secret"
THREADS = 16  # requests served at once
IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may stay silent


def read_users_file(path: Path) -> list[tuple[str, str]]:
    """``NAME:PASSWORD`` per line; blank lines and lines starting with ``#`` are skipped."""
    users = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"{path}:{number}: expected NAME:PASSWORD")
        users.append((name, password))
    return users


class _Server(wsgi.Server):
    keep_alive_conn_limit = 1000  # idle keep-alive connections kept (cheroot's default, 10, is few)
    max_request_header_size = 64 * 1024  # request line and headers (cheroot's: no limit)

    @classmethod
    def prepare_socket(cls, *args: Any, **kwargs: Any) -> socket.socket:
        # cheroot sets SO_REUSEADDR only on fixed ports; a portal restarted on the port an
        # earlier one took as ephemeral needs it too.
        sock = super().prepare_socket(*args, **kwargs)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock


class PortalServer:
    """The portal on a background thread. ``secret`` is the key shared with the streaming
    server (default: read from, or created in, ``data_dir/secret``, where ``serve-rtsp
    --secret-file`` looks); ``database`` a URL for :class:`.store.Store` (default: SQLite in
    ``data_dir``); ``rtsp_url`` one streaming server or several; ``settings`` go to
    :class:`.app.Settings`."""

    def __init__(self, data_dir: Path, media_dir: Path | None, rtsp_url: str | Sequence[str],
                 users: Iterable[tuple[str, str]] = (), host: str = "127.0.0.1", port: int = 0,
                 secret: bytes | None = None, *, kdf: Kdf | None = None,
                 database: str | None = None, clock: Callable[[], float] = time.time,
                 **settings: Any) -> None:
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir, kdf=kdf, database=database)
        try:
            self.secret = secret if secret is not None else tokens.load_or_create_secret(
                self.data_dir / SECRET_FILE)
            for name, password in users:
                self.store.add_user(name, password, clock())
            self.catalogue = Catalogue(media_dir)
            self.app = Portal(self.store, self.catalogue, self.secret,
                              Settings(rtsp_url, **settings), clock).app
            self._http = _Server((host, port), self.app, numthreads=THREADS,
                                 timeout=IDLE_TIMEOUT, request_queue_size=128)
            self._http.prepare()  # binds now, so that the URL is known before start()
        except BaseException:
            self.store.close()
            raise
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Without a trailing slash: ``http://127.0.0.1:PORT``."""
        host, port = self._http.bind_addr[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> PortalServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._http.serve, name="portal-http",
                                            daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C); then call :meth:`stop`."""
        self._http.serve()

    def stop(self, *_exc_info: object) -> None:
        self._http.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.store.close()

    __enter__, __exit__ = start, stop
