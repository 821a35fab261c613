"""How many real-time sessions the streaming server carries, on one process or several,
and how fast it starts.

The clip is made here, once (kept in ``artifacts/stream-load/``): 30 s of 1280x720 H.264
at about 2 Mbit/s (moving noise, so the encoder has to spend its bits) with stereo AAC,
as ``clip720.mp4`` and a Matroska copy of the same packets, ``clip720mkv.mkv``.

For each container, each ``--workers`` W and each N in ``--sessions`` (default 50, 100,
200, 300) a fresh ``python -m rtsp_resume serve-rtsp --workers W`` runs as a subprocess,
so that its CPU time and memory (summed over its worker processes) can be read from
``/proc``. N lightweight clients in this process then start *all at once* (DESCRIBE,
SETUP video and audio, PLAY over one TCP connection each, or UDP with ``--transport
udp``) and receive for ``--seconds``. The clients only parse RTP headers and note arrival
times; decoding would cost more CPU than the server.

Figures printed per level:

- failed: sessions that did not start (an error status, no answer, or no RTP within 10 s).
- interrupted: sessions the server ended as abnormally interrupted (its log), each a false
  bookmark since every client here answers every heartbeat.
- server CPU per stream: the server's user+system CPU time over the streaming window,
  divided by the window and by N (percent of one core).
- server RSS: the peak resident memory sampled every 0.2 s (all workers together).
- late packets, as the server counts them: an RTP packet sent more than 20 ms after its
  due time (start of play + the unit's decode time), from its log at each session's end.
- late packets, as the clients see them: each packet's arrival minus its due time
  (decode time of its access unit, looked up in the file from its RTP timestamp), against
  the best packet of the session; the share more than 50 ms behind, and p99/max. This
  includes the clients' own scheduling delays (they share the cores): compare with the
  client CPU printed.
- packets lost (UDP only; TCP cannot lose).
- first packet: from the PLAY response's arrival to the first RTP packet's (median and
  max over the sessions), i.e. how soon the keyframe follows the answer.

Then, with one server idle, the time from ``av.open`` to the first decoded picture with
FFmpeg's RTSP client (PyAV, over TCP), median of ``--runs`` (default 5), with default
options and with ``probesize=32, analyzeduration=0`` (``analyzeduration=0`` alone means
"the default, 5 s" to FFmpeg: the third row); and from writing PLAY to the first RTP
packet's arrival, median of 6 x ``--runs`` sessions one after another.

The machine's 1-minute load average is printed with each level: other programs busy on
the same cores delay the server's wake-ups, and the late packets with them.

Target: 200 sessions on 2 workers with under 1% of packets more than 50 ms late, none
failed, none interrupted, for the MP4 and the MKV.

Usage:
    python benchmarks/stream_load.py [--sessions 50 100 200 300] [--workers 1 2]
        [--containers mp4 mkv] [--seconds 15] [--transport tcp|udp] [--runs 5]
        [--media DIR --clip NAME]  (another clip instead of the one made here)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from rtsp_resume import rtsp, sdp
from rtsp_resume.media import MediaFile

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "artifacts" / "stream-load"
LATE = 0.050  # seconds behind its due time after which a packet counts as late (clients)
START_DEADLINE = 10.0  # seconds for every session to be answered and get its first packet
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENDED_RE = re.compile(r"session (\w+) ended: .*; (\d+) RTP packets sent, (\d+) late")
INTERRUPTED_RE = re.compile(r"session (\w+) .* interrupted after")


# --------------------------------------------------------------------------------------
# The server under test, in its own process


class ServerProcess:
    """``serve-rtsp`` in a subprocess; its log lines collected, its /proc figures read."""

    def __init__(self, media: Path, port: int, command: list[str] | None = None,
                 name: str = "the server", workers: int = 1) -> None:
        """``command`` replaces ours (benchmarks/versus_gst.py runs gst-rtsp-server); it
        must print an ``rtsp://`` line on stdout once it listens."""
        self.port = port
        self.command = command or [sys.executable, "-m", "rtsp_resume", "serve-rtsp",
                                   "--media", str(media), "--port", str(port),
                                   "--workers", str(workers)]
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.log: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self._stderr = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr.start()
        if not self.ready.wait(30):
            self.stop()
            raise RuntimeError(f"{name} did not start:\n" + "".join(self.log))

    def _pump_stdout(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if "rtsp://" in line:
                self.ready.set()

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.log.append(line)

    def pids(self) -> list[int]:
        """The server's process and its workers (its children)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [self.proc.pid, *map(int, children.split())]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: 14 and 15 of proc(5)
        return total / CLOCK_TICKS

    def memory_kb(self, name: str) -> int:
        """A /proc status figure (VmRSS, VmHWM) summed over the server's processes."""
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    total += int(line.split()[1])
        return total

    def interrupted(self) -> set[str]:
        """Ids of the sessions the server declared abnormally interrupted."""
        return {m.group(1) for line in list(self.log) if (m := INTERRUPTED_RE.search(line))}

    def session_counts(self) -> dict[str, tuple[int, int]]:
        """Per session id: (RTP packets sent, late), from the log lines of ended sessions."""
        counts = {}
        for line in list(self.log):
            match = ENDED_RE.search(line)
            if match:
                counts[match.group(1)] = (int(match.group(2)), int(match.group(3)))
        return counts

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.join(5)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------
# Due times: when the server should send each packet


class DueTimes:
    """Decode time of every access unit of the clip, found from its RTP timestamp.

    The server sends a unit at (start of play) + (its decode time - the position asked
    for); units decoded before that position (the first pictures of a clip with B-frames
    have negative decode times) go out at once. The RTP timestamp carries the
    presentation time, which for B-frames differs. Audio frames are presented when they
    are decoded. Every session here plays from 0.
    """

    def __init__(self, media: MediaFile) -> None:
        self.rates = {t.kind: t.clock_rate for t in media.tracks}
        kinds = {t.index: t.kind for t in media.tracks}
        self.video_dts: dict[int, float] = {}
        for unit in media.access_units(0.0):
            if kinds[unit.track] == "video":
                self.video_dts[round(unit.pts * self.rates["video"])] = unit.dts

    def dts(self, kind: str, ticks: int) -> float:
        dts = self.video_dts[ticks] if kind == "video" else ticks / self.rates[kind]
        return max(0.0, dts)


# --------------------------------------------------------------------------------------
# A lightweight receiving client


@dataclass
class Track:
    kind: str
    url: str
    rtptime: int = 0  # RTP time of npt 0 (every session plays from 0)
    packets: int = 0
    offsets: list[float] = field(default_factory=list)  # arrival - due, seconds
    highest_seq: int | None = None
    first_seq: int | None = None


class Receiver(asyncio.Protocol):
    """One RTSP session: sets itself up, answers heartbeats, notes when RTP arrives."""

    def __init__(self, host: str, port: int, clip: str, transport: str, due: DueTimes) -> None:
        self.host, self.port, self.clip, self.transport_kind = host, port, clip, transport
        self.base = f"rtsp://{host}:{port}/{clip}"
        self.due = due
        self.parser = rtsp.RtspParser()
        self.frames = bytearray()  # the start of an interleaved frame still coming
        self.transport: asyncio.Transport | None = None
        self.waiting: dict[str, asyncio.Future[rtsp.Response]] = {}
        self.cseq = 0
        self.session_id: str | None = None
        self.tracks: list[Track] = []
        self.by_channel: dict[int, Track] = {}
        self.udp: list[asyncio.DatagramTransport] = []
        self.first_packet = asyncio.Event()
        self.play_sent: float | None = None  # when the PLAY request was written
        self.play_answered: float | None = None  # when the PLAY response arrived
        self.first_rtp: float | None = None  # when the first RTP packet arrived
        self.error: str | None = None

    # -- RTSP --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # RTP frames (§10.12) are read here without making objects: two cores are shared
        # with the server, and this is per packet. The rest goes to the RTSP parser, and so
        # does everything while it holds part of a message.
        now = time.monotonic()
        if self.parser.buffered:
            self._rtsp_events(data, now)
            return
        self.frames += data
        buf, pos = self.frames, 0
        while len(buf) - pos >= 4 and buf[pos] == 0x24:
            end = pos + 4 + int.from_bytes(buf[pos + 2:pos + 4], "big")
            if end > len(buf):
                break
            track = self.by_channel.get(buf[pos + 1])
            if track is not None:
                self.rtp_received(track, memoryview(buf)[pos + 4:end], now)
            pos = end
        rest = bytes(buf[pos:])
        self.frames = bytearray()
        if rest[:1] == b"$":
            self.frames += rest
        elif rest:
            self._rtsp_events(rest, now)

    def _rtsp_events(self, data: bytes, now: float) -> None:
        for event in self.parser.feed(data):
            if isinstance(event, rtsp.InterleavedFrame):
                track = self.by_channel.get(event.channel)
                if track is not None:
                    self.rtp_received(track, event.data, now)
            elif isinstance(event, rtsp.Response):
                if "RTP-Info" in event.headers:
                    self.play_answered = now
                    # Now, not when start() resumes: the first RTP packets may be in the
                    # same read as the PLAY response.
                    self._apply_rtp_info(event.headers["RTP-Info"])
                future = self.waiting.pop(event.headers.get("CSeq", ""), None)
                if future is not None and not future.done():
                    future.set_result(event)
            else:  # the server's heartbeat: any answer is a sign of life
                answer = rtsp.Response(200, "OK", {"CSeq": event.headers.get("CSeq", "0")})
                assert self.transport is not None
                self.transport.write(bytes(answer))

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))

    async def request(self, method: str, uri: str, **headers: str) -> rtsp.Response:
        self.cseq += 1
        cseq = str(self.cseq)
        future = asyncio.get_running_loop().create_future()
        self.waiting[cseq] = future
        names = {key.replace("_", "-"): value for key, value in headers.items()}
        assert self.transport is not None
        self.transport.write(bytes(rtsp.Request(method, uri, {"CSeq": cseq, **names})))
        response = await future
        if response.status != 200:
            raise RuntimeError(f"{method} answered {response.status} {response.reason}")
        return response

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        description = sdp.parse((await self.request("DESCRIBE", self.base)).body.decode())
        for number, media in enumerate(description.media):
            url = sdp.resolve_control(self.base + "/", media.control)
            track = Track(media.kind, url)
            if self.transport_kind == "tcp":
                offer = f"RTP/AVP/TCP;unicast;interleaved={2 * number}-{2 * number + 1}"
                self.by_channel[2 * number] = track
            else:
                rtp_port = await self._open_udp(track)
                offer = f"RTP/AVP;unicast;client_port={rtp_port}-{rtp_port + 1}"
            extra = {"Session": self.session_id} if self.session_id else {}
            answer = await self.request("SETUP", url, Transport=offer, **extra)
            self.session_id = rtsp.parse_session(answer.headers["Session"])[0]
            self.tracks.append(track)
        self.play_sent = time.monotonic()
        await self.request("PLAY", self.base, Session=self.session_id or "", Range="npt=0.000-")

    def _apply_rtp_info(self, value: str) -> None:
        for info in rtsp.parse_rtp_info(value):
            track = next(t for t in self.tracks if t.url == info.url)
            track.rtptime = info.rtptime or 0

    async def _open_udp(self, track: Track) -> int:
        loop = asyncio.get_running_loop()
        for _ in range(100):
            rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp_sock.bind((self.host, 0))
            port = rtp_sock.getsockname()[1]
            rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                if port % 2:
                    raise OSError("odd port")
                rtcp_sock.bind((self.host, port + 1))
            except OSError:
                rtp_sock.close()
                rtcp_sock.close()
                continue
            rtp, _ = await loop.create_datagram_endpoint(
                lambda track=track: _Datagrams(self, track), sock=rtp_sock)
            rtcp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                          sock=rtcp_sock)
            self.udp += [rtp, rtcp]  # type: ignore[list-item]
            return port
        raise OSError("no even/odd UDP port pair")

    def rtp_received(self, track: Track, data: bytes | memoryview, now: float) -> None:
        # Only the fixed header is read (RFC 3550 §5.1): sequence number and timestamp.
        seq, timestamp = struct.unpack_from("!HI", data, 2)
        track.packets += 1
        if self.first_rtp is None:
            self.first_rtp = now
        if track.first_seq is None:
            track.first_seq = track.highest_seq = seq
        else:
            track.highest_seq = seq
        ticks = (timestamp - track.rtptime) % (1 << 32)
        try:
            due = self.due.dts(track.kind, ticks)
        except KeyError:
            self.error = f"{track.kind} RTP timestamp {ticks} matches no unit of the clip"
            return
        track.offsets.append(now - due)
        self.first_packet.set()

    async def stop(self) -> None:
        if self.transport is not None and self.session_id is not None:
            try:
                await asyncio.wait_for(self.request("TEARDOWN", self.base,
                                                    Session=self.session_id), 5)
            except (RuntimeError, ConnectionError, TimeoutError):
                pass
        if self.transport is not None:
            self.transport.close()
        for endpoint in self.udp:
            endpoint.close()

    def lateness(self) -> list[float]:
        """Each packet's delay past its due time, against the session's best packet."""
        offsets = [o for t in self.tracks for o in t.offsets]
        if not offsets:
            return []
        best = min(offsets)
        return [o - best for o in offsets]

    def lost(self) -> int:
        lost = 0
        for track in self.tracks:
            if track.first_seq is not None and track.highest_seq is not None:
                expected = (track.highest_seq - track.first_seq) % (1 << 16) + 1
                lost += max(0, expected - track.packets)
        return lost


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, receiver: Receiver, track: Track) -> None:
        self.receiver, self.track = receiver, track

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.receiver.rtp_received(self.track, data, time.monotonic())


