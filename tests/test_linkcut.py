"""The link you can cut: a real relay on 127.0.0.1 between test sockets.

Each test holds both ends itself (the "terminal" socket and the "server" socket the relay
connected to), so it can say exactly what crossed the link in each direction. Waits are
on data or counters with deadlines; the only fixed waits are the short negative checks
that nothing arrives while the link is cut.
"""

from __future__ import annotations

import asyncio
import os
import pty
import queue
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import pytest
from conftest import require_system_tool

from rtsp_resume.linkcut import LinkCutter
from rtsp_resume.rtsp import InterleavedFrame, Transport, parse_transport

DEADLINE = 5.0
QUIET = 0.3  # how long a negative check listens for something that must not come


# -- helpers ---------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def recv_exactly(sock: socket.socket, size: int, timeout: float = DEADLINE) -> bytes:
    end = time.monotonic() + timeout
    data = b""
    while len(data) < size:
        sock.settimeout(max(end - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def recv_head(sock: socket.socket, timeout: float = DEADLINE) -> bytes:
    """One RTSP message without body, read up to its blank line and no further."""
    end = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        sock.settimeout(max(end - time.monotonic(), 0.001))
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"EOF inside a message: {data!r}")
        data += byte
    return data


def recv_eof(sock: socket.socket, timeout: float = DEADLINE) -> None:
    sock.settimeout(timeout)
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        return
    assert rest == b"", f"expected the connection to end, got {rest!r}"


def assert_quiet(*socks: socket.socket, seconds: float = QUIET) -> None:
    """Nothing readable: no data, no EOF, no reset (all three make a socket readable)."""
    readable, _, _ = select.select(list(socks), [], [], seconds)
    assert readable == [], "something arrived while the link was cut"


def recv_dgram(sock: socket.socket, timeout: float = DEADLINE) -> tuple[bytes, tuple[str, int]]:
    sock.settimeout(timeout)
    data, addr = sock.recvfrom(65536)
    return data, addr


def udp_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


class Upstream:
    """A listening socket standing in for the streaming server."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.listener.getsockname()
        self.accepted: list[socket.socket] = []

    def accept(self, timeout: float = DEADLINE) -> socket.socket:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        self.accepted.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.accepted:
            sock.close()
        self.listener.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def relay(upstream: Upstream) -> Iterator[LinkCutter]:
    with LinkCutter(listen=("127.0.0.1", 0), to=upstream.address) as cutter:
        yield cutter


def connect_pair(cutter: LinkCutter, upstream: Upstream) -> tuple[socket.socket, socket.socket]:
    """A terminal connection through the relay and the server's end of it."""
    client = socket.create_connection(cutter.address, timeout=DEADLINE)
    return client, upstream.accept()


def frame(payload: bytes, channel: int = 0) -> bytes:
    """An interleaved frame (RFC 2326 §10.12): the relay carries RTSP, not any bytes."""
    return bytes(InterleavedFrame(channel, payload))


def round_trip(client: socket.socket, server: socket.socket, up: bytes, down: bytes) -> None:
    client.sendall(up)
    assert recv_exactly(server, len(up)) == up
    server.sendall(down)
    assert recv_exactly(client, len(down)) == down


# -- plain TCP ---------------------------------------------------------------------------


def test_echo_server_behind_the_relay(relay: LinkCutter, upstream: Upstream) -> None:
    client, server = connect_pair(relay, upstream)

    def echo() -> None:
        while data := server.recv(65536):
            server.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    sent = 0
    for i in range(20):
        message = frame(f"message {i} ".encode() * (i + 1))
        client.sendall(message)
        assert recv_exactly(client, len(message)) == message
        sent += len(message)
    counters = relay.counters()
    assert (counters.up.tcp_bytes, counters.down.tcp_bytes) == (sent, sent)
    assert counters.connections == 1
    client.close()


def test_cut_silences_both_ways_keeps_sockets_open_and_discards(
    relay: LinkCutter, upstream: Upstream
) -> None:
    client, server = connect_pair(relay, upstream)
    round_trip(client, server, frame(b"ping before"), frame(b"pong before"))

    relay.cut()
    assert relay.is_cut
    client.sendall(frame(b"up while cut"))
    server.sendall(frame(b"down while cut"))
    assert_quiet(client, server)
    # The relay has read (and thrown away) both, so nothing is left in flight to leak
    # through after the restore.
    wait_for(
        lambda: (
            relay.counters().up.tcp_bytes_cut == len(frame(b"up while cut"))
            and relay.counters().down.tcp_bytes_cut == len(frame(b"down while cut"))
        ),
        "the relay to discard what was sent during the cut",
    )

    relay.restore()
    assert not relay.is_cut
    # Byte streams keep their order: had the discarded bytes been queued, they would
    # come first here.
    round_trip(client, server, frame(b"up after"), frame(b"down after"))
    counters = relay.counters()
    assert counters.cuts == 1
    assert counters.up.tcp_bytes == len(frame(b"ping before") + frame(b"up after"))
    assert counters.down.tcp_bytes == len(frame(b"pong before") + frame(b"down after"))


def test_a_cut_in_the_middle_of_a_message_drops_the_whole_message(
    relay: LinkCutter, upstream: Upstream
) -> None:
    client, server = connect_pair(relay, upstream)
    first = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    round_trip(client, server, first, b"")
    begun = b"GET_PARAMETER rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\n"  # head unfinished
    client.sendall(begun)
    wait_for(
        lambda: relay.counters().up.tcp_bytes_received == len(first + begun),
        "the relay to read the first half of the message",
    )
    relay.cut()
    relay.restore()
    client.sendall(b"Session: 1\r\n\r\n")  # completes a message begun before the cut
    complete = b"OPTIONS * RTSP/1.0\r\nCSeq: 3\r\n\r\n"
    client.sendall(complete)
    assert recv_exactly(server, len(complete)) == complete
    assert relay.counters().up.tcp_bytes_cut == len(
        b"GET_PARAMETER rtsp://h/a RTSP/1.0\r\nCSeq: 2\r\nSession: 1\r\n\r\n"
    )


def test_a_close_during_a_cut_reaches_the_other_side_only_after_restore(
    relay: LinkCutter, upstream: Upstream
) -> None:
    client, server = connect_pair(relay, upstream)
    round_trip(client, server, frame(b"hello"), frame(b"world"))
    relay.cut()
    server.close()  # the server gives up on the terminal while the radio is down
    assert_quiet(client)
    relay.restore()
    recv_eof(client)
    wait_for(lambda: relay.counters().connections == 0, "the relay to forget the connection")


def test_a_reset_during_a_cut_is_held_like_a_close(relay: LinkCutter, upstream: Upstream) -> None:
    client, server = connect_pair(relay, upstream)
    round_trip(client, server, frame(b"hello"), frame(b"world"))
    relay.cut()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # a reset, as a server that gives up on the terminal sends
    assert_quiet(client)
    relay.restore()
    recv_eof(client)


def test_a_terminal_that_vanishes_during_a_cut_is_not_seen_by_the_server(
    relay: LinkCutter, upstream: Upstream
) -> None:
    client, server = connect_pair(relay, upstream)
    round_trip(client, server, frame(b"hello"), frame(b"world"))
    relay.cut()
    client.close()
    assert_quiet(server)
    server.sendall(frame(b"still there?"))  # the relay reads it, the link drops it
    wait_for(lambda: relay.counters().down.tcp_bytes_cut == 16, "the write to be discarded")
    relay.restore()
    recv_eof(server)


def test_a_receiver_that_does_not_read_holds_back_its_sender_and_nobody_else(
    relay: LinkCutter, upstream: Upstream,
) -> None:
    stalled_client, stalled_server = connect_pair(relay, upstream)  # never reads, for now
    other_client, other_server = connect_pair(relay, upstream)
    big = frame(b"x" * 65535)
    stalled_client.settimeout(2.0)
    with pytest.raises(TimeoutError):  # 64 MiB do not fit: the relay stopped reading
        stalled_client.sendall(big * 1024)
    assert relay.counters().up.tcp_bytes_received < 32 << 20
    round_trip(other_client, other_server, frame(b"still"), frame(b"flowing"))
    # Once the receiver reads, the held-back bytes flow on, in order and unchanged.
    stalled_server.settimeout(DEADLINE)
    assert stalled_server.recv(len(big), socket.MSG_WAITALL) == big
    assert relay.counters().up.tcp_bytes_cut == 0


# -- RTSP framing -----------------------------------------------------------------------


def rtsp_traffic(rng: random.Random) -> bytes:
    """Requests, responses with bodies and interleaved frames of many sizes."""
    sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=clip\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
    parts = [
        b"OPTIONS rtsp://127.0.0.1/clip RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: %d\r\n\r\n" % len(sdp) + sdp,
        b"SETUP rtsp://127.0.0.1/clip/track1 RTSP/1.0\r\nCSeq: 3\r\n"
        b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n",
        b"$\x00\x00\x00",
        b"$\x01" + (65535).to_bytes(2, "big") + rng.randbytes(65535),
    ]
    for i in range(30):
        payload = rng.randbytes(rng.randrange(1, 3000))
        # Frames whose payload starts like RTSP text must not confuse the framing.
        if i % 7 == 0:
            payload = b"RTSP/1.0 200 OK\r\n\r\n" + payload
        parts.append(b"$" + bytes([i % 4]) + len(payload).to_bytes(2, "big") + payload)
        if i % 10 == 0:
            parts.append(b"GET_PARAMETER rtsp://127.0.0.1/clip RTSP/1.0\r\nCSeq: %d\r\n\r\n" % i)
    return b"".join(parts)


def send_in_random_chunks(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 3, 4, 5, 100, 1500, 70000])
        sock.sendall(data[pos : pos + size])
        pos += size


