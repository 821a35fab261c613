"""Command line: ``python -m rtsp_resume COMMAND``.

Every command's flags are parsed here, and the commands that start the patent's parties
(``serve-rtsp``, ``serve-portal``, ``serve``, ``demo``) are wired here too; the tools
(``make-sample``, ``linkcut``) hand over to their module's ``main``. Modules are imported
only when their command runs, so ``make-sample`` never loads Bottle and ``serve-portal``
never loads the RTP code. The command names and flags are contracts (users, scripts and
notebooks rely on them); add new ones, never rename.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rtsp_resume", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}  # --help shows them
    # Flags several commands share, as parent parsers.
    heartbeat = argparse.ArgumentParser(add_help=False)
    heartbeat.add_argument("--heartbeat-interval", type=float, default=1.0, metavar="S",
                           help="seconds between server heartbeats (claim 2)")
    heartbeat.add_argument("--heartbeat-timeout", type=float, default=3.0, metavar="S",
                           help="no sign of life for this long = abnormal interruption (claim 8)")
    heartbeat.add_argument("--position", choices=["confirmed", "frames_sent"],
                           default="confirmed",
                           help="play position estimator written into the bookmark")
    heartbeat.add_argument("--playout-allowance", type=float, default=0.5, metavar="S",
                           help="subtracted from the confirmed position for the player's buffer")
    portal = argparse.ArgumentParser(add_help=False)
    portal.add_argument("--data", type=Path, default=Path("data"), help="folder for the portal's "
                        "database and the shared secret (serve: the outbox too)")
    portal.add_argument("--user", type=_user, action="append", default=[], metavar="NAME:PASSWORD",
                        help="an account (repeatable; serve without one: alice:wonderland and "
                             "bob:builder)")
    portal.add_argument("--play-token-ttl", type=float, default=300.0, metavar="S",
                        help="how long a play token may start sessions (a running one plays on)")
    portal.add_argument("--database", metavar="URL", help="sqlite:///FILE or postgresql://USER@"
                        "HOST:PORT/DB, which portal processes share (default: SQLite in --data)")

    p = sub.add_parser("make-sample", **defaults, help="write the sample clips with PyAV")
    p.add_argument("--out", type=Path, default=Path("sample_media"), help="folder to write to")
    p.add_argument("--missing-only", action="store_true",
                   help="only write files that do not exist yet")
    p.add_argument("--lesson", action="store_true",
                   help="also write lesson/lesson.mp4, the tour's ten-minute program")

    p = sub.add_parser("serve-rtsp", **defaults, parents=[heartbeat],
                       help="the streaming server (RTSP 1.0 / RTP)")
    p.add_argument("--media", type=Path, required=True, help="folder of MP4/MOV/MKV files")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8554, help="RTSP port (0: any free port)")
    p.add_argument("--portal-url", default=None,
                   help="portal base URL: enables play tokens and reverse bookmarks")
    p.add_argument("--secret-file", type=Path, default=None,
                   help="shared secret with the portal (default: PORTAL data dir's 'secret')")
    p.add_argument("--outbox", type=Path, default=None,
                   help="durable outbox for bookmark requests (SQLite file; worker n of "
                        "several keeps its own, the name ending in -n)")
    p.add_argument("--name", help="the server's name in its BookMarkReqs and log lines "
                   "(default: HOSTNAME:PORT)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), metavar="N",
                   help="processes sharing the RTSP port (SO_REUSEPORT), each an ordinary "
                        "streaming server (default: the CPUs this process may use)")

    p = sub.add_parser("serve-portal", **defaults, parents=[portal], help="the web portal (Bottle)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="the streaming server's media folder (for the catalogue)")
    p.add_argument("--rtsp-url", action="append", help="base URL of the streaming server, for "
                   "play URLs (repeatable: plays go to each in turn; default: rtsp://127.0.0.1:8554)")
    p.add_argument("--users-file", type=Path, default=None,
                   help="file of NAME:PASSWORD lines")

    p = sub.add_parser("serve", **defaults, parents=[heartbeat, portal],
                       help="portal and streaming server in one process")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="folder of MP4/MOV/MKV files to serve")
    p.add_argument("--host", default="127.0.0.1", help="address both servers listen on")
    p.add_argument("--rtsp-port", type=int, default=8554, help="the streaming server's port")
    p.add_argument("--portal-port", type=int, default=8080, help="the portal's HTTP port")

    p = sub.add_parser("linkcut", **defaults,
                       help="a relay in front of the server whose link you can cut")
    p.add_argument("--listen", type=_host_port, required=True, metavar="HOST:PORT",
                   help="where players connect")
    p.add_argument("--to", type=_host_port, required=True, metavar="HOST:PORT",
                   help="the streaming server")
    p.add_argument("--delay", type=float, default=0.0, metavar="S", help="added one-way delay")
    p.add_argument("--loss", type=float, default=0.0, metavar="P",
                   help="share of UDP datagrams dropped (0-1)")

    p = sub.add_parser("demo", **defaults, parents=[heartbeat],
                       help="the whole story end to end, headless")
    p.add_argument("--media", type=Path, default=Path("sample_media"),
                   help="folder holding sample.mp4")
    p.add_argument("--transport", choices=["tcp", "udp"], default="tcp",
                   help="how the player receives RTP")
    p.add_argument("--play-seconds", type=float, default=6.0,
                   help="how long to play before the link is cut")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill` (SIGTERM) stops every command as cleanly as Ctrl-C does: each one handles
    # KeyboardInterrupt, and this is the only place that turns the signal into it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    name = ""  # a streaming server names itself on every line: N servers' logs can mix
    if args.command == "serve-rtsp":
        args.name = args.name or f"{socket.gethostname()}:{args.port}"
        name = args.name.replace("%", "%%") + " "
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {name}%(name)s %(levelname)s %(message)s",
    )
    return COMMANDS[args.command](args)


def _wait_for(*sentinels: Any) -> None:
    """Block until a process sentinel is ready or a signal's handler raises (Ctrl-C). The
    kernel may give a signal to any thread, and Python runs handlers only on the main one:
    the wakeup fd wakes this thread whichever thread took the signal."""
    reader, writer = socket.socketpair()
    with reader, writer:
        writer.setblocking(False)
        previous = signal.set_wakeup_fd(writer.fileno())
        try:
            while reader in (ready := multiprocessing.connection.wait([*sentinels, reader])):
                reader.recv(64)  # a signal: its handler has run here, or runs on the next line
                if len(ready) > 1:
                    return
        finally:
            signal.set_wakeup_fd(previous)


def _server_config(args: argparse.Namespace, **settings: Any) -> Any:
    from rtsp_resume.session import ServerConfig

    shared = ("heartbeat_interval", "heartbeat_timeout", "position", "playout_allowance")
    return ServerConfig(**{name: getattr(args, name) for name in shared}, **settings)


def serve_rtsp(args: argparse.Namespace) -> int:
    """Serve a folder until Ctrl-C; with ``--portal-url``, bookmark interruptions there."""
    from rtsp_resume import tokens
    from rtsp_resume.media import MediaLibrary

    if not args.media.is_dir():
        print(f"serve-rtsp: {args.media} is not a folder of media files", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("serve-rtsp: --workers must be 1 or more", file=sys.stderr)
        return 2
    # Read (or made) once, before any worker starts: every worker signs with the same key.
    secret = args.secret_file or Path("data") / "secret"
    key = tokens.load_or_create_secret(secret) if args.portal_url else None
    with contextlib.ExitStack() as running:
        try:
            workers = _start_workers(args, key) if args.workers > 1 else []
            running.callback(_stop_workers, workers)
            if not workers:
                args.port = running.enter_context(_streaming_server(args, key)).port
            for media in MediaLibrary(args.media).list():
                print(f"  rtsp://{args.host}:{args.port}/{media.content_id}  "
                      f"({media.duration:.1f} s)", flush=True)
            _wait_for(*(w.sentinel for w in workers))  # none: until Ctrl-C
            print("serve-rtsp: a worker stopped; stopping the others", file=sys.stderr)
            return 1
        except OSError as exc:  # e.g. the port is taken: say so, without a traceback
            print(f"serve-rtsp: cannot listen on {args.host}:{args.port}: {exc}",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopped")
    return 0


def _streaming_server(args: argparse.Namespace, key: bytes | None, worker: int = 0,
                      sock: socket.socket | None = None) -> Any:
    """``serve-rtsp``'s server, to start; ``worker`` n of several has an outbox of its own."""
    from rtsp_resume.server import StreamingServer

    listeners = []
    if key is not None:
        from rtsp_resume.bookmark_outbox import BookmarkOutbox

        outbox = args.outbox or Path("data") / "outbox.db"
        outbox = outbox.with_stem(f"{outbox.stem}-{worker}") if worker else outbox
        listeners.append(BookmarkOutbox(args.portal_url, key, outbox, name=args.name)
                         .start().submit)
    config = _server_config(args, host=args.host, port=args.port, token_key=key)
    server = StreamingServer(args.media, config, listeners)
    server.sock = sock
    return server


