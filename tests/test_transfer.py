"""Blind transfer (REFER, RFC 3515) and DTMF sent by the desk (RFC 4733), against real peers on loopback.

The transferee is baresip (a real softphone that carries out a REFER: it calls the target and reports the
call's progress in NOTIFYs); the target is a second extension; Kamailio is the registrar/proxy in between
and answers 404 for an extension nobody registered. SIPp plays peers that refuse a REFER, never answer one,
or offer no telephone-event. Every SIP message the desk sends or receives is traced (``SipTrace``), so the
tests check the wire, not only the return values.
"""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from contactcenter.media.call_media import CallMedia
from contactcenter.telephony.call import Call, DTMFUnavailable
from contactcenter.telephony.control import CallControl
from contactcenter.telephony.desk import Desk
from contactcenter.telephony.pyvoip_adapter import RTP, DeskRTPClient
from contactcenter.telephony.softphone import Softphone
from tests.helpers.ports import free_port
from tests.helpers.settings import desk_settings
from tests.helpers.sip import Answerer, Baresip, SipTrace, dialler, extension_phone, start_callee
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.sip


def cseq(message: str) -> int:
    match = re.search(r"^CSeq:\s*(\d+)", message, re.M)
    assert match is not None, message
    return int(match.group(1))


def header(message: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*?)\r?$", message, re.M | re.I)
    assert match is not None, f"no {name} in:\n{message}"
    return match.group(1)


# ------------------------------------------------------------------------------ baresip transfers a desk call


@pytest.fixture
def customer_call(line: dict, tmp_path: Path) -> Iterator[dict]:
    """baresip (extension 2000, "the customer") calls the desk (1001), which answers at the first ring; a
    second extension (1002) answers whatever reaches it, a third (1003) lets it ring. The desk's and 1002's
    SIP traffic is traced."""
    settings = desk_settings(
        line["desk_file"],
        line["url"],
        {"CONTACTCENTER_RING__ANSWER_AFTER_RINGS": "1", "CONTACTCENTER_RING__RING_PERIOD_SECONDS": "0.3"},
    )
    changes: list[str] = []
    desk = Desk(settings, line["database"], None, None, None, on_change=lambda what, _call: changes.append(what))
    port = line["registrar"].port
    answerer = Answerer()
    rung: list[Call] = []
    with ExitStack() as stack:
        desk_phone = extension_phone(port, desk.handle)
        stack.callback(desk_phone.stop)
        target = extension_phone(port, answerer, user="1002", rtp_low=31700, rtp_high=31799)
        stack.callback(target.stop)
        ringer = extension_phone(
            port, lambda c: rung.append(c) or c.ended.wait(), user="1003", rtp_low=31800, rtp_high=31899
        )
        stack.callback(ringer.stop)
        baresip = Baresip(tmp_path / "baresip", port)
        stack.callback(baresip.stop)
        desk_trace, target_trace = SipTrace(desk_phone), SipTrace(target)
        baresip.command("dial", f"sip:1001@127.0.0.1:{port}")
        assert wait_until(
            lambda: (
                (control := desk.current_control()) is not None and control.call.answered and control.media is not None
            ),
            15,
        ), baresip.log_text()[-3000:]
        control = desk.current_control()
        assert control is not None and control.media is not None
        marked: list[tuple[str, int]] = []  # (event, REFERs sent by then)
        mark_event = control.media.mark_event

        def spy(name: str) -> float:
            marked.append((name, len(desk_trace.requests_sent("REFER"))))
            return mark_event(name)

        control.media.mark_event = spy
        yield {
            "desk": desk,
            "control": control,
            "changes": changes,
            "marked": marked,
            "answerer": answerer,
            "rung": rung,
            "desk_trace": desk_trace,
            "target_trace": target_trace,
            "baresip": baresip,
            "port": port,
        }


