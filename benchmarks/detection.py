"""How fast and how well the streaming server notices a lost terminal (claims 2, 8).

Each client kind of ``--clients`` (FFmpeg's client inside PyAV, Debian's FFmpeg 5.1
command line, GStreamer's ``rtspsrc``; tests/players.py) plays the sample clip through a
:class:`~rtsp_resume.linkcut.LinkCutter` of its own, all at once; at a random moment the
links are cut, and the server's :class:`~rtsp_resume.server.Interruption` of each is
compared with what that player really showed. Repeated ``--cuts`` times, fresh sessions
each; with ``--transport udp`` every cut is also made over TCP, for comparison.

Meanwhile a control player, never cut, plays the other sample clip straight from the
server, restarted whenever it ends: any interruption of its sessions, or of a cut session
before its cut, is a false positive.

Figures printed:

- detection latency: from the cut to the interruption (median, p95, max, and as a ratio
  to the configured timeout). Target: p95 <= timeout + 0.3 s.
- false positives and missed detections. Target: none.
- error of both position estimators against the last frame the player decoded before
  the cut (media time read from the picture itself), in seconds, negative = earlier;
  and of the bookmark per client kind and transport, with the evidence it rested on.
  Target: ``confirmed`` never later, nor more than interval + allowance + 1 s earlier.

Usage: ``python benchmarks/detection.py [--cuts 50] [--transport tcp|udp] [--interval 1]
[--timeout 3] [--seed 1] [--clients pyav,ffmpeg,gstreamer]``. It takes about 8 s a cut
and transport at the default settings.
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from players import KINDS, Viewer, start_player  # noqa: E402
from pyav_player import SAMPLE_FPS, PlayerProcess  # noqa: E402

from rtsp_resume import tokens  # noqa: E402
from rtsp_resume.linkcut import LinkCutter  # noqa: E402
from rtsp_resume.server import Interruption, ServerConfig, StreamingServer  # noqa: E402

CUT_CLIP = "sample"
CONTROL_CLIP = "sample_slices"
STARTUP = 20.0  # seconds a player may take to show its first frame
KEY = b"detection benchmark key, 32 byte"  # play tokens name each player as a user


@dataclass
class Cut:
    """One cut and what came of it."""

    kind: str  # the client kind
    transport: str
    play: float  # seconds of play before the cut
    latency: float | None  # cut -> interruption (None: missed)
    last_decoded: float  # media time of the last frame decoded before the cut
    decoded_after_cut: int  # frames the player still decoded after the cut
    frames_sent: float | None
    confirmed: float | None
    evidence: str = ""


class Events:
    """Server listener: every interruption, with a condition to wait on."""

    def __init__(self) -> None:
        self.all: list[Interruption] = []
        self.changed = threading.Condition()

    def __call__(self, event: Interruption) -> None:
        with self.changed:
            self.all.append(event)
            self.changed.notify_all()

    def wait_for(self, user_id: str, deadline: float) -> Interruption | None:
        """The interruption of the session played by ``user_id``, if it comes in time."""
        limit = time.monotonic() + deadline
        with self.changed:
            while True:
                found = next((e for e in self.all if e.user_id == user_id), None)
                left = limit - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self.changed.wait(left)


class Control:
    """A healthy player that is never cut, restarted each time its clip ends."""

    def __init__(self, url: str, transport: str) -> None:
        self.url, self.transport = url, transport
        self.stopping = threading.Event()
        self.runs = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            with PlayerProcess(self.url, self.transport, seconds=25) as player:
                self.runs += 1
                while player.process.poll() is None and not self.stopping.is_set():
                    self.stopping.wait(0.5)


def one_cut(server: StreamingServer, cutters: dict[str, LinkCutter], events: Events,
            transport: str, play: float, timeout: float, run: int) -> tuple[list[Cut], list[str]]:
    """Every client kind plays for ``play`` seconds, then all links are cut at once; returns
    what came of each and any anomaly."""
    anomalies: list[str] = []
    players: dict[str, Viewer] = {}
    users = {kind: f"{kind}-{transport}-{run}" for kind in cutters}
    try:
        for kind, cutter in cutters.items():
            token = tokens.issue_play_token(KEY, user_id=users[kind], content_id=CUT_CLIP,
                                            login_session="benchmark", now=time.time())
            players[kind] = start_player(kind, cutter.url(f"{CUT_CLIP}?token={token}"),
                                         transport)
        limit = time.monotonic() + STARTUP
        while not all(p.frames() for p in players.values()):
            if time.monotonic() > limit:
                raise RuntimeError(f"a player did not start: {list(players)}")
            time.sleep(0.05)
        threading.Event().wait(play)  # the random moment of the cut
        if any(e.user_id in users.values() for e in events.all):
            anomalies.append(f"false positive: a {transport} session interrupted before the cut")
        cut_at = time.time()
        for cutter in cutters.values():
            cutter.cut()
        found = {kind: events.wait_for(users[kind], timeout + 5) for kind in players}
        shown = {kind: p.frames() for kind, p in players.items()}
    finally:
        for player in players.values():
            player.close()
    cuts = []
    for kind, event in found.items():
        cutters[kind].restore()
        before = [index for index, at in shown[kind] if at <= cut_at]
        last = max(before) / SAMPLE_FPS if before else 0.0
        after = len(shown[kind]) - len(before)
        if event is None:
            anomalies.append(f"missed: {kind} over {transport} not interrupted {timeout + 5} s"
                             " after the cut")
            cuts.append(Cut(kind, transport, play, None, last, after, None, None))
            continue
        cuts.append(Cut(kind, transport, play, event.detected_at - cut_at, last, after,
                        event.frames_sent, event.confirmed, event.evidence))
    return cuts, anomalies


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return (f"median {statistics.median(ordered):.3f}  p95 {p95:.3f}  "
            f"min {ordered[0]:.3f}  max {ordered[-1]:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat interval (s)")
    parser.add_argument("--timeout", type=float, default=3.0, help="heartbeat timeout (s)")
    parser.add_argument("--allowance", type=float, default=0.5, help="playout allowance (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-play", type=float, default=1.0,
                        help="shortest play before a cut (s)")
    parser.add_argument("--max-play", type=float, default=8.0,
                        help="longest play before a cut (s); the clip lasts 30 s")
    parser.add_argument("--no-control", action="store_true",
                        help="do not run the healthy control player")
    parser.add_argument("--media", type=Path, default=ROOT / "sample_media")
    parser.add_argument("--clients", default=",".join(KINDS),
                        help=f"client kinds, comma-separated, of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    rng = random.Random(args.seed)
    events = Events()
    config = ServerConfig(port=0, heartbeat_interval=args.interval, token_key=KEY,
                          heartbeat_timeout=args.timeout, playout_allowance=args.allowance)
    server = StreamingServer(args.media, config, listeners=[events]).start()
    kinds = [k for k in args.clients.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--clients: choose among {', '.join(KINDS)}")
    cutters = {kind: LinkCutter(to=("127.0.0.1", server.port)).start() for kind in kinds}
    transports = [args.transport] + (["tcp"] if args.transport == "udp" else [])
    control_token = tokens.issue_play_token(KEY, user_id="control", content_id=CONTROL_CLIP,
                                            login_session="benchmark", now=time.time())
    control = None if args.no_control else Control(
        server.url(CONTROL_CLIP, control_token), args.transport)
    if control is not None:
        control.thread.start()
    cuts: list[Cut] = []
    anomalies: list[str] = []
    started = time.monotonic()
    try:
        for i in range(args.cuts):
            play = rng.uniform(args.min_play, args.max_play)
            for transport in transports:
                made, found = one_cut(server, cutters, events, transport, play, args.timeout, i)
                cuts += made
                anomalies += found
                for cut in made:
                    print(f"cut {i + 1:3d}/{args.cuts} {cut.kind:9} {transport}: after "
                          f"{cut.play:5.2f} s of play, "
                          + (f"detected in {cut.latency:.3f} s; " if cut.latency is not None
                             else "MISSED; ")
                          + f"last decoded {cut.last_decoded:6.2f}, confirmed "
                          + (f"{cut.confirmed:6.2f} ({cut.evidence}), frames_sent "
                             f"{cut.frames_sent:6.2f}" if cut.confirmed is not None
                             and cut.frames_sent is not None else "-"), flush=True)
    finally:
        if control is not None:
            control.stopping.set()
            control.thread.join(30)
        for cutter in cutters.values():
            cutter.stop()
        server.stop()
    elapsed = time.monotonic() - started

    control_false = [e for e in events.all if e.content_id == CONTROL_CLIP]
    anomalies += [f"false positive: control session {e.session_id} interrupted"
                  for e in control_false]
    detected = [c for c in cuts if c.latency is not None]
    latencies = [c.latency for c in detected if c.latency is not None]
    confirmed_err = [c.confirmed - c.last_decoded for c in detected if c.confirmed is not None]
    sent_err = [c.frames_sent - c.last_decoded for c in detected if c.frames_sent is not None]
    late = [e for e in confirmed_err if e > 1e-6]
    window = args.interval + args.allowance + 1.0
    far = [e for e in confirmed_err if e < -window]
    false_positives = sum(1 for a in anomalies if a.startswith("false positive"))
    missed = len(cuts) - len(detected)
    p95 = sorted(latencies)[max(0, round(0.95 * len(latencies)) - 1)] if latencies else None

    print()
    print("command: python benchmarks/detection.py " + shlex.join(sys.argv[1:] if argv is None
                                                                 else argv))
    print(f"settings: transport {args.transport}, heartbeat interval {args.interval} s, "
          f"timeout {args.timeout} s, playout allowance {args.allowance} s, seed {args.seed}, "
          f"play before cut uniform in [{args.min_play}, {args.max_play}] s")
    print(f"cuts: {len(cuts)} in {elapsed:.0f} s; detected {len(detected)}, missed {missed}; "
          f"control player runs: {control.runs if control else 0}")
    print(f"detection latency (s):         {summary(latencies)}")
    print(f"  as a ratio to the timeout:   {summary([x / args.timeout for x in latencies])}")
    print(f"false positives: {false_positives}")
    print(f"confirmed - last decoded (s):  {summary(confirmed_err)}")
    print(f"  |error|:                     {summary([abs(x) for x in confirmed_err])}")
    print(f"  later than the last decoded frame: {len(late)} of {len(confirmed_err)}")
    print(f"  more than interval + allowance + 1 s earlier: {len(far)} of {len(confirmed_err)}")
    print("bookmark (confirmed) - last decoded, per client kind and transport (s):")
    for kind in kinds:
        for transport in transports:
            mine = [c for c in detected if (c.kind, c.transport) == (kind, transport)]
            errors = [c.confirmed - c.last_decoded for c in mine if c.confirmed is not None]
            evidence = ", ".join(sorted({c.evidence for c in mine})) or "-"
            print(f"  {kind:9} {transport}: {summary(errors)}  evidence {evidence}")
    print(f"frames_sent - last decoded (s): {summary(sent_err)}")
    print(f"  |error|:                     {summary([abs(x) for x in sent_err])}")
    print(f"frames decoded after the cut:  "
          f"{summary([float(c.decoded_after_cut) for c in cuts])}")
    for anomaly in anomalies:
        print("  " + anomaly)
    ok = (p95 is not None and p95 <= args.timeout + 0.3 and false_positives == 0
          and missed == 0 and not late and not far)
    print("targets (p95 <= timeout + 0.3 s, no false positive, none missed, confirmed never "
          f"late nor too early): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
