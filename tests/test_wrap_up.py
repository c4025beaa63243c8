"""The agent's wrap-up (话后处理) on SQLite and PostgreSQL, through the real plugin host and its delivery
workers: what was typed reaches the call, the customer, the ticket and the callbacks exactly; the form is
prefilled; every refusal says why in Chinese and writes nothing; a database that fails mid-save keeps
nothing; saving again updates; the desk's automatic callbacks give way to the agent's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql

from contactcenter.app import App
from contactcenter.callbacks.book import CallbackBook
from contactcenter.hooks.delivery import decode_event, encode_event
from contactcenter.records import CallRecord
from contactcenter.scheduling import after_calls
from contactcenter.storage.calls import save_call
from contactcenter.storage.customers import find_customer, upsert_customer
from contactcenter.storage.models import Call, Callback, Customer, CustomerChange, Ticket
from contactcenter.wrap_up import WrapUpError, WrapUpForm, WrapUpNotSaved, save_wrap_up, wrap_up_defaults
from tests.helpers.factories import RECORDER, a_call, a_report, install_plugin, open_app, transcript

SHANGHAI = ZoneInfo("Asia/Shanghai")
ENDED = a_call().ended_at  # Monday 2026-11-23 10:04 in Shanghai
assert ENDED is not None
NOW = ENDED + timedelta(minutes=5)  # when the agent saves


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


FLAKY = """
from contactcenter import hookimpl
FAIL = [True]
RECEIVED = []

@hookimpl
def call_wrapped_up(call, wrap_up):
    if FAIL[0]:
        raise RuntimeError("the CRM said no")
    RECEIVED.append((call, wrap_up))
"""


@pytest.fixture
def app(desk: Path, database_url: str, site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """A desk with the ticket plugin, a plugin recording every event, and a flaky one, on each database."""
    install_plugin(site, "recorder", RECORDER)
    install_plugin(site, "flaky", FLAKY)
    app = open_app(desk, database_url, monkeypatch, plugins__enabled='["tickets", "recorder", "flaky"]')
    app.plugins.pm.get_plugin("flaky").FAIL[0] = False
    yield app
    app.close()


class Published(list):
    """The ``publish`` the wrap-up is given: noted here, and handed to the plugin host as the desk does."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    def __call__(self, hook: str, **arguments: Any) -> None:
        self.append((hook, arguments))
        self.app.plugins.publish(hook, **arguments)


def stored_call(app: App, **changes: Any) -> CallRecord:
    """A call stored as the phone stores it when it ends; the record the hooks get."""
    record = a_call(**changes)
    with app.database.session() as session:
        return record.model_copy(update={"id": save_call(session, record)})


def end(app: App, call: CallRecord, *customer_lines: str) -> None:
    """``call_ended`` through the plugins (ticket plugin → ticket_created → the desk's callbacks)."""
    app.plugins.publish("call_ended", call=call, transcript=transcript(*customer_lines), report=a_report())
    assert app.plugins.bus.drain(30)


def typed(**changes: Any) -> WrapUpForm:
    """What an agent types for a repair call."""
    values: dict[str, Any] = dict(
        caller_name="张伟",
        company="示例客户有限公司",
        phone="138-0013-8000",
        salutation="先生",
        category="报修",
        purpose="空调不制冷，预约上门维修",
        notes="型号 KFR-35GW，去年购买\n客户下午在家",
        resolution="已派单给售后二组",
        complaint=False,
        next_day_callback=True,
        next_day_at=datetime(2026, 11, 24, 14, 30),  # local wall time, as the page sends it
    )
    values.update(changes)
    return WrapUpForm(**values)


def wrap(app: App, call_id: int, form: WrapUpForm, now: datetime = NOW, agent: str = "1001") -> tuple[Any, Published]:
    published = Published(app)
    record = save_wrap_up(
        app.database, app.settings, call_id=call_id, form=form, agent=agent, publish=published, now=now
    )
    assert app.plugins.bus.drain(30)
    return record, published


def events(app: App, hook: str) -> list[dict]:
    return [arguments for name, arguments in app.plugins.pm.get_plugin("recorder").CALLS if name == hook]


