"""Saving a wrap-up (话后处理): the call, the customer, the callbacks, in one transaction, then the event.

Why one transaction: the agent's one click promises the customer something (a call back tomorrow, a
complaint followed up within 24 hours). If any part could be kept without the rest, the desk would show a
call as wrapped up whose callback was never made. So everything is written in one database transaction and
the event is published only after it commits; any failure rolls it all back and the agent is told to try
again (:class:`WrapUpNotSaved`).

Why the wrap-up decides the callbacks: the desk's own rules (``scheduling.after_calls``) promise callbacks
from the category the machine guessed when the call ended; the agent knows better. A wrapped-up call's
next-day and complaint callbacks are therefore the wrap-up's: an automatic one already made is taken over
(moved to the agent's time, owned by the agent) rather than doubled, one the agent did not ask for is
cancelled, and the automatic rules make none for the call afterwards (``PluginAPI.
add_callback_unless_wrapped_up``, which takes the same call-row lock first). Saving again (the agent
corrects a typo) updates the same rows: callbacks are unique per call and kind.

Locking: the first statement of the transaction locks the call's row (``SELECT ... FOR UPDATE`` on
PostgreSQL) and the first write follows at once (on SQLite that takes the database's write lock), so
every callback read after it is current and no automatic callback can slip in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from contactcenter.callbacks.book import OPEN_STATES, CallbackBook, CallbackError, callback_record
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.phones import phone_key
from contactcenter.records import CallbackRecord, CallRecord, WrapUpRecord
from contactcenter.settings import Settings
from contactcenter.storage.calls import CALL_FIELDS
from contactcenter.storage.customers import upsert_customer
from contactcenter.storage.database import Database
from contactcenter.storage.models import Call, Callback, Customer, Ticket
from contactcenter.wrap_up.complaint_verdict import hold_to_complaint_limit, rules_in_force
from contactcenter.wrap_up.form import (
    STATE_NAMES,
    WrapUpError,
    WrapUpForm,
    WrapUpNotSaved,
    check_form,
    message,
)

log = logging.getLogger(__name__)

PROMISED_KINDS = ("next_day", "complaint")  # the callbacks a wrap-up decides; others (survey, ...) it leaves
REASON_CHARS = 60  # of the purpose, in a callback's reason


def call_record(row: Call, caller_name: str = "") -> CallRecord:
    """The record plugins get for a stored call (the fields ``storage.calls.save_call`` writes). The row
    keeps no caller name; pass the one the agent typed."""
    return CallRecord(
        id=row.id,
        sip_call_id=row.sip_call_id,
        agent_extension=row.agent.extension if row.agent is not None else "",
        caller_name=caller_name,
        **{name: getattr(row, name) for name in CALL_FIELDS},
    )


class _Lent:
    """Lends the wrap-up's transaction to a :class:`CallbackBook`, whose methods each open
    ``database.session()``: so a callback closed by the wrap-up is closed with the book's own rules (a miss
    retried after the spacing, failed after the last attempt) and still in the one transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @contextmanager
    def session(self) -> Iterator[Session]:
        yield self._session


@dataclass(frozen=True)
class _Saved:
    call: CallRecord
    wrap_up: WrapUpRecord
    closed: CallbackRecord | None  # the callback this save closed or counted a miss of, if it changed it


def save_wrap_up(
    database: Database,
    settings: Settings,
    *,
    call_id: int,
    form: WrapUpForm,
    agent: str,
    publish: Callable[..., None],
    now: datetime | None = None,
) -> WrapUpRecord:
    """Check the form, save it to the call, the customer and the callbacks in one transaction, then publish
    ``call_wrapped_up`` (and ``callback_closed`` when the callback this call was made for closed).

    ``agent`` is the extension of the agent saving it (``wrapped_up_by``; ``agent:<it>`` in the customer's
    history; the owner of the callbacks promised). Raises :class:`WrapUpError` (field → message in Chinese)
    for anything the agent can fix, and :class:`WrapUpNotSaved` when the database failed; in both cases
    nothing was written and nothing published.
    """
    now = now or datetime.now(UTC)
    agent = agent.strip()
    if not agent or len(agent) > 100:
        raise WrapUpError({"form": message("agent_missing")})
    form = check_form(form, settings, now=now)
    for attempt in (1, 2):
        try:
            with database.session() as session:
                saved = _save(session, settings, call_id, form, agent, now)
            break
        except WrapUpError:
            raise
        except IntegrityError as exc:
            # The desk's rules made a callback of this call at the same moment, before our lock: the
            # second pass finds it and takes it over.
            if attempt == 2:
                raise _not_saved(call_id, exc) from exc
            log.info("wrap-up of call %s met a callback made meanwhile; saving again", call_id)
        except SQLAlchemyError as exc:
            raise _not_saved(call_id, exc) from exc
    publish("call_wrapped_up", call=saved.call, wrap_up=saved.wrap_up)
    if saved.closed is not None and saved.closed.state in ("done", "failed"):
        publish("callback_closed", callback=saved.closed)
    return saved.wrap_up


