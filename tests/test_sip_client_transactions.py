"""The desk's client transactions (RFC 3261 17.1, issue 19 item 1) against real peers on loopback, timers short
(T1 50 ms, T2 400 ms): SIPp callees and OPTIONS servers that sit on a request while its retransmissions
arrive, and a UDP socket that never answers (timers B and F). The phone talks straight to the peer (no
registrar), so nothing but the desk retransmits."""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from contactcenter.telephony.pyvoip_adapter import CallState, DeskVoIPPhone
from tests.helpers.ports import free_port
from tests.helpers.sip import SipTrace, sipp_scenario, start_sipp
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip
T1, T2 = 0.05, 0.4
DELAY_MS = 250  # the peer sits on a request this long: resent at 50 and 150 ms, answered before 350 ms


def phone_towards(port: int) -> DeskVoIPPhone:
    """A desk phone whose "registrar" (where INVITE, OPTIONS go) is 127.0.0.1:``port``, listening, unregistered."""
    phone = DeskVoIPPhone(
        "127.0.0.1",
        port,
        "1001",
        "",
        myIP="127.0.0.1",
        callCallback=None,
        sipPort=free_port(),
        rtpPortLow=33000,
        rtpPortHigh=33099,
        t1=T1,
        t2=T2,
    )
    phone.sip.listen()
    return phone


