"""Loopback ports: one nothing is bound to, and whether another process has bound one yet."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_run(count: int, avoid: tuple[int, ...] = ()) -> int:
    """The first of ``count`` consecutive UDP ports on 127.0.0.1, the first even, all free right now and none in
    ``avoid`` (SIPp's media: audio at the first, RTCP and video after it). Two ``free_port()`` calls in a row
    can return the same port (nothing holds it in between): SIPp once got its own SIP port as its media port."""
    for _ in range(100):
        first = free_port() & ~1
        if any(first <= port < first + count for port in avoid) or first + count > 65536:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports found on 127.0.0.1")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (a web server's)."""
    return free_port(socket.SOCK_STREAM)


def udp_port_bound(port: int) -> bool:
    """Whether some process has a UDP socket bound to ``port`` (from the kernel's socket tables: looking does
    not disturb the process that binds it, as a test bind would)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(int(row.split()[1].rsplit(":", 1)[1], 16) == port for row in rows if row.strip()):
            return True
    return False


def accepts_connections(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False
