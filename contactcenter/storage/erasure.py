"""An erasure request (PIPL art. 47): everything the desk holds about one telephone number, removed.

Found by the number in any spelling (:func:`contactcenter.phones.phone_key`) and by the customer record it
belongs to:

- the customer record and its change history: deleted;
- the calls from or to the number or linked to the customer: recording deleted, transcript deleted, the
  findings' quoted words removed, number, purpose, notes and resolution emptied; the score, verdict and
  findings stay (a QA count, about the agent), marked as erased;
- team-line calls: the number emptied;
- the tickets of those calls, of the customer or with the number: caller name, number, purpose, summary,
  resolution and escalation note emptied;
- the callbacks of those calls, tickets or the customer, or to the number: number, reason and note emptied;
  pending ones cancelled, so nobody calls an erased customer back;
- survey answers of those calls or callbacks: unlinked (the 1-5 score stays, for the agent's figures);
- the plugin outbox, undelivered plugin events and the live view: every message about those calls or
  naming the number, deleted;
- any other text that spells the number (another customer's notes and their change history, a review's
  comment, the access log's paths): the number replaced by ``[已删除]``.

All of it in one transaction, recording files deleted within it (see :mod:`personal_data`), and recorded
in ``data_removals`` without the number. Plugins erase what they hold themselves through the
``forget_customer`` hook (called by the command after this has committed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from contactcenter.phones import phone_key, remove_number
from contactcenter.storage.database import rows_changed
from contactcenter.storage.models import (
    AccessLog,
    Call,
    Callback,
    Customer,
    CustomerChange,
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
)
from contactcenter.storage.personal_data import CALLBACK_PERSONAL, TICKET_PERSONAL, Tally, remove_call_data

REMOVED_TEXT = "[已删除]"
OPEN_CALLBACKS = ("pending", "due")
LIVE_CALL = timedelta(hours=12)  # a call with no end this recent may still be going on


class ErasureRefused(Exception):
    """The request cannot be carried out now; the message says why in one line."""


def _with_number(session: Session, id_column: Any, column: Any, key: str) -> set[int]:
    """Ids of rows whose ``column`` is the number ``key`` in any spelling. The LIKE on the last digits keeps
    the scan to candidates; ``phone_key`` decides."""
    tail = key[-4:]
    rows = session.execute(select(id_column, column).where(column.contains(tail, autoescape=True)))
    return {row_id for row_id, value in rows if phone_key(value or "") == key}


def _mentions(value: Any, key: str, sip_call_ids: set[str]) -> bool:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return remove_number(text, key, REMOVED_TEXT) != text or any(sip in text for sip in sip_call_ids)


def _scrub_texts(session: Session, model: Any, columns: Sequence[Any], key: str, tally: Tally) -> None:
    """Replace the number in the free text ``columns`` of ``model``, wherever it is spelled."""
    tail = key[-4:]
    condition = or_(*(column.contains(tail, autoescape=True) for column in columns))
    for row in session.scalars(select(model).where(condition)):
        changed = False
        for column in columns:
            before = getattr(row, column.key)
            after = remove_number(before or "", key, REMOVED_TEXT)
            if after != (before or ""):
                setattr(row, column.key, after)
                changed = True
        if changed:
            tally.add("texts")
    session.flush()


def _scrubbed(value: Any, key: str) -> Any:
    """``value`` (JSON: strings, lists, dicts) with the number cut out of every string in it."""
    if isinstance(value, str):
        return remove_number(value, key, REMOVED_TEXT)
    if isinstance(value, list):
        return [_scrubbed(item, key) for item in value]
    if isinstance(value, dict):
        return {name: _scrubbed(item, key) for name, item in value.items()}
    return value


def _scrub_history(session: Session, key: str, tally: Tally) -> None:
    """Other customers' change history: the number as a before or after value (a note that gave it)."""
    for change in session.scalars(select(CustomerChange)):
        cleaned = _scrubbed(change.change, key)
        if cleaned != change.change:
            session.execute(update(CustomerChange).where(CustomerChange.id == change.id).values(change=cleaned))
            tally.add("texts")