def callbacks_of(app: App, call_id: int) -> list[Callback]:
    with app.database.session() as session:
        return list(session.scalars(select(Callback).where(Callback.call_id == call_id).order_by(Callback.id)))


def ticket_of(app: App, call_id: int) -> Ticket:
    with app.database.session() as session:
        return session.scalars(select(Ticket).where(Ticket.call_id == call_id)).one()


def snapshot(app: App) -> dict[str, Any]:
    """Everything a wrap-up could write: row counts and the contents of the wrap-up's columns."""
    with app.database.session() as session:

        def count(model: Any) -> int:
            return session.scalar(select(func.count()).select_from(model)) or 0

        return {
            "customers": count(Customer),
            "customer_changes": count(CustomerChange),
            "tickets": count(Ticket),
            "callbacks": [
                (c.id, c.kind, c.state, c.due_at, c.owner_extension, c.attempts)
                for c in session.scalars(select(Callback).order_by(Callback.id))
            ],
            "calls": [
                (c.id, c.purpose, c.category, c.notes, c.resolution, c.complaint, c.wrapped_up_at, c.customer_id)
                for c in session.scalars(select(Call).order_by(Call.id))
            ],
            "ticket_contents": [
                (t.id, t.category, t.purpose, t.summary, t.resolution, t.wrapped_up)
                for t in session.scalars(select(Ticket).order_by(Ticket.id))
            ],
        }


# ---------------------------------------------------------------------------------------------- the effects


def test_the_wrap_up_puts_exactly_what_was_typed_in_the_call_customer_ticket_and_callbacks(app: App) -> None:
    call = stored_call(app)
    end(app, call, "我家的空调坏了,需要维修")  # the machine's guesses: a 报修 ticket and a next-day callback
    [automatic] = callbacks_of(app, call.id)
    assert automatic.kind == "next_day" and automatic.owner_extension == ""
    assert ticket_of(app, call.id).wrapped_up is False

    record, published = wrap(app, call.id, typed())

    with app.database.session() as session:
        stored = session.get(Call, call.id)
        assert (stored.purpose, stored.category, stored.resolution) == (
            "空调不制冷，预约上门维修",
            "报修",
            "已派单给售后二组",
        )
        assert stored.notes == "型号 KFR-35GW，去年购买\n客户下午在家" and stored.complaint is False
        assert (stored.wrapped_up_at, stored.wrapped_up_by) == (NOW, "1001")
        customer = find_customer(session, "+86 13800138000")
        assert customer is not None and stored.customer_id == customer.id == record.customer_id
        assert (customer.name, customer.company, customer.salutation) == ("张伟", "示例客户有限公司", "先生")
        assert (customer.phone, customer.phone_key) == ("138-0013-8000", "13800138000")
        [change] = session.scalars(select(CustomerChange).where(CustomerChange.customer_id == customer.id))
        assert change.changed_by == "agent:1001" and change.change["name"] == [None, "张伟"]

    ticket = ticket_of(app, call.id)
    assert (ticket.caller_name, ticket.caller_phone, ticket.category) == ("张伟", "138-0013-8000", "报修")
    assert (ticket.purpose, ticket.summary) == ("空调不制冷，预约上门维修", "型号 KFR-35GW，去年购买\n客户下午在家")
    assert ticket.resolution == "已派单给售后二组" and ticket.wrapped_up is True
    assert ticket.priority == "normal" and ticket.due_at == ENDED + timedelta(hours=24)
    assert ticket.customer_id == customer.id and ticket.compliance_summary == "100/100; -"  # kept from call_ended

    [callback] = callbacks_of(app, call.id)  # the automatic one, taken over: not a second
    assert callback.id == automatic.id and callback.kind == "next_day" and callback.state == "pending"
    assert callback.due_at == local("2026-11-24 14:30") and callback.owner_extension == "1001"
    assert callback.phone == "13800138000" and callback.customer_id == customer.id
    assert [c.id for c in record.callbacks] == [automatic.id] and record.cancelled_callback_ids == ()

    assert [hook for hook, _ in published] == ["call_wrapped_up"]
    [(_, arguments)] = published
    assert arguments["wrap_up"] == record and not record.corrected
    assert arguments["call"].purpose == "空调不制冷，预约上门维修" and arguments["call"].caller_name == "张伟"
    assert arguments["call"].id == call.id and arguments["call"].agent_extension == "1001"
    [received] = events(app, "call_wrapped_up")  # through the real delivery worker
    assert received["wrap_up"] == record and received["call"] == arguments["call"]
    assert len(events(app, "ticket_created")) == 1


