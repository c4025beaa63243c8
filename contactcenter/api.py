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

from contactcenter.records import TicketRecord
from contactcenter.settings import Settings
from contactcenter.storage.models import Ticket

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
