"""Client transactions over UDP (RFC 3261 17.1): what makes the desk's own requests survive a lossy network.

pyVoIP sends each request once. Here every request the desk sends (INVITE, BYE, CANCEL, REFER, OPTIONS,
REGISTER) is a transaction, keyed by its top Via branch and CSeq method (17.1.3):

* INVITE (17.1.1): resent at T1, 2*T1, 4*T1 ... (timer A) until any response; no response within 64*T1
  (timer B) and the transaction times out, so the call can be reported failed instead of ringing forever.
* Others (17.1.2): resent at T1 doubling, capped at T2 (timer E), and at T2 once a provisional came; no final
  within 64*T1 (timer F) and it times out.
* A final response ends the retransmissions; the same final again (the far end did not hear our ACK, or its
  response crossed our retransmission) is absorbed: ``response`` says it is a repeat, and for a non-2xx
  final to an INVITE the ACK is resent (17.1.1.2). Completed transactions are kept 64*T1 for that.

One timer thread serves every transaction. Nothing here knows pyVoIP: the adapter hands in bytes and
addresses, and reads back what happened. ``retransmissions`` counts every resent request (a benchmark
prints it).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TIMEOUT_T1S = 64  # timers B and F: 64*T1
_BRANCH = re.compile(rb"^(?:Via|v)\s*:[^\r\n]*?;\s*branch\s*=\s*([^;,\s]+)", re.I | re.M)
_CSEQ = re.compile(rb"^CSeq\s*:\s*\d+\s+([A-Za-z]+)", re.I | re.M)

Key = tuple[str, str]  # (top Via branch, CSeq method)


def message_key(data: bytes) -> Key | None:
    """The transaction a request or response belongs to: its first Via's branch and its CSeq method."""
    head = data.split(b"\r\n\r\n", 1)[0]
    branch, cseq = _BRANCH.search(head), _CSEQ.search(head)
    if branch is None or cseq is None:
        return None
    return branch.group(1).decode("ascii", "replace"), cseq.group(1).decode("ascii", "replace").upper()


_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*([^\r\n]*?)\s*$", re.I | re.M)
_CSEQ_NUMBER = re.compile(rb"^CSeq\s*:\s*(\d+)", re.I | re.M)


def server_key(data: bytes) -> tuple[str, str, str, str] | None:
    """What tells a retransmitted request from a new one at a server: (branch, method, CSeq number, Call-ID).
    RFC 3261 17.2.3 names branch and method; the Call-ID and CSeq keep apart senders that reuse a branch."""
    key = message_key(data)
    head = data.split(b"\r\n\r\n", 1)[0]
    call_id, number = _CALL_ID.search(head), _CSEQ_NUMBER.search(head)
    if key is None or call_id is None or number is None:
        return None
    return key[0], key[1], number.group(1).decode(), call_id.group(1).decode("utf-8", "replace")


def status_of(data: bytes) -> int | None:
    """The status code of a response (``SIP/2.0 200 OK`` → 200), None for a request."""
    match = re.match(rb"SIP/2\.0\s+(\d{3})", data)
    return int(match.group(1)) if match else None


@dataclass(eq=False)
class ClientTransaction:
    """One request in flight: its bytes, where they go, and what came back."""

    key: Key
    data: bytes
    address: tuple[str, int]
    invite: bool
    on_timeout: Callable[[ClientTransaction], None] | None = None
    on_response: Callable[[bytes], None] | None = None  # hand responses here instead of the SIP stack
    started: float = field(default_factory=time.monotonic)
    interval: float = 0.0
    provisional: bool = False
    final: int | None = None
    timed_out: bool = False
    sent: int = 1  # the first send included
    ack: bytes | None = None  # for a non-2xx final to an INVITE: resent when the final is repeated
    ack_address: tuple[str, int] | None = None
    done: threading.Event = field(default_factory=threading.Event)  # a final response, or the timeout
    last_response: bytes | None = None

    @property
    def retransmissions(self) -> int:
        return self.sent - 1