def _start_workers(args: argparse.Namespace, key: bytes | None) -> list[Any]:
    """``--workers N``: N forked processes, each accepting on a socket of its own, all on one
    port (SO_REUSEPORT: the kernel spreads new connections over them)."""
    with socket.create_server((args.host, args.port)) as probe:  # nobody there? which for 0?
        args.port = probe.getsockname()[1]
    # Forked before this process has threads or media; each keeps main's SIGTERM handler.
    context, workers = multiprocessing.get_context("fork"), []
    for n in range(1, args.workers + 1):
        # Listening before the fork (nothing to wait for), closed here after it: each worker
        # holds only its own. Connections inherit TCP_NODELAY (asyncio sets it only on its own).
        with socket.create_server((args.host, args.port), reuse_port=True) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            workers.append(context.Process(target=_worker, args=(args, key, n, sock),
                                           name=f"worker {n}", daemon=True))
            workers[-1].start()
    return workers


def _stop_workers(workers: list[Any], deadline: float = 3.0) -> None:
    """SIGTERM each worker (a clean stop); kill one still running after ``deadline`` s."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(deadline)
        if worker.is_alive():
            worker.kill()


def _worker(args: argparse.Namespace, key: bytes | None, number: int,
            sock: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    who = f"worker {number} {args.name}".replace("%", "%%")  # still named, as main() does
    logging.basicConfig(force=True, level=logging.getLogger().level,
                        format=f"%(asctime)s {who} %(name)s %(levelname)s %(message)s")
    try:
        with _streaming_server(args, key, number, sock):
            _wait_for(multiprocessing.parent_process().sentinel)  # a parent killed outright
    except OSError as exc:
        sys.exit(f"serve-rtsp: worker {number}: {exc}")
    except KeyboardInterrupt:  # SIGTERM from the parent
        pass


def serve_portal(args: argparse.Namespace) -> int:
    """Run the portal in the foreground until Ctrl-C."""
    from rtsp_resume.portal import PortalServer, read_users_file
    from rtsp_resume.portal.service import SECRET_FILE
    from rtsp_resume.portal.store import StorageError

    rtsp_urls = args.rtsp_url or ["rtsp://127.0.0.1:8554"]
    try:
        users = list(args.user) + (read_users_file(args.users_file) if args.users_file else [])
        server = PortalServer(args.data, args.media, rtsp_urls, users, args.host, args.port,
                              play_ttl=args.play_token_ttl, database=args.database)
    except (ValueError, OSError, StorageError) as exc:
        print(f"portal: cannot start: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C may come as soon as the first line is out, and must still stop cleanly.
    try:
        accounts = ", ".join(server.store.users()) or (
            "none yet: add --user NAME:PASSWORD or --users-file FILE")
        database = (args.database or "sqlite").partition(":")[0]  # no password shown
        print(f"portal: {server.url}/  (API description: {server.url}/api/openapi.yaml)\n"
              f"portal: data in {server.data_dir.resolve()} (database: {database}), shared "
              f"secret in {(server.data_dir / SECRET_FILE).resolve()}\n"
              f"portal: play URLs under {', '.join(rtsp_urls)}\nportal: accounts: {accounts}\n"
              "portal: press Ctrl-C to stop", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("portal: stopped", flush=True)
    finally:
        server.stop()
    return 0


def serve(args: argparse.Namespace) -> int:
    """Both servers in one process (claim 7's system) until Ctrl-C."""
    from rtsp_resume.together import DEMO_USERS, System

    config = _server_config(args)
    users = args.user or DEMO_USERS
    with System(args.media, args.data, users, host=args.host, rtsp_port=args.rtsp_port,
                portal_port=args.portal_port, config=config, play_ttl=args.play_token_ttl,
                database=args.database) as system:
        print(f"portal:    {system.portal_url}/\n"
              f"streaming: {system.rtsp_url}/<ContentID> (play URLs come from the portal)\n"
              "accounts:  " + ", ".join(f"{name} / {password}" for name, password in users) +
              f"\nheartbeat: every {config.heartbeat_interval:g} s, interrupted after "
              f"{config.heartbeat_timeout:g} s of silence; press Ctrl-C to stop", flush=True)
        try:
            _wait_for()
        except KeyboardInterrupt:
            print("stopping")
    return 0


def demo(args: argparse.Namespace) -> int:
    from rtsp_resume.demo import run

    if not args.verbose:  # the timeline tells the story; the servers' logs would drown it
        logging.getLogger("rtsp_resume").setLevel(logging.ERROR)
    return run(str(args.media), args.transport, args.play_seconds, _server_config(args))


def _tool(module: str, args: argparse.Namespace) -> int:
    return int(importlib.import_module(f"rtsp_resume.{module}").main(args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "make-sample": functools.partial(_tool, "sample"),
    "linkcut": functools.partial(_tool, "linkcut"), "serve-rtsp": serve_rtsp,
    "serve-portal": serve_portal, "serve": serve, "demo": demo}
