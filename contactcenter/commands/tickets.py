"""`contactcenter tickets`: list and show tickets (工单)."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.commands import ROW_ID, check_year
from contactcenter.output import Format, emit_rows, terminal_text
from contactcenter.storage.models import Ticket
from contactcenter.storage.tickets import TicketFilter, ticket_query

COLUMNS = ["id", "created", "category", "status", "wrap_up", "priority", "due", "caller_phone", "agent", "summary"]
DETAIL = [
    "id",
    "created",
    "category",
    "status",
    "priority",
    "due",
    "overdue",
    "caller_name",
    "caller_phone",
    "agent",
    "assignee",
    "call_id",
    "source",
    "purpose",
    "summary",
    "resolution",
    "wrapped_up",
    "compliance_summary",
    "escalated",
    "escalation_note",
]
NOT_WRAPPED_UP = "未话后处理"  # a call's ticket no agent has wrapped up: the machine's guesses only


def _local(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M") if value else None


def ticket_row(ticket: Ticket, zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    agent = ticket.call.agent.extension if ticket.call and ticket.call.agent else None
    return {
        "id": ticket.id,
        "created": _local(ticket.created_at, zone),
        "category": ticket.category,
        "status": ticket.status,
        "priority": ticket.priority,
        "due": _local(ticket.due_at, zone),
        "overdue": bool(ticket.due_at and ticket.due_at < now and ticket.status not in ("resolved", "closed")),
        "caller_name": ticket.caller_name,
        "caller_phone": ticket.caller_phone,
        "agent": agent,
        "assignee": ticket.assignee.extension if ticket.assignee else None,
        "call_id": ticket.call_id,
        "source": ticket.source,
        "purpose": ticket.purpose,
        "summary": ticket.summary,
        "resolution": ticket.resolution,
        "wrapped_up": ticket.wrapped_up,
        "wrap_up": NOT_WRAPPED_UP if ticket.call_id is not None and not ticket.wrapped_up else "",
        "compliance_summary": ticket.compliance_summary,
        "escalated": ticket.escalated,
        "escalation_note": ticket.escalation_note,
    }


def _day_start(day: date | None, zone: ZoneInfo) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=zone) if day else None


@click.group("tickets")
def command() -> None:
    """Tickets (工单) made from calls."""


@command.command("list")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Created on or after this day (desk time zone).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Created on or before this day.")
@click.option("--agent", help="Extension of the call's agent or of the assignee.")
@click.option("--status", type=click.Choice(["open", "in_progress", "resolved", "closed"]))
@click.option("--category", help="Category, e.g. 投诉.")
@click.option("--unwrapped", is_flag=True, help="Only calls' tickets no agent has wrapped up (未话后处理).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on standard output.")
@click.pass_obj
def list_tickets(
    app: App,
    since: datetime | None,
    until: datetime | None,
    agent: str | None,
    status: str | None,
    category: str | None,
    unwrapped: bool,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List tickets, newest first. A call's ticket no agent has wrapped up is marked 未话后处理."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    for day, hint in ((since, "--since"), (until, "--until")):
        if day is not None:
            check_year(day, hint)
    zone = ZoneInfo(app.settings.general.timezone)
    until_next = until.date() + timedelta(days=1) if until else None
    filters = TicketFilter(
        since=_day_start(since.date() if since else None, zone),
        until=_day_start(until_next, zone),
        agent=agent,
        status=status,
        category=category,
        limit=limit,
    )
    now = datetime.now(zone)
    query = ticket_query(filters)
    if unwrapped:
        query = query.where(Ticket.call_id.is_not(None), Ticket.wrapped_up.is_(False))
    with app.store.session() as session:
        rows = [ticket_row(t, zone, now) for t in session.scalars(query)]
    fmt: Format = "json" if as_json else "csv" if as_csv else "table"
    emit_rows(rows, DETAIL if fmt != "table" else COLUMNS, fmt, title="tickets")


@command.command("show")
@click.argument("ticket_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.pass_obj
def show_ticket(app: App, ticket_id: int, as_json: bool) -> None:
    """Show one ticket in full."""
    zone = ZoneInfo(app.settings.general.timezone)
    with app.store.session() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            raise click.ClickException(f"no ticket {ticket_id}")
        row = ticket_row(ticket, zone, datetime.now(zone))
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, indent=2, default=str))
        return
    width = max(len(key) for key in DETAIL)
    for key in DETAIL:
        click.echo(terminal_text(f"{key:<{width}}  {'' if row[key] is None else row[key]}", one_line=True))