def _not_saved(call_id: int, exc: SQLAlchemyError) -> WrapUpNotSaved:
    log.error("wrap-up of call %s not saved: %s", call_id, exc)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    return WrapUpNotSaved(reason)


def _save(session: Session, settings: Settings, call_id: int, form: WrapUpForm, agent: str, now: datetime) -> _Saved:
    call = session.scalar(select(Call).where(Call.id == call_id).with_for_update())
    if call is None:
        raise WrapUpError({"form": message("call_unknown", value=call_id)})
    corrected = call.wrapped_up_at is not None
    call.purpose, call.category, call.notes, call.resolution = form.purpose, form.category, form.notes, form.resolution
    call.complaint, call.wrapped_up_at, call.wrapped_up_by = form.complaint, now, agent
    session.flush()  # the first write: from here on no other writer gets between our reads and our writes

    customer = _file_customer(session, form, agent)
    if customer is not None:
        call.customer_id = customer.id
    book = CallbackBook(cast(Database, _Lent(session)), settings)
    closed = _close_callback(session, book, call, form, now) if form.closes_callback_id is not None else None
    promised, cancelled = _promise_callbacks(session, book, settings, call, form, agent, now)
    if form.complaint and (rules := rules_in_force(session, settings)) is not None:
        hold_to_complaint_limit(session, call, rules)
    session.flush()
    wrap_up = WrapUpRecord(
        call_id=call.id,
        sip_call_id=call.sip_call_id,
        agent_extension=call.agent.extension if call.agent is not None else "",
        caller_name=form.caller_name,
        company=form.company,
        phone=form.phone,
        salutation=form.salutation,
        customer_id=call.customer_id,
        category=form.category,
        purpose=form.purpose,
        notes=form.notes,
        resolution=form.resolution,
        complaint=form.complaint,
        callbacks=tuple(callback_record(row) for row in promised),
        cancelled_callback_ids=tuple(cancelled),
        closed_callback_id=form.closes_callback_id,
        closed_callback_outcome=form.callback_outcome,
        wrapped_up_at=now,
        wrapped_up_by=agent,
        corrected=corrected,
    )
    return _Saved(call_record(call, form.caller_name), wrap_up, closed)


def _file_customer(session: Session, form: WrapUpForm, agent: str) -> Customer | None:
    """The customer with the typed number, created or corrected with what was typed (the change kept in
    their history). A field left empty is "not given": a wrap-up never blanks what the record knew. No
    number, no customer: a record nobody can find again helps nobody."""
    if not phone_key(form.phone):
        return None
    given = {"name": form.caller_name, "company": form.company, "salutation": form.salutation}
    customer, _ = upsert_customer(
        session, phone=form.phone, values={k: v for k, v in given.items() if v}, changed_by=f"agent:{agent}"
    )
    return customer


def closing_marker(call_id: int) -> str:
    """Written into the note of the callback a wrap-up closed (or the desk closed for a wrap-up never
    saved), so that saving the wrap-up again does not count the same attempt twice."""
    return f"[话后处理 通话{call_id}]"