def test_a_complaint_gets_a_follow_up_within_24_hours_owned_by_the_agent(app: App) -> None:
    call = stored_call(app)
    record, _ = wrap(app, call.id, typed(category="投诉", purpose="维修人员态度差", next_day_callback=False))
    [callback] = callbacks_of(app, call.id)
    assert callback.kind == "complaint" and callback.owner_extension == "1001" and callback.state == "pending"
    assert callback.deadline_at == ENDED + timedelta(hours=24)
    assert callback.due_at == ENDED + timedelta(minutes=30)  # as soon as the desk is open after the call
    assert record.complaint is True and [c.kind for c in record.callbacks] == ["complaint"]
    ticket = ticket_of(app, call.id)
    assert ticket.category == "投诉" and ticket.priority == "high" and ticket.due_at == ENDED + timedelta(hours=24)
    with app.database.session() as session:
        assert session.get(Call, call.id).complaint is True


def test_a_complaint_category_is_a_complaint_even_unticked(app: App) -> None:
    call = stored_call(app)
    record, _ = wrap(app, call.id, typed(category="投诉", complaint=False, next_day_callback=False))
    assert record.complaint is True and [c.kind for c in callbacks_of(app, call.id)] == ["complaint"]


# ---------------------------------------------------------------------------------------------- prefilled


def test_the_form_is_prefilled_from_the_customer_record_and_the_call(app: App) -> None:
    with app.database.session() as session:
        upsert_customer(
            session,
            phone="+86 138 0013 8000",
            values={"name": "张伟", "company": "示例客户有限公司", "salutation": "先生"},
            changed_by="import",
        )
    repair = stored_call(app)
    end(app, repair, "我家的空调坏了")
    complaint = stored_call(app, sip_call_id="complaint@x", remote_number="13900139000", caller_name="王女士")
    end(app, complaint, "你们的服务太差了,我要投诉")
    with app.database.session() as session:
        before_holiday = wrap_up_defaults(session, app.settings, repair.id, now=local("2026-09-30 17:30"))
        angry = wrap_up_defaults(session, app.settings, complaint.id, now=NOW)

    assert (before_holiday.caller_name, before_holiday.company, before_holiday.salutation) == (
        "张伟",
        "示例客户有限公司",
        "先生",
    )
    assert before_holiday.phone == "13800138000" and before_holiday.category == "报修"
    assert before_holiday.complaint is False and before_holiday.next_day_callback is True
    assert before_holiday.next_day_at == local("2026-10-08 10:00")  # National Day week: the next working day
    assert before_holiday.next_day_at.utcoffset() == timedelta(hours=8)  # local: the page shows it as it is
    assert (before_holiday.purpose, before_holiday.notes) == ("", "")

    assert angry.caller_name == "王女士" and angry.company == "" and angry.phone == "13900139000"  # from the ticket
    assert angry.category == "投诉" and angry.complaint is True and angry.next_day_callback is False
    assert angry.next_day_at == local("2026-11-24 10:00")

    wrap(app, repair.id, typed(next_day_at=datetime(2026, 11, 25, 11, 0)))
    with app.database.session() as session:
        again = wrap_up_defaults(session, app.settings, repair.id, now=NOW)
    assert again.purpose == "空调不制冷，预约上门维修" and again.notes == "型号 KFR-35GW，去年购买\n客户下午在家"
    assert again.next_day_callback is True and again.next_day_at == local("2026-11-25 11:00")
    assert again.phone == "13800138000" and again.caller_name == "张伟"


