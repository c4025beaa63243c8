"""What TLS signalling and SRTP media cost the desk per call, beside plain UDP and RTP; prints figures, asserts
nothing.

    .venv/bin/python bench/sip_crypto_bench.py            # about 2 minutes
    .venv/bin/python bench/sip_crypto_bench.py --calls 1000 --media-seconds 3000 --real-calls 20 --call-seconds 10

Signalling: a call's SIP traffic at the desk is six messages of the sizes pyVoIP writes (INVITE with SDP in,
180 and 200 with SDP out, ACK in, BYE in, 200 out). Here each call is three request/answer round trips of
those sizes between the desk's transport and a real Kamailio on loopback (OPTIONS carrying an SDP-sized body,
answered by Kamailio itself): once over UDP (a plain socket, as pyVoIP sends), once over TLS (the desk's
StreamSipSocket: one verified connection, Content-Length framing, Via/Contact rewriting). It reports the CPU
seconds of this process (the desk's side) and of Kamailio per call, and the TLS handshake once per connection.

Media: one call-second is 50 RTP packets of 20 ms PCMU sent and 50 received. It reports the CPU the desk
spends to protect and unprotect them with libsrtp (AES_CM_128_HMAC_SHA1_80), per call-second and as a share
of one core per call (plain RTP costs nothing here).

Real calls: baresip calls the desk's softphone through Kamailio ``--real-calls`` times, each call
``--call-seconds`` long, first over UDP with plain RTP, then over TLS with SRTP (baresip's srtp module,
mandatory); the softphone answers and holds (pyVoIP sends its 50 packets a second, baresip its speech). It
reports the CPU seconds per call of the desk's process, Kamailio and baresip, and the difference.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np
import soundfile

from contactcenter.telephony.call import Call
from contactcenter.telephony.certificates import CertificatePair, loopback_certificate
from contactcenter.telephony.registrar import LocalRegistrar
from contactcenter.telephony.sip_transport import StreamSipSocket
from contactcenter.telephony.softphone import SipAccount, Softphone
from contactcenter.telephony.srtp_media import CryptoAttribute, SrtpSession
from tests.helpers.memory import process_cpu
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.secure_sip import SecureBaresip, free_udp_and_tcp_port
from tests.helpers.sip import Baresip
from tests.helpers.waiting import wait_until

SDP_BODY = (
    "v=0\r\no=contactcenter 1234567890 1234567890 IN IP4 127.0.0.1\r\ns=contactcenter\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 10000 RTP/SAVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
    "a=maxptime:150\r\na=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "A" * 40 + "\r\n"
)
BODIES = (SDP_BODY, SDP_BODY, "")  # INVITE/180, 200/ACK, BYE/200: about the sizes a real call's messages have


def kamailio_cpu(registrar: LocalRegistrar) -> float:
    """CPU seconds (user + system) of every Kamailio process (its session: started with its own)."""
    assert registrar.process is not None
    group, total, tick = registrar.process.pid, 0.0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == group:  # session id
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def options(port: int, local: int, body: str, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:1001@127.0.0.1:{local};transport=UDP>\r\nUser-Agent: contactcenter (pyVoIP 1.6.8)\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"
    ).encode()


def measure(
    registrar: LocalRegistrar, calls: int, exchange: Callable[[bytes], bytes], local: int
) -> tuple[float, float]:
    """(desk CPU, Kamailio CPU) seconds for ``calls`` calls' worth of round trips."""
    cpu, kamailio = time.process_time(), kamailio_cpu(registrar)
    for _ in range(calls):
        for body in BODIES:
            answer = exchange(options(registrar.port, local, body))
            if not answer.startswith(b"SIP/2.0 200"):
                raise SystemExit(f"unexpected answer: {answer[:80]!r}")
    return time.process_time() - cpu, kamailio_cpu(registrar) - kamailio


def signalling(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="crypto-bench-") as folder:
        pair = loopback_certificate(Path(folder))
        with LocalRegistrar("127.0.0.1", free_port(), transport="tls", certificate=pair) as registrar:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            udp.settimeout(5)

            def over_udp(message: bytes) -> bytes:
                udp.sendto(message, ("127.0.0.1", registrar.port))
                return udp.recv(65535)

            local = free_port()
            started = time.process_time()
            tls = StreamSipSocket(
                "127.0.0.1",
                registrar.port,
                "tls",
                local_ip="127.0.0.1",
                local_port=local,
                ca_file=str(pair.certificate),
            )
            tls.connect()
            handshake = time.process_time() - started
            tls.settimeout(5)

            def over_tls(message: bytes) -> bytes:
                tls.sendto(message)
                return tls.recv(65535)

            measure(registrar, 20, over_udp, udp.getsockname()[1])  # warm-up: Kamailio's first messages
            measure(registrar, 20, over_tls, local)
            udp_desk, udp_kamailio = measure(registrar, calls, over_udp, udp.getsockname()[1])
            tls_desk, tls_kamailio = measure(registrar, calls, over_tls, local)
            tls.close()
            udp.close()
    size = sum(len(options(5060, 5062, body)) * 2 for body in BODIES)
    print(f"signalling: {calls} calls, 6 messages per call (~{size} bytes), through Kamailio on loopback")
    print(
        f"  UDP : desk {udp_desk / calls * 1e3:6.3f} ms CPU/call   Kamailio {udp_kamailio / calls * 1e3:6.3f} ms CPU/call"
    )
    print(
        f"  TLS : desk {tls_desk / calls * 1e3:6.3f} ms CPU/call   Kamailio {tls_kamailio / calls * 1e3:6.3f} ms CPU/call"
    )
    print(
        f"  TLS connection set-up (handshake, certificate verified), once per desk start: {handshake * 1e3:.1f} ms CPU"
    )


