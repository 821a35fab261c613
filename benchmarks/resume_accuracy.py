"""How well a resume lands: frames skipped, frames shown twice, time to the first frame.

For each position estimator of the streaming server (``confirmed``, ``frames_sent``) a
whole system runs on loopback (:class:`rtsp_resume.together.System`: streaming server,
portal, bookmark outbox), and for each player CUTS trials (default 30) are made:

1. log in at the portal, get the play URL, play the sample through a
   :class:`rtsp_resume.linkcut.LinkCutter`;
2. cut the link at a random moment (seeded: every configuration sees the same moments);
3. wait until the server has declared the interruption and the portal has stored the
   bookmark; the last frame the viewer saw is the newest one the player showed;
4. log in again, take the bookmark, "press resume": call the bookmark interface and
   start a fresh player on the URL it returns; the first frame it shows is compared with
   the last one seen before the cut.

Players: ``own`` is the project's terminal (:class:`rtsp_resume.player.Player` with
``start=ContentBM``: it shows nothing before the bookmark); ``pyav`` is FFmpeg's RTSP
client through PyAV, with no seek of its own: the server starts it at the keyframe at or
before the bookmark (the resume URL's token carries the position).

Figures per (estimator, player): frames skipped (first after resume minus last seen
minus one, when positive), frames shown twice (the opposite), and the time from
pressing resume to the first frame shown (median and 95th percentile). The literal
``frames_sent`` rule is expected to skip (it counts frames sent into the dead link while
the heartbeat waited); the exit status is 1 when ``confirmed``, the default, skipped a
frame, or when a trial failed.

    python benchmarks/resume_accuracy.py [--cuts 30] [--seed 5] [--min-cut 1.5]
        [--max-cut 8] [--players own,pyav] [--estimators confirmed,frames_sent]
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from rtsp_resume.bookmark_outbox import Delivery
from rtsp_resume.client import PortalClient
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player
from rtsp_resume.portal import Kdf
from rtsp_resume.sample import read_frame_index
from rtsp_resume.server import Interruption, ServerConfig
from rtsp_resume.together import System

ROOT = Path(__file__).resolve().parent.parent
FPS = 25.0
USER = ("alice", "alice-pw")
# Password hashing is not what is measured: a cheap scrypt keeps logins instant.
CHEAP_KDF = Kdf(n=2**4, r=1, p=1)
PYAV_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "200000"}


@dataclass
class Trial:
    cut_at: float  # media time at which the link was cut (s)
    last_seen: int  # index of the newest frame shown before the interruption
    bookmark: float  # ContentBM
    first_after: int  # index of the first frame shown after the resume
    latency: float  # s from pressing resume to that frame

    @property
    def skipped(self) -> int:
        return max(0, self.first_after - (self.last_seen + 1))

    @property
    def shown_twice(self) -> int:
        return max(0, self.last_seen + 1 - self.first_after)


class Watch:
    """Interruptions and answered outbox deliveries of one system, waited on by token."""

    def __init__(self, system: System) -> None:
        self._cond = threading.Condition()
        self.interruptions: list[Interruption] = []
        self.answered: list[Delivery] = []
        system.streaming.listeners.append(self._interrupted)
        assert system.outbox is not None
        system.outbox.listeners.append(self._outbox)

    def _interrupted(self, event: Interruption) -> None:
        with self._cond:
            self.interruptions.append(event)
            self._cond.notify_all()

    def _outbox(self, what: str, delivery: Delivery) -> None:
        if what == "answered":
            with self._cond:
                self.answered.append(delivery)
                self._cond.notify_all()

    def wait(self, token: str, timeout: float) -> tuple[Interruption, Delivery | None]:
        """The interruption of the session played with ``token`` and its delivery (None
        when the position was 0, which makes no bookmark)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                event = next((e for e in self.interruptions if e.play_token == token), None)
                delivery = next((d for d in self.answered
                                 if d.request.get("EncryptToken") == token), None)
                if event is not None and (delivery is not None or event.position <= 0):
                    return event, delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no interruption/bookmark within the deadline")
                self._cond.wait(left)


