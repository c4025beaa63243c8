"""Honest verdicts: a call nobody could check has no score and says why; a call the recogniser heard only in
part says how much it missed. Runs the real Vosk library (Korean model) and the real store; Mandarin rules
are checked on text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.records import (
    NO_MODEL,
    NO_RULE_APPLIED,
    NO_SPEECH,
    CallRecord,
    ComplianceReport,
    RuleResult,
    check_status,
)
from contactcenter.speech.compliance import CallCompliance, CallFacts
from contactcenter.speech.live import CallSpeech
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Call
from tests.helpers.paths import REPO, speech_clip

RATE = 8000


def a_call(n: int = 1) -> CallRecord:
    now = datetime.now(UTC)
    return CallRecord(
        sip_call_id=f"verdict-{n}@x",
        direction="inbound",
        remote_number="13800138000",
        agent_extension="1001",
        invited_at=now,
        answered_at=now,
        ended_at=now,
    )


def mandarin_rules():
    return load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])


def push_in_frames(speech: CallSpeech, leg: str, audio: np.ndarray) -> None:
    frame = int(RATE * 0.02)
    for offset in range(0, len(audio), frame):
        speech.push(leg, audio[offset : offset + frame].tobytes())  # as the media thread does: never waits


def test_the_check_status_follows_from_what_is_stored() -> None:
    assert check_status(None, 0.0) == "not_checked"
    assert check_status(None, 3.0) == "not_checked"
    assert check_status(80.0, 0.0) == "checked"
    assert check_status(80.0, 2.5) == "partly_checked"
    assert ComplianceReport().check == "not_checked" and ComplianceReport().score is None  # no longer 100
    report = ComplianceReport.not_checked(NO_MODEL)
    assert (report.score, report.unchecked_reason, report.check) == (None, NO_MODEL, "not_checked")


def test_a_call_no_rule_applies_to_is_not_checked_rather_than_perfect(tmp_path: Path) -> None:
    """A rule set whose only rule is for late answers, on a call answered at once: nothing applied."""
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nid = "late_answer_apology"\nphrases = ["抱歉让您久等了"]\nwhen = "late_answer"\n'
        'window = "first:3"\n',
        encoding="utf-8",
    )
    compliance = CallCompliance(load_rules(path, ["示例科技"]), CallFacts(rings_before_answer=1))
    report = compliance.report(call_end_s=30.0, hung_up_first="customer")
    assert report.score is None and report.unchecked_reason == NO_RULE_APPLIED and report.check == "not_checked"


def test_silence_on_both_legs_is_not_checked(korean_model: SpeechModel, database_url: str) -> None:
    """The recogniser heard no word: whether the agent greeted is unknown, so the call is not checked (it
    used to be scored as if the agent had said nothing wrong, or nothing at all). Stored without a score,
    with the reason, on SQLite and PostgreSQL."""
    monitor = SpeechMonitor(korean_model, workers=1)
    speech = CallSpeech(monitor, mandarin_rules(), a_call(), CallFacts(rings_before_answer=1), rate=RATE)
    silence = np.zeros(RATE * 3, dtype=np.int16)
    push_in_frames(speech, "agent", silence)
    push_in_frames(speech, "customer", silence)
    outcome = speech.finish(call_end_s=3.0, hung_up_first="customer", timeout=60)
    monitor.close()
    assert outcome.transcript == [] and outcome.hits == []
    assert (outcome.report.score, outcome.report.unchecked_reason) == (None, NO_SPEECH)
    database = Database(database_url)
    database.upgrade()
    with database.session() as session:
        call_id = save_call(session, a_call(), outcome.transcript, outcome.hits, outcome.report)
    with database.session() as session:
        stored = session.get(Call, call_id)
        assert (stored.compliance_score, stored.unchecked_reason, stored.dropped_seconds) == (None, NO_SPEECH, 0.0)
    database.dispose()


def test_an_overloaded_recogniser_makes_the_verdict_partly_checked(korean_model: SpeechModel, tmp_path: Path) -> None:
    """Past its backlog the monitor drops audio rather than hold up the call; the verdict then covers only
    what was heard and says how many seconds were not (it used to look like a full check)."""
    monitor = SpeechMonitor(korean_model, workers=1, max_backlog_seconds=0.5)
    speech = CallSpeech(monitor, mandarin_rules(), a_call(2), CallFacts(rings_before_answer=1), rate=RATE)
    audio, rate = soundfile.read(str(speech_clip("real8k/r03.wav")), dtype="int16")
    assert rate == RATE
    push_in_frames(speech, "agent", np.tile(audio, 3))
    push_in_frames(speech, "customer", np.zeros(RATE, dtype=np.int16))
    outcome = speech.finish(call_end_s=3 * len(audio) / RATE, hung_up_first="customer", timeout=120)
    dropped = monitor.metrics.dropped_seconds
    monitor.close()
    assert dropped > 1.0 and outcome.transcript  # it heard something, and missed a good part
    report = outcome.report
    assert report.check == "partly_checked" and report.score is not None
    assert report.dropped_seconds == pytest.approx(dropped, abs=0.1)
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.upgrade()
    with database.session() as session:
        call_id = save_call(session, a_call(2), outcome.transcript, outcome.hits, report)
    with database.session() as session:
        stored = session.get(Call, call_id)
        assert stored.dropped_seconds == report.dropped_seconds and stored.compliance_score == report.score
    database.dispose()


def test_the_ticket_says_not_checked_and_partly_checked() -> None:
    """What the tickets plugin writes on the ticket: never "100/100" for a call nobody checked."""
    from contactcenter_tickets import TicketOptions, compliance_summary

    options = TicketOptions()
    assert compliance_summary(ComplianceReport.not_checked(NO_MODEL), options) == "未检查:没有语音模型,未做语音质检"
    failed = RuleResult(rule_id="closing", passed=False, severity="major")
    partly = ComplianceReport(score=70.0, results=(failed,), dropped_seconds=12.0)
    assert compliance_summary(partly, options) == "70/100; closing(major)(部分检查:12 秒音频未识别)"
    assert compliance_summary(ComplianceReport(score=70.0, results=(failed,)), options) == "70/100; closing(major)"


def test_the_console_and_exports_show_which_calls_were_checked(console: dict) -> None:
    """Beside the 30 seeded calls (all checked): one answered with no speech model and one the recogniser
    heard only in part. The calls list, the call page, the API and the export say 未检查 (with the reason) and
    部分检查; the scorecard's average and pass rate count only the checked calls and say how many were not."""
    from tests.helpers.web import START, client_as

    database = console["database"]
    at = START + timedelta(hours=2)
    with database.session() as session:
        unchecked = save_call(
            session,
            a_call(10).model_copy(update={"invited_at": at, "answered_at": at, "ended_at": at + timedelta(minutes=2)}),
            report=ComplianceReport.not_checked(NO_MODEL),
        )
        partly = save_call(
            session,
            a_call(11).model_copy(update={"invited_at": at, "answered_at": at, "ended_at": at + timedelta(minutes=2)}),
            report=ComplianceReport(score=0.0, dropped_seconds=12.0),
        )
    reviewer = client_as(console, "lin")
    detail = reviewer.get(f"/api/calls/{unchecked}").json()["call"]
    assert (detail["score"], detail["check"], detail["check_note"]) == (
        None,
        "not_checked",
        "没有语音模型,未做语音质检",
    )
    page = reviewer.get(f"/calls/{unchecked}").text
    assert "未检查:没有语音模型,未做语音质检" in page
    assert reviewer.get(f"/api/calls/{partly}").json()["call"]["check_note"] == "12 秒音频未识别"
    listed = {row["id"]: row for row in reviewer.get("/api/calls", params={"limit": 100}).json()["calls"]}
    assert listed[unchecked]["check_label"] == "未检查" and listed[partly]["check_label"] == "部分检查"
    assert listed[console["ids"][0]]["check_label"] == "已检查"
    exported = {
        row["通话编号"]: row
        for row in csv.DictReader(io.StringIO(reviewer.get("/api/export/calls.csv").text.lstrip("\ufeff")))
    }
    assert (exported[str(unchecked)]["质检得分"], exported[str(unchecked)]["检查状态"]) == ("", "未检查")
    card = reviewer.get("/api/scorecards", params={"since": "2026-11-02", "until": "2026-11-10"}).json()
    totals = card["totals"]
    # independently: 10 seeded calls at 40, 20 at 95, and the partly checked call at 0; the unchecked one is left out
    scores = [40.0] * 10 + [95.0] * 20 + [0.0]
    assert totals["average_score"] == round(sum(scores) / len(scores), 1)
    assert (totals["answered"], totals["not_checked"], totals["partly_checked"]) == (32, 1, 1)
    assert "未检查" in reviewer.get("/scorecards", params={"since": "2026-11-02", "until": "2026-11-10"}).text