def test_a_number_the_form_would_refuse_is_not_prefilled_and_a_typed_one_is_stored_clean(app: App) -> None:
    """A SIP caller whose user part is no phone number (letters, 31 digits) gets the customer's number or an
    empty field, not one the agent would be refused for; full-width digits typed are stored as ASCII."""
    with app.database.session() as session:
        upsert_customer(session, phone="13900139000", values={"name": "王女士"}, changed_by="import")
    letters = stored_call(app, sip_call_id="letters@x", remote_number="abc1")
    long = stored_call(app, sip_call_id="long@x", remote_number="1" * 31)
    known = stored_call(app, sip_call_id="known@x", remote_number="anonymous1")
    with app.database.session() as session:
        session.get(Call, known.id).customer_id = find_customer(session, "13900139000").id
    with app.database.session() as session:
        assert wrap_up_defaults(session, app.settings, letters.id, now=NOW).phone == ""
        assert wrap_up_defaults(session, app.settings, long.id, now=NOW).phone == ""
        assert wrap_up_defaults(session, app.settings, known.id, now=NOW).phone == "13900139000"
    record, _ = wrap(app, letters.id, typed(phone="１３８ ００１３ ８０００"))
    assert record.phone == "138 0013 8000"
    with app.database.session() as session:
        customer = find_customer(session, "13800138000")
        assert customer is not None and customer.phone == "138 0013 8000"


def test_an_unknown_call_is_refused(app: App) -> None:
    published = Published(app)
    with pytest.raises(WrapUpError) as refused:
        save_wrap_up(app.database, app.settings, call_id=999, form=typed(), agent="1001", publish=published, now=NOW)
    assert refused.value.errors == {"form": "通话 999 不存在"} and published == []
    with app.database.session() as session, pytest.raises(WrapUpError, match="通话 999 不存在"):
        wrap_up_defaults(session, app.settings, 999)


# -------------------------------------------------------------------------------------------- refusals

REFUSALS = [
    ("empty name", {"caller_name": "  "}, "caller_name", "请填写来电人姓名"),
    (
        "unknown category",
        {"category": "闲聊"},
        "category",
        "类别“闲聊”不在可选的类别中（咨询、投诉、报修、建议、其他）",
    ),
    (
        "past callback",
        {"next_day_at": datetime(2026, 11, 23, 9, 0)},
        "next_day_at",
        "回访时间 2026-11-23 09:00 已经过去",
    ),
    (
        "evening callback",
        {"next_day_at": datetime(2026, 11, 24, 19, 0)},
        "next_day_at",
        "不在工作时间 09:00–18:00 之内（最近可选：2026-11-25 09:00）",
    ),
    ("Saturday callback", {"next_day_at": datetime(2026, 11, 28, 10, 0)}, "next_day_at", "2026-11-28 不是工作日"),
    (
        "10,000-char note",
        {"notes": "很" * 10_000},
        "notes",
        "记录要点最多 2000 个字，现在有 10000 个字，请删减后再保存",
    ),
    ("control character", {"caller_name": "张\x07伟"}, "caller_name", "来电人姓名含有不可见的控制字符"),
    ("NUL in a note", {"notes": "型号\x00"}, "notes", "控制字符"),
    # the phone by the numbering plan (phones.phone_problem), as every other way a number comes in
    (
        "Chinese numerals for a phone",
        {"phone": "一三八"},
        "phone",
        "电话含有不允许的字符“一”(只能有数字、空格和 + - ( ) .)",
    ),
    ("letters for a phone", {"phone": "abc"}, "phone", "电话含有不允许的字符“a”"),
    ("31 digits for a phone", {"phone": "1" * 31}, "phone", "电话过长(31 位数字;最多 20 位数字、32 个字符)"),
    ("a formula for a phone", {"phone": "=1+1"}, "phone", "电话含有不允许的字符“=”"),
    ("HYPERLINK for a phone", {"phone": '=HYPERLINK("http://x")'}, "phone", "电话含有不允许的字符“=”"),
    ("no such mobile", {"phone": "12345678901"}, "phone", "不是有效的电话号码(手机 11 位;座机请带区号"),
    ("outcome without callback", {"callback_outcome": "done"}, "closes_callback_id", "没有指明要关闭的回访任务"),
]


