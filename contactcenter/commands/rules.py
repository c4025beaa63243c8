"""`contactcenter rules`: check the rules file and try sentences against it, before a call does."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from contactcenter.app import App
from contactcenter.output import emit_rows, terminal_text
from contactcenter.speech.rule_book import rule_states
from contactcenter.storage.database import DatabaseUnavailable


@click.group("rules")
def command() -> None:
    """The service-script rules ([scripts] rules): list them, and test sentences against them."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.pass_obj
def list_rules(app: App, as_json: bool) -> None:
    """Every rule with its kind, speaker, window, severity and weight as in force: the file's (this also
    validates it), with the changes admins made in the console when the database can be read."""
    try:
        with app.database.require_current_schema().session() as session:
            states = rule_states(app.rules, session)
    except (DatabaseUnavailable, SQLAlchemyError) as exc:
        click.echo(f"the file's rules only: {exc}", err=True)
        states = rule_states(app.rules, None)
    rows = [
        {
            "id": r.id,
            "type": r.type,
            "enabled": state.enabled,
            "speaker": r.spec.speaker,
            "window": r.spec.window,
            "when": r.spec.when,
            "live": r.spec.live,
            "severity": state.severity,
            "weight": state.weight,
            "phrases": len(state.phrases),
            "description": r.spec.description,
            "changed_by": state.changed_by,
        }
        for r, state in zip(app.rules.rules, states, strict=True)
    ]
    columns = [
        "id",
        "type",
        "enabled",
        "speaker",
        "window",
        "when",
        "live",
        "severity",
        "weight",
        "phrases",
        "description",
        "changed_by",
    ]
    if not as_json:  # what fits a terminal; --json has everything
        columns = ["id", "type", "enabled", "window", "severity", "weight", "description"]
    emit_rows(rows, columns, "json" if as_json else "table", title=str(app.settings.scripts.rules))


@command.command("test")
@click.argument("sentences", nargs=-1, required=True)
@click.option("--speaker", type=click.Choice(["agent", "customer"]), default="agent", show_default=True)
@click.pass_obj
def test_rules(app: App, sentences: tuple[str, ...], speaker: str) -> None:
    """Show which phrase rules each sentence would trigger (time windows aside), and how it matched."""
    for sentence in sentences:
        click.echo(terminal_text(sentence, one_line=True))
        found = False
        for rule in app.rule_book.refresh().phrase_rules():  # as a call would check it now
            if rule.spec.speaker not in (speaker, "any"):
                continue
            for match in rule.phrase_matcher.find(sentence):
                found = True
                verdict = "banned" if rule.spec.negate else "required, said"
                how = "exact" if match.distance == 0 else f"{match.distance} edit(s) by pinyin"
                click.echo(
                    terminal_text(
                        f"  {rule.id} ({verdict}): {match.phrase!r} as {match.matched_text!r}, {how}", one_line=True
                    )
                )
        if not found:
            click.echo("  no rule")
