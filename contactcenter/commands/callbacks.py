"""`contactcenter callbacks` and `contactcenter scheduler`: the callback book by hand, and its scheduler."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.callbacks.book import CallbackBook, CallbackError, CallbackFilter
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.commands import ROW_ID, BadValue, check_year
from contactcenter.output import Format, emit_rows, terminal_text
from contactcenter.phones import clean_phone, phone_problem
from contactcenter.records import CallbackRecord
from contactcenter.scheduling.scheduler import CallbackScheduler
from contactcenter.storage.models import CALLBACK_KINDS, CALLBACK_STATES, Call, Ticket

COLUMNS = ["id", "state", "kind", "due", "deadline", "phone", "owner", "attempts", "last_outcome", "reason"]


def _book(app: App) -> CallbackBook:
    return CallbackBook(app.store, app.settings)  # app.store: the schema is current, or a clear error


def _local(app: App, moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(app.settings.general.timezone)).strftime("%Y-%m-%d %H:%M")


def _row(app: App, c: CallbackRecord) -> dict:
    owner = (c.owner_extension or "") + (" (only)" if c.owner_only else "")
    return {
        "id": c.id,
        "state": c.state,
        "kind": c.kind,
        "due": _local(app, c.due_at),
        "deadline": _local(app, c.deadline_at),
        "phone": c.phone,
        "owner": owner or "anyone",
        "attempts": f"{c.attempts}/{c.max_attempts}",
        "last_outcome": c.last_outcome,
        "reason": c.reason,
        "call_id": c.call_id,
        "ticket_id": c.ticket_id,
        "note": c.note,
    }


def _parse_time(app: App, value: str, option: str) -> datetime:
    zone = ZoneInfo(app.settings.general.timezone)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected YYYY-MM-DD HH:MM (in {zone.key})") from None
    return check_year(moment.replace(tzinfo=zone) if moment.tzinfo is None else moment, option)


def _check_follows_up(app: App, call_id: int | None, ticket_id: int | None) -> None:
    """The call and ticket a callback follows up exist: a mistyped id is named, not a foreign-key error."""
    if call_id is None and ticket_id is None:
        return
    with app.store.session() as session:
        if call_id is not None and session.get(Call, call_id) is None:
            raise BadValue("--call", f"no call {call_id}")
        if ticket_id is not None and session.get(Ticket, ticket_id) is None:
            raise BadValue("--ticket", f"no ticket {ticket_id}")


@click.group("callbacks")
def command() -> None:
    """Callbacks (次日回访, complaint follow-ups): list, add, close."""


@command.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(CALLBACK_STATES), help="Only these states.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(CALLBACK_KINDS), help="Only these kinds.")
@click.option("--owner", help="Only this agent's (extension).")
@click.option("--overdue", is_flag=True, help="Only those past their time and not yet reached.")
@click.option("--before", help="Due before this time (YYYY-MM-DD[ HH:MM]).")
@click.option("--after", help="Due at or after this time.")
@click.option("--all", "show_all", is_flag=True, help="Closed ones too (default: open only).")
@click.option("--limit", type=click.IntRange(1, 100000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on standard output.")
@click.pass_obj
def list_callbacks(
    app: App,
    states: tuple[str, ...],
    kinds: tuple[str, ...],
    owner: str | None,
    overdue: bool,
    before: str | None,
    after: str | None,
    show_all: bool,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Callbacks by due time, with the due and overdue counts."""
    book = _book(app)
    if not states and not show_all:
        states = ("pending", "due", "in_progress")
    where = CallbackFilter(
        states=states,
        kinds=kinds,
        owner=owner,
        overdue=overdue,
        limit=limit,
        due_before=_parse_time(app, before, "--before") if before else None,
        due_after=_parse_time(app, after, "--after") if after else None,
    )
    rows = [_row(app, c) for c in book.list(where)]
    fmt: Format = "json" if as_json else "csv" if as_csv else "table"
    counts = book.counts()
    emit_rows(
        rows,
        COLUMNS,
        fmt,
        title=f"callbacks: {counts.due} due, {counts.overdue} overdue, "
        f"{counts.pending} pending, {counts.missed_deadline} past their deadline",
    )


