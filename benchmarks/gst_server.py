"""gst-rtsp-server serving one Matroska file, the reference that versus_gst.py compares with.

Run with the system Python, which has GStreamer's bindings (python3-gst-1.0 and
gir1.2-gst-rtsp-server-1.0); the project's venv does not:

    /usr/bin/python3 benchmarks/gst_server.py --file sample.mkv --mount sample --port 8554

Serves ``rtsp://127.0.0.1:<port>/<mount>`` with H.264 video (pt 96) and AAC audio (pt 97,
RFC 3640) taken from the file without re-encoding. The factory is not shared, so every
client gets a pipeline of its own, as every session of our server reads the file on its
own. Prints the URL once it listens; Ctrl-C (SIGINT) or SIGTERM stops it with status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def launch_line(movie: Path) -> str:
    # matroskademux rather than qtdemux: gst-rtsp-server hangs on a seek in an MP4 that
    # has audio. config-interval=-1 repeats SPS/PPS before every keyframe, so a client
    # that joins (or seeks) can decode at once, as our server does.
    location = str(movie.resolve()).replace('"', '\\"')
    return (
        f'( filesrc location="{location}" ! matroskademux name=d '
        "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, required=True, help="a .mkv with H.264 + AAC")
    parser.add_argument("--mount", default="sample", help="path of the URL")
    parser.add_argument("--port", type=int, default=8554)
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"no such file: {args.file}")

    # Imported here: gi must be told the versions before the modules load.
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file))
    factory.set_shared(False)
    server.get_mount_points().add_factory("/" + args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: loop.quit() or False)
    print(f"gst-rtsp-server {Gst.version_string()} on rtsp://127.0.0.1:{args.port}/{args.mount}",
          flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
