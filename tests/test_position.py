"""Play position estimators (claim 1's play time point): what was sent, what was reached."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtsp_resume.position import PositionEstimator

FPS = 25.0
FRAME = 1 / FPS


def decode_order(count: int, spans: list[int]) -> list[int]:
    """Display indices of ``count`` frames in decode order: an I-frame, then for each
    mini-GOP its anchor (P) first and the B-frames it brackets after it. ``spans`` gives
    the anchor distances in turn (1 means no B-frame), the B-frames of one mini-GOP in
    hierarchical order (middle first), as x264's b-pyramid does."""
    order = [0]
    anchor = 0
    i = 0
    while anchor < count - 1:
        nxt = min(anchor + spans[i % len(spans)], count - 1)
        i += 1
        order.append(nxt)
        between = list(range(anchor + 1, nxt))
        if len(between) >= 3:
            middle = between[len(between) // 2]
            between = [middle] + [b for b in between if b != middle]
        order.extend(between)
        anchor = nxt
    return order


class Sender:
    """Plays the server's sending loop: frames in decode order, each split into a few
    RTP packets with 16-bit sequence numbers."""

    def __init__(self, estimator: PositionEstimator, seq: int, start: float = 0.0) -> None:
        self.estimator = estimator
        self.seq = seq
        self.start = start
        self.sent: list[tuple[int, int]] = []  # (display index, last 16-bit seq)

    def send(self, index: int, packets: int = 2) -> int:
        first = self.seq
        last = (first + packets - 1) & 0xFFFF
        self.seq = (last + 1) & 0xFFFF
        self.estimator.frame_sent(self.start + index * FRAME, first, last)
        self.sent.append((index, last))
        return last


def frontier_truth(delivered_indices: list[int], start: float) -> float:
    """Where the viewer can be: after the longest run 0..k of delivered frames."""
    have = set(delivered_indices)
    k = -1
    while k + 1 in have:
        k += 1
    return start + max(k, 0) * FRAME


def test_frames_sent_is_the_literal_rule() -> None:
    estimator = PositionEstimator(FPS)
    sender = Sender(estimator, seq=100)
    for index in decode_order(50, [3]):
        sender.send(index)
    assert estimator.frames_sent() == pytest.approx(50 / FPS)
    estimator.play(12.0)
    assert estimator.frames_sent() == 12.0
    sender.start = 12.0
    for index in range(10):
        sender.send(index)
    assert estimator.frames_sent() == pytest.approx(12.0 + 10 / FPS)


def test_b_frames_frontier_is_contiguous_not_max_pts() -> None:
    # I0 P3 B1 B2 P6 B4 B5 P9 B7 B8 ...
    estimator = PositionEstimator(FPS, allowance=0.0)
    sender = Sender(estimator, seq=1000)
    order = decode_order(30, [3])
    assert order[:7] == [0, 3, 1, 2, 6, 4, 5]
    for n, index in enumerate(order):
        sender.send(index)
        estimator.mark(n)
    # The terminal read I0 and P3 only: P3 cannot be shown before B1 and B2.
    estimator.mark_answered(1)
    assert estimator.received() == pytest.approx(0.0)
    estimator.mark_answered(2)  # + B1
    assert estimator.received() == pytest.approx(1 * FRAME)
    estimator.mark_answered(3)  # + B2: now 0..3 are all there
    assert estimator.received() == pytest.approx(3 * FRAME)
    estimator.mark_answered(4)  # + P6: B4, B5 missing
    assert estimator.received() == pytest.approx(3 * FRAME)
    estimator.mark_answered(6)
    assert estimator.received() == pytest.approx(6 * FRAME)


@given(
    spans=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    count=st.integers(1, 120),
    first_seq=st.integers(0, 0xFFFF),
    packets=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    answers=st.lists(st.integers(0, 119), max_size=12),
    allowance=st.sampled_from([0.0, 0.5]),
)
def test_frontier_matches_the_truth_for_any_gop(
    spans: list[int],
    count: int,
    first_seq: int,
    packets: list[int],
    answers: list[int],
    allowance: float,
) -> None:
    estimator = PositionEstimator(FPS, allowance=allowance)
    sender = Sender(estimator, seq=first_seq)
    order = decode_order(count, spans)
    sent = 0
    best = -1
    for answer in answers:
        # Send a few more frames, marking after each, then answer one of the marks.
        for n in range(sent, min(count, sent + 10)):
            sender.send(order[n], packets[n % len(packets)])
            estimator.mark(n)
        sent = min(count, sent + 10)
        if answer < sent:
            estimator.mark_answered(answer)
            best = max(best, answer)
        truth = frontier_truth(order[: best + 1], 0.0)
        assert estimator.received() == pytest.approx(truth)
        confirmed = estimator.confirmed()
        assert 0.0 <= confirmed <= estimator.frames_sent()
        assert confirmed == pytest.approx(max(0.0, truth - allowance))


def test_old_mark_answered_after_a_newer_one_does_not_regress() -> None:
    estimator = PositionEstimator(FPS, allowance=0.0)
    sender = Sender(estimator, seq=5)
    for index in range(40):
        sender.send(index)
        estimator.mark(100 + index)
    estimator.mark_answered(130)
    reached = estimator.received()
    assert reached == pytest.approx(30 * FRAME)
    estimator.mark_answered(110)  # late answer to an older heartbeat
    estimator.mark_answered(9999)  # never marked
    assert estimator.received() == reached


def test_receiver_reports_across_the_wrap() -> None:
    estimator = PositionEstimator(FPS, allowance=0.0)
    sender = Sender(estimator, seq=65500)
    lasts = [sender.send(index, packets=3) for index in range(60)]
    # Frame 20 ends after the wrap: its last packet is number 44 of the new cycle.
    assert lasts[19] < 100 and lasts[10] > 65000
    # The client counts its own cycles: its extended number may say cycle 1 or 7.
    estimator.receiver_report((1 << 16) | lasts[19])
    assert estimator.received() == pytest.approx(19 * FRAME)
    estimator.receiver_report((7 << 16) | lasts[40])
    assert estimator.received() == pytest.approx(40 * FRAME)
    # An older report, or one that claims more than was sent, changes nothing.
    estimator.receiver_report(lasts[30])
    estimator.receiver_report((lasts[-1] + 5) & 0xFFFF)
    assert estimator.received() == pytest.approx(40 * FRAME)
    # A report in the middle of a frame: that frame has not arrived whole.
    estimator.receiver_report((lasts[45] - 1) & 0xFFFF)
    assert estimator.received() == pytest.approx(44 * FRAME)


def test_report_before_anything_was_sent_is_ignored() -> None:
    estimator = PositionEstimator(FPS)
    estimator.receiver_report(12345)
    estimator.mark_answered(1)
    assert estimator.received() == 0.0 and estimator.delivered_seq == -1


def test_seek_resets_the_frontier_but_not_the_numbering() -> None:
    estimator = PositionEstimator(FPS, allowance=0.5)
    sender = Sender(estimator, seq=65400)
    for index in range(100):
        sender.send(index)
        estimator.mark(index)
    estimator.mark_answered(80)
    assert estimator.confirmed() == pytest.approx(80 * FRAME - 0.5)
    # FFmpeg's seek: PLAY Range npt=12-, the server starts at the keyframe at 12.0.
    estimator.play(12.0)
    assert estimator.received() == 12.0 and estimator.confirmed() == 12.0
    sender.start = 12.0
    estimator.mark_answered(99)  # answer to a heartbeat sent before the seek
    assert estimator.received() == 12.0
    for index in range(50):
        sender.send(index)
        estimator.mark(1000 + index)
    estimator.mark_answered(1030)
    assert estimator.received() == pytest.approx(12.0 + 30 * FRAME)
    assert estimator.confirmed() == pytest.approx(12.0 + 30 * FRAME - 0.5)
    assert estimator.highest_sent_seq > 65535  # the numbering went on across the wrap


def test_frames_before_the_play_start_are_not_waited_for() -> None:
    # A seek to 12.5 starts at the keyframe at 12.0; the frames before 12.5 are decoded
    # but not part of the frontier, which begins at the PLAY start.
    estimator = PositionEstimator(FPS, allowance=0.0)
    estimator.play(12.5)
    sender = Sender(estimator, seq=0, start=12.0)
    for index in range(40):
        sender.send(index)
        estimator.mark(index)
    estimator.mark_answered(10)  # frames up to 12.4: all before the start
    assert estimator.received() == 12.5
    estimator.mark_answered(20)
    assert estimator.received() == pytest.approx(12.8)


def test_confirmed_stays_between_start_and_frames_sent() -> None:
    estimator = PositionEstimator(FPS, allowance=0.5)
    estimator.play(3.0)
    sender = Sender(estimator, seq=7, start=3.0)
    for index in range(5):
        sender.send(index)
        estimator.mark(index)
    estimator.mark_answered(4)
    assert estimator.received() == pytest.approx(3.0 + 4 * FRAME)
    assert estimator.confirmed() == 3.0  # 3.16 - 0.5 is before the start
    zero = PositionEstimator(FPS, allowance=0.0)
    Sender(zero, seq=0).send(0)
    zero.mark(1)
    zero.mark_answered(1)
    assert zero.confirmed() == 0.0 <= zero.frames_sent()


def test_gap_in_presentation_times_is_crossed_only_when_nothing_can_fill_it() -> None:
    # A source frame is missing (variable frame rate): 0..9, then 11 onwards.
    estimator = PositionEstimator(FPS, allowance=0.0)
    sender = Sender(estimator, seq=0)
    indices = [i for i in range(60) if i != 10]
    for n, index in enumerate(indices[:20]):
        sender.send(index)
        estimator.mark(n)
    estimator.mark_answered(19)  # everything sent so far, up to frame 20
    # With 10 frames sent above the gap, frame 10 could still come (a frame may follow
    # up to 16 frames presented after it): wait at 9.
    assert estimator.received() == pytest.approx(9 * FRAME)
    for n, index in enumerate(indices[20:30], start=20):
        sender.send(index)
        estimator.mark(n)
    # 20 frames above the gap were sent: nothing can land in it any more, so the
    # delivered 11..20 count now, while 21..30 are still on their way.
    assert estimator.received() == pytest.approx(20 * FRAME)
    estimator.mark_answered(29)
    assert estimator.received() == pytest.approx(30 * FRAME)


def test_memory_is_bounded_without_any_confirmation() -> None:
    estimator = PositionEstimator(FPS, allowance=0.0, max_pending=500)
    sender = Sender(estimator, seq=40000)
    order = decode_order(20000, [3])
    for n, index in enumerate(order):
        last = sender.send(index)
        estimator.mark(n)
    assert len(estimator._pending) <= 500 and len(estimator._marks) <= 256
    assert estimator.received() == 0.0
    # A report for a forgotten stretch: the frontier may not pass frames it forgot...
    estimator.receiver_report(sender.sent[1000][1])
    assert estimator.received() == 0.0
    # ...until everything up to them is known delivered.
    estimator.receiver_report(last)
    assert estimator.received() == pytest.approx(19999 * FRAME)
    assert estimator._pool == [] and len(estimator._pending) == 0


def test_pool_and_marks_are_pruned_as_confirmations_arrive() -> None:
    estimator = PositionEstimator(FPS)
    sender = Sender(estimator, seq=0)
    for n, index in enumerate(decode_order(5000, [4, 2, 3])):
        sender.send(index)
        estimator.mark(n)
        if n % 25 == 24:
            estimator.mark_answered(n - 3)
    assert len(estimator._pool) <= 4 * 16
    assert len(estimator._pending) <= 25
    assert len(estimator._marks) <= 25


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        PositionEstimator(0.0)
    with pytest.raises(ValueError):
        PositionEstimator(25.0, allowance=-1.0)


def test_reading_at_delivers_what_was_sent_by_then_and_names_its_evidence() -> None:
    estimator = PositionEstimator(FPS, allowance=0.0)
    for index in range(50):
        estimator.frame_sent(index * FRAME, 3 * index, 3 * index + 2, now=100 + index * FRAME)
    assert (estimator.confirmed(), estimator.evidence) == (0.0, "none")
    estimator.reading_at(99.0)  # before anything was sent: nothing proven
    assert estimator.evidence == "none"
    estimator.reading_at(100 + 20 * FRAME)
    assert estimator.confirmed() == pytest.approx(20 * FRAME)
    assert estimator.evidence == "heartbeat-answer"
    estimator.reading_at(100 + 10 * FRAME)  # an older answer never moves it back
    assert estimator.confirmed() == pytest.approx(20 * FRAME)
    estimator.receiver_report(3 * 30 + 2)  # a receiver report combines with it
    assert estimator.confirmed() == pytest.approx(30 * FRAME)
    assert estimator.evidence == "receiver-report"
    estimator.play(10.0)  # a new PLAY knows nothing yet
    assert estimator.evidence == "none"
