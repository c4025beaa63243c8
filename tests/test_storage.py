"""The call store on SQLite and PostgreSQL: migrations, every table, UTC times, a database that is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from contactcenter.storage import Database, DatabaseUnavailable
from contactcenter.storage.models import (
    Agent,
    Base,
    Call,
    Callback,
    Customer,
    RuleHit,
    SurveyResponse,
    Ticket,
    UndeliveredEvent,
    Utterance,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_upgrade_creates_every_table_and_is_repeatable(database: Database) -> None:
    expected = set(Base.metadata.tables) | {"alembic_version"}
    assert set(database.table_names()) == expected
    database.upgrade()  # a second run changes nothing and does not fail
    assert database.current_revision() == database.head_revision() == "0014"


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_a_whole_call_round_trips_with_utc_times(database: Database) -> None:
    invited = datetime(2026, 11, 23, 9, 30, 0, tzinfo=SHANGHAI)
    with database.session() as session:
        agent = Agent(extension="1001", name="王芳", team="一组")
        customer = Customer(name="李先生", company="某某公司", phone="13800138000")
        call = Call(
            sip_call_id="abc@127.0.0.1",
            direction="inbound",
            remote_number="13800138000",
            agent=agent,
            customer=customer,
            invited_at=invited,
            ringing_at=invited + timedelta(milliseconds=6),
            answered_at=invited + timedelta(seconds=9),
            ended_at=invited + timedelta(minutes=3),
            rings_before_answer=2,
            hung_up_first="customer",
            disposition="completed",
            purpose="咨询账单",
            category="咨询",
            compliance_score=85.0,
        )
        call.utterances.append(
            Utterance(leg="agent", start_s=0.4, end_s=2.9, text="您好,示例科技,很高兴为您服务", confidence=0.93)
        )
        call.utterances.append(Utterance(leg="customer", start_s=3.1, end_s=5.0, text="我想问一下账单"))
        call.rule_hits.append(
            RuleHit(
                rule_id="greeting",
                kind="satisfied",
                severity="major",
                leg="agent",
                at_s=0.4,
                matched_text="您好",
                live=True,
            )
        )
        session.add(call)
        session.flush()
        ticket = Ticket(
            call_id=call.id,
            customer_id=customer.id,
            category="咨询",
            summary="账单疑问",
            due_at=invited + timedelta(hours=72),
            assignee=agent,
            source="tickets",
        )
        session.add(ticket)
        session.flush()
        session.add(
            Callback(
                customer_id=customer.id,
                phone=customer.phone,
                reason="次日回访",
                call_id=call.id,
                ticket_id=ticket.id,
                owner_id=agent.id,
                owner_only=True,
                due_at=invited + timedelta(days=1),
            )
        )
        session.add(SurveyResponse(call_id=call.id, agent_id=agent.id, question_key="satisfaction", answer=5))
        session.add(UndeliveredEvent(plugin="crm", hook="call_ended", payload={"call": {"id": call.id}}, error="x"))
        call_id = call.id

    with database.session() as session:
        call = session.get(Call, call_id)
        assert call.invited_at == invited and call.invited_at.tzinfo == UTC
        assert call.answered_at - call.invited_at == timedelta(seconds=9)
        assert [u.leg for u in call.utterances] == ["agent", "customer"]
        assert call.utterances[0].text.startswith("您好")
        assert call.agent.name == "王芳" and call.customer.company == "某某公司"
        assert call.rule_hits[0].rule_id == "greeting"
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.due_at == invited + timedelta(hours=72) and ticket.status == "open"
        assert ticket.assignee.extension == "1001"
        callback = session.scalars(select(Callback)).one()
        assert callback.state == "pending" and callback.owner_only and callback.attempts == 0
        assert session.scalars(select(SurveyResponse.answer)).one() == 5
        assert session.scalars(select(UndeliveredEvent)).one().payload == {"call": {"id": call_id}}


def test_naive_times_are_refused(database: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        with database.session() as session:
            session.add(Call(sip_call_id="naive", direction="inbound", invited_at=datetime(2026, 1, 1)))


def test_one_ticket_per_call_and_source(database: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    with database.session() as session:
        call = Call(sip_call_id="dup", direction="inbound", invited_at=datetime.now(UTC))
        session.add(call)
        session.flush()
        session.add(Ticket(call_id=call.id, category="咨询", source="tickets"))
    with pytest.raises(IntegrityError):
        with database.session() as session:
            session.add(Ticket(call_id=call.id, category="投诉", source="tickets"))


def test_a_database_that_is_down_gives_a_clear_error() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailable, match=r"cannot use database postgresql\+psycopg://nobody@127.0.0.1:1"):
        db.upgrade()


def test_a_desk_with_calls_and_callbacks_upgrades_from_0001_keeping_them(database_url: str) -> None:
    from sqlalchemy import text

    database = Database(database_url)
    database.upgrade("0001")
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO callbacks (phone, reason, owner_only, due_at, timezone, attempts, max_attempts, "
                "spacing_minutes, state, last_outcome, created_at, updated_at) VALUES ('13800138000', '次日回访', "
                ":f, :t, 'Asia/Shanghai', 0, 3, 60, 'pending', '', :t, :t)"
            ),
            {"f": False, "t": "2026-11-24 02:00:00.000000+00:00"},
        )
    database.upgrade()
    with database.session() as session:
        [callback] = session.scalars(select(Callback)).all()
        assert callback.kind == "manual" and callback.owner_extension == "" and callback.note == ""
        assert callback.phone == "13800138000" and callback.job_due_at is None
    database.dispose()


def test_two_stores_at_once_for_a_new_agent_make_one_agent(database: Database) -> None:
    """Eight calls of an extension the store has never seen, stored at the same instant (audit workers, or
    desks sharing PostgreSQL): every call is stored, against one agent row (the second insert used to fail
    the store on the unique extension)."""
    import threading

    from contactcenter.records import CallRecord
    from contactcenter.storage.calls import save_call
    from contactcenter.storage.models import Agent, Call

    start, errors = threading.Barrier(8), []
    now = datetime.now(UTC)

    def store(n: int) -> None:
        start.wait()
        try:
            with database.session() as session:
                save_call(session, CallRecord(sip_call_id=f"race-{n}", agent_extension="1077", invited_at=now))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=store, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    with database.session() as session:
        [agent] = session.scalars(select(Agent).where(Agent.extension == "1077")).all()
        assert {c.agent_id for c in session.scalars(select(Call))} == {agent.id}
        assert len(session.scalars(select(Call)).all()) == 8