def _phone(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """PHONE checked as it was typed: ``abc``, a formula or 31 digits is refused before it reaches the book."""
    problem = phone_problem(value)
    if problem is not None:
        raise click.BadParameter(problem.en)
    return clean_phone(value)


@command.command("add")
@click.argument("phone", callback=_phone)
@click.option("--reason", default="", help="Why (shown to whoever calls).")
@click.option("--due", help="When, YYYY-MM-DD HH:MM in the desk's time zone (default: the next working day).")
@click.option("--owner", default="", help="The agent (extension) who should call.")
@click.option("--owner-only", is_flag=True, help="Only the owner, until overdue by [callbacks] owner_only_minutes.")
@click.option("--call", "call_id", type=ROW_ID, help="The call it follows up (its id).")
@click.option("--ticket", "ticket_id", type=ROW_ID, help="The ticket it follows up (its id).")
@click.pass_obj
def add(
    app: App,
    phone: str,
    reason: str,
    due: str | None,
    owner: str,
    owner_only: bool,
    call_id: int | None,
    ticket_id: int | None,
) -> None:
    """Promise a call back to PHONE."""
    calendar = WorkCalendar(app.settings.callbacks, app.settings.general.timezone)
    due_at = _parse_time(app, due, "--due") if due else calendar.next_day_callback(datetime.now(calendar.zone))
    _check_follows_up(app, call_id, ticket_id)  # a past due time stays allowed: a promise entered late is overdue
    if due and not calendar.is_working_time(due_at):
        opening = calendar.next_working_moment(due_at)
        holiday = calendar.holiday_name(due_at.astimezone(calendar.zone).date())
        click.echo(
            f"note: {due} is outside working hours{' (' + holiday + ')' if holiday else ''}; "
            f"the next opening is {opening:%Y-%m-%d %H:%M}",
            err=True,
        )
    try:
        record = _book(app).add(
            phone=phone,
            due_at=due_at,
            reason=reason,
            kind="manual",
            owner_extension=owner,
            owner_only=owner_only,
            call_id=call_id,
            ticket_id=ticket_id,
        )
    except CallbackError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(terminal_text(f"callback {record.id}: {record.phone} due {_local(app, record.due_at)}", one_line=True))


def _close(app: App, callback_id: int, outcome: str, note: str) -> CallbackRecord:
    try:
        if outcome == "cancelled":
            record = _book(app).cancel(callback_id, note)
        else:
            record = app.plugins.api_for("callbacks").close_callback(callback_id, outcome, note)
    except CallbackError as exc:
        raise click.ClickException(str(exc)) from None
    app.plugins.bus.drain()
    return record


@command.command("done")
@click.argument("callback_id", type=ROW_ID)
@click.option("--note", default="", help="What was said or agreed.")
@click.pass_obj
def done(app: App, callback_id: int, note: str) -> None:
    """The customer was reached: close the callback."""
    record = _close(app, callback_id, "answered", note)
    click.echo(f"callback {record.id}: done")


@command.command("missed")
@click.argument("callback_id", type=ROW_ID)
@click.option(
    "--outcome", type=click.Choice(["no_answer", "busy", "wrong_number"]), default="no_answer", show_default=True
)
@click.pass_obj
def missed(app: App, callback_id: int, outcome: str) -> None:
    """An attempt that did not reach the customer: retried after the spacing, failed after the last try."""
    record = _close(app, callback_id, outcome, "")
    if record.state == "failed":
        click.echo(f"callback {record.id}: failed after {record.attempts} attempts")
    else:
        click.echo(
            f"callback {record.id}: attempt {record.attempts}/{record.max_attempts} missed; "
            f"next try {_local(app, record.due_at)}"
        )


@command.command("cancel")
@click.argument("callback_id", type=ROW_ID)
@click.option("--note", default="", help="Why.")
@click.pass_obj
def cancel(app: App, callback_id: int, note: str) -> None:
    """Cancel a callback that is no longer needed."""
    record = _close(app, callback_id, "cancelled", note)
    click.echo(f"callback {record.id}: cancelled")


@click.command("scheduler")
@click.pass_obj
def scheduler_command(app: App) -> None:
    """Fire callback reminders when they come due, until Ctrl-C (one per database; others wait on standby)."""
    app.database.upgrade()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    standby_said: list[str | None] = []

    def on_standby(holder: str | None) -> None:
        if not standby_said or standby_said[-1] != holder:
            click.echo(
                f"standby: the scheduler lease is held by {holder or 'another process'}; "
                "taking over if it stops renewing"
            )
            standby_said.append(holder)

    def on_due(callback: CallbackRecord) -> None:
        owner = f" for {callback.owner_extension}" if callback.owner_extension else ""
        click.echo(
            f"{datetime.now():%H:%M:%S} DUE callback {callback.id}{owner}: {callback.phone} {callback.reason}",
            color=True,
        )

    scheduler = CallbackScheduler(app.database, app.settings, app.plugins.bus.publish, on_due=on_due)
    app.plugins.bus.publish("desk_started", role="scheduler")
    click.echo(f"scheduler {scheduler.lease.holder} on {app.database.safe_url}; Ctrl-C stops")
    scheduler.run(stop, on_standby=on_standby)
    app.plugins.bus.drain()
    click.echo("scheduler stopped")
