"""The process's RTP loop on real UDP sockets: each stream keeps its own 20 ms clock, a stream that fails or is
flooded does not hold up the others, and a stopped stream leaves the loop. (The streams here are the
smallest thing the loop drives, over real sockets; calls through it are in the SIP and media tests.)"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contactcenter.telephony import media_sender
from contactcenter.telephony.rtp_loop import RtpLoop
from tests.helpers.waiting import wait_until


class SocketStream:
    """A stream sending a numbered datagram every 20 ms to ``target`` and keeping what arrives on its socket."""

    def __init__(self, target: tuple[Any, Any], fail_after: int | None = None, stall_at: int | None = None) -> None:
        self.NSD = True
        self.stall_at = stall_at  # building this packet takes 60 ms (a stalled sender)
        self.build_seconds = 0.0  # what building each packet takes
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.target = target
        self.fail_after = fail_after
        self.sent = 0
        self.received: list[bytes] = []
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def next_due(self) -> float:
        return self.start + self.sent * 0.02

    def build_next(self) -> tuple[bytes, tuple[Any, Any]]:
        if self.build_seconds:
            time.sleep(self.build_seconds)
        if self.fail_after is not None and self.sent >= self.fail_after:
            raise RuntimeError("this stream's encoder broke")
        if self.sent == self.stall_at:
            time.sleep(0.06)
        self.sent += 1
        return (self.sent - 1).to_bytes(4, "big"), self.target

    def receive_packet(self, packet: bytes) -> None:
        with self.lock:
            self.received.append(packet)


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_streams_keep_their_own_clock_and_a_failing_one_does_not_stop_the_others() -> None:
    loop = RtpLoop()
    sink = listener()
    good = SocketStream(sink.getsockname())
    broken = SocketStream(sink.getsockname(), fail_after=3)
    loop.add(broken, broken.sock)
    loop.add(good, good.sock)
    try:
        arrivals = []
        while len(arrivals) < 40:
            sink.recv(64)
            arrivals.append(time.monotonic())
        assert broken.sent == 3 and good.sent >= 36  # the broken stream is out, the good one goes on
        assert wait_until(lambda: loop.streams == 1, 2)
        # its own absolute clock: its last 30 packets span 29 * 20 ms, not more (no drift, no stall)
        span = arrivals[-1] - arrivals[-30]
        assert 29 * 0.02 - 0.01 <= span <= 29 * 0.02 + 0.5, span
    finally:
        good.NSD = False
        loop.remove(good.sock)
        loop.remove(broken.sock)
        for sock in (good.sock, broken.sock, sink):
            sock.close()


def test_a_flooded_stream_does_not_starve_the_others_and_a_stopped_one_leaves() -> None:
    loop = RtpLoop()
    sink = listener()
    flooded = SocketStream(sink.getsockname())
    quiet = SocketStream(sink.getsockname())
    loop.add(flooded, flooded.sock)
    loop.add(quiet, quiet.sock)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(3000):  # a hostile peer blasting the first stream's port
            sender.sendto(b"x" * 172, flooded.sock.getsockname())
        sender.sendto(b"hello", quiet.sock.getsockname())
        assert wait_until(lambda: b"hello" in quiet.received, 2)
        assert flooded.received  # its packets are read too, just not all at once
        flooded.NSD = False
        loop.remove(flooded.sock)
        flooded.sock.close()  # its number may now be reused by another socket: the loop no longer watches it
        assert wait_until(lambda: loop.streams == 1, 2)
        sender.sendto(b"again", quiet.sock.getsockname())
        assert wait_until(lambda: b"again" in quiet.received, 2)
    finally:
        quiet.NSD = False
        loop.remove(quiet.sock)
        for sock in (quiet.sock, sink, sender):
            sock.close()


def test_the_sender_counts_the_packets_it_sent_late() -> None:
    """One packet that takes 60 ms to build makes the next ones late (both streams'): the loop says how many and
    how late, which the load benchmark prints beside the spacing on the wire."""
    loop = RtpLoop()
    sink = listener()
    stalling, other = SocketStream(sink.getsockname(), stall_at=5), SocketStream(sink.getsockname())
    loop.add(stalling, stalling.sock)
    loop.add(other, other.sock)
    try:
        assert wait_until(lambda: other.sent >= 20 and stalling.sent >= 20, 5)
        lateness = loop.lateness_report()
        assert lateness.packets >= 40
        assert lateness.late_20ms >= 1 and lateness.late_5ms >= lateness.late_20ms
        assert lateness.worst_s >= 0.035, lateness
    finally:
        for stream in (stalling, other):
            stream.NSD = False
            loop.remove(stream.sock)
            stream.sock.close()
        sink.close()


@contextlib.contextmanager
def in_loop(loop: RtpLoop, streams: list[SocketStream], sink: socket.socket, add: bool = True) -> Iterator[None]:
    """``streams`` in ``loop`` for the block (added here unless ``add`` is false); then stopped, removed and
    closed, and ``sink`` with them."""
    try:
        for stream in streams if add else []:
            loop.add(stream, stream.sock)
        yield
    finally:
        for stream in streams:
            stream.NSD = False
            loop.remove(stream.sock)
            stream.sock.close()
        sink.close()


def arrivals_from(sink: socket.socket, count: int) -> list[tuple[int, int, float]]:
    """The next ``count`` datagrams at ``sink``: (number, source port, arrival time)."""
    got = []
    while len(got) < count:
        data, source = sink.recvfrom(64)
        got.append((int.from_bytes(data, "big"), source[1], time.monotonic()))
    return got


def test_from_the_sender_process_packets_leave_on_time_in_order_from_the_calls_own_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default: a process of its own sends what the loop's thread built ahead, on each stream's clock, from
    the stream's own socket (the far end sees its port); a removed stream's packets stop, the other's go on.
    The process gets none of the desk's environment (its secrets)."""
    monkeypatch.setenv("CONTACTCENTER_SIP_PASSWORD", "s3cret-of-the-desk")
    loop = RtpLoop(sender_process=True)
    loop.start()  # as the softphone does: the process is ready before the streams' clocks start
    sink = listener()
    first, second = SocketStream(sink.getsockname()), SocketStream(sink.getsockname())
    with in_loop(loop, [first, second], sink):
        assert loop.sender_pid is not None and loop.sender_pid != os.getpid()
        environment = Path(f"/proc/{loop.sender_pid}/environ").read_bytes().split(b"\0")
        assert [name.split(b"=")[0] for name in environment if name] == [b"PYTHONPATH"]
        got = arrivals_from(sink, 80)
        ports = {first.sock.getsockname()[1]: first, second.sock.getsockname()[1]: second}
        assert {port for _, port, _ in got} == set(ports)
        for port in ports:
            numbers = [number for number, source, _ in got if source == port]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # in order, none lost
            times = [at for _, source, at in got if source == port]
            span = times[-1] - times[-30]
            assert 29 * 0.02 - 0.01 <= span <= 29 * 0.02 + 0.5, span
        lateness = loop.lateness_report()
        assert lateness.packets >= 80
        assert first.sent - lateness.packets // 2 <= 4  # built at most LEAD + BATCH (3 packets) ahead
        first_port, second_port = first.sock.getsockname()[1], second.sock.getsockname()[1]
        first.NSD = False
        loop.remove(first.sock)
        built_before = second.sent  # second's packets from here on were built after the removal
        first.sock.close()
        later = arrivals_from(sink, 30)
        # the sender dropped what it held for the removed stream: once a packet of the other stream built
        # after the removal (and a packet time later) has arrived, nothing of the removed one follows
        mark = next(i for i, (number, port, _) in enumerate(later) if port == second_port and number > built_before)
        assert all(port == second_port for _, port, _ in later[mark:]), later
        assert sum(port == first_port for _, port, _ in later) <= 3


def test_a_sender_process_that_cannot_start_leaves_the_packets_to_the_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An interpreter that exits at once (here /bin/false in its place) never says it is ready: the loop says
    why in one line and sends from its own thread; the calls' packets flow."""
    monkeypatch.setattr(media_sender.sys, "executable", "/bin/false")
    loop = RtpLoop(sender_process=True)
    sink = listener()
    stream = SocketStream(sink.getsockname())
    with in_loop(loop, [stream], sink):
        assert loop.sender_pid is None
        arrivals_from(sink, 10)
        [said] = [record.message for record in caplog.records if "no sender process" in record.message]
        assert said == (
            "call media is sent from the desk's own process: no sender process (the call media sender process "
            "ended as it started (exit status 1))"
        )


def test_when_the_sender_process_dies_the_loop_sends_itself_and_the_calls_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Killed (or crashed), the sender process costs a call at most the packets it held (built ahead: 3), said
    once in the log; the loop's own thread sends from then on, from the same port."""
    loop = RtpLoop(sender_process=True)
    sink = listener()
    stream = SocketStream(sink.getsockname())
    with in_loop(loop, [stream], sink):
        arrivals_from(sink, 10)
        pid = loop.sender_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        got = arrivals_from(sink, 40)
        assert loop.sender_pid is None
        numbers = [number for number, _, _ in got]
        assert numbers == sorted(numbers) and numbers[-1] - numbers[0] + 1 - len(numbers) <= 3, numbers
        assert {port for _, port, _ in got} == {stream.sock.getsockname()[1]}
        gone = [record for record in caplog.records if "sent from the desk's own process from now on" in record.message]
        assert len(gone) == 1 and f"(pid {pid})" in gone[0].message
        assert loop.lateness_report().packets >= 30  # counted here now (the dead channel is not asked)


def test_a_sender_process_that_stops_reading_is_replaced_by_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    """Stopped (SIGSTOP: a debugger, a frozen cgroup), the process reads nothing; once its channel is full and
    stays full for FULL_WAIT_SECONDS the loop kills it and sends itself, and the calls' packets flow again."""
    loop = RtpLoop(sender_process=True)
    loop.start()
    sink = listener()
    streams = [SocketStream(sink.getsockname()) for _ in range(10)]
    with in_loop(loop, streams, sink):
        arrivals_from(sink, 20)
        pid = loop.sender_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        assert wait_until(lambda: loop.sender_pid is None, 30)
        [said] = [record.message for record in caplog.records if "from now on" in record.message]
        assert said.startswith(f"the call media sender process (pid {pid}) stopped reading")
        built = streams[0].sent
        while True:  # what was queued before; then packets built after the switch arrive
            number, port, _ = arrivals_from(sink, 1)[0]
            if port == streams[0].sock.getsockname()[1] and number > built:
                break
        assert wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in stat_state(pid), 5)  # killed


