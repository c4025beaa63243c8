"""A userspace UDP relay that loses a seeded fraction of datagrams each way between two endpoints.

netem is not available on these machines, so a lossy link is made in userspace: the relay sits between
endpoint A (say Kamailio) and endpoint B (say the desk) on loopback. It has one socket facing each side:

* A sends to :attr:`LossyRelay.port_for_a`; the relay passes the datagram on to B from :attr:`port_for_b`.
* B sends to :attr:`port_for_b`; the relay passes the datagram on to A from :attr:`port_for_a`.

So each endpoint always sees the same peer address (the relay's socket facing it), as it would see a router.
Each way loses its own fraction of datagrams, drawn from its own ``random.Random`` seeded with the seed and
the direction: the same seed and the same sequence of datagrams in one direction lose the same datagrams,
however the two directions interleave.

The relay also counts what it saw, each way: datagrams received, passed on and dropped, and *repeats*
(a datagram byte-for-byte equal to an earlier one in the same direction: a retransmission), with the first
line of each SIP message, so a loss test can say how many retransmissions were sent and of what.

``python -m tests.helpers.lossy_relay`` runs a small self-test on loopback.
"""

from __future__ import annotations

import hashlib
import random
import re
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from contactcenter.telephony.registrar import LocalRegistrar

Direction = Literal["a>b", "b>a"]
DIRECTIONS: tuple[Direction, Direction] = ("a>b", "b>a")
MAX_DATAGRAM = 65535


def first_line(data: bytes) -> str:
    """The start line of a SIP message (``INVITE sip:...`` → ``INVITE``, ``SIP/2.0 200 OK`` → ``200``), or
    ``"?"`` for anything else; what the counters are keyed by."""
    line = data.split(b"\r\n", 1)[0].decode("utf-8", errors="replace")
    if line.startswith("SIP/2.0 "):
        parts = line.split(" ", 2)
        return parts[1] if len(parts) > 1 else "?"
    method = line.split(" ", 1)[0]
    return method if method and line.endswith("SIP/2.0") else "?"


def cseq_method(data: bytes) -> str:
    """The method named by the CSeq header field (``"INVITE"``, ``"BYE"``...), or ``""`` if there is none."""
    for raw in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = raw.partition(b":")
        if name.strip().lower() == b"cseq":
            words = value.split()
            return words[1].decode("ascii", errors="replace") if len(words) > 1 else ""
    return ""


def label(data: bytes) -> str:
    """A short name for a SIP datagram: the request method, or the status code with its CSeq method
    (``"200/INVITE"``), so the 200 OK for an INVITE is told apart from the one for a BYE."""
    start = first_line(data)
    if start.isdigit():
        return f"{start}/{cseq_method(data) or '?'}"
    return start


@dataclass
class DirectionStats:
    """What the relay saw in one direction."""

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    repeats: int = 0  # byte-for-byte equal to an earlier datagram this way: retransmissions
    received_by_label: Counter[str] = field(default_factory=Counter)
    dropped_by_label: Counter[str] = field(default_factory=Counter)
    repeats_by_label: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "repeats": self.repeats,
            "received_by_label": dict(self.received_by_label),
            "dropped_by_label": dict(self.dropped_by_label),
            "repeats_by_label": dict(self.repeats_by_label),
        }


@dataclass(frozen=True)
class Passage:
    """One datagram through the relay: when (monotonic seconds), which way, what, and whether it was lost."""

    at: float
    direction: Direction
    label: str
    dropped: bool
    size: int


