"""The process's RTP loop on real UDP sockets: each stream keeps its own 20 ms clock, a stream that fails or is
flooded does not hold up the others, and a stopped stream leaves the loop. (The streams here are the
smallest thing the loop drives, over real sockets; calls through it are in the SIP and media tests.)"""

from __future__ import annotations

import socket
import threading
import time

from contactcenter.telephony.rtp_loop import RtpLoop
from tests.helpers.waiting import wait_until


class SocketStream:
    """A stream sending a numbered datagram every 20 ms to ``target`` and keeping what arrives on its socket."""

    def __init__(self, target: tuple[str, int], fail_after: int | None = None, stall_at: int | None = None) -> None:
        self.NSD = True
        self.stall_at = stall_at  # building this packet takes 60 ms (a stalled sender)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.target = target
        self.fail_after = fail_after
        self.sent = 0
        self.received: list[bytes] = []
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def next_due(self) -> float:
        return self.start + self.sent * 0.02

    def send_next(self) -> None:
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise RuntimeError("this stream's encoder broke")
        if self.sent == self.stall_at:
            time.sleep(0.06)
        self.sock.sendto(self.sent.to_bytes(4, "big"), self.target)
        self.sent += 1

    def receive_packet(self, packet: bytes) -> None:
        with self.lock:
            self.received.append(packet)


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_streams_keep_their_own_clock_and_a_failing_one_does_not_stop_the_others() -> None:
    loop = RtpLoop()
    sink = listener()
    good = SocketStream(sink.getsockname())
    broken = SocketStream(sink.getsockname(), fail_after=3)
    loop.add(broken, broken.sock)
    loop.add(good, good.sock)
    try:
        arrivals = []
        while len(arrivals) < 40:
            sink.recv(64)
            arrivals.append(time.monotonic())
        assert broken.sent == 3 and good.sent >= 36  # the broken stream is out, the good one goes on
        assert wait_until(lambda: loop.streams == 1, 2)
        # its own absolute clock: its last 30 packets span 29 * 20 ms, not more (no drift, no stall)
        span = arrivals[-1] - arrivals[-30]
        assert 29 * 0.02 - 0.01 <= span <= 29 * 0.02 + 0.5, span
    finally:
        good.NSD = False
        loop.remove(good.sock)
        loop.remove(broken.sock)
        for sock in (good.sock, broken.sock, sink):
            sock.close()


def test_a_flooded_stream_does_not_starve_the_others_and_a_stopped_one_leaves() -> None:
    loop = RtpLoop()
    sink = listener()
    flooded = SocketStream(sink.getsockname())
    quiet = SocketStream(sink.getsockname())
    loop.add(flooded, flooded.sock)
    loop.add(quiet, quiet.sock)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(3000):  # a hostile peer blasting the first stream's port
            sender.sendto(b"x" * 172, flooded.sock.getsockname())
        sender.sendto(b"hello", quiet.sock.getsockname())
        assert wait_until(lambda: b"hello" in quiet.received, 2)
        assert flooded.received  # its packets are read too, just not all at once
        flooded.NSD = False
        loop.remove(flooded.sock)
        flooded.sock.close()  # its number may now be reused by another socket: the loop no longer watches it
        assert wait_until(lambda: loop.streams == 1, 2)
        sender.sendto(b"again", quiet.sock.getsockname())
        assert wait_until(lambda: b"again" in quiet.received, 2)
    finally:
        quiet.NSD = False
        loop.remove(quiet.sock)
        for sock in (quiet.sock, sink, sender):
            sock.close()


def test_the_sender_counts_the_packets_it_sent_late() -> None:
    """One packet that takes 60 ms to build makes the next ones late (both streams'): the loop says how many and
    how late, which the load benchmark prints beside the spacing on the wire."""
    loop = RtpLoop()
    sink = listener()
    stalling, other = SocketStream(sink.getsockname(), stall_at=5), SocketStream(sink.getsockname())
    loop.add(stalling, stalling.sock)
    loop.add(other, other.sock)
    try:
        assert wait_until(lambda: other.sent >= 20 and stalling.sent >= 20, 5)
        lateness = loop.lateness
        assert lateness.packets >= 40
        assert lateness.late_20ms >= 1 and lateness.late_5ms >= lateness.late_20ms
        assert lateness.worst_s >= 0.035, lateness
    finally:
        for stream in (stalling, other):
            stream.NSD = False
            loop.remove(stream.sock)
            stream.sock.close()
        sink.close()
