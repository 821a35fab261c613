"""``python -m rtsp_resume serve-rtsp`` as a user runs it: start, answer, Ctrl-C, restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtsp_resume import rtsp

STARTUP_DEADLINE = 20.0  # seconds: a cold start imports PyAV and probes the folder
STOP_DEADLINE = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The streaming server in a subprocess, its output read line by line."""

    def __init__(self, media: Path, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtsp_resume", "serve-rtsp", "--media", str(media),
             "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                lines.append(line)
                self._changed.notify_all()

    def wait_for_stdout(self, text: str, timeout: float = STARTUP_DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.stdout):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {text!r} on stdout; stderr: {''.join(self.stderr)}")
                self._changed.wait(min(left, 0.5))

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C: returns the exit code and how long the process took to go."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(STOP_DEADLINE)
        took = time.monotonic() - started
        for reader in self._readers:
            reader.join(STOP_DEADLINE)
        return code, took

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_server(sample_dir: Path) -> Iterator[object]:
    started: list[ServerProcess] = []

    def start(port: int) -> ServerProcess:
        server = ServerProcess(sample_dir, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def exchange(sock: socket.socket, request: rtsp.Request) -> rtsp.Response:
    """Send one request and read until its response (skipping interleaved media)."""
    sock.sendall(bytes(request))
    parser = rtsp.RtspParser()
    while True:
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        for event in parser.feed(data):
            if isinstance(event, rtsp.Response):
                return event


def test_serve_rtsp_prints_urls_answers_and_stops_on_ctrl_c(start_server) -> None:
    port = free_port()
    server = start_server(port)
    url = f"rtsp://127.0.0.1:{port}/sample"
    server.wait_for_stdout(url + " ")
    # Every file of the folder is announced (the reader thread may lag one line behind).
    server.wait_for_stdout(f"rtsp://127.0.0.1:{port}/sample_slices ")

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        options = exchange(sock, rtsp.Request("OPTIONS", "*", {"CSeq": "1"}))
        assert options.status == 200 and options.headers["CSeq"] == "1"
        assert "PLAY" in rtsp.parse_public(options.headers["Public"])
        # A session streaming when Ctrl-C comes must not spoil the exit.
        setup = exchange(sock, rtsp.Request("SETUP", url + "/track1", {
            "CSeq": "2", "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}))
        session_id = rtsp.parse_session(setup.headers["Session"])[0]
        play = exchange(sock, rtsp.Request("PLAY", url, {"CSeq": "3", "Session": session_id}))
        assert play.status == 200

        code, took = server.interrupt()
        assert code == 0, "".join(server.stderr)
        assert took < STOP_DEADLINE
        # The player sees its connection end rather than hang.
        sock.settimeout(STOP_DEADLINE)
        read_until_closed(sock)
    errors = "".join(server.stderr)
    assert "Traceback" not in errors and "Task was destroyed" not in errors, errors


def read_until_closed(sock: socket.socket) -> None:
    """Read until the peer has closed the connection (EOF or reset); a hang times out."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


def test_the_port_is_free_again_after_ctrl_c(start_server) -> None:
    port = free_port()
    first = start_server(port)
    first.wait_for_stdout(f"rtsp://127.0.0.1:{port}/sample ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert exchange(sock, rtsp.Request("OPTIONS", "*", {"CSeq": "1"})).status == 200
    assert first.interrupt()[0] == 0

    second = start_server(port)  # as a user restarting it at once
    second.wait_for_stdout(f"rtsp://127.0.0.1:{port}/sample ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert exchange(sock, rtsp.Request("OPTIONS", "*", {"CSeq": "7"})).status == 200
    assert second.interrupt()[0] == 0


def exit_and_errors(server: ServerProcess) -> tuple[int, str]:
    """Wait for a server that should refuse to start: its exit code and its stderr."""
    try:
        code = server.proc.wait(STARTUP_DEADLINE)
    finally:
        server.kill()
    for reader in server._readers:
        reader.join(STOP_DEADLINE)
    return code, "".join(server.stderr)


def test_a_missing_media_folder_is_a_clear_error(tmp_path: Path) -> None:
    code, errors = exit_and_errors(ServerProcess(tmp_path / "nowhere", free_port()))
    assert code == 2
    assert "nowhere is not a folder" in errors
    assert "Traceback" not in errors, errors


def test_a_taken_port_is_a_clear_error(sample_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, errors = exit_and_errors(ServerProcess(sample_dir, taken.getsockname()[1]))
    assert code == 1
    assert "cannot listen" in errors
    assert "Traceback" not in errors, errors
