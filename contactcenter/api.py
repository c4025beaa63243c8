"""The small, documented API a plugin may call back into the desk with (the ``api`` hook argument).

Plugins get plain records, never the telephony layer; what they may change goes through here so that the
core keeps its invariants (one ticket per call and plugin, ``ticket_created`` published, times in UTC).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contactcenter.records import CallbackRecord, SurveyRecord, TicketRecord
from contactcenter.settings import Settings
from contactcenter.storage.models import Agent, Call, OutboxMessage, SurveyResponse, Ticket

if TYPE_CHECKING:
    from contactcenter.plugins import PluginHost

TICKET_FIELDS = (
    "call_id", "customer_id", "caller_name", "caller_phone", "category", "purpose", "summary",
    "compliance_summary", "status", "priority", "due_at", "assignee_id", "escalated", "escalation_note",
)


def ticket_record(ticket: Ticket) -> TicketRecord:
    return TicketRecord.model_validate(ticket, from_attributes=True)


class PluginAPI:
    """What one plugin may do. Each plugin gets its own instance, bound to its name."""

    def __init__(self, plugin_name: str, host: PluginHost) -> None:
        self.plugin_name = plugin_name
        self._host = host

    @property
    def settings(self) -> Settings:
        """The desk's settings (read-only)."""
        return self._host.settings

    @property
    def options(self) -> Any:
        """This plugin's ``[plugins.<name>]`` settings, validated by its ``register_settings`` model."""
        return self._host.options(self.plugin_name)

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.general.timezone)

    def now(self) -> datetime:
        """The current time, aware, in the desk's time zone."""
        return datetime.now(self.timezone)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A database session for plugins that keep tables of their own (commits on success)."""
        if self._host.database is None:
            raise RuntimeError("this process runs without a database")
        with self._host.database.session() as session:
            yield session

    def find_ticket(self, call_id: int) -> TicketRecord | None:
        """The ticket this plugin made for a call, if any."""
        with self.session() as session:
            ticket = session.scalar(
                select(Ticket).where(Ticket.call_id == call_id, Ticket.source == self.plugin_name)
            )
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
            with self.session() as session:
                ticket = Ticket(source=self.plugin_name, **fields)
                session.add(ticket)
                session.flush()
                record = ticket_record(ticket)
        except IntegrityError:
            existing = self.find_ticket(call_id) if call_id is not None else None
            if existing is None:
                raise
            return existing  # made at the same moment by a replay of the same event
        self._host.bus.publish("ticket_created", ticket=record)
        return record

    # ------------------------------------------------------------------------------------------- callbacks

    def add_callback(self, *, phone: str, due_at: datetime, kind: str = "manual", reason: str = "",
                     call_id: int | None = None, ticket_id: int | None = None,
                     deadline_at: datetime | None = None, owner_extension: str = "",
                     owner_only: bool = False) -> CallbackRecord:
        """Promise a call back (stored as pending; the scheduler fires ``callback_due`` at ``due_at``).
        One per call and kind: adding it again returns the one already there."""
        from contactcenter.callbacks.book import CallbackBook

        if self._host.database is None:
            raise RuntimeError("this process runs without a database")
        return CallbackBook(self._host.database, self.settings).add(
            phone=phone, due_at=due_at, kind=kind, reason=reason, call_id=call_id, ticket_id=ticket_id,
            deadline_at=deadline_at, owner_extension=owner_extension, owner_only=owner_only)

    def close_callback(self, callback_id: int, outcome: str, note: str = "") -> CallbackRecord:
        """Record a callback attempt: ``answered`` closes it (done); anything else (busy, no_answer,
        no_response) counts an attempt and retries per policy, failing when the attempts are used up.
        Publishes ``callback_closed`` when it closes."""
        from contactcenter.callbacks.book import REACHED, CallbackBook

        book = CallbackBook(self._host.database, self.settings)  # type: ignore[arg-type]
        record = book.done(callback_id, note=note) if outcome == REACHED else book.missed(callback_id, outcome)
        if record.state in ("done", "failed"):
            self._host.bus.publish("callback_closed", callback=record)
        return record

    # ---------------------------------------------------------------------------------------------- surveys

    def record_survey(self, call_id: int | None, answers: list[tuple[str, int | None, str]],
                      callback_id: int | None = None) -> SurveyRecord:
        """Store one survey's answers, ``(question, 1-5 or None, outcome)`` each (outcome ``answered``,
        ``invalid``, ``timeout``, ``skipped``, ``hung_up``), credited to the agent of the call surveyed, and
        publish ``survey_completed``."""
        with self.session() as session:
            call = session.get(Call, call_id) if call_id is not None else None
            agent = session.get(Agent, call.agent_id) if call is not None and call.agent_id else None
            for question, value, outcome in answers:
                session.add(SurveyResponse(call_id=call_id, agent_id=agent.id if agent else None,
                                           callback_id=callback_id, question_key=question, answer=value,
                                           outcome=outcome))
            record = SurveyRecord(call_id=call_id, agent_extension=agent.extension if agent else "",
                                  answers={q: v for q, v, _ in answers},
                                  completed=all(o == "answered" for _, _, o in answers))
        self._host.bus.publish("survey_completed", survey=record)
        return record

    # ---------------------------------------------------------------------------------------------- outbox

    def outbox_put(self, topic: str, payload: dict[str, Any], key: str = "") -> int:
        """Keep a message for an outside system until this plugin reports it delivered; returns its id."""
        with self.session() as session:
            message = OutboxMessage(plugin=self.plugin_name, topic=topic, key=key, payload=payload)
            session.add(message)
            session.flush()
            return message.id

    @property
    def stopping(self) -> Any:
        """A ``threading.Event`` set when the desk shuts down: a plugin's own background thread waits on it
        (``api.stopping.wait(timeout)``) and ends when it is set."""
        return self._host.stopping

    @property
    def phone(self) -> Any:
        """The desk's softphone when this process runs one (``run``), for plugins that place calls (a
        survey); None in processes without a phone (the scheduler, the CLI)."""
        return getattr(self._host, "phone", None)
