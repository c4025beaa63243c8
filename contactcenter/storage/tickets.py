"""Ticket queries shared by the CLI and, later, the reviewer console."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from contactcenter.storage.models import Agent, Call, Ticket


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets to list; every field is optional. Times are aware datetimes, ``until`` exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    agent: str | None = None  # extension of the call's agent or of the assignee
    status: str | None = None
    category: str | None = None
    limit: int = 100


def ticket_query(f: TicketFilter) -> Select[tuple[Ticket]]:
    query = select(Ticket).options(selectinload(Ticket.call).selectinload(Call.agent), selectinload(Ticket.assignee))
    if f.since is not None:
        query = query.where(Ticket.created_at >= f.since)
    if f.until is not None:
        query = query.where(Ticket.created_at < f.until)
    if f.status:
        query = query.where(Ticket.status == f.status)
    if f.category:
        query = query.where(Ticket.category == f.category)
    if f.agent:
        call_agent, assignee = aliased(Agent), aliased(Agent)
        query = (
            query.outerjoin(Call, Ticket.call_id == Call.id)
            .outerjoin(call_agent, Call.agent_id == call_agent.id)
            .outerjoin(assignee, Ticket.assignee_id == assignee.id)
            .where(or_(call_agent.extension == f.agent, assignee.extension == f.agent))
        )
    return query.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(f.limit)


def find_tickets(session: Session, f: TicketFilter) -> list[Ticket]:
    return list(session.scalars(ticket_query(f)).all())
