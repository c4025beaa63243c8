"""The ticket plugin end to end: installed through its entry point, driven by real hook calls, on SQLite
and PostgreSQL, listed by the CLI; filled by the agent's wrap-up, and marked where no agent wrapped up."""

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
from contactcenter.wrap_up import WrapUpForm, save_wrap_up
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
    with host.database.session() as session:  # the call carries its ticket's category: the 类别 filter finds it
        assert session.get(Call, question_call.id).category == "咨询"


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


# ---------------------------------------------------------------------------------------- the agent's wrap-up


def wrap_up(host: PluginHost, call: CallRecord, **changes) -> None:
    """The agent saves the wrap-up; the event goes through the host's delivery workers."""
    values = dict(
        caller_name="张伟",
        phone="13800138000",
        salutation="先生",
        category="咨询",
        purpose="询问保修期",
        notes="空调保修六年，客户已知晓",
        resolution="已解答",
    )
    values.update(changes)
    assert call.id is not None and call.ended_at is not None
    save_wrap_up(
        host.database,
        host.settings,
        call_id=call.id,
        form=WrapUpForm(**values),
        agent="1001",
        publish=host.publish,
        now=call.ended_at + timedelta(minutes=3),
    )
    assert host.bus.drain(30)


def the_ticket(host: PluginHost, call: CallRecord) -> Ticket:
    with host.database.session() as session:
        return session.scalars(select(Ticket).where(Ticket.call_id == call.id)).one()


@pytest.fixture
def created(host: PluginHost, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the tickets ``ticket_created`` was published for (events still delivered)."""
    seen: list[int] = []
    publish = host.bus.publish

    def spy(hook: str, **arguments) -> None:
        if hook == "ticket_created":
            seen.append(arguments["ticket"].id)
        publish(hook, **arguments)

    monkeypatch.setattr(host.bus, "publish", spy)
    return seen


def test_a_wrap_up_fills_the_calls_ticket_and_ticket_created_stays_once(host: PluginHost, created: list[int]) -> None:
    call = stored_call(host)
    guessed = end_call(host, call, "你们的服务太差了,我要投诉", report=a_report(40, (("banned_phrases", "critical"),)))
    assert (guessed.category, guessed.priority, guessed.wrapped_up) == ("投诉", "high", False)

    wrap_up(host, call)  # the agent: it was a question, not a complaint
    ticket = the_ticket(host, call)
    assert ticket.id == guessed.id and created == [guessed.id]
    assert (ticket.caller_name, ticket.caller_phone, ticket.category) == ("张伟", "13800138000", "咨询")
    assert (ticket.purpose, ticket.summary, ticket.resolution) == ("询问保修期", "空调保修六年，客户已知晓", "已解答")
    assert ticket.wrapped_up is True and ticket.priority == "normal"  # priority and due follow the category
    assert ticket.due_at == call.ended_at + timedelta(hours=72) and ticket.customer_id is not None
    assert ticket.compliance_summary == "40/100; banned_phrases(critical)" and ticket.escalated  # kept

    wrap_up(host, call, category="投诉", purpose="投诉安装延误", notes="")  # corrected: the same ticket, updated
    ticket = the_ticket(host, call)
    assert (ticket.category, ticket.priority, ticket.summary) == ("投诉", "high", "投诉安装延误")
    assert created == [guessed.id]


def test_a_wrap_up_before_call_ended_makes_the_ticket_once(host: PluginHost, created: list[int]) -> None:
    call = stored_call(host)
    wrap_up(host, call, category="报修", purpose="热水器漏水")
    first = the_ticket(host, call)
    assert first.wrapped_up and first.category == "报修" and first.compliance_summary == ""
    late = end_call(host, call, "请问你们几点下班", report=a_report(70, (("closing", "major"),)))
    assert late.id == first.id and created == [first.id]
    assert (late.category, late.purpose, late.wrapped_up) == ("报修", "热水器漏水", True)  # the agent's words stay
    assert late.compliance_summary == "70/100; closing(major)"  # what only call_ended knows is added


def test_a_call_nobody_wrapped_up_keeps_its_machine_ticket_marked_in_the_list(
    host: PluginHost, desk: Path, database_url: str
) -> None:
    done = stored_call(host, sip_call_id="done@x")
    end_call(host, done, "请问营业时间")
    wrap_up(host, done)
    forgotten = end_call(host, stored_call(host, sip_call_id="forgotten@x"), "我家的空调坏了")
    assert forgotten.wrapped_up is False and forgotten.resolution == ""
    env = {"CONTACTCENTER_SETTINGS": str(desk), "CONTACTCENTER_DATABASE__URL": database_url}
    runner = CliRunner()

    rows = json.loads(runner.invoke(cli, ["tickets", "list", "--json"], env=env).output)
    assert {row["id"]: (row["wrapped_up"], row["wrap_up"]) for row in rows} == {
        forgotten.id: (False, "未话后处理"),
        the_ticket(host, done).id: (True, ""),
    }
    unwrapped = json.loads(runner.invoke(cli, ["tickets", "list", "--json", "--unwrapped"], env=env).output)
    assert [row["id"] for row in unwrapped] == [forgotten.id]
    table = runner.invoke(cli, ["tickets", "list"], env={**env, "COLUMNS": "200"})  # a terminal wide enough
    assert table.exit_code == 0 and table.output.count("未话后处理") == 1
    as_csv = list(csv.DictReader(io.StringIO(runner.invoke(cli, ["tickets", "list", "--csv"], env=env).output)))
    assert {row["wrapped_up"] for row in as_csv} == {"True", "False"} and "resolution" in as_csv[0]
    shown = json.loads(runner.invoke(cli, ["tickets", "show", str(forgotten.id), "--json"], env=env).output)
    assert shown["wrapped_up"] is False and shown["wrap_up"] == "未话后处理"
