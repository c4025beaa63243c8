"""What the agent types after a call (话后处理), the checks it must pass, and the form prefilled for them.

The form is checked in two steps, so that every problem reaches the agent in Chinese and next to its field:

- :class:`WrapUpForm` only parses: types, the empty strings and nulls a web form sends, line endings
  (browsers send a textarea's lines as CRLF). :meth:`WrapUpForm.from_input` turns what pydantic refuses
  (a salutation not offered, a time that is no time) into :class:`WrapUpError` too.
- :func:`check_form` applies the desk's rules: ``[agent] required_fields`` and ``categories``, the length of
  each column, the working calendar for the callback time, and the phone number by the numbering plan
  (:func:`contactcenter.phones.phone_problem`, as the customer import, the CLI and the desktop's customer
  edit check it). It collects one message per field so the page can mark them all at once, and it never
  shortens or silently mends what was typed: a note too long is refused and the agent decides what to cut.

The short messages live in :data:`MESSAGES`, one table, so they are worded (and can be reworded) together.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.callbacks.book import OPEN_STATES
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.phones import clean_phone, phone_problem
from contactcenter.settings import Settings
from contactcenter.storage.customers import find_customer
from contactcenter.storage.models import Call, Callback, Ticket

Salutation = Literal["", "先生", "女士"]
CallbackOutcome = Literal["done", "missed"]

#: What the agent sees each field called (the desktop's labels).
LABELS = {
    "caller_name": "来电人姓名",
    "company": "公司",
    "phone": "电话",
    "salutation": "称呼",
    "category": "类别",
    "purpose": "来电目的",
    "notes": "记录要点",
    "resolution": "处理结果",
    "complaint": "投诉",
    "next_day_callback": "次日回访",
    "next_day_at": "回访时间",
    "closes_callback_id": "回访任务",
    "callback_outcome": "回访结果",
    "form": "表单",
}

#: Every message the wrap-up shows, by key; ``{label}`` is the field's name from :data:`LABELS`.
MESSAGES = {
    "required": "请填写{label}",
    "too_long": "{label}最多 {limit} 个字，现在有 {length} 个字，请删减后再保存",
    "control": "{label}含有不可见的控制字符，请删除后再保存",
    "invalid": "{label}格式不正确",
    "unknown_field": "表单中有不认识的字段：{value}",
    # why a typed phone number is refused is phone_problem's to say (contactcenter.phones): one check, every way in
    "phone_needed": "回访需要电话号码，请填写电话",
    "salutation": "称呼只能是“先生”“女士”或不填",
    "category_missing": "请选择类别",
    "category_unknown": "类别“{value}”不在可选的类别中（{choices}）",
    "time_invalid": "回访时间格式不正确，应为 年-月-日 时:分",
    "time_past": "回访时间 {value} 已经过去，请选择以后的时间",
    "time_day_off": "{value} 不是工作日，请选择工作日 {start}–{end} 之间的时间（最近可选：{suggestion}）",
    "time_hours": "回访时间 {value} 不在工作时间 {start}–{end} 之内（最近可选：{suggestion}）",
    "outcome_invalid": "回访结果只能是“已回访”或“未联系上”",
    "outcome_missing": "请选择本次回访的结果",
    "callback_missing": "没有指明要关闭的回访任务",
    "callback_unknown": "回访任务 {value} 不存在",
    "callback_closed": "回访任务 {value} 已{state}，不能再关闭",
    "callback_done_already": "回访任务 {value} 已记为已回访，不能改为未联系上",
    "call_unknown": "通话 {value} 不存在",
    "agent_missing": "缺少坐席工号，无法保存",
    "not_saved": "数据库出错，话后处理没有保存（{reason}），请稍后重试",
}

#: A callback's closed states as the agent reads them.
STATE_NAMES = {"done": "完成", "failed": "失败（次数已用完）", "cancelled": "取消"}

#: The longest each text may be: the database column's size, and for free text a page of writing.
LIMITS = {"caller_name": 100, "company": 200, "phone": 32, "purpose": 2000, "notes": 2000, "resolution": 2000}
MULTILINE = ("purpose", "notes", "resolution")
TEXT_FIELDS = ("caller_name", "company", "phone", "salutation", "category", "purpose", "notes", "resolution")
OPTIONAL_FIELDS = ("next_day_at", "closes_callback_id", "callback_outcome")
# Explicit bidirectional embeddings, overrides and isolates: invisible, and they reorder what a reader sees.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class WrapUpError(ValueError):
    """The wrap-up was not saved: ``errors`` maps each field at fault (``"form"`` for the whole form) to a
    message in Chinese for the agent."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("话后处理没有保存：" + "；".join(self.errors.values()))