def test_rtsp_messages_and_interleaved_frames_pass_byte_identical(
    relay: LinkCutter, upstream: Upstream
) -> None:
    rng = random.Random(4)
    client, server = connect_pair(relay, upstream)
    traffic = rtsp_traffic(rng)
    sender = threading.Thread(target=send_in_random_chunks, args=(client, traffic, rng))
    sender.start()
    assert recv_exactly(server, len(traffic)) == traffic
    sender.join()
    back = rtsp_traffic(random.Random(5))
    send_in_random_chunks(server, back, random.Random(6))
    assert recv_exactly(client, len(back)) == back


def test_a_stream_that_is_not_rtsp_is_ended_both_ways(
    relay: LinkCutter, upstream: Upstream
) -> None:
    # The relay carries RTSP only; junk ends the connection, as the server would end it.
    client, server = connect_pair(relay, upstream)
    round_trip(client, server, frame(b"hello"), frame(b"world"))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_eof(client)
    recv_eof(server)
    wait_for(lambda: relay.counters().connections == 0, "the relay to forget the connection")


# -- UDP through the SETUP exchange -------------------------------------------------------


@dataclass
class UdpSession:
    client: socket.socket  # terminal's RTSP connection
    server: socket.socket  # server's end
    client_rtp: socket.socket
    client_rtcp: socket.socket
    server_rtp: socket.socket
    server_rtcp: socket.socket
    relay_for_server: tuple[int, int]  # what the server was told are the client's ports
    relay_for_client: tuple[int, int]  # what the terminal was told are the server's ports
    relay_host: str  # the address the terminal reaches the relay at