def test_baresip_carries_out_a_blind_transfer_to_the_second_extension(customer_call: dict) -> None:
    control, desk, port = customer_call["control"], customer_call["desk"], customer_call["port"]
    desk_trace, target_trace = customer_call["desk_trace"], customer_call["target_trace"]

    result = control.transfer("1002")

    assert result.ok and result.status == 200, (result, customer_call["baresip"].log_text()[-3000:])
    assert customer_call["marked"] == [("transfer", 0)]  # marked before the REFER went out (R6 is timed from it)
    # our leg is hung up by the time transfer() returns
    call = control.call
    assert call.ended.is_set() and call.hung_up_by == "transfer" and call.transferred_to == "1002"
    assert desk.wait_until_idle(15)
    [done] = desk.finished
    assert done.record.hung_up_first == "agent" and done.record.disposition == "completed"
    assert "transferred" in customer_call["changes"] and "transfer_failed" not in customer_call["changes"]

    # the target got the transferee's INVITE (From: 2000), answered, and hears the customer
    [(target_call, target_media)] = customer_call["answerer"].calls
    assert target_call.remote_number == "2000" and target_call.answered
    assert wait_until(lambda: target_media.customer_frames >= 25, 5)  # half a second of the customer's voice

    # on the wire: REFER → 202, NOTIFY (sipfrag) each answered 200, then our BYE, numbered after the REFER
    [(refer_at, refer)] = desk_trace.requests_sent("REFER")
    assert header(refer, "Refer-To") == f"<sip:1002@127.0.0.1:{port}>"
    assert header(refer, "Referred-By") == f"<sip:1001@127.0.0.1:{port}>"
    assert desk_trace.responses_received(202, "REFER")
    notifies = desk_trace.requests_received("NOTIFY")
    assert len(notifies) >= 2 and header(notifies[-1][1], "Event").startswith("refer")
    assert "SIP/2.0 200" in notifies[-1][1].partition("\r\n\r\n")[2]
    assert len(desk_trace.responses_sent(200, "NOTIFY")) == len(notifies)
    [(bye_at, bye)] = desk_trace.requests_sent("BYE")
    assert bye_at >= notifies[-1][0] and cseq(bye) > cseq(refer)
    assert wait_until(lambda: desk_trace.responses_received(200, "BYE"), 5)  # baresip let our leg go

    invite_at = target_trace.requests_received("INVITE")[0][0]
    print(
        f"\nREFER → target's INVITE {1000 * (invite_at - refer_at):.1f} ms, "
        f"→ final NOTIFY {1000 * (notifies[-1][0] - refer_at):.1f} ms, → our BYE {1000 * (bye_at - refer_at):.1f} ms"
    )


def test_a_transfer_to_a_missing_extension_fails_and_the_call_stays_up(customer_call: dict) -> None:
    control, desk, desk_trace = customer_call["control"], customer_call["desk"], customer_call["desk_trace"]

    result = control.transfer("1009")  # nobody registered 1009: Kamailio answers the transferee 404

    assert not result.ok and result.status == 404 and "404" in result.reason, result
    assert customer_call["marked"] == [("transfer", 0)]
    assert customer_call["changes"][-1] == "transfer_failed"
    call = control.call
    assert call.answered and not call.ended.is_set() and call.hung_up_by is None and call.transferred_to is None
    assert not customer_call["answerer"].calls
    notifies = desk_trace.requests_received("NOTIFY")
    assert "SIP/2.0 404" in notifies[-1][1] and len(desk_trace.responses_sent(200, "NOTIFY")) == len(notifies)
    assert not desk_trace.requests_sent("BYE")

    # the call is still there to hang up: baresip accepts our BYE in the same dialog
    assert control.hang_up()
    assert wait_until(lambda: desk_trace.responses_received(200, "BYE"), 5)
    assert desk.wait_until_idle(15)
    [done] = desk.finished
    assert done.record.hung_up_first == "agent" and call.hung_up_by == "agent"


def test_a_transfer_the_target_does_not_answer_in_time_fails_and_the_call_stays_up(customer_call: dict) -> None:
    call, desk_trace = customer_call["control"].call, customer_call["desk_trace"]

    result = call.transfer("1003", timeout=1.5)  # 1003 rings and rings

    assert not result.ok and result.status is None, result
    assert "did not complete within 1.5 s (last heard: 100" in result.reason, result
    assert len(customer_call["rung"]) == 1 and customer_call["rung"][0].ringing  # the transferee did call it
    assert call.answered and not call.ended.is_set() and call.transferred_to is None
    assert not desk_trace.requests_sent("BYE")
    assert customer_call["control"].hang_up()
    assert wait_until(lambda: desk_trace.responses_received(200, "BYE"), 5)


# ------------------------------------------------------------------------- peers that refuse or ignore a REFER


@pytest.fixture
def placed(outside: dict) -> Iterator[dict]:
    """A call the desk places to a SIPp peer behind the outside line; ``scenario`` set by the test's param."""
    phone = dialler(outside)
    trace = SipTrace(phone)
    peers: list[subprocess.Popen[str]] = []

    def call(scenario: str) -> Call:
        peers.append(start_callee(outside, scenario))
        result = phone.dial("9001", timeout=10)
        assert result.outcome == "answered" and result.call is not None, result
        return result.call

    try:
        yield {"call": call, "phone": phone, "trace": trace, "peers": peers}
    finally:
        phone.stop()
        for peer in peers:
            if peer.poll() is None:
                peer.kill()
                peer.communicate()


