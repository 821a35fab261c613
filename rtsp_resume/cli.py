"""Command line: ``python -m rtsp_resume COMMAND``.

Every command parses its flags here and hands them to the module that does the work,
imported only when that command runs so that ``make-sample`` never loads Bottle and
``serve-portal`` never loads the RTP code. The command names and flags are contracts
(users, scripts and notebooks rely on them); add new ones, never rename.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def _user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def _add_heartbeat_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heartbeat-interval", type=float, default=1.0, metavar="S",
                   help="seconds between server heartbeats (claim 2)")
    p.add_argument("--heartbeat-timeout", type=float, default=3.0, metavar="S",
                   help="no sign of life for this long = abnormal interruption (claim 8)")
    p.add_argument("--position", choices=["confirmed", "frames_sent"], default="confirmed",
                   help="play position estimator written into the bookmark")
    p.add_argument("--playout-allowance", type=float, default=0.5, metavar="S",
                   help="subtracted from the confirmed position for the player's buffer")


def _add_play_token_ttl(p: argparse.ArgumentParser) -> None:
    p.add_argument("--play-token-ttl", type=float, default=300.0, metavar="S",
                   help="how long a play token may start sessions (a running one plays on)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rtsp_resume", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}  # --help shows them

    p = sub.add_parser("make-sample", **defaults, help="write the sample clips with PyAV")
    p.add_argument("--out", type=Path, default=Path("sample_media"), help="folder to write to")
    p.add_argument("--missing-only", action="store_true",
                   help="only write files that do not exist yet")

    p = sub.add_parser("serve-rtsp", **defaults, help="the streaming server (RTSP 1.0 / RTP)")
    p.add_argument("--media", type=Path, required=True, help="folder of MP4/MOV/MKV files")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8554, help="RTSP port (0: any free port)")
    p.add_argument("--portal-url", default=None,
                   help="portal base URL: enables play tokens and reverse bookmarks")
    p.add_argument("--secret-file", type=Path, default=None,
                   help="shared secret with the portal (default: PORTAL data dir's 'secret')")
    p.add_argument("--outbox", type=Path, default=None,
                   help="durable outbox for bookmark requests (SQLite file)")
    _add_heartbeat_flags(p)

    p = sub.add_parser("serve-portal", **defaults, help="the web portal (Bottle)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    p.add_argument("--data", type=Path, default=Path("data"), help="folder for SQLite and secret")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="the streaming server's media folder (for the catalogue)")
    p.add_argument("--rtsp-url", default="rtsp://127.0.0.1:8554",
                   help="base URL of the streaming server, for play URLs")
    p.add_argument("--user", type=_user, action="append", default=[], metavar="NAME:PASSWORD",
                   help="an account (repeatable)")
    p.add_argument("--users-file", type=Path, default=None,
                   help="file of NAME:PASSWORD lines")
    _add_play_token_ttl(p)

    p = sub.add_parser("serve", **defaults, help="portal and streaming server in one process")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="folder of MP4/MOV/MKV files to serve")
    p.add_argument("--host", default="127.0.0.1", help="address both servers listen on")
    p.add_argument("--rtsp-port", type=int, default=8554, help="the streaming server's port")
    p.add_argument("--portal-port", type=int, default=8080, help="the portal's HTTP port")
    p.add_argument("--data", type=Path, default=Path("data"),
                   help="folder for the portal's database, the outbox and the shared secret")
    p.add_argument("--user", type=_user, action="append", default=[], metavar="NAME:PASSWORD",
                   help="an account (repeatable; none given: alice:wonderland and bob:builder)")
    _add_heartbeat_flags(p)
    _add_play_token_ttl(p)

    p = sub.add_parser("linkcut", **defaults,
                       help="a relay in front of the server whose link you can cut")
    p.add_argument("--listen", type=_host_port, required=True, metavar="HOST:PORT",
                   help="where players connect")
    p.add_argument("--to", type=_host_port, required=True, metavar="HOST:PORT",
                   help="the streaming server")
    p.add_argument("--delay", type=float, default=0.0, metavar="S", help="added one-way delay")
    p.add_argument("--loss", type=float, default=0.0, metavar="P",
                   help="share of UDP datagrams dropped (0-1)")

    p = sub.add_parser("demo", **defaults, help="the whole story end to end, headless")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="folder holding sample.mp4")
    p.add_argument("--transport", choices=["tcp", "udp"], default="tcp",
                   help="how the player receives RTP")
    p.add_argument("--play-seconds", type=float, default=6.0,
                   help="how long to play before the link is cut")
    _add_heartbeat_flags(p)
    return parser


# Each command's module, whose main(args) does the work.
COMMANDS = {"make-sample": "sample", "serve-rtsp": "server", "serve-portal": "portal",
            "serve": "together", "linkcut": "linkcut", "demo": "demo"}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill` (SIGTERM) stops every command as cleanly as Ctrl-C does: each one handles
    # KeyboardInterrupt, and this is the only place that turns the signal into it.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Imported only now, so that make-sample never loads Bottle, serve-portal never RTP.
    module = importlib.import_module(f"rtsp_resume.{COMMANDS[args.command]}")
    return int(module.main(args))
