"""The programs the portal offers: the files of the streaming server's media folder.

Read through :class:`rtsp_resume.media.MediaLibrary` (which keeps each file's probe until
the file changes), so the ContentIDs and durations are the streaming server's own.
"""

from __future__ import annotations

import re
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

    def __init__(self, media_dir: Path | None) -> None:
        self.media_dir = Path(media_dir) if media_dir is not None else None
        self._library: Any = None

    def _lib(self) -> Any:
        if self.media_dir is None or not self.media_dir.is_dir():
            return None
        if self._library is None:
            # Here rather than at the top: importing the portal does not load PyAV.
            from rtsp_resume.media import MediaLibrary

            self._library = MediaLibrary(self.media_dir)
        return self._library

    def list(self) -> list[Program]:
        lib = self._lib()
        return [_program(f) for f in lib.list()] if lib is not None else []

    def get(self, content_id: str) -> Program | None:
        """The program, or None (MediaLibrary refuses an id that is not a plain name, say
        ``../../etc/passwd``, before it touches the file system)."""
        from rtsp_resume.media import UnplayableMedia

        lib = self._lib()
        try:
            media = lib.get(content_id) if lib is not None else None
        except UnplayableMedia:
            return None
        return _program(media) if media is not None else None


def _program(media: Any) -> Program:
    return Program(media.content_id, title_for(media.content_id), float(media.duration))
