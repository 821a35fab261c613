"""The exercise notebooks' checks and hooks: course material beside the notebooks, not part
of the system. A student writes a piece of the real system; a check compares it with the
package's own piece (the heartbeat verdict of claims 2 and 8, RFC 6184 §5.8 FU-A
fragmentation, the portal's newer-bookmark-wins rule of claims 1 and 3) on generated cases
and says in words where it goes wrong; a hook lets the live streaming server run it."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from rtsp_resume.heartbeat import HeartbeatMonitor, LogEvent
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
    """(events, now, timeout): a terminal answering until a cut, maybe sending RTCP, maybe
    heard again later, asked around the timeout (times in 1/64 s: sums stay exact)."""
    rng, cases = random.Random(seed), []
    for _ in range(count):
        timeout, interval = rng.choice((1.0, 1.5, 3.0)), rng.choice((0.25, 0.5, 1.0))
        cut, back, rtcp = rng.randrange(320) / 64, rng.choice((None, 2.0, 6.0)), rng.random()
        events: list[Event] = []
        for n in range(1, int(16 / interval)):
            sent, rtt = n * interval, rng.randrange(1, 8) / 64
            events.append((sent, "sent"))
            if sent + rtt < cut or (back is not None and sent + rtt > cut + back):
                events.append((sent + rtt, "answered"))
            events += [(sent + 0.125, "life")] if rtcp < 0.4 and n % 3 == 0 else []
        last = max([0.0] + [t for t, kind in events if kind != "sent" and t < cut])
        now = last + timeout + rng.choice((-1 / 64, 0.0, 0.0, 1 / 64, 2.0, 5.0))
        cases.append((sorted(e for e in events if e[0] <= now), now, timeout))
    return cases


def explain_verdict(events: list[Event], now: float, timeout: float) -> str:
    """The reference's reasoning about one case, in words."""
    life = [0.0] + [t for t, kind in events if kind != "sent"]
    gap = next((a for a, b in zip(life, life[1:], strict=False) if b - a >= timeout), None)
    if gap is not None:
        return (f"nothing was heard from {gap:g} s for {timeout:g} s or more, so the session was "
                "interrupted then, and a verdict is final: later signs of life do not revive it")
    sent = sum(kind == "sent" and t > life[-1] for t, kind in events)
    return (f"the last sign of life (an answer, RTCP, or the session's start) came at "
            f"{life[-1]:g} s: {now - life[-1]:g} s of silence against a timeout of {timeout:g} s"
            f" (interrupted from silence >= timeout); the {sent} heartbeat(s) sent since then "
            "are no sign of life")


def check_verdict(verdict: Verdict) -> str:
    """``verdict`` against the reference on generated timelines; raises at the first that
    they judge differently, with the reason in words."""
    for events, now, timeout in (cases := heartbeat_cases()):
        if bool(got := verdict(list(events), now, timeout)) != (
                expected := reference_verdict(events, now, timeout)):
            said = {True: "interrupted", False: "alive"}
            raise ExerciseFailed(
                f"at now={now:g} s, timeout {timeout:g} s, you say {said[bool(got)]}, the server "
                f"says {said[expected]}: {explain_verdict(events, now, timeout)}.\nThe last "
                f"events: {', '.join(f'{kind} {t:g}' for t, kind in events[-12:])}")
    return f"all {len(cases)} timelines judged as the streaming server judges them"


class _StudentMonitor(HeartbeatMonitor):
    """A session's monitor that asks the student's verdict (its own once that raises)."""

    def __init__(self, monitor: HeartbeatMonitor, verdict: Verdict | None) -> None:
        vars(self).update(vars(monitor))
        self.verdict = verdict

    def _check(self, now: float) -> bool:
        if self.verdict is None or self.detected_at is not None:
            return super()._check(now)
        try:
            if self.verdict([(e.time - self._created, e.kind) for e in self.log],
                            now - self._created, self.timeout):
                self.detected_at = now
                self.log.append(LogEvent(now, "interrupted", None))
        except Exception:  # a student's bug must not stop the server: the package's rule then
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
    """The package's FU-A payloads for a NAL unit larger than ``mtu``."""
    return [payload for payload, _ in H264Packetizer(mtu).packetize([nal])]


