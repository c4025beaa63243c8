"""Strict but tolerant parsing (issue 19, item 3): the SIP screen in front of pyVoIP, and RFC 4475's 49 torture
messages sent to a real running desk.

The torture run sends each message (tests/sip/rfc4475/, byte-exact) from a UDP socket straight to the registered
desk phone's port, then an OPTIONS whose answer marks the point where the phone has handled it (one receive thread:
whatever it answers to a message is sent before it answers the next). Every datagram the phone sends is recorded
with its destination by standing in for its socket. The RFC's Via hosts are in 192.0.2.0/24 and ``*.example.*``;
answers go to the source IP with ``received`` (RFC 3261 §18.2.2), so nothing leaves loopback, and the calls the
torture INVITEs start are refused (486) before any media could flow to their SDP addresses. Afterwards a SIPp caller
through Kamailio must still get a normal, answered and stored call.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from contactcenter.telephony.call import Call
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.pyvoip_adapter import ALLOWED, KNOWN_METHODS, DeskSIPMessage, DeskVoIPPhone
from contactcenter.telephony.sip_requests import SipScreen, SourceLog, Via, parse_addresses, parse_vias
from contactcenter.telephony.softphone import Softphone
from tests.helpers.ports import free_port
from tests.helpers.settings import desk_settings
from tests.helpers.sip import SIP_DIR, extension_phone, sipp_call
from tests.helpers.waiting import wait_until

TORTURE = SIP_DIR / "rfc4475"
SENDER = ("127.0.0.1", 40000)

# RFC 4475 message → (status a UA answers, a word its reason phrase must hold, or None); None: no answer at all.
# tests/sip/rfc4475/README.md gives the reasons; INVITEs that are processed ring (180) and the test refuses them.
EXPECTED: dict[str, tuple[int, str | None] | None] = {
    "3.1.1.1-wsinv": (481, None),  # valid, but its To-tag names a dialog the desk does not have
    "3.1.1.2-intmeth": (501, None),
    "3.1.1.3-esc01": (180, None),
    "3.1.1.4-escnull": (405, None),
    "3.1.1.5-esc02": (501, None),
    "3.1.1.6-lwsdisp": (200, None),
    "3.1.1.7-longreq": (180, None),
    "3.1.1.8-dblreq": (405, None),
    "3.1.1.9-semiuri": (200, None),
    "3.1.1.10-transports": (200, None),
    "3.1.1.11-mpart01": (405, None),
    "3.1.1.12-unreason": None,
    "3.1.1.13-noreason": None,
    "3.1.2.1-badinv01": (400, "Via"),
    "3.1.2.2-clerr": (400, "Content-Length"),
    "3.1.2.3-ncl": (400, "Content-Length"),
    "3.1.2.4-scalar02": (400, "CSeq"),
    "3.1.2.5-scalarlg": None,
    "3.1.2.6-quotbal": (400, "To"),
    "3.1.2.7-ltgtruri": (400, "Request-URI"),
    "3.1.2.8-lwsruri": (400, "Request-Line"),
    "3.1.2.9-lwsstart": (400, "Request-Line"),
    "3.1.2.10-trws": (400, "Request-Line"),
    "3.1.2.11-escruri": (400, "Request-URI"),
    "3.1.2.12-baddate": (400, "Date"),
    "3.1.2.13-regbadct": (400, "Contact"),
    "3.1.2.14-badaspec": (400, "To"),
    "3.1.2.15-baddn": (400, "From"),
    "3.1.2.16-badvers": (505, None),
    "3.1.2.17-mismatch01": (400, "CSeq"),
    "3.1.2.18-mismatch02": (501, None),
    "3.1.2.19-bigcode": None,
    "3.2.1-badbranch": (200, None),
    "3.3.1-insuf": (400, "Call-ID"),
    "3.3.2-unkscm": (416, None),
    "3.3.3-novelsc": (416, None),
    "3.3.4-unksm2": (405, None),
    "3.3.5-bext01": (420, None),
    "3.3.6-invut": (415, None),
    "3.3.7-regaut01": (405, None),
    "3.3.8-multi01": (400, "Multiple"),
    "3.3.9-mcl01": (400, "Content-Length"),
    "3.3.10-bcast": None,
    "3.3.11-zeromf": (200, None),
    "3.3.12-cparam01": (405, None),
    "3.3.13-cparam02": (405, None),
    "3.3.14-regescrt": (405, None),
    "3.3.15-sdp01": (406, None),
    "3.4.1-inv2543": (180, None),
}
# where the answer goes by the top Via (RFC 3261 §18.2.2, RFC 3581): its port, 5060 if it names none, the sender's
# port if it asks for rport; always the sender's IP (``received``)
VIA_PORT = {"3.1.1.11-mpart01": "rport", "3.1.2.6-quotbal": 5050}
ALLOW_EXPECTED = ("3.1.1.2-intmeth", "3.1.1.4-escnull", "3.1.1.5-esc02", "3.1.1.11-mpart01", "3.3.7-regaut01")


def torture_files() -> list[Path]:
    """The messages in the RFC's order (3.1.1.2 before 3.1.1.10)."""
    return sorted(TORTURE.glob("*.dat"), key=lambda path: [int(n) for n in path.stem.split("-")[0].split(".")])


