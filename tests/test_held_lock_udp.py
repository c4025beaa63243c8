"""The RTP threads' UDP calls that keep the interpreter lock (telephony/held_lock_udp.py), on real sockets."""

from __future__ import annotations

import ctypes
import socket

import pytest

from contactcenter.telephony import held_lock_udp
from contactcenter.telephony.held_lock_udp import HeldLockSocket

pytestmark = pytest.mark.skipif(held_lock_udp._CALLS is None, reason="this system's libc has no sendto/recv")


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    """Two non-blocking UDP sockets on loopback."""
    first, second = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (first, second):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    yield first, second
    first.close()
    second.close()


def wait_readable(sock: socket.socket) -> None:
    import select

    assert select.select([sock], [], [], 2.0)[0], "nothing arrived within 2 s"


def test_datagrams_go_and_come_whole_in_order_with_their_zero_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    first, second = pair
    sender, receiver = HeldLockSocket.wrap(first), HeldLockSocket.wrap(second)
    assert isinstance(sender, HeldLockSocket) and isinstance(receiver, HeldLockSocket)
    packets = [bytes([0x80, 0, n, 0]) + bytes(8) + bytes(range(256))[: 160 - n] for n in range(20)]
    for packet in packets:
        assert sender.sendto(packet, second.getsockname()) == len(packet)
    received = []
    while len(received) < len(packets):
        wait_readable(second)
        received.append(receiver.recv(8192))
    assert received == packets
    with pytest.raises(BlockingIOError):  # nothing waiting: what the RTP loop's drain stops at
        receiver.recv(8192)
    # a datagram from a plain socket reads the same, and a reply reaches the plain socket
    second.sendto(b"plain", first.getsockname())
    wait_readable(first)
    assert sender.recv(2048) == b"plain"
    receiver.sendto(b"back", first.getsockname())
    wait_readable(first)
    assert first.recv(2048) == b"back"


def test_a_datagram_longer_than_the_buffer_is_cut_as_the_socket_module_cuts_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    first, second = pair
    first.sendto(b"x" * 3000, second.getsockname())
    wait_readable(second)
    assert HeldLockSocket.wrap(second).recv(1000) == b"x" * 1000


def test_errors_are_the_socket_modules_and_a_closed_socket_sends_nowhere(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    first, second = pair
    sender = HeldLockSocket.wrap(first)
    with pytest.raises(OSError):  # port 0 cannot be sent to
        sender.sendto(b"x", ("127.0.0.1", 0))
    sender.sendto(b"by name", ("localhost", second.getsockname()[1]))  # a name: the socket module resolves it
    wait_readable(second)
    assert second.recv(100) == b"by name"
    first.close()
    with pytest.raises(OSError):  # its number is not reused by mistake: -1 once closed
        sender.sendto(b"x", second.getsockname())
    with pytest.raises(OSError):
        sender.recv(100)


def test_only_non_blocking_ipv4_datagram_sockets_are_wrapped() -> None:
    blocking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stream.setblocking(False)
    version6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    version6.setblocking(False)
    try:
        for sock in (blocking, stream, version6):
            assert HeldLockSocket.wrap(sock) is sock
    finally:
        for sock in (blocking, stream, version6):
            sock.close()


def test_the_calls_keep_the_interpreter_lock() -> None:
    """ctypes releases the lock around a foreign call unless the function comes from a PyDLL; this is the
    whole point of the module."""
    assert held_lock_udp._CALLS is not None
    for call in held_lock_udp._CALLS:
        assert call._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
