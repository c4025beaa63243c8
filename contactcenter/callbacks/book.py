"""The callback book: every callback's life in the ``callbacks`` table, which is the source of truth.

Each change of state is one conditional UPDATE (``WHERE state = ...``), so whichever process gets there
first wins and the others see zero rows changed: a reminder fires once even if two schedulers, a restart
and a sweep all reach it in the same second.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.records import CallbackRecord
from contactcenter.settings import Settings
from contactcenter.storage.database import Database, rows_changed
from contactcenter.storage.models import CALLBACK_KINDS, CALLBACK_STATES, Call, Callback

OPEN_STATES = ("pending", "due", "in_progress")
REACHED = "answered"


class _WrappedUpMeanwhile(Exception):
    """A wrap-up committed while a callback for its call was being made: that callback is rolled back."""


class CallbackError(Exception):
    """A change the callback's state does not allow (done twice, cancelled after done, no such callback)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _updated_row(session: Session, callback_id: int) -> Callback:
    """The row an UPDATE in this transaction has just changed."""
    row = session.get(Callback, callback_id)
    if row is None:
        raise CallbackError(f"callback {callback_id} was changed and then not found")
    return row


def callback_record(row: Callback) -> CallbackRecord:
    return CallbackRecord(
        id=row.id,
        phone=row.phone,
        reason=row.reason,
        kind=row.kind,
        state=row.state,
        due_at=row.due_at,
        deadline_at=row.deadline_at,
        timezone=row.timezone,
        owner_extension=row.owner_extension or None,
        owner_only=row.owner_only,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        last_outcome=row.last_outcome,
        note=row.note,
        call_id=row.call_id,
        ticket_id=row.ticket_id,
    )


@dataclass(frozen=True)
class CallbackFilter:
    states: Sequence[str] = ()
    kinds: Sequence[str] = ()
    owner: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool = False
    limit: int = 200


@dataclass(frozen=True)
class CallbackCounts:
    pending: int
    due: int
    overdue: int  # due (or past due and still pending) and not reached yet
    missed_deadline: int  # open past its promised deadline (complaints: 24 hours)