def hang_up_and_check_peer(call: Call, peer: subprocess.Popen[str]) -> None:
    """Our BYE ends the call in the peer's dialog: SIPp's scenario runs to its end."""
    call.hangup()
    output, _ = peer.communicate(timeout=15)
    assert peer.returncode == 0, output[-2000:]


def test_a_refer_refused_with_403_leaves_the_call_up(placed: dict) -> None:
    call = placed["call"]("uas_refer_refused.xml")
    control = CallControl(call)
    changes: list[str] = []
    control.on_change = changes.append

    result = control.transfer("1002")

    assert not result.ok and result.status == 403 and "refused" in result.reason, result
    assert changes == ["transfer_failed"]
    assert call.answered and not call.ended.is_set() and call.transferred_to is None
    assert len(placed["trace"].requests_sent("REFER")) == 1
    hang_up_and_check_peer(call, placed["peers"][0])


def test_a_refer_nobody_answers_gives_up_after_its_timeout(placed: dict) -> None:
    call = placed["call"]("uas_refer_silent.xml")

    started = time.monotonic()
    result = call.transfer("1002", timeout=1.2)
    took = time.monotonic() - started

    assert not result.ok and result.status is None and "no answer to the REFER within 1.2 s" in result.reason
    assert 1.1 <= took < 2.0, took
    refers = [text for _, text in placed["trace"].requests_sent("REFER")]
    assert len(refers) == 2 and refers[0] == refers[1]  # retransmitted at T1 (0.5 s), the same transaction
    assert call.answered and not call.ended.is_set()
    # the call is still up: the peer answers our BYE in the same dialog (its exit status is not checked: the
    # proxy goes on retransmitting the unanswered REFER, which SIPp would count as unexpected after the BYE)
    call.hangup()
    assert wait_until(lambda: placed["trace"].responses_received(200, "BYE"), 5)


def test_hostile_transfer_targets_and_digits_are_refused_before_anything_is_sent(placed: dict) -> None:
    call = placed["call"]("uas_callee.xml")
    control = CallControl(call)
    changes: list[str] = []
    control.on_change = changes.append
    media = CallMedia()
    marked: list[str] = []
    media.mark_event = lambda name: marked.append(name) or 0.0
    control.attach(media, None)

    for target in ("1002>;evil", "", "   ", "1" * 200, "1002\r\nX-Injected: 1", "sip:1002@evil.example", "10 02"):
        with pytest.raises(ValueError):
            control.transfer(target)
        with pytest.raises(ValueError):
            call.transfer(target)
    for digits in ("12x", "", "1\r\n", "#" * 65):
        with pytest.raises(ValueError):
            control.send_dtmf(digits)

    assert not placed["trace"].requests_sent("REFER") and not marked and not changes
    assert call.answered
    hang_up_and_check_peer(call, placed["peers"][0])


def test_dtmf_to_a_peer_without_telephone_event_is_not_sent(placed: dict) -> None:
    call = placed["call"]("uas_refer_refused.xml")  # its SDP offers PCMU only
    control = CallControl(call)

    assert control.send_dtmf("1") is False
    with pytest.raises(DTMFUnavailable, match="telephone-event"):
        call.send_dtmf("1")

    assert call.answered
    hang_up_and_check_peer(call, placed["peers"][0])


# ------------------------------------------------------------------------------------------- NOTIFY, raw