class ClientTransactions:
    """Every client transaction of one SIP socket; ``send`` is how a request leaves (``sendto`` is the socket's)."""

    def __init__(self, sendto: Callable[[bytes, tuple[str, int]], object], t1: float = 0.5, t2: float = 4.0) -> None:
        self._sendto = sendto
        self.t1, self.t2 = t1, t2
        self._lock = threading.Condition()
        self._live: dict[Key, ClientTransaction] = {}
        self._timers: list[tuple[float, int, Key, str]] = []  # (when, tie-break, key, what: resend|timeout|forget)
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._running = False
        self.retransmissions = 0  # requests resent, all transactions together
        self.timeouts = 0  # transactions that got no final response within 64*T1
        self.absorbed = 0  # repeated final responses absorbed
        # TCP/TLS: the transport delivers, so requests are not resent (timers A and E apply to unreliable
        # transports only, 17.1.1.2 and 17.1.2.2); timers B and F still end a transaction nobody answers
        self.reliable = False

    # ------------------------------------------------------------------------------------------------ life

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name="SIP client transactions", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the timer thread; transactions still open are abandoned (the socket is closing)."""
        with self._lock:
            self._running = False
            self._lock.notify_all()
        for transaction in list(self._live.values()):
            transaction.done.set()

    # ------------------------------------------------------------------------------------------ requests

    def send(
        self,
        data: bytes,
        address: tuple[str, int],
        *,
        on_timeout: Callable[[ClientTransaction], None] | None = None,
        on_response: Callable[[bytes], None] | None = None,
    ) -> ClientTransaction:
        """Send a request and keep resending it per timers A/B or E/F until a final response or the timeout."""
        key = message_key(data)
        if key is None:
            raise ValueError("a request without a Via branch or CSeq cannot be a transaction")
        transaction = ClientTransaction(
            key, data, address, invite=key[1] == "INVITE", on_timeout=on_timeout, on_response=on_response
        )
        transaction.interval = self.t1
        with self._lock:
            self._live[key] = transaction
            if not self.reliable:
                self._schedule(transaction.started + self.t1, key, "resend")
            self._schedule(transaction.started + TIMEOUT_T1S * self.t1, key, "timeout")
        self._send(data, address)
        return transaction

    def request(self, data: bytes, address: tuple[str, int], wait: float | None = None) -> bytes | None:
        """Send a request and wait for its final response (its bytes), or None after 64*T1 (or ``wait`` s)
        without one."""
        finals: list[bytes] = []

        def take(response: bytes) -> None:
            if (status_of(response) or 0) >= 200:
                finals.append(response)

        transaction = self.send(data, address, on_response=take)
        transaction.done.wait(TIMEOUT_T1S * self.t1 + 1.0 if wait is None else wait)
        return finals[0] if finals else None

    def ack_sent(self, key: Key, ack: bytes, address: tuple[str, int]) -> None:
        """Remember the ACK of a non-2xx final to an INVITE: a repeat of that final gets it again."""
        with self._lock:
            transaction = self._live.get(key)
            if transaction is not None:
                transaction.ack, transaction.ack_address = ack, address

    # ------------------------------------------------------------------------------------------ responses

    def response(self, data: bytes) -> tuple[ClientTransaction | None, bool]:
        """A response arrived: (its transaction or None, whether it is a repeat to absorb). A repeated final
        of an INVITE that had a non-2xx gets its ACK resent here; a repeated 2xx is not absorbed (the ACK for a
        2xx is the dialog's business, RFC 3261 13.2.2.4)."""
        key, status = message_key(data), status_of(data)
        if key is None or status is None:
            return None, False
        resend: tuple[bytes, tuple[str, int]] | None = None
        with self._lock:
            transaction = self._live.get(key)
            if transaction is None:
                return None, False
            if transaction.final is not None or transaction.timed_out:
                repeat = status >= 200 and not (transaction.invite and 200 <= status < 300)
                if repeat:
                    self.absorbed += 1
                    if transaction.ack is not None and transaction.ack_address is not None:
                        resend = transaction.ack, transaction.ack_address
                else:
                    repeat = status < 200  # a late provisional means nothing now
            else:
                repeat = False
                transaction.last_response = data
                if status >= 200:
                    transaction.final = status
                    self._schedule(time.monotonic() + TIMEOUT_T1S * self.t1, key, "forget")
                elif not transaction.provisional:
                    transaction.provisional = True
                    if not transaction.invite:
                        transaction.interval = self.t2  # 17.1.2.2: proceeding, resent every T2
        if resend is not None:
            self._send(*resend)
        if not repeat and transaction.final is not None:
            transaction.done.set()
        return transaction, repeat

    # ------------------------------------------------------------------------------------------ timers

    def _schedule(self, when: float, key: Key, what: str) -> None:
        heapq.heappush(self._timers, (when, next(self._order), key, what))
        self._lock.notify_all()

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self._sendto(data, address)
        except OSError as exc:
            log.debug("SIP request to %s:%s not sent: %s", *address, exc)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._running:
                    return
                now = time.monotonic()
                if not self._timers or self._timers[0][0] > now:
                    self._lock.wait(min(1.0, self._timers[0][0] - now) if self._timers else 1.0)
                    continue
                _, _, key, what = heapq.heappop(self._timers)
                transaction = self._live.get(key)
                if transaction is None:
                    continue
                action = self._due(transaction, what, now)
            if action is not None:
                action()

    def _due(self, transaction: ClientTransaction, what: str, now: float) -> Callable[[], None] | None:
        """What a timer that fired means (under the lock); the returned action runs outside it."""
        if what == "forget":
            self._live.pop(transaction.key, None)
            return None
        if transaction.final is not None or transaction.timed_out:
            return None
        if what == "timeout" and transaction.invite and transaction.provisional:
            # timer B runs only until a provisional (17.1.1.2): the caller's own ring timeout ends it (CANCEL)
            self._schedule(now + 10 * TIMEOUT_T1S * self.t1, transaction.key, "forget")
            return None
        if what == "timeout":
            transaction.timed_out = True
            self.timeouts += 1
            self._schedule(now + TIMEOUT_T1S * self.t1, transaction.key, "forget")
            return lambda: self._timed_out(transaction)
        if transaction.invite and transaction.provisional:
            return None  # timer A stops at the first provisional (17.1.1.2)
        transaction.sent += 1
        self.retransmissions += 1
        if transaction.invite:
            transaction.interval *= 2
        elif not transaction.provisional:
            transaction.interval = min(transaction.interval * 2, self.t2)
        self._schedule(now + transaction.interval, transaction.key, "resend")
        return lambda: self._send(transaction.data, transaction.address)

    def _timed_out(self, transaction: ClientTransaction) -> None:
        log.info(
            "%s to %s:%s: no final response within %.1f s (%d retransmissions)",
            transaction.key[1],
            *transaction.address,
            TIMEOUT_T1S * self.t1,
            transaction.retransmissions,
        )
        transaction.done.set()
        if transaction.on_timeout is not None:
            try:
                transaction.on_timeout(transaction)
            except Exception:
                log.exception("handling the timeout of a %s failed", transaction.key[1])
