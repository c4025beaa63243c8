"""UDP sends and reads for the RTP threads that keep Python's interpreter lock through the system call.

``socket.sendto`` and ``socket.recv`` let go of the interpreter lock around the system call so that other
threads may run while it blocks. On a non-blocking datagram socket it never blocks: the call takes
microseconds, but letting go hands the lock to whichever thread is waiting for it, and the RTP thread must
then wait for it back: up to the switch interval and until that thread reaches a point where it can give it
up. At 80 calls that is 4,000 sends and 4,000 reads a second, each an occasion for a busy thread of the desk
(recognition's intake and feeders, the talk listener's pipes) to get in ahead of the next packet. Here the
same calls go through libc with the lock kept (ctypes' ``PyDLL``: the standard library's way to call C
without releasing it); no maintained library offers a socket call that keeps it.

Only for non-blocking IPv4 datagram sockets (``MSG_DONTWAIT`` on every call, so one can never block while
holding the lock); anything else, or a system without libc's ``sendto``/``recv``, is used as it is.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from typing import Any

MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
SOCKADDR_IN_SIZE = 16


def _libc_calls() -> tuple[Any, Any] | None:
    """libc's sendto and recv, called without letting go of the interpreter lock; None where there are none."""
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        send_to, receive = libc.sendto, libc.recv
    except (OSError, AttributeError):
        return None
    send_to.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    send_to.restype = ctypes.c_ssize_t
    receive.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    receive.restype = ctypes.c_ssize_t
    return send_to, receive


_CALLS = _libc_calls() if hasattr(socket, "MSG_DONTWAIT") else None


def _raise_errno() -> None:
    code = ctypes.get_errno()
    if code in (errno.EAGAIN, errno.EWOULDBLOCK):
        raise BlockingIOError(code, os.strerror(code))
    raise OSError(code, os.strerror(code))


class HeldLockSocket:
    """A non-blocking IPv4 UDP socket whose ``sendto`` and ``recv`` keep the interpreter lock. Errors are the
    socket module's (BlockingIOError when nothing is waiting, OSError otherwise); everything else is the
    socket's own."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._addresses: dict[tuple[str, int], bytes] = {}
        self._buffer = ctypes.create_string_buffer(0)

    @staticmethod
    def wrap(sock: socket.socket) -> socket.socket | HeldLockSocket:
        """``sock`` wrapped where it qualifies (and the system has the calls), else ``sock`` itself."""
        if _CALLS is None or sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
            return sock
        if sock.gettimeout() != 0.0:
            return sock
        return HeldLockSocket(sock)

    def _sockaddr(self, address: tuple[str, int]) -> bytes:
        raw = self._addresses.get(address)
        if raw is None:
            host, port = address
            family = socket.AF_INET.to_bytes(2, sys.byteorder)  # sa_family: the machine's own byte order
            raw = family + port.to_bytes(2, "big") + socket.inet_aton(host) + bytes(8)
            if len(self._addresses) > 16:  # a stream talks to one address; a re-INVITE may move it
                self._addresses.clear()
            self._addresses[address] = raw
        return raw

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        assert _CALLS is not None
        try:
            sockaddr = self._sockaddr(address)
        except (OSError, ValueError, TypeError, OverflowError):  # a name (the socket module resolves it), or worse
            return self._socket.sendto(data, address)
        # the socket's number is read each time: -1 once closed (EBADF). (A stream is closed after it left the
        # loop, so its number cannot be reused under a send in progress but for a thread switch between these
        # two lines: the same window CPython's own sendto has.)
        sent = _CALLS[0](self._socket.fileno(), data, len(data), MSG_DONTWAIT, sockaddr, SOCKADDR_IN_SIZE)
        if sent < 0:
            _raise_errno()
        return int(sent)

    def recv(self, bufsize: int) -> bytes:
        assert _CALLS is not None
        if len(self._buffer) < bufsize:
            self._buffer = ctypes.create_string_buffer(bufsize)
        size = _CALLS[1](self._socket.fileno(), self._buffer, bufsize, MSG_DONTWAIT)
        if size < 0:
            _raise_errno()
        return ctypes.string_at(self._buffer, size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)
