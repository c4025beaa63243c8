"""The typed API a plugin calls back into the desk with (the ``api`` hook argument).

Plugins get plain records and typed operations, never the telephony layer or the core's tables: what they
may read or change goes through here, so that the core keeps its invariants (one ticket per call and
plugin, ``ticket_created`` published, an outbox message claimed by one process at a time, times in UTC)
and can change its storage without breaking them.

- settings: ``api.settings``, ``api.options``, ``api.timezone``, ``api.now()``, ``api.stopping``;
- tickets: ``find_ticket``, ``create_ticket``, ``update_ticket``;
- callbacks: ``add_callback``, ``add_callback_unless_wrapped_up``, ``start_callback_attempt``,
  ``close_callback``;
- surveys: ``record_survey``, ``survey_invitations``;
- the persistent outbox to outside systems: ``outbox_put``, ``outbox_claim``, ``outbox_complete``,
  ``outbox_retry_later``, ``outbox_next_due``, ``outbox_items``;
- placing a call, in a process that has a phone: ``has_phone``, ``dial() -> DialOutcome`` with a
  :class:`Line`;
- the supervisors' live view: ``add_live_event``;
- ``session()``: a database session for **the plugin's own tables only**.

This module imports only downward (records, settings, storage, callbacks); the plugin host hands itself
in as :class:`PluginServices`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.callbacks.book import REACHED, CallbackBook
from contactcenter.records import CallbackRecord, CallRecord, SurveyRecord, TicketRecord
from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.storage.models import (
    Agent,
    Call,
    Callback,
    LiveEvent,
    OutboxMessage,
    SurveyResponse,
    Ticket,
)

TICKET_FIELDS = (
    "call_id",
    "customer_id",
    "caller_name",
    "caller_phone",
    "category",
    "purpose",
    "summary",
    "compliance_summary",
    "status",
    "priority",
    "due_at",
    "assignee_id",
    "escalated",
    "escalation_note",
    "resolution",
    "wrapped_up",
)


def ticket_record(ticket: Ticket) -> TicketRecord:
    return TicketRecord.model_validate(ticket, from_attributes=True)


# ----------------------------------------------------------------------------------------- placing calls


class Line(Protocol):
    """An answered call a plugin placed with :meth:`PluginAPI.dial`: play audio to the customer, read the
    keys they press, hang up."""

    @property
    def ended(self) -> threading.Event:
        """Set when the call is over (either side hung up)."""
        ...

    def play(self, pcm16_8k: bytes) -> None:
        """Queue audio for the customer: 16-bit mono PCM at 8000 Hz (``Prompts.line_audio`` gives it)."""
        ...

    def playing_seconds(self) -> float:
        """How much queued audio is still to be played, in seconds (0 when done)."""
        ...

    def stop_playing(self) -> None:
        """Drop what is queued (barge-in: the customer pressed a key)."""
        ...

    def read_dtmf(self) -> str:
        """The keys pressed since the last read ("" if none)."""
        ...

    def hangup(self) -> None:
        """End the call."""
        ...


class PlacedCallResult(Protocol):
    """What a process's phone answers ``dial`` with (``Softphone.dial``'s ``DialResult``)."""

    @property
    def outcome(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def call(self) -> Line | None: ...


class Dialer(Protocol):
    """What the plugin host needs of a phone to let plugins place calls (``Softphone``)."""

    def dial(self, number: str, timeout: float) -> PlacedCallResult: ...


class NoPhoneError(RuntimeError):
    """``api.dial`` in a process without a phone (the scheduler, the CLI): check ``api.has_phone``."""


@dataclass(frozen=True)
class DialOutcome:
    """How a call placed with ``api.dial`` went: ``answered`` (``line`` is the call), ``busy``,
    ``no_answer`` or ``failed``, with the SIP reason."""

    outcome: str
    reason: str
    line: Line | None = None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered" and self.line is not None


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class OutboxItem:
    """One message of a plugin's outbox to an outside system."""

    id: int
    topic: str
    key: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str
    created_at: datetime


