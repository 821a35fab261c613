"""Where the viewer is: play position estimators for the reverse bookmark, pure logic.

The bookmark needs the play position (claim 1's "program play time point", the
ContentBM). Two estimates are kept from what the server's sending loop reports:
``frames_sent()``, the embodiment's literal rule (PLAY start + video frames sent / fps),
which overshoots by what was sent into a dead link or sat unshown in the player; and
``confirmed()`` (the default), a position the terminal provably reached minus a playout
allowance. Proof of delivery (``evidence``): over TCP, a heartbeat answer that came behind
the media on the same byte stream (``mark_answered``); over UDP, an RTCP receiver report
(RFC 3550 §6.4.2) or, as many players send none for long, a heartbeat answer (``reading_at``).

Delivered is a prefix of the packets in sending order, hence of the frames in decode
order; with B-frames that is not presentation order. So the position reached is the
contiguous presentation frontier: the largest pts P such that every frame presented at
or before P since the PLAY was delivered (frames at most 1.5 frame durations apart are
contiguous). A wider gap is crossed once no frame can still fill it: H.264 lets at most
16 frames precede a frame in decode order and follow it in presentation order. Memory
stays bounded (at most ``max_pending`` undelivered frames are remembered)."""

from __future__ import annotations

import bisect
import math
from collections import deque

from rtsp_resume.rtp import unwrap_sequence

MAX_REORDER = 16  # H.264 Annex A: max_num_reorder_frames is at most the 16-frame DPB
_MAX_MARKS = 256  # marks remembered: minutes of heartbeats at the default interval


def format_clock(seconds: float) -> str:
    """A play position as people read it: ``12.43`` -> ``0:12.4``, ``3725`` -> ``1:02:05.0``."""
    whole, tenth = divmod(round(max(0.0, seconds) * 10), 10)
    hours, rest = divmod(whole, 3600)
    minutes = f"{hours}:{rest // 60:02d}" if hours else f"{rest // 60}"
    return f"{minutes}:{rest % 60:02d}.{tenth}"


