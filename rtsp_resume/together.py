"""Claim 7's system in one process: streaming server, portal and the reverse interface.

The two servers still talk only over HTTP, exactly as when they run as two processes
(``serve-portal`` and ``serve-rtsp --portal-url``): the streaming server's bookmark outbox
posts signed BookMarkReq to the portal's ``/api/bookmark/set``. What they share is the
secret key (play tokens and request signatures) and this module, which starts them.

:class:`System` is what ``serve``, the demo, tests and notebooks run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rtsp_resume import tokens
from rtsp_resume.bookmark_outbox import BookmarkOutbox
from rtsp_resume.portal import PortalServer
from rtsp_resume.server import ServerConfig, StreamingServer

log = logging.getLogger("rtsp_resume.system")

DEMO_USERS = [("alice", "wonderland"), ("bob", "builder")]


class System:
    """A streaming server, a portal and the outbox between them, on background threads.

    ``rtsp_port``/``portal_port`` 0 pick free ports. ``portal_kwargs`` go to
    :class:`rtsp_resume.portal.PortalServer` (tests pass a cheap ``kdf``).
    """

    def __init__(self, media: Path | str, data: Path | str,
                 users: Iterable[tuple[str, str]] = DEMO_USERS, host: str = "127.0.0.1",
                 rtsp_port: int = 0, portal_port: int = 0,
                 config: ServerConfig | None = None, **portal_kwargs: Any) -> None:
        self.media = Path(media)
        self.data = Path(data)
        self.users = list(users)
        self.host = host
        self.portal_port = portal_port
        self.portal_kwargs = portal_kwargs
        self.secret = tokens.load_or_create_secret(self.data / "secret")
        cfg = config or ServerConfig()
        cfg.host, cfg.port, cfg.token_key = host, rtsp_port, self.secret
        self.streaming = StreamingServer(self.media, cfg)
        self.portal: PortalServer | None = None
        self.outbox: BookmarkOutbox | None = None

    @property
    def rtsp_url(self) -> str:
        return f"rtsp://{self.host}:{self.streaming.port}"

    @property
    def portal_url(self) -> str:
        assert self.portal is not None, "start() first"
        return self.portal.url

    def start(self) -> System:
        self.streaming.start()
        try:
            self.portal = PortalServer(
                self.data, self.media, self.rtsp_url, self.users, host=self.host,
                port=self.portal_port, secret=self.secret, **self.portal_kwargs,
            ).start()
            self.outbox = BookmarkOutbox(self.portal.url, self.secret,
                                         self.data / "outbox.db").start()
        except BaseException:
            self.stop()
            raise
        self.streaming.listeners.append(self.outbox.submit)
        return self

    def stop(self) -> None:
        self.streaming.stop()
        if self.outbox is not None:
            self.outbox.stop()
            self.outbox = None
        if self.portal is not None:
            self.portal.stop()
            self.portal = None

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
