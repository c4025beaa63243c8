"""The ticket plugin end to end: installed through its entry point, driven by real hook calls, on SQLite
and PostgreSQL, listed by the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from contactcenter.cli import cli
from contactcenter.hooks.host import PluginHost
from contactcenter.records import CallRecord
from contactcenter.storage import Database
from contactcenter.storage.models import Agent, Call, Ticket
from tests.helpers.factories import a_call, a_report, transcript
from tests.helpers.settings import desk_settings


@pytest.fixture
def host(desk: Path, database_url: str) -> Iterator[PluginHost]:
    settings = desk_settings(desk, database_url)
    database = Database(database_url)
    database.upgrade()
    host = PluginHost(settings, database)
    host.load_entry_points()  # the tickets plugin, found through the "contactcenter" entry-point group
    yield host
    host.close()
    database.dispose()


def stored_call(host: PluginHost, **changes) -> CallRecord:
    """Store a call the way the phone will, and return the record the hooks receive."""
    record = a_call(**changes)
    with host.database.session() as session:
        agent = session.scalar(select(Agent).where(Agent.extension == record.agent_extension))
        agent = agent or Agent(extension=record.agent_extension, name="王芳")
        call = Call(
            sip_call_id=record.sip_call_id,
            direction=record.direction,
            remote_number=record.remote_number,
            agent=agent,
            invited_at=record.invited_at,
            answered_at=record.answered_at,
            ended_at=record.ended_at,
            disposition=record.disposition,
        )
        session.add(call)
        session.flush()
        return record.model_copy(update={"id": call.id})


def end_call(host: PluginHost, call: CallRecord, *customer_lines: str, report=None) -> Ticket:
    delivery = host.dispatcher.notify(
        "call_ended", call=call, transcript=transcript(*customer_lines), report=report or a_report()
    )
    assert delivery.delivered == ["tickets"], delivery.failed
    with host.database.session() as session:
        return session.scalars(select(Ticket).where(Ticket.call_id == call.id)).one()


def test_the_plugin_is_found_through_its_entry_point_and_enabled(host: PluginHost) -> None:
    [info] = [i for i in host.infos() if i.name == "tickets"]
    assert (info.status, info.enabled, info.distribution) == ("loaded", True, "contactcenter-tickets")
    assert host.options("tickets").due_hours["投诉"] == 24


def test_a_complaint_becomes_a_high_priority_ticket_due_within_24_hours(host: PluginHost) -> None:
    call = stored_call(host)
    ticket = end_call(host, call, "你们的服务太差了,我要投诉", report=a_report(70, (("closing", "major"),)))
    assert ticket.category == "投诉" and ticket.priority == "high" and ticket.status == "open"
    assert ticket.due_at == call.ended_at + timedelta(hours=24)
    assert ticket.caller_phone == "13800138000" and ticket.caller_name == "李先生"
    assert "投诉" in ticket.purpose
    assert ticket.compliance_summary == "70/100; closing(major)"
    assert ticket.source == "tickets" and not ticket.escalated


def test_a_repair_call_and_a_question_get_their_categories(host: PluginHost) -> None:
    repair = end_call(host, stored_call(host, sip_call_id="r@x"), "我家的空调坏了,需要维修")
    question_call = stored_call(host, sip_call_id="q@x")
    question = end_call(host, question_call, "请问你们几点下班")
    assert (repair.category, repair.priority) == ("报修", "normal")
    assert question.category == "咨询" and question.due_at == question_call.ended_at + timedelta(hours=72)


def test_the_agents_category_and_purpose_win(host: PluginHost) -> None:
    call = stored_call(host, category="报修", purpose="上门安装预约")
    ticket = end_call(host, call, "我要投诉")
    assert ticket.category == "报修" and ticket.purpose == "上门安装预约"


def test_a_critical_compliance_failure_escalates(host: PluginHost) -> None:
    ticket = end_call(host, stored_call(host), "请问", report=a_report(40, (("banned_phrases", "critical"),)))
    assert ticket.escalated


def test_a_replayed_event_does_not_make_a_second_ticket(host: PluginHost) -> None:
    call = stored_call(host)
    first = end_call(host, call, "我要投诉")
    again = end_call(host, call, "我要投诉")
    assert first.id == again.id
    with host.database.session() as session:
        assert len(session.scalars(select(Ticket)).all()) == 1


def test_ticket_created_is_published(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(host.bus, "publish", lambda hook, **arguments: published.append((hook, arguments)))
    ticket = end_call(host, stored_call(host), "我要投诉")
    assert [(hook, args["ticket"].id) for hook, args in published] == [("ticket_created", ticket.id)]


def test_tickets_list_and_show_on_the_command_line(host: PluginHost, desk: Path, database_url: str) -> None:
    complaint = end_call(host, stored_call(host, sip_call_id="c@x"), "我要投诉")
    end_call(host, stored_call(host, sip_call_id="q@x", agent_extension="1002"), "请问营业时间")
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": database_url}
    runner = CliRunner()

    as_json = runner.invoke(cli, ["tickets", "list", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)
    assert {row["category"] for row in rows} == {"投诉", "咨询"}

    complaints = json.loads(runner.invoke(cli, ["tickets", "list", "--json", "--category", "投诉"], env=env).output)
    assert [row["id"] for row in complaints] == [complaint.id] and complaints[0]["agent"] == "1001"
    by_agent = json.loads(runner.invoke(cli, ["tickets", "list", "--json", "--agent", "1002"], env=env).output)
    assert [row["category"] for row in by_agent] == ["咨询"]
    assert json.loads(runner.invoke(cli, ["tickets", "list", "--json", "--status", "closed"], env=env).output) == []

    day = complaint.created_at.astimezone(host.api_for("tickets").timezone).date()
    same_day = runner.invoke(cli, ["tickets", "list", "--json", "--since", str(day), "--until", str(day)], env=env)
    assert len(json.loads(same_day.output)) == 2
    later = runner.invoke(cli, ["tickets", "list", "--json", "--since", str(day + timedelta(days=1))], env=env)
    assert json.loads(later.output) == []

    as_csv = runner.invoke(cli, ["tickets", "list", "--csv"], env=env)
    parsed = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert len(parsed) == 2 and "compliance_summary" in parsed[0]

    table = runner.invoke(cli, ["tickets", "list"], env=env)
    assert table.exit_code == 0 and "投诉" in table.output

    shown = json.loads(runner.invoke(cli, ["tickets", "show", str(complaint.id), "--json"], env=env).output)
    assert shown["id"] == complaint.id and shown["priority"] == "high" and shown["caller_name"] == "李先生"
    missing = runner.invoke(cli, ["tickets", "show", "99999"], env=env)
    assert missing.exit_code == 1 and "no ticket 99999" in missing.output