# --------------------------------------------------------------------------------------
# One load level


@dataclass
class LoadResult:
    sessions: int
    failed: int
    cpu_per_stream: float  # share of one core
    client_cpu: float  # share of one core used by this (client) process
    rss_idle_mb: float
    rss_peak_mb: float
    hwm_mb: float
    server_sent: int
    server_late: int
    client_packets: int
    client_late: int
    client_p99_ms: float
    client_max_ms: float
    lost: int
    first_packet_ms: list[float]
    interrupted: int = 0


async def run_load(server: ServerProcess, n: int, seconds: float, clip: str,
                   transport: str, due: DueTimes) -> LoadResult:
    rss_idle = server.memory_kb("VmRSS")
    receivers = [Receiver("127.0.0.1", server.port, clip, transport, due) for _ in range(n)]

    async def start(receiver: Receiver) -> None:
        await receiver.start()
        await receiver.first_packet.wait()

    # All at once: every connection, DESCRIBE, SETUP and PLAY in flight together.
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(start(r), START_DEADLINE) for r in receivers), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for problem in failed[:3]:
        print(f"    a session failed to start: {problem!r}", flush=True)

    cpu_start, client_start, wall_start = (server.cpu_seconds(), time.process_time(),
                                           time.monotonic())
    peak = 0
    while time.monotonic() - wall_start < seconds:
        peak = max(peak, server.memory_kb("VmRSS"))
        await asyncio.sleep(0.2)
    wall = time.monotonic() - wall_start
    cpu = server.cpu_seconds() - cpu_start
    client_cpu = time.process_time() - client_start
    hwm = server.memory_kb("VmHWM")

    await asyncio.gather(*(r.stop() for r in receivers))
    ids = {r.session_id for r in receivers if r.session_id}
    deadline = time.monotonic() + 5
    while not ids <= server.session_counts().keys() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    counts = server.session_counts()
    interrupted = len(ids & server.interrupted())
    lateness = [x for r in receivers for x in r.lateness()]
    for r in receivers:
        if r.error:
            print(f"    client error: {r.error}", flush=True)
    return LoadResult(
        sessions=n,
        failed=len(failed),
        cpu_per_stream=cpu / wall / max(1, n - len(failed)),
        client_cpu=client_cpu / wall,
        rss_idle_mb=rss_idle / 1024,
        rss_peak_mb=peak / 1024,
        hwm_mb=hwm / 1024,
        server_sent=sum(counts[i][0] for i in ids if i in counts),
        server_late=sum(counts[i][1] for i in ids if i in counts),
        client_packets=len(lateness),
        client_late=sum(1 for x in lateness if x > LATE),
        client_p99_ms=1000 * _quantile(lateness, 0.99),
        client_max_ms=1000 * max(lateness, default=0.0),
        lost=sum(r.lost() for r in receivers),
        first_packet_ms=[1000 * (r.first_rtp - r.play_answered) for r in receivers
                         if r.first_rtp is not None and r.play_answered is not None],
        interrupted=interrupted,
    )


