"""SIP over TLS and TCP (issue 19 item 4): a real Kamailio with its TLS module as registrar, the desk's stream
transport as client. One verified connection carries REGISTER, OPTIONS and the requests the registrar sends
the desk; a wrong CA is one line; a lost connection is re-opened from the same port."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contactcenter.settings import SettingsError, load_settings
from contactcenter.telephony.certificates import CertificatePair, loopback_certificate
from contactcenter.telephony.registrar import LocalRegistrar, RegistrarError, registrar_config
from contactcenter.telephony.sip_transactions import ClientTransactions
from contactcenter.telephony.sip_transport import (
    FramingError,
    SipStreamFramer,
    StreamSipSocket,
    TransportError,
    for_stream,
)
from tests.helpers.paths import REPO
from tests.helpers.ports import free_port
from tests.helpers.secure_sip import free_udp_and_tcp_port
from tests.helpers.settings import make_desk
from tests.helpers.waiting import wait_until


def request(method: str, uri: str, local_port: int, user: str = "1001", extra: str = "") -> bytes:
    """A request as pyVoIP writes it (UDP Via, transport=UDP Contact): the transport must rewrite both."""
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{user}@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:{user}@127.0.0.1:{local_port};transport=UDP>\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificatePair:
    return loopback_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_registrar(certificate: CertificatePair) -> Iterator[LocalRegistrar]:
    with LocalRegistrar("127.0.0.1", free_udp_and_tcp_port(), transport="tls", certificate=certificate) as registrar:
        yield registrar


def first_line(sock: StreamSipSocket) -> str:
    return sock.recv(65535).split(b"\r\n", 1)[0].decode()


@pytest.mark.sip
def test_one_verified_tls_connection_carries_register_options_and_requests_to_the_desk(
    tls_registrar: LocalRegistrar, certificate: CertificatePair
) -> None:
    port, local = tls_registrar.port, free_udp_and_tcp_port()
    sock = StreamSipSocket(
        "127.0.0.1", port, "tls", local_ip="127.0.0.1", local_port=local, ca_file=str(certificate.certificate)
    )
    sock.connect()
    try:
        sock.settimeout(5)
        sock.sendto(request("REGISTER", f"sip:127.0.0.1:{port}", local, extra="Expires: 60\r\n"), None)
        answer = sock.recv(65535).decode()
        assert answer.startswith("SIP/2.0 200 OK"), answer
        assert f"<sip:1001@127.0.0.1:{local};transport=tls>" in answer  # the binding names the connection
        assert f"Via: SIP/2.0/TLS 127.0.0.1:{local};" in answer and ";alias" in answer
        sock.sendto(request("OPTIONS", f"sip:127.0.0.1:{port}", local), None)
        assert first_line(sock) == "SIP/2.0 200 Keepalive"

        # a softphone on UDP reaches extension 1001: Kamailio sends it down the desk's own TLS connection
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
            phone.bind(("127.0.0.1", 0))
            phone.sendto(
                request("OPTIONS", f"sip:1001@127.0.0.1:{port}", phone.getsockname()[1], user="2000"),
                ("127.0.0.1", port),
            )
            incoming, source = sock.recvfrom(65535)
        assert incoming.startswith(f"OPTIONS sip:1001@127.0.0.1:{local};transport=tls SIP/2.0".encode())
        assert b"Via: SIP/2.0/TLS 127.0.0.1:" in incoming
        assert source == ("127.0.0.1", port)
        assert sock.connections == 1  # reused, never re-opened
        assert sock.messages_sent == 2 and sock.messages_received == 3
    finally:
        sock.close()


@pytest.mark.sip
def test_a_certificate_from_another_ca_is_refused_in_one_line(tls_registrar: LocalRegistrar, tmp_path: Path) -> None:
    other_ca = loopback_certificate(tmp_path / "other").certificate  # same names, a different key
    for ca_file in (str(other_ca), None):  # a wrong CA file, and the system store
        sock = StreamSipSocket(
            "127.0.0.1", tls_registrar.port, "tls", local_ip="127.0.0.1", local_port=free_port(), ca_file=ca_file
        )
        with pytest.raises(TransportError) as caught:
            sock.connect()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"TLS to 127.0.0.1:{tls_registrar.port} refused: its certificate is not trusted")
        assert "set [sip] tls_ca_file" in message
        sock.close()


@pytest.mark.sip
def test_the_name_in_the_certificate_is_checked(tls_registrar: LocalRegistrar, certificate: CertificatePair) -> None:
    sock = StreamSipSocket(
        "127.0.0.1",
        tls_registrar.port,
        "tls",
        local_ip="127.0.0.1",
        local_port=free_port(),
        ca_file=str(certificate.certificate),
        server_name="pbx.example.com",  # not among the certificate's names (localhost, 127.0.0.1, ::1)
    )
    with pytest.raises(TransportError, match=r"not trusted .*Hostname mismatch"):
        sock.connect()
    sock.close()


@pytest.mark.sip
def test_a_plain_tcp_port_or_nothing_listening_is_one_line(certificate: CertificatePair) -> None:
    with LocalRegistrar("127.0.0.1", free_udp_and_tcp_port(), transport="tcp") as registrar:
        sock = StreamSipSocket(
            "127.0.0.1", registrar.port, "tls", local_ip="127.0.0.1", local_port=free_port(), timeout=1
        )
        with pytest.raises(TransportError, match=r"^TLS .*127.0.0.1:\d+.*is it a TLS port\? \(\[sip\] port\)$"):
            sock.connect()
        sock.close()
    nobody = StreamSipSocket("127.0.0.1", free_udp_and_tcp_port(), "tcp", local_ip="127.0.0.1", local_port=free_port())
    with pytest.raises(TransportError, match=r"^TCP connection to .* refused: nothing listens there"):
        nobody.connect()
    nobody.close()


@pytest.mark.sip
def test_tcp_registers_and_a_lost_connection_is_reopened_from_the_same_port(certificate: CertificatePair) -> None:
    port, local = free_udp_and_tcp_port(), free_udp_and_tcp_port()
    reopened: list[int] = []
    registrar = LocalRegistrar("127.0.0.1", port, transport="tcp")
    registrar.start()
    sock = StreamSipSocket(
        "127.0.0.1", port, "tcp", local_ip="127.0.0.1", local_port=local, on_reconnect=lambda: reopened.append(1)
    )
    try:
        sock.connect()
        sock.settimeout(5)
        sock.sendto(request("REGISTER", f"sip:127.0.0.1:{port}", local, extra="Expires: 60\r\n"), None)
        assert first_line(sock) == "SIP/2.0 200 OK"
        registrar.stop()  # the PBX restarts
        assert wait_until(lambda: not sock.connected, 10)
        registrar.start()
        assert wait_until(lambda: reopened, 15), "the connection was not re-opened"
        assert sock.connections == 2
        sock.sendto(request("REGISTER", f"sip:127.0.0.1:{port}", local, extra="Expires: 60\r\n"), None)
        assert first_line(sock) == "SIP/2.0 200 OK"
    finally:
        sock.close()
        registrar.stop()


def test_the_framer_splits_a_stream_by_content_length() -> None:
    one = b"SIP/2.0 200 OK\r\nCall-ID: a\r\nContent-Length: 5\r\n\r\nhello"
    two = b"OPTIONS sip:x SIP/2.0\r\nl: 0\r\n\r\n"
    framer = SipStreamFramer()
    stream = b"\r\n\r\n" + one + b"\r\n" + two  # a ping, a message, a stray CRLF, a compact-form message
    messages = [message for i in range(len(stream)) for message in framer.feed(stream[i : i + 1])]
    assert messages == [one, two]
    assert framer.pings == 1
    assert SipStreamFramer().feed(one + two) == [one, two]
    with pytest.raises(FramingError, match="without Content-Length"):
        SipStreamFramer().feed(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n")
    with pytest.raises(FramingError, match="more than 65535"):
        SipStreamFramer().feed(b"INFO sip:x SIP/2.0\r\nContent-Length: 70000\r\n\r\n")


def test_only_the_desks_own_via_and_contacts_name_the_stream() -> None:
    invite = (
        b"INVITE sip:2000@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;rport\r\n"
        b"Contact: <sip:1001@10.0.0.5:5062;transport=UDP>\r\nContent-Length: 4\r\n\r\nVia:"
    )
    sent = for_stream(invite, "tls")
    assert b"Via: SIP/2.0/TLS 10.0.0.5:5062;branch=z9hG4bK1;rport;alias\r\n" in sent
    assert b"Contact: <sip:1001@10.0.0.5:5062;transport=tls>\r\n" in sent
    assert sent.endswith(b"\r\n\r\nVia:")  # the body is untouched
    answer = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n"
        b"Contact: <sip:1001@10.0.0.5:5062>\r\nContent-Length: 0\r\n\r\n"
    )
    sent = for_stream(answer, "tcp")
    assert b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\r\n" in sent  # the caller's Via, as it came
    assert b"Contact: <sip:1001@10.0.0.5:5062;transport=tcp>\r\n" in sent


def test_the_registrar_config_has_tls_only_when_asked(certificate: CertificatePair) -> None:
    plain = registrar_config("127.0.0.1", 5060, "/m/")
    assert "#!define WITH_TLS" not in plain and "#!define WITH_TCP" not in plain
    tls = registrar_config("127.0.0.1", 5060, "/m/", transport="tls", certificate=certificate)
    assert "#!define WITH_TLS" in tls and str(certificate.key) in tls
    with pytest.raises(RegistrarError, match="needs a certificate"):
        registrar_config("127.0.0.1", 5060, "/m/", transport="tls")


def test_the_loopback_certificate_is_made_once_and_its_key_is_private(tmp_path: Path) -> None:
    pair = loopback_certificate(tmp_path / "tls")
    assert pair.key.stat().st_mode & 0o077 == 0
    first = pair.certificate.read_bytes()
    assert loopback_certificate(tmp_path / "tls").certificate.read_bytes() == first  # kept, not remade


def test_srtp_over_plain_sip_is_a_one_line_settings_error(tmp_path: Path) -> None:
    desk = make_desk(tmp_path / "desk", (REPO / "settings.toml").read_text(encoding="utf-8"))
    with pytest.raises(SettingsError) as caught:
        load_settings(desk, {"CONTACTCENTER_SIP__MEDIA_ENCRYPTION": "srtp"})
    [problem] = caught.value.problems
    assert "\n" not in problem and 'media_encryption = "srtp" needs transport = "tls"' in problem
    settings = load_settings(
        desk, {"CONTACTCENTER_SIP__MEDIA_ENCRYPTION": "srtp", "CONTACTCENTER_SIP__TRANSPORT": "tls"}
    )
    assert (settings.sip.transport, settings.sip.media_encryption) == ("tls", "srtp")
    with pytest.raises(SettingsError, match=r"tls_ca_file.*does not exist"):
        load_settings(desk, {"CONTACTCENTER_SIP__TLS_CA_FILE": "no-such-ca.pem"})


def test_requests_over_a_stream_are_not_resent_but_still_time_out() -> None:
    """RFC 3261 17.1.1.2 / 17.1.2.2: timers A and E are for UDP; over TCP/TLS only timers B and F run."""
    sent: list[bytes] = []
    transactions = ClientTransactions(lambda data, address: sent.append(data), t1=0.01, t2=0.04)
    transactions.reliable = True
    transactions.start()
    try:
        options = request("OPTIONS", "sip:127.0.0.1:5060", 5062)
        transaction = transactions.send(options, ("127.0.0.1", 5060))
        assert wait_until(transaction.done.is_set, 5)  # timer F: 64*T1
        assert transaction.timed_out and sent == [options] and transactions.retransmissions == 0
    finally:
        transactions.stop()