def media(call_seconds: int) -> None:
    packets = call_seconds * 50
    payload = bytes(range(160))
    rtp = [struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, i * 160, 0xC0FFEE) + payload for i in range(packets)]
    peer_key = CryptoAttribute.new()
    desk = SrtpSession(CryptoAttribute.new(), peer_key)
    far_end = SrtpSession(peer_key, CryptoAttribute.new())  # the caller's sender, keyed as the desk expects
    incoming = [far_end.protect(packet) for packet in rtp]
    started = time.process_time()
    for packet, secure in zip(rtp, incoming, strict=True):
        desk.protect(packet)
        if desk.unprotect(secure) is None:
            raise SystemExit("an SRTP packet failed to authenticate")
    per_second = (time.process_time() - started) / call_seconds
    print(f"media: {call_seconds} call-seconds (50 packets of 20 ms PCMU each way per second), AES_CM_128_HMAC_SHA1_80")
    print(
        f"  SRTP protect + unprotect (libsrtp): {per_second * 1e6:7.1f} µs CPU per call-second, "
        f"{per_second * 100:.3f} % of one core per call; {per_second * 180 * 1e3:.1f} ms for a 3-minute call "
        "(plain RTP: none)"
    )


def calls_in_mode(mode: str, folder: Path, pair: CertificatePair, voice: Path, calls: int, seconds: float) -> tuple:
    """(desk, Kamailio, baresip) CPU seconds per call, for ``calls`` calls over ``mode`` ("udp" or "tls")."""
    port = free_udp_and_tcp_port()
    answered: list[Call] = []

    def on_call(call: Call) -> None:
        answered.append(call)
        call.answer()  # and stay until the caller hangs up (pyVoIP sends silence meanwhile)
        call.ended.wait()

    with LocalRegistrar("127.0.0.1", port, transport="tls", certificate=pair) as registrar:
        account = SipAccount(
            server="127.0.0.1",
            port=port,
            user="1001",
            password="",
            local_ip="127.0.0.1",
            local_port=free_udp_and_tcp_port(),
            rtp_low=33000,
            rtp_high=33099,
            transport=mode,
            ca_file=str(pair.certificate),
            media_encryption="srtp" if mode == "tls" else "none",
        )
        phone = Softphone(account, on_call)
        phone.start()
        where = folder / f"baresip-{mode}"
        peer: Baresip | SecureBaresip
        peer = SecureBaresip(where, port, pair, voice) if mode == "tls" else Baresip(where, port, voice)
        try:
            pid = peer.process.pid
            cpu, kamailio, far = time.process_time(), kamailio_cpu(registrar), process_cpu(pid)
            for number in range(calls):
                peer.command("dial", f"sip:1001@127.0.0.1:{port}")
                if not wait_until(lambda n=number: len(answered) > n, 15):
                    raise SystemExit(f"call {number + 1} ({mode}) was not answered")
                time.sleep(seconds)  # the call's length: media flows both ways meanwhile
                peer.command("hangup")
                if not wait_until(lambda n=number: answered[n].ended.is_set(), 15):
                    raise SystemExit(f"call {number + 1} ({mode}) did not end")
            return (
                (time.process_time() - cpu) / calls,
                (kamailio_cpu(registrar) - kamailio) / calls,
                (process_cpu(pid) - far) / calls,
            )
        finally:
            peer.stop()
            phone.stop()


def real_calls(calls: int, seconds: float) -> None:
    """``calls`` calls of ``seconds`` from baresip to the desk's softphone through Kamailio: UDP + RTP, then
    TLS + SRTP (baresip's srtp module, mandatory). CPU of this process (the softphone: SIP, both RTP
    directions in Python), of Kamailio and of baresip, per call."""
    with tempfile.TemporaryDirectory(prefix="crypto-bench-calls-") as name:
        folder = Path(name)
        pair = loopback_certificate(folder / "tls")
        voice = folder / "voice.wav"
        clip, _ = soundfile.read(str(speech_clip("real8k/r01.wav")), dtype="int16")
        soundfile.write(voice, np.concatenate([clip] * 8), 8000, subtype="PCM_16")
        results = {mode: calls_in_mode(mode, folder, pair, voice, calls, seconds) for mode in ("udp", "tls")}
    print(f"real calls: {calls} calls of {seconds:g} s, baresip -> Kamailio -> the desk's softphone (answers, holds)")
    for mode, label in (("udp", "UDP + RTP "), ("tls", "TLS + SRTP")):
        desk, kamailio, far = results[mode]
        print(
            f"  {label}: desk {desk * 1e3:6.1f} ms CPU/call ({desk / seconds * 100:.2f} % of a core while on)   "
            f"Kamailio {kamailio * 1e3:5.1f} ms   baresip {far * 1e3:6.1f} ms"
        )
    extra = results["tls"][0] - results["udp"][0]
    print(f"  TLS + SRTP costs the desk {extra * 1e3:+.1f} ms CPU per {seconds:g}-second call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls' worth of signalling each way (default 300)")
    parser.add_argument("--media-seconds", type=int, default=600, help="call-seconds of media (default 600)")
    parser.add_argument("--real-calls", type=int, default=10, help="real calls each way, 0: none (default 10)")
    parser.add_argument("--call-seconds", type=float, default=5.0, help="length of each real call (default 5)")
    arguments = parser.parse_args()
    signalling(arguments.calls)
    media(arguments.media_seconds)
    if arguments.real_calls:
        real_calls(arguments.real_calls, arguments.call_seconds)


if __name__ == "__main__":
    main()
