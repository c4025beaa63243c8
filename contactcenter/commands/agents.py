"""`contactcenter agents`: the agents' names and teams (班组), which the scorecards group by.

An agent appears on its first call under its extension; this names it and puts it in a team.
"""

from __future__ import annotations

import click
from sqlalchemy import select

from contactcenter.app import App
from contactcenter.output import emit_rows
from contactcenter.storage.calls import agent_for
from contactcenter.storage.models import Agent

COLUMNS = ["extension", "name", "team", "active"]


@click.group("agents")
def command() -> None:
    """The agents (by extension): name and team, for the scorecards."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.pass_obj
def list_agents(app: App, as_json: bool) -> None:
    """Every agent the desk has seen or been told about."""
    with app.store.session() as session:
        rows = [
            {"extension": a.extension, "name": a.name, "team": a.team, "active": a.active}
            for a in session.scalars(select(Agent).order_by(Agent.extension))
        ]
    emit_rows(rows, COLUMNS, "json" if as_json else "table", title="agents")


@command.command("set")
@click.argument("extension")
@click.option("--name", help="The agent's name, as reviewers should see it.")
@click.option("--team", help='The team (班组) the agent belongs to; "" for none.')
@click.option("--active/--inactive", default=None, help="Whether the agent still takes calls.")
@click.pass_obj
def set_agent(app: App, extension: str, name: str | None, team: str | None, active: bool | None) -> None:
    """Name an agent, move it to a team, or retire it (made if the extension is new)."""
    with app.store.session() as session:
        agent = agent_for(session, extension)
        if agent is None:
            raise click.BadParameter("an extension is needed", param_hint="EXTENSION")
        if name is not None:
            agent.name = name
        if team is not None:
            agent.team = team
        if active is not None:
            agent.active = active
        session.flush()
        click.echo(
            f"agent {agent.extension}: {agent.name or '(no name)'}, team {agent.team or '(none)'}"
            f"{'' if agent.active else ', inactive'}"
        )
