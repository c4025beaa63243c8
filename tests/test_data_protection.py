"""PIPL: an erasure request removes one customer everywhere, and the daily retention purge removes what is
older than [retention] allows, on SQLite and PostgreSQL, through the real commands. Scores and counts stay.

The world: customer 张三 (13800138000, written three ways) with calls, recordings, transcripts that speak the
number, findings that quote it, a closed and an open ticket, a pending and a finished callback, survey
answers, plugin messages, an undelivered event, live-view events, a review that mentions the number, another
customer whose notes give it, and the access log's path that carried it; and a stranger (13900139000) with
the same, who must come through untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import JSON, String, Text, func, select

from contactcenter.cli import cli
from contactcenter.phones import phone_key, remove_number
from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord, RuleResult, UtteranceRecord
from contactcenter.settings import RetentionSettings
from contactcenter.storage import Database
from contactcenter.storage.calls import save_call
from contactcenter.storage.customers import upsert_customer
from contactcenter.storage.models import (
    AccessLog,
    Agent,
    Base,
    Call,
    Callback,
    Customer,
    DataRemoval,
    LiveEvent,
    OutboxMessage,
    Review,
    RuleHit,
    SurveyResponse,
    TeamCall,
    Ticket,
    UndeliveredEvent,
    Utterance,
    WebUser,
)
from contactcenter.storage.retention import purge

ERASED = "13800138000"
STRANGER = "13900139000"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class World:
    database: Database
    data_dir: Path
    calls: dict[str, int]  # name -> call id
    recordings: dict[str, Path]  # name -> file


def _recording(data_dir: Path, name: str) -> str:
    folder = data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.wav").write_bytes(b"RIFF" + bytes(2000))
    return f"recordings/{name}.wav"


def _call(session: Any, data_dir: Path, name: str, number: str, age: timedelta, *, banned: bool = True) -> int:
    invited = NOW - age
    call = CallRecord(
        sip_call_id=f"sip-{name}",
        remote_number=number,
        agent_extension="1001",
        invited_at=invited,
        answered_at=invited + timedelta(seconds=4),
        ended_at=invited + timedelta(minutes=3),
        rings_before_answer=1,
        disposition="completed",
        hung_up_first="customer",
        purpose=f"报修,回电 {number}",
        category="报修",
        recording_path=_recording(data_dir, name),
    )
    transcript = [
        UtteranceRecord(leg="agent", start_s=1.0, end_s=3.0, text="您好 示例科技 很高兴为您服务"),
        UtteranceRecord(leg="customer", start_s=4.0, end_s=7.0, text=f"我的电话是 {number} 空调坏了"),
        UtteranceRecord(leg="agent", start_s=8.0, end_s=10.0, text="这个 我不知道"),
    ]
    hits = [
        RuleHitRecord(
            rule_id="banned_phrases",
            kind="violation",
            severity="critical",
            leg="agent",
            at_s=8.5,
            matched_text="我不知道",
        )
    ]
    report = ComplianceReport(
        score=40.0, results=(RuleResult(rule_id="banned_phrases", passed=False, severity="critical"),)
    )
    call_id = save_call(session, call, transcript, hits if banned else [], report)
    session.execute(
        Call.__table__.update().where(Call.id == call_id).values(notes=f"客户说打 {number}", resolution="已派工")
    )
    return call_id


def build_world(database: Database, data_dir: Path) -> World:
    calls: dict[str, int] = {}
    with database.session() as session:
        zhang, _ = upsert_customer(
            session, phone="138 0013 8000", values={"name": "张三", "notes": "老客户"}, changed_by="test"
        )
        upsert_customer(
            session,
            phone=STRANGER,
            values={"name": "李四", "notes": f"张三的电话 {ERASED[:3]}-{ERASED[3:7]}-{ERASED[7:]}"},
            changed_by="test",
        )
        upsert_customer(session, phone=STRANGER, values={"name": "李四", "company": "某公司"}, changed_by="test")
        for name, number, days in (("z1", ERASED, 3), ("z2", "+86 138 0013 8000", 200), ("z3", "013800138000", 800)):
            calls[name] = _call(session, data_dir, name, number, timedelta(days=days))
        calls["z-linked"] = _call(session, data_dir, "z-linked", "02187654321", timedelta(days=1))  # linked by customer
        session.execute(Call.__table__.update().where(Call.id == calls["z-linked"]).values(customer_id=zhang.id))
        for name, days in (("s1", 3), ("s2", 200), ("s3", 800)):
            calls[name] = _call(session, data_dir, name, STRANGER, timedelta(days=days))
        agent_id = session.scalar(select(Agent.id).where(Agent.extension == "1001"))
        for number, prefix in ((ERASED, "z"), (STRANGER, "s")):
            call_id = calls[f"{prefix}1"]
            old_call = calls[f"{prefix}3"]
            open_ticket = Ticket(
                call_id=call_id,
                caller_name="张三" if prefix == "z" else "李四",
                caller_phone=number,
                category="报修",
                purpose=f"空调 {number}",
                summary="不制冷",
                status="open",
            )
            closed_ticket = Ticket(
                call_id=old_call,
                caller_name="张三" if prefix == "z" else "李四",
                caller_phone=number,
                category="投诉",
                purpose="态度",
                status="closed",
                created_at=NOW - timedelta(days=800),
            )
            session.add_all([open_ticket, closed_ticket])
            session.flush()
            pending = Callback(
                phone=number,
                reason=f"次日回访 {number}",
                kind="next_day",
                call_id=call_id,
                ticket_id=open_ticket.id,
                due_at=NOW + timedelta(days=1),
            )
            done = Callback(
                phone=number,
                reason="投诉回访",
                kind="complaint",
                state="done",
                call_id=old_call,
                due_at=NOW - timedelta(days=799),
                created_at=NOW - timedelta(days=800),
            )
            session.add_all([pending, done])
            session.flush()
            for question, answer in (("attitude", 5), ("solved", 4)):
                session.add(
                    SurveyResponse(
                        call_id=call_id, agent_id=agent_id, callback_id=done.id, question_key=question, answer=answer
                    )
                )
            session.add(
                OutboxMessage(
                    plugin="crm_webhook",
                    topic="call.ended",
                    key=f"call:{call_id}",
                    payload={"data": {"call": {"remote_number": number, "sip_call_id": f"sip-{prefix}1"}}},
                )
            )
            session.add(
                OutboxMessage(
                    plugin="crm_webhook",
                    topic="call.ended",
                    key=f"call:{old_call}",
                    payload={"data": {"call": {"sip_call_id": f"sip-{prefix}3"}}},
                    created_at=NOW - timedelta(days=800),
                )
            )
            session.add(
                UndeliveredEvent(plugin="tickets", hook="call_ended", payload={"call": {"remote_number": number}})
            )
            session.add(LiveEvent(sip_call_id=f"sip-{prefix}1", kind="ringing", data={"remote_number": number}))
            session.add(
                TeamCall(
                    sip_call_id=f"team-{prefix}",
                    team_number="8000",
                    remote_number=number,
                    arrived_at=NOW - timedelta(days=800),
                )
            )
        reviewer = WebUser(username="qa", role="reviewer", password_hash="x")
        session.add(reviewer)
        session.flush()
        session.add(
            Review(
                call_id=calls["z1"],
                reviewer_id=reviewer.id,
                verdicts={"banned_phrases": "agree"},
                comment="客户留的 138 0013 8000 已核实",
            )
        )
        session.add(
            AccessLog(username="qa", role="reviewer", action="customer", target=f"/api/customers?number={ERASED}")
        )
    recordings = {name: data_dir / "recordings" / f"{name}.wav" for name in calls}
    return World(database, data_dir, calls, recordings)


@pytest.fixture
def world(database: Database, desk: Path) -> World:
    return build_world(database, desk.parent / "data")


def run(desk: Path, database: Database, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        list(args),
        env={"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": database.url, "COLUMNS": "200"},
    )


def text_values(database: Database) -> Iterator[tuple[str, str, str]]:
    """Every text and JSON value in every table: (table, column, value as text)."""
    with database.session() as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, Text, JSON))]
            for row in session.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        yield (
                            table.name,
                            column.name,
                            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False),
                        )


def spelled_anywhere(database: Database, number: str) -> list[tuple[str, str]]:
    key = phone_key(number)
    return sorted({(t, c) for t, c, v in text_values(database) if remove_number(v, key, "#") != v})


def counts(database: Database) -> dict[str, Any]:
    """What a QA team counts, which neither an erasure nor a purge may change."""
    with database.session() as session:
        return {
            "calls": session.scalar(select(func.count()).select_from(Call)),
            "scores": sorted(session.scalars(select(Call.compliance_score)).all(), key=str),
            "findings": session.scalar(select(func.count()).select_from(RuleHit)),
            "survey_answers": sorted(session.scalars(select(SurveyResponse.answer)).all(), key=str),
            "tickets": session.scalar(select(func.count()).select_from(Ticket)),
        }


# -------------------------------------------------------------------------------------------- erasure


def test_forget_removes_one_customer_everywhere_and_leaves_the_rest(desk: Path, world: World) -> None:
    database = world.database
    assert spelled_anywhere(database, ERASED)  # the world does spell it, in many places
    stranger_before = spelled_anywhere(database, STRANGER)
    before = counts(database)

    result = run(desk, database, "customers", "forget", "+86 138-0013-8000", "--yes", "--reference", "GD-2026-7")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "recordings deleted" in result.output and "customer records deleted" in result.output

    assert spelled_anywhere(database, ERASED) == []  # in no spelling, in no table
    assert spelled_anywhere(database, STRANGER) == stranger_before
    assert counts(database) == before  # scores, findings, survey answers, tickets: all still counted
    erased_calls = [world.calls[n] for n in ("z1", "z2", "z3", "z-linked")]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.name == "张三")) == 0
        for call in session.scalars(select(Call).where(Call.id.in_(erased_calls))):
            assert call.data_removed == {"recording": "erasure", "transcript": "erasure", "personal": "erasure"}
            assert (call.remote_number, call.purpose, call.notes, call.recording_path, call.customer_id) == (
                "",
                "",
                "",
                "",
                None,
            )
            assert call.compliance_score == 40.0
        assert (
            session.scalar(select(func.count()).select_from(Utterance).where(Utterance.call_id.in_(erased_calls))) == 0
        )
        quoted = session.scalars(select(RuleHit.matched_text).where(RuleHit.call_id.in_(erased_calls))).all()
        assert quoted == [""] * 4  # the findings stay, without the words
        callback_states = dict(
            session.execute(select(Callback.kind, Callback.state).where(Callback.phone == "")).tuples().all()
        )
        assert callback_states == {"next_day": "cancelled", "complaint": "done"}  # nobody calls them back
        assert (
            session.scalar(select(func.count()).select_from(SurveyResponse).where(SurveyResponse.call_id.is_(None)))
            == 2
        )
        record = session.scalars(select(DataRemoval)).one()
        assert (record.reason, record.reference) == ("erasure", "GD-2026-7")
        assert record.counts["customers"] == 1 and record.counts["recordings"] == 4
        stranger_calls = session.scalar(select(func.count()).select_from(Call).where(Call.remote_number == STRANGER))
        assert stranger_calls == 3
    for name in ("z1", "z2", "z3", "z-linked"):
        assert not world.recordings[name].exists(), name
    for name in ("s1", "s2", "s3"):
        assert world.recordings[name].exists(), name

    again = run(desk, database, "customers", "forget", ERASED, "--yes")
    assert again.exit_code == 0 and "nothing" in again.output  # done is done


def test_a_dry_run_counts_exactly_what_the_erasure_does_and_changes_nothing(desk: Path, world: World) -> None:
    database = world.database
    before = list(text_values(database))
    dry = run(desk, database, "customers", "forget", "138-0013-8000", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert list(text_values(database)) == before
    assert all(path.exists() for path in world.recordings.values())
    real = run(desk, database, "customers", "forget", "138-0013-8000", "--yes", "--json")
    assert real.exit_code == 0, real.output
    dry_counts, real_counts = json.loads(dry.output)["counts"], json.loads(real.output)["counts"]
    assert dry_counts == real_counts and real_counts["recordings"] == 4


def test_forget_without_yes_asks_and_does_nothing_when_refused(desk: Path, world: World) -> None:
    answer = CliRunner().invoke(
        cli,
        ["customers", "forget", ERASED],
        input="n\n",
        env={"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": world.database.url},
    )
    assert answer.exit_code != 0
    assert spelled_anywhere(world.database, ERASED)


@pytest.mark.parametrize("number", ["abc", "12", "=cmd|' /C calc'!A0"])
def test_forget_refuses_what_is_not_a_number_in_one_line(desk: Path, database: Database, number: str) -> None:
    result = run(desk, database, "customers", "forget", number, "--yes")
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "not a phone number" in result.output


def test_forget_waits_for_a_call_in_progress(desk: Path, world: World) -> None:
    with world.database.session() as session:
        session.add(Call(sip_call_id="live", direction="inbound", remote_number=ERASED, invited_at=NOW))
    result = run(desk, world.database, "customers", "forget", ERASED, "--yes")
    assert result.exit_code == 1 and "has not ended yet" in result.output
    assert spelled_anywhere(world.database, ERASED)  # nothing half done


# -------------------------------------------------------------------------------------------- plugins


FAILING_PLUGIN = """
from contactcenter import hookimpl

