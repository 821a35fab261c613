"""The programs the portal offers: the files of the streaming server's media folder.

Read through :class:`rtsp_resume.media.MediaLibrary` (which keeps each file's probe until
the file changes), so the ContentIDs and durations are the streaming server's own. Every
bookmark request looks a program up, so the listing is read again only once ``ttl``
seconds old: a new file shows up within that time.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    """The media folder as programs; a missing folder is an empty catalogue."""

    def __init__(self, media_dir: Path | None, ttl: float = 2.0) -> None:
        self.media_dir = Path(media_dir) if media_dir is not None else None
        self.ttl = ttl
        self._library: Any = None
        self._lock = threading.Lock()
        self._programs: dict[str, Program] = {}
        self._read_at = -math.inf

    def _current(self) -> dict[str, Program]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                self._programs = {f.content_id: _program(f) for f in self._files()}
                self._read_at = time.monotonic()
            return self._programs

    def _files(self) -> list[Any]:
        if self.media_dir is None or not self.media_dir.is_dir():
            return []
        if self._library is None:
            # Here rather than at the top: importing the portal does not load PyAV.
            from rtsp_resume.media import MediaLibrary

            self._library = MediaLibrary(self.media_dir)
        return self._library.list()

    def list(self) -> list[Program]:
        return sorted(self._current().values(), key=lambda p: p.content_id)

    def get(self, content_id: str) -> Program | None:
        """The program, or None: a lookup in the listing, so an id from a request (say
        ``../../etc/passwd``) never reaches the file system."""
        return self._current().get(content_id)


def _program(media: Any) -> Program:
    return Program(media.content_id, title_for(media.content_id), float(media.duration))