def call_id_of(raw: bytes) -> str | None:
    found = re.search(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", raw, re.I | re.M)
    return found.group(1).decode("latin-1") if found else None


def new_screen(calls: set[str] | None = None, clock=time.monotonic) -> SipScreen:
    return SipScreen(
        allowed=ALLOWED.split(", "),
        known=KNOWN_METHODS,
        agent="test",
        call_exists=lambda call_id: call_id in (calls or set()),
        clock=clock,
    )


def status(text: str) -> int:
    return int(text.split(" ", 2)[1])


def header(text: str, name: str) -> str | None:
    found = re.search(rf"^{name}: (.*)$", text, re.M)
    return found.group(1).rstrip("\r") if found else None


# ------------------------------------------------------------------------------------------------ the screen alone


def test_the_table_covers_all_49_messages() -> None:
    assert [path.stem for path in torture_files()] == list(EXPECTED)


def test_via_received_and_rport_decide_where_an_answer_goes() -> None:
    source = ("127.0.0.9", 5099)
    [named] = parse_vias("SIP/2.0/UDP host.example.com;branch=z9hG4bK1")
    assert named.stamped(source).text() == "SIP/2.0/UDP host.example.com;branch=z9hG4bK1;received=127.0.0.9"
    assert named.stamped(source).reply_address() == ("127.0.0.9", 5060)  # a name is never looked up
    [rport] = parse_vias("SIP/2.0/UDP host.example.com:5070;rport;branch=z9hG4bK2")
    assert rport.stamped(source).text() == (
        "SIP/2.0/UDP host.example.com:5070;rport=5099;branch=z9hG4bK2;received=127.0.0.9"
    )
    assert rport.stamped(source).reply_address() == source  # RFC 3581: back to the port it came from
    [same] = parse_vias("SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK3")
    assert same.stamped(source) == same and same.reply_address() == ("127.0.0.9", 5070)
    folded = parse_vias("SIP  /  2.0 / UDP   [::1] : 5062 ; branch = z9hG4bK4 , SIP/2.0/TCP b.example.com")
    assert [via.text() for via in folded] == ["SIP/2.0/UDP [::1]:5062;branch=z9hG4bK4", "SIP/2.0/TCP b.example.com"]


def test_a_rejection_copies_the_request_and_names_the_fault() -> None:
    raw = (TORTURE / "3.1.1.11-mpart01.dat").read_bytes()
    verdict = new_screen().screen(raw, SENDER)
    assert verdict.deliver is None and verdict.reply is not None and verdict.reply_to == SENDER
    text = verdict.reply.decode("latin-1")
    assert text.startswith("SIP/2.0 405 Method Not Allowed\r\n")
    assert header(text, "Allow") == ALLOWED
    assert header(text, "Via") == (
        "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport=40000;received=127.0.0.1"
    )
    assert re.fullmatch(r"<sip:kumiko@example\.org>;tag=\w+", header(text, "To") or "")  # the UAS adds a To tag
    assert header(text, "From") == "<sip:fluffy@example.com>;tag=2fb0dcc9" and header(text, "CSeq") == "1 MESSAGE"

    bext = new_screen().screen((TORTURE / "3.3.5-bext01.dat").read_bytes(), SENDER).reply or b""
    assert header(bext.decode(), "Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
    invut = new_screen().screen((TORTURE / "3.3.6-invut.dat").read_bytes(), SENDER).reply or b""
    assert header(invut.decode(), "Accept") == "application/sdp"
    bad = new_screen().screen((TORTURE / "3.1.2.1-badinv01.dat").read_bytes(), SENDER).reply or b""
    assert bad.startswith(b"SIP/2.0 400 Malformed Via Header\r\n")


def test_what_pyvoip_gets_is_plain() -> None:
    """Folded, spaced and compact headers arrive at pyVoIP's parser one to a line, the body cut at its length."""
    raw = (TORTURE / "3.1.1.8-dblreq.dat").read_bytes().replace(b"REGISTER", b"OPTIONS")
    verdict = new_screen().screen(raw, SENDER)
    assert verdict.deliver is not None and b"INVITE" not in verdict.deliver  # the trailing octets are gone
    message = DeskSIPMessage(verdict.deliver)
    assert message.method == "OPTIONS" and message.headers["Call-ID"] == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    [via] = message.headers["Via"]
    assert via["address"] == ("192.0.2.125", "5060") and via["received"] == SENDER[0]

    raw = (TORTURE / "3.1.1.1-wsinv.dat").read_bytes()
    verdict = new_screen({"wsinv.ndaksdj@192.0.2.1"}).screen(raw, SENDER)  # as if it were a call of ours
    assert verdict.deliver is not None
    message = DeskSIPMessage(verdict.deliver)
    assert message.headers["To"]["tag"] == "1918181833n" and message.headers["From"]["tag"] == "98asjd8"
    assert message.headers["From"]["caller"] == 'J Rosenberg \\"'
    assert [via["address"][0] for via in message.headers["Via"]] == [
        "192.0.2.2",
        "spindle.example.com",
        "192.168.255.111",
    ]
    assert message.headers["CSeq"] == {"check": "0009", "method": "INVITE"}
    assert [media["type"] for media in message.body["m"]] == ["audio", "video"]


def test_responses_reach_pyvoip_only_for_our_calls() -> None:
    response = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
        b"From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:9001@127.0.0.1>;tag=b\r\nCall-ID: ours@test\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    screen = new_screen({"ours@test"})
    assert screen.screen(response, SENDER).deliver is not None
    assert screen.screen(response.replace(b"ours@test", b"theirs@test"), SENDER) == screen.screen(b"", SENDER)
    assert screen.counts["stray response"] == 1 and screen.counts["delivered response"] == 1


def test_an_invite_the_desk_cannot_take_is_refused_before_it_rings() -> None:
    invite = (
        "INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKi\r\n"
        "From: <sip:caller@127.0.0.1>;tag=a\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: i@test\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        "Content-Length: {length}\r\n\r\n{sdp}"
    )

    def answer(sdp: str) -> str:
        raw = invite.format(length=len(sdp), sdp=sdp).encode()
        verdict = new_screen().screen(raw, SENDER)
        return "deliver" if verdict.deliver else (verdict.reply or b"").decode().split("\r\n")[0]

    session = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    assert answer(session + "m=audio 4000 RTP/AVP 8 101\r\n") == "deliver"
    assert answer(session + "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000\r\n") == "deliver"
    assert answer(session + "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n") == "SIP/2.0 488 Not Acceptable Here"
    assert answer(session + "m=audio 4000 RTP/SAVP 0\r\n") == "SIP/2.0 488 Not Acceptable Here"
    assert answer(session + "m=video 4000 RTP/AVP 31\r\n") == "SIP/2.0 488 Not Acceptable Here"
    assert answer(session.replace("c=IN IP4 127.0.0.1\r\n", "") + "m=audio 4000 RTP/AVP 0\r\n").startswith(
        "SIP/2.0 400 "
    )
    assert answer("") == "SIP/2.0 488 Not Acceptable Here"  # no offer: pyVoIP cannot take an answer in the ACK


def test_nothing_raises_out_of_the_screen_and_pyvoip_parses_whatever_it_lets_through() -> None:
    """Every message cut short at every 7th octet, and with octets deleted or replaced (seeded)."""
    screen, chance = new_screen(), random.Random(4475)
    delivered = 0
    for path in torture_files():
        raw = path.read_bytes()
        variants = [raw[:cut] for cut in range(0, len(raw), 7)]
        for _ in range(40):
            at = chance.randrange(len(raw))
            variants.append(raw[:at] + raw[at + 1 :])
            variants.append(raw[:at] + bytes([chance.randrange(256)]) + raw[at + 1 :])
        for variant in variants:
            verdict = screen.screen(variant, SENDER)
            assert not (verdict.deliver and verdict.reply)
            if verdict.deliver is not None:
                DeskSIPMessage(verdict.deliver)  # must not raise
                delivered += 1
    assert delivered > 100
    assert screen.counts["checks failed"] == 0, screen.counts  # every variant decided by a check, none by a crash


def test_faults_are_logged_once_per_source_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    screen = new_screen(clock=lambda: now[0])
    garbage = b"\x16\x03\x01 not SIP at all"
    caplog.set_level(logging.DEBUG, logger="contactcenter.telephony.sip_requests")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]

    for _ in range(500):
        assert screen.screen(garbage, SENDER) == screen.screen(b"\r\n\r\n", SENDER)  # nothing to send
    assert screen.counts["unparseable"] == 500 and len(lines()) == 1
    assert "127.0.0.1:40000" in lines()[0] and repr(garbage) in lines()[0]
    screen.screen(garbage, ("127.0.0.2", 5060))  # another source has its own minute
    assert len(lines()) == 2
    now[0] += 61
    screen.screen(garbage, SENDER)
    assert len(lines()) == 3 and "499 more from this address" in lines()[2]
    assert not any(record.exc_info for record in caplog.records)


def test_source_log_forgets_the_oldest_addresses() -> None:
    faults = SourceLog(clock=lambda: 0.0)
    for n in range(5000):
        faults.emit(logging.DEBUG, (f"127.0.{n // 256}.{n % 256}", 5060), "x", b"")
    assert len(faults._sources) <= 4096


def test_name_addr_grammar() -> None:
    [party] = parse_addresses('"Mr \\"X\\"" <sip:+8613800138000@example.com;user=phone>;tag=7;x=1', "bad")
    assert party.tag == "7" and party.uri.user == "+8613800138000" and party.display_name == 'Mr "X"'
    assert party.without_tag == '"Mr \\"X\\"" <sip:+8613800138000@example.com;user=phone>;x=1'
    [unquoted] = parse_addresses("张三 <sip:1001@example.com>", "bad")  # tolerated: RFC 3261 wants it quoted
    assert unquoted.display_name == "张三"
    [tel] = parse_addresses("<tel:+8613800138000>;tag=1", "bad")
    assert tel.uri.scheme == "tel" and tel.tag == "1"
    for broken in ('"unterminated <sip:a@b>', "< sip:a@b >", "sip:a@b?x=y", "Bell, Alexander <sip:a@b>", "<sip:a@-b->"):
        with pytest.raises(Exception, match="bad"):
            parse_addresses(broken, "bad")
    assert isinstance(parse_vias("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK")[0], Via)


# ------------------------------------------------------------------------------------------------ a running desk


class Wire:
    """The phone's SIP socket, with every datagram it sends recorded with its destination."""

    def __init__(self, phone: Softphone) -> None:
        client = phone.phone.sip
        self._socket = client.s
        self._lock = threading.Lock()
        self.sent: list[tuple[str, tuple[str, int]]] = []
        client.s = client.out = self

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        with self._lock:
            self.sent.append((bytes(data).decode("utf-8", errors="replace"), address))
        return self._socket.sendto(data, address)

    def __getattr__(self, name: str) -> object:
        return getattr(self._socket, name)

    def responses(self, since: int = 0) -> list[tuple[str, tuple[str, int]]]:
        with self._lock:
            return [(text, to) for text, to in self.sent[since:] if text.startswith("SIP/2.0 ")]

    def answered(self, call_id: str, code: int, since: int = 0) -> bool:
        return any(status(text) == code and header(text, "Call-ID") == call_id for text, _ in self.responses(since))


def options(port: int, own: int, call_id: str) -> bytes:
    return (
        f"OPTIONS sip:1001@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
        f"From: <sip:probe@127.0.0.1:{own}>;tag=probe\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.sip
def test_rfc4475_against_a_running_desk_then_a_normal_call(line: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    settings = desk_settings(
        line["desk_file"],
        line["url"],
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.8"},
    )
    desk = Desk(settings, line["database"], lambda hook, **kwargs: None, None, None)
    torture = threading.Event()
    torture.set()
    rung: list[str] = []

    def on_call(call: Call) -> None:
        if torture.is_set():  # a torture INVITE: it rang; refuse it before any media could start
            rung.append(call.sip_call_id)
            call.reject(486, "Busy Here")
            return
        desk.handle(call)

    phone = extension_phone(line["registrar"].port, on_call)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        run_torture_then_a_call(line, desk, phone, sender, torture, rung, caplog)
    finally:
        torture.clear()
        sender.close()
        phone.stop()


def run_torture_then_a_call(
    line: dict,
    desk: Desk,
    phone: Softphone,
    sender: socket.socket,
    torture: threading.Event,
    rung: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    screen = phone.phone.sip.screen
    wire = Wire(phone)
    port = phone.account.local_port
    sender.bind(("127.0.0.1", 0))
    sender.settimeout(2)
    own = sender.getsockname()[1]

    # an unknown body type with rport: the 415 comes back to the sending socket, and nothing rings
    invite = (
        (TORTURE / "3.3.6-invut.dat")
        .read_bytes()
        .replace(
            b"Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw",
            f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bKrport;rport".encode(),
        )
    )
    sender.sendto(invite, ("127.0.0.1", port))
    reply = sender.recv(65535).decode()
    assert reply.startswith("SIP/2.0 415 Unsupported Media Type\r\n") and f"rport={own}" in reply

    results: dict[str, list[tuple[str, tuple[str, int]]]] = {}
    for path in torture_files():
        raw = path.read_bytes()
        mark = len(wire.sent)
        sender.sendto(raw, ("127.0.0.1", port))
        probe = f"probe-{path.stem}@test"
        sender.sendto(options(port, own, probe), ("127.0.0.1", port))
        while probe.encode() not in (answer := sender.recv(65535)):  # (an rport answer comes here first)
            pass
        assert answer.startswith(b"SIP/2.0 200 OK"), path.stem  # the phone is still answering
        assert wait_until(lambda probe=probe, mark=mark: wire.answered(probe, 200, mark), 2, step=0.005)
        call_id = call_id_of(raw)
        results[path.stem] = [
            (text, to)
            for text, to in wire.responses(mark)
            if header(text, "Call-ID") == call_id and not (call_id in rung and status(text) in (100, 486))
        ]
    assert wait_until(lambda: not phone.phone.calls, 5)  # every torture call refused and gone
    torture.clear()

    table = []
    for name, expected in EXPECTED.items():
        answers = results[name]
        table.append(f"{name}: {', '.join(text.split(chr(13))[0][8:] for text, _ in answers) or '—'}")
        if expected is None:
            assert answers == [], name
            continue
        code, word = expected
        [(text, to)] = answers
        assert status(text) == code, (name, text)
        assert word is None or word in text.split("\r\n")[0], (name, text)
        via_port = VIA_PORT.get(name, 5060)
        assert to == ("127.0.0.1", own if via_port == "rport" else via_port), (name, to)
        if name != "3.1.2.1-badinv01":  # (a Via too broken to parse is copied as it is)
            assert "received=127.0.0.1" in (header(text, "Via") or ""), name
        if name in ALLOW_EXPECTED:
            assert header(text, "Allow") == ALLOWED, name
        if code == 180:  # it rang, with our Contact (the RFC 2543 INVITE has none), and was then refused
            assert header(text, "Contact") == f"<sip:1001@127.0.0.1:{port}>"
            assert wire.answered(call_id_of((TORTURE / f"{name}.dat").read_bytes()) or "", 486)
    print("\n".join(table))
    assert sorted(rung) == sorted(
        call_id_of((TORTURE / f"{name}.dat").read_bytes()) for name, e in EXPECTED.items() if e == (180, None)
    )
    assert not any(  # dblreq's trailing INVITE octets were ignored
        header(text, "Call-ID") == "dblreq.0ha0isnda977644900765@192.0.2.15" for text, _ in wire.responses()
    )
    assert all(ipaddress.ip_address(to[0]) for _, to in wire.sent)  # never a name to look up
    assert screen.counts["malformed response"] == 2 and screen.counts["stray response"] == 3
    assert not phone.phone.assignedPorts  # the refused calls gave their RTP ports back

    # no traceback, and the faults of one source within a minute are one log line
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    faults = [r for r in caplog.records if r.name.endswith("sip_requests") and r.levelno >= logging.INFO]
    assert len(faults) == 1, [r.getMessage() for r in faults]

    # and a normal call still works: SIPp through Kamailio, answered at the first ring, stored as completed
    result = sipp_call(line, "uac_call.xml", talk_ms=3000)
    assert desk.wait_until_idle(30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [done] = desk.finished
    assert done.record.disposition == "completed" and done.record.rings_before_answer == 1


def test_a_burst_of_refused_calls_gives_every_port_back() -> None:
    """pyVoIP's VoIPCall.__del__, run by the garbage collector while a hang-up held the phone's port lock,
    deadlocked that thread and every later hang-up (found by sending RFC 4475's INVITEs in a burst)."""

    class Socket:
        def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            return len(data)

    phone = DeskVoIPPhone(
        "127.0.0.1",
        5060,
        "1001",
        "",
        myIP="127.0.0.1",
        callCallback=lambda call: call.deny(486, "Busy Here"),
        sipPort=free_port(),
        rtpPortLow=32100,
        rtpPortHigh=32399,
    )
    phone.sip.s = phone.sip.out = Socket()

    def burst() -> None:
        for name in ("3.4.1-inv2543", "3.1.1.7-longreq", "3.1.1.3-esc01"):
            verdict = phone.sip.screen.screen((TORTURE / f"{name}.dat").read_bytes(), SENDER)
            assert verdict.deliver is not None
            for _ in range(150):
                phone.sip.parse_message(DeskSIPMessage(verdict.deliver))

    receiving = threading.Thread(target=burst, daemon=True)  # as the SIP thread; a deadlock must not hang pytest
    receiving.start()
    receiving.join(30)
    assert not receiving.is_alive(), "the SIP thread deadlocked"
    assert wait_until(lambda: not phone.calls and not phone.assignedPorts, 5), len(phone.assignedPorts)