def _close_callback(
    session: Session, book: CallbackBook, call: Call, form: WrapUpForm, now: datetime
) -> CallbackRecord | None:
    """Close the callback this call was made for: ``done``, or a ``missed`` attempt (pending again after
    the spacing, failed after the last). The changed callback, or None when a correction changes nothing."""
    callback_id = form.closes_callback_id
    row = session.get(Callback, callback_id, with_for_update=True)
    if row is None:
        raise WrapUpError({"closes_callback_id": message("callback_unknown", value=callback_id)})
    marker = closing_marker(call.id)
    closed_before = marker in row.note
    try:
        if form.callback_outcome == "done":
            if closed_before and row.state == "done":
                return None
            if row.state not in OPEN_STATES:
                raise WrapUpError(
                    {"closes_callback_id": message("callback_closed", value=row.id, state=STATE_NAMES[row.state])}
                )
            return book.done(row.id, note=f"{marker} {form.resolution or form.purpose}".strip())
        if closed_before:
            if row.state == "done":
                raise WrapUpError({"callback_outcome": message("callback_done_already", value=row.id)})
            return None  # this call's miss is counted already
        if row.state not in OPEN_STATES:
            raise WrapUpError(
                {"closes_callback_id": message("callback_closed", value=row.id, state=STATE_NAMES[row.state])}
            )
        book.missed(row.id, "missed", now)
        row.note = f"{row.note} {marker}".strip()
        session.flush()
        return callback_record(row)
    except CallbackError as exc:  # the book's own refusal, should the state differ from what we read
        raise WrapUpError({"closes_callback_id": str(exc)}) from exc


def _callback_phone(call: Call, form: WrapUpForm) -> str:
    """The number to call back: the one that called when the agent typed the same number (the network's
    spelling is known to dial), else the typed one as it is dialled at home (``phone_key``)."""
    typed = phone_key(form.phone)
    if typed and typed != phone_key(call.remote_number):
        return typed
    return call.remote_number or typed


def _promise_callbacks(
    session: Session,
    book: CallbackBook,
    settings: Settings,
    call: Call,
    form: WrapUpForm,
    agent: str,
    now: datetime,
) -> tuple[list[Callback], list[int]]:
    """Make, take over or cancel the call's next-day and complaint callbacks as the form says; the rows
    promised and the ids cancelled."""
    policy = settings.callbacks
    about = form.purpose.replace("\n", " ")[:REASON_CHARS]
    wanted: dict[str, tuple[datetime, datetime | None, str]] = {}
    if form.next_day_callback and form.next_day_at is not None:
        wanted["next_day"] = (form.next_day_at, None, f"次日回访 通话{call.id}：{about}".rstrip("："))
    if form.complaint and policy.after_complaint:
        calendar = WorkCalendar(policy, settings.general.timezone)
        first_try, promised_by = calendar.complaint_callback(call.ended_at or now, policy.complaint_within_hours)
        wanted["complaint"] = (first_try, promised_by, f"投诉回访 通话{call.id}：{about}".rstrip("："))
    phone = _callback_phone(call, form)
    if wanted and not phone:
        raise WrapUpError({"phone": message("phone_needed")})
    ticket_ids = list(session.scalars(select(Ticket.id).where(Ticket.call_id == call.id).order_by(Ticket.id)))
    made_for_call = Callback.call_id == call.id
    if ticket_ids:
        made_for_call = or_(made_for_call, Callback.ticket_id.in_(ticket_ids))
    promised: list[Callback] = []
    cancelled: list[int] = []
    for kind in PROMISED_KINDS:
        if kind == "complaint" and form.complaint and not policy.after_complaint:
            continue  # the company makes no complaint follow-ups ([callbacks] after_complaint): leave them be
        rows = list(
            session.scalars(
                select(Callback).where(made_for_call, Callback.kind == kind).order_by(Callback.id).with_for_update()
            )
        )
        if kind in wanted:
            due, deadline, reason = wanted[kind]
            row = rows.pop(0) if rows else None
            if row is None:
                row = Callback(
                    phone=phone,
                    reason=reason,
                    kind=kind,
                    call_id=call.id,
                    ticket_id=ticket_ids[0] if ticket_ids else None,
                    customer_id=call.customer_id,
                    owner_extension=agent,
                    owner_only=False,
                    due_at=due,
                    deadline_at=deadline,
                    timezone=settings.general.timezone,
                    max_attempts=policy.max_attempts,
                    spacing_minutes=policy.retry_spacing_minutes,
                    state="pending",
                )
                session.add(row)
            elif row.state in ("pending", "due", "cancelled"):  # one dialled or closed already stays as it was
                row.phone, row.reason, row.owner_extension = phone, reason, agent
                row.customer_id, row.deadline_at = call.customer_id, deadline
                if row.state == "cancelled" or row.due_at != due:
                    row.state, row.due_at, row.fired_at, row.closed_at = "pending", due, None, None
            promised.append(row)
        for other in rows:
            if other.state in ("pending", "due"):
                book.cancel(other.id, note=f"话后处理取消（通话{call.id}）")
                cancelled.append(other.id)
    session.flush()
    for row in promised:
        session.refresh(row)
    return promised, cancelled
