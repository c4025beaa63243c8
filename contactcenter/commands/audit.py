"""`contactcenter audit`: recorded calls through the recogniser and the service-script rules."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from contactcenter.app import App
from contactcenter.output import Format, emit_rows
from contactcenter.qa.audit import AuditResult, audit_files, find_recordings, pair_legs
from contactcenter.records import Leg

COLUMNS = ["file", "ok", "duration_s", "score", "check", "failed_rules", "violations", "utterances", "call_id", "error"]


@click.command("audit")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--agent-channel",
    type=click.Choice(["0", "1"]),
    default="0",
    show_default=True,
    help="Stereo recordings: the channel with the agent (0 left, 1 right); the other is the customer.",
)
@click.option(
    "--mono-leg",
    type=click.Choice(get_args(Leg)),
    default="agent",
    show_default=True,
    help="Mono recordings: whose voice it is.",
)
@click.option(
    "--leg-suffixes",
    metavar="AGENT,CUSTOMER",
    default=None,
    help="Mono files, one per leg: NAME<AGENT>.wav and NAME<CUSTOMER>.wav are one call (e.g. -out,-in).",
)
@click.option("--agent", "agent_extension", default="", help="Extension of the agent on these recordings.")
@click.option("--no-store", is_flag=True, help="Print the results without storing them.")
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on standard output.")
@click.pass_obj
def command(
    app: App,
    targets: tuple[Path, ...],
    agent_channel: str,
    mono_leg: Leg,
    leg_suffixes: str | None,
    agent_extension: str,
    no_store: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Audit recordings (FILES or folders of them): transcript, rule findings and score for each.

    Results are stored like live calls unless --no-store. Files that cannot be read are named and
    skipped; the exit status is 1 if any was skipped.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    suffixes = _suffixes(leg_suffixes)
    paths = find_recordings(list(targets))
    if not paths:
        raise click.ClickException("no recordings found in " + ", ".join(map(str, targets)))
    database = None if no_store else app.store
    rules, monitor = app.rule_book.refresh(), app.speech_monitor  # as live calls are checked
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("auditing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(pair_legs(paths, suffixes)))

        def done(result: AuditResult) -> None:
            progress.update(task, advance=1, description=result.path.name)
            if not result.ok:
                stderr.print(f"skipped {result.error}", markup=False, highlight=False, soft_wrap=True)

        results = audit_files(
            paths,
            monitor,
            rules,
            database,
            agent_channel=int(agent_channel),
            mono_leg=mono_leg,
            agent_extension=agent_extension,
            redact=app.settings.speech.redact_numbers,
            partial_stable_s=app.settings.speech.partial_stable_ms / 1000,
            on_done=done,
            leg_suffixes=suffixes,
        )
    fmt: Format = "json" if as_json else "csv" if as_csv else "table"
    emit_rows([r.row() for r in results], COLUMNS, fmt, title="audit")
    if not all(r.ok for r in results):
        raise SystemExit(1)


def _suffixes(text: str | None) -> tuple[str, str] | None:
    """``--leg-suffixes -out,-in`` → ("-out", "-in"); a clear usage error for anything else."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise click.BadParameter(
            "expected two different suffixes, the agent's then the customer's: -out,-in", param_hint="--leg-suffixes"
        )
    return parts[0], parts[1]