class CallbackBook:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings

    # ------------------------------------------------------------------------------------------- creating

    def add(
        self,
        *,
        phone: str,
        due_at: datetime,
        reason: str = "",
        kind: str = "manual",
        owner_extension: str = "",
        owner_only: bool = False,
        call_id: int | None = None,
        ticket_id: int | None = None,
        deadline_at: datetime | None = None,
    ) -> CallbackRecord:
        """Store a pending callback. One per call (or ticket) and kind: adding the same again (a replayed
        event) returns the one already there."""
        row = self._new_row(phone, due_at, reason, kind, owner_extension, owner_only, call_id, ticket_id, deadline_at)
        try:
            with self.database.session() as session:
                session.add(row)
                session.flush()
                return callback_record(row)
        except IntegrityError:
            existing = self.made_for(call_id, ticket_id, kind)
            if existing is None:
                raise
            return existing

    def add_unless_wrapped_up(
        self,
        *,
        call_id: int,
        phone: str,
        due_at: datetime,
        kind: str,
        reason: str = "",
        ticket_id: int | None = None,
        deadline_at: datetime | None = None,
        owner_extension: str = "",
        owner_only: bool = False,
    ) -> CallbackRecord | None:
        """:meth:`add` for a callback the desk's own rules promise for a call, unless the agent has wrapped
        the call up: the wrap-up has then decided which callbacks the call gets (and made them): None.

        Atomic with the wrap-up: it first locks the call's row (PostgreSQL), as the wrap-up does, and reads
        the call again after its own write (SQLite, where that write waits for the wrap-up's), so a wrap-up
        saved at the same moment either sees this callback and takes it over, or is seen here."""
        row = self._new_row(phone, due_at, reason, kind, owner_extension, owner_only, call_id, ticket_id, deadline_at)
        same = Callback.call_id == call_id
        if ticket_id is not None:
            same = or_(same, Callback.ticket_id == ticket_id)
        try:
            with self.database.session() as session:
                if session.scalar(select(Call.wrapped_up_at).where(Call.id == call_id).with_for_update()):
                    return None
                existing = session.scalar(select(Callback).where(same, Callback.kind == kind).limit(1))
                if existing is not None:
                    return callback_record(existing)
                session.add(row)
                session.flush()
                if session.scalar(select(Call.wrapped_up_at).where(Call.id == call_id)) is not None:
                    raise _WrappedUpMeanwhile  # rolls this callback back: the wrap-up's callbacks stand
                return callback_record(row)
        except _WrappedUpMeanwhile:
            return None
        except IntegrityError:
            existing_record = self.made_for(call_id, ticket_id, kind)
            if existing_record is None:
                raise
            return existing_record

    def _new_row(
        self,
        phone: str,
        due_at: datetime,
        reason: str,
        kind: str,
        owner_extension: str,
        owner_only: bool,
        call_id: int | None,
        ticket_id: int | None,
        deadline_at: datetime | None,
    ) -> Callback:
        """A pending callback checked and filled with the company's policy (attempts, spacing, time zone)."""
        if kind not in CALLBACK_KINDS:
            raise CallbackError(f"unknown kind {kind!r}; one of {', '.join(CALLBACK_KINDS)}")
        if not phone.strip():
            raise CallbackError("a callback needs a phone number")
        if due_at.tzinfo is None:
            raise CallbackError("due time without a time zone")
        policy = self.settings.callbacks
        return Callback(
            phone=phone.strip(),
            due_at=due_at,
            reason=reason,
            kind=kind,
            owner_extension=owner_extension,
            owner_only=owner_only and bool(owner_extension),
            call_id=call_id,
            ticket_id=ticket_id,
            deadline_at=deadline_at,
            timezone=self.settings.general.timezone,
            max_attempts=policy.max_attempts,
            spacing_minutes=policy.retry_spacing_minutes,
            state="pending",
        )

    def made_for(self, call_id: int | None, ticket_id: int | None, kind: str) -> CallbackRecord | None:
        """The callback of this kind already made for the call or the ticket, if any."""
        if call_id is None and ticket_id is None:
            return None
        source = Callback.call_id == call_id if call_id is not None else Callback.ticket_id == ticket_id
        with self.database.session() as session:
            row = session.scalar(select(Callback).where(source, Callback.kind == kind))
            return callback_record(row) if row is not None else None

    # ------------------------------------------------------------------------------------------- reading

    def get(self, callback_id: int) -> CallbackRecord:
        with self.database.session() as session:
            row = session.get(Callback, callback_id)
            if row is None:
                raise CallbackError(f"no callback {callback_id}")
            return callback_record(row)

    def list(self, where: CallbackFilter = CallbackFilter(), now: datetime | None = None) -> list[CallbackRecord]:
        now = now or utcnow()
        query = select(Callback).order_by(Callback.due_at, Callback.id).limit(where.limit)
        for state in where.states:
            if state not in CALLBACK_STATES:
                raise CallbackError(f"unknown state {state!r}; one of {', '.join(CALLBACK_STATES)}")
        if where.states:
            query = query.where(Callback.state.in_(where.states))
        if where.kinds:
            query = query.where(Callback.kind.in_(where.kinds))
        if where.owner is not None:
            query = query.where(Callback.owner_extension == where.owner)
        if where.due_before is not None:
            query = query.where(Callback.due_at < where.due_before)
        if where.due_after is not None:
            query = query.where(Callback.due_at >= where.due_after)
        if where.overdue:
            query = query.where(Callback.state.in_(("pending", "due")), Callback.due_at <= now)
        with self.database.session() as session:
            return [callback_record(row) for row in session.scalars(query)]

    def counts(self, now: datetime | None = None) -> CallbackCounts:
        now = now or utcnow()
        with self.database.session() as session:

            def count(*conditions) -> int:
                return session.scalar(select(func.count(Callback.id)).where(*conditions)) or 0

            return CallbackCounts(
                pending=count(Callback.state == "pending", Callback.due_at > now),
                due=count(Callback.state.in_(("due", "in_progress"))),
                overdue=count(Callback.state.in_(("pending", "due")), Callback.due_at <= now),
                missed_deadline=count(
                    Callback.state.in_(OPEN_STATES), Callback.deadline_at.is_not(None), Callback.deadline_at < now
                ),
            )

    def pending_due_times(self) -> dict[int, datetime]:
        """Every pending callback's due time: what the scheduler must have a job for."""
        with self.database.session() as session:
            return dict(
                session.execute(select(Callback.id, Callback.due_at).where(Callback.state == "pending")).tuples().all()
            )

    def unscheduled(self, limit: int = 1000) -> dict[int, datetime]:
        """Pending callbacks added or moved since the scheduler last scheduled them."""
        with self.database.session() as session:
            rows = session.execute(
                select(Callback.id, Callback.due_at)
                .where(
                    Callback.state == "pending",
                    or_(Callback.job_due_at.is_(None), Callback.job_due_at != Callback.due_at),
                )
                .limit(limit)
            ).tuples()
            return dict(rows.all())

    def mark_scheduled(self, due_times: dict[int, datetime]) -> None:
        """Note that the scheduler has a job for each callback at that due time (one executemany)."""
        if not due_times:
            return
        table = Callback.__table__
        if not isinstance(table, Table):  # typed FromClause: a class may map a join or subquery, ours maps a table
            raise TypeError(f"Callback is mapped to {table!r}, not a table")
        statement = (
            update(table)
            .where(table.c.id == bindparam("callback_id"), table.c.due_at == bindparam("due"))
            .values(job_due_at=bindparam("due"))
        )
        with self.database.session() as session:
            session.connection().execute(
                statement, [{"callback_id": callback_id, "due": due_at} for callback_id, due_at in due_times.items()]
            )

    # ------------------------------------------------------------------------------------------ changing

    def fire(self, callback_id: int, now: datetime | None = None) -> CallbackRecord | None:
        """pending → due, if it is pending and due: the record when this call made the change, None when
        it was not (already fired by someone else, done, cancelled, or moved later)."""
        now = now or utcnow()
        with self.database.session() as session:
            changed = rows_changed(
                session,
                update(Callback)
                .where(Callback.id == callback_id, Callback.state == "pending", Callback.due_at <= now)
                .values(state="due", fired_at=now, updated_at=now),
            )
            if changed != 1:
                return None
            return callback_record(_updated_row(session, callback_id))

    def overdue_pending(self, now: datetime | None = None, limit: int = 1000) -> builtins.list[int]:
        """Pending callbacks past their time (a job missed: a clock jump, a job lost with a crash)."""
        now = now or utcnow()
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(Callback.id)
                    .where(Callback.state == "pending", Callback.due_at <= now)
                    .order_by(Callback.due_at)
                    .limit(limit)
                )
            )

    def start_attempt(self, callback_id: int) -> CallbackRecord | None:
        """due → in_progress (the desk dials); None if someone else took it."""
        with self.database.session() as session:
            changed = rows_changed(
                session,
                update(Callback)
                .where(Callback.id == callback_id, Callback.state == "due")
                .values(state="in_progress", updated_at=utcnow()),
            )
            return callback_record(_updated_row(session, callback_id)) if changed == 1 else None

    def start_by_agent(self, callback_id: int) -> CallbackRecord | None:
        """pending or due → in_progress: an agent dials it from the desktop now, before or after it came due;
        None if it is not open or someone else is calling it."""
        with self.database.session() as session:
            changed = rows_changed(
                session,
                update(Callback)
                .where(Callback.id == callback_id, Callback.state.in_(("pending", "due")))
                .values(state="in_progress", updated_at=utcnow()),
            )
            return callback_record(_updated_row(session, callback_id)) if changed == 1 else None

    def give_back(self, callback_id: int) -> CallbackRecord | None:
        """in_progress → pending, due as before and no attempt counted: the agent stopped the dial before
        the customer answered, so nobody was called. None if it is not in progress."""
        with self.database.session() as session:
            changed = rows_changed(
                session,
                update(Callback)
                .where(Callback.id == callback_id, Callback.state == "in_progress")
                .values(state="pending", job_due_at=None, updated_at=utcnow()),
            )
            return callback_record(_updated_row(session, callback_id)) if changed == 1 else None

    def done(self, callback_id: int, note: str = "", outcome: str = REACHED) -> CallbackRecord:
        """The customer was reached: closed."""
        return self._close(callback_id, "done", outcome, note, count_attempt=True)

    def cancel(self, callback_id: int, note: str = "") -> CallbackRecord:
        return self._close(callback_id, "cancelled", "cancelled", note, count_attempt=False)

    def missed(self, callback_id: int, outcome: str, now: datetime | None = None) -> CallbackRecord:
        """An attempt that did not reach the customer (busy, no answer): pending again after the spacing,
        or failed once the attempts are used up."""
        now = now or utcnow()
        with self.database.session() as session:
            row = session.get(Callback, callback_id, with_for_update=True)
            if row is None:
                raise CallbackError(f"no callback {callback_id}")
            if row.state not in OPEN_STATES:
                raise CallbackError(f"callback {callback_id} is {row.state}, not open")
            row.attempts += 1
            row.last_outcome = outcome
            if row.attempts >= row.max_attempts:
                row.state, row.closed_at = "failed", now
            else:
                row.state = "pending"
                row.due_at = max(now, row.due_at) + timedelta(minutes=row.spacing_minutes)
            session.flush()
            return callback_record(row)

    def _close(self, callback_id: int, state: str, outcome: str, note: str, count_attempt: bool) -> CallbackRecord:
        now = utcnow()
        with self.database.session() as session:
            values: dict = dict(state=state, last_outcome=outcome, closed_at=now, updated_at=now)
            if note:
                values["note"] = note
            if count_attempt:
                values["attempts"] = Callback.attempts + 1
            changed = rows_changed(
                session,
                update(Callback).where(Callback.id == callback_id, Callback.state.in_(OPEN_STATES)).values(**values),
            )
            row = session.get(Callback, callback_id)
            if row is None:
                raise CallbackError(f"no callback {callback_id}")
            if changed != 1:
                raise CallbackError(f"callback {callback_id} is already {row.state}")
            session.refresh(row)
            return callback_record(row)

    def release_owner_only(self, now: datetime | None = None) -> int:
        """Owner-only callbacks overdue by ``owner_only_minutes`` become anyone's (as VICIdial's
        USERONLY → ANYONE move); returns how many."""
        now = now or utcnow()
        limit = now - timedelta(minutes=self.settings.callbacks.owner_only_minutes)
        with self.database.session() as session:
            return rows_changed(
                session,
                update(Callback)
                .where(Callback.owner_only.is_(True), Callback.state.in_(("pending", "due")), Callback.due_at <= limit)
                .values(owner_only=False, updated_at=now),
            )

    def reopen_stuck(self, older_than: timedelta, now: datetime | None = None) -> int:
        """in_progress rows whose dialler died (a crash mid-call) go back to due."""
        now = now or utcnow()
        with self.database.session() as session:
            return rows_changed(
                session,
                update(Callback)
                .where(and_(Callback.state == "in_progress", Callback.updated_at < now - older_than))
                .values(state="due", updated_at=now),
            )
