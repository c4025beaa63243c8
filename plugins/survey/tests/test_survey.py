"""The survey plugin: a real survey call to a SIPp callee that presses keys (RFC 2833 DTMF) through Kamailio,
a busy customer retried per the policy, and the response-rate report per agent and per period."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile
from contactcenter_survey import survey_call
from contactcenter_survey.report import report_rows, survey_groups, surveys_between

from contactcenter.app import App
from contactcenter.callbacks.book import CallbackBook
from contactcenter.storage.models import Agent, Call, SurveyResponse
from tests.helpers.factories import open_app
from tests.helpers.paths import REPO
from tests.helpers.sip import dialler, sipp_scenario, start_callee, start_sipp

pytestmark = pytest.mark.sip
PROMPTS = [
    "survey_intro",
    "survey_q_attitude",
    "survey_q_solved",
    "survey_q_speed",
    "survey_invalid",
    "survey_timeout",
    "survey_thanks",
]


def keys_pcap(path: Path, presses: list[tuple[float, str]], seconds: float) -> Path:
    """An RTP capture for SIPp's play_pcap_audio: µ-law silence every 20 ms and, at each (time, key), an
    RFC 4733 telephone-event (payload 101) lasting 100 ms, marker on its first packet, three end packets."""
    events = {key: i for i, key in enumerate("0123456789*#")}
    packets: list[tuple[float, bytes]] = []
    sequence, ssrc = 1, 0x5EC0DE01

    def rtp(payload_type: int, marker: bool, timestamp: int, payload: bytes) -> bytes:
        nonlocal sequence
        sequence += 1
        return (
            struct.pack(
                "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
            )
            + payload
        )

    pending = sorted(presses)
    frame = 0
    while frame * 0.02 < seconds:
        now = frame * 0.02
        if pending and now >= pending[0][0]:
            _, key = pending.pop(0)
            start = frame * 160
            for k in range(1, 6):
                packets.append((frame * 0.02, rtp(101, k == 1, start, struct.pack("!BBH", events[key], 10, 160 * k))))
                frame += 1
            packets += [(frame * 0.02, rtp(101, False, start, struct.pack("!BBH", events[key], 0x8A, 800)))] * 3
            continue
        packets.append((now, rtp(0, False, frame * 160, b"\xff" * 160)))
        frame += 1
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at, data in packets:
            udp = struct.pack("!HHHH", 6000, 6000, 8 + len(data), 0) + data
            header = struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(udp),
                0,
                0x4000,
                64,
                17,
                0,
                bytes([127, 0, 0, 1]),
                bytes([127, 0, 0, 1]),
            )
            checksum = sum(struct.unpack("!10H", header))
            checksum = ~((checksum >> 16) + (checksum & 0xFFFF)) & 0xFFFF
            ethernet = b"\x00" * 12 + b"\x08\x00" + header[:10] + struct.pack("!H", checksum) + header[12:] + udp
            out.write(struct.pack("<IIII", int(at), round(at % 1 * 1e6), len(ethernet), len(ethernet)) + ethernet)
    return path


def keys_callee(outside: dict, presses: list[tuple[float, str]]) -> subprocess.Popen[str]:
    """A SIPp callee that answers and presses each key at its time (seconds after the answer)."""
    pcap = keys_pcap(outside["tmp"] / "keys.pcap", presses, seconds=max(t for t, _ in presses) + 1)
    path = sipp_scenario("uas_callee.xml", outside["tmp"], saved_as="uas_keys.xml", pcap=pcap)
    return start_sipp(path, outside["callee_port"], timeout=60)


@pytest.fixture
def survey_app(desk: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> App:
    prompts = desk.parent / "scripts_zh" / "prompts"
    for n, key in enumerate(PROMPTS):  # half-second tones stand in for the recorded prompts
        tone = 0.3 * np.sin(2 * np.pi * (400 + 50 * n) * np.arange(4000) / 8000)
        soundfile.write(prompts / f"{key}.wav", tone, 8000)
    script = desk.parent / "scripts_zh" / "survey.toml"
    script.write_text(
        script.read_text(encoding="utf-8")
        .replace("answer_seconds = 6", "answer_seconds = 3")
        .replace("retries = 2", "retries = 1"),
        encoding="utf-8",
    )
    app = open_app(desk, f"sqlite:///{tmp_path / 'store.db'}", monkeypatch, plugins__enabled='["survey"]')
    yield app
    app.close()


def a_surveyed_call(app: App, extension: str = "1001", ended: datetime | None = None) -> int:
    ended = ended or datetime.now(UTC)
    with app.database.session() as session:
        agent = session.query(Agent).filter_by(extension=extension).one_or_none() or Agent(extension=extension)
        call = Call(
            sip_call_id=f"c-{time.monotonic_ns()}",
            direction="inbound",
            remote_number="9001",
            agent=agent,
            invited_at=ended - timedelta(minutes=5),
            ended_at=ended,
            disposition="completed",
        )
        session.add(call)
        session.flush()
        return call.id


def test_a_survey_call_collects_keys_handles_an_invalid_key_and_silence(outside: dict, survey_app: App) -> None:
    api = survey_app.plugins.api_for("survey")
    book = CallbackBook(survey_app.database, survey_app.settings)
    call_id = a_surveyed_call(survey_app)
    callback = api.add_callback(phone="9001", due_at=datetime.now(UTC), kind="survey", call_id=call_id)
    fired = book.fire(callback.id)
    # Timeline after the answer: intro 0.5 s, question 1 from 0.5 s (key 4 at 2 s), question 2 from 2 s (key 9
    # at 4 s: invalid; asked again, key 5 at 6 s), question 3 from 6 s: no key, twice: skipped.
    callee = keys_callee(outside, [(2.0, "4"), (4.0, "9"), (6.0, "5")])
    phone = dialler(outside)
    try:
        survey_app.plugins.attach_phone(phone)
        survey_call(fired, api)
        output, _ = callee.communicate(timeout=30)
    finally:
        phone.stop()
    assert callee.returncode == 0, output  # the desk hung up with a BYE the callee accepted
    with survey_app.database.session() as session:
        stored = {r.question_key: (r.answer, r.outcome) for r in session.query(SurveyResponse)}
        assert all(r.callback_id == callback.id and r.agent_id is not None for r in session.query(SurveyResponse))
    assert stored == {"attitude": (4, "answered"), "solved": (5, "answered"), "speed": (None, "timeout")}
    closed = book.get(callback.id)
    assert closed.state == "done" and closed.note == "attitude=4; solved=5; speed=timeout"


def test_a_busy_customer_is_tried_again_later(outside: dict, survey_app: App) -> None:
    api = survey_app.plugins.api_for("survey")
    book = CallbackBook(survey_app.database, survey_app.settings)
    callback = api.add_callback(
        phone="9002", due_at=datetime.now(UTC), kind="survey", call_id=a_surveyed_call(survey_app)
    )
    callee = start_callee(outside, "uas_busy.xml", timeout=30)
    phone = dialler(outside)
    try:
        survey_app.plugins.attach_phone(phone)
        survey_call(book.fire(callback.id), api)
        callee.communicate(timeout=30)
    finally:
        phone.stop()
    again = book.get(callback.id)
    assert again.state == "pending" and again.attempts == 1 and again.last_outcome == "busy"
    assert again.due_at > callback.due_at + timedelta(minutes=59)


def test_the_report_gives_the_response_rate_against_the_target_per_agent_and_period(survey_app: App) -> None:
    api = survey_app.plugins.api_for("survey")
    monday = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)
    plan = [  # agent, week offset, answers (None: no key at all)
        ("1001", 0, [5, 4, 5]),
        ("1001", 0, [4, 4, 3]),
        ("1001", 0, None),
        ("1001", 1, [5, 5, 5]),
        ("1002", 0, [2, 3, None]),
        ("1002", 1, None),
        ("1002", 1, None),
        ("1002", 1, [3, 3, 3]),
    ]
    for extension, week, answers in plan:
        call_id = a_surveyed_call(survey_app, extension, monday + timedelta(weeks=week))
        callback = api.add_callback(phone="9001", due_at=monday, kind="survey", call_id=call_id)
        from sqlalchemy import update

        from contactcenter.storage.models import Callback

        with survey_app.database.session() as session:
            session.execute(
                update(Callback).where(Callback.id == callback.id).values(created_at=monday + timedelta(weeks=week))
            )
        values = answers or [None, None, None]
        api.record_survey(
            call_id,
            [
                (q, v, "answered" if v else "timeout")
                for q, v in zip(["attitude", "solved", "speed"], values, strict=True)
            ],
            callback.id,
        )
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Asia/Shanghai")
    surveys = api.survey_invitations()
    assert len(surveys) == 8 and sum(s.responded for s in surveys) == 5
    overall = survey_groups(surveys, zone, "none")
    by_agent = survey_groups(surveys, zone, "agent")
    by_week = survey_groups(surveys, zone, "week")
    first_week = survey_groups(surveys_between(api, monday.date(), (monday + timedelta(days=6)).date()), zone, "none")
    rows, columns = report_rows(by_agent, 0.8)
    assert columns[:5] == ["group", "invited", "responded", "response_rate", "meets_target"]
    assert [(r["group"], r["invited"], r["responded"], r["meets_target"]) for r in rows] == [
        ("1001", 4, 3, False),
        ("1002", 4, 2, False),
    ]
    assert rows[0]["avg_attitude"] == round((5 + 4 + 5) / 3, 2) and rows[1]["avg_speed"] == 3.0
    assert overall["all"].rate == pytest.approx(5 / 8)
    assert list(by_week) == ["2026-W47", "2026-W48"]
    assert by_week["2026-W47"].invited == 4 and by_week["2026-W47"].responded == 3
    assert first_week["all"].invited == 4
    # The command line, as a supervisor runs it.
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "contactcenter", "survey", "report", "--by", "agent", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [(r["group"], r["response_rate"]) for r in json.loads(result.stdout)] == [("1001", 0.75), ("1002", 0.5)]
