"""Running the portal: :class:`PortalServer` (embeddable) and ``serve-portal``'s ``main``."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from rtsp_resume import tokens
from rtsp_resume.portal.app import create_app
from rtsp_resume.portal.catalogue import Catalogue
from rtsp_resume.portal.cpu import pick_cpu
from rtsp_resume.portal.httpd import WsgiServer
from rtsp_resume.portal.store import Kdf, Store

log = logging.getLogger(__name__)

SECRET_FILE = "secret"


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


class PortalServer:
    """The portal on a background thread: for tests, notebooks and the combined ``serve``.

    ``secret`` is the key shared with the streaming server; by default it is read from (or
    created in) ``data_dir/secret``, the file ``serve-rtsp --secret-file`` defaults to.
    ``kdf`` sets the password hashing cost (tests use a cheap one); ``clock`` replaces
    ``time.time`` (tests move it forward to expire tokens); ``settings`` go to
    :class:`rtsp_resume.portal.app.Settings` (``login_ttl``, ``play_ttl``, ``max_skew``,
    ``bookmark_grace``). ``one_cpu`` keeps the portal's threads on one CPU, which under
    load saves about a third of its CPU time (:mod:`rtsp_resume.portal.cpu`); ``serve-portal``
    turns it on, while an embedding process may have other plans for its CPUs.
    """

    def __init__(
        self,
        data_dir: Path,
        media_dir: Path | None,
        rtsp_url: str,
        users: Iterable[tuple[str, str]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        secret: bytes | None = None,
        *,
        kdf: Kdf | None = None,
        clock: Callable[[], float] = time.time,
        one_cpu: bool = False,
        **settings: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.cpu = pick_cpu() if one_cpu else None
        self.secret = secret if secret is not None else tokens.load_or_create_secret(
            self.data_dir / SECRET_FILE
        )
        self.store = Store(self.data_dir, kdf=kdf, cpu=self.cpu)
        try:
            self.user_ids = [self.store.add_user(n, p, clock()) for n, p in users]
            self.catalogue = Catalogue(media_dir)
            self.app = create_app(
                self.store, self.catalogue, self.secret, rtsp_url, clock=clock, **settings
            )
            self._http = WsgiServer(self.app, host, port, cpu=self.cpu)
        except BaseException:
            self.store.close()
            raise
        self._started = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash: ``http://127.0.0.1:PORT``."""
        host, port = self._http.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> PortalServer:
        with self._lock:
            if not self._started:
                self._http.start()
                self._started = True
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then close."""
        try:
            self._http.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        with self._lock:
            self._http.stop()
            self.store.close()
            self._started = False

    def __enter__(self) -> PortalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(args: Any) -> int:
    """``python -m rtsp_resume serve-portal``: run in the foreground until Ctrl-C."""
    try:
        users = list(args.user)
        if args.users_file is not None:
            users += read_users_file(args.users_file)
        server = PortalServer(
            data_dir=args.data,
            media_dir=args.media,
            rtsp_url=args.rtsp_url,
            users=users,
            host=args.host,
            port=args.port,
            one_cpu=True,
        )
    except (ValueError, OSError) as exc:
        print(f"portal: cannot start: {exc}", file=sys.stderr)
        return 2
    # Everything from here on inside the try: Ctrl-C may come as soon as the first line is
    # out, and must still stop the server cleanly.
    try:
        accounts = server.store.users()
        print(f"portal: {server.url}/  (API description: {server.url}/api/openapi.yaml)")
        print(f"portal: data in {server.data_dir.resolve()}, shared secret in "
              f"{(server.data_dir / SECRET_FILE).resolve()}")
        print(f"portal: play URLs under {args.rtsp_url}")
        if accounts:
            print(f"portal: accounts: {', '.join(accounts)}")
        else:
            print("portal: no accounts yet: add --user NAME:PASSWORD or --users-file FILE")
        print("portal: press Ctrl-C to stop", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("portal: stopped", flush=True)
    finally:
        server.stop()
    return 0
