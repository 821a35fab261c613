"""The programs the portal offers: the files of the streaming server's media folder, read
through :class:`rtsp_resume.media.MediaLibrary`, so the ContentIDs and durations are the
streaming server's own (and a new file shows up at once)."""

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


def _program(media: Any) -> Program:
    return Program(media.content_id, title_for(media.content_id), float(media.duration))


class Catalogue:
    """The media folder as programs; a missing folder is an empty catalogue."""

    def __init__(self, media_dir: Path | None) -> None:
        # Imported here rather than at the top: importing the portal does not load PyAV.
        from rtsp_resume.media import MediaLibrary

        self._library = MediaLibrary(media_dir) if media_dir is not None else None

    def list(self) -> list[Program]:
        if self._library is None or not self._library.directory.is_dir():
            return []
        return [_program(m) for m in self._library.list()]  # sorted by ContentID

    def get(self, content_id: str) -> Program | None:
        """The program, or None (MediaLibrary takes only plain file names as ids)."""
        from rtsp_resume.media import UnplayableMedia  # loaded already, by __init__

        try:
            found = self._library.get(content_id) if self._library else None
        except UnplayableMedia:
            return None
        return _program(found) if found is not None else None

    def describe(self, content_id: str) -> tuple[str, float | None]:
        """Title and duration; for a program no longer in the folder, no duration."""
        program = self.get(content_id)
        return (program.title, program.duration) if program else (title_for(content_id), None)
