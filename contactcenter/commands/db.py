"""`contactcenter db`: schema migrations."""

from __future__ import annotations

import click

from contactcenter.app import App


@click.group("db")
def command() -> None:
    """The call store: create or upgrade its schema."""


@command.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@click.pass_obj
def upgrade(app: App, revision: str) -> None:
    """Create the tables, or bring an existing database to the newest schema (safe to run again)."""
    app.database.upgrade(revision)
    click.echo(f"database {app.database.safe_url} is at revision {app.database.current_revision()}")


@command.command("current")
@click.pass_obj
def current(app: App) -> None:
    """Show the schema revision the database is at."""
    click.echo(app.database.current_revision() or "empty (run: contactcenter db upgrade)")