def transport_of(message: bytes) -> Transport:
    match = re.search(rb"\r\nTransport: ([^\r\n]*)", message)
    assert match, message
    (spec,) = parse_transport(match.group(1).decode())
    return spec


def without_transport(message: bytes) -> bytes:
    return re.sub(rb"\r\nTransport: [^\r\n]*", b"", message)


def set_up_udp(cutter: LinkCutter, upstream: Upstream, session: str = "12345678") -> UdpSession:
    """A SETUP over UDP through the relay, with a fake server answering it."""
    client, server = connect_pair(cutter, upstream)
    relay_host = cutter.address[0]
    client_rtp, client_rtcp = udp_socket(), udp_socket()
    server_rtp, server_rtcp = udp_socket(), udp_socket()
    a, b = client_rtp.getsockname()[1], client_rtcp.getsockname()[1]
    request = (
        b"SETUP %s RTSP/1.0\r\nCSeq: 3\r\nUser-Agent: test\r\n"
        b"Transport: RTP/AVP/UDP;unicast;client_port=%d-%d\r\n\r\n"
        % (cutter.url("clip/track1").encode(), a, b)
    )
    client.sendall(request)
    seen = recv_head(server)
    offered = transport_of(seen)
    assert offered.client_port is not None
    p, q = offered.client_port
    assert p % 2 == 0 and q == p + 1, "RTP on an even port, RTCP on the next"
    assert {p, q}.isdisjoint({a, b})
    assert without_transport(seen) == without_transport(request)
    assert offered == Transport("RTP/AVP/UDP", "unicast", client_port=(p, q))

    c, d = server_rtp.getsockname()[1], server_rtcp.getsockname()[1]
    reply = (
        b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: %s;timeout=60\r\n"
        b"Transport: RTP/AVP/UDP;unicast;client_port=%d-%d;server_port=%d-%d;"
        b"source=127.0.0.1;ssrc=1234ABCD\r\n\r\n" % (session.encode(), p, q, c, d)
    )
    server.sendall(reply)
    answer = recv_head(client)
    transport = transport_of(answer)
    assert transport.server_port is not None
    x, y = transport.server_port
    assert x % 2 == 0 and y == x + 1 and {x, y}.isdisjoint({c, d})
    assert transport == Transport("RTP/AVP/UDP", "unicast", source=relay_host,
                                  client_port=(a, b), server_port=(x, y), ssrc=0x1234ABCD)
    assert without_transport(answer) == without_transport(reply)
    return UdpSession(
        client,
        server,
        client_rtp,
        client_rtcp,
        server_rtp,
        server_rtcp,
        (p, q),
        (x, y),
        relay_host,
    )