def _outbox_item(row: OutboxMessage) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        topic=row.topic,
        key=row.key,
        payload=dict(row.payload),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class SurveyAnswer:
    question: str
    value: int | None  # 1-5, None when not answered
    outcome: str  # answered | invalid | timeout | skipped | hung_up


@dataclass(frozen=True)
class SurveyInvitation:
    """One survey callback and the answers stored for it (none if the customer was never reached)."""

    callback_id: int
    call_id: int | None
    invited_at: datetime  # when the survey callback was made
    agent_extension: str  # the agent of the call surveyed ("" if none)
    answers: tuple[SurveyAnswer, ...] = ()

    @property
    def responded(self) -> bool:
        """At least one question answered with a key 1-5."""
        return any(a.outcome == "answered" for a in self.answers)


# --------------------------------------------------------------------------------------------------- API


class PluginServices(Protocol):
    """What the API needs of the process it runs in (the plugin host)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database | None: ...

    @property
    def stopping(self) -> threading.Event: ...

    @property
    def dialer(self) -> Dialer | None: ...

    def options(self, name: str) -> Any: ...

    def publish(self, hook: str, **arguments: Any) -> None: ...


class PluginAPI:
    """What one plugin may do. Each plugin gets its own instance, bound to its name."""

    def __init__(self, plugin_name: str, host: PluginServices) -> None:
        self.plugin_name = plugin_name
        self._host = host

    # ------------------------------------------------------------------------------------------- settings

    @property
    def settings(self) -> Settings:
        """The desk's settings (read-only)."""
        return self._host.settings

    @property
    def options(self) -> Any:
        """This plugin's ``[plugins.<name>]`` settings, validated by its ``register_settings`` model (the raw
        table if it declared none)."""
        return self._host.options(self.plugin_name)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.general.timezone)

    def now(self) -> datetime:
        """The current time, aware, in the desk's time zone."""
        return datetime.now(self.timezone)

    @property
    def stopping(self) -> threading.Event:
        """Set when the desk shuts down: a plugin's own background thread waits on it
        (``api.stopping.wait(timeout)``) and ends when it is set."""
        return self._host.stopping

    # ------------------------------------------------------------------------------------------- database

    def _database(self) -> Database:
        if self._host.database is None:
            raise RuntimeError("this process runs without a database")
        return self._host.database

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A database session (commits on success) **for the plugin's own tables only**.

        Core tables (calls, tickets, callbacks, the outbox ...) are reached through the typed operations of
        this API; their schema may change in any release. First-party plugins use no session at all."""
        with self._database().session() as session:
            yield session

    # -------------------------------------------------------------------------------------------- tickets

    def find_ticket(self, call_id: int) -> TicketRecord | None:
        """The ticket this plugin made for a call, if any."""
        with self._database().session() as session:
            ticket = session.scalar(select(Ticket).where(Ticket.call_id == call_id, Ticket.source == self.plugin_name))
            return ticket_record(ticket) if ticket is not None else None

    def create_ticket(self, **fields: Any) -> TicketRecord:
        """Store a ticket made by this plugin and publish ``ticket_created``.

        Fields: any of ``TICKET_FIELDS``; ``category`` is required. Creating a ticket for a call this plugin
        already made one for returns the existing ticket and publishes nothing, so a replayed event
        never makes a second ticket.
        """
        unknown = set(fields) - set(TICKET_FIELDS)
        if unknown:
            raise TypeError(f"unknown ticket field(s): {', '.join(sorted(unknown))}")
        if not fields.get("category"):
            raise ValueError("a ticket needs a category")
        call_id = fields.get("call_id")
        if call_id is not None:
            existing = self.find_ticket(call_id)
            if existing is not None:
                return existing
        try:
            with self._database().session() as session:
                ticket = Ticket(source=self.plugin_name, **fields)
                session.add(ticket)
                session.flush()
                if call_id is not None:  # a call's category is its ticket's unless the agent gave one
                    session.execute(
                        update(Call)
                        .where(Call.id == call_id, or_(Call.category.is_(None), Call.category == ""))
                        .values(category=ticket.category)
                    )
                record = ticket_record(ticket)
        except IntegrityError:
            existing = self.find_ticket(call_id) if call_id is not None else None
            if existing is None:
                raise
            return existing  # made at the same moment by a replay of the same event
        self._host.publish("ticket_created", ticket=record)
        return record

    def update_ticket(self, call_id: int, **fields: Any) -> TicketRecord | None:
        """Change the ticket this plugin made for a call (the agent's wrap-up fills it in); None when this
        plugin has made none for the call. Fields: any of ``TICKET_FIELDS`` but ``call_id``.

        Publishes nothing: ``ticket_created`` is for new tickets only, so a plugin that reacts to it (the
        desk's callbacks, a CRM) never takes a corrected ticket for a second one."""
        unknown = set(fields) - (set(TICKET_FIELDS) - {"call_id"})
        if unknown:
            raise TypeError(f"unknown or fixed ticket field(s): {', '.join(sorted(unknown))}")
        if "category" in fields and not fields["category"]:
            raise ValueError("a ticket needs a category")
        with self._database().session() as session:
            ticket = session.scalar(select(Ticket).where(Ticket.call_id == call_id, Ticket.source == self.plugin_name))
            if ticket is None:
                return None
            for name, value in fields.items():
                setattr(ticket, name, value)
            session.flush()
            return ticket_record(ticket)

    # ------------------------------------------------------------------------------------------ callbacks

    def _book(self) -> CallbackBook:
        return CallbackBook(self._database(), self.settings)

    def add_callback(
        self,
        *,
        phone: str,
        due_at: datetime,
        kind: str = "manual",
        reason: str = "",
        call_id: int | None = None,
        ticket_id: int | None = None,
        deadline_at: datetime | None = None,
        owner_extension: str = "",
        owner_only: bool = False,
    ) -> CallbackRecord:
        """Promise a call back (stored as pending; the scheduler fires ``callback_due`` at ``due_at``).
        One per call and kind: adding it again returns the one already there."""
        return self._book().add(
            phone=phone,
            due_at=due_at,
            kind=kind,
            reason=reason,
            call_id=call_id,
            ticket_id=ticket_id,
            deadline_at=deadline_at,
            owner_extension=owner_extension,
            owner_only=owner_only,
        )

    def add_callback_unless_wrapped_up(
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
        """A callback the desk's own rules promise for a call, unless the agent has wrapped the call up: then
        the wrap-up has decided which callbacks the call gets (and made them), and this returns None. One per
        call (or ticket) and kind, as :meth:`add_callback`; atomic with the wrap-up
        (:meth:`CallbackBook.add_unless_wrapped_up`)."""
        return self._book().add_unless_wrapped_up(
            call_id=call_id,
            phone=phone,
            due_at=due_at,
            kind=kind,
            reason=reason,
            ticket_id=ticket_id,
            deadline_at=deadline_at,
            owner_extension=owner_extension,
            owner_only=owner_only,
        )

    def start_callback_attempt(self, callback_id: int) -> CallbackRecord | None:
        """Take a due callback to dial it (due → in_progress); None if it is not due any more (an agent or
        another desk took it first). Report how it went with :meth:`close_callback`."""
        return self._book().start_attempt(callback_id)

    def close_callback(self, callback_id: int, outcome: str, note: str = "") -> CallbackRecord:
        """Record a callback attempt: ``answered`` closes it (done); anything else (busy, no_answer,
        no_response) counts an attempt and retries per policy, failing when the attempts are used up.
        Publishes ``callback_closed`` when it closes."""
        book = self._book()
        record = book.done(callback_id, note=note) if outcome == REACHED else book.missed(callback_id, outcome)
        if record.state in ("done", "failed"):
            self._host.publish("callback_closed", callback=record)
        return record

    # -------------------------------------------------------------------------------------------- surveys

    def record_survey(
        self, call_id: int | None, answers: Sequence[tuple[str, int | None, str]], callback_id: int | None = None
    ) -> SurveyRecord:
        """Store one survey's answers, ``(question, 1-5 or None, outcome)`` each (outcome ``answered``,
        ``invalid``, ``timeout``, ``skipped``, ``hung_up``), credited to the agent of the call surveyed, and
        publish ``survey_completed``."""
        with self._database().session() as session:
            call = session.get(Call, call_id) if call_id is not None else None
            agent = session.get(Agent, call.agent_id) if call is not None and call.agent_id else None
            for question, value, outcome in answers:
                session.add(
                    SurveyResponse(
                        call_id=call_id,
                        agent_id=agent.id if agent else None,
                        callback_id=callback_id,
                        question_key=question,
                        answer=value,
                        outcome=outcome,
                    )
                )
            record = SurveyRecord(
                call_id=call_id,
                agent_extension=agent.extension if agent else "",
                answers={q: v for q, v, _ in answers},
                completed=all(o == "answered" for _, _, o in answers),
            )
        self._host.publish("survey_completed", survey=record)
        return record

    def survey_invitations(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[SurveyInvitation]:
        """Every survey callback (kind ``survey``, cancelled ones aside) made in ``[since, until)``, oldest
        first, each with the agent of the call surveyed and the answers stored for it."""
        with self._database().session() as session:
            query = (
                select(Callback.id, Callback.call_id, Callback.created_at, Agent.extension)
                .outerjoin(Call, Call.id == Callback.call_id)
                .outerjoin(Agent, Agent.id == Call.agent_id)
                .where(Callback.kind == "survey", Callback.state != "cancelled")
                .order_by(Callback.created_at, Callback.id)
            )
            if since is not None:
                query = query.where(Callback.created_at >= since)
            if until is not None:
                query = query.where(Callback.created_at < until)
            surveys = list(session.execute(query))
            answers: dict[int, list[SurveyAnswer]] = {}
            if surveys:
                rows = session.execute(
                    select(
                        SurveyResponse.callback_id,
                        SurveyResponse.question_key,
                        SurveyResponse.answer,
                        SurveyResponse.outcome,
                    )
                    .where(SurveyResponse.callback_id.in_([row.id for row in surveys]))
                    .order_by(SurveyResponse.id)
                )
                for callback_id, question, value, outcome in rows:
                    answers.setdefault(callback_id, []).append(SurveyAnswer(question, value, outcome))
        return [
            SurveyInvitation(
                callback_id=cid,
                call_id=call_id,
                invited_at=created,
                agent_extension=ext or "",
                answers=tuple(answers.get(cid, ())),
            )
            for cid, call_id, created, ext in surveys
        ]

    # --------------------------------------------------------------------------------------------- outbox

    def outbox_put(self, topic: str, payload: dict[str, Any], key: str = "") -> int:
        """Keep a message for an outside system until this plugin reports it delivered; returns its id.
        ``key`` says what it is about (``ticket:12``), for the receiver's and the admin's sake."""
        with self._database().session() as session:
            message = OutboxMessage(plugin=self.plugin_name, topic=topic, key=key, payload=payload)
            session.add(message)
            session.flush()
            return message.id

    def outbox_claim(
        self, limit: int = 50, hold_seconds: float = 60.0, ignore_backoff: bool = False
    ) -> list[OutboxItem]:
        """Take up to ``limit`` of this plugin's messages that are due (with ``ignore_backoff``: every one not
        delivered yet), oldest first, and hold them: their next attempt moves ``hold_seconds`` ahead, so no
        other process sends them meanwhile (a conditional update per message: two processes never claim the
        same one). Report each with :meth:`outbox_complete` or :meth:`outbox_retry_later`; one not reported
        is due again when the hold runs out."""
        now = datetime.now(UTC)
        hold = now + timedelta(seconds=hold_seconds)
        claimed = []
        with self._database().session() as session:
            query = select(OutboxMessage).where(
                OutboxMessage.plugin == self.plugin_name, OutboxMessage.delivered_at.is_(None)
            )
            if not ignore_backoff:
                query = query.where(OutboxMessage.next_attempt_at <= now)
            for row in session.scalars(query.order_by(OutboxMessage.id).limit(limit)).all():
                taken = session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == row.id,
                        OutboxMessage.next_attempt_at == row.next_attempt_at,
                        OutboxMessage.delivered_at.is_(None),
                    )
                    .values(next_attempt_at=hold)
                )
                if cast("CursorResult[Any]", taken).rowcount == 1:
                    claimed.append(_outbox_item(row))
        return claimed

    def outbox_complete(self, message_id: int) -> None:
        """The message was delivered: it is kept as delivered and never handed out again."""
        self._outbox_update(message_id, delivered_at=datetime.now(UTC), last_error="")

    def outbox_retry_later(self, message_id: int, error: str, next_at: datetime) -> None:
        """The attempt failed with ``error``: the message is due again at ``next_at`` (the plugin's
        back-off)."""
        self._outbox_update(message_id, next_attempt_at=next_at, last_error=error)

    def _outbox_update(self, message_id: int, **values: Any) -> None:
        with self._database().session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.plugin == self.plugin_name)
                .values(attempts=OutboxMessage.attempts + 1, **values)
            )

    def outbox_next_due(self) -> datetime | None:
        """When the soonest of this plugin's undelivered messages is due (None: nothing waits)."""
        with self._database().session() as session:
            return session.scalar(
                select(OutboxMessage.next_attempt_at)
                .where(OutboxMessage.plugin == self.plugin_name, OutboxMessage.delivered_at.is_(None))
                .order_by(OutboxMessage.next_attempt_at)
                .limit(1)
            )

    def outbox_items(self, include_delivered: bool = False) -> list[OutboxItem]:
        """This plugin's messages not delivered yet (with ``include_delivered``: all of them), by id."""
        with self._database().session() as session:
            query = select(OutboxMessage).where(OutboxMessage.plugin == self.plugin_name)
            if not include_delivered:
                query = query.where(OutboxMessage.delivered_at.is_(None))
            return [_outbox_item(row) for row in session.scalars(query.order_by(OutboxMessage.id))]

    # ----------------------------------------------------------------------------------------------- phone

    @property
    def has_phone(self) -> bool:
        """Whether this process can place calls (``contactcenter run``); the scheduler and the CLI cannot."""
        return self._host.dialer is not None

    def dial(self, number: str, timeout: float = 30.0) -> DialOutcome:
        """Call ``number`` from the desk's extension and wait at most ``timeout`` seconds for an answer.

        Blocks for the ringing: call it from a thread of your own, not from a hook. Raises
        :class:`NoPhoneError` in a process without a phone. Hang up the answered ``line`` when done."""
        dialer = self._host.dialer
        if dialer is None:
            raise NoPhoneError("this process has no phone: calls are placed by `contactcenter run`")
        result = dialer.dial(number, timeout=timeout)
        return DialOutcome(result.outcome, result.reason, result.call if result.outcome == "answered" else None)

    # ------------------------------------------------------------------------------------------ live view

    def add_live_event(self, call: CallRecord, kind: str, data: dict[str, Any], keep_hours: int = 0) -> None:
        """Add an event of a call in progress to the supervisors' live view (``ringing``, ``answered``,
        ``utterance``, ``alert``, ``ended``); with ``keep_hours``, drop the view's events older than that in
        the same transaction."""
        now = datetime.now(UTC)
        with self._database().session() as session:
            session.add(
                LiveEvent(
                    sip_call_id=call.sip_call_id, kind=kind, agent_extension=call.agent_extension, at=now, data=data
                )
            )
            if keep_hours:
                session.execute(delete(LiveEvent).where(LiveEvent.at < now - timedelta(hours=keep_hours)))
