"""`contactcenter review`: the reviewers' daily queue (质检任务) from the command line: build a day's queue
by hand (the scheduler does it each night), see who has what left, and the calibration figures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.commands import check_year
from contactcenter.output import Format, emit_rows
from contactcenter.storage.review_queue import build_queue, day_bounds, queue_status, reviewer_agreement, rule_agreement

DAY = click.DateTime(["%Y-%m-%d"])


@click.group("review")
def command() -> None:
    """The reviewers' daily queue (质检任务) and calibration."""


def _today(app: App) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(app.settings.general.timezone)).date()


def _day(value: datetime | None, option: str, default: date) -> date:
    return check_year(value, option).date() if value is not None else default


@command.command("build")
@click.option("--day", type=DAY, help="The calls' day, YYYY-MM-DD (default: yesterday).")
@click.pass_obj
def build(app: App, day: datetime | None) -> None:
    """Queue a day's calls for the reviewers: critical failures, complaints and the sample ([review]).
    Calls already queued stay as they are, so running it again adds only what is missing."""
    the_day = _day(day, "--day", _today(app) - timedelta(days=1))
    settings = app.settings
    with app.store.session() as session:
        built = build_queue(
            session,
            the_day,
            ZoneInfo(settings.general.timezone),
            settings.review,
            settings.callbacks.complaint_categories,
        )
    click.echo(f"{the_day}: {built.calls} checked calls, {built.already_queued} already queued")
    if built.problem:
        raise click.ClickException(built.problem)
    for reason in ("critical", "complaint", "sample", "calibration"):
        click.echo(f"  {reason:<12}{built.added[reason]:>6} added")
    for name, count in sorted(built.per_reviewer.items()):
        click.echo(f"  {name:<12}{count:>6} tasks")


@command.command("status")
@click.option("--since", type=DAY, help="First day (default: today).")
@click.option("--until", type=DAY, help="Last day (default: --since).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def status(app: App, since: datetime | None, until: datetime | None, fmt: Format) -> None:
    """Per reviewer: tasks pending, in review, reviewed and in dispute over the days."""
    first = _day(since, "--since", _today(app))
    last = _day(until, "--until", first)
    if last < first:
        raise click.ClickException("--until is before --since")
    with app.store.session() as session:
        rows = queue_status(session, first, last)
    if not rows and fmt == "table":
        click.echo(f"no review tasks from {first} to {last}")
        return
    emit_rows(rows, ["reviewer", "name", "pending", "in_review", "reviewed", "disputed", "total"], fmt)


@command.command("calibration")
@click.option("--since", type=DAY, help="First day of the calls (default: 30 days ago).")
@click.option("--until", type=DAY, help="Last day (default: today).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def calibration(app: App, since: datetime | None, until: datetime | None, fmt: Format) -> None:
    """How often reviewers agreed with the machine, per rule; and with the team lead, per reviewer."""
    zone = ZoneInfo(app.settings.general.timezone)
    last = _day(until, "--until", _today(app))
    first = _day(since, "--since", last - timedelta(days=29))
    start, end = day_bounds(first, zone)[0], day_bounds(last, zone)[1]
    with app.store.session() as session:
        rules, reviewers = rule_agreement(session, start, end), reviewer_agreement(session, start, end)
    names = app.vocabulary
    for row in rules:
        row["rule"] = names.name("rule", row["rule_id"])
    emit_rows(rules, ["rule_id", "rule", "verdicts", "agreed", "agreement"], fmt, title="reviewers vs the machine")
    emit_rows(
        reviewers,
        ["reviewer", "name", "shared_verdicts", "matched", "agreement"],
        fmt,
        title="reviewers vs the team lead",
    )
