"""SIP over TCP or TLS (RFC 3261 §18.3, RFC 5923, RFC 5626 keep-alives) for a SIP stack written for UDP.

pyVoIP speaks UDP only: it sends with ``sendto`` and reads whole datagrams with ``recv``/``recvfrom`` on one
socket, which it also hands to ``select``. :class:`StreamSipSocket` keeps that face over one stream
connection to the registrar or PBX, so the adapter swaps its UDP socket for it and nothing else changes:

* one connection, opened from the desk's own SIP port (``[sip] local_port``) and kept open: every request
  and answer goes over it, and the registrar reaches the desk over it too (calls, BYEs), since the Contact
  the desk registers names that address with ``transport=tls`` and the Via carries ``;alias`` (RFC 5923);
* messages framed by Content-Length; each whole message is handed on as one "datagram" through a local
  socket pair, so ``select`` and ``recv`` work as on UDP and a message is never split or merged;
* TLS verifies the server's certificate against ``[sip] tls_ca_file`` or the system store, and its name
  (the host, or the IP address in the certificate's names); a failure is one line saying what to set;
* CRLF keep-alives every 30 s while idle (RFC 5626 §4.4.1), answered pings from the server; a lost
  connection is re-opened with growing pauses and ``on_reconnect`` called (the adapter registers again);
* the desk's own Via and Contact headers are rewritten from UDP to the transport in use as they leave, as
  pyVoIP writes ``SIP/2.0/UDP`` and ``transport=UDP`` everywhere. Nothing else in a message is touched
  (the digest pyVoIP computes covers the request URI, not these headers).
"""

from __future__ import annotations

import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger(__name__)

StreamKind = Literal["tcp", "tls"]
MAX_MESSAGE = 65535  # a SIP message larger than this ends the connection (RFC 3261 has no limit; a UA needs none)
KEEPALIVE_SECONDS = 30.0  # RFC 5626 §4.4.1 suggests 95-120 s for TCP; loopback NATs and SBCs want less
RECONNECT_PAUSES = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between attempts, the last repeated
_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)
_VIA_LINE = re.compile(rb"^((?:via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*)UDP([^\r\n]*)", re.I | re.M)
_CONTACT_LINE = re.compile(rb"^(?:contact|m)[ \t]*:[^\r\n]*", re.I | re.M)
_TRANSPORT_PARAM = re.compile(rb";transport=[a-z]+", re.I)


class TransportError(Exception):
    """The connection could not be made or verified; the message is one line saying why and what to change."""


class FramingError(Exception):
    """The peer sent something that cannot be a SIP message on a stream: the connection must be dropped."""