def stat_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.parametrize("sender_process", [True, False], ids=["sender process", "in the loop"])
def test_a_stream_whose_sdp_gave_no_address_to_send_to_stops_nothing(sender_process: bool) -> None:
    """A caller's SDP can name a port past 65535 or a host that is not one; its packets cannot leave, and
    the call media thread and the other calls go on."""
    loop = RtpLoop(sender_process=sender_process)
    loop.start()
    sink = listener()
    good = SocketStream(sink.getsockname())
    bad = [SocketStream(("127.0.0.1", 99999)), SocketStream(("a..b", 4000)), SocketStream(("127.0.0.1", -1))]
    with in_loop(loop, [*bad, good], sink):
        got = arrivals_from(sink, 30)
        assert {port for _, port, _ in got} == {good.sock.getsockname()[1]}
        assert all(stream.sent >= 20 for stream in bad)  # built (and counted) all along
        assert loop.streams == 4


def test_streams_added_while_the_sender_process_starts_are_all_sent() -> None:
    """Two calls answered at once on a desk whose call media has not started yet: the second waits until the
    sender process is up, so it knows of both streams."""
    loop = RtpLoop(sender_process=True)
    sink = listener()
    streams = [SocketStream(sink.getsockname()) for _ in range(4)]
    adders = [threading.Thread(target=loop.add, args=(stream, stream.sock)) for stream in streams]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join(15)
    with in_loop(loop, streams, sink, add=False):
        got = arrivals_from(sink, 60)
        assert {port for _, port, _ in got} == {stream.sock.getsockname()[1] for stream in streams}