class LossyRelay:
    """``with LossyRelay(a, b, loss=0.1, seed=7) as relay:`` relays UDP between ``a`` and ``b`` for the block.

    ``a`` and ``b`` are ``(host, port)`` of the two endpoints. ``loss`` is the fraction (0 to 1) of datagrams
    lost each way, unless ``loss_a_to_b`` or ``loss_b_to_a`` give a direction its own. The relay's sockets
    bind ``host`` on free ports unless ``port_for_a`` / ``port_for_b`` name them. Loss can be changed while
    it runs (:meth:`set_loss`), for instance to let a phone register before the link turns lossy.
    """

    def __init__(
        self,
        a: tuple[str, int],
        b: tuple[str, int],
        *,
        loss: float = 0.0,
        seed: int = 0,
        loss_a_to_b: float | None = None,
        loss_b_to_a: float | None = None,
        host: str = "127.0.0.1",
        port_for_a: int = 0,
        port_for_b: int = 0,
        keep_passages: bool = True,
    ) -> None:
        self.a = a
        self.b = b
        self.seed = seed
        self._loss: dict[Direction, float] = {"a>b": loss, "b>a": loss}
        self.set_loss(loss_a_to_b=loss_a_to_b, loss_b_to_a=loss_b_to_a)
        self._random: dict[Direction, random.Random] = {d: random.Random(f"{seed}:{d}") for d in DIRECTIONS}
        self.stats: dict[Direction, DirectionStats] = {d: DirectionStats() for d in DIRECTIONS}
        self.passages: list[Passage] = []
        self._keep_passages = keep_passages
        self._seen: dict[Direction, set[bytes]] = {d: set() for d in DIRECTIONS}
        self._lock = threading.Lock()
        self._sock_a = self._bind(host, port_for_a)  # faces A: A sends here, and hears B from here
        self._sock_b = self._bind(host, port_for_b)  # faces B
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    @property
    def port_for_a(self) -> int:
        """The port endpoint A sends to (and hears B from)."""
        return int(self._sock_a.getsockname()[1])

    @property
    def port_for_b(self) -> int:
        """The port endpoint B sends to (and hears A from)."""
        return int(self._sock_b.getsockname()[1])

    def set_loss(
        self, loss: float | None = None, *, loss_a_to_b: float | None = None, loss_b_to_a: float | None = None
    ) -> None:
        """Change the loss: ``loss`` both ways, or each way on its own."""
        for direction, value in (("a>b", loss_a_to_b), ("b>a", loss_b_to_a)):
            chosen = value if value is not None else loss
            if chosen is None:
                continue
            if not 0.0 <= chosen <= 1.0:
                raise ValueError(f"loss must be between 0 and 1, not {chosen!r}")
            self._loss[direction] = chosen  # type: ignore[index]

    def reset_counts(self) -> None:
        """Start counting afresh (say once a phone has registered over a clean link and the loss begins);
        a datagram seen before the reset is not a repeat after it."""
        with self._lock:
            self.stats = {d: DirectionStats() for d in DIRECTIONS}
            self.passages = []
            self._seen = {d: set() for d in DIRECTIONS}

    def loss(self, direction: Direction) -> float:
        return self._loss[direction]

    def start(self) -> LossyRelay:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._sock_a.close()
        self._sock_b.close()

    def __enter__(self) -> LossyRelay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock_a, selectors.EVENT_READ, "a>b")
            selector.register(self._sock_b, selectors.EVENT_READ, "b>a")
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    direction: Direction = key.data
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    while True:
                        try:
                            data, _ = sock.recvfrom(MAX_DATAGRAM)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:  # ICMP port unreachable from an earlier send on this socket
                            continue
                        self._pass(direction, data)

    def _pass(self, direction: Direction, data: bytes) -> None:
        """Count ``data``, then drop it or send it on from the socket facing its destination."""
        name = label(data)
        digest = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            stats = self.stats[direction]
            stats.received += 1
            stats.received_by_label[name] += 1
            if digest in self._seen[direction]:
                stats.repeats += 1
                stats.repeats_by_label[name] += 1
            else:
                self._seen[direction].add(digest)
            dropped = self._random[direction].random() < self._loss[direction]
            if dropped:
                stats.dropped += 1
                stats.dropped_by_label[name] += 1
            else:
                stats.forwarded += 1
            if self._keep_passages:
                self.passages.append(Passage(time.monotonic(), direction, name, dropped, len(data)))
        if dropped:
            return
        out, target = (self._sock_b, self.b) if direction == "a>b" else (self._sock_a, self.a)
        try:
            out.sendto(data, target)
        except OSError:  # the far end is not listening (yet): a lost datagram, as on a real link
            pass

    def summary(self) -> dict[str, dict[str, object]]:
        """The counters of both directions, as plain data (for a JSON report)."""
        with self._lock:
            return {direction: self.stats[direction].as_dict() for direction in DIRECTIONS}


# ------------------------------------------------------------------------------------------------ Kamailio behind it