def test_setup_over_udp_rewrites_ports_and_relays_rtp_and_rtcp_both_ways(
    upstream: Upstream,
) -> None:
    # Listening on another loopback address shows which side each address belongs to.
    with LinkCutter(listen=("127.0.0.2", 0), to=upstream.address) as cutter:
        s = set_up_udp(cutter, upstream)
        assert s.relay_host == "127.0.0.2"
        p, q = s.relay_for_server
        x, y = s.relay_for_client

        s.server_rtp.sendto(b"rtp down", ("127.0.0.1", p))
        assert recv_dgram(s.client_rtp) == (b"rtp down", ("127.0.0.2", x))
        s.server_rtcp.sendto(b"sender report", ("127.0.0.1", q))
        assert recv_dgram(s.client_rtcp) == (b"sender report", ("127.0.0.2", y))
        s.client_rtcp.sendto(b"receiver report", ("127.0.0.2", y))
        assert recv_dgram(s.server_rtcp) == (b"receiver report", ("127.0.0.1", q))
        s.client_rtp.sendto(b"hole punch", ("127.0.0.2", x))
        assert recv_dgram(s.server_rtp) == (b"hole punch", ("127.0.0.1", p))

        counters = cutter.counters()
        assert (counters.up.udp_datagrams, counters.down.udp_datagrams) == (2, 2)


def test_a_cut_silences_udp_too_and_what_it_dropped_never_arrives(upstream: Upstream) -> None:
    with LinkCutter(listen=("127.0.0.2", 0), to=upstream.address) as cutter:
        s = set_up_udp(cutter, upstream)
        p, _ = s.relay_for_server
        _, y = s.relay_for_client
        cutter.cut()
        s.server_rtp.sendto(b"lost rtp", ("127.0.0.1", p))
        s.client_rtcp.sendto(b"lost rr", ("127.0.0.2", y))
        s.server.sendall(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")  # a heartbeat, lost too
        assert_quiet(s.client_rtp, s.server_rtcp, s.client)
        wait_for(
            lambda: (
                cutter.counters().down.udp_datagrams_cut == 1
                and cutter.counters().up.udp_datagrams_cut == 1
            ),
            "both datagrams to be discarded",
        )
        cutter.restore()
        s.server_rtp.sendto(b"rtp again", ("127.0.0.1", p))
        assert recv_dgram(s.client_rtp)[0] == b"rtp again"
        s.client_rtcp.sendto(b"rr again", ("127.0.0.2", y))
        assert recv_dgram(s.server_rtcp)[0] == b"rr again"
        relay_ports = [*s.relay_for_server, *s.relay_for_client]
    # stop() released every UDP port it had opened.
    for port in relay_ports:
        host = "127.0.0.1" if port in s.relay_for_server else "127.0.0.2"
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, port))
        udp.close()