class WrapUpNotSaved(WrapUpError):
    """The database failed the save (nothing of it was kept): the agent may simply try again. A
    :class:`WrapUpError` so that a page showing form errors shows this one too, under ``"form"``."""

    def __init__(self, reason: str) -> None:
        super().__init__({"form": MESSAGES["not_saved"].format(reason=reason)})


def message(key: str, field: str = "form", **values: Any) -> str:
    return MESSAGES[key].format(label=LABELS.get(field, field), **values)


class WrapUpForm(BaseModel):
    """What the agent typed. ``next_day_at`` may be aware or local wall time in ``[general] timezone``;
    ``closes_callback_id`` with ``callback_outcome`` closes the callback this call was made for."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    caller_name: str = ""
    company: str = ""
    phone: str = ""
    salutation: Salutation = ""
    category: str = ""
    purpose: str = ""
    notes: str = ""
    resolution: str = ""
    complaint: bool = False
    next_day_callback: bool = False
    next_day_at: datetime | None = None
    closes_callback_id: int | None = None
    callback_outcome: CallbackOutcome | None = None

    @model_validator(mode="before")
    @classmethod
    def _as_a_web_form_sends_it(cls, data: Any) -> Any:
        """null for an empty text, "" for an unset time or callback, CRLF line ends: what pages send."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for name in TEXT_FIELDS:
            if name in data and data[name] is None:
                data[name] = ""
        for name in MULTILINE:
            if isinstance(data.get(name), str):
                data[name] = data[name].replace("\r\n", "\n").replace("\r", "\n")
        for name in OPTIONAL_FIELDS:
            if isinstance(data.get(name), str) and not data[name].strip():
                data[name] = None
        return data

    @classmethod
    def from_input(cls, data: Mapping[str, Any]) -> WrapUpForm:
        """The form from what a page posted; anything that does not parse is a :class:`WrapUpError` with
        the field's message in Chinese (``model_validate`` would raise pydantic's English one)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "form"
                if error["type"] == "extra_forbidden":
                    errors.setdefault("form", message("unknown_field", value=field))
                elif field == "salutation":
                    errors.setdefault(field, message("salutation"))
                elif field == "callback_outcome":
                    errors.setdefault(field, message("outcome_invalid"))
                elif field == "next_day_at":
                    errors.setdefault(field, message("time_invalid"))
                else:
                    errors.setdefault(field, message("invalid", field))
            raise WrapUpError(errors) from None


def _control_character(value: str, multiline: bool) -> bool:
    """Whether ``value`` holds a character nobody types on purpose: ASCII and C1 controls (a newline or
    tab only in a multi-line field), lone surrogates, bidirectional overrides, line separators."""
    for char in value:
        if multiline and char in "\n\t":
            continue
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or char in _BIDI_CONTROLS or (not multiline and category in ("Zl", "Zp")):
            return True
    return False


def _salutation(value: str) -> Salutation:
    """A stored salutation as the form offers it (an imported record may hold anything)."""
    if value == "先生":
        return "先生"
    if value == "女士":
        return "女士"
    return ""


def _local_text(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def check_form(form: WrapUpForm, settings: Settings, *, now: datetime | None = None) -> WrapUpForm:
    """The form as it will be saved, or :class:`WrapUpError` with every field at fault.

    What it settles rather than refuses: a complaint category (``[callbacks] complaint_categories``) is a
    complaint whether or not the box was ticked (the automatic rules treat it so, and the reviewers' filter
    must find it); a 次日回访 ticked without a time is the next working day at ``next_day_time``; a local
    time is in ``[general] timezone``; the time of a 次日回访 not ticked is dropped.
    """
    now = now or datetime.now(UTC)
    zone = ZoneInfo(settings.general.timezone)
    policy = settings.callbacks
    errors: dict[str, str] = {}

    def fail(field: str, key: str, **values: Any) -> None:
        errors.setdefault(field, message(key, field, **values))

    for field, limit in LIMITS.items():
        value = getattr(form, field)
        if _control_character(value, field in MULTILINE):
            fail(field, "control")
        elif len(value) > limit:
            fail(field, "too_long", limit=limit, length=len(value))
    for field in settings.agent.required_fields:
        if not getattr(form, field):
            fail(field, "required")
    if form.phone and "phone" not in errors:
        problem = phone_problem(form.phone)  # the numbering plan, as the import, the CLI and the desktop check
        if problem is not None:
            errors["phone"] = problem.zh
    categories = settings.agent.categories
    if not form.category:
        fail("category", "category_missing")
    elif form.category not in categories:
        fail("category", "category_unknown", value=form.category, choices="、".join(categories))

    next_day_at = None
    if form.next_day_callback:
        calendar = WorkCalendar(policy, settings.general.timezone)
        wanted = form.next_day_at or calendar.next_day_callback(now)
        next_day_at = (wanted if wanted.tzinfo else wanted.replace(tzinfo=zone)).astimezone(zone)
        shown = _local_text(next_day_at, zone)
        hours = {"start": policy.working_hours_start, "end": policy.working_hours_end}
        if next_day_at <= now:
            fail("next_day_at", "time_past", value=shown)
        elif not calendar.is_working_time(next_day_at):
            key = "time_hours" if calendar.is_working_day(next_day_at.date()) else "time_day_off"
            suggestion = _local_text(calendar.next_working_moment(next_day_at), zone)
            fail(
                "next_day_at",
                key,
                value=shown if key == "time_hours" else str(next_day_at.date()),
                suggestion=suggestion,
                **hours,
            )

    if form.closes_callback_id is not None and form.callback_outcome is None:
        fail("callback_outcome", "outcome_missing")
    if form.callback_outcome is not None and form.closes_callback_id is None:
        fail("closes_callback_id", "callback_missing")
    if errors:
        raise WrapUpError(errors)
    return form.model_copy(
        update={
            "complaint": form.complaint or form.category in policy.complaint_categories,
            "next_day_at": next_day_at,
            "phone": clean_phone(form.phone),  # full-width digits as ASCII, as every way in stores it
        }
    )


# ---------------------------------------------------------------------------------------------- prefilled


def call_ticket(session: Session, call_id: int) -> Ticket | None:
    """The call's ticket: the first one made for it (by the ticket plugin when the call ended)."""
    return session.scalars(select(Ticket).where(Ticket.call_id == call_id).order_by(Ticket.id).limit(1)).first()


