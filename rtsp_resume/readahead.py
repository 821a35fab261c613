"""Access units read ahead of a session's pacing, off the event loop: the loop never waits
on a disk or a demuxer, so no heartbeat is ever late for it (claims 2, 8). Two threads, so
that a crowd of sessions starting at once never holds up those already playing: one opens
files (and reads a play's first batch), the other reads on, a batch ahead."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from rtsp_resume.media import AccessUnit

BATCH = 64  # access units per read (about a second of media, at most two in hand)
# The process's two reader threads (started at the first read, so after any fork).
_OPENER, _READER = ThreadPoolExecutor(1, "media-opener"), ThreadPoolExecutor(1, "media-reader")


class ReadAhead:
    """The units of one play from its start; ``pending`` is the next to send."""

    def __init__(self, units: Iterator[AccessUnit]) -> None:
        self._units = units
        self._ahead: deque[AccessUnit] = deque()
        self._reading: Future[list[AccessUnit]] | None = None
        self._opened = False  # the first read, which opens the file, has been asked for
        self._drained = False  # the last read found the end

    @property
    def pending(self) -> AccessUnit | None:
        return self._ahead[0] if self._ahead else None

    async def next(self) -> AccessUnit | None:
        """The unit to send next, None at the end. The next batch is asked for once fewer
        than a batch are in hand (a second of margin for the reader's queue); a read in
        flight survives a cancel (a PAUSE) for the resume."""
        while True:
            if self._reading is None and not self._drained and len(self._ahead) < BATCH:
                thread = _READER if self._opened else _OPENER
                self._reading = thread.submit(list, itertools.islice(self._units, BATCH))
                self._opened = True
            if self._reading is None or (self._ahead and not self._reading.done()):
                return self.pending
            batch = await asyncio.shield(asyncio.wrap_future(self._reading))
            self._ahead += batch
            self._reading, self._drained = None, not batch

    def sent(self) -> None:
        self._ahead.popleft()

    def close(self) -> None:
        """Close the file now, or on the reading thread once a read in flight is done."""
        close = self._units.close  # type: ignore[attr-defined]
        if self._reading is None:
            close()
        else:
            self._reading.add_done_callback(lambda _: close())
