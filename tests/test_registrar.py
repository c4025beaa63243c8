"""The loopback registrar the desk starts when no PBX is configured: a real Kamailio, real SIP over UDP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from contactcenter.telephony.registrar import LocalRegistrar, RegistrarError, sip_options_ping
from tests.helpers.ports import free_port, free_tcp_port

pytestmark = pytest.mark.sip


def register(port: int, user: str) -> str:
    """Send a REGISTER for ``user`` to 127.0.0.1:port; the status line of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3)
        local = sock.getsockname()[1]
        message = (
            f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{user}@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{local}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(message.encode(), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65535)
        return data.split(b"\r\n", 1)[0].decode()


def test_a_softphone_can_register_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    with LocalRegistrar("127.0.0.1", port) as registrar:
        assert registrar.process is not None and registrar.process.poll() is None
        assert register(port, "1001") == "SIP/2.0 200 OK"
        assert sip_options_ping("127.0.0.1", port) == "SIP/2.0 200 Keepalive"
        pid = registrar.process.pid
    assert sip_options_ping("127.0.0.1", port, timeout=0.3) is None  # stopped, by PID
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_port_already_in_use_is_reported() -> None:
    port = free_port()
    with LocalRegistrar("127.0.0.1", port):
        with pytest.raises(RegistrarError, match=f"already answers SIP on 127.0.0.1:{port}"):
            LocalRegistrar("127.0.0.1", port).start()


def test_a_missing_kamailio_is_reported() -> None:
    with pytest.raises(RegistrarError, match=r"not found .*apt-get install kamailio"):
        LocalRegistrar("127.0.0.1", free_port(), binary="kamailio-that-is-not-installed").start()


def test_contactcenter_run_starts_and_stops_the_registrar(desk: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update(
        {
            "CONTACTCENTER_SETTINGS": str(desk),
            "CONTACTCENTER_LOCAL_REGISTRAR__PORT": str(port),
            "CONTACTCENTER_SIP__LOCAL_PORT": str(free_port()),
            "CONTACTCENTER_AGENT__PORT": str(free_tcp_port()),  # the agent desktop, when the machine has sound
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
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), "".join(lines) + process.stderr.read()
        assert any(f"Kamailio on udp:127.0.0.1:{port}" in line for line in lines)
        assert any("plugin tickets: loaded" in line for line in lines)
        assert any(line.startswith("rules: 13 from") for line in lines)  # the shipped rules.toml
        assert any("speech model: not usable, live transcription is off" in line for line in lines)
        assert any(line.startswith("registered as 1001 at 127.0.0.1") for line in lines)
        assert register(port, "2001") == "SIP/2.0 200 OK"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out
    assert sip_options_ping("127.0.0.1", port, timeout=0.3) is None