def wrap_up_defaults(session: Session, settings: Settings, call_id: int, *, now: datetime | None = None) -> WrapUpForm:
    """The form as the agent first sees it, so that most calls need only the purpose and a note.

    From the customer record (found by the call's number) the name, company and salutation; the phone is
    the number that called, if it is one the form takes (else the record's). The category is the call's,
    else its automatic ticket's (when it is one of ``[agent] categories``); a complaint category ticks 投诉,
    a service category (报修) ticks 次日回访, at the next working day (调休 included) at ``next_day_time``.
    A call wrapped up before shows what was saved, so the agent corrects rather than retypes.
    """
    now = now or datetime.now(UTC)
    call = session.get(Call, call_id)
    if call is None:
        raise WrapUpError({"form": message("call_unknown", value=call_id)})
    zone = ZoneInfo(settings.general.timezone)
    policy = settings.callbacks
    calendar = WorkCalendar(policy, settings.general.timezone)
    customer = call.customer or find_customer(session, call.remote_number)
    ticket = call_ticket(session, call.id)
    # the number that called, unless it is none the form would take (a SIP user of letters, 31 digits): the
    # agent would be refused a number they never typed
    phone = call.remote_number if phone_problem(call.remote_number) is None else (customer.phone if customer else "")
    next_day_at = calendar.next_day_callback(now)
    if call.wrapped_up_at is not None:
        category, purpose, complaint = call.category or "", call.purpose, call.complaint
        promised = session.scalar(
            select(Callback).where(
                Callback.call_id == call.id, Callback.kind == "next_day", Callback.state.in_(OPEN_STATES)
            )
        )
        next_day_callback = promised is not None
        next_day_at = promised.due_at if promised is not None else next_day_at
    else:
        category = call.category or (ticket.category if ticket is not None else "")
        category = category if category in settings.agent.categories else ""
        purpose = call.purpose
        complaint = category in policy.complaint_categories
        next_day_callback = policy.after_service_call and category in policy.service_categories
    return WrapUpForm(
        caller_name=customer.name if customer is not None and customer.name else (ticket.caller_name if ticket else ""),
        company=customer.company if customer is not None else "",
        phone=phone,
        salutation=_salutation(customer.salutation if customer is not None else ""),
        category=category,
        purpose=purpose,
        notes=call.notes,
        resolution=call.resolution,
        complaint=complaint,
        next_day_callback=next_day_callback,
        next_day_at=next_day_at.astimezone(zone),
    )
