"""The programs the portal offers: the files in the streaming server's media folder.

The portal reads the same folder as the streaming server (through
:class:`rtsp_resume.media.MediaLibrary`, which caches each file's probe) so its catalogue,
the ContentIDs in its play URLs and the durations it checks bookmarks against are the
server's own.
"""

from __future__ import annotations

import logging
import re
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
    """The media folder as a list of programs; a missing folder is an empty catalogue."""

    def __init__(self, media_dir: Path | None) -> None:
        self.media_dir = Path(media_dir) if media_dir is not None else None
        self._library: Any = None

    def _lib(self) -> Any:
        if self.media_dir is None or not self.media_dir.is_dir():
            return None
        if self._library is None:
            # Imported here so that importing the portal does not load PyAV until the
            # catalogue is first needed.
            from rtsp_resume.media import MediaLibrary

            self._library = MediaLibrary(self.media_dir)
        return self._library

    def list(self) -> list[Program]:
        lib = self._lib()
        if lib is None:
            return []
        try:
            files = lib.list()
        except Exception:  # a broken folder must not take the portal down
            log.exception("cannot list media in %s", self.media_dir)
            return []
        programs = [self._program(f) for f in files]
        return sorted(programs, key=lambda p: p.content_id)

    def get(self, content_id: str) -> Program | None:
        """The program, or None when there is no such (playable) file.

        MediaLibrary.get accepts only plain file-name stems, so an id from a request (say
        ``../../etc/passwd``) never reaches another folder.
        """
        lib = self._lib()
        if lib is None:
            return None
        try:
            media = lib.get(content_id)
        except Exception:  # unplayable or unreadable: not in the catalogue
            log.warning("cannot offer %r from %s", content_id, self.media_dir, exc_info=True)
            return None
        return self._program(media) if media is not None else None

    @staticmethod
    def _program(media: Any) -> Program:
        return Program(
            content_id=media.content_id,
            title=title_for(media.content_id),
            duration=float(media.duration),
        )
