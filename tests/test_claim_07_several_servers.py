"""Claim 7's system at an operator's scale: two streaming servers, two portal processes, one
PostgreSQL database, every one a real ``python -m rtsp_resume`` subprocess.

Each streaming server names itself (``--name``) and deposits its bookmarks on a different
portal process; both portals hand out plays to both servers in turn. A viewer logged in
through the first portal is interrupted on each server; both bookmarks are then listed
through either portal (the login is valid on both: it lives in the database), and the
resume works through the portal the viewer did not log in to, in the viewer's frame.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from live_support import wait_until
from story import DEADLINE, Service, frame_of, free_port

from rtsp_resume import tokens
from rtsp_resume.client import PortalClient
from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.player import Player

NAMES = ("site-a", "site-b")


def test_two_servers_and_two_portals_on_one_postgresql_act_as_one_system(
    tmp_path: Path, sample_dir: Path, postgres_url: str,
) -> None:
    data = tmp_path / "portal"  # what the portal processes share besides the database: the key
    tokens.load_or_create_secret(data / "secret")
    rtsp_ports, portal_ports = [free_port(), free_port()], [free_port(), free_port()]
    every_server = [a for port in rtsp_ports for a in ("--rtsp-url", f"rtsp://127.0.0.1:{port}")]
    with ExitStack() as stack:
        portals = [stack.enter_context(Service(
            "serve-portal", "--port", str(port), "--data", str(data), "--media", str(sample_dir),
            "--database", postgres_url, "--user", "alice:alice-pw", *every_server))
            for port in portal_ports]
        servers = [stack.enter_context(Service(
            "serve-rtsp", "--media", str(sample_dir), "--port", str(rtsp_port), "--name", name,
            "--portal-url", f"http://127.0.0.1:{portal_port}", "--secret-file",
            str(data / "secret"), "--outbox", str(tmp_path / f"{name}.db"),
            "--heartbeat-interval", "0.3", "--heartbeat-timeout", "1"))
            for name, rtsp_port, portal_port in zip(NAMES, rtsp_ports, portal_ports, strict=True)]
        for service in portals:
            service.wait_line("press Ctrl-C to stop")
        for service in servers:
            service.wait_line(r"/sample_slices ")

        viewer = PortalClient(f"http://127.0.0.1:{portal_ports[0]}")
        viewer.login("alice", "alice-pw")
        plays = [viewer.play("sample"), viewer.play("sample_slices")]  # one on each server
        for play, port in zip(plays, rtsp_ports, strict=True):
            assert play["url"].startswith(f"rtsp://127.0.0.1:{port}/"), play["url"]

        # A viewer on each server; both links are cut once 2 s of each were shown.
        cutters = [stack.enter_context(LinkCutter(to=("127.0.0.1", port)))
                   for port in rtsp_ports]
        players = [Player(cutter.url(play["url"].split("/", 3)[3])).start()
                   for cutter, play in zip(cutters, plays, strict=True)]
        for player in players:
            assert player.wait_for(lambda p=player: p.frames and p.frames[-1].pts >= 2.0,
                                   timeout=DEADLINE), player.error
        for cutter in cutters:
            cutter.cut()
        last_seen = [player.last_frame for player in players]

        # The same login, through the other portal process, lists both bookmarks.
        other = PortalClient(f"http://127.0.0.1:{portal_ports[1]}")
        other.user_id, other.user_token = viewer.user_id, viewer.user_token
        wait_until(lambda: len(other.bookmarks()) == 2, 2 * DEADLINE, "both bookmarks listed")
        for player in players:
            player.close_abruptly()
        listed = {m["ContentID"]: m for m in other.bookmarks()}
        assert listed == {m["ContentID"]: m for m in viewer.bookmarks()}
        assert set(listed) == {"sample", "sample_slices"}
        assert all(mark["ContentBM"] > 1.0 for mark in listed.values()), listed

        # Each server named itself in its logs and its BookMarkReq, each to its own portal.
        for name, server, portal in zip(NAMES, servers, portals, strict=True):
            server.wait_line(rf"{name} rtsp_resume.server WARNING session \w+ \(\w+, user "
                             r"alice\) interrupted")
            portal.wait_line(rf"BookMarkReq from {name} for alice: bookmark saved at")

        # The resume, through the portal process alice did not log in to, starts at her
        # bookmark's frame and skips nothing she had not seen.
        interface = other.bookmark_interface(listed["sample"])
        resumed = Player(interface["url"], start=float(interface["ContentBM"]), exact=True)
        try:
            assert resumed.start().wait_frames(1, timeout=DEADLINE), resumed.error
            first = resumed.frames[0]
        finally:
            resumed.stop()
        assert first.index == frame_of(interface["ContentBM"])
        assert last_seen[0] is not None and first.index <= last_seen[0].index + 1

        for service in portals:
            assert service.interrupt() == 0, service.output