def udp_accounted(cutter: LinkCutter, count: int) -> bool:
    c = cutter.counters()
    return all(d.udp_datagrams + d.udp_datagrams_lost == count for d in (c.up, c.down))


def test_a_refused_setup_releases_the_ports_the_relay_offered(
    relay: LinkCutter, upstream: Upstream
) -> None:
    client, server = connect_pair(relay, upstream)
    request = (
        b"SETUP rtsp://h/clip/track1 RTSP/1.0\r\nCSeq: 4\r\n"
        b"Transport: RTP/AVP;unicast;client_port=40000-40001\r\n\r\n"
    )
    client.sendall(request)
    offered = transport_of(recv_head(server)).client_port
    assert offered is not None and offered != (40000, 40001)
    refusal = b"RTSP/1.0 461 Unsupported Transport\r\nCSeq: 4\r\n\r\n"
    server.sendall(refusal)
    assert recv_head(client) == refusal
    for port in offered:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))  # free again
        udp.close()


def test_an_unreachable_server_ends_the_terminal_connection() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    nobody = probe.getsockname()
    probe.close()
    with LinkCutter(to=nobody) as cutter:
        client = socket.create_connection(cutter.address, timeout=DEADLINE)
        recv_eof(client)
        wait_for(lambda: cutter.counters().connections == 0, "the relay to forget it")


def test_loss_one_drops_every_datagram_and_zero_none(upstream: Upstream) -> None:
    for loss, expect_delivered in ((1.0, 0), (0.0, 40)):
        with LinkCutter(to=upstream.address, loss=loss) as cutter:
            s = set_up_udp(cutter, upstream, session=f"loss{loss}")
            p, _ = s.relay_for_server
            x, _ = s.relay_for_client
            for i in range(40):
                s.server_rtp.sendto(b"down %d" % i, ("127.0.0.1", p))
                s.client_rtp.sendto(b"up %d" % i, ("127.0.0.1", x))
            wait_for(partial(udp_accounted, cutter, 40), "every datagram to be relayed or lost")
            counters = cutter.counters()
            assert counters.up.udp_datagrams == counters.down.udp_datagrams == expect_delivered
            received = [recv_dgram(s.client_rtp)[0] for _ in range(expect_delivered)]
            assert received == [b"down %d" % i for i in range(expect_delivered)]
            received = [recv_dgram(s.server_rtp)[0] for _ in range(expect_delivered)]
            assert received == [b"up %d" % i for i in range(expect_delivered)]
            assert_quiet(s.client_rtp, s.server_rtp, seconds=0)


def test_seeded_loss_is_reproducible(upstream: Upstream) -> None:
    def delivered(seed: int) -> list[bytes]:
        with LinkCutter(to=upstream.address, loss=0.3, seed=seed) as cutter:
            s = set_up_udp(cutter, upstream)
            p, _ = s.relay_for_server
            for i in range(60):
                s.server_rtp.sendto(b"%d" % i, ("127.0.0.1", p))
            wait_for(
                lambda: (
                    cutter.counters().down.udp_datagrams + cutter.counters().down.udp_datagrams_lost
                    == 60
                ),
                "every datagram to be relayed or lost",
            )
            count = cutter.counters().down.udp_datagrams
            return [recv_dgram(s.client_rtp)[0] for _ in range(count)]

    first, again, other = delivered(7), delivered(7), delivered(8)
    assert first == again
    assert 0 < len(first) < 60 and first != other