def test_a_loop_behind_its_packets_still_hands_them_over() -> None:
    """Building the packets of 40 streams takes longer than their 20 ms (0.6 ms each): the loop stays behind,
    and hands over what it has built in batches bounded by their due times, so audio leaves (late) rather
    than piling up in the loop."""
    loop = RtpLoop(sender_process=True)
    loop.start()
    sink = listener()
    streams = [SocketStream(sink.getsockname()) for _ in range(40)]
    for stream in streams:
        stream.build_seconds = 0.0006
    with in_loop(loop, streams, sink):
        got = arrivals_from(sink, 400)
        assert len({port for _, port, _ in got}) == 40


def policy_of(thread_id: int) -> tuple[int, int]:
    return os.sched_getscheduler(thread_id), os.sched_getparam(thread_id).sched_priority


@pytest.mark.skipif(os.geteuid() != 0, reason="real-time priority needs root (or CAP_SYS_NICE) here")
def test_the_media_threads_take_real_time_priority_and_give_it_back() -> None:
    """Asked for (``[sip] media_realtime_priority``), both threads and the sender process run under SCHED_FIFO
    and the calls' packets go on; 0 puts them back under the normal policy."""
    loop = RtpLoop(sender_process=True)
    sink = listener()
    stream = SocketStream(sink.getsockname())
    try:
        assert loop.use_realtime_priority(10) is None
        assert len(loop._thread_ids) == 2 and loop.sender_pid is not None
        media = [*loop._thread_ids, loop.sender_pid]  # the sender process too
        assert [policy_of(tid) for tid in media] == [(os.SCHED_FIFO, 10)] * 3
        loop.add(stream, stream.sock)
        assert wait_until(lambda: stream.sent >= 10, 5)
        arrivals_from(sink, 10)
        assert loop.use_realtime_priority(0) is None
        assert [policy_of(tid) for tid in media] == [(os.SCHED_OTHER, 0)] * 3
        sent = stream.sent
        assert wait_until(lambda: stream.sent >= sent + 10, 5)
    finally:
        stream.NSD = False
        loop.remove(stream.sock)
        stream.sock.close()
        sink.close()


