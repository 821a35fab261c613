"""RTP/RTCP port pairs for RTP over UDP: RTP on an even port, RTCP on the odd one above it
(RFC 3550 §11), as the streaming server, the terminal and the relay bind them."""

from __future__ import annotations

import contextlib
import socket


def bind_udp_pair(host: str, *, blocking: bool = False,
                  receive_buffer: int | None = None) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on ``host``, RTP and RTCP; ``receive_buffer`` enlarges the RTP
    socket's kernel buffer (a receiver wants room for a keyframe's burst of packets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
            else:
                for sock in (rtp, rtcp):
                    sock.setblocking(blocking)
                if receive_buffer:
                    with contextlib.suppress(OSError):
                        rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                return rtp, rtcp
        rtp.close()
    raise OSError("no free even/odd UDP port pair for RTP/RTCP")