def test_delay_holds_each_direction_and_keeps_order(upstream: Upstream) -> None:
    delay = 0.15
    with LinkCutter(to=upstream.address, delay=delay) as cutter:
        s = set_up_udp(cutter, upstream)  # SETUP and its answer crossed with the delay
        started = time.monotonic()
        s.client.sendall(frame(b"ping"))
        assert recv_exactly(s.server, 8) == frame(b"ping")
        s.server.sendall(frame(b"pong"))
        assert recv_exactly(s.client, 8) == frame(b"pong")
        assert time.monotonic() - started >= 2 * delay

        p, _ = s.relay_for_server
        started = time.monotonic()
        for i in range(20):
            s.server_rtp.sendto(b"%d" % i, ("127.0.0.1", p))
        received = [recv_dgram(s.client_rtp)[0] for _ in range(20)]
        assert time.monotonic() - started >= delay
        assert received == [b"%d" % i for i in range(20)]


def test_a_cut_drops_what_was_still_in_flight(upstream: Upstream) -> None:
    with LinkCutter(to=upstream.address, delay=0.2) as cutter:
        client, server = connect_pair(cutter, upstream)
        client.sendall(frame(b"in flight"))
        wait_for(lambda: cutter.counters().up.tcp_bytes_received == 13, "the relay to read it")
        cutter.cut()
        cutter.restore()
        client.sendall(frame(b"next"))
        assert recv_exactly(server, 8) == frame(b"next")
        assert cutter.counters().up.tcp_bytes_cut == len(frame(b"in flight"))