@hookimpl
def forget_customer(phone_key):
    raise RuntimeError("the archive is offline")
"""


def test_plugins_are_asked_to_forget_and_a_failure_is_reported(
    desk: Path, world: World, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.factories import install_plugin

    install_plugin(site, "archive", FAILING_PLUGIN)
    monkeypatch.setenv("CONTACTCENTER_PLUGINS__ENABLED", '["crm_webhook", "archive"]')
    result = run(desk, world.database, "customers", "forget", ERASED, "--yes")
    assert result.exit_code == 1, result.output
    assert "plugin archive: FAILED: RuntimeError: the archive is offline" in result.output
    assert "plugin crm_webhook: the CRM is told to erase its copy" in result.output
    with world.database.session() as session:
        notice = session.scalars(select(OutboxMessage).where(OutboxMessage.topic == "customer.erased")).one()
    assert notice.payload["data"]["phone_key"] == ERASED  # the CRM needs the number to find its copy
    assert spelled_anywhere(world.database, ERASED) == [
        ("plugin_outbox", "key"),
        ("plugin_outbox", "payload"),
    ]  # the notice


# -------------------------------------------------------------------------------------------- retention


def test_the_retention_purge_removes_what_is_too_old_and_keeps_the_counts(desk: Path, world: World) -> None:
    database = world.database
    with database.session() as session:
        idle = Customer(name="王五", phone="13700137000", phone_key="13700137000", created_at=NOW - timedelta(days=900))
        session.add(idle)
    orphans = world.data_dir / "recordings"
    old_orphan, new_orphan = orphans / "crashed-old.wav", orphans / "crashed-new.wav"
    for path, days in ((old_orphan, 400), (new_orphan, 2)):
        path.write_bytes(b"RIFF")
        stamp = (NOW - timedelta(days=days)).timestamp()
        os.utime(path, (stamp, stamp))
    before = counts(database)

    dry = run(desk, database, "retention", "purge", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert all(path.exists() for path in world.recordings.values()) and old_orphan.exists()
    real = run(desk, database, "retention", "purge", "--json")
    assert real.exit_code == 0, real.output
    purged = json.loads(real.output)["counts"]
    assert json.loads(dry.output)["counts"] == purged

    assert counts(database) == before
    # settings.toml: recordings 180 days, transcripts 365, personal data 730
    assert purged["recordings"] == 4 and purged["orphan_recordings"] == 1
    assert purged["transcript_calls"] == 2 and purged["personal_calls"] == 2
    assert purged["tickets"] == 2 and purged["callbacks"] == 2 and purged["customers"] == 1
    assert purged["team_calls"] == 2 and purged["outbox_messages"] == 2
    assert not old_orphan.exists() and new_orphan.exists()
    with database.session() as session:
        removed = dict(session.execute(select(Call.sip_call_id, Call.data_removed)).tuples().all())
        numbers = dict(session.execute(select(Call.sip_call_id, Call.remote_number)).tuples().all())
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.name == "王五")) == 0
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.name == "张三")) == 1
        open_tickets = session.scalars(select(Ticket.caller_phone).where(Ticket.status == "open")).all()
    for fresh in ("sip-z1", "sip-s1", "sip-z-linked"):
        assert removed[fresh] == {} and numbers[fresh] != ""
    for middle in ("sip-z2", "sip-s2"):
        assert removed[middle] == {"recording": "retention"} and numbers[middle] != ""
    for old in ("sip-z3", "sip-s3"):
        assert removed[old] == {"recording": "retention", "transcript": "retention", "personal": "retention"}
        assert numbers[old] == ""
    assert sorted(open_tickets) == sorted([ERASED, STRANGER])  # an open ticket is still being worked

    again = run(desk, database, "retention", "purge")
    assert again.exit_code == 0 and "nothing" in again.output
    log = run(desk, database, "retention", "log", "--format", "json")
    assert [entry["reason"] for entry in json.loads(log.output)] == ["retention", "retention"]


def test_zero_days_keeps_that_data_for_ever(database: Database, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    world = build_world(database, data_dir)
    tally = purge(database, RetentionSettings(recordings_days=0, transcripts_days=0, personal_days=0), data_dir, NOW)
    assert not tally.changed
    assert all(path.exists() for path in world.recordings.values())
    shorter = purge(
        database, RetentionSettings(recordings_days=0, transcripts_days=0, personal_days=100), data_dir, NOW
    )
    assert shorter.counts["recordings"] == 4  # personal data includes the recording: 100 days it is


def test_the_scheduler_purges_daily_and_catches_up_after_a_missed_day(world: World, desk: Path) -> None:
    from contactcenter.scheduling.scheduler import RETENTION_CATCH_UP, RETENTION_JOB, CallbackScheduler
    from contactcenter.settings import load_settings

    settings = load_settings(desk, {"CONTACTCENTER_DATABASE__URL": world.database.url})
    scheduler = CallbackScheduler(world.database, settings, publish=None)
    scheduler.start()
    try:
        job = scheduler._scheduler.get_job(RETENTION_JOB)  # type: ignore[union-attr]
        assert abs(job.next_run_time - (datetime.now(UTC) + RETENTION_CATCH_UP)) < timedelta(minutes=1)  # never ran
        tally = scheduler.purge_retention()
        assert tally is not None and tally.counts["recordings"] == 4
    finally:
        scheduler.shutdown()
    scheduler.start()
    try:
        job = scheduler._scheduler.get_job(RETENTION_JOB)  # type: ignore[union-attr]
        local = job.next_run_time.astimezone(ZoneInfo(settings.general.timezone))
        assert local.strftime("%H:%M") == settings.retention.purge_time  # ran today: next at purge time
    finally:
        scheduler.shutdown()
    with world.database.session() as session:
        assert session.scalars(select(DataRemoval.done_by)).one().startswith("scheduler ")


# -------------------------------------------------------------------------------------------- the console


def test_the_call_page_says_what_was_deleted_and_why(console: dict) -> None:
    from contactcenter.storage.erasure import forget_number
    from tests.helpers.web import client_as

    database, settings = console["database"], console["settings"]
    erased, purged, untouched = console["ids"][0], console["ids"][1], console["ids"][2]
    data_dir = Path(settings.general.data_dir)
    with database.session() as session:
        for call_id in (erased, purged, untouched):
            stored = _recording(data_dir, f"page-{call_id}")
            session.execute(Call.__table__.update().where(Call.id == call_id).values(recording_path=stored))
        number = session.get(Call, erased).remote_number
    with database.session() as session:
        forget_number(session, number, data_dir, NOW)
    far_future = datetime(2027, 7, 1, tzinfo=UTC)  # every seeded call is then past 180 days, not past 365
    purge(database, settings.retention, data_dir, far_future)

    admin = client_as(console, "zhao")
    erased_page = admin.get(f"/calls/{erased}").text
    assert "录音应客户要求已删除" in erased_page and "通话文本应客户要求已删除" in erased_page
    assert "客户信息应客户要求已删除" in erased_page and number not in erased_page
    purged_page = admin.get(f"/calls/{purged}").text
    assert "录音已超过保存期限,已删除" in purged_page and "客户信息" not in purged_page.split("通话记录")[0]
    assert admin.get(f"/calls/{purged}/recording").status_code == 404
    assert admin.get(f"/api/calls/{erased}").json()["call"]["removed"]["personal"] == "客户信息应客户要求已删除"
