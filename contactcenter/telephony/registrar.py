"""A Kamailio registrar on loopback, started and stopped by the desk when no PBX is configured.

So a newcomer can call in at once: softphones on this machine register to it, and calls to the desk's
extension are routed to the desk. It listens on loopback only.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import TracebackType

from contactcenter.telephony.certificates import CertificatePair

MODULE_DIRS = ("/usr/lib/*/kamailio/modules", "/usr/lib/kamailio/modules", "/usr/local/lib*/kamailio/modules")


def _end_with_parent() -> None:
    """In the child before Kamailio starts: have the kernel stop it when the desk dies, even by ``kill -9``
    (PR_SET_PDEATHSIG), so a crashed desk does not leave the registrar holding its port and the next `run`
    unable to start. One system call and nothing else, as the child of a threaded process may do. (The kernel
    watches the thread that started it: :meth:`LocalRegistrar.start` is called from the main thread.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TeamRouting:
    """How the registrar routes calls to a team number (settings.toml [team]); times in milliseconds."""

    number: str
    overflow_number: str
    ring_ms: int
    longest_idle: bool = False

    def defines(self) -> list[str]:
        lines = [
            f'#!define TEAM_NUMBER "{self.number}"',
            f'#!define TEAM_OVERFLOW "{self.overflow_number}"',
            f"#!define TEAM_RING_MS {self.ring_ms}",
        ]
        if self.longest_idle:
            lines.append("#!define TEAM_LONGEST_IDLE")
        return lines


PASSWORD_VARIABLE = "CONTACTCENTER_REGISTRAR_PASSWORD"  # read by Kamailio itself ($env), never written to a file


class RegistrarError(Exception):
    """Kamailio could not be started; the message says why and what to install or change."""


def kamailio_modules() -> str:
    for pattern in MODULE_DIRS:
        for path in sorted(glob.glob(pattern)):
            if Path(path, "registrar.so").exists():
                return path
    raise RegistrarError("Kamailio's modules were not found (install the Debian package: apt-get install kamailio)")


def sip_options_ping(host: str, port: int, timeout: float = 0.5) -> str | None:
    """Send SIP OPTIONS to host:port over UDP; the status line of the answer, or None if none came."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        call_id, branch = uuid.uuid4().hex, "z9hG4bK" + uuid.uuid4().hex[:16]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nTo: <sip:{host}:{port}>\r\n"
            f"From: <sip:probe@{host}:{local_port}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (host, port))
        try:
            data, _ = sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        return data.split(b"\r\n", 1)[0].decode(errors="replace")


def registrar_config(
    listen_ip: str,
    port: int,
    modules: str,
    *,
    team: TeamRouting | None = None,
    with_auth: bool = False,
    transport: str = "udp",
    certificate: CertificatePair | None = None,
) -> str:
    """The Kamailio configuration, for the loopback registrar or for a host of its own (``registrar config``).
    With ``with_auth`` every REGISTER must carry the password Kamailio finds in its environment variable
    CONTACTCENTER_REGISTRAR_PASSWORD, so the secret is in no file. ``transport`` "tcp" or "tls" adds a listener
    of that kind on the same port (UDP stays, for softphones that use it); TLS serves ``certificate``."""
    template = files("contactcenter.telephony").joinpath("kamailio.cfg").read_text(encoding="utf-8")
    defines = (["#!define WITH_AUTH"] if with_auth else []) + (team.defines() if team is not None else [])
    if transport == "tls":
        if certificate is None:
            raise RegistrarError("a TLS registrar needs a certificate and its key")
        defines.append("#!define WITH_TLS")
        template = template.replace("@TLS_CERTIFICATE@", str(certificate.certificate)).replace(
            "@TLS_KEY@", str(certificate.key)
        )
    elif transport == "tcp":
        defines.append("#!define WITH_TCP")
    if listen_ip in ("0.0.0.0", "::"):  # every address of the host: Kamailio finds them and takes each as its own
        template = re.sub(r'^auto_aliases=no\nalias=".*"\n', "auto_aliases=yes\n", template, flags=re.M)
    return (
        template.replace("@DEFINES@", "\n".join(defines) + ("\n" if defines else ""))
        .replace("@LISTEN_IP@", f"[{listen_ip}]" if ":" in listen_ip else listen_ip)
        .replace("@PORT@", str(port))
        .replace("@MODULES@", modules)
    )


class LocalRegistrar:
    """``with LocalRegistrar(...) as registrar:`` runs Kamailio for the block; ``stop`` ends it by PID."""

    def __init__(
        self,
        listen_ip: str = "127.0.0.1",
        port: int = 5060,
        binary: str = "kamailio",
        start_timeout: float = 10.0,
        password: str | None = None,
        outside_line: str | None = None,
        team: TeamRouting | None = None,
        transport: str = "udp",
        certificate: CertificatePair | None = None,
    ) -> None:
        self.team = team
        self.transport = transport  # "tcp" or "tls": that listener too, on the same port number
        self.certificate = certificate  # served over TLS (certificates.loopback_certificate)
        self.password = password  # digest authentication for REGISTER (any user), for testing against a PBX-like peer
        self.outside_line = outside_line  # "host:port" that numbers starting with 9 are sent to
        self.listen_ip = "127.0.0.1" if listen_ip == "localhost" else listen_ip
        self.port = port
        self.binary = binary
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def address(self) -> str:
        return f"{self.listen_ip}:{self.port}"

    def config_text(self) -> str:
        return registrar_config(
            self.listen_ip,
            self.port,
            kamailio_modules() + "/",
            team=self.team,
            with_auth=self.password is not None,
            transport=self.transport,
            certificate=self.certificate,
        )

    def start(self) -> None:
        executable = shutil.which(self.binary)
        if executable is None:
            raise RegistrarError(f"{self.binary} not found (install the Debian package: apt-get install kamailio)")
        if self.transport == "tls" and not Path(kamailio_modules(), "tls.so").exists():
            raise RegistrarError(
                "Kamailio's TLS module is missing (install the Debian package: apt-get install kamailio-tls-modules)"
            )
        if sip_options_ping(self.listen_ip, self.port, timeout=0.2) is not None:
            raise RegistrarError(
                f"something already answers SIP on {self.address}; "
                "set [local_registrar] port to a free port or name the PBX in [sip] server"
            )
        self._workdir = tempfile.TemporaryDirectory(prefix="contactcenter-kamailio-")
        work = Path(self._workdir.name)
        config = work / "kamailio.cfg"
        config.write_text(self.config_text(), encoding="utf-8")
        log_file = (work / "kamailio.log").open("wb")
        environment = dict(os.environ)
        if self.password is not None:
            environment[PASSWORD_VARIABLE] = self.password
        defines: list[str] = []
        if self.outside_line:
            defines += ["-A", f'OUTSIDE_LINE="sip:{self.outside_line}"']
        self.process = subprocess.Popen(
            [executable, "-f", str(config), "-DD", "-E", "-m", "32", "-M", "8", "-w", str(work), *defines],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_end_with_parent,
            env=environment,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (work / "kamailio.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RegistrarError(f"kamailio exited with code {self.process.returncode}:\n{tail}")
            if sip_options_ping(self.listen_ip, self.port, timeout=0.2):
                return
        self.stop()
        raise RegistrarError(f"kamailio did not answer on {self.address} within {self.start_timeout:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> LocalRegistrar:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