def notify(port: int, call_id: str, *, to_tag: str | None, event: str, body: str = "") -> str:
    """Send a NOTIFY straight to a softphone on ``port``; the status line of its answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        own = sock.getsockname()[1]
        text = (
            f"NOTIFY sip:1001@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:peer@127.0.0.1:{own}>;tag=peer1\r\n"
            f"To: <sip:1001@127.0.0.1>{f';tag={to_tag}' if to_tag else ''}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 7 NOTIFY\r\nEvent: {event}\r\nSubscription-State: active\r\n"
            f"Content-Type: message/sipfrag\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        )
        sock.sendto(text.encode(), ("127.0.0.1", port))
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_notify_answers_unknown_events_and_unknown_dialogs(placed: dict) -> None:
    call = placed["call"]("uas_callee.xml")
    port = placed["phone"].account.local_port

    # inside the call: an event we do not know, and a stray "transfer done" with no transfer under way
    assert notify(port, call.sip_call_id, to_tag="x", event="presence") == "SIP/2.0 200 OK"
    assert notify(port, call.sip_call_id, to_tag="x", event="refer", body="SIP/2.0 200 OK\r\n") == "SIP/2.0 200 OK"
    assert call.answered and not call.ended.is_set()
    # a dialog we do not have: 481; an out-of-dialog notification (no To-tag, e.g. voicemail waiting): 200
    assert notify(port, "nobody@here", to_tag="gone", event="refer", body="SIP/2.0 200 OK\r\n").startswith(
        "SIP/2.0 481"
    )
    assert notify(port, "mwi@here", to_tag=None, event="message-summary") == "SIP/2.0 200 OK"

    hang_up_and_check_peer(call, placed["peers"][0])


# -------------------------------------------------------------------------------------------------- DTMF


def test_dtmf_from_one_extension_reaches_the_other(line: dict) -> None:
    port = line["registrar"].port
    answerer = Answerer()
    caller: Softphone = extension_phone(port, lambda call: None)
    callee = extension_phone(port, answerer, user="1002", rtp_low=31700, rtp_high=31799)
    try:
        result = caller.dial("1002", timeout=10)
        assert result.outcome == "answered" and result.call is not None, result
        [(far, far_media)] = answerer.calls

        started = time.monotonic()
        assert CallControl(result.call).send_dtmf("12#")
        heard: list[str] = []
        assert wait_until(lambda: heard.append(far.read_dtmf()) or "".join(heard) == "12#", 5), heard
        took = time.monotonic() - started

        assert far_media.dtmf == ["1", "2", "#"]  # pushed to the media (key_pressed) as well, once each
        assert took < 1.0, took
        print(f"\n'12#' sent and detected in {1000 * took:.0f} ms")
        result.call.hangup()
        assert far.ended.wait(5)
    finally:
        caller.stop()
        callee.stop()


def test_rfc4733_event_packets_on_the_wire() -> None:
    """The packets themselves: one voice stream (SSRC, sequence, clock) with the events in it."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1)
    client = DeskRTPClient(
        {0: RTP.PayloadType.PCMU, 101: RTP.PayloadType.EVENT},
        "127.0.0.1",
        free_port(),
        "127.0.0.1",
        sink.getsockname()[1],
        RTP.TransmitType.SENDRECV,
    )
    recorded: list[bytes] = []
    client.on_sent = recorded.append
    client.start()
    try:
        packets = [sink.recv(2048)]  # the voice stream is running: the events displace voice, as in a call
        assert client.dtmf_payload_type == 101
        assert client.send_dtmf("5#") == pytest.approx((7 + 2 + 7) * 0.02)
        packets += [sink.recv(2048) for _ in range(29)]
    finally:
        client.stop()
        sink.close()
    events = [(i, p) for i, p in enumerate(packets) if p[1] & 0x7F == 101]
    assert len(events) == 14 and {p[8:12] for p in packets} == {packets[0][8:12]}  # one SSRC
    sequence = [int.from_bytes(p[2:4], "big") for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequence))
    for digit, first in (("5", events[0][0]), ("#", events[7][0])):
        burst = packets[first : first + 7]
        assert [p[1] >> 7 for p in burst] == [1, 0, 0, 0, 0, 0, 0]  # the marker on the first packet only
        assert [p[12] for p in burst] == [{"5": 5, "#": 11}[digit]] * 7
        assert [p[13] >> 7 for p in burst] == [0, 0, 0, 0, 1, 1, 1]  # the end bit, three times
        assert [int.from_bytes(p[14:16], "big") for p in burst] == [160, 320, 480, 640, 800, 800, 800]
        # every packet of the event carries its start, which is where the voice clock stood
        start = int.from_bytes(packets[first - 1][4:8], "big") + 160
        assert {int.from_bytes(p[4:8], "big") for p in burst} == {start}
        after = packets[first + 7]
        assert after[1] & 0x7F == 0 and int.from_bytes(after[4:8], "big") == start + 7 * 160
    assert events[7][0] - events[6][0] == 3  # two voice packets between the digits
    # the agent leg records the tone the far end plays for "5" (770 + 1336 Hz), not the voice it displaced
    tone = np.frombuffer(b"".join(recorded[events[0][0] : events[0][0] + 5]), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(tone))  # 800 samples: 10 Hz bins
    level = {f: spectrum[round(f / 10)] for f in (697, 770, 852, 941, 1209, 1336, 1477, 1633)}
    assert sorted(level, key=level.__getitem__)[-2:] in ([770, 1336], [1336, 770])

    with pytest.raises(DTMFUnavailable):
        DeskRTPClient(
            {0: RTP.PayloadType.PCMU}, "127.0.0.1", free_port(), "127.0.0.1", 9, RTP.TransmitType.SENDRECV
        ).send_dtmf("1")