def fragment_problem(nal: bytes, mtu: int, payloads: list[bytes]) -> str | None:
    """What makes ``payloads`` wrong as the FU-A fragments of ``nal``, in words; or None."""
    if not payloads:
        return "no packets at all"
    for n, p in enumerate(payloads, 1):
        where, last = f"packet {n} of {len(payloads)}", n == len(payloads)
        if not 3 <= len(p) <= mtu:
            return f"{where} has {len(p)} bytes: 2 header bytes and 1 to {mtu - 2} of data"
        if nal_type(p) != H264_FU_A or p[0] >> 5 != nal[0] >> 5:
            return (f"{where}: the FU indicator is {p[0]:08b}; it must be the NAL unit's F "
                    f"and NRI bits ({nal[0] >> 5:03b}) then type 28 (11100)")
        if p[1] >> 5 != (4 if n == 1 else 0) | (2 if last else 0) or p[1] & 0x1F != nal_type(nal):
            return (f"{where}: the FU header is {p[1]:08b}; it must be S (first fragment "
                    f"only), E (last only), R=0, then the NAL unit's type {nal_type(nal):05b}")
    if (data := b"".join(p[2:] for p in payloads)) != nal[1:]:
        return (f"put back together, the fragments carry {len(data)} bytes; they must carry "
                f"the NAL unit without its header byte, {len(nal) - 1} bytes")
    return None


def check_fragments(fragment: Fragmenter) -> str:
    """``fragment`` on NAL units sized around multiples of the fragment size, with each
    NRI; raises at the first broken packet, saying what is wrong with it."""
    cases = [(bytes([header]) + random.Random(size).randbytes(size - 1), mtu)
             for header, mtu in ((0x65, 100), (0x41, 100), (0x01, 600), (0x06, 1400))
             for size in (mtu + 1, 2 * mtu - 3, 2 * mtu - 2, 5 * mtu + 17)]
    for nal, mtu in cases:
        if problem := fragment_problem(nal, mtu, list(fragment(nal, mtu))):
            raise ExerciseFailed(f"NAL unit of {len(nal)} bytes (type {nal_type(nal)}, NRI "
                                 f"{nal[0] >> 5 & 3}), MTU {mtu}: {problem}")
    return f"all {len(cases)} NAL units fragmented as RFC 6184 §5.8 asks"


class StudentPacketizer(H264Packetizer):
    """The package's packetizer with the student's FU-A fragmentation."""

    def __init__(self, mtu: int, fragment: Fragmenter) -> None:
        super().__init__(mtu)
        self._fragment = lambda nal: list(fragment(nal, mtu))  # type: ignore[method-assign]


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


A, B = Arrival("A", 55.0, 100.0, 160.0), Arrival("B", 40.0, 200.0, 260.0)
SCENARIOS = {  # title: the requests in the order they arrive
    "B, played again from the start, stopped earlier than A": [A, B],
    "A delivered late (its first attempts failed)": [B, A],
    "A retried after B": [A, B, A],
    "one play, two interruptions, the later one first": [Arrival("A2", 70.0, 100.0, 190.0), A],
    "an old phone's play interrupted after the new one's": [B, Arrival("old", 90, 100, 300)],
    "B stopped at 0: nothing worth resuming": [A, Arrival("B0", 0.0, 200.0, 210.0)],
}


def portal_keeps(arrivals: list[Arrival]) -> list[str | None]:
    """The bookmark the portal's store keeps after each arrival: the reference."""
    kept: list[str | None] = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder))
        for n, a in enumerate(arrivals):  # the name stands for token, nonce and body hash
            store.record_bookmark(BookmarkWrite("alice", "sample", a.content_bm, a.name, "ls",
                                                a.token_issued, a.interrupted_at, n, *[a.name] * 2))
            kept.append(getattr(store.bookmark("alice", "sample"), "encrypt_token", None))
        store.close()
    return kept


def check_newer_wins(rule: Callable[[Arrival | None, Arrival], bool]) -> str:
    """``rule(current, arriving)`` (True: the arriving one becomes the bookmark) replayed
    against the portal's store; raises at the first scenario where they part."""
    for title, arrivals in SCENARIOS.items():
        current: Arrival | None = None
        for step, expected in zip(arrivals, portal_keeps(arrivals), strict=True):
            current = step if rule(current, step) else current
            if (mine := current.name if current else None) != expected:
                told = "; ".join(f"{a.name}: ContentBM {a.content_bm:g} s, token issued at "
                                 f"{a.token_issued:g} s, interrupted at {a.interrupted_at:g} s"
                                 for a in dict.fromkeys(arrivals))
                raise ExerciseFailed(
                    f"{title} ({told}; arriving {', '.join(a.name for a in arrivals)}): once "
                    f"{step.name} has arrived the portal keeps {expected}, yours keeps {mine}")
    return f"all {len(SCENARIOS)} scenarios keep the bookmark the portal keeps"