UNPRIVILEGED = """
import os, resource, socket, sys, time
from contactcenter.telephony.rtp_loop import RtpLoop
from tests.test_rtp_loop import SocketStream, listener, policy_of
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
if os.geteuid() == 0:  # root may do anything: become nobody
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
loop = RtpLoop()
print(loop.use_realtime_priority(10))
sink = listener()
stream = SocketStream(sink.getsockname())
loop.add(stream, stream.sock)
deadline = time.monotonic() + 5
while stream.sent < 10 and time.monotonic() < deadline:
    time.sleep(0.02)
print(stream.sent >= 10, [policy_of(tid) == (os.SCHED_OTHER, 0) for tid in loop._thread_ids])
"""


def test_without_permission_the_media_threads_say_why_and_run_at_normal_priority() -> None:
    """A desk not allowed real-time scheduling (no CAP_SYS_NICE, RTPRIO limit 0: an ordinary user) is told why
    in one line, with the fix, and its calls' packets go on as before."""
    result = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    said, flowing = result.stdout.splitlines()
    assert said == (
        "real-time priority 10 for call media is not permitted to this process (it needs CAP_SYS_NICE or an "
        "RTPRIO limit of at least 10, e.g. systemd's LimitRTPRIO=10)"
    )
    assert flowing == "True [True, True]"


MEDIA_LINE = """
from contactcenter.telephony.rtp_loop import RTP_LOOP
from contactcenter.commands.run import media_priority
RTP_LOOP.sender_process_wanted = {wanted}
print(media_priority(0))
"""


@pytest.mark.parametrize("wanted", [True, False])
def test_run_says_where_call_audio_leaves_from(wanted: bool) -> None:
    """``contactcenter run``'s "call media:" line, for ``[sip] media_sender_process`` on and off."""
    result = subprocess.run(
        [sys.executable, "-c", MEDIA_LINE.format(wanted=wanted)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    if wanted:
        assert re.fullmatch(
            r"normal priority \(\[sip\] media_realtime_priority = 0\), sent by a process of its own \(pid \d+\)", line
        ), line
    else:
        assert line == (
            "normal priority ([sip] media_realtime_priority = 0), sent by the desk's own process "
            "([sip] media_sender_process = false)"
        )
