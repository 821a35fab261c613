"""Exercises: a student writes a piece of the real system, a check compares it with the
package's own piece on generated cases and says in words where it goes wrong, and a hook
lets the live streaming server run it. The pieces: the heartbeat verdict (claims 2, 8;
heartbeat.py), H.264 FU-A fragmentation (RFC 6184 §5.8; payload.py) and the portal's
"newer bookmark wins" rule (claims 1, 3; the portal's store)."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from rtsp_resume.heartbeat import HeartbeatMonitor, LogEvent
from rtsp_resume.media import MediaFile
from rtsp_resume.payload import H264_FU_A, H264Packetizer, nal_type
from rtsp_resume.portal.store import BookmarkWrite, Store

Event = tuple[float, str]  # (seconds since the session began, "sent", "answered" or "life")
Verdict = Callable[[list[Event], float, float], bool]  # (events, now, timeout) -> interrupted
Fragmenter = Callable[[bytes, int], list[bytes]]  # (NAL unit, mtu) -> FU-A payloads


class ExerciseFailed(AssertionError):
    """An answer that disagrees with the package's; the message says where and why."""


def reference_verdict(events: list[Event], now: float, timeout: float) -> bool:
    """The package's verdict: the events replayed into a :class:`HeartbeatMonitor`."""
    monitor = HeartbeatMonitor(1.0, timeout, now=0.0)
    for cseq, (at, kind) in enumerate(events):
        if kind == "sent":
            monitor.heartbeat_sent(cseq, at)
        else:  # an answer to any heartbeat, or other life: both are signs of life
            monitor.life_seen(at, kind)
    return monitor.tick(now).interrupted


def heartbeat_cases(count: int = 60, seed: int = 8) -> list[tuple[list[Event], float, float]]:
    """(events, now, timeout): a terminal answering until a cut, sometimes sending RTCP,
    sometimes heard again later, asked at moments around the timeout (times in 1/64 s, so
    that every sum and difference is exact)."""
    rng, cases = random.Random(seed), []
    for _ in range(count):
        timeout, interval = rng.choice((1.0, 1.5, 3.0)), rng.choice((0.25, 0.5, 1.0))
        cut, back = rng.randrange(0, 320) / 64, rng.choice((None, 2.0, 6.0))
        rtcp = rng.random() < 0.4
        events: list[Event] = []
        for n in range(1, int(16 / interval)):
            sent, rtt = n * interval, rng.randrange(1, 8) / 64
            events.append((sent, "sent"))
            if sent + rtt < cut or (back is not None and sent + rtt > cut + back):
                events.append((sent + rtt, "answered"))
            if rtcp and n % 3 == 0:
                events.append((sent + 0.125, "life"))
        events.sort()
        last = max([0.0] + [t for t, kind in events if kind != "sent" and t < cut])
        now = last + timeout + rng.choice((-1 / 64, 0.0, 0.0, 1 / 64, 2.0, 5.0))
        cases.append(([e for e in events if e[0] <= now], now, timeout))
    return cases


def explain_verdict(events: list[Event], now: float, timeout: float) -> str:
    """The reference's reasoning for one case, in words."""
    life = [0.0] + [t for t, kind in events if kind != "sent"]
    sent_after = sum(kind == "sent" and t > life[-1] for t, kind in events)
    gap = next(((b - a, a) for a, b in zip(life, life[1:], strict=False) if b - a >= timeout), None)
    if gap is not None:
        return (f"the terminal was silent {gap[0]:g} s from {gap[1]:g} s (>= the timeout "
                f"{timeout:g} s), so it was interrupted then; the verdict is final, signs of "
                f"life heard afterwards do not revive the session")
    what = "an answer" if any(t == life[-1] and k == "answered" for t, k in events) else (
        "other life (RTCP, a request)" if len(life) > 1 else "the session start")
    return (f"the last sign of life was {what} at {life[-1]:g} s; at now={now:g} s that is "
            f"{now - life[-1]:g} s of silence against a timeout of {timeout:g} s; the "
            f"{sent_after} heartbeat(s) sent since are not life, only answers and other "
            f"evidence are")


