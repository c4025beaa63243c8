"""`contactcenter evaluate`: how well the rules catch what a reviewer labelled, per rule, on one's own calls."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from contactcenter.app import App
from contactcenter.commands.recording_options import agent_channel_option, mono_leg_option, progress_bar
from contactcenter.output import Format, emit_rows
from contactcenter.qa.evaluation import (
    DEFAULT_TOLERANCE_S,
    EvaluationError,
    JudgedCall,
    Problem,
    RuleFigures,
    check_call_names,
    evaluate,
    find_inputs,
    hear_recordings,
    judge,
    read_labels,
    read_transcripts,
)
from contactcenter.records import Leg
from contactcenter.speech.rules import RuleSet, load_rules
from contactcenter.storage.database import DatabaseUnavailable

FIGURES = [
    "rule",
    "type",
    "labels",
    "expected_violations",
    "expected_satisfied",
    "true_positives",
    "false_alarms",
    "misses",
    "true_negatives",
    "no_verdict",
    "recall",
    "precision",
    "f1",
]
PROBLEMS = ["rule", "kind", "call", "at_s", "leg", "heard", "matched", "machine", "label"]
#: The table for people: fewer, shorter columns (JSON and CSV have them all, named as above).
TABLE_FIGURES = {
    "rule": "rule",
    "labels": "labels",
    "expected_violations": "violations",
    "true_positives": "found",
    "false_alarms": "false alarms",
    "misses": "misses",
    "no_verdict": "no verdict",
    "recall": "recall",
    "precision": "precision",
    "f1": "F1",
}
TABLE_TEXT = 120  # characters of what was heard shown in a table cell; JSON and CSV have all of it


class BadInput(click.ClickException):
    """A file that cannot be evaluated: one line naming it (and the line in it), exit 2 like a usage error."""

    exit_code = 2


@click.command("evaluate")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--labels",
    "labels_file",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV or TSV of call, rule, expected (violation or satisfied) and an optional time in seconds.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path),
    help="A rules file to measure instead of the rules in force (to try a change before making it).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(0, 600),
    default=DEFAULT_TOLERANCE_S,
    show_default=True,
    help="Seconds a finding may be from a labelled time and still be that violation.",
)
@agent_channel_option
@mono_leg_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_obj
def command(
    app: App,
    targets: tuple[Path, ...],
    labels_file: Path,
    rules_file: Path | None,
    tolerance: float,
    agent_channel: str,
    mono_leg: Leg,
    fmt: Format,
) -> None:
    """Recall, precision and F1 of each rule against a reviewer's labels, with every miss and false alarm.

    TARGETS are recordings (recognised and checked as `contactcenter audit` does; nothing is stored) or
    transcripts (.jsonl or .tsv: call, leg, start, end, text; no speech model needed), or folders of them.
    A recording's call is its file name without the suffix. Bad input is one line naming the file and line
    (exit 2); recordings that cannot be read are named and left out (exit 1).
    """
    rules, switched_off = _rules(app, rules_file)
    try:
        labels = read_labels(labels_file, rules, switched_off)
        recordings, transcript_files = find_inputs(list(targets), exclude=[labels_file])
        transcripts = read_transcripts(transcript_files)
        check_call_names(recordings, transcripts)
    except EvaluationError as exc:
        raise BadInput(str(exc)) from None
    if not recordings and not transcripts:
        raise BadInput("no recordings or transcripts in " + ", ".join(map(str, targets)))
    failed: dict[str, str] = {}
    judged = {call: judge(transcript, rules) for call, transcript in transcripts.items()}
    if recordings:  # the audit's own verdicts, from what it heard and the call's voice timeline
        heard, failed = _hear(app, recordings, rules, int(agent_channel), mono_leg)
        judged.update(heard)
    try:
        result = evaluate(labels, judged, rules, tolerance, unavailable=failed)
    except EvaluationError as exc:
        raise BadInput(str(exc)) from None
    rows = [*result.rules, result.total]
    if fmt == "json":
        problems = [p.row() for p in result.problems]
        emit_rows(
            [{**f.row(), "problems": [p for p in problems if p["rule"] == f.rule_id]} for f in rows],
            [*FIGURES, "problems"],
            "json",
        )
    elif fmt == "csv":
        emit_rows([f.row() for f in rows], FIGURES, "csv")
        csv.writer(sys.stdout).writerow([])  # then the misses and false alarms, under their own header
        emit_rows([p.row() for p in result.problems], PROBLEMS, "csv")
    else:
        title = (
            f"{result.labelled_calls} labelled calls of {result.calls}, {sum(f.labels for f in result.rules)} labels"
        )
        emit_rows([_table_row(f) for f in rows], list(TABLE_FIGURES.values()), "table", title=title)
        if result.problems:
            emit_rows([_table_problem(p) for p in result.problems], PROBLEMS, "table", title="misses and false alarms")
        else:
            click.echo("no misses and no false alarms")
    if failed:
        click.echo(f"{result.unevaluated_labels} labels not evaluated: their recordings could not be read", err=True)
        raise SystemExit(1)


def _rules(app: App, rules_file: Path | None) -> tuple[RuleSet, set[str]]:
    """The rules to measure: a file given, else the rules in force (the file's with the console's changes, as the
    audit checks recordings), and the ids of the file's rules switched off in the console."""
    if rules_file is not None:
        if not rules_file.is_file():
            raise BadInput(f"{rules_file}: no such file")
        return load_rules(rules_file, app.settings.company.names_said), set()
    try:
        rules = app.rule_book.refresh()
    except (DatabaseUnavailable, SQLAlchemyError):  # the file's rules, as a call would go on with
        rules = app.rules
    return rules, {rule.id for rule in app.rules.rules} - {rule.id for rule in rules.rules}


def _hear(
    app: App, recordings: list[Path], rules: RuleSet, agent_channel: int, mono_leg: Leg
) -> tuple[dict[str, JudgedCall], dict[str, str]]:
    """The recordings through the recogniser, with a progress bar; those that cannot be read named on stderr."""
    monitor = app.recording_monitor
    stderr = Console(stderr=True)
    with progress_bar("recognising", stderr) as progress:
        task = progress.add_task("", total=len(recordings))

        def done(path: Path, error: str) -> None:
            progress.update(task, advance=1, description=path.name)
            if error:
                stderr.print(f"skipped {error}", markup=False, highlight=False, soft_wrap=True)

        return hear_recordings(
            recordings,
            monitor,
            rules,
            agent_channel=agent_channel,
            mono_leg=mono_leg,
            redact=app.settings.speech.redact_numbers,
            partial_stable_s=app.settings.speech.partial_stable_ms / 1000,
            on_done=done,
        )


def _table_row(figures: RuleFigures) -> dict[str, Any]:
    """Figures as a person reads them: percentages, and a dash where the labels allow no figure."""
    row = figures.row()
    for name in ("recall", "precision", "f1"):
        row[name] = "—" if row[name] is None else f"{100 * row[name]:.1f} %"
    return {heading: row[name] for name, heading in TABLE_FIGURES.items()}


def _table_problem(problem: Problem) -> dict[str, Any]:
    """A miss or false alarm in a table cell's width: what was heard cut short, the label's file by its name."""
    row = problem.row()
    heard = row["heard"]
    row["heard"] = heard if len(heard) <= TABLE_TEXT else heard[: TABLE_TEXT - 1] + "…"
    file, _, line = row["label"].rpartition(":")
    row["label"] = f"{Path(file).name}:{line}"
    return row
