"""Our streaming server next to gst-rtsp-server, on the same file, the same clients.

Both servers serve one Matroska copy of the sample (remuxed from ``--source`` with PyAV,
no re-encoding, into a temporary folder; MKV because gst-rtsp-server hangs on a seek in
an MP4 that has audio) at ``rtsp://127.0.0.1:<port>/sample``:

- rtsp-resume: ``python -m rtsp_resume serve-rtsp --media <tmp> --port P --workers W``
  (``--workers``, default 1);
- gst-rtsp-server: ``/usr/bin/python3 benchmarks/gst_server.py`` (the system Python has
  GStreamer's bindings), a factory with ``shared=False`` so each client has a pipeline of
  its own, H.264 and AAC packetized from the file without re-encoding.

Each runs as a subprocess whose CPU time and memory are read from ``/proc``, with the
clients and the figures of benchmarks/stream_load.py (imported, not copied):

- first frame: ``av.open`` to the first decoded picture (PyAV, RTSP over TCP), median of
  ``--runs``, with default options and with ``probesize=32, analyzeduration=0``;
- seek: from ``container.seek(--seek)`` to the first picture decoded after it (the short
  probe options; the connection already playing), median of ``--runs``, and where in the
  clip that picture is;
- for each N of ``--sessions``: N raw RTSP clients over TCP start at once and receive for
  ``--seconds``: sessions that failed to start, server CPU per session (percent of one
  core), server RSS (peak sampled every 0.2 s), and the share of RTP packets arriving
  more than 50 ms after their due time (client side: decode time of the unit found from
  its RTP timestamp, against the session's best packet).

The due time is the unit's decode time, as in stream_load.py: when the client's decoder
needs it. GStreamer's sinks wait for each buffer's presentation time, and the demuxer
hands them out in decode order, so a reference picture and the B-pictures that follow it
leave together at the reference's presentation time, up to the reorder delay (0.16 s in
the sample) after the decoder could have used it; that shows as late packets here, and
as the extra buffering a client needs. Audio has no reordering.

Every level runs a fresh server process. The machine's 1-minute load average is printed:
the clients run on the same 2 cores as the server.

Usage:
    python benchmarks/versus_gst.py [--sessions 10 50] [--seconds 10] [--runs 5]
        [--seek 13] [--source sample_media/sample.mp4]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_load import (  # noqa: E402 - a sibling script, not a package
    LATE,
    DueTimes,
    LoadResult,
    ServerProcess,
    _load,
    _percent,
    first_frame_ms,
    free_port,
    run_load,
)

from rtsp_resume.media import MediaFile  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYSTEM_PYTHON = "/usr/bin/python3"
CLIP = "sample"
SHORT_PROBE = {"probesize": "32", "analyzeduration": "0"}


class GstServerProcess(ServerProcess):
    """gst_server.py in a subprocess, watched like our server (same /proc readings).

    Only the command differs. It logs no per-session packet counts: ``session_counts()``
    stays empty.
    """

    def __init__(self, movie: Path, port: int) -> None:
        command = [SYSTEM_PYTHON, str(HERE / "gst_server.py"), "--file", str(movie),
                   "--mount", CLIP, "--port", str(port)]
        super().__init__(movie.parent, port, command, name="gst-rtsp-server")


def remux_to_mkv(source: Path, target: Path) -> None:
    """Copy the packets of ``source`` into a Matroska file, without decoding them.

    The AAC priming frame (negative time, dropped by the MP4's edit list when played) is
    left out: Matroska cannot start before 0, and the muxer would otherwise shift every
    stream by its 21 ms, putting the pictures off the 40 ms grid.
    """
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux(*(inp.streams[i] for i in streams)):
            if packet.dts is None or packet.pts is None or packet.pts < 0:
                continue  # the demuxer's flush packet, or priming
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def seek_frame(url: str, position: float) -> tuple[float, float]:
    """(ms from seek() to the first picture after it, where in the clip that picture is)."""
    with av.open(url, options={"rtsp_transport": "tcp", **SHORT_PROBE},
                 timeout=10) as container:
        video = container.streams.video[0]
        frames = container.decode(video)
        origin = _first_picture_time(frames, float(video.average_rate or 25))
        started = time.perf_counter()
        container.seek(int(position * av.time_base))
        frames = container.decode(video)
        first = next(frames)
        elapsed = 1000 * (time.perf_counter() - started)
        landed = _first_picture_time(itertools.chain([first], frames),
                                     float(video.average_rate or 25))
        return elapsed, landed - origin


def _first_picture_time(frames: Iterator[av.VideoFrame], fps: float) -> float:
    """Time of the first of ``frames``, from the first one that has a timestamp.

    FFmpeg's RTSP client leaves the keyframe that starts a stream (or follows a seek)
    without one; the pictures after it have theirs, at 1/fps apart.
    """
    for untimed, frame in enumerate(frames):
        if frame.time is not None:
            return frame.time - untimed / fps
    raise RuntimeError("no picture with a timestamp")


def measure_start(server: ServerProcess, runs: int, position: float) -> dict[str, str]:
    url = f"rtsp://127.0.0.1:{server.port}/{CLIP}"
    cells = {}
    for name, options in (("first frame, default options", {}),
                          ("first frame, probesize=32 analyzeduration=0", SHORT_PROBE)):
        times = [first_frame_ms(url, options) for _ in range(runs)]
        cells[name] = f"{statistics.median(times):.1f} ms ({min(times):.0f}-{max(times):.0f})"
    seeks = [seek_frame(url, position) for _ in range(runs)]
    times = [ms for ms, _ in seeks]
    landed = sorted({round(at, 2) for _, at in seeks})
    cells[f"seek to {position:g} s, to first frame"] = (
        f"{statistics.median(times):.1f} ms ({min(times):.0f}-{max(times):.0f})")
    cells["  first frame after the seek at"] = ", ".join(f"{t:g} s" for t in landed)
    return cells


def one_level(name: str, start: Callable[[int], ServerProcess], n: int, seconds: float,
              due: DueTimes) -> tuple[LoadResult, float]:
    """N sessions on a fresh server process; the result and the load average after it."""
    server = start(free_port())
    try:
        result = asyncio.run(run_load(server, n, seconds, CLIP, "tcp", due))
        load = _load()
    finally:
        code = server.stop()
    if code != 0:
        print(f"    {name} exit code {code} after Ctrl-C", flush=True)
    return result, load


def load_cells(result: LoadResult, load: float) -> dict[str, str]:
    n = result.sessions
    return {
        f"N={n}: sessions failed": f"{result.failed}/{n}",
        f"N={n}: server CPU per session": f"{100 * result.cpu_per_stream:.2f}% of a core",
        f"N={n}: server RSS idle / peak": f"{result.rss_idle_mb:.1f} / {result.rss_peak_mb:.1f} MB",
        f"N={n}: RTP packets > {LATE * 1000:.0f} ms late": (
            f"{_percent(result.client_late, result.client_packets)} "
            f"({result.client_late}/{result.client_packets})"),
        f"N={n}: late p99 / max": f"{result.client_p99_ms:.1f} / {result.client_max_ms:.1f} ms",
        f"N={n}: PLAY answer to 1st RTP, median": (
            f"{statistics.median(result.first_packet_ms):.1f} ms"
            if result.first_packet_ms else "n/a"),
        f"N={n}: client CPU / load average": f"{100 * result.client_cpu:.0f}% / {load:.2f}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="streaming window per server and load level")
    parser.add_argument("--runs", type=int, default=5, help="first-frame and seek runs")
    parser.add_argument("--seek", type=float, default=13.0, help="seek target, seconds")
    parser.add_argument("--workers", type=int, default=1, help="rtsp-resume's serve-rtsp --workers")
    parser.add_argument("--source", type=Path, default=ROOT / "sample_media" / "sample.mp4")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 25:
        parser.error("--seconds must be within the 30 s clip, leaving time to start")
    if not Path(SYSTEM_PYTHON).exists():
        parser.error(f"{SYSTEM_PYTHON} (with GStreamer's bindings) is needed")

    print("$ " + shlex.join(["python", "benchmarks/versus_gst.py", *sys.argv[1:]]))
    gst = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('Gst', '1.0'); "
                          "from gi.repository import Gst; Gst.init(None); "
                          "print(Gst.version_string())"],
                         capture_output=True, text=True, check=True).stdout.strip()
    print(f"machine: {os.cpu_count()} cores, load average {_load():.2f}; "
          f"Python {sys.version.split()[0]}; PyAV {av.__version__}; {gst}")

    with tempfile.TemporaryDirectory(prefix="versus-gst-") as folder:
        movie = Path(folder) / f"{CLIP}.mkv"
        remux_to_mkv(args.source, movie)
        print(f"media: {args.source.name} remuxed to MKV (no re-encode), "
              f"{movie.stat().st_size / 1e6:.1f} MB, served by both as rtsp://…/{CLIP}")
        clip = MediaFile(movie)
        due = DueTimes(clip)
        servers: dict[str, Callable[[int], ServerProcess]] = {
            "rtsp-resume": lambda port: ServerProcess(Path(folder), port, workers=args.workers),
            "gst-rtsp-server": lambda port: GstServerProcess(movie, port),
        }
        table: dict[str, dict[str, str]] = {name: {} for name in servers}
        for name, start in servers.items():
            server = start(free_port())
            print(f"\n[{name}] $ {shlex.join(server.command)}", flush=True)
            try:
                table[name].update(measure_start(server, args.runs, args.seek))
            finally:
                server.stop()
            for n in args.sessions:
                result, load = one_level(name, start, n, args.seconds, due)
                table[name].update(load_cells(result, load))
                print(f"    N={n} done: {result.failed} failed, "
                      f"{100 * result.cpu_per_stream:.2f}% CPU per session", flush=True)

    names = list(servers)
    rows = list(table[names[0]])
    width = max(map(len, rows))
    print(f"\nSide by side: RTSP over TCP on loopback, {args.seconds:g} s window per level, "
          f"first frame/seek median of {args.runs} (min-max)")
    print(f"{'':<{width}}  " + "  ".join(f"{n:<26}" for n in names))
    for row in rows:
        print(f"{row:<{width}}  " + "  ".join(f"{table[n].get(row, '-'):<26}" for n in names))
    print("CPU per session: server user+system CPU / window / sessions started; late: "
          "arrival minus due time against the session's best packet (includes client delays)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
