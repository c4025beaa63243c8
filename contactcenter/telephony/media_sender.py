"""The calls' outgoing RTP sent on time by a small process of its own, which shares no interpreter lock.

Why: in the desk's process the RTP sender is one thread among many that want Python's interpreter lock
(recognition's intake and feeders, the talk listener's pipes, SIP, the web pages). The kernel can wake it on
time at real-time priority, but the lock is handed round the threads that want it, so a packet waits its
turn behind them: bench/sip_load.py at 80 calls with speech on, 2 cores, had outgoing spacing p99 23-47 ms
with the sender in the desk's process, 20.1-20.4 ms with this one (README has the figures). Here the desk's
RTP thread builds each packet a lead ahead of its time (``[sip] media_lead_ms``, 40 ms): encoded, the prompt
and the headset mixed, DTMF, SRTP; and hands it over with its due time. This process does nothing else than
wait for the earliest due time and send it from the call's own socket (passed to it with SCM_RIGHTS, so the
far end sees the same source port). A desk thread that waits for the lock now costs the packet nothing
unless it waits longer than the lead.

The price is the lead itself: what is queued for a caller (a prompt, the headset's microphone) leaves that
much later than it was taken, and ``clear_send`` cannot take back what was already handed over.

If this process ends (killed, crashed) or stops reading, the desk's loop sends from its own process again
(rtp_loop.py), logged once: calls go on. Started with ``python -m contactcenter.telephony.media_sender FD``.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LEAD_SECONDS = 0.04  # a packet is built and handed over this long before it is due ([sip] media_lead_ms)
BATCH_SECONDS = 0.01  # packets due within this much after the first are handed over together
MAX_BATCH = 256  # and at most this many
STATS_TIMEOUT_SECONDS = 2.0
START_TIMEOUT_SECONDS = 10.0
FULL_WAIT_SECONDS = 0.2  # a full channel is given this long to drain before the process counts as stuck
MAX_MESSAGE = 1 << 16  # one hand-over; the desk splits a larger batch
PACKET = struct.Struct("<IdI4sH")  # stream, due (time.monotonic), packet length, IPv4 address, port
STREAM = struct.Struct("<I")
STATS = struct.Struct("<QQQd")


@dataclass
class SenderLateness:
    """How late packets left against their due times: what a caller hears as jitter, measured where it starts
    (the benchmark compares it with the spacing seen on the wire)."""

    packets: int = 0
    late_5ms: int = 0  # sent more than 5 ms after their due time
    late_20ms: int = 0  # a whole packet time late
    worst_s: float = 0.0

    def add(self, late: float) -> None:
        self.packets += 1
        if late > 0.005:
            self.late_5ms += 1
            if late > 0.02:
                self.late_20ms += 1
            self.worst_s = max(self.worst_s, late)

    def merged(self, other: SenderLateness) -> SenderLateness:
        return SenderLateness(
            self.packets + other.packets,
            self.late_5ms + other.late_5ms,
            self.late_20ms + other.late_20ms,
            max(self.worst_s, other.worst_s),
        )


Handed = tuple[int, float, bytes, tuple[str, int]]  # stream, due, packet, where to


class SenderGone(RuntimeError):
    """The sender process ended or stopped reading; ``handed`` packets of the batch it failed on got through."""

    def __init__(self, message: str, handed: int = 0) -> None:
        super().__init__(message)
        self.handed = handed


def _close_in_child(sender: weakref.ref[SenderProcess]) -> None:
    """In a process forked from the desk: its copy of the channel, closed."""
    process = sender()
    if process is not None:
        process._control.close()


class SenderProcess:
    """The desk's side: starts the process and hands it streams and packets. Thread-safe; never blocks on it
    for long (a channel still full after FULL_WAIT_SECONDS means it stopped reading: ``SenderGone``)."""

    def __init__(self) -> None:
        desk_end, process_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # nothing of the desk's environment (its secrets: the SIP password, the database URL), only where the
        # package is
        package_root = str(Path(__file__).resolve().parents[2])
        environment = {"PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(process_end.fileno())],
                pass_fds=[process_end.fileno()],
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        except BaseException:
            desk_end.close()
            raise
        finally:
            process_end.close()
        # ready before the first packet is handed over: packets built while it starts would leave in a burst
        with selectors.DefaultSelector() as selector:
            selector.register(desk_end, selectors.EVENT_READ)
            answer = desk_end.recv(16) if selector.select(START_TIMEOUT_SECONDS) else None
        if answer != b"Y":
            desk_end.close()
            self._process.kill()
            status = self._process.wait()
            raise OSError(
                f"the call media sender process did not start within {START_TIMEOUT_SECONDS:.0f} s"
                if answer is None
                else f"the call media sender process ended as it started (exit status {status})"
            )
        desk_end.setblocking(False)
        self._control = desk_end
        self._lock = threading.Lock()  # one message at a time on the channel
        self._stats_lock = threading.Lock()  # one lateness request at a time
        self._addresses: dict[str, bytes | None] = {}
        # a process forked from the desk later (a recognition worker) must not keep the channel open, or the
        # sender would not see the desk end; the hook holds the instance only weakly
        os.register_at_fork(after_in_child=functools.partial(_close_in_child, weakref.ref(self)))

    @property
    def pid(self) -> int:
        return self._process.pid

    def _gone(self, exc: BaseException, handed: int = 0) -> SenderGone:
        if isinstance(exc, OSError) and not isinstance(exc, BlockingIOError):
            why = f"ended ({exc.strerror or exc})"
        else:  # its channel stayed full, or was closed under us by a fallback
            why = "stopped reading"
        return SenderGone(f"the call media sender process (pid {self.pid}) {why}", handed)

    def _send(self, message: bytes, fds: Iterable[int] = (), handed: int = 0) -> None:
        try:
            with self._lock:
                for attempt in range(2):
                    try:
                        if fds:
                            socket.send_fds(self._control, [message], list(fds))
                        else:
                            self._control.send(message)
                        break
                    except BlockingIOError:  # its channel is full: a moment behind, or stopped for good
                        if attempt or not select.select([], [self._control], [], FULL_WAIT_SECONDS)[1]:
                            raise
        except (OSError, ValueError) as exc:  # EPIPE/ECONNRESET: it ended; EAGAIN: stopped; ValueError: closed
            raise self._gone(exc, handed) from exc

    def add(self, stream: int, sock: socket.socket) -> None:
        self._send(b"A" + STREAM.pack(stream), [sock.fileno()])

    def remove(self, stream: int) -> None:
        self._send(b"R" + STREAM.pack(stream))

    def hand(self, packets: list[Handed]) -> None:
        """Queue packets to be sent at their due times (in order for each stream). A packet that cannot be
        addressed (a name that does not resolve, a port out of range: the caller's SDP) is dropped, as sendto
        would have failed on it; ``SenderGone.handed`` says how many got through before the channel failed."""
        message = bytearray(b"P")
        in_message = handed = 0
        for stream, due, packet, (host, port) in packets:
            try:
                address = self._address(host)
                record = PACKET.pack(stream, due, len(packet), address, port) + packet if address else b""
            except (struct.error, TypeError, ValueError, OverflowError):
                record = b""
            if not record:
                log.debug("RTP packet to %s:%s not sent: not an address to send to", host, port)
                in_message += 1
                continue
            if len(message) + len(record) > MAX_MESSAGE:
                self._send(bytes(message), handed=handed)
                message, handed, in_message = bytearray(b"P"), handed + in_message, 0
            message += record
            in_message += 1
        if len(message) > 1:
            self._send(bytes(message), handed=handed)

    def _address(self, host: str) -> bytes | None:
        """An IPv4 address in 4 bytes; a name (SDP allows one, rarely seen) resolved once, as sendto would;
        None for what is neither (remembered, so it is not looked up for every packet)."""
        if host in self._addresses:
            return self._addresses[host]
        packed: bytes | None
        try:
            packed = socket.inet_aton(host)
        except (OSError, ValueError, TypeError):
            try:
                packed = socket.inet_aton(socket.gethostbyname(host))
            except (OSError, ValueError, TypeError, UnicodeError):
                packed = None
        if len(self._addresses) > 1024:
            self._addresses.clear()
        self._addresses[host] = packed
        return packed

    def lateness(self, reset: bool = False) -> SenderLateness:
        """What it has sent so far and how late (then counts afresh if ``reset``). Packets are handed over
        meanwhile: the channel's lock is held only to read."""
        with self._stats_lock:
            self._receive()  # a reply left over from a request that timed out
            self._send(b"Z" if reset else b"S")
            deadline = time.monotonic() + STATS_TIMEOUT_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                try:
                    readable = select.select([self._control], [], [], left)[0]
                except (OSError, ValueError) as exc:  # closed by a fallback meanwhile
                    raise self._gone(exc) from exc
                reply = self._receive() if readable else None
                if reply is not None and reply[:1] == b"S" and len(reply) == 1 + STATS.size:
                    return SenderLateness(*STATS.unpack(reply[1:]))
        raise SenderGone(f"the call media sender process (pid {self.pid}) did not answer")

    def _receive(self) -> bytes | None:
        """The next message from the process, None if there is none yet; SenderGone once it has ended."""
        try:
            with self._lock:
                reply = self._control.recv(64)
        except BlockingIOError:
            return None
        except (OSError, ValueError) as exc:
            raise self._gone(exc) from exc
        if not reply:  # the channel's end: the process has gone
            raise SenderGone(f"the call media sender process (pid {self.pid}) ended")
        return reply

    def abandon(self) -> None:
        """Gone or stuck: close the channel and kill it, without waiting (the caller may be the RTP thread)."""
        try:
            with self._lock:
                self._control.close()
        finally:
            self._process.kill()
            threading.Thread(target=self._process.wait, name="media sender reaper", daemon=True).start()


# ------------------------------------------------------------------------------------- the process itself


class _Sender:
    """The process's state: the calls' sockets and the packets waiting for their time."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.sockets: dict[int, socket.socket] = {}
        self.waiting: list[tuple[float, int, int, bytes, tuple[str, int]]] = []
        self.order = itertools.count()
        self.lateness = SenderLateness()

    def read_control(self) -> bool:
        """Everything the desk sent so far; False once the desk has gone."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 1)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not message:
                for fd in fds:
                    os.close(fd)
                return False
            self.handle(message, fds)

    def handle(self, message: bytes, fds: list[int]) -> None:
        kind, body = message[:1], message[1:]
        if kind == b"A" and fds:
            self.sockets[STREAM.unpack(body)[0]] = socket.socket(fileno=fds.pop())
        elif kind == b"R":
            sock = self.sockets.pop(STREAM.unpack(body)[0], None)
            if sock is not None:
                sock.close()
        elif kind == b"P":
            offset = 0
            while offset + PACKET.size <= len(body):
                stream, due, size, address, port = PACKET.unpack_from(body, offset)
                offset += PACKET.size
                packet = body[offset : offset + size]
                offset += size
                heapq.heappush(self.waiting, (due, next(self.order), stream, packet, (socket.inet_ntoa(address), port)))
        elif kind in (b"S", b"Z"):
            lateness = self.lateness
            if kind == b"Z":
                self.lateness = SenderLateness()
            self.control.send(
                b"S" + STATS.pack(lateness.packets, lateness.late_5ms, lateness.late_20ms, lateness.worst_s)
            )
        for fd in fds:  # none is expected beyond an A's
            os.close(fd)

    def send_due(self) -> None:
        waiting = self.waiting
        while waiting and waiting[0][0] <= time.monotonic():
            due, _, stream, packet, address = heapq.heappop(waiting)
            sock = self.sockets.get(stream)
            if sock is None:  # removed: the call ended
                continue
            self.lateness.add(time.monotonic() - due)
            try:
                sock.sendto(packet, address)
            except OSError:  # the far end's ICMP error, a full buffer: that packet only
                pass

    def serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.control, selectors.EVENT_READ)
            while self.read_control():  # what came meanwhile (never waits), even when packets keep it busy
                self.send_due()
                wait = self.waiting[0][0] - time.monotonic() if self.waiting else None
                if wait is not None and wait <= 0.002:
                    if wait > 0:
                        time.sleep(wait)  # to the microsecond (epoll counts in milliseconds)
                    continue
                # epoll rounds its timeout up to the millisecond: wake up to 1 ms early, sleep the rest
                selector.select(None if wait is None else wait - 0.001)


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the desk ends it (its channel closes), not a terminal's ^C
    control = socket.socket(fileno=fd)
    control.send(b"Y")
    control.setblocking(False)
    _Sender(control).serve()


if __name__ == "__main__":
    main(int(sys.argv[1]))
