"""RTP ports held from the moment a call is given one until its stream starts.

pyVoIP picks a call's RTP port at random among those no call of its own holds, and binds it only when the
call is answered, seconds later. Any other socket on the machine may hold that port by then: another
program with a range overlapping ours, or simply a client socket given it by the kernel when the range lies
among the ephemeral ports (32768-60999 on Linux). The bind then failed inside the answer, after the 200 OK,
and the call was lost. Here a port is only handed out once a socket is bound to it, and that very socket is
the stream's: nothing can take the port between the SDP that names it and the media that uses it.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections.abc import Collection

log = logging.getLogger(__name__)


class NoRtpPortError(OSError):
    """Every port of the range is held by a call, or by another socket on the machine."""


class RtpPortReservations:
    """Bound, unused UDP sockets by (address, port); taken by the stream that starts on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int], socket.socket] = {}

    def reserve(self, address: str, low: int, high: int, taken: Collection[int]) -> int:
        """Bind a free port of ``low..high`` not in ``taken`` (the caller's own calls) and keep its socket.
        Ports some other socket holds are passed over; raises NoRtpPortError if none is left."""
        candidates = [port for port in range(low, high + 1) if port not in taken]
        random.shuffle(candidates)  # as pyVoIP did: a port just released is not handed straight back
        busy = 0
        for port in candidates:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError:
                sock.close()
                busy += 1
                continue
            with self._lock:
                self._held[(address, port)] = sock
            if busy:
                log.debug("RTP port %d reserved after %d in use elsewhere", port, busy)
            return port
        raise NoRtpPortError(
            f"no RTP port free in {low}-{high}: {len(taken)} held by calls, {busy} by other sockets on this machine"
        )

    def take(self, address: str, port: int) -> socket.socket | None:
        """The reserved socket for the stream starting on ``port`` (None: not reserved here)."""
        with self._lock:
            return self._held.pop((address, port), None)

    def release(self, address: str, ports: Collection[int]) -> None:
        """Close the sockets of ports whose call ended before its stream started (it rang, or failed)."""
        with self._lock:
            released = [self._held.pop((address, port), None) for port in ports]
        for sock in released:
            if sock is not None:
                sock.close()

    def held(self) -> int:
        """Sockets bound and waiting for their stream (for tests: none may be left once calls end)."""
        with self._lock:
            return len(self._held)


RTP_PORTS = RtpPortReservations()