def advertising_registrar(port: int, advertise: str, **options: Any) -> LocalRegistrar:
    """The loopback Kamailio on ``port``, telling everyone to reach it at ``advertise`` ("host:port", its
    ``listen ... advertise``: in its Via and Record-Route). With ``advertise`` a relay's port facing the desk, and
    the desk advertising the relay's other port (SipAccount.contact_port), every SIP message between the two
    crosses the relay, as across a router with static port forwarding."""
    from contactcenter.telephony.registrar import LocalRegistrar

    class AdvertisingRegistrar(LocalRegistrar):
        def config_text(self) -> str:
            return re.sub(
                r"^(listen=udp:\S+)$", rf"\1 advertise {advertise}", super().config_text(), count=1, flags=re.M
            )

    return AdvertisingRegistrar("127.0.0.1", port, **options)


# ------------------------------------------------------------------------------------------------ self-test


def _self_test(count: int = 2000, loss: float = 0.1, seed: int = 7) -> None:
    """Loopback check: about ``loss`` of ``count`` datagrams are lost each way, the same ones for the same
    seed, none are reordered or altered, repeats are counted, and zero loss loses nothing."""

    def one_run(seed: int, loss: float) -> tuple[list[int], list[int], dict[str, dict[str, object]]]:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as end_a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as end_b,
        ):
            end_a.bind(("127.0.0.1", 0))
            end_b.bind(("127.0.0.1", 0))
            end_a.settimeout(0.5)
            end_b.settimeout(0.5)
            with LossyRelay(end_a.getsockname(), end_b.getsockname(), loss=loss, seed=seed) as relay:
                heard_b: list[int] = []
                heard_a: list[int] = []

                def listen(sock: socket.socket, heard: list[int], peer: int) -> None:
                    while True:  # until 0.5 s of quiet
                        try:
                            data, source = sock.recvfrom(MAX_DATAGRAM)
                        except TimeoutError:
                            return
                        assert source == ("127.0.0.1", peer), f"heard from {source}, not the relay's {peer}"
                        heard.append(int(data.rsplit(b"X-N: ", 1)[1].split(b"\r\n", 1)[0]))

                listeners = [
                    threading.Thread(target=listen, args=(end_b, heard_b, relay.port_for_b)),
                    threading.Thread(target=listen, args=(end_a, heard_a, relay.port_for_a)),
                ]
                for listener in listeners:
                    listener.start()
                for i in range(count):
                    end_a.sendto(f"OPTIONS sip:b SIP/2.0\r\nX-N: {i}\r\n\r\n".encode(), ("127.0.0.1", relay.port_for_a))
                    end_b.sendto(f"SIP/2.0 200 OK\r\nX-N: {i}\r\n\r\n".encode(), ("127.0.0.1", relay.port_for_b))
                    if i % 20 == 19:
                        time.sleep(0.002)  # let the relay keep up: loss is the relay's doing, not the kernel's
                for listener in listeners:
                    listener.join()
                # a retransmission: the same bytes again are counted as a repeat
                end_a.sendto(b"OPTIONS sip:b SIP/2.0\r\nX-N: 0\r\n\r\n", ("127.0.0.1", relay.port_for_a))
                time.sleep(0.2)
                return heard_b, heard_a, relay.summary()

    heard_b, heard_a, summary = one_run(seed, loss)
    for direction, heard in (("a>b", heard_b), ("b>a", heard_a)):
        stats = summary[direction]
        lost = count - len(heard)
        print(f"{direction}: {len(heard)}/{count} arrived, {lost} lost ({lost / count:.1%}); relay: {stats}")
        assert heard == sorted(heard), "the relay reordered datagrams"
        assert abs(lost / count - loss) < 0.03, f"{direction} lost {lost / count:.1%}, not about {loss:.0%}"
    assert summary["a>b"]["repeats"] == 1 and summary["a>b"]["repeats_by_label"] == {"OPTIONS": 1}
    again_b, again_a, _ = one_run(seed, loss)
    assert (again_b, again_a) == (heard_b, heard_a), "the same seed lost different datagrams"
    other_b, _, _ = one_run(seed + 1, loss)
    assert other_b != heard_b, "another seed lost the same datagrams"
    clear_b, clear_a, _ = one_run(seed, 0.0)
    assert clear_b == list(range(count)) and clear_a == list(range(count)), "zero loss lost datagrams"
    print("lossy_relay self-test passed")


if __name__ == "__main__":
    _self_test()