def test_each_refusal_says_why_in_chinese_and_writes_nothing(app: App) -> None:
    call = stored_call(app)
    end(app, call, "我家的空调坏了")
    before = snapshot(app)
    for name, changes, field, expected in REFUSALS:
        published = Published(app)
        with pytest.raises(WrapUpError) as refused:
            save_wrap_up(
                app.database,
                app.settings,
                call_id=call.id,
                form=typed(**changes),
                agent="1001",
                publish=published,
                now=NOW,
            )
        assert expected in refused.value.errors.get(field, ""), (name, refused.value.errors)
        assert set(refused.value.errors) == {field}, (name, refused.value.errors)
        assert published == [], name
        assert snapshot(app) == before, name


def test_a_page_that_posts_nonsense_gets_chinese_messages_too() -> None:
    with pytest.raises(WrapUpError) as refused:
        WrapUpForm.from_input({"salutation": "小姐", "next_day_at": "明天上午", "callback_outcome": "maybe", "x": 1})
    assert refused.value.errors == {
        "salutation": "称呼只能是“先生”“女士”或不填",
        "next_day_at": "回访时间格式不正确，应为 年-月-日 时:分",
        "callback_outcome": "回访结果只能是“已回访”或“未联系上”",
        "form": "表单中有不认识的字段：x",
    }
    form = WrapUpForm.from_input(
        {
            "caller_name": None,
            "notes": "第一行\r\n第二行\r",
            "next_day_at": "",
            "closes_callback_id": " ",
            "phone": " 138 ",
        }
    )
    assert (form.caller_name, form.notes, form.next_day_at, form.closes_callback_id) == (
        "",
        "第一行\n第二行",
        None,
        None,
    )
    assert form.phone == "138"


# ---------------------------------------------------------------------------------- a database that fails


def test_a_database_failure_mid_save_keeps_nothing_and_publishes_nothing(app: App, database_url: str) -> None:
    """A real fault in the middle (SQLite: the callback insert aborts, after the call and the customer were
    written) or at the very end (PostgreSQL: a deferred trigger fails the COMMIT itself)."""
    call = stored_call(app)
    with app.database.engine.begin() as connection:
        if database_url.startswith("sqlite"):
            connection.execute(
                sql("CREATE TRIGGER disk_full BEFORE INSERT ON callbacks BEGIN SELECT RAISE(ABORT, 'disk full'); END")
            )
        else:
            connection.execute(
                sql(
                    "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'could not extend file: disk full'; END $$"
                )
            )
            connection.execute(
                sql(
                    "CREATE CONSTRAINT TRIGGER disk_full AFTER INSERT ON callbacks DEFERRABLE INITIALLY DEFERRED "
                    "FOR EACH ROW EXECUTE FUNCTION disk_full()"
                )
            )
    before = snapshot(app)
    published = Published(app)
    with pytest.raises(WrapUpNotSaved) as failed:
        save_wrap_up(
            app.database, app.settings, call_id=call.id, form=typed(), agent="1001", publish=published, now=NOW
        )
    assert failed.value.errors["form"].startswith("数据库出错，话后处理没有保存（") and "disk full" in str(failed.value)
    assert isinstance(failed.value, WrapUpError)  # a page showing form errors shows this one too
    assert published == [] and snapshot(app) == before
    with app.database.session() as session:
        assert session.get(Call, call.id).wrapped_up_at is None and session.scalar(select(func.count(Customer.id))) == 0


# ------------------------------------------------------------------------------------------- saving again


