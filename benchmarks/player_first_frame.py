"""Time from ``Player.start()`` to the first frame shown, over TCP and UDP.

Runs a real :class:`rtsp_resume.server.StreamingServer` on loopback and, for each
transport and each start point, opens a fresh :class:`rtsp_resume.player.Player` RUNS
times (default 5). Two times per run, both from the call of ``start()``:

- ``PLAY answered``: OPTIONS, DESCRIBE, SETUP per track and PLAY done (``start()``
  returns);
- ``first frame``: the first picture handed to ``on_frame``.

Start points: the beginning of the sample; 12.4 s with ``exact=True`` (frame 310, the
server starts at the keyframe 300 and the player decodes but hides 300-309); the same
with ``exact=False`` (the keyframe is shown). Prints median, min and max in ms.

    python benchmarks/player_first_frame.py [--runs 5] [--media sample_media]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

from rtsp_resume.player import Player, ShownFrame
from rtsp_resume.server import ServerConfig, StreamingServer

ROOT = Path(__file__).resolve().parent.parent


def one_run(url: str, transport: str, start: float | None, exact: bool
            ) -> tuple[float, float, int | None]:
    """(seconds to PLAY answered, seconds to first frame, index of the first frame)."""
    first = threading.Event()
    shown: list[tuple[float, ShownFrame]] = []

    def on_frame(frame: ShownFrame) -> None:
        if not shown:
            shown.append((time.perf_counter(), frame))
            first.set()

    player = Player(url, transport=transport, on_frame=on_frame, start=start, exact=exact)
    began = time.perf_counter()
    try:
        player.start()
        answered = time.perf_counter()
        if not first.wait(10):
            raise RuntimeError(f"no frame within 10 s ({player.error or 'no error'})")
    finally:
        player.stop()
    at, frame = shown[0]
    return answered - began, at - began, frame.index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--media", type=Path, default=ROOT / "sample_media")
    args = parser.parse_args(argv)

    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    cases = [("from 0", None, True), ("start=12.4 exact", 12.4, True),
             ("start=12.4 keyframe", 12.4, False)]
    with StreamingServer(args.media, ServerConfig(port=0)) as server:
        url = server.url("sample")
        one_run(url, "tcp", None, True)  # warm-up: imports, codec tables, file cache
        print(f"{args.runs} runs each, loopback, sample.mp4 (25 fps, 2 s GOP); ms, "
              "median [min-max]")
        print(f"{'transport':9} {'start':20} {'PLAY answered':>22} {'first frame':>22} "
              f"{'first index':>11}")
        for transport in ("tcp", "udp"):
            for label, start, exact in cases:
                runs = [one_run(url, transport, start, exact) for _ in range(args.runs)]
                answered = [1000 * r[0] for r in runs]
                first = [1000 * r[1] for r in runs]
                indices = sorted({r[2] for r in runs}, key=lambda i: -1 if i is None else i)

                def cell(values: list[float]) -> str:
                    return (f"{statistics.median(values):7.1f} "
                            f"[{min(values):5.1f}-{max(values):6.1f}]")

                print(f"{transport:9} {label:20} {cell(answered):>22} {cell(first):>22} "
                      f"{','.join(map(str, indices)):>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
