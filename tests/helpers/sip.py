"""SIP peers for tests and benchmarks against Kamailio on loopback: SIPp callers and callees (one launcher),
and a softphone that dials out.

``line`` and ``outside`` (conftest.py) are the two set-ups these take: a registrar with a desk folder and a
store behind it, and a registrar whose 9xxx numbers go to a SIPp callee ("the outside line").

For transfers and DTMF: a softphone for any extension, a trace of everything a softphone sends and receives,
and baresip as a real softphone peer (it carries out a REFER).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from contactcenter.media.call_media import CallMedia
from contactcenter.telephony.call import Call
from contactcenter.telephony.softphone import SipAccount, Softphone
from tests.helpers.paths import REPO, SHARED, speech_clip
from tests.helpers.ports import accepts_connections, free_port, free_udp_run, udp_port_bound
from tests.helpers.waiting import wait_until

SIP_DIR = REPO / "tests" / "sip"
DEMO_DIR = REPO / "contactcenter" / "telephony" / "demo"
CALLER_PCAP = DEMO_DIR / "caller.pcap"  # caller speech, a 440 Hz tone and DTMF "1 2 #", PCMU


# ------------------------------------------------------------------------------------------------ SIPp


def sipp_scenario(
    name: str, folder: Path, *, saved_as: str | None = None, pcap: Path = CALLER_PCAP, **values: object
) -> Path:
    """The SIPp scenario ``name`` (from tests/sip, or the demo caller's folder) written into ``folder`` with
    its placeholders filled: ``@PCAP@`` with ``pcap``, ``@KEY@`` with each ``KEY=value``. SIPp runs in that
    folder, so its trace files land beside the scenario (named after ``saved_as``)."""
    source = DEMO_DIR / name if (DEMO_DIR / name).exists() else SIP_DIR / name
    text = source.read_text(encoding="utf-8").replace("@PCAP@", str(pcap))
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    unfilled = sorted(set(re.findall(r"@[A-Z][A-Z_]*@", text)))
    assert not unfilled, f"{name}: no value for {', '.join(unfilled)}"
    path = folder / (saved_as or name)
    path.write_text(text, encoding="utf-8")
    return path


def sipp_command(
    scenario: Path,
    *,
    port: int | None = None,
    remote: str | None = None,
    service: str = "1001",
    calls: int = 1,
    rate: int | None = None,
    timeout: int = 40,
    timeout_error: bool = True,
    rtt: bool = False,
    stats: bool = False,
    messages: bool = False,
) -> list[str]:
    """SIPp on 127.0.0.1: a caller of ``service`` at ``remote`` ("host:port"), or with no ``remote`` a callee
    listening on ``port``. ``calls`` calls (at once, for a caller; ``rate`` per second), ``timeout`` seconds
    in all (a failure, with ``timeout_error``), errors traced, and round-trip times / statistics / every message
    if asked."""
    command = ["sipp"]
    if remote is not None:
        command += [remote, "-sf", str(scenario), "-s", service, "-m", str(calls), "-l", str(calls)]
    else:
        command += ["-sf", str(scenario), "-m", str(calls)]
    if rate is not None:
        command += ["-r", str(rate)]
    sip_port = port if port is not None else free_port()
    command += [
        "-i",
        "127.0.0.1",
        "-p",
        str(sip_port),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(free_udp_run(4, avoid=(sip_port,))),
        "-timeout",
        str(timeout),
    ]
    if timeout_error:
        command.append("-timeout_error")
    command += ["-nostdin", "-trace_err"]
    if stats:
        command.append("-trace_stat")
    if messages:  # every message sent and received, in <scenario>_<pid>_messages.log beside the scenario
        command.append("-trace_msg")
    if rtt:
        command += ["-trace_rtt", "-rtt_freq", "1"]
    return command


def dtmf_pcap(folder: Path, digits: str) -> Path:
    """A SIPp audio pcap: 0.3 s of silence, then the RFC 4733 ``digits`` (../shared's mkpcap.py)."""
    silence = folder / "silence.ulaw"
    silence.write_bytes(b"\xff" * 2400)
    out = folder / f"dtmf_{digits.replace('#', 'hash')}.pcap"
    subprocess.run(
        [sys.executable, str(SHARED / "reference" / "sip" / "mkpcap.py"), str(silence), str(out), digits],
        check=True,
        capture_output=True,
    )
    return out


def run_sipp(scenario: Path, nice: int = 0, **options) -> subprocess.CompletedProcess[str]:
    """Run SIPp (``sipp_command``'s options) in the scenario's folder to the end; its output captured. ``nice``
    lowers its CPU priority (a benchmark's callers stand for phones elsewhere, not for work of the desk's)."""
    timeout = options.get("timeout", 40)
    return subprocess.run(
        sipp_command(scenario, **options),
        capture_output=True,
        text=True,
        cwd=scenario.parent,
        timeout=timeout + 20,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )


def start_sipp(scenario: Path, port: int, **options) -> subprocess.Popen[str]:
    """SIPp (``sipp_command``'s options) listening on ``port``, in the background, once it has bound the port:
    a callee that is not yet listening would miss the INVITE sent to it."""
    process = subprocess.Popen(
        sipp_command(scenario, port=port, **options),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=scenario.parent,
    )
    if not wait_until(lambda: process.poll() is not None or udp_port_bound(port), 10, step=0.01):
        process.kill()
        raise AssertionError(f"SIPp did not bind 127.0.0.1:{port} within 10 s:\n{process.communicate()[0]}")
    if process.poll() is not None:
        raise AssertionError(f"SIPp exited before it listened on {port}:\n{process.communicate()[0]}")
    return process


# ------------------------------------------------------------------------------------------------ calls


def sipp_call(
    line: dict, scenario: str, *, codecs: str = "0", talk_ms: int = 6000, rtp_port: int = 9, timeout: int = 40
) -> subprocess.CompletedProcess[str]:
    """One SIPp call to the desk (extension 1001) through ``line``'s registrar: offering ``codecs``, playing
    the caller's audio for ``talk_ms``, sending it to ``rtp_port`` (9: discard), round-trip times traced."""
    path = sipp_scenario(scenario, line["tmp"], TALK_MS=talk_ms, RTP_PORT=rtp_port, CODECS=codecs)
    return run_sipp(path, remote=f"127.0.0.1:{line['registrar'].port}", timeout=timeout, rtt=True)


def start_callee(outside: dict, scenario: str, *, pcap: Path = CALLER_PCAP, timeout: int = 40) -> subprocess.Popen[str]:
    """A SIPp callee behind ``outside``'s registrar (its 9xxx numbers), once it listens."""
    path = sipp_scenario(scenario, outside["tmp"], pcap=pcap)
    return start_sipp(path, outside["callee_port"], timeout=timeout)


def extension_phone(
    registrar_port: int,
    on_call: Callable[[Call], None],
    *,
    user: str = "1001",
    rtp_low: int = 30000,
    rtp_high: int = 30999,
    t1: float = 0.5,
    t2: float = 4.0,
) -> Softphone:
    """Extension ``user``'s softphone (the desk's 1001 unless told: a transfer needs a colleague) on a free
    port, registered with the loopback registrar on ``registrar_port``, handing each incoming call to
    ``on_call`` (a desk's ``handle``)."""
    account = SipAccount(
        server="127.0.0.1",
        port=registrar_port,
        user=user,
        password="",
        local_ip="127.0.0.1",
        local_port=free_port(),
        rtp_low=rtp_low,
        rtp_high=rtp_high,
        t1=t1,
        t2=t2,
    )
    phone = Softphone(account, on_call)
    phone.start()
    return phone


def dialler(outside: dict) -> Softphone:
    """Extension 1001's softphone, registered with ``outside``'s registrar, for dialling out."""
    return extension_phone(outside["registrar"].port, lambda call: None, rtp_low=31200, rtp_high=31299)


# ------------------------------------------------------------------------------------------------ transfer, DTMF


class SipTrace:
    """Every SIP message a registered softphone sends and receives from now on, with its time.

    It stands in for the phone's UDP socket (everything else is passed through), so a test can check what
    went on the wire: that a REFER was sent, or was not, and that each NOTIFY was answered."""

    def __init__(self, phone: Softphone) -> None:
        client = phone.phone.sip
        self._socket = client.s
        self.sent: list[tuple[float, str]] = []
        self.received: list[tuple[float, str]] = []
        client.s = client.out = self

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.sent.append((time.monotonic(), bytes(data).decode("utf-8", errors="replace")))
        return self._socket.sendto(data, address)

    def recv(self, size: int) -> bytes:
        data = self._socket.recv(size)
        self.received.append((time.monotonic(), data.decode("utf-8", errors="replace")))
        return data

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        data, address = self._socket.recvfrom(size)
        self.received.append((time.monotonic(), data.decode("utf-8", errors="replace")))
        return data, address

    def __getattr__(self, name: str) -> object:
        return getattr(self._socket, name)

    @staticmethod
    def _matching(messages: list[tuple[float, str]], start: str, cseq_method: str | None) -> list[tuple[float, str]]:
        return [
            (at, text)
            for at, text in messages
            if text.startswith(start)
            and (cseq_method is None or re.search(rf"^CSeq:\s*\d+\s+{cseq_method}\s*$", text, re.M | re.I))
        ]

    def requests_sent(self, method: str) -> list[tuple[float, str]]:
        return self._matching(self.sent, f"{method} ", None)

    def requests_received(self, method: str) -> list[tuple[float, str]]:
        return self._matching(self.received, f"{method} ", None)

    def responses_sent(self, status: int, method: str) -> list[tuple[float, str]]:
        return self._matching(self.sent, f"SIP/2.0 {status} ", method)

    def responses_received(self, status: int, method: str) -> list[tuple[float, str]]:
        return self._matching(self.received, f"SIP/2.0 {status} ", method)


class Baresip:
    """baresip (Debian's baresip-core) registered as ``user`` at the loopback registrar, with no sound card:
    it speaks ``voice`` (16-bit 8 kHz WAV, longer than the test: baresip hangs up at its end; by default the
    real Mandarin clips, 2.5 minutes), auto-answers, obeys ctrl_tcp commands ("dial", "hangup"), carries out a
    REFER it is sent by calling the target, and with ``record`` keeps what it heard (:meth:`heard`)."""

    def __init__(
        self,
        folder: Path,
        registrar_port: int,
        voice: Path | None = None,
        *,
        user: str = "2000",
        rtp_ports: str = "32400-32499",
        record: bool = False,
    ) -> None:
        if shutil.which("baresip") is None:
            raise AssertionError("baresip is not installed: run ./setup.sh (Debian package baresip-core)")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ctrl_port = free_port(socket.SOCK_STREAM)
        if voice is None:
            voice = folder / "voice.wav"
            clips = [soundfile.read(str(speech_clip(f"real8k/r0{i}.wav")), dtype="int16")[0] for i in range(1, 10)]
            soundfile.write(voice, np.concatenate(clips * 4), 8000, subtype="PCM_16")
        recording = ""
        if record:
            (folder / "rec").mkdir(exist_ok=True)
            recording = f"module\tsndfile.so\nsnd_path\t{folder / 'rec'}\n"
        (folder / "config").write_text(
            f"poll_method\tepoll\nsip_listen\t127.0.0.1:{free_port()}\nnet_interface\t127.0.0.1\n"
            f"audio_player\taufile,{folder / 'heard.wav'}\naudio_source\taufile,{voice}\n"
            f"audio_alert\taufile,/dev/null\nrtp_ports\t{rtp_ports}\nmodule_path\t/usr/lib/baresip/modules\n"
            "module\tg711.so\nmodule\taufile.so\nmodule\tctrl_tcp.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n"
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}\n{recording}",
            encoding="utf-8",
        )
        (folder / "accounts").write_text(
            f"<sip:{user}@127.0.0.1:{registrar_port}>;regint=60;audio_codecs=PCMU;answermode=auto\n", encoding="utf-8"
        )
        self._log = (folder / "baresip.log").open("w")
        self.process = subprocess.Popen(
            ["baresip", "-f", str(folder)], stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        if not wait_until(lambda: self.registered() and accepts_connections(self.ctrl_port), 10, step=0.1):
            self.stop()
            raise AssertionError("baresip did not register and listen within 10 s:\n" + self.log_text()[-3000:])

    def heard(self) -> np.ndarray:
        """What baresip received (its sndfile dump of the decoded audio; needs ``record``)."""
        [dump] = sorted((self.folder / "rec").glob("*dec*.wav"))
        audio, _ = soundfile.read(str(dump), dtype="int16")
        return audio if audio.ndim == 1 else audio[:, 0]

    def registered(self) -> bool:
        """Kamailio has accepted its REGISTER (baresip logs ``... 200 OK (...) [1 binding]``)."""
        return any(" 200 OK " in line and "binding]" in line for line in self.log_text().splitlines())

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=3) as connection:
            connection.sendall(str(len(body)).encode() + b":" + body + b",")
            connection.recv(4096)

    def log_text(self) -> str:
        self._log.flush()
        return (self.folder / "baresip.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Answerer:
    """An extension's ``on_call`` that answers at once, with a CallMedia attached, and holds the call until it
    ends: a colleague's phone (a transfer's target) or a far end that reads the digits it is sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[Call, CallMedia]] = []

    def __call__(self, call: Call) -> None:
        media = CallMedia()
        call.attach_media(media)
        self.calls.append((call, media))
        call.answer()
        call.ended.wait()