def listening(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (asked of the kernel, not by connecting:
    FFmpeg's listen mode takes exactly one connection)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return any(row[1].endswith(f":{port:04X}") and row[3] == "0A" for row in rows)


def test_real_ffmpeg_peers_over_udp_through_the_relay() -> None:
    # FFmpeg on both ends: an RTSP server in listen (RECORD) mode and a publisher. The
    # media crosses only if the relay rewrote both Transport headers correctly, since
    # neither FFmpeg knows the other's UDP ports.
    ffmpeg = require_system_tool("ffmpeg", "/usr/bin/ffmpeg")
    probe = socket.create_server(("127.0.0.1", 0))
    server_port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-nostats", "-rtsp_flags", "listen", "-rtsp_transport", "udp",
         "-i", f"rtsp://127.0.0.1:{server_port}/live", "-f", "null", "-"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: listening(server_port), "FFmpeg to listen", timeout=15)
        with LinkCutter(to=("127.0.0.1", server_port)) as cutter:
            publisher = subprocess.run(
                [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                 "-i", "testsrc=size=160x120:rate=25", "-frames:v", "50", "-c:v", "libx264",
                 "-preset", "ultrafast", "-g", "25", "-f", "rtsp", "-rtsp_transport", "udp",
                 cutter.url("live")],
                capture_output=True,
                text=True,
                timeout=60,
            )  # fmt: skip
            assert publisher.returncode == 0, publisher.stderr
            _, log = server.communicate(timeout=30)
            counters = cutter.counters()
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    frames = [int(n) for n in re.findall(r"frame=\s*(\d+)", log)]
    assert frames and frames[-1] == 50, log[-2000:]
    assert counters.up.udp_datagrams >= 50  # the frames went over UDP, through the relay
    assert counters.up.tcp_bytes < 4000  # and not interleaved in the RTSP connection


# -- life cycle, events, threads ------------------------------------------------------------


def test_stop_joins_the_thread_frees_the_port_and_is_idempotent(upstream: Upstream) -> None:
    cutter = LinkCutter(to=upstream.address).start()
    port = cutter.port
    client, _ = connect_pair(cutter, upstream)
    thread = cutter._thread
    assert thread is not None and thread.is_alive()
    cutter.stop()
    assert not thread.is_alive()
    recv_eof(client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    cutter.stop()
    with LinkCutter(listen=("127.0.0.1", port), to=upstream.address) as again:
        assert again.port == port
        round_trip(*connect_pair(again, upstream), frame(b"up"), frame(b"down"))


def test_start_reports_a_port_in_use() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    cutter = LinkCutter(listen=taken.getsockname(), to=("127.0.0.1", 9))
    with pytest.raises(OSError):
        cutter.start()
    cutter.stop()  # nothing to stop, still fine
    taken.close()


def test_events_and_toggle(relay: LinkCutter) -> None:
    events: list[str] = []
    relay.on_event = events.append
    relay.cut()
    relay.cut()  # already cut: no second event
    assert relay.toggle() is False
    assert relay.toggle() is True
    relay.restore()
    assert events == ["cut", "restored", "cut", "restored"]
    assert relay.counters().cuts == 2
    assert relay.url("clip.mp4") == f"rtsp://127.0.0.1:{relay.port}/clip.mp4"


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        LinkCutter(loss=1.5)
    with pytest.raises(ValueError):
        LinkCutter(delay=-1)


def test_works_from_a_thread_that_already_runs_an_event_loop(upstream: Upstream) -> None:
    # As in a Jupyter notebook: the caller's thread is inside a running asyncio loop.
    async def notebook_cell() -> None:
        with LinkCutter(to=upstream.address) as cutter:
            client, server = await asyncio.to_thread(connect_pair, cutter, upstream)
            await asyncio.to_thread(round_trip, client, server, frame(b"a"), frame(b"b"))
            cutter.cut()
            assert cutter.counters().is_cut

    asyncio.run(notebook_cell())


# -- command line ---------------------------------------------------------------------------


class Process:
    """A CLI subprocess whose output lines are read on a thread, with deadlines."""

    def __init__(self, args: list[str], stdin: int | None = subprocess.DEVNULL) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtsp_resume", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace"))

    def expect(self, pattern: str) -> re.Match[str]:
        end = time.monotonic() + 15
        seen = []
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=max(end - time.monotonic(), 0.01))
            except queue.Empty:
                break
            seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} in {seen!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_cli_toggles_on_sigusr1_and_stops_on_ctrl_c(upstream: Upstream) -> None:
    host, port = upstream.address
    proc = Process(["linkcut", "--listen", "127.0.0.1:0", "--to", f"{host}:{port}"])
    try:
        relay_port = int(proc.expect(r"rtsp://127\.0\.0\.1:(\d+)/").group(1))
        client = socket.create_connection(("127.0.0.1", relay_port), timeout=DEADLINE)
        server = upstream.accept()
        round_trip(client, server, frame(b"up"), frame(b"down"))
        proc.proc.send_signal(signal.SIGUSR1)
        proc.expect(r"^link cut")
        client.sendall(frame(b"lost"))
        assert_quiet(server)
        proc.proc.send_signal(signal.SIGUSR1)
        proc.expect(r"^link restored")
        round_trip(client, server, frame(b"up again"), frame(b"down again"))
        proc.proc.send_signal(signal.SIGTERM)  # cli.main turns it into Ctrl-C
        assert proc.proc.wait(timeout=DEADLINE) == 0
        proc.expect(r"terminal->server: tcp 18 B relayed, 8 B cut")
    finally:
        proc.stop()


def test_cli_console_commands(upstream: Upstream) -> None:
    host, port = upstream.address
    controller, terminal = pty.openpty()
    proc = Process(
        ["linkcut", "--listen", "127.0.0.1:0", "--to", f"{host}:{port}", "--delay", "0.01"],
        stdin=terminal,
    )
    os.close(terminal)
    try:
        proc.expect(r"rtsp://127\.0\.0\.1:\d+/")
        proc.expect(r"commands: cut, restore")
        os.write(controller, b"cut\n")
        proc.expect(r"^link cut")
        os.write(controller, b"status\n")
        proc.expect(r"^link CUT; cuts 1")
        os.write(controller, b"loss 2\n")
        proc.expect(r"error: loss must be between 0 and 1")
        os.write(controller, b"quit\n")
        assert proc.proc.wait(timeout=DEADLINE) == 0
    finally:
        os.close(controller)
        proc.stop()


def test_cli_reports_a_port_in_use(upstream: Upstream) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtsp_resume",
            "linkcut",
            "--listen",
            f"127.0.0.1:{port}",
            "--to",
            "127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    taken.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
