"""The programs the portal offers: the files in the streaming server's media folder.

The portal reads the same folder as the streaming server (through
:class:`rtsp_resume.media.MediaLibrary`, which caches each file's probe) so its catalogue,
the ContentIDs in its play URLs and the durations it checks bookmarks against are the
server's own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Program:
    content_id: str  # the file name without its extension: the ContentID
    title: str
    duration: float  # seconds


def title_for(content_id: str) -> str:
    """A readable title from a file-name id: ``sample_slices`` -> ``Sample slices``."""
    words = re.sub(r"[_\-.]+", " ", content_id).strip()
    return (words[:1].upper() + words[1:]) if words else content_id


class Catalogue:
    """The media folder as a list of programs; a missing folder is an empty catalogue.

    The listing is kept for ``ttl`` seconds: every bookmark request and bookmark page looks
    programs up, and re-reading the folder each time would cost a few system calls per
    lookup. A file added to the folder shows up within ``ttl``.
    """

    def __init__(self, media_dir: Path | None, ttl: float = 2.0) -> None:
        self.media_dir = Path(media_dir) if media_dir is not None else None
        self.ttl = ttl
        self._library: Any = None
        self._lock = threading.Lock()
        self._programs: dict[str, Program] = {}
        self._fresh_until = 0.0

    def _lib(self) -> Any:
        if self.media_dir is None or not self.media_dir.is_dir():
            return None
        if self._library is None:
            # Imported here so that importing the portal does not load PyAV until the
            # catalogue is first needed.
            from rtsp_resume.media import MediaLibrary

            self._library = MediaLibrary(self.media_dir)
        return self._library

    def _current(self) -> dict[str, Program]:
        now = time.monotonic()
        if now < self._fresh_until:
            return self._programs
        with self._lock:
            if now >= self._fresh_until:
                programs = {p.content_id: p for p in self._scan()}
                self._programs = programs
                self._fresh_until = time.monotonic() + self.ttl
            return self._programs

    def _scan(self) -> list[Program]:
        lib = self._lib()
        if lib is None:
            return []
        try:
            files = lib.list()
        except Exception:  # a broken folder must not take the portal down
            log.exception("cannot list media in %s", self.media_dir)
            return []
        return [self._program(f) for f in files]

    def list(self) -> list[Program]:
        return sorted(self._current().values(), key=lambda p: p.content_id)

    def get(self, content_id: str) -> Program | None:
        """The program, or None. A lookup in the listing: an id from a request (say
        ``../../etc/passwd``) never reaches the file system."""
        return self._current().get(content_id)

    @staticmethod
    def _program(media: Any) -> Program:
        return Program(
            content_id=media.content_id,
            title=title_for(media.content_id),
            duration=float(media.duration),
        )
