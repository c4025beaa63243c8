"""RTP ports are bound when a call is given one (telephony/rtp_ports.py), on real sockets and real peers: a
port another socket holds is passed over instead of failing the call after its 200 OK (seen in CI: the
outbound loss test's range lies among Linux's ephemeral ports, and a client socket took one)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from contactcenter.media.call_media import CallMedia
from contactcenter.telephony.rtp_ports import RTP_PORTS, NoRtpPortError, RtpPortReservations
from tests.helpers.ports import free_port
from tests.helpers.sip import extension_phone, start_callee
from tests.helpers.waiting import wait_until


def hold(port: int) -> socket.socket:
    """A socket of another program on ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.fixture
def three_ports() -> Iterator[tuple[int, int]]:
    """A range of three free UDP ports."""
    for _ in range(50):
        low = free_port()
        if low + 2 < 65536:
            try:
                probes = [hold(port) for port in range(low, low + 3)]
            except OSError:
                continue
            for probe in probes:
                probe.close()
            yield low, low + 2
            return
    pytest.fail("no three consecutive free UDP ports")


def test_a_port_held_elsewhere_is_passed_over_and_the_reserved_socket_is_the_streams(
    three_ports: tuple[int, int],
) -> None:
    low, high = three_ports
    ports = RtpPortReservations()
    others = [hold(low), hold(low + 1)]
    try:
        port = ports.reserve("127.0.0.1", low, high, taken=())
        assert port == high
        sock = ports.take("127.0.0.1", port)
        assert sock is not None and sock.getsockname() == ("127.0.0.1", high)
        assert ports.take("127.0.0.1", port) is None  # handed over once
        sock.close()
    finally:
        for other in others:
            other.close()


def test_a_range_used_up_says_by_whom_and_a_released_port_is_free_again(three_ports: tuple[int, int]) -> None:
    low, high = three_ports
    ports = RtpPortReservations()
    other = hold(low)
    try:
        first = ports.reserve("127.0.0.1", low, high, taken=())
        second = ports.reserve("127.0.0.1", low, high, taken={first})
        with pytest.raises(NoRtpPortError, match=r"2 held by calls, 1 by other sockets"):
            ports.reserve("127.0.0.1", low, high, taken={first, second})
        ports.release("127.0.0.1", [first, second])
        assert ports.held() == 0
        hold(first).close()  # the released sockets no longer hold their ports
        hold(second).close()
    finally:
        other.close()


@pytest.mark.sip
def test_an_outbound_call_connects_when_other_sockets_hold_most_of_its_rtp_range(
    outside: dict, three_ports: tuple[int, int]
) -> None:
    low, high = three_ports
    others = [hold(low), hold(low + 1)]
    callee = start_callee(outside, "uas_callee.xml")
    phone = extension_phone(outside["registrar"].port, lambda call: None, rtp_low=low, rtp_high=high)
    try:
        result = phone.dial("9001", timeout=10)
        assert result.outcome == "answered", result
        media = CallMedia()
        result.call.attach_media(media)
        result.call.play(np.zeros(8000, dtype="<i2").tobytes())
        assert wait_until(lambda: media.customer_frames > 50 and media.agent_frames > 50, 10)  # audio both ways
        result.call.hangup()
        output, _ = callee.communicate(timeout=20)
        assert callee.returncode == 0, output[-2000:]
    finally:
        phone.stop()
        if callee.poll() is None:
            callee.kill()
        for other in others:
            other.close()
    assert RTP_PORTS.held() == 0


@pytest.mark.sip
def test_a_call_that_ends_unanswered_gives_its_reserved_port_back(outside: dict) -> None:
    phone = extension_phone(outside["registrar"].port, lambda call: None, rtp_low=31300, rtp_high=31309)
    try:
        result = phone.dial("7777", timeout=10)  # Kamailio: 404
        assert result.outcome == "failed", result
    finally:
        phone.stop()
    assert RTP_PORTS.held() == 0
    assert not phone.phone.assignedPorts
