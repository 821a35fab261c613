"""ReadAhead: a play's access units, read on the reader threads, exactly as the file gives
them, whatever the pacing task's cancels (a PAUSE) and closes (a seek, a session's end)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtsp_resume.media import AccessUnit, MediaFile
from rtsp_resume.readahead import BATCH, ReadAhead


@pytest.fixture(scope="module")
def media(sample_dir: Path) -> MediaFile:
    return MediaFile(sample_dir / "sample_slices.mp4")


def key(units: list[AccessUnit]) -> list[tuple[int, float, float]]:
    return [(u.track, u.pts, u.dts) for u in units]


def test_every_unit_in_the_files_order(media: MediaFile) -> None:
    async def play() -> list[AccessUnit]:
        ahead, sent = ReadAhead(media.access_units(4.0)), []
        while (unit := await ahead.next()) is not None:
            sent.append(unit)
            ahead.sent()
        return sent

    expected = list(media.access_units(4.0))
    assert len(expected) > 3 * BATCH  # several batches, and the end
    assert key(asyncio.run(play())) == key(expected)


def test_a_pause_during_a_read_loses_and_repeats_nothing(media: MediaFile) -> None:
    cancels = 0

    async def play() -> list[AccessUnit]:
        nonlocal cancels
        ahead, sent = ReadAhead(media.access_units(0.0)), []
        while True:
            waiting = asyncio.ensure_future(ahead.next())
            await asyncio.sleep(0)  # it has asked for a read, maybe awaits it
            if not waiting.done():
                waiting.cancel()  # a PAUSE: the pacing task is cancelled mid-read
                cancels += 1
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                waiting = asyncio.ensure_future(ahead.next())  # the resume
            unit = await waiting
            if unit is None:
                return sent
            sent.append(unit)
            ahead.sent()

    assert key(asyncio.run(play())) == key(list(media.access_units(0.0)))
    assert cancels > 0  # or the test tested nothing


def test_a_close_during_a_read_closes_the_file_once_the_read_is_done(
    media: MediaFile,
) -> None:
    units: Iterator[AccessUnit] = media.access_units(0.0)

    async def start_then_close() -> None:
        ahead = ReadAhead(units)
        assert await ahead.next() is not None  # the file is open
        ahead.sent()
        reading = asyncio.ensure_future(ahead.next())
        await asyncio.sleep(0)
        ahead.close()  # a seek or the session's end, while a batch is being read
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)

    asyncio.run(start_then_close())
    assert asyncio.run(_closed_within(units, 5.0)), "the file was never closed"


async def _closed_within(units: Iterator[AccessUnit], seconds: float) -> bool:
    """Whether the generator (and so its container) is closed within ``seconds``."""
    loop = asyncio.get_running_loop()
    limit = loop.time() + seconds
    while units.gi_frame is not None:  # type: ignore[attr-defined]
        if loop.time() > limit:
            return False
        await asyncio.sleep(0.01)
    return True


def test_the_first_batch_on_the_opener_then_batches_on_the_reader(
    media: MediaFile, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rtsp_resume import readahead

    trips: list[str] = []
    for name in ("_OPENER", "_READER"):
        pool = getattr(readahead, name)
        monkeypatch.setattr(pool, "submit", lambda fn, it, n=name, s=pool.submit: (
            trips.append(n), s(fn, it))[1])

    async def play() -> int:
        ahead, count = ReadAhead(media.access_units(0.0)), 0
        while await ahead.next() is not None:
            ahead.sent()
            count += 1
        return count

    count = asyncio.run(play())
    assert trips[0] == "_OPENER" and set(trips[1:]) == {"_READER"}
    assert len(trips) <= count // BATCH + 2  # a trip per batch, not per unit