class SipStreamFramer:
    """Splits a byte stream into SIP messages by Content-Length (RFC 3261 §18.3). CRLFs between messages are
    keep-alives: a double CRLF is a ping (to be answered with one CRLF, RFC 5626 §3.5.1), a single one a pong."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.pings = 0  # double-CRLF pings seen since the caller last reset this

    def feed(self, data: bytes) -> list[bytes]:
        """Whole messages completed by ``data``, in order; raises FramingError on a message that cannot end."""
        self._buffer += data
        messages: list[bytes] = []
        while True:
            if self._buffer.startswith(b"\r\n"):
                if self._buffer.startswith(b"\r\n\r\n"):
                    self.pings += 1
                    del self._buffer[:4]
                elif b"\r\n\r\n".startswith(bytes(self._buffer)):
                    break  # a ping cut in two, or a pong: the next bytes tell
                else:
                    del self._buffer[:2]  # a pong, or a stray CRLF before a message (RFC 3261 §7.5)
                continue
            end = self._buffer.find(_HEADER_END)
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    raise FramingError(f"no end of headers within {MAX_MESSAGE} bytes")
                break
            head = bytes(self._buffer[: end + 4])
            lengths = _CONTENT_LENGTH.findall(head)
            if not lengths:
                raise FramingError("a message without Content-Length (required on a stream, RFC 3261 §20.14)")
            body = int(lengths[0])
            total = end + 4 + body
            if total > MAX_MESSAGE:
                raise FramingError(f"a message of {total} bytes (more than {MAX_MESSAGE})")
            if len(self._buffer) < total:
                break
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
        return messages


def for_stream(message: bytes, kind: StreamKind) -> bytes:
    """``message`` as the desk sends it over ``kind``: a request's own (top) Via says TCP/TLS and asks for the
    connection to be reused (``;alias``, RFC 5923); every Contact says ``transport=tcp|tls``, so in-dialog
    requests and calls come back over the connection. Responses keep the Vias they copied."""
    name = kind.upper().encode()
    head_end = message.find(_HEADER_END)
    head, rest = (message, b"") if head_end < 0 else (message[:head_end], message[head_end:])
    if not head.startswith(b"SIP/2.0 "):

        def via(match: re.Match[bytes]) -> bytes:
            params = match.group(2)
            return match.group(1) + name + params + (b"" if b";alias" in params.lower() else b";alias")

        head = _VIA_LINE.sub(via, head, count=1)

    def contact(match: re.Match[bytes]) -> bytes:
        line = match.group(0)
        if line.rstrip().endswith(b"*"):
            return line
        wanted = b";transport=" + kind.encode()
        if _TRANSPORT_PARAM.search(line):
            return _TRANSPORT_PARAM.sub(wanted, line)
        close = line.find(b">")
        if close >= 0:
            return line[:close] + wanted + line[close:]
        semicolon = line.find(b";", line.find(b"sip:"))
        return line + wanted if semicolon < 0 else line[:semicolon] + wanted + line[semicolon:]

    head = _CONTACT_LINE.sub(contact, head)
    return head + rest


def _connect_error(kind: StreamKind, where: str, exc: BaseException, ca_file: str | None) -> TransportError:
    """One line for a failed connection: what happened and the setting that changes it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = f"the CAs in {ca_file}" if ca_file else "the system's CA store"
        return TransportError(
            f"TLS to {where} refused: its certificate is not trusted by {trusted} ({exc.verify_message}); "
            "set [sip] tls_ca_file to the CA that signed the registrar's certificate"
        )
    if isinstance(exc, ssl.SSLError):
        return TransportError(f"TLS to {where} failed: {exc.reason or exc}; is it a TLS port? ([sip] port)")
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(f"{kind.upper()} connection to {where} refused: nothing listens there ([sip] port)")
    if isinstance(exc, TimeoutError):
        hint = "; is it a TLS port? ([sip] port)" if kind == "tls" else ""
        return TransportError(f"{kind.upper()} connection to {where}: no answer in time{hint}")
    return TransportError(f"{kind.upper()} connection to {where} failed: {exc}")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context that verifies the server (certificate chain and name), TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class StreamSipSocket:
    """One TCP/TLS connection to the SIP server with the datagram face pyVoIP uses (see the module docstring).

    ``connect`` raises :class:`TransportError`; afterwards a lost connection is re-opened in the background.
    ``sendto`` ignores the address: everything goes to the server, which is the desk's outbound proxy."""

    def __init__(
        self,
        server: str,
        port: int,
        kind: StreamKind,
        *,
        local_ip: str,
        local_port: int,
        ca_file: str | None = None,
        server_name: str | None = None,
        timeout: float = 5.0,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.server, self.port, self.kind = server, port, kind
        self.local = (local_ip, local_port)
        self.ca_file = ca_file or None
        self.server_name = server_name or server
        self.timeout = timeout
        self.keepalive_seconds = keepalive_seconds
        self.on_reconnect = on_reconnect
        self.connections = 0  # how many times a connection was opened (1 while it is simply reused)
        self.messages_sent = 0
        self.messages_received = 0
        self._context = tls_context(self.ca_file) if kind == "tls" else None
        self._connection: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._up = threading.Event()
        self._closed = False
        self._last_sent = time.monotonic()
        # whole messages are handed on as datagrams: select(), recv() and non-blocking mode work as on UDP
        self._inbox, self._inbox_writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"{self.server}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    def describe(self) -> str:
        """For the startup lines: e.g. "tls to 127.0.0.1:5060 (certificate verified)"."""
        if self.kind == "tls":
            return f"tls to {self.where} (certificate verified against {self.ca_file or 'the system store'})"
        return f"tcp to {self.where}"

    # ------------------------------------------------------------------------------------------ connection

    def _open(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.server else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # re-open from the same port after a loss
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.bind(self.local)  # the port the Contact names: the registrar reuses this connection to reach us
            raw.settimeout(self.timeout)
            raw.connect((self.server, self.port))
            connection = raw
            if self._context is not None:
                connection = self._context.wrap_socket(raw, server_hostname=self.server_name)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise _connect_error(self.kind, self.where, exc, self.ca_file) from None
        connection.settimeout(self.timeout)
        self.connections += 1
        return connection

    def connect(self) -> None:
        """Open and verify the connection and start reading it; TransportError (one line) when it cannot be."""
        if self._closed:
            raise TransportError("the SIP connection was closed")
        self._connection = self._open()
        self._up.set()
        self._last_sent = time.monotonic()
        self._reader = threading.Thread(target=self._read_loop, name=f"SIP {self.kind} receive", daemon=True)
        self._reader.start()
        log.info("SIP over %s", self.describe())

    def _drop(self, why: str) -> None:
        connection, self._connection = self._connection, None
        self._up.clear()
        if connection is not None:
            if not self._closed:
                log.warning("SIP %s connection to %s lost: %s", self.kind, self.where, why)
            try:
                connection.close()
            except OSError:
                pass

    def _reconnect(self) -> bool:
        """Re-open with growing pauses until it works or the socket is closed; then ``on_reconnect``."""
        attempt = 0
        while not self._closed:
            pause = RECONNECT_PAUSES[min(attempt, len(RECONNECT_PAUSES) - 1)]
            time.sleep(pause)  # backoff between attempts at a server that just went away
            if self._closed:
                return False
            try:
                connection = self._open()
            except TransportError as exc:
                attempt += 1
                if attempt in (1, 5) or attempt % 20 == 0:
                    log.warning("%s (attempt %d)", exc, attempt)
                continue
            with self._send_lock:
                self._connection = connection
                self._up.set()
                self._last_sent = time.monotonic()
            log.info("SIP %s connection to %s re-opened", self.kind, self.where)
            if self.on_reconnect is not None:  # on its own thread: it may wait for answers this thread reads
                threading.Thread(target=self._after_reconnect, name="SIP re-register", daemon=True).start()
            return True
        return False

    def _after_reconnect(self) -> None:
        try:
            if self.on_reconnect is not None:
                self.on_reconnect()
        except Exception:
            log.exception("after re-opening the SIP connection")

    def _read_loop(self) -> None:
        framer = SipStreamFramer()
        while not self._closed:
            connection = self._connection
            if connection is None:
                if not self._reconnect():
                    return
                framer = SipStreamFramer()
                continue
            try:
                pending = isinstance(connection, ssl.SSLSocket) and connection.pending() > 0
                if not pending:
                    readable, _, _ = select.select([connection], [], [], 1.0)
                    if not readable:
                        self._keepalive()
                        continue
                with self._send_lock:
                    data = connection.recv(MAX_MESSAGE)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except (OSError, ValueError) as exc:
                self._drop(str(exc) or type(exc).__name__)
                continue
            if not data:
                self._drop("closed by the server")
                continue
            try:
                messages = framer.feed(data)
            except FramingError as exc:
                self._drop(str(exc))
                continue
            for message in messages:
                self.messages_received += 1
                try:
                    self._inbox_writer.send(message)
                except OSError:
                    return  # closed
            if framer.pings:
                framer.pings = 0
                self._send_raw(b"\r\n")

    def _keepalive(self) -> None:
        if time.monotonic() - self._last_sent >= self.keepalive_seconds:
            self._send_raw(b"\r\n\r\n")

    def _send_raw(self, data: bytes) -> None:
        with self._send_lock:
            connection = self._connection
            if connection is None:
                raise OSError(f"SIP {self.kind} connection to {self.where} is down")
            try:
                connection.sendall(data)
            except (OSError, ValueError) as exc:
                self._drop(str(exc) or type(exc).__name__)
                raise OSError(f"SIP {self.kind} connection to {self.where} lost") from None
            self._last_sent = time.monotonic()

    # ------------------------------------------------------------------------- the datagram face pyVoIP uses

    def sendto(self, data: bytes, address: object = None) -> int:
        """Send one message to the server (``address`` is ignored: the server is the outbound proxy). Waits
        up to ``timeout`` for a connection being re-opened; OSError when there is none."""
        if self._closed:
            raise OSError("SIP connection closed")
        if not self._up.wait(self.timeout):
            raise OSError(f"SIP {self.kind} connection to {self.where} is down")
        self._send_raw(for_stream(data, self.kind))
        self.messages_sent += 1
        return len(data)

    def send(self, data: bytes) -> int:
        return self.sendto(data)

    def recv(self, bufsize: int = MAX_MESSAGE) -> bytes:
        """One whole message. Once closed: BlockingIOError, which pyVoIP's receive loop takes as "nothing yet"
        before it sees it was stopped (a closed UDP socket raised EBADF into that thread instead)."""
        try:
            if not self._closed:
                return self._inbox.recv(bufsize)
        except BlockingIOError:
            raise
        except OSError:
            if not self._closed:
                raise
        raise BlockingIOError("SIP connection closed")

    def recvfrom(self, bufsize: int = MAX_MESSAGE) -> tuple[bytes, tuple[str, int]]:
        """One whole message and, as its source, the server (every message comes over its connection)."""
        return self.recv(bufsize), (self.server, self.port)

    def fileno(self) -> int:
        return self._inbox.fileno()

    def setblocking(self, flag: bool) -> None:
        if not self._closed:
            self._inbox.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        if not self._closed:
            self._inbox.settimeout(value)

    def getsockname(self) -> tuple[str, int]:
        return self.local

    def close(self) -> None:
        """End the connection and the reader; safe to call twice (pyVoIP closes its socket twice)."""
        if self._closed:
            return
        self._closed = True
        with self._send_lock:
            self._drop("closed")
        self._up.set()  # wake senders waiting for a reconnection; they find the socket closed
        self._inbox_writer.close()
        self._inbox.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2)
