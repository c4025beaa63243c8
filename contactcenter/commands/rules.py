"""`contactcenter rules`: check the rules file and try sentences against it, before a call does."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from contactcenter.app import App
from contactcenter.output import emit_rows, terminal_text
from contactcenter.speech.phrases import PhraseMatch, PhraseVerdict
from contactcenter.speech.rule_book import rule_states
from contactcenter.speech.rules import CONVERSATION_KEYS, Rule
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
            "phrases": len(state.phrases) if r.matcher is not None else len(r.cues.phrases) if r.cues else 0,
            "settings": conversation_settings(r),
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
        "settings",
        "description",
        "changed_by",
    ]
    if not as_json:  # what fits a terminal; --json has everything
        columns = ["id", "type", "enabled", "window", "severity", "weight", "settings", "description"]
    emit_rows(rows, columns, "json" if as_json else "table", title=str(app.settings.scripts.rules))


def conversation_settings(rule: Rule) -> str:
    """What a conversation rule measures and its limits, as set (empty for phrase rules)."""
    kind = rule.spec.kind
    if kind == "talk_ratio":
        return "report only, not scored"
    phrase_keys = ("phrases", "phrases_file", "match", "strictness", "complaint_phrases")
    keys = [k for k in CONVERSATION_KEYS.get(kind, ()) if k not in phrase_keys]
    values = rule.spec.model_dump(include=set(keys))
    return " ".join(f"{key}={values[key]}" for key in keys if values[key] not in (None, []))


@command.command("test")
@click.argument("sentences", nargs=-1, required=True)
@click.option("--speaker", type=click.Choice(["agent", "customer"]), default="agent", show_default=True)
@click.option(
    "--why",
    is_flag=True,
    help="Also show how each phrase the sentence comes close to was compared: the pinyin, the edits counted, "
    "and the guard that refused a near-miss (negator, first or last syllable, a different syllable, edits allowed).",
)
@click.pass_obj
def test_rules(app: App, sentences: tuple[str, ...], speaker: str, why: bool) -> None:
    """Show which phrase rules each sentence would trigger (time windows aside), and how it matched."""
    for sentence in sentences:
        click.echo(terminal_text(sentence, one_line=True))
        found = False
        for rule in app.rule_book.refresh().phrase_rules():  # as a call would check it now
            if rule.spec.speaker not in (speaker, "any"):
                continue
            verdict = "banned" if rule.spec.negate else "required, said"
            matches = rule.phrase_matcher.find(sentence)
            verdicts = rule.phrase_matcher.explain(sentence) if why else []
            found = found or bool(matches)
            for match in matches:
                how = "exact" if match.distance == 0 else f"{match.distance} edit(s) by pinyin"
                _line(f"  {rule.id} ({verdict}): {match.phrase!r} as {match.matched_text!r}, {how}")
                if why:
                    _explain(next(v for v in verdicts if v.match == match))
            _near_misses(rule.id, verdict, verdicts, matches)
        if not found:
            click.echo("  no rule")


def _line(text: str) -> None:
    click.echo(terminal_text(text, one_line=True))


def _explain(verdict: PhraseVerdict) -> None:
    """How a phrase was compared: its pinyin and the text's, each syllable not the same character, the edits
    counted against those allowed, and the guards that refused it."""
    level = verdict.level + (f", {verdict.budget} allowed" if verdict.budget else "")
    steps = "".join(f"; {step.describe()}" for step in verdict.steps if step.kind != "same")
    _line(f"      {verdict.phrase_pinyin} | heard {verdict.text_pinyin}: {verdict.edits} edit(s){steps} ({level})")
    for reason in verdict.refused:
        _line(f"      refused: {reason}")


def _near_misses(rule_id: str, kind: str, verdicts: list[PhraseVerdict], matches: list[PhraseMatch]) -> None:
    """The phrases the sentence comes close to without matching (fewer than half of the phrase's syllables
    edited), and the ones matched inside a longer phrase found at the same place (reported as that one)."""
    for verdict in verdicts:
        if verdict.match is not None and verdict.match not in matches:
            _line(f"  {rule_id} ({kind}): {verdict.phrase!r} inside a longer phrase found there, not reported apart")
        elif verdict.match is None and 0 <= verdict.edits <= (len(verdict.phrase) - 1) // 2:
            _line(f"  {rule_id} ({kind}): {verdict.phrase!r} not matched, closest {verdict.matched_text!r}")
            _explain(verdict)