async def play_to_first_packet(port: int, clip: str, due: DueTimes, count: int) -> list[float]:
    """Milliseconds from writing PLAY to the first RTP packet, one session after another."""
    times = []
    for _ in range(count):
        receiver = Receiver("127.0.0.1", port, clip, "tcp", due)
        await asyncio.wait_for(receiver.start(), START_DEADLINE)
        await asyncio.wait_for(receiver.first_packet.wait(), START_DEADLINE)
        times.append(1000 * (receiver.first_rtp - receiver.play_sent))  # type: ignore[operator]
        await receiver.stop()
    return times


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------------------
# Start-up: time to the first decoded picture with FFmpeg's RTSP client


def first_frame_ms(url: str, options: dict[str, str]) -> float:
    started = time.perf_counter()
    with av.open(url, options={"rtsp_transport": "tcp", **options}, timeout=10) as container:
        for _frame in container.decode(container.streams.video[0]):
            return 1000 * (time.perf_counter() - started)
    raise RuntimeError("no frame decoded")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.3f}%" if whole else "n/a"


def make_clips(folder: Path) -> list[str]:
    """The 720p clip, as MP4 and as a Matroska copy, made once; their content ids."""
    mp4, mkv = folder / "clip720.mp4", folder / "clip720mkv.mkv"
    if not mp4.exists():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        _encode_clip(mp4.with_suffix(".part"))
        mp4.with_suffix(".part").replace(mp4)
        print(f"made {mp4}: {mp4.stat().st_size * 8 / 30e6:.2f} Mbit/s in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    if not mkv.exists():
        from versus_gst import remux_to_mkv

        partial = folder.parent / "partial.mkv"  # outside the folder served; .mkv for the muxer
        remux_to_mkv(mp4, partial)
        partial.replace(mkv)
    return [mp4.stem, mkv.stem]


def _encode_clip(path: Path, seconds: int = 30, fps: int = 25) -> None:
    """1280x720 H.264 at 2 Mbit/s (a keyframe every 2 s, B-frames) and 48 kHz stereo AAC.
    The picture is coarse noise that scrolls, plus fine noise: nothing x264 gets cheaply."""
    import numpy as np

    width, height, rate = 1280, 720, 48_000
    rng = np.random.default_rng(720)
    blocks = rng.integers(16, 200, size=(height // 8, width // 8 + seconds * fps),
                          dtype=np.uint8)
    chroma = np.full((height // 2, width), 128, np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 2_000_000
        video.codec_context.thread_type = "FRAME"
        video.options = {"g": str(2 * fps), "keyint_min": str(2 * fps), "sc_threshold": "0",
                         "preset": "veryfast", "x264-params": "scenecut=0:open-gop=0"}
        sound = out.add_stream("aac", rate=rate, layout="stereo")
        sound.bit_rate = 128_000
        samples = 0
        for index in range(seconds * fps):
            coarse = np.kron(blocks[:, index:index + width // 8], np.ones((8, 8), np.uint8))
            luma = coarse + rng.integers(0, 24, size=(height, width), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]),
                                               format="yuv420p")
            frame.pts = index
            out.mux(video.encode(frame))
            while samples + 1024 <= (index + 1) * rate // fps:
                t = np.arange(samples, samples + 1024) / rate
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                audio = av.AudioFrame.from_ndarray(np.stack([tone, tone]).reshape(1, -1),
                                                   format="flt", layout="stereo")
                audio.sample_rate, audio.pts = rate, samples
                audio.time_base = Fraction(1, rate)
                out.mux(sound.encode(audio))
                samples += 1024
        out.mux(video.encode(None))
        out.mux(sound.encode(None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--containers", nargs="+", choices=["mp4", "mkv"],
                        default=["mp4", "mkv"], help="which copies of the clip made here")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="streaming window measured per load level")
    parser.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--runs", type=int, default=5, help="first-frame measurements")
    parser.add_argument("--media", type=Path, default=None,
                        help="a folder of your own (with --clip) instead of the clip made here")
    parser.add_argument("--clip", default=None, help="content id in --media")
    args = parser.parse_args()
    if not 0 < args.seconds <= 25:
        parser.error("--seconds must be within the 30 s clip, leaving time to start")
    if (args.media is None) != (args.clip is None):
        parser.error("--media and --clip go together")

    print("$ " + shlex.join(["python", "benchmarks/stream_load.py", *sys.argv[1:]]))
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
          f"PyAV {av.__version__}", flush=True)
    if args.media is None:
        media, made = CLIPS, make_clips(CLIPS)
        clips = [c for c in made if ("mkv" if c.endswith("mkv") else "mp4") in args.containers]
    else:
        media, clips = args.media, [args.clip]

    header = (f"{'N':>4} {'failed':>6} {'intr':>4} {'CPU/stream':>10} {'RSS peak':>8} "
              f"{'late >20ms (server)':>20} {'late >50ms (clients)':>21} {'p99':>7} "
              f"{'max':>7} {'lost':>5} {'client CPU':>10} {'load':>5} "
              f"{'1st packet (median/max)':>24}")
    results = []
    for clip in clips:
        due = DueTimes(MediaFile(next(media.glob(f"{clip}.*"))))
        for workers in args.workers:
            print(f"\nLoad: {clip}, {args.transport}, --workers {workers}, "
                  f"{args.seconds:.0f} s window per level\n{header}", flush=True)
            for n in args.sessions:
                server = ServerProcess(media, free_port(), workers=workers)
                try:
                    result = asyncio.run(run_load(server, n, args.seconds, clip,
                                                  args.transport, due))
                finally:
                    code = server.stop()
                results.append((clip, workers, result))
                print(_row(result), flush=True)
                if code != 0:
                    print(f"    server exit code {code} after Ctrl-C", flush=True)
    print("CPU/stream: server CPU time (all workers) / window / sessions (percent of one "
          "core); intr: sessions ended as interrupted; RSS peak sampled every 0.2 s")

    print(f"\nFirst frame, PyAV {av.__version__} over TCP, server idle (1 worker), "
          f"median of {args.runs} (min-max):")
    for clip in clips:
        server = ServerProcess(media, free_port())
        try:
            url = f"rtsp://127.0.0.1:{server.port}/{clip}"
            variants = {
                "default options": {},
                "probesize=32, analyzeduration=0": {"probesize": "32", "analyzeduration": "0"},
                "analyzeduration=0 only": {"analyzeduration": "0"},
            }
            for name, options in variants.items():
                times = [first_frame_ms(url, options) for _ in range(args.runs)]
                print(f"  {clip:<12} {name:<34} {statistics.median(times):7.1f} ms "
                      f"({min(times):.1f}-{max(times):.1f})", flush=True)
            due = DueTimes(MediaFile(next(media.glob(f"{clip}.*"))))
            times = asyncio.run(play_to_first_packet(server.port, clip, due, 6 * args.runs))
            print(f"  {clip:<12} {'PLAY written -> first RTP packet':<34} "
                  f"{statistics.median(times):7.1f} ms ({min(times):.1f}-{max(times):.1f}), "
                  f"{len(times)} sessions one after another", flush=True)
        finally:
            server.stop()

    print("\nTarget: 200 sessions on 2 workers, < 1% late, none failed, none interrupted:")
    for clip, workers, r in results:
        if r.sessions == 200 and workers == 2:
            print(f"  {clip}: late {_percent(r.client_late, r.client_packets)}, "
                  f"failed {r.failed}, interrupted {r.interrupted}")
    return 0


def _row(r: LoadResult) -> str:
    return (f"{r.sessions:>4} {r.failed:>6} {r.interrupted:>4} {100 * r.cpu_per_stream:>9.2f}% "
            f"{r.rss_peak_mb:>6.1f}MB "
            f"{r.server_late:>7}/{r.server_sent:<7} {_percent(r.server_late, r.server_sent):>6} "
            f"{r.client_late:>7}/{r.client_packets:<7} "
            f"{_percent(r.client_late, r.client_packets):>7} "
            f"{r.client_p99_ms:>5.1f}ms {r.client_max_ms:>5.1f}ms "
            f"{r.lost:>5} {100 * r.client_cpu:>9.1f}% {_load():>5.2f} "
            f"{_median(r.first_packet_ms):>10.1f}/{max(r.first_packet_ms, default=0):.1f}ms")


if __name__ == "__main__":
    sys.exit(main())