def check_verdict(verdict: Verdict) -> str:
    """Compare ``verdict`` with the reference on generated timelines; raise on the first
    disagreement with the timeline and the reason in words."""
    cases = heartbeat_cases()
    for events, now, timeout in cases:
        expected = reference_verdict(events, now, timeout)
        if bool(got := verdict(list(events), now, timeout)) != expected:
            shown = ", ".join(f"{kind} {t:g}" for t, kind in events[-12:])
            raise ExerciseFailed(
                f"at now={now:g} s with timeout {timeout:g} s you say "
                f"{'interrupted' if got else 'alive'}, the server says "
                f"{'interrupted' if expected else 'alive'}: "
                f"{explain_verdict(events, now, timeout)}."
                f"\nThe last events (seconds since the session began): {shown}")
    return f"all {len(cases)} timelines judged as the streaming server judges them"


class _StudentMonitor(HeartbeatMonitor):
    """A session's heartbeat monitor that asks the student's verdict (the package's rule
    again if that raises)."""

    def __init__(self, monitor: HeartbeatMonitor, verdict: Verdict | None) -> None:
        vars(self).update(vars(monitor))
        self.verdict = verdict

    def _check(self, now: float) -> bool:
        if self.verdict is None or self.detected_at is not None:
            return super()._check(now)
        events = [(e.time - self._created, e.kind) for e in self.log]
        try:
            if self.verdict(events, now - self._created, self.timeout):
                self.detected_at = now
                self.log.append(LogEvent(now, "interrupted", None))
        except Exception:
            self.verdict = None
        return self.detected_at is not None


def use_verdict(stage: Any, verdict: Verdict) -> None:
    """The stage's streaming server judges its sessions, new ones too, with ``verdict``."""
    streaming = stage.system.streaming

    def swap() -> None:  # on the server's loop, which owns the sessions
        for session in streaming.sessions.values():
            if not isinstance(session.monitor, _StudentMonitor):
                session.monitor = _StudentMonitor(session.monitor, verdict)

    stage.on_tick.append(lambda: stage.stopped or streaming.call(swap))


def reference_fragments(nal: bytes, mtu: int) -> list[bytes]:
    """The package's FU-A payloads for a NAL unit larger than ``mtu`` (RFC 6184 §5.8)."""
    return [payload for payload, _ in H264Packetizer(mtu).packetize([nal])]


def fragment_problem(nal: bytes, mtu: int, payloads: list[bytes]) -> str | None:
    """What makes ``payloads`` wrong as the FU-A fragments of ``nal``, in words; or None."""
    bits = f"{nal[0] >> 5:03b}"
    for n, p in enumerate(payloads, 1):
        where, first, last = f"packet {n} of {len(payloads)}", n == 1, n == len(payloads)
        if not 3 <= len(p) <= mtu:
            return f"{where} has {len(p)} bytes: an FU-A packet has 2 header bytes, at least " \
                   f"1 byte of the NAL unit and at most the MTU, {mtu}, in all"
        if nal_type(p) != H264_FU_A or p[0] >> 5 != nal[0] >> 5:
            return f"{where}: the FU indicator is {p[0]:08b}; it must be the NAL unit's F " \
                   f"and NRI bits ({bits}) then type 28 (11100)"
        if bool(p[1] & 0x80) != first or bool(p[1] & 0x40) != last or p[1] & 0x20:
            return f"{where}: the FU header's S, E, R bits are {p[1] >> 5:03b}; S is set " \
                   f"on the first fragment only, E on the last only, R never"
        if p[1] & 0x1F != nal_type(nal):
            return f"{where}: the FU header's type is {p[1] & 0x1F}, the NAL unit's is " \
                   f"{nal_type(nal)}"
    if not payloads:
        return "no packets at all"
    data = b"".join(p[2:] for p in payloads)
    if data != nal[1:]:
        at = next((i for i, (a, b) in enumerate(zip(data, nal[1:], strict=False)) if a != b), None)
        return (f"put back together, the fragments carry {len(data)} bytes; they must carry "
                f"the NAL unit without its header byte, {len(nal) - 1} bytes"
                + (f" (they differ from byte {at} on)" if at is not None else ""))
    return None


def fragment_cases(media: Path | None) -> Iterable[tuple[bytes, int]]:
    """(NAL unit, mtu): made-up units sized around multiples of the fragment size, then the
    first units of a real clip."""
    for header, mtu in ((0x65, 100), (0x41, 100), (0x01, 600), (0x06, 1400)):
        for size in (mtu + 1, 2 * (mtu - 2) + 1, 2 * (mtu - 2) + 2, 5 * mtu + 17):
            yield bytes([header]) + bytes(random.Random(size).randbytes(size - 1)), mtu
    clip = MediaFile(media) if media is not None else None
    video = next((t.index for t in clip.tracks if t.kind == "video"), None) if clip else None
    for unit, _ in zip(clip.access_units() if clip else (), range(12), strict=False):
        yield from ((nal, 500) for nal in unit.nals if unit.track == video and len(nal) > 500)


