"""What crosses the loopback interface: every UDP datagram, captured as tcpdump would (an AF_PACKET socket on
``lo``; needs root or CAP_NET_RAW). For checking what a call puts on the wire without standing in its way."""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # on lo each datagram is seen leaving and arriving: the leaving copy is skipped
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # the kernel's receive time with each frame


@dataclass(frozen=True)
class Datagram:
    source_port: int
    destination_port: int
    payload: bytes
    arrived: float = 0.0  # the kernel's receive time (wall clock, s): spacing that does not wait on our thread


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The SO_TIMESTAMPNS stamp among a frame's ancillary data (0.0 if the kernel gave none)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("qq", data)
            return seconds + nanoseconds / 1e9
    return 0.0


class LoopbackCapture:
    """``with LoopbackCapture() as capture:`` keeps every UDP/IPv4 datagram on ``lo`` in ``capture.datagrams``.
    PermissionError without CAP_NET_RAW."""

    def __init__(self) -> None:
        self.datagrams: list[Datagram] = []
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        self._socket.bind(("lo", 0))
        self._socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback capture", daemon=True)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, ancillary, _, address = self._socket.recvmsg(65535, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            if ip[9] != 17:  # UDP
                continue
            source, destination, length = struct.unpack_from("!HHH", ip, header)
            payload = ip[header + 8 : header + length]
            with self._lock:
                self.datagrams.append(Datagram(source, destination, payload, kernel_time(ancillary)))

    def to_port(self, port: int) -> list[bytes]:
        with self._lock:
            return [datagram.payload for datagram in self.datagrams if datagram.destination_port == port]

    def between(self, ports: set[int]) -> list[Datagram]:
        with self._lock:
            return [d for d in self.datagrams if d.source_port in ports or d.destination_port in ports]
