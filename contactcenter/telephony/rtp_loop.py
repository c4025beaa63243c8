"""Every call's RTP on two threads of the process: one sends, one receives.

pyVoIP gives each stream two threads of its own: a sender sleeping 20 ms between packets and a receiver
polling its socket every 10 ms. With many calls that is thousands of wake-ups a second, each of which must
take Python's interpreter lock before it can send, so the packets of every call leave late and in bunches
(bench/sip_load.py: 80 calls on 2 cores, outgoing spacing p99 546 ms with speech off). Here one sender
keeps every stream's next packet time in a heap and sleeps until the earliest, and one receiver waits on all
the streams' sockets at once (epoll) and reads what has arrived: a packet costs one wake-up, not several.

Each stream keeps its own absolute clock (its start + n * 20 ms), so a packet sent late is followed by the
next on time, never by drift. The sender does nothing but build and send the packet and hand the frame to
the call's media, which never waits (call_media.py: recorder and speech only append to buffers); a stream
whose sending fails is logged and dropped from the loop, and the other calls go on.

By default the packets do not leave from this process: the sender thread builds each one ``lead_s``
before it is due and hands it to a process of its own that sends it on time (media_sender.py says why: the
sender here shares the interpreter lock with every other thread of the desk). Should that process end, this
thread sends again itself, logged once, and the calls go on.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import os
import selectors
import sys
import threading
import time
from typing import Any, Protocol

from contactcenter.telephony.media_sender import (
    BATCH_SECONDS,
    LEAD_SECONDS,
    MAX_BATCH,
    Handed,
    SenderGone,
    SenderLateness,
    SenderProcess,
)

log = logging.getLogger(__name__)

RECEIVE_WAIT_SECONDS = 0.5  # the receiver looks again this often even with nothing arriving
MAX_DATAGRAM = 8192
SWITCH_INTERVAL_SECONDS = 0.0001  # the interpreter lock is handed over at least this often (see _start)
DRAIN_AT_MOST = 32  # packets read from one socket per wake-up: a flooded stream cannot hold up the others
THREADS_START_SECONDS = 5.0


class Stream(Protocol):
    """What the loop needs of an RTP stream (the adapter's ``DeskRTPClient``)."""

    NSD: bool  # pyVoIP's "not shut down": False once the stream is stopped

    def next_due(self) -> float:
        """When its next packet is due (``time.monotonic``)."""
        ...

    def build_next(self) -> tuple[bytes, tuple[str, int]]:
        """Its next packet, as it goes on the wire, and where to (IPv4 address, port)."""
        ...

    def receive_packet(self, packet: bytes) -> None:
        """One datagram that arrived on its socket."""
        ...


class _Sending:
    """A stream in the sender's schedule: the socket its packets leave from, and its number for the sender
    process (never reused, so a late packet of a finished call cannot go out on a new call's socket)."""

    __slots__ = ("number", "sock", "stream")

    def __init__(self, stream: Stream, sock: Any, number: int) -> None:
        self.stream, self.sock, self.number = stream, sock, number


class RtpLoop:
    """The process's RTP sender and receiver; streams ``add`` themselves once their socket is bound. With
    ``sender_process`` the packets leave from a process of its own (media_sender.py), started with the loop."""

    def __init__(self, sender_process: bool = False, lead_s: float = LEAD_SECONDS) -> None:
        self.sender_process_wanted = sender_process
        self.lead_s = lead_s  # with the sender process: how long before its time a packet is built
        self.lateness = SenderLateness()  # of the packets sent from this process
        self._sender: SenderProcess | None = None
        self._selector = selectors.DefaultSelector()
        self._due: list[tuple[float, int, _Sending]] = []
        self._order = itertools.count()  # ties in time go first come, first served
        self._numbers = itertools.count(1)
        self._sending: dict[int, _Sending] = {}  # by id() of the socket the stream was added with
        self._wake = threading.Condition()
        self._started = False
        self._start_lock = threading.Lock()
        self._registry = threading.Lock()
        self.streams = 0  # streams in the loop now
        self._thread_ids: list[int] = []  # the kernel's ids of its threads, once they run
        self._threads_running = threading.Event()  # both of them

    @property
    def sender_pid(self) -> int | None:
        """The sender process's id while packets leave from it; None while they leave from this process."""
        sender = self._sender
        return sender.pid if sender is not None else None

    def add(self, stream: Stream, sock: Any, send_from: Any = None) -> None:
        """Send ``stream``'s packets from now on, from ``send_from`` (default ``sock``), and deliver what
        arrives on ``sock``. Both non-blocking; they may be the same socket."""
        self.start()
        sending = _Sending(stream, sock if send_from is None else send_from, next(self._numbers))
        gone = None
        with self._registry:  # the sender process learns of adds and removes in the order they happen
            with self._wake:
                self._sending[id(sock)] = sending
            sender = self._sender
            if sender is not None:
                try:
                    sender.add(sending.number, sending.sock)
                except SenderGone as exc:
                    gone = exc
        if gone is not None:
            self._sender_gone(gone)
        self._selector.register(sock, selectors.EVENT_READ, stream)
        with self._wake:
            heapq.heappush(self._due, (stream.next_due(), next(self._order), sending))
            self.streams += 1
            self._wake.notify()

    def remove(self, sock: Any) -> None:
        """Stop receiving on ``sock`` and sending its stream's packets (before it is closed: a closed socket's
        number may be reused). The stream leaves the schedule when it next comes due with ``NSD`` false."""
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):  # never added, or removed already
            pass
        gone = None
        with self._registry:
            with self._wake:
                sending = self._sending.pop(id(sock), None)
            sender = self._sender
            if sending is not None and sender is not None:
                try:
                    sender.remove(sending.number)
                except SenderGone as exc:
                    gone = exc
        if gone is not None:
            self._sender_gone(gone)

    def lateness_report(self, reset: bool = False) -> SenderLateness:
        """How many packets left and how late, wherever they left from; counted afresh after ``reset``."""
        here = self.lateness
        if reset:
            self.lateness = SenderLateness()
        sender = self._sender
        if sender is None:
            return here
        try:
            return here.merged(sender.lateness(reset))
        except SenderGone as exc:
            self._sender_gone(exc)
            return here

    def start(self) -> None:
        """Start the threads (and the sender process, if wanted), unless started already; the first stream
        does it if nothing did before."""
        with self._start_lock:  # a second caller waits until all is set up (the sender process takes a moment)
            if self._started:
                return
            # Every sendto and recv lets go of the interpreter lock; a thread busy in Python (the speech
            # listener, a plugin) then keeps it until it is asked to give it up, after the switch interval
            # (5 ms by default). For one packet, every 20 ms, of each of 80 calls, that wait was the sender's
            # bottleneck: it fell behind and sent about half the packets on time. 0.1 ms bounds it.
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
            if self.sender_process_wanted:
                try:
                    self._sender = SenderProcess()
                except Exception as exc:
                    log.warning("call media is sent from the desk's own process: no sender process (%s)", exc)
            threading.Thread(target=self._send_loop, name="call media out", daemon=True).start()
            threading.Thread(target=self._receive_loop, name="call media in", daemon=True).start()
            self._started = True

    def _sender_gone(self, exc: SenderGone) -> None:
        """The sender process ended or stopped reading: from now on this process sends (once, logged)."""
        with self._start_lock:
            sender, self._sender = self._sender, None
        if sender is None:
            return
        log.error("%s; calls' audio is sent from the desk's own process from now on", exc)
        sender.abandon()

    def use_realtime_priority(self, priority: int) -> str | None:
        """Run the sender and receiver (and the sender process) under the kernel's real-time policy (SCHED_FIFO
        at ``priority``; 0: back to the normal policy), starting them now if need be. None if done, else why
        not, in one line.

        Why: on a machine whose cores recognition keeps busy, a normal-priority sender that wakes for its next
        packet waits for a core behind processes that only have work, not deadlines (bench/sip_load.py, 80
        calls with speech on, 2 cores, packets sent by this process's thread: outgoing spacing p99 37.5-39.6 ms
        at normal priority, 26.0-32.3 ms at real-time priority 10 in the runs that followed). It is what media
        servers do (Asterisk ``-p``, FreeSWITCH ``-rp``). The sender process (media_sender.py) gets the same
        policy. They sleep between packets, and the kernel keeps 5 % of each second for normal processes
        whatever they do.
        Needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least ``priority`` (systemd: ``LimitRTPRIO=``)."""
        self.start()
        if not self._threads_running.wait(THREADS_START_SECONDS):
            return "the call media threads did not start"
        if not hasattr(os, "sched_setscheduler"):
            return "this system has no real-time scheduling for threads"
        policy = os.SCHED_FIFO if priority else os.SCHED_OTHER
        sender = self._sender
        try:
            for thread_id in [*self._thread_ids, *([sender.pid] if sender is not None else [])]:
                os.sched_setscheduler(thread_id, policy, os.sched_param(priority))
        except PermissionError:
            return (
                f"real-time priority {priority} for call media is not permitted to this process (it needs "
                f"CAP_SYS_NICE or an RTPRIO limit of at least {priority}, e.g. systemd's LimitRTPRIO={priority})"
            )
        except OSError as exc:
            return f"real-time priority {priority} for call media: {exc.strerror}"
        return None

    def _thread_running(self) -> None:
        with self._start_lock:
            self._thread_ids.append(threading.get_native_id())
            if len(self._thread_ids) == 2:
                self._threads_running.set()

    def _send_loop(self) -> None:
        self._thread_running()
        built: list[tuple[_Sending, Handed]] = []  # handed to the sender process together
        while True:
            try:
                built = self._send_step(built)
            except Exception:  # this thread carries every call's audio: it must not end
                log.exception("the call media sender hit an error; it goes on")
                built = []

    def _send_step(self, built: list[tuple[_Sending, Handed]]) -> list[tuple[_Sending, Handed]]:
        """Build (and send, or hand over) the next packet that is due, or wait for it; what is built and not
        yet handed over. With a sender process a packet is built ``lead_s`` ahead, together with the packets
        due within BATCH_SECONDS after it (at most MAX_BATCH), then they are handed over in one message."""
        sender = self._sender
        sending = None
        with self._wake:
            if self._due:
                due, _, first = self._due[0]
                if sender is None:
                    delay = due - time.monotonic()
                    take = delay <= 0
                elif not built:
                    delay = due - self.lead_s - time.monotonic()
                    take = delay <= 0
                else:  # bounded by the batch's first due time, not by now: a loop behind hands over at once
                    take = due <= built[0][1][1] + BATCH_SECONDS and len(built) < MAX_BATCH
                if take:
                    heapq.heappop(self._due)
                    sending = first
            if sending is None and not built:
                self._wake.wait(delay if self._due else None)  # a stream added meanwhile may be due sooner
                return built
        if sending is None:
            self._hand_over(sender, built)
            return []
        if not sending.stream.NSD:
            with self._wake:
                self.streams -= 1
            return built
        try:
            packet, address = sending.stream.build_next()
        except Exception:
            log.exception("sending a call's audio failed; that call's audio stops, the others go on")
            with self._wake:
                self.streams -= 1
            return built
        if sender is not None:
            built.append((sending, (sending.number, due, packet, address)))
        else:
            self.lateness.add(time.monotonic() - due)
            self._send_here(sending, packet, address)
        with self._wake:
            heapq.heappush(self._due, (sending.stream.next_due(), next(self._order), sending))
        return built

    def _hand_over(self, sender: SenderProcess | None, built: list[tuple[_Sending, Handed]]) -> None:
        handed = 0
        if sender is not None:
            try:
                sender.hand([packet for _, packet in built])
                return
            except SenderGone as exc:
                handed = exc.handed
                self._sender_gone(exc)
        for sending, (_, due, packet, address) in built[handed:]:  # now, not lost: at most lead_s + BATCH early
            self.lateness.add(time.monotonic() - due)
            self._send_here(sending, packet, address)

    @staticmethod
    def _send_here(sending: _Sending, packet: bytes, address: tuple[str, int]) -> None:
        try:
            sending.sock.sendto(packet, address)
        except Exception:  # OSError, or an address the caller's SDP made up (a port past 65535): that packet
            if sending.stream.NSD:
                log.debug("RTP packet to %s:%s not sent", *address, exc_info=True)

    def _receive_loop(self) -> None:
        self._thread_running()
        while True:
            try:  # sockets added while this waits are seen at once (epoll)
                ready = self._selector.select(RECEIVE_WAIT_SECONDS)
            except (OSError, ValueError):  # a socket closed under us: look again
                continue
            for key, _ in ready:
                self._drain(key.fileobj, key.data)

    @staticmethod
    def _drain(sock: Any, stream: Stream) -> None:
        """What is waiting on one stream's socket, up to DRAIN_AT_MOST (epoll reports the rest at once)."""
        for _ in range(DRAIN_AT_MOST):
            if not stream.NSD:
                return
            try:
                packet = sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:  # closed meanwhile (the call ended), or an ICMP error from the far end
                return
            try:
                stream.receive_packet(packet)
            except Exception:
                log.exception("a call's incoming audio could not be handled; the call goes on")
                return


#: The one loop of this process (its threads, and its sender process, start with the first stream).
RTP_LOOP = RtpLoop(sender_process=True)


def settle_heap() -> None:
    """Once the process is set up (models, rules, plugins loaded), before the first call: what is alive now
    lives as long as the process, so it is taken out of the garbage collector's full passes (``gc.freeze``).
    A full pass stops every thread, the RTP sender too, for as long as it walks the objects: measured at 80
    calls with speech on (bench/sip_load.py), one such pass over the start-up objects held all calls' audio
    for 205 ms. Frozen objects are still freed when nothing refers to them; only a cycle among them stays."""
    gc.collect()
    gc.freeze()
