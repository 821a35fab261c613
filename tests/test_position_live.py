"""Where the viewer really was: the Interruption's play position against what FFmpeg
decoded (claim 1's "program play time point", as produced by claims 2 and 8).

FFmpeg's RTSP client (tests/pyav_player.py) prints every decoded picture with the frame
number drawn into it; the link is cut at a seeded random moment and the two estimators of
the server's :class:`Interruption` are compared with the last picture decoded before the
cut:

- ``confirmed`` is never later than that picture, and over TCP interleaved not more
  than heartbeat interval + playout allowance + 0.5 s earlier;
- ``frames_sent`` (the embodiment's literal rule) is later than anything decoded:
  frames went on being sent into the dead link until the interruption was declared.

Over UDP FFmpeg sends an RTCP receiver report per stream only after about 280 kB of that
stream arrived (28 * 50 * 1000 / 5 bytes, its rtpdec.c rule): for the sample clip's
66 kbit/s video that is 34 s, longer than the clip. The proof there is a heartbeat answer
(the player was reading, so what was sent a bound earlier arrived), and ``confirmed`` is
at most interval + allowance + 1 s earlier (benchmarks/detection.py --transport udp
measures it over many cuts).

Heartbeat interval 0.5 s, timeout 1.5 s, allowance 0.5 s (the default): short settings
keep the tests quick; the bound scales with them.
"""

from __future__ import annotations

import random
import time

import pytest
from live_support import running_server
from pyav_player import SAMPLE_FPS, PlayerProcess

from rtsp_resume.linkcut import LinkCutter

INTERVAL, TIMEOUT, ALLOWANCE = 0.5, 1.5, 0.5
STARTUP = 20.0


def cut_and_compare(sample_dir, transport: str, play_frames: int) -> dict[str, float]:
    """Play ``play_frames`` frames through the relay, cut, return the figures."""
    with running_server(sample_dir, heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT,
                        playout_allowance=ALLOWANCE) as (server, watch):
        cutter = LinkCutter(to=("127.0.0.1", server.port)).start()
        try:
            with PlayerProcess(cutter.url("sample"), transport) as player:
                player.wait_frames(play_frames, STARTUP + play_frames / SAMPLE_FPS)
                cut_at = time.time()
                cutter.cut()
                event = watch.wait(TIMEOUT + 5)
                assert event is not None, "the cut was not detected"
                decoded = player.frames_until(cut_at)
                every = list(player.frames)
        finally:
            cutter.stop()
    assert all(f.index >= 0 for f in decoded), "a picture without a readable frame number"
    last = decoded[-1].media_time
    assert decoded[-1].media_time == max(f.media_time for f in decoded)
    figures = {
        "last_decoded": last,
        "last_decoded_at_all": max(f.media_time for f in every),
        "confirmed": event.confirmed,
        "frames_sent": event.frames_sent,
        "position": event.position,
    }
    print(f"{transport} cut after frame {decoded[-1].index}: " +
          ", ".join(f"{k} {v:.3f}" for k, v in figures.items()) +
          f"; confirmed lags {last - event.confirmed:.3f} s, frames_sent leads "
          f"{event.frames_sent - last:.3f} s")
    return figures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_confirmed_position_over_tcp(sample_dir, seed: int) -> None:
    play_frames = random.Random(seed).randrange(25, 150)  # cut between 1 s and 6 s
    f = cut_and_compare(sample_dir, "tcp", play_frames)
    assert f["position"] == f["confirmed"]  # the default estimator goes into the bookmark
    assert f["confirmed"] <= f["last_decoded"], "confirmed claims a frame never decoded"
    assert f["confirmed"] >= f["last_decoded"] - (INTERVAL + ALLOWANCE + 0.5)
    # The literal rule overshoots everything the viewer could have seen.
    assert f["frames_sent"] > f["last_decoded_at_all"]


def test_confirmed_position_over_udp(sample_dir) -> None:
    play_frames = random.Random(4).randrange(25, 150)
    f = cut_and_compare(sample_dir, "udp", play_frames)
    assert f["confirmed"] <= f["last_decoded"], "confirmed claims a frame never decoded"
    assert f["confirmed"] >= f["last_decoded"] - (INTERVAL + ALLOWANCE + 1.0)
    assert f["frames_sent"] > f["last_decoded_at_all"]