def test_saving_again_updates_and_never_doubles(app: App) -> None:
    call = stored_call(app)
    end(app, call, "空调坏了")
    first, _ = wrap(app, call.id, typed(complaint=True))
    made = {c.kind: c.id for c in callbacks_of(app, call.id)}
    assert set(made) == {"next_day", "complaint"}
    after_first = snapshot(app)

    second, published = wrap(app, call.id, typed(complaint=False, next_day_at=datetime(2026, 11, 25, 11, 0)))
    assert second.corrected and not first.corrected
    rows = {c.kind: c for c in callbacks_of(app, call.id)}
    assert {kind: c.id for kind, c in rows.items()} == made  # the same rows, none added
    assert rows["next_day"].due_at == local("2026-11-25 11:00") and rows["next_day"].state == "pending"
    assert rows["complaint"].state == "cancelled" and second.cancelled_callback_ids == (made["complaint"],)
    later = snapshot(app)
    assert (later["customers"], later["customer_changes"], later["tickets"]) == (
        after_first["customers"],
        after_first["customer_changes"],  # nothing about the customer changed: no history line
        after_first["tickets"],
    )
    assert len(events(app, "ticket_created")) == 1 and len(events(app, "call_wrapped_up")) == 2
    assert published[0][1]["wrap_up"].corrected

    third, _ = wrap(app, call.id, typed(complaint=True, resolution="已上门修复"))
    rows = {c.kind: c for c in callbacks_of(app, call.id)}
    assert rows["complaint"].state == "pending" and rows["complaint"].id == made["complaint"]  # reopened
    assert [c.id for c in third.callbacks] == [made["next_day"], made["complaint"]]
    assert ticket_of(app, call.id).resolution == "已上门修复"


def test_unticking_next_day_cancels_the_desks_own_callback(app: App) -> None:
    call = stored_call(app)
    end(app, call, "我家的空调坏了")
    [automatic] = callbacks_of(app, call.id)
    record, _ = wrap(app, call.id, typed(next_day_callback=False))
    [cancelled] = callbacks_of(app, call.id)
    assert cancelled.id == automatic.id and cancelled.state == "cancelled" and "话后处理取消" in cancelled.note
    assert record.callbacks == () and record.cancelled_callback_ids == (automatic.id,)


def test_a_late_call_ended_makes_no_second_ticket_and_no_callback_the_agent_did_not_want(app: App) -> None:
    """The wrap-up is saved before call_ended reaches the plugins (a slow worker, a replay): the wrap-up's
    ticket is the only ticket, and the desk's rules add no next-day callback the agent unticked."""
    call = stored_call(app)
    wrap(app, call.id, typed(next_day_callback=False))  # a 报修 without a callback: the agent's decision
    ticket = ticket_of(app, call.id)
    assert ticket.wrapped_up and ticket.compliance_summary == "" and callbacks_of(app, call.id) == []

    end(app, call, "我家的空调坏了,需要维修")  # late
    ticket = ticket_of(app, call.id)
    assert ticket.wrapped_up and ticket.purpose == "空调不制冷，预约上门维修"  # the agent's words stay
    assert ticket.compliance_summary == "100/100; -"  # what only call_ended knew is added
    assert callbacks_of(app, call.id) == [] and len(events(app, "ticket_created")) == 1

    api = app.plugins.api_for("callbacks")  # a replayed ticket_created
    after_calls.ticket_created(ticket=events(app, "ticket_created")[0]["ticket"], api=api)
    assert callbacks_of(app, call.id) == []
    assert api.add_callback_unless_wrapped_up(call_id=call.id, phone="13800138000", due_at=NOW, kind="next_day") is None


def test_a_call_not_wrapped_up_still_gets_the_desks_callbacks(app: App) -> None:
    call = stored_call(app)
    api = app.plugins.api_for("callbacks")
    made = api.add_callback_unless_wrapped_up(call_id=call.id, phone="13800138000", due_at=NOW, kind="next_day")
    again = api.add_callback_unless_wrapped_up(call_id=call.id, phone="13800138000", due_at=NOW, kind="next_day")
    assert made is not None and again is not None and made.id == again.id and made.state == "pending"