class PositionEstimator:
    """Play position of one session's video stream, from sent frames and delivery proofs.
    ``fps``: the video frame rate (for ``frames_sent`` and the contiguity of presentation
    times); ``allowance``: seconds the player holds but has not shown yet."""

    def __init__(self, fps: float, allowance: float = 0.5, *, max_pending: int = 1 << 12) -> None:
        if not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"invalid frame rate {fps!r}")
        if not allowance >= 0:
            raise ValueError(f"invalid allowance {allowance!r}")
        self.fps, self.allowance, self.max_pending = fps, allowance, max_pending
        # Unwrapped sequence numbers: last sent, highest sent, delivered up to (-1: none).
        self._last_seq: int | None = None
        self.highest_sent_seq = -1
        self.delivered_seq = -1
        self._marks: deque[tuple[int, int]] = deque(maxlen=_MAX_MARKS)  # (key, seq) in order
        self._sent_at: deque[tuple[float, int]] = deque(maxlen=max_pending)  # (when, seq)
        self.play(0.0)

    def play(self, start: float) -> None:
        """A PLAY began at media time ``start`` (the start answered in its Range): earlier
        frames no longer count; the numbering goes on. Not for a resume after PAUSE."""
        self.start = start
        self.frames_since_play = 0
        # Sent but not known delivered, in decode order: (last unwrapped seq, pts).
        self._pending: deque[tuple[int, float]] = deque()
        # Undelivered frames forgotten to bound memory: up to which seq, lowest pts.
        self._forgotten_until: int | None = None
        self._forgotten_min_pts = math.inf
        # Delivered presentation times above the frontier, sorted, waiting for a gap.
        self._pool: list[float] = []
        self._frontier: float | None = None
        self.evidence = "none"  # nothing proven since the PLAY: the position is unknown

    def frame_sent(self, pts: float, first_seq: int, last_seq: int, now: float = math.inf) -> None:
        """A video access unit went out at ``now`` in RTP packets ``first_seq..last_seq``
        (16-bit, may wrap). Frames come in decode order; ``pts`` need not increase."""
        first = unwrap_sequence(first_seq & 0xFFFF, self._last_seq)
        last = self._last_seq = first + ((last_seq - first_seq) & 0xFFFF)
        self._sent_at.append((now, last))
        self.highest_sent_seq = max(self.highest_sent_seq, last)
        self.frames_since_play += 1
        # Frames presented before the PLAY start (the rest of the GOP before a seek
        # target) are not part of what the viewer is asked to see.
        if pts < self.start - 0.5 / self.fps:
            return
        if last <= self.delivered_seq:
            self._add_delivered(pts)
            return
        self._pending.append((last, pts))
        if len(self._pending) > self.max_pending:
            seq, old_pts = self._pending.popleft()
            self._forgotten_until = seq
            self._forgotten_min_pts = min(self._forgotten_min_pts, old_pts)

    def mark(self, key: int) -> None:
        """Remember everything sent so far under ``key`` (the CSeq of a heartbeat just
        written to the TCP connection, behind the media)."""
        self._marks.append((key, self.highest_sent_seq))

    def mark_answered(self, key: int) -> None:
        """The terminal answered the heartbeat marked ``key``: over TCP it read every
        packet sent before it. Unknown or outdated keys change nothing."""
        while any(old_key == key for old_key, _ in self._marks):
            old_key, seq = self._marks.popleft()
            if old_key == key:
                self._deliver(seq, "tcp-heartbeat")

    def receiver_report(self, extended_highest_seq: int) -> None:
        """An RTCP receiver report for the video stream: packets up to this number
        arrived. Only its low 16 bits are trusted, placed at the latest sent packet they
        can mean, so a report never claims more than was sent."""
        if self._last_seq is not None:
            high = self.highest_sent_seq
            self._deliver(high - ((high - extended_highest_seq) & 0xFFFF), "receiver-report")

    def reading_at(self, when: float) -> None:
        """The terminal was reading at ``when`` (UDP): what was sent by then has arrived."""
        proven = (seq for sent, seq in self._sent_at if sent <= when)
        self._deliver(max(proven, default=-1), "heartbeat-answer")

    def frames_sent(self) -> float:
        """The literal rule: PLAY start + video frames sent since then / fps."""
        return self.start + self.frames_since_play / self.fps

    def received(self) -> float:
        """The contiguous presentation frontier the terminal provably has (no allowance),
        never below the PLAY start."""
        self._advance()
        return self.start if self._frontier is None else max(self.start, self._frontier)

    def confirmed(self) -> float:
        """``received()`` minus the allowance, kept between the PLAY start and
        ``frames_sent()``: the position to store in a bookmark."""
        return max(self.start, min(self.received() - self.allowance, self.frames_sent()))

    def _deliver(self, seq: int, evidence: str) -> None:
        if seq <= self.delivered_seq:
            return  # old news: an older mark or report, never a regression
        self.delivered_seq = seq
        while self._pending and self._pending[0][0] <= seq:
            self.evidence = evidence  # the kind of proof that last delivered a frame
            self._add_delivered(self._pending.popleft()[1])
        if self._forgotten_until is not None and self._forgotten_until <= seq:
            self._forgotten_until, self._forgotten_min_pts = None, math.inf
        self._advance()

    def _add_delivered(self, pts: float) -> None:
        if self._frontier is None or pts > self._frontier:
            bisect.insort(self._pool, pts)

    def _advance(self) -> None:
        """Move the frontier over delivered frames as far as contiguity allows; never
        past a frame still undelivered."""
        if not self._pool:
            return
        barrier = min(min((pts for _, pts in self._pending), default=math.inf),
                      self._forgotten_min_pts)
        previous = self.start if self._frontier is None else self._frontier
        taken = 0
        for pts in self._pool:
            if pts >= barrier or (pts > previous + 1.5 / self.fps and not self._gap_closed(pts)):
                break
            previous = self._frontier = max(previous, pts)
            taken += 1
        del self._pool[:taken]

    def _gap_closed(self, upper: float) -> bool:
        """No future frame can be presented below ``upper``: more than MAX_REORDER frames
        above it were already sent."""
        above = len(self._pool) - bisect.bisect_right(self._pool, upper)
        return above + sum(1 for _, pts in self._pending if pts > upper) > MAX_REORDER