class PyavReader:
    """FFmpeg's RTSP client on a thread: records (index, time.time()) of decoded frames."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: list[tuple[int, float]] = []
        self.error: str | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="pyav-reader")
        self._thread.start()

    def _run(self) -> None:
        try:
            with av.open(self.url, options=PYAV_OPTIONS, timeout=(10, 5)) as container:
                video = container.streams.video[0]
                for packet in container.demux(video):
                    for frame in packet.decode():
                        index = read_frame_index(frame)
                        with self._cond:
                            self.frames.append((-1 if index is None else index, time.time()))
                            self._cond.notify_all()
                    if self._stop:
                        return
        except (av.error.FFmpegError, OSError) as exc:
            if not self._stop:
                self.error = str(exc)
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.frames):
                left = deadline - time.monotonic()
                if left <= 0 or self._stop:
                    return bool(predicate(self.frames))
                self._cond.wait(left)
            return True

    def stop(self, timeout: float = 8.0) -> None:
        self._stop = True
        self._thread.join(timeout)


def trial(system: System, watch: Watch, player: str, cut_at: float) -> Trial:
    portal = PortalClient(system.portal_url)
    portal.login(*USER)
    play = portal.play("sample")
    cutter = LinkCutter(to=(system.host, system.streaming.port)).start()
    try:
        url = play["url"].replace(f":{system.streaming.port}/", f":{cutter.port}/")
        target = round(cut_at * FPS)
        if player == "own":
            first_session = Player(url).start()
            reached = first_session.wait_for(
                lambda: first_session.frames and first_session.frames[-1].index is not None
                and first_session.frames[-1].index >= target, timeout=cut_at + 10)
            if not reached:
                raise RuntimeError(f"own player did not reach {cut_at:.2f} s "
                                   f"({first_session.error})")
            cutter.cut()
            _, delivery = watch.wait(play["EncryptToken"], timeout=15)
            seen = [f.index for f in first_session.frames if f.index is not None]
            first_session.close_abruptly()
        else:
            reader = PyavReader(url)
            if not reader.wait(lambda fs: fs and fs[-1][0] >= target, timeout=cut_at + 10):
                raise RuntimeError(f"PyAV did not reach {cut_at:.2f} s ({reader.error})")
            cutter.cut()
            _, delivery = watch.wait(play["EncryptToken"], timeout=15)
            with reader._cond:
                seen = [index for index, _ in reader.frames if index >= 0]
            cutter.stop()  # the reader sees the connection end and returns
            reader.stop()
    finally:
        cutter.stop()
    if delivery is None or delivery.status != "delivered":
        raise RuntimeError(f"no bookmark stored: {delivery}")
    again = PortalClient(system.portal_url)
    again.login(*USER)
    bookmark = next(b for b in again.bookmarks() if b["ContentID"] == "sample")
    pressed = time.time()
    interface = again.bookmark_interface(bookmark)
    if player == "own":
        resumed = Player(interface["url"], start=float(interface["ContentBM"])).start()
        try:
            if not resumed.wait_frames(1, timeout=10):
                raise RuntimeError(f"no frame after the resume ({resumed.error})")
            first = resumed.frames[0]
            first_index, first_at = first.index, first.wallclock
        finally:
            resumed.stop()
    else:
        fresh = PyavReader(interface["url"])
        try:
            if not fresh.wait(lambda fs: bool(fs), timeout=10):
                raise RuntimeError(f"PyAV showed no frame after the resume ({fresh.error})")
            first_index, first_at = fresh.frames[0]
        finally:
            fresh.stop()
    if first_index is None or first_index < 0:
        raise RuntimeError("the first frame after the resume has no readable index")
    return Trial(cut_at, max(seen), float(bookmark["ContentBM"]), first_index,
                 first_at - pressed)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--min-cut", type=float, default=1.5,
                        help="earliest cut (s of media); earlier ones may leave no bookmark")
    parser.add_argument("--max-cut", type=float, default=8.0)
    parser.add_argument("--players", default="own,pyav")
    parser.add_argument("--estimators", default="confirmed,frames_sent")
    parser.add_argument("--heartbeat-interval", type=float, default=0.3)
    parser.add_argument("--heartbeat-timeout", type=float, default=1.0)
    parser.add_argument("--media", type=Path, default=ROOT / "sample_media")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per trial")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    players = args.players.split(",")
    estimators = args.estimators.split(",")
    rng = random.Random(args.seed)
    moments = [round(rng.uniform(args.min_cut, args.max_cut), 2) for _ in range(args.cuts)]

    print("command: python " + " ".join(shlex.quote(a) for a in
                                        ["benchmarks/resume_accuracy.py", *(argv or sys.argv[1:])]))
    print(f"{args.cuts} cuts between {args.min_cut:g} and {args.max_cut:g} s (seed "
          f"{args.seed}); heartbeat every {args.heartbeat_interval:g} s, interrupted after "
          f"{args.heartbeat_timeout:g} s; TCP interleaved; PyAV {av.__version__} with "
          f"{PYAV_OPTIONS}", flush=True)
    results: dict[tuple[str, str], list[Trial]] = {}
    failures = 0
    for estimator in estimators:
        config = ServerConfig(heartbeat_interval=args.heartbeat_interval,
                              heartbeat_timeout=args.heartbeat_timeout, position=estimator)
        with tempfile.TemporaryDirectory(prefix="resume-accuracy-") as data:
            system = System(args.media, data, [USER], config=config, kdf=CHEAP_KDF).start()
            try:
                watch = Watch(system)
                for player in players:
                    done = results.setdefault((estimator, player), [])
                    for number, cut_at in enumerate(moments, 1):
                        try:
                            result = trial(system, watch, player, cut_at)
                        except (RuntimeError, TimeoutError, OSError) as exc:
                            failures += 1
                            print(f"  {estimator}/{player} cut {number} at {cut_at:.2f} s "
                                  f"FAILED: {exc}", flush=True)
                            continue
                        done.append(result)
                        if args.verbose:
                            print(f"  {estimator}/{player} cut {number:2d} at {cut_at:5.2f} s:"
                                  f" last seen {result.last_seen:3d}, ContentBM "
                                  f"{result.bookmark:6.3f}, first after "
                                  f"{result.first_after:3d}, skipped {result.skipped}, twice "
                                  f"{result.shown_twice}, {result.latency * 1000:.0f} ms",
                                  flush=True)
            finally:
                system.stop()

    print()
    print(f"{'estimator':<12} {'player':<6} {'trials':>6} {'skipped':>8} {'in trials':>9} "
          f"{'max':>4} {'twice med':>9} {'twice max':>9} {'resume->frame med':>18} "
          f"{'p95':>8}")
    skipped_any = False
    for (estimator, player), trials in results.items():
        if not trials:
            print(f"{estimator:<12} {player:<6} {0:>6}  (every trial failed)")
            continue
        skipped = sum(t.skipped for t in trials)
        skipped_any = skipped_any or (skipped > 0 and estimator == "confirmed")
        twice = [t.shown_twice for t in trials]
        latency = [t.latency * 1000 for t in trials]
        skipping = sum(t.skipped > 0 for t in trials)
        print(f"{estimator:<12} {player:<6} {len(trials):>6} {skipped:>8} {skipping:>9} "
              f"{max(t.skipped for t in trials):>4} "
              f"{statistics.median(twice):>9.0f} {max(twice):>9} "
              f"{statistics.median(latency):>15.0f} ms {percentile(latency, 0.95):>5.0f} ms")
    print("\nskipped: frames never shown, all trials together (must be 0 for 'confirmed'),"
          " in how many trials, most in one; twice: frames shown before the cut and again "
          "after the resume, per trial (1 frame = 40 ms)")
    return 1 if skipped_any or failures else 0


if __name__ == "__main__":
    sys.exit(main())