def test_the_wrap_up_and_the_desks_rules_racing_leave_only_what_the_agent_said(app: App) -> None:
    """The desk's rule adding a next-day callback at the very moment the agent saves: whichever gets the
    call's lock first, the end state is the agent's (one callback at their time, or none when unticked)."""
    api = app.plugins.api_for("callbacks")
    errors: list[BaseException] = []

    def rule(call_id: int, start: threading.Barrier) -> None:
        start.wait()
        api.add_callback_unless_wrapped_up(call_id=call_id, phone="13800138000", due_at=NOW, kind="next_day")

    def agent(call_id: int, start: threading.Barrier, wanted: bool) -> None:
        start.wait()
        try:
            wrap_up = typed(next_day_callback=wanted, category="咨询")
            save_wrap_up(
                app.database, app.settings, call_id=call_id, form=wrap_up, agent="1001", publish=Published(app), now=NOW
            )
        except BaseException as exc:
            errors.append(exc)

    for round_ in range(16):
        wanted = round_ % 2 == 0
        call = stored_call(app, sip_call_id=f"race-{round_}@x")
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=rule, args=(call.id, start)),
            threading.Thread(target=agent, args=(call.id, start, wanted)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        live = [(c.owner_extension, c.due_at) for c in callbacks_of(app, call.id) if c.state == "pending"]
        assert live == ([("1001", local("2026-11-24 14:30"))] if wanted else []), round_
    assert app.plugins.bus.drain(30)


# ---------------------------------------------------------------------------------- the callback it closes


def test_the_callback_a_call_was_made_for_is_closed_missed_then_done(app: App) -> None:
    book = CallbackBook(app.database, app.settings)
    due = datetime.now(UTC) - timedelta(minutes=1)
    promised = book.add(phone="13800138000", due_at=due, kind="next_day", reason="次日回访 工单1")
    assert book.fire(promised.id) is not None and book.start_attempt(promised.id) is not None  # the agent dials
    dialled = stored_call(app, sip_call_id="callback@x", direction="outbound")
    form = typed(category="咨询", next_day_callback=False, closes_callback_id=promised.id, callback_outcome="missed")

    record, published = wrap(app, dialled.id, form)
    retried = book.get(promised.id)
    assert (retried.state, retried.attempts, retried.last_outcome) == ("pending", 1, "missed")
    assert retried.due_at == due + timedelta(minutes=app.settings.callbacks.retry_spacing_minutes)
    assert (record.closed_callback_id, record.closed_callback_outcome) == (promised.id, "missed")
    assert [hook for hook, _ in published] == ["call_wrapped_up"]  # still open: nothing closed

    wrap(app, dialled.id, form)  # saved again: the same miss is not counted twice
    assert book.get(promised.id).attempts == 1

    _, published = wrap(app, dialled.id, form.model_copy(update={"callback_outcome": "done"}))
    closed = book.get(promised.id)
    assert closed.state == "done" and closed.attempts == 2 and "已派单给售后二组" in closed.note
    assert [hook for hook, _ in published] == ["call_wrapped_up", "callback_closed"]
    assert [e["callback"].state for e in events(app, "callback_closed")] == ["done"]
    with pytest.raises(WrapUpError) as refused:
        wrap(app, dialled.id, form)  # done cannot become missed
    assert refused.value.errors == {"callback_outcome": f"回访任务 {promised.id} 已记为已回访，不能改为未联系上"}

    other = stored_call(app, sip_call_id="other@x", direction="outbound")
    with pytest.raises(WrapUpError) as refused:
        wrap(app, other.id, form.model_copy(update={"callback_outcome": "done"}))
    assert refused.value.errors == {"closes_callback_id": f"回访任务 {promised.id} 已完成，不能再关闭"}
    assert callbacks_of(app, dialled.id) == [] and not events(app, "ticket_created")  # placed calls: no ticket


# ------------------------------------------------------------------------------------------------ replay


def test_a_wrap_up_a_plugin_missed_is_replayed_as_it_was(app: App) -> None:
    flaky = app.plugins.pm.get_plugin("flaky")
    flaky.FAIL[0] = True
    call = stored_call(app)
    record, published = wrap(app, call.id, typed())
    [(_, arguments)] = published
    assert decode_event("call_wrapped_up", encode_event("call_wrapped_up", arguments)) == arguments
    [kept] = app.plugins.undelivered.pending("flaky")
    assert kept.hook == "call_wrapped_up" and decode_event(kept.hook, kept.payload) == arguments
    flaky.FAIL[0] = False
    result = app.plugins.dispatcher.replay("flaky")
    assert len(result.delivered) == 1 and result.failed == {}
    assert flaky.RECEIVED == [(arguments["call"], record)]
