"""SRTP with a real peer over a real TLS registrar (issue 19 item 4): baresip (srtp module, ``srtp-mand``)
calls extension 1001 through Kamailio's TLS module; 1001 is answered by the desk's own transport
(StreamSipSocket) and SRTP layer (srtp_media): SDES keys in the SDP over TLS, libsrtp on both sides.

The few lines of SIP that answer the call here are test scaffolding (a minimal UAS): the point is that the
transport and the SRTP layer interoperate with another implementation (baresip's libre/libsrtp) and that
what crosses the wire is not plain PCMU. The desk's softphone uses the same two modules."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.g711 import ULAW_TO_PCM, pcm16_to_ulaw
from contactcenter.telephony.certificates import loopback_certificate
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.sip_transport import StreamSipSocket
from contactcenter.telephony.srtp_media import SrtpSession, answer_attribute, check_offer, secure_sdp
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.secure_sip import SecureBaresip, free_udp_and_tcp_port
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip


def read_request(sock: StreamSipSocket, method: str) -> str:
    """The next request of ``method`` arriving over the connection (others are skipped)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = sock.recv(65535).decode()
        if message.startswith(f"{method} "):
            return message
    raise AssertionError(f"no {method} within 10 s")


def headers(message: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:[ \t]*(.*?)\r$", message.split("\r\n\r\n", 1)[0] + "\r", re.M | re.I)


def response(request: str, status: str, local_port: int, tag: str, body: str = "") -> bytes:
    """A response to ``request`` carrying its Vias, Record-Routes, From, Call-ID, CSeq (RFC 3261 §8.2.6)."""
    lines = [f"SIP/2.0 {status}"]
    lines += [f"Via: {via}" for via in headers(request, "Via")]
    lines += [f"Record-Route: {route}" for route in headers(request, "Record-Route")]
    to = headers(request, "To")[0]
    lines += [
        f"From: {headers(request, 'From')[0]}",
        f"To: {to}" if ";tag=" in to else f"To: {to};tag={tag}",
        f"Call-ID: {headers(request, 'Call-ID')[0]}",
        f"CSeq: {headers(request, 'CSeq')[0]}",
        f"Contact: <sip:1001@127.0.0.1:{local_port};transport=tls>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def tone_frames(seconds: float) -> list[bytes]:
    samples = (9000 * np.sin(2 * np.pi * 440 * np.arange(int(8000 * seconds)) / 8000)).astype("<i2").tobytes()
    return [pcm16_to_ulaw(samples[i : i + 320]) for i in range(0, len(samples), 320)]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    length = min(len(a), len(b))
    a, b = a[:length].astype(float), b[:length].astype(float)
    return float(abs(np.corrcoef(a, b)[0, 1]))


def test_baresip_calls_over_tls_with_srtp_and_audio_crosses_encrypted_both_ways(tmp_path: Path) -> None:
    certificate = loopback_certificate(tmp_path / "tls")
    voice = tmp_path / "voice.wav"  # baresip's speech, longer than the test
    clip, _ = soundfile.read(str(speech_clip("real8k/r01.wav")), dtype="int16")
    soundfile.write(voice, np.concatenate([clip] * 4), 8000, subtype="PCM_16")
    port, local = free_udp_and_tcp_port(), free_udp_and_tcp_port()
    with LocalRegistrar("127.0.0.1", port, transport="tls", certificate=certificate):
        sip = StreamSipSocket(
            "127.0.0.1", port, "tls", local_ip="127.0.0.1", local_port=local, ca_file=str(certificate.certificate)
        )
        sip.connect()
        sip.settimeout(10)
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", free_port()))
        rtp.settimeout(5)
        baresip = None
        try:
            register = (
                f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=r1\r\nTo: <sip:1001@127.0.0.1>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 REGISTER\r\n"
                f"Contact: <sip:1001@127.0.0.1:{local};transport=UDP>\r\nExpires: 120\r\nContent-Length: 0\r\n\r\n"
            )
            sip.sendto(register.encode())
            assert sip.recv(65535).startswith(b"SIP/2.0 200 OK")

            baresip = SecureBaresip(tmp_path / "baresip", port, certificate, voice)
            baresip.dial("1001")
            invite = read_request(sip, "INVITE")
            assert "Via: SIP/2.0/TLS" in invite  # it came over TLS, both hops
            offer = invite.split("\r\n\r\n", 1)[1]
            chosen = check_offer(offer, encryption="srtp", signalling_secure=True)
            assert chosen is not None and chosen.suite == "AES_CM_128_HMAC_SHA1_80"
            remote_ip = re.search(r"^c=IN IP4 (\S+)", offer, re.M).group(1)  # type: ignore[union-attr]
            remote_port = int(re.search(r"^m=audio (\d+)", offer, re.M).group(1))  # type: ignore[union-attr]
            ours = answer_attribute(chosen)
            answer = secure_sdp(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {rtp.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
                [ours],
            )
            session = SrtpSession(ours, chosen)
            sip.sendto(response(invite, "200 OK", local, "desk1", answer))
            read_request(sip, "ACK")

            frames = tone_frames(3.0)
            sent_on_wire: list[bytes] = []

            def send_tone() -> None:
                started = time.monotonic()
                for index, payload in enumerate(frames):
                    packet = (
                        bytes([0x80, 0x80 if index == 0 else 0])
                        + index.to_bytes(2, "big")
                        + (index * 160).to_bytes(4, "big")
                        + (0x5EED).to_bytes(4, "big")
                        + payload
                    )
                    secure = session.protect(packet)
                    sent_on_wire.append(secure)
                    rtp.sendto(secure, (remote_ip, remote_port))
                    time.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))  # 20 ms media pacing

            sender = threading.Thread(target=send_tone, daemon=True)
            sender.start()
            wire, plain = [], []
            while len(wire) < 100:  # two seconds of baresip's speech, as it arrives
                packet = rtp.recv(2048)
                decrypted = session.unprotect(packet)
                if decrypted is not None:
                    wire.append(packet)
                    plain.append(decrypted)
            sender.join(10)
            assert wait_until(baresip.srtp_enabled, 5), baresip.log_text()[-2000:]
            baresip.command("hangup")
            bye = read_request(sip, "BYE")
            sip.sendto(response(bye, "200 OK", local, "desk1"))
        finally:
            if baresip is not None:
                baresip.stop()
            sip.close()
            rtp.close()

    # on the wire: SRTP (10-byte tag), never the PCMU it carries
    assert all(len(packet) == 12 + 160 + 10 for packet in wire)
    assert session.rejected == 0
    heard_pcm = np.concatenate([ULAW_TO_PCM[np.frombuffer(p[12:], dtype=np.uint8)] for p in plain])
    wire_as_pcmu = np.concatenate([ULAW_TO_PCM[np.frombuffer(p[12:-10], dtype=np.uint8)] for p in wire])
    assert all(p[12:-10] != d[12:] for p, d in zip(wire, plain, strict=True))
    assert correlation(heard_pcm, wire_as_pcmu) < 0.1  # read as PCMU, the wire is noise, not the speech
    assert np.sqrt(np.mean(heard_pcm.astype(float) ** 2)) > 300  # decrypted: baresip's speech
    sent_as_pcmu = np.concatenate([ULAW_TO_PCM[np.frombuffer(p[12:-10], dtype=np.uint8)] for p in sent_on_wire])
    tone = np.concatenate([ULAW_TO_PCM[np.frombuffer(f, dtype=np.uint8)] for f in frames])
    assert correlation(tone, sent_as_pcmu) < 0.1

    # baresip decrypted our tone: its recording holds 440 Hz
    heard, rate = baresip.heard_with_rate()
    assert len(heard) > rate  # over a second of audio
    spectrum = np.abs(np.fft.rfft(heard.astype(float)))
    peak = np.fft.rfftfreq(len(heard), 1 / rate)[int(np.argmax(spectrum[1:])) + 1]
    assert abs(peak - 440) < 10, f"baresip heard a peak at {peak:.0f} Hz"
