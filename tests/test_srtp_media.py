"""SRTP media with SDES keys (issue 19 item 4): the a=crypto offer/answer, the refusals, and libsrtp protecting
real RTP over real loopback UDP sockets, checked on the wire to be neither plain RTP payload nor replayable."""

from __future__ import annotations

import socket
import struct

import numpy as np
import pytest

from contactcenter.audio.g711 import pcm16_to_ulaw
from contactcenter.telephony.srtp_media import (
    CryptoAttribute,
    SrtpRefused,
    SrtpSession,
    SrtpSocket,
    accepted_attribute,
    answer_attribute,
    check_offer,
    crypto_attributes,
    offer_attributes,
    sdp_of,
    secure_sdp,
    with_body,
)
from tests.helpers.waiting import wait_until

PLAIN_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def rtp_packet(sequence: int, payload: bytes, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, ssrc) + payload


def negotiated() -> tuple[SrtpSession, SrtpSession]:
    """The caller's and the callee's sessions after a full offer/answer through SDP text."""
    offered = offer_attributes()
    offer = secure_sdp(PLAIN_SDP, offered)
    chosen = check_offer(offer, encryption="srtp", signalling_secure=True)
    assert chosen is not None
    mine = answer_attribute(chosen)
    answer = secure_sdp(PLAIN_SDP, [mine])
    ours, theirs = accepted_attribute(answer, offered)
    return SrtpSession(ours, theirs), SrtpSession(mine, chosen)


def test_the_offer_names_savp_and_a_fresh_key_per_suite() -> None:
    offered = offer_attributes()
    offer = secure_sdp(PLAIN_SDP, offered)
    assert "m=audio 4000 RTP/SAVP 0 101\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in offer
    assert "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:" in offer
    assert crypto_attributes(offer) == offered
    assert len({attribute.key for attribute in offer_attributes() + offered}) == 4  # never reused


def test_the_answer_takes_the_first_supported_suite_with_its_own_key() -> None:
    offer = (
        PLAIN_SDP.replace("RTP/AVP", "RTP/SAVP")
        + "a=crypto:1 AEAD_AES_256_GCM inline:"
        + "A" * 59
        + "=\r\n"  # a suite the desk does not take: skipped
        + "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"
        + CryptoAttribute.new().line().split("inline:")[1]
        + "|2^31|1:4\r\n"  # with an MKI: skipped
        + CryptoAttribute.new(3, "AES_CM_128_HMAC_SHA1_32").line()
        + "\r\n"
    )
    chosen = check_offer(offer, encryption="srtp", signalling_secure=True)
    assert chosen is not None and (chosen.tag, chosen.suite) == (3, "AES_CM_128_HMAC_SHA1_32")
    answer = answer_attribute(chosen)
    assert (answer.tag, answer.suite) == (3, chosen.suite) and answer.key != chosen.key


@pytest.mark.parametrize(
    ("sdp", "encryption", "secure", "why"),
    [
        (secure_sdp(PLAIN_SDP, offer_attributes()), "srtp", False, "asks for SRTP over plain SIP"),
        (secure_sdp(PLAIN_SDP, offer_attributes()), "none", False, "asks for SRTP over plain SIP"),
        (PLAIN_SDP, "srtp", True, 'offers unencrypted media (RTP/AVP) and [sip] media_encryption = "srtp"'),
        (secure_sdp(PLAIN_SDP, offer_attributes()), "none", True, 'media_encryption = "none"'),
        (PLAIN_SDP.replace("RTP/AVP", "RTP/SAVP"), "srtp", True, "no a=crypto line with a supported suite"),
        (PLAIN_SDP.replace("RTP/AVP", "UDP/TLS/RTP/SAVP"), "srtp", True, "DTLS-SRTP is not"),
        (
            secure_sdp(PLAIN_SDP, []) + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n",
            "srtp",
            True,
            "5 bytes, 30 expected",
        ),
    ],
)
def test_offers_the_settings_cannot_take_are_refused_in_one_line(
    sdp: str, encryption: str, secure: bool, why: str
) -> None:
    with pytest.raises(SrtpRefused) as caught:
        check_offer(sdp, encryption=encryption, signalling_secure=secure)
    assert why in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.status == 488


def test_plain_calls_stay_plain_when_encryption_is_off() -> None:
    assert check_offer(PLAIN_SDP, encryption="none", signalling_secure=False) is None


def test_an_answer_without_our_crypto_is_refused() -> None:
    offered = offer_attributes()
    with pytest.raises(SrtpRefused, match="answered without SRTP"):
        accepted_attribute(PLAIN_SDP, offered)
    stranger = secure_sdp(PLAIN_SDP, [CryptoAttribute.new(7)])
    with pytest.raises(SrtpRefused, match="matches none"):
        accepted_attribute(stranger, offered)


def test_media_over_udp_is_encrypted_on_the_wire_and_decrypted_at_the_far_end() -> None:
    caller, callee = negotiated()
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(1600) / 8000)).astype(np.int16).tobytes()
    payloads = [pcm16_to_ulaw(tone[i : i + 320]) for i in range(0, len(tone), 320)]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wire,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
    ):
        for sock in (sender, wire, receiver):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2)
        secure_sender = SrtpSocket(sender, caller)
        for sequence, payload in enumerate(payloads, start=1):
            secure_sender.sendto(rtp_packet(sequence, payload), wire.getsockname())
        captured = [wire.recv(2048) for _ in payloads]  # what a listener on the path sees
        for packet, payload in zip(captured, payloads, strict=True):
            assert len(packet) == 12 + 160 + 10  # the 80-bit tag
            assert payload not in packet and payload[:16] not in packet
        secure_receiver = SrtpSocket(receiver, callee)
        for packet in captured:
            wire.sendto(packet, receiver.getsockname())
        heard = [secure_receiver.recv(2048) for _ in captured]
        assert [packet[12:] for packet in heard] == payloads

        # a replayed packet and a tampered one are dropped, counted, and the read goes on to the next
        wire.sendto(captured[0], receiver.getsockname())
        tampered = bytearray(captured[1])
        tampered[20] ^= 1
        wire.sendto(bytes(tampered), receiver.getsockname())
        fresh = caller.protect(rtp_packet(len(payloads) + 1, payloads[0]))
        wire.sendto(fresh, receiver.getsockname())
        assert secure_receiver.recv(2048)[12:] == payloads[0]
        assert callee.rejected == 2
        receiver.setblocking(False)
        wire.sendto(captured[2], receiver.getsockname())
        assert _blocked(secure_receiver)  # pyVoIP's RTP loop reads a dropped packet as "nothing yet"


def _blocked(sock: SrtpSocket) -> bool:
    """Whether a non-blocking read of one (replayed) packet reports nothing yet, once the packet has arrived."""
    outcome: list[bool] = []

    def attempt() -> bool:
        try:
            sock.recv(2048)
        except BlockingIOError as exc:
            if "failed authentication" in str(exc):
                outcome.append(True)
                return True
            return False
        outcome.append(False)
        return True

    return wait_until(attempt, 2) and outcome == [True]


def test_a_secured_body_gets_its_content_length() -> None:
    message = "SIP/2.0 200 OK\r\nContent-Length: 9\r\nContact: <sip:1001@127.0.0.1>\r\n\r\n" + PLAIN_SDP[:9]
    secured = secure_sdp(PLAIN_SDP, offer_attributes())
    replaced = with_body(message, secured)
    assert sdp_of(replaced) == secured
    assert f"Content-Length: {len(secured.encode())}\r\nContact:" in replaced
