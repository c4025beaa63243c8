"""TLS and SRTP peers for tests: a Kamailio registrar with its TLS module and baresip as a softphone that
registers over TLS, verifies the registrar's certificate, and insists on SRTP (``mediaenc=srtp-mand``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from contactcenter.telephony.certificates import CertificatePair
from tests.helpers.ports import accepts_connections, free_port
from tests.helpers.sip import Baresip
from tests.helpers.waiting import wait_until


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (Kamailio listens on both with one number)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class SecureBaresip(Baresip):
    """baresip registered as ``user`` at the TLS registrar on ``registrar_port``, media SRTP only (unless ``srtp`` is off: TLS signalling, plain RTP): it speaks
    ``voice`` (8 kHz 16-bit WAV) and keeps what it hears, decrypted and decoded (:meth:`heard_with_rate`); answers
    by itself; ``dial``/``hangup`` through ctrl_tcp; holds up to ``max_calls`` at once. It serves the registrar's certificate too, as Kamailio
    opens a new TLS connection to reach it (baresip does not reuse its own)."""

    def __init__(
        self,
        folder: Path,
        registrar_port: int,
        certificate: CertificatePair,
        voice: Path,
        *,
        user: str = "2000",
        max_calls: int = 4,
        rtp_ports: int = 10,
        srtp: bool = True,
    ) -> None:
        if shutil.which("baresip") is None:
            raise AssertionError("baresip is not installed: run ./setup.sh (Debian package baresip-core)")
        (folder / "rec").mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.registrar_port = registrar_port
        self.ctrl_port = free_port(socket.SOCK_STREAM)
        identity = folder / "identity.pem"  # baresip reads its certificate and key from one file
        identity.write_bytes(certificate.certificate.read_bytes() + certificate.key.read_bytes())
        identity.chmod(0o600)
        rtp = free_port()  # the first of ``rtp_ports`` (a load run's caller holds many calls)
        (folder / "config").write_text(
            f"poll_method\tepoll\nsip_listen\t127.0.0.1:{free_udp_and_tcp_port()}\nnet_interface\t127.0.0.1\n"
            f"sip_cafile\t{certificate.certificate}\nsip_certificate\t{identity}\n"
            f"audio_player\taufile,{folder / 'heard.wav'}\naudio_source\taufile,{voice}\n"
            f"audio_alert\taufile,/dev/null\nrtp_ports\t{rtp}-{rtp + rtp_ports - 1}\ncall_max_calls\t{max_calls}\n"
            "module_path\t/usr/lib/baresip/modules\n"
            "module\tg711.so\nmodule\taufile.so\nmodule\tsrtp.so\nmodule\tctrl_tcp.so\nmodule\tsndfile.so\n"
            f"snd_path\t{folder / 'rec'}\n"
            "module_app\taccount.so\nmodule_app\tmenu.so\n"
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}\n",
            encoding="utf-8",
        )
        (folder / "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{registrar_port};transport=tls>;regint=60;audio_codecs=PCMU;"
            "answermode=auto" + (";mediaenc=srtp-mand" if srtp else "") + "\n",
            encoding="utf-8",
        )
        self._log = (folder / "baresip.log").open("w")
        self.process = subprocess.Popen(
            ["baresip", "-f", str(folder)], stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        if not wait_until(lambda: self.registered() and accepts_connections(self.ctrl_port), 10, step=0.1):
            self.stop()
            raise AssertionError("baresip did not register over TLS within 10 s:\n" + self.log_text()[-3000:])

    def heard_with_rate(self) -> tuple[np.ndarray, int]:
        """What baresip received (its sndfile dump of the decoded audio) and its sample rate."""
        [dump] = sorted((self.folder / "rec").glob("*dec*.wav"))
        audio, rate = soundfile.read(str(dump), dtype="int16")
        return (audio if audio.ndim == 1 else audio[:, 0]), rate

    def registered(self) -> bool:
        return any("{0/TLS/v4} 200 OK" in line and "binding]" in line for line in self.log_text().splitlines())

    def srtp_enabled(self) -> bool:
        return "SRTP is Enabled" in self.log_text()

    def established(self) -> bool:
        return "Call established" in self.log_text()

    def calls_established(self) -> int:
        """Calls baresip saw answered (one log line each)."""
        return self.log_text().count("Call established")

    def dial(self, extension: str) -> None:
        self.command("dial", f"sip:{extension}@127.0.0.1:{self.registrar_port}")