class SilentPeer:
    """A UDP socket that hears everything (each datagram with its arrival time) and answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.heard: list[tuple[float, bytes]] = []
        self._running = True
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.heard.append((time.monotonic(), data))

    def close(self) -> None:
        self._running = False
        self._thread.join()
        self.sock.close()


def trace_of(phone: DeskVoIPPhone) -> SipTrace:
    """Everything the phone sends and receives (SipTrace takes a Softphone: this hands it the bare phone)."""
    return SipTrace(SimpleNamespace(phone=phone))  # type: ignore[arg-type]


@pytest.fixture
def silent_peer() -> Iterator[SilentPeer]:
    peer = SilentPeer()
    yield peer
    peer.close()


def finish(sipp: subprocess.Popen[str]) -> str:
    try:
        out = sipp.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        sipp.kill()
        out = sipp.communicate()[0]
    assert sipp.returncode == 0, out[-3000:]
    return out


def test_options_resent_at_t1_doubling_until_a_slow_peer_answers(tmp_path) -> None:
    port = free_port()
    sipp = start_sipp(sipp_scenario("uas_slow_options.xml", tmp_path, DELAY_MS=DELAY_MS), port, timeout=20)
    phone = phone_towards(port)
    trace = trace_of(phone)
    try:
        assert phone.sip.ping() == 200
    finally:
        phone.sip.stop()
    finish(sipp)
    sent = [at for at, text in trace.requests_sent("OPTIONS")]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sent)]
    assert len(sent) == 3 and phone.sip.retransmissions == 2, gaps  # at 0, T1, 3*T1; answered at 250 ms
    assert T1 - 0.01 <= gaps[0] <= T1 + 0.05 and 2 * T1 - 0.01 <= gaps[1] <= 2 * T1 + 0.05, gaps


def test_options_nobody_answers_times_out_after_64_t1_resent_capped_at_t2(silent_peer: SilentPeer) -> None:
    phone = phone_towards(silent_peer.port)
    try:
        started = time.monotonic()
        assert phone.sip.ping() is None
        took = time.monotonic() - started
        assert wait_until(lambda: time.monotonic() - silent_peer.heard[-1][0] > 0.3, 2)
        heard = list(silent_peer.heard)
    finally:
        phone.sip.stop()
    gaps = [round(b - a, 3) for (a, _), (b, _) in itertools.pairwise(heard)]
    assert 64 * T1 - 0.05 <= took <= 64 * T1 + 1.2, took
    assert len({data for _, data in heard}) == 1  # the same request each time
    expected = [min(T1 * 2**n, T2) for n in range(len(gaps))]
    assert len(heard) == 11 and phone.sip.retransmissions == 10, gaps  # 0.05 .1 .2 .4 x7 = 3.15 s < 64*T1
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.01 <= gap <= want + 0.08, (gaps, expected)
    assert phone.sip.transactions.timeouts == 1


def test_an_invite_nobody_answers_fails_truthfully_after_timer_b(silent_peer: SilentPeer) -> None:
    phone = phone_towards(silent_peer.port)
    try:
        started = time.monotonic()
        call = phone.place_call("9000")
        assert call.settled.wait(10)
        took = time.monotonic() - started
        assert wait_until(lambda: time.monotonic() - silent_peer.heard[-1][0] > 0.3, 2)
        heard = list(silent_peer.heard)
    finally:
        phone.sip.stop()
    assert call.outcome == "failed" and "no response to the INVITE within 3.2 s" in call.outcome_reason
    assert call.state == CallState.ENDED and not phone.calls and not phone.assignedPorts
    assert 64 * T1 - 0.05 <= took <= 64 * T1 + 1.0, took
    gaps = [round(b - a, 3) for (a, _), (b, _) in itertools.pairwise(heard)]
    expected = [T1 * 2**n for n in range(len(gaps))]  # timer A doubles without a cap
    assert len(heard) == 7 and phone.sip.retransmissions == 6, gaps  # 0 .05 .15 .35 .75 1.55 3.15
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.01 <= gap <= want + 0.08, (gaps, expected)


def test_invite_and_bye_resent_until_a_slow_callee_answers_and_its_repeated_200_is_acked(tmp_path) -> None:
    port = free_port()
    scenario = sipp_scenario("uas_slow_callee.xml", tmp_path, DELAY_MS=DELAY_MS, T1_MS=50)
    sipp = start_sipp(scenario, port, timeout=20)
    phone = phone_towards(port)
    trace = trace_of(phone)
    try:
        call = phone.place_call("9000")
        assert call.settled.wait(5) and call.outcome == "answered", call.outcome_reason
        invites = len(trace.requests_sent("INVITE"))
        call.hangup()
        assert wait_until(lambda: trace.responses_received(200, "BYE"), 5)
        byes = len(trace.requests_sent("BYE"))
    finally:
        phone.sip.stop()
    finish(sipp)
    assert invites == 3 and byes == 3, (invites, byes)  # each sent at 0, T1, 3*T1, answered at 250 ms
    assert phone.sip.retransmissions == 4
    assert trace.requests_sent("ACK")  # every 200 that arrived was ACKed (SIPp stopped resending it)
    assert call.ended.is_set() and not phone.calls


def test_cancel_resent_until_answered_and_a_repeated_487_absorbed_and_acked_again(tmp_path) -> None:
    port = free_port()
    sipp = start_sipp(sipp_scenario("uas_slow_cancel.xml", tmp_path, DELAY_MS=DELAY_MS), port, timeout=20)
    phone = phone_towards(port)
    trace = trace_of(phone)
    try:
        call = phone.place_call("9000")
        assert call.remote_ringing.wait(5)
        call.give_up("no answer within the test's patience")
        assert call.ended.wait(5)
        assert wait_until(lambda: len(trace.requests_sent("ACK")) >= 2, 5), trace.sent
    finally:
        phone.sip.stop()
    finish(sipp)
    assert call.outcome == "no_answer" and call.outcome_reason == "no answer within the test's patience"
    assert len(trace.requests_sent("CANCEL")) == 3  # at 0, T1, 3*T1; answered at 250 ms
    # SIPp answers a repeated ACK with its last message again, so the 487 and our ACK may go round once more
    repeats = len(trace.responses_received(487, "INVITE")) - 1
    assert repeats >= 1 and phone.sip.transactions.absorbed == repeats
    acks = {text for _, text in trace.requests_sent("ACK")}
    assert len(acks) == 1 and len(trace.requests_sent("ACK")) == repeats + 1  # the same ACK for each 487
    assert not phone.calls and not phone.assignedPorts