def check_fragments(fragment: Fragmenter, media: Path | None = None) -> str:
    """Check ``fragment`` on made-up and real NAL units; raise on the first broken packet."""
    cases = list(fragment_cases(media))
    for nal, mtu in cases:
        problem = fragment_problem(nal, mtu, list(fragment(nal, mtu)))
        if problem:
            raise ExerciseFailed(f"NAL unit of {len(nal)} bytes (type {nal_type(nal)}, NRI "
                                 f"{(nal[0] >> 5) & 3}), MTU {mtu}: {problem}")
    return f"all {len(cases)} NAL units fragmented as RFC 6184 §5.8 asks"


class StudentPacketizer(H264Packetizer):
    """The package's packetizer with the student's FU-A fragmentation."""

    def __init__(self, mtu: int, fragment: Fragmenter) -> None:
        super().__init__(mtu)
        self.fragment = fragment

    def _fragment(self, nal: bytes) -> list[bytes]:
        return list(self.fragment(nal, self.mtu))


def use_fragmenter(stage: Any, fragment: Fragmenter, mtu: int = 500) -> None:
    """The stage's streaming server sends new sessions' video with ``fragment``."""
    stage.config.mtu = mtu
    stage.system.streaming.packetizer = lambda size: StudentPacketizer(size, fragment)


class Arrival(NamedTuple):
    """A BookMarkReq as the portal receives it (times in seconds)."""
    name: str  # a retry repeats the request it retries, name and all
    content_bm: float
    token_issued: float  # when the portal signed that play's token
    interrupted_at: float  # when the streaming server declared the interruption


Rule = Callable[[Arrival | None, Arrival], bool]  # (current, arriving) -> the new current
A, B = Arrival("A", 55.0, 100.0, 160.0), Arrival("B", 40.0, 200.0, 260.0)
SCENARIOS = {
    "rewatched from the start, so B's position is smaller": [A, B],
    "A delivered late (its first attempts failed)": [B, A],
    "A retried after B": [A, B, A],
    "one play, two interruptions, the later one delivered first":
        [Arrival("A2", 70.0, 100.0, 190.0), A],
    "an old phone's play interrupted after the new one's":
        [B, Arrival("old", 90.0, 100.0, 300.0)],
    "B stopped at 0: nothing worth resuming": [A, Arrival("B0", 0.0, 200.0, 210.0)],
}


def portal_keeps(arrivals: list[Arrival]) -> list[str | None]:
    """The bookmark the portal's store keeps after each arrival: the reference."""
    kept: list[str | None] = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        for n, a in enumerate(arrivals):
            store.record_bookmark(BookmarkWrite(
                "alice", "sample", a.content_bm, a.name, "ls-1", a.token_issued,
                a.interrupted_at, 1000.0 + n, f"nonce-{a.name}", a.name))
            current = store.bookmark("alice", "sample")
            kept.append(current.encrypt_token if current else None)
        store.close()
    return kept


def check_newer_wins(rule: Rule) -> str:
    """Replay the scenarios through ``rule`` and the portal's store; raise where they part."""
    for title, arrivals in SCENARIOS.items():
        current: Arrival | None = None
        for step, expected in zip(arrivals, portal_keeps(arrivals), strict=True):
            current = step if rule(current, step) else current
            if (current.name if current else None) != expected:
                told = "; ".join(f"{a.name}: ContentBM {a.content_bm:g} s, token issued at "
                                 f"{a.token_issued:g} s, interrupted at {a.interrupted_at:g} s"
                                 for a in dict.fromkeys(arrivals))
                order = ", ".join(a.name for a in arrivals)
                raise ExerciseFailed(
                    f"{title} ({told}; they arrive {order}): once {step.name} has arrived the "
                    f"portal keeps {expected or 'no bookmark'}, yours keeps "
                    f"{current.name if current else 'no bookmark'}")
    return f"all {len(SCENARIOS)} scenarios keep the bookmark the portal keeps"
