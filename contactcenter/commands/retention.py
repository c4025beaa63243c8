"""`contactcenter retention`: the retention purge by hand (the scheduler runs it daily) and the record of
every purge and erasure carried out."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from contactcenter.app import App
from contactcenter.output import Format, emit_rows
from contactcenter.storage.personal_data import COUNT_LABELS, Tally
from contactcenter.storage.retention import Cutoffs, purge, removals


@click.group("retention")
def command() -> None:
    """Personal data's retention periods ([retention] in settings.toml): purge, and the record of removals."""


def print_tally(tally: Tally, heading: str) -> None:
    """What was (or would be) removed, one line per kind of data that changed; "nothing" when none did."""
    click.echo(heading)
    counts = tally.as_dict()
    lines = [f"  {counts[what]:>10,}  {label}" for what, label in COUNT_LABELS.items() if counts[what]]
    click.echo("\n".join(lines) if tally.changed else "  nothing")


@command.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The counts as JSON on standard output.")
@click.pass_obj
def purge_command(app: App, dry_run: bool, as_json: bool) -> None:
    """Remove the personal data older than [retention] allows, now (the scheduler does it daily at
    purge_time). Scores, findings and counts stay."""
    settings = app.settings
    now = datetime.now(UTC)
    tally = purge(
        app.store,
        settings.retention,
        Path(settings.general.data_dir),
        now,
        dry_run=dry_run,
        done_by=f"{getpass.getuser()} (contactcenter retention purge)",
    )
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "counts": tally.as_dict()}, ensure_ascii=False))
        return
    zone = ZoneInfo(settings.general.timezone)
    cut = Cutoffs.at(now, settings.retention)
    for name, moment in (
        ("recordings", cut.recordings),
        ("transcripts", cut.transcripts),
        ("personal data", cut.personal),
    ):
        kept = f"from before {moment.astimezone(zone):%Y-%m-%d %H:%M}" if moment else "never (kept for ever)"
        click.echo(f"{name}: removed {kept}")
    print_tally(tally, "would remove (dry run: nothing changed):" if dry_run else "removed:")


@command.command("log")
@click.option("--limit", type=click.IntRange(1, 10_000), default=30, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.pass_obj
def log_command(app: App, limit: int, fmt: Format) -> None:
    """Every retention purge and erasure request carried out, newest first: when, by whom, how much."""
    zone = ZoneInfo(app.settings.general.timezone)
    with app.store.session() as session:
        rows = removals(session, limit)
    for row in rows:
        row["at"] = row["at"].astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        for what in COUNT_LABELS:
            row.setdefault(what, 0)
    if fmt != "table":
        emit_rows(rows, ["at", "reason", "done_by", "reference", *COUNT_LABELS], fmt)
        return
    if not rows:
        click.echo("no purge or erasure has been carried out")
        return
    for row in rows:
        row["removed"] = ", ".join(f"{what} {row[what]:,}" for what in COUNT_LABELS if row[what]) or "nothing"
    emit_rows(rows, ["at", "reason", "done_by", "reference", "removed"], "table", title="data removals")