def forget_number(
    session: Session,
    number: str,
    data_dir: Path,
    now: datetime,
    *,
    dry_run: bool = False,
    done_by: str = "",
    reference: str = "",
) -> Tally:
    """Remove the personal data of the customer with ``number``; see the module's docstring. Refused while
    a call with the number may be in progress (its record would bring the number back when it ends)."""
    key = phone_key(number)
    if len(key) < 3:
        raise ErasureRefused(f"{number[:40]!r} is not a phone number: it needs at least three digits")
    tally = Tally()

    call_ids = _with_number(session, Call.id, Call.remote_number, key)
    customer_ids = set(session.scalars(select(Customer.id).where(Customer.phone_key == key)))
    customer_ids |= _with_number(session, Customer.id, Customer.phone, key)
    if customer_ids:
        call_ids |= set(session.scalars(select(Call.id).where(Call.customer_id.in_(customer_ids))))
    live = session.scalar(
        select(Call.id)
        .where(Call.id.in_(call_ids), Call.ended_at.is_(None), Call.invited_at > now - LIVE_CALL)
        .limit(1)
    )
    if live is not None:
        raise ErasureRefused(
            f"call {live} with this number has not ended yet; erase after it ends (its record would bring the "
            "number back)"
        )
    sip_call_ids = set(session.scalars(select(Call.sip_call_id).where(Call.id.in_(call_ids))))
    team_ids = _with_number(session, TeamCall.id, TeamCall.remote_number, key)
    sip_call_ids |= set(session.scalars(select(TeamCall.sip_call_id).where(TeamCall.id.in_(team_ids))))

    ticket_ids = _with_number(session, Ticket.id, Ticket.caller_phone, key)
    ticket_ids |= set(
        session.scalars(
            select(Ticket.id).where(or_(Ticket.call_id.in_(call_ids), Ticket.customer_id.in_(customer_ids)))
        )
    )
    callback_ids = _with_number(session, Callback.id, Callback.phone, key)
    callback_ids |= set(
        session.scalars(
            select(Callback.id).where(
                or_(
                    Callback.call_id.in_(call_ids),
                    Callback.ticket_id.in_(ticket_ids),
                    Callback.customer_id.in_(customer_ids),
                )
            )
        )
    )

    remove_call_data(session, sorted(call_ids), ("personal",), "erasure", data_dir, tally, dry_run=dry_run)
    tally.add(
        "team_calls",
        rows_changed(session, update(TeamCall).where(TeamCall.id.in_(team_ids)).values(remote_number="")),
    )
    tally.add(
        "tickets",
        rows_changed(
            session,
            update(Ticket)
            .where(Ticket.id.in_(ticket_ids))
            .values(TICKET_PERSONAL)
            .execution_options(synchronize_session=False),
        ),
    )
    tally.add(
        "callbacks_cancelled",
        rows_changed(
            session,
            update(Callback)
            .where(Callback.id.in_(callback_ids), Callback.state.in_(OPEN_CALLBACKS))
            .values(state="cancelled", last_outcome="erased", closed_at=now)
            .execution_options(synchronize_session=False),
        ),
    )
    tally.add(
        "callbacks",
        rows_changed(
            session,
            update(Callback)
            .where(Callback.id.in_(callback_ids))
            .values(CALLBACK_PERSONAL)
            .execution_options(synchronize_session=False),
        ),
    )
    tally.add(
        "survey_answers",
        rows_changed(
            session,
            update(SurveyResponse)
            .where(or_(SurveyResponse.call_id.in_(call_ids), SurveyResponse.callback_id.in_(callback_ids)))
            .values(call_id=None, callback_id=None)
            .execution_options(synchronize_session=False),
        ),
    )
    if customer_ids:
        session.execute(update(Call).where(Call.customer_id.in_(customer_ids)).values(customer_id=None))
        tally.add(
            "customer_changes",
            rows_changed(session, delete(CustomerChange).where(CustomerChange.customer_id.in_(customer_ids))),
        )
        tally.add("customers", rows_changed(session, delete(Customer).where(Customer.id.in_(customer_ids))))

    queues: tuple[tuple[Any, str], ...] = ((OutboxMessage, "outbox_messages"), (UndeliveredEvent, "undelivered_events"))
    for model, what in queues:
        doomed = [row.id for row in session.scalars(select(model)) if _mentions(row.payload, key, sip_call_ids)]
        if doomed:
            tally.add(what, rows_changed(session, delete(model).where(model.id.in_(doomed))))
    doomed_live = [
        row.id
        for row in session.scalars(select(LiveEvent))
        if row.sip_call_id in sip_call_ids or _mentions(row.data, key, set())
    ]
    if doomed_live:
        tally.add("live_events", rows_changed(session, delete(LiveEvent).where(LiveEvent.id.in_(doomed_live))))

    _scrub_texts(session, Call, [Call.purpose, Call.notes, Call.resolution], key, tally)
    _scrub_texts(
        session, Ticket, [Ticket.purpose, Ticket.summary, Ticket.resolution, Ticket.escalation_note], key, tally
    )
    _scrub_texts(session, Callback, [Callback.reason, Callback.note], key, tally)
    _scrub_texts(session, Customer, [Customer.notes], key, tally)
    _scrub_texts(session, Review, [Review.comment], key, tally)
    _scrub_texts(session, Utterance, [Utterance.text], key, tally)
    _scrub_texts(session, RuleHit, [RuleHit.matched_text], key, tally)
    _scrub_texts(session, AccessLog, [AccessLog.target], key, tally)
    _scrub_history(session, key, tally)

    if not dry_run:
        session.add(DataRemoval(at=now, reason="erasure", done_by=done_by, reference=reference, counts=tally.as_dict()))
    return tally
