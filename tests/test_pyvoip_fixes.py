"""One regression test per correction to pyVoIP 1.6.8, each run against stock pyVoIP and our adapter.

The stock variant asserts the bug as measured in ../shared/reference/PYVOIP_FINDINGS.md, so each test shows
both that the bug is real and that the adapter removes it. Messages go over real UDP sockets on loopback:
the "network" side of each phone is a socket the test reads.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from contactcenter.audio.g711 import alaw_to_pcm16
from contactcenter.telephony.pyvoip_adapter import DeskRTPClient, DeskSIPMessage, DeskVoIPPhone
from tests.helpers.ports import free_port

# isort: split
# After the adapter, which imports pyVoIP in the order 1.6.8 needs (pyVoIP.SIP fails if imported first).
from pyVoIP import RTP, SIP
from pyVoIP.VoIP.VoIP import CallState, VoIPPhone

BARESIP_LIKE_INVITE = (
    "INVITE sip:1001@127.0.0.1:{phone_port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{net_port};branch=z9hG4bKproxy;rport\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKcaller;rport\r\n"
    "Record-Route: <sip:127.0.0.1:{net_port};lr>\r\n"
    "Max-Forwards: 69\r\n"
    'From: "Caller" <sip:13800138000@127.0.0.1>;tag=abc123\r\n'
    "To: <sip:1001@127.0.0.1>\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: {cseq} INVITE\r\n"
    "Contact: <sip:caller@127.0.0.1:5999>\r\n"
    "Supported:\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 140\r\n\r\n"
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
)
SIMPLE_INVITE = BARESIP_LIKE_INVITE.replace("Supported:\r\n", "").replace("a=rtpmap:8 PCMA/8000\r\n", "")


def request(method: str, net_port: int, call_id: str, cseq: int = 1) -> str:
    return (
        f"{method} sip:1001@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{net_port};branch=z9hG4bK{method.lower()}{cseq};rport\r\n"
        f'From: "Caller" <sip:13800138000@127.0.0.1>;tag=abc123\r\nTo: <sip:1001@127.0.0.1>\r\n'
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )


class Line:
    """A phone (stock or patched) whose registrar/proxy is a socket of the test's."""

    def __init__(self, phone_class: type) -> None:
        self.net = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.net.bind(("127.0.0.1", 0))
        self.net.settimeout(0.3)
        self.net_port = self.net.getsockname()[1]
        self.calls: list = []
        self.phone = phone_class(
            "127.0.0.1",
            self.net_port,
            "1001",
            "",
            myIP="127.0.0.1",
            callCallback=self._hold_call,
            sipPort=free_port(),
            rtpPortLow=32000,
            rtpPortHigh=32099,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", self.phone.sip.myPort))
        self.phone.sip.s = self.phone.sip.out = sock
        self._release = threading.Event()

    def _hold_call(self, call) -> None:
        self.calls.append(call)
        self._release.wait(10)  # a call thread lasts as long as the call

    def deliver(self, text: str) -> None:
        self.phone.sip.parse_message(DeskSIPMessage(text.encode()))

    def received(self, wait: float = 0.3) -> list[str]:
        messages, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data, _ = self.net.recvfrom(65535)
                messages.append(data.decode())
            except TimeoutError:
                break
        return messages

    def close(self) -> None:
        self._release.set()
        for call in list(self.phone.calls.values()):
            for client in call.RTPClients:
                if hasattr(client, "sin"):
                    client.stop()
        self.phone.sip.s.close()
        self.net.close()


def status_lines(messages: list[str]) -> list[str]:
    return [m.split("\r\n", 1)[0].split(" ", 2)[1] for m in messages if m.startswith("SIP/2.0")]


@pytest.fixture(params=["stock", "patched"])
def line(request: pytest.FixtureRequest) -> Iterator[tuple[str, Line]]:
    phone_line = Line(VoIPPhone if request.param == "stock" else DeskVoIPPhone)
    yield request.param, phone_line
    phone_line.close()


def ring(line: Line, call_id: str = "call-1@test") -> None:
    line.deliver(
        SIMPLE_INVITE.format(phone_port=line.phone.sip.myPort, net_port=line.net_port, call_id=call_id, cseq=1)
    )
    assert [s for s in status_lines(line.received()) if s != "100"] == ["180"]  # ours sends 100 Trying first


def test_f2_cancel_while_ringing(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    ring(phone_line)
    phone_line.deliver(request("CANCEL", phone_line.net_port, "call-1@test"))
    answers = status_lines(phone_line.received())
    if kind == "stock":
        assert answers == ["200"]  # no 487: the caller is left waiting and the call is answered later
        assert phone_line.phone.calls["call-1@test"].state == CallState.RINGING
    else:
        assert answers == ["200", "487"]
        assert "call-1@test" not in phone_line.phone.calls


def test_f3_an_invite_with_an_empty_header_and_an_extra_rtpmap(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    raw = BARESIP_LIKE_INVITE.format(phone_port=1, net_port=phone_line.net_port, call_id="x", cseq=1).encode()
    if kind == "stock":
        with pytest.raises(Exception):  # noqa: B017  (stock 1.6.8 raises whatever its parser trips on)
            SIP.SIPMessage(raw)  # dropped without an answer
    else:
        message = DeskSIPMessage(raw)
        assert message.method == "INVITE" and message.headers["Supported"] == [""]
        assert message.record_route == [f"<sip:127.0.0.1:{phone_line.net_port};lr>"]
        assert len(message.headers["Via"]) == 2


def test_f4_options_and_unknown_dialogs_are_answered(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    if kind == "stock":
        with pytest.raises(SIP.SIPParseError):
            SIP.SIPMessage(request("OPTIONS", phone_line.net_port, "o@test").encode())  # never even parsed
    phone_line.deliver(request("OPTIONS", phone_line.net_port, "o@test"))
    phone_line.deliver(request("BYE", phone_line.net_port, "no-such-call@test"))
    answers = status_lines(phone_line.received())
    assert answers == (["200"] if kind == "stock" else ["200", "481"])  # stock: 200 to a BYE for no call


def test_f5_bye_has_one_via_of_ours_and_the_route(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    invite = DeskSIPMessage(
        BARESIP_LIKE_INVITE.format(
            phone_port=phone_line.phone.sip.myPort, net_port=phone_line.net_port, call_id="b@test", cseq=1
        ).encode()
    )
    phone_line.phone.sip.tagLibrary["b@test"] = "ourtag"
    bye = phone_line.phone.sip.gen_bye(invite)
    vias = [line for line in bye.split("\r\n") if line.startswith("Via:")]
    if kind == "stock":
        assert len(vias) == 2 and "Route:" not in bye  # the 200 OK goes back along the caller's own path
    else:
        assert vias == [vias[0]] and f"127.0.0.1:{phone_line.phone.sip.myPort}" in vias[0]
        assert f"Route: <sip:127.0.0.1:{phone_line.net_port};lr>" in bye
        assert bye.startswith("BYE sip:caller@127.0.0.1:5999 SIP/2.0")


def test_f6_a_reinvite_does_not_restart_the_media(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    ring(phone_line, "r@test")
    call = phone_line.phone.calls["r@test"]
    call.answer()
    phone_line.received()
    restarts: list = []
    for client in call.RTPClients:  # a spy: counts restarts without opening more sockets and threads
        client.start = lambda client=client: restarts.append(client)
    reinvite = SIMPLE_INVITE.format(
        phone_port=phone_line.phone.sip.myPort, net_port=phone_line.net_port, call_id="r@test", cseq=2
    )
    for _ in range(3):  # the re-INVITE and two retransmissions
        phone_line.deliver(reinvite)
    answers = status_lines(phone_line.received())
    if kind == "stock":
        assert len(restarts) == 3  # every retransmission started the sender and receiver again
    else:
        assert restarts == [] and answers == ["200", "200", "200"]


def test_f8_pcma_is_sent_as_a_law() -> None:
    tone = (np.sin(np.arange(1600) * 2 * np.pi * 440 / 8000) * 12000).astype("<i2")
    ours = DeskRTPClient({8: RTP.PayloadType.PCMA}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV)
    decoded = np.frombuffer(alaw_to_pcm16(ours.encode_packet(tone.tobytes())), dtype="<i2")
    assert np.corrcoef(decoded, tone)[0, 1] > 0.99
    stock = RTP.RTPClient({8: RTP.PayloadType.PCMA}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV)
    eight_bit = ((tone.astype(np.int32) // 256) + 128).astype(np.uint8).tobytes()
    decoded_stock = np.frombuffer(alaw_to_pcm16(stock.encode_packet(eight_bit)), dtype="<i2")
    assert np.corrcoef(decoded_stock, tone)[0, 1] < 0.9  # µ-law bytes under the A-law payload type


def test_f9_a_gap_in_the_callers_audio_is_silence() -> None:
    frame = bytes([0xFF]) * 160  # µ-law silence-ish (0xFF decodes to 0)

    def packet(ts: int) -> RTP.RTPMessage:
        header = b"\x80\x00" + (1).to_bytes(2, "big") + ts.to_bytes(4, "big") + (7).to_bytes(4, "big")
        return RTP.RTPMessage(header + frame, {0: RTP.PayloadType.PCMU})

    stock = RTP.RTPClient({0: RTP.PayloadType.PCMU}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV)
    stock.parse_pcmu(packet(1000))
    stock.parse_pcmu(packet(1480))  # 2 packets (320 samples) lost in between
    stock_audio = stock.pmin.read(640)
    assert stock_audio[160:480] == b"\x00" * 320  # 0x00 is full-scale negative in pyVoIP's 8-bit format
    ours = DeskRTPClient({0: RTP.PayloadType.PCMU}, "127.0.0.1", 0, "127.0.0.1", 9, RTP.TransmitType.SENDRECV)
    ours.parse_pcmu(packet(1000))
    ours.parse_pcmu(packet(1480))
    frames = [ours.read_frame(flush=True) for _ in range(4)]
    samples = np.frombuffer(b"".join(frames), dtype="<i2")
    assert np.all(samples == 0)  # the lost 40 ms are true silence


def test_f1_the_ack_for_200_carries_its_to_tag_and_goes_to_its_contact(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    sip = phone_line.phone.sip
    invite = DeskSIPMessage(
        sip.gen_invite(
            "9001", "1", {32000: {0: RTP.PayloadType.PCMU}}, RTP.TransmitType.SENDRECV, "z9hG4bKtest", "ack@test"
        ).encode()
    )
    ok = DeskSIPMessage(
        (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{sip.myPort};branch=z9hG4bKtest\r\n"
            f"Record-Route: <sip:127.0.0.1:{phone_line.net_port};lr>\r\n"
            f"From: {invite.headers['From']['raw']};tag={invite.headers['From']['tag']}\r\n"
            "To: <sip:9001@127.0.0.1>;tag=callee-tag\r\nCall-ID: ack@test\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:callee@127.0.0.1:5090>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    if kind == "stock":
        ack = sip.gen_ack(ok)
        assert "tag=callee-tag" not in ack and not ack.startswith("ACK sip:callee@127.0.0.1:5090")
    else:
        sip.ack_2xx(invite, ok)
        [ack] = phone_line.received()
        assert ack.startswith("ACK sip:callee@127.0.0.1:5090 SIP/2.0")
        assert "tag=callee-tag" in ack and f"Route: <sip:127.0.0.1:{phone_line.net_port};lr>" in ack
        assert "branch=z9hG4bKtest" not in ack  # a new transaction


def test_call_ids_are_unique_across_restarts(line: tuple[str, Line]) -> None:
    kind, phone_line = line
    again = Line(type(phone_line.phone))
    try:
        same = phone_line.phone.sip.gen_call_id().split("@")[0] == again.phone.sip.gen_call_id().split("@")[0]
    finally:
        again.close()
    assert same is (kind == "stock")  # stock hashes a counter that starts at 1 in every process
