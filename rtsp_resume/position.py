"""Where the viewer is: play position estimators for the reverse bookmark, pure logic.

When a session is interrupted the bookmark needs a play position (the patent's
ContentBM). Two estimates are kept from what the server's sending loop reports:

``frames_sent()``
    The patent embodiment's literal rule: the PLAY start plus the video frames sent
    since that PLAY, counted and divided by the frame rate. It overshoots: frames sent
    after the link broke, and those sitting in the player's buffer, were never seen.

``confirmed()`` (the default for bookmarks)
    A position the terminal provably reached, minus a playout allowance for what was
    received but not shown yet. Proof comes from two sources:

    - over TCP interleaved, an answer to a heartbeat: the heartbeat travelled on the
      same byte stream after the media, so the client had read every packet sent before
      it (``mark`` when the heartbeat is written, ``mark_answered`` when it is answered);
    - over UDP, an RTCP receiver report: its extended highest sequence number says up to
      which packet the media arrived (``receiver_report``).

    Either way "delivered" is a prefix of the packets in sending order, hence a prefix of
    the frames in decode order. With B-frames, decode order is not presentation order:
    a delivered P-frame at 0.12 s is of no use while the B-frames at 0.04 and 0.08 s are
    still missing. So the position reached is the contiguous presentation frontier: the
    largest pts P such that every frame presented at or before P (since the PLAY) was
    delivered. Two frames are contiguous when their pts are at most 1.5 frame durations
    apart. A larger gap (a variable frame rate, a frame missing from the source) is only
    crossed once no frame can still fill it: H.264 lets at most 16 frames precede a
    frame in decode order and follow it in presentation order, so once more than 16
    frames above the gap have been sent, none will arrive inside it.

Sequence numbers are the 16-bit RTP ones of the video stream; they are unwrapped here
into a running count that continues across PLAYs (seeks keep the RTP numbering going).
Memory stays bounded: delivered frames are folded into the frontier, heartbeat marks
older than the newest answered one are dropped, and at most ``max_pending`` undelivered
frames are remembered (older ones are forgotten, and the frontier waits behind them
until they are known to be delivered).
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque

# H.264 (ITU-T H.264 Annex A): max_num_reorder_frames cannot exceed the 16 frames of the
# decoded picture buffer.
MAX_REORDER = 16
# Marks remembered at once: a minute of heartbeats at the default interval, and more.
_MAX_MARKS = 256


def format_clock(seconds: float) -> str:
    """A play position as people read it: ``12.43`` -> ``0:12.4``, ``3725`` -> ``1:02:05.0``.

    The one place the project writes m:ss.d (the portal's bookmark button, BookMarkResp's
    ResultDesc, the demo and the widgets all use it).
    """
    tenths = round(max(0.0, seconds) * 10)
    whole, tenth = divmod(tenths, 10)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}.{tenth}"
    return f"{minutes}:{secs:02d}.{tenth}"


class PositionEstimator:
    """Play position of one session's video stream, from sent frames and delivery proofs.

    ``fps``: the video frame rate (for the literal ``frames_sent`` rule and the
    contiguity of presentation times). ``allowance``: seconds subtracted from the
    provably reached position for what the player holds but has not shown yet.
    """

    def __init__(self, fps: float, allowance: float = 0.5, *, max_pending: int = 1 << 12) -> None:
        if not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"invalid frame rate {fps!r}")
        if not allowance >= 0:
            raise ValueError(f"invalid allowance {allowance!r}")
        self.fps = fps
        self.allowance = allowance
        self.max_pending = max_pending
        self.start = 0.0
        self.frames_since_play = 0
        # Unwrapped sequence numbers: the newest sent, and the newest known delivered.
        self._last_seq16: int | None = None
        self._last_seq = -1  # _last_seq16 unwrapped
        self._highest_sent = -1
        self._delivered = -1
        self._marks: OrderedDict[int, int] = OrderedDict()
        self._reset_frames()

    def _reset_frames(self) -> None:
        # Sent but not known delivered, in decode order: (last unwrapped seq, pts).
        self._pending: deque[tuple[int, float]] = deque()
        # Undelivered frames forgotten to bound memory: up to which seq, lowest pts.
        self._forgotten_until: int | None = None
        self._forgotten_min_pts = math.inf
        # Delivered presentation times above the frontier, sorted, waiting for a gap.
        self._pool: list[float] = []
        self._frontier: float | None = None

    # ------------------------------------------------------------------ inputs

    def play(self, start: float) -> None:
        """A PLAY began at media time ``start`` (the actual start the server answered
        in its Range). Earlier frames no longer count; the sequence numbering goes on.

        Call it when the position jumps (the first PLAY, a seek), not when a PLAY
        resumes after PAUSE: that continues the same timeline."""
        self.start = start
        self.frames_since_play = 0
        self._reset_frames()

    def frame_sent(self, pts: float, first_seq: int, last_seq: int) -> None:
        """A whole video access unit went out in RTP packets ``first_seq..last_seq``
        (16-bit, may wrap). Frames come in decode order; ``pts`` need not increase."""
        first = self._unwrap(first_seq & 0xFFFF)
        last = first + ((last_seq - first_seq) & 0xFFFF)
        self._last_seq16, self._last_seq = last_seq & 0xFFFF, last
        self._highest_sent = max(self._highest_sent, last)
        self.frames_since_play += 1
        # Frames presented before the PLAY start (the rest of the GOP before a seek
        # target) are not part of what the viewer is asked to see.
        if pts < self.start - 0.5 / self.fps:
            return
        if last <= self._delivered:
            self._add_delivered(pts)
            return
        self._pending.append((last, pts))
        if len(self._pending) > self.max_pending:
            seq, old_pts = self._pending.popleft()
            self._forgotten_until = seq
            self._forgotten_min_pts = min(self._forgotten_min_pts, old_pts)

    def mark(self, key: int) -> None:
        """Remember everything sent so far under ``key`` (e.g. the CSeq of a heartbeat
        just written to the TCP connection, behind the media)."""
        self._marks[key] = self._highest_sent
        self._marks.move_to_end(key)
        while len(self._marks) > _MAX_MARKS:
            self._marks.popitem(last=False)

    def mark_answered(self, key: int) -> None:
        """The terminal answered the heartbeat marked ``key``: over TCP it read every
        packet sent before it. Unknown or outdated keys change nothing."""
        if key not in self._marks:
            return
        while self._marks:
            old_key, seq = self._marks.popitem(last=False)
            if old_key == key:
                self._deliver(seq)
                return

    def receiver_report(self, extended_highest_seq: int) -> None:
        """An RTCP receiver report for the video stream (RFC 3550 §6.4.2): packets up to
        this sequence number arrived. Only the low 16 bits are trusted; they are placed
        at the latest sent packet they can mean, so a report never claims more than was
        sent whatever its cycle count says."""
        if self._last_seq16 is None:
            return
        low = extended_highest_seq & 0xFFFF
        self._deliver(self._highest_sent - ((self._highest_sent - low) & 0xFFFF))

    # ----------------------------------------------------------------- outputs

    def frames_sent(self) -> float:
        """The literal rule: PLAY start + video frames sent since then / fps."""
        return self.start + self.frames_since_play / self.fps

    def received(self) -> float:
        """The contiguous presentation frontier the terminal provably has (no
        allowance), never below the PLAY start."""
        self._advance()
        if self._frontier is None:
            return self.start
        return max(self.start, self._frontier)

    def confirmed(self) -> float:
        """``received()`` minus the allowance, kept between the PLAY start and
        ``frames_sent()``: the position to store in a bookmark."""
        return max(self.start, min(self.received() - self.allowance, self.frames_sent()))

    @property
    def highest_sent_seq(self) -> int:
        """Unwrapped sequence number of the newest packet sent (-1 before any)."""
        return self._highest_sent

    @property
    def delivered_seq(self) -> int:
        """Unwrapped sequence number up to which delivery is proven (-1: none)."""
        return self._delivered

    # ---------------------------------------------------------------- internals

    def _unwrap(self, seq16: int) -> int:
        if self._last_seq16 is None:
            return seq16
        delta = (seq16 - self._last_seq16) & 0xFFFF
        if delta >= 0x8000:  # a step backwards: tolerated, never expected
            delta -= 0x10000
        return self._last_seq + delta

    def _deliver(self, seq: int) -> None:
        if seq <= self._delivered:
            return  # old news: an older mark or report, never a regression
        self._delivered = seq
        while self._pending and self._pending[0][0] <= seq:
            self._add_delivered(self._pending.popleft()[1])
        if self._forgotten_until is not None and self._forgotten_until <= seq:
            self._forgotten_until = None
            self._forgotten_min_pts = math.inf
        self._advance()

    def _add_delivered(self, pts: float) -> None:
        if self._frontier is None or pts > self._frontier:
            bisect.insort(self._pool, pts)

    def _advance(self) -> None:
        """Move the frontier over delivered frames as far as contiguity allows."""
        if not self._pool:
            return
        # No frame still undelivered can be passed.
        barrier = min((pts for _, pts in self._pending), default=math.inf)
        barrier = min(barrier, self._forgotten_min_pts)
        previous = self.start if self._frontier is None else self._frontier
        step = 1.5 / self.fps
        taken = 0
        for pts in self._pool:
            if pts >= barrier:
                break
            if pts > previous + step and not self._gap_closed(pts):
                break
            previous = max(previous, pts)
            self._frontier = previous
            taken += 1
        del self._pool[:taken]

    def _gap_closed(self, upper: float) -> bool:
        """Whether no future frame can be presented below ``upper``: more than
        MAX_REORDER frames above it were already sent."""
        above = len(self._pool) - bisect.bisect_right(self._pool, upper)
        if above > MAX_REORDER:
            return True
        above += sum(1 for _, pts in self._pending if pts > upper)
        return above > MAX_REORDER
