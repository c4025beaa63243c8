"""`contactcenter audit`: recorded calls through the recogniser and the service-script rules.

On threads of this process (the default), on N processes of this machine (``--workers N``), or queued for
``contactcenter audit-worker`` on any number of machines (``--enqueue``, PostgreSQL); ``--watch`` keeps taking
the recordings a PBX drops into a folder, once each is complete.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from contactcenter.app import App
from contactcenter.commands.recording_options import agent_channel_option, mono_leg_option, progress_bar
from contactcenter.output import Format, emit_rows, spreadsheet_cell, terminal_text
from contactcenter.qa.audit import (
    AuditOptions,
    AuditResult,
    Target,
    audit_files,
    audit_target,
    find_recordings,
    pair_legs,
    stored_call_id,
)
from contactcenter.qa.audit_pool import Auditor, AuditProcessError, ProcessAuditor, Setup, ThreadAuditor
from contactcenter.qa.audit_queue import AuditQueue, QueueNeedsPostgreSQL
from contactcenter.qa.audit_watch import FolderWatch
from contactcenter.records import Leg
from contactcenter.speech.rules import RuleSet
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage.database import Database

COLUMNS = ["file", "ok", "duration_s", "score", "check", "failed_rules", "violations", "utterances", "call_id", "error"]


@click.command("audit")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@agent_channel_option
@mono_leg_option
@click.option(
    "--leg-suffixes",
    metavar="AGENT,CUSTOMER",
    default=None,
    help="Mono files, one per leg: NAME<AGENT>.wav and NAME<CUSTOMER>.wav are one call (e.g. -out,-in).",
)
@click.option("--agent", "agent_extension", default="", help="Extension of the agent on these recordings.")
@click.option("--no-store", is_flag=True, help="Print the results without storing them.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Audit on N processes of this machine (forked after the speech model loads, which they share).",
)
@click.option(
    "--enqueue",
    is_flag=True,
    help="Queue the recordings for `contactcenter audit-worker` on any machine (needs PostgreSQL).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep watching the folders: audit (or with --enqueue, queue) each recording once it is complete.",
)
@click.option(
    "--settle",
    "settle_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="--watch: seconds a file's size must stay the same (and no process have it open) before it is taken.",
)
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="--watch: seconds between looks at the folders.",
)
@click.option("--max-files", type=click.IntRange(min=1), default=None, help="--watch: stop after this many recordings.")
@click.option(
    "--once",
    is_flag=True,
    help="--watch: take what is complete now (after one --settle), audit or queue it, and stop (for cron).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON on standard output (--watch: one object a line).")
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
    workers: int | None,
    enqueue: bool,
    watch: bool,
    settle_s: float,
    poll_s: float,
    max_files: int | None,
    once: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Audit recordings (FILES or folders of them): transcript, rule findings and score for each.

    Results are stored like live calls unless --no-store. Files that cannot be read are named and
    skipped; the exit status is 1 if any was skipped.
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if enqueue and (no_store or workers):
        raise click.UsageError("--enqueue leaves the audit to `contactcenter audit-worker`: no --no-store or --workers")
    if (max_files is not None or once) and not watch:
        raise click.UsageError("--max-files and --once are for --watch")
    suffixes = _suffixes(leg_suffixes)
    fmt: Format = "json" if as_json else "csv" if as_csv else "table"
    options = AuditOptions(int(agent_channel), mono_leg, agent_extension)
    if watch:
        not_folders = [str(t) for t in targets if not t.is_dir()]
        if not_folders:
            raise click.BadParameter(f"not a folder: {', '.join(not_folders)}", param_hint="--watch TARGETS")
    queue = queue_for(app) if enqueue else None
    database = None if no_store else app.store
    if queue is not None:
        queue.ensure_schema()
        if watch:
            watching = _Watching(suffixes, settle_s, poll_s, max_files, once, fmt)
            _watch(app, list(targets), watching, database, options, queue=queue)
        else:
            _enqueue(queue, list(targets), suffixes, options)
        return
    options = AuditOptions(
        options.agent_channel,
        options.mono_leg,
        options.agent_extension,
        redact=app.settings.speech.redact_numbers,
        partial_stable_s=app.settings.speech.partial_stable_ms / 1000,
    )
    if watch:
        watching = _Watching(suffixes, settle_s, poll_s, max_files, once, fmt)
        _watch(app, list(targets), watching, database, options, workers=workers)
        return
    paths = find_recordings(list(targets))
    if not paths:
        raise click.ClickException("no recordings found in " + ", ".join(map(str, targets)))
    stderr = Console(stderr=True)
    if workers is None:
        rules = app.rule_book.refresh()  # as live calls are checked
        monitor = app.recording_monitor
        with _bar(stderr, len(pair_legs(paths, suffixes))) as done:
            results = audit_files(
                paths,
                monitor,
                rules,
                database,
                agent_channel=options.agent_channel,
                mono_leg=options.mono_leg,
                agent_extension=options.agent_extension,
                redact=options.redact,
                partial_stable_s=options.partial_stable_s,
                on_done=done,
                leg_suffixes=suffixes,
            )
    else:
        targets_ = pair_legs(paths, suffixes)
        auditor = _processes(app, workers, app.rule_book.refresh, database, options)  # rules read for each
        try:
            numbers = [auditor.submit(target) for target in targets_]
            finished: dict[int, AuditResult] = {}
            with _bar(stderr, len(targets_)) as done:
                while auditor.pending:
                    for number, result in auditor.collect(None):
                        finished[number] = result
                        done(result)
        except AuditProcessError as exc:
            raise click.ClickException(f"the audit processes cannot start: {exc}") from None
        finally:
            auditor.close()
        results = [finished[number] for number in numbers]
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


def queue_for(app: App) -> AuditQueue:
    """The audit queue on the desk's database; on SQLite, one line saying PostgreSQL is needed."""
    try:
        return AuditQueue(app.settings.database_url)
    except QueueNeedsPostgreSQL as exc:
        raise click.ClickException(str(exc)) from None


def _enqueue(queue: AuditQueue, targets: list[Path], suffixes: tuple[str, str] | None, options: AuditOptions) -> None:
    paths = find_recordings(targets)
    if not paths:
        raise click.ClickException("no recordings found in " + ", ".join(map(str, targets)))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:  # a worker elsewhere could only say so later; say it now
        raise click.ClickException(f"no such file: {', '.join(missing)}")
    queued, waiting = queue.enqueue(pair_legs(paths, suffixes), options)
    already = f" ({waiting} already waiting)" if waiting else ""
    click.echo(f"queued {queued} recordings{already} for `contactcenter audit-worker` in {queue.safe_url}")


def _processes(
    app: App, workers: int, rules: Callable[[], RuleSet], database: Database | None, options: AuditOptions
) -> Auditor:
    """N audit processes, forked once the model is loaded here (so they share it)."""
    SpeechModel.load(
        app.settings.speech.model_path, app.settings.speech.decoder_frames_per_chunk
    )  # also: a missing model is said once, here, not per child
    app.database.engine.dispose()  # no connection crosses the fork (the store and the rule book share it)

    @contextmanager
    def setup() -> Iterator[Callable[[Target], AuditResult]]:
        app.database.engine.dispose(close=False)  # the parent's pool, if any, is not this process's to close
        monitor = app.recording_monitor  # built here: threads do not cross a fork
        try:
            yield lambda target: audit_target(target, monitor, rules(), database, options)
        finally:
            monitor.close()

    process_setup: Setup = setup
    return ProcessAuditor(workers, process_setup)


@contextmanager
def _bar(stderr: Console, total: int) -> Iterator[Callable[[AuditResult], None]]:
    """A progress bar on standard error (interactive runs); yields what to call as each recording is done."""
    with progress_bar("auditing", stderr) as progress:
        task = progress.add_task("", total=total)

        def done(result: AuditResult) -> None:
            progress.update(task, advance=1, description=result.path.name)
            if not result.ok:
                stderr.print(f"skipped {result.error}", markup=False, highlight=False, soft_wrap=True)

        yield done


class RowStream:
    """Results printed one by one as they come (a watch has no end to print a table at)."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self._header = False

    def emit(self, row: dict[str, object]) -> None:
        if self.fmt == "json":  # one object a line, its text without what a terminal would obey
            clean = {k: terminal_text(v, one_line=True) if isinstance(v, str) else v for k, v in row.items()}
            click.echo(json.dumps(clean, ensure_ascii=False, default=str))
            return
        if self.fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if not self._header:
                writer.writerow(COLUMNS)
                self._header = True
            writer.writerow([spreadsheet_cell(terminal_text(row.get(c), one_line=True)) for c in COLUMNS])
            click.echo(buffer.getvalue(), nl=False)
            return
        fields = (
            [
                "audited",
                row["file"],
                f"score {row['score']}",
                str(row["check"]),
                f"failed: {row['failed_rules'] or '-'}",
            ]
            if row["ok"]
            else ["skipped", row["error"]]
        )
        click.echo(terminal_text("  ".join(map(str, fields)), one_line=True))


@dataclass(frozen=True)
class _Watching:
    """How a watch takes files and says what it did (the --watch options)."""

    suffixes: tuple[str, str] | None
    settle_s: float
    poll_s: float
    max_files: int | None
    once: bool
    fmt: Format


def _watch(
    app: App,
    folders: Sequence[Path],
    how: _Watching,
    database: Database | None,
    options: AuditOptions,
    *,
    workers: int | None = None,
    queue: AuditQueue | None = None,
) -> None:
    """Take each recording once it is complete; audit it here or queue it, until --max-files, --once or Ctrl-C."""
    stderr = Console(stderr=True)
    stream = RowStream(how.fmt)
    status = {"taken": 0, "done": 0}

    def waiting(path: Path, reason: str) -> None:
        stderr.print(f"waiting for {path}: {reason}", markup=False, highlight=False, soft_wrap=True)

    def skip(target: Target) -> bool:  # audited before (this content is stored): a restarted watch goes on
        if database is None:
            return False
        try:
            return stored_call_id(database, target) is not None
        except OSError:  # gone or unreadable since it settled: the audit says so
            return False

    watcher = FolderWatch(folders, how.suffixes, how.settle_s, skip, waiting)
    auditor: Auditor | None = None
    if queue is None:  # the rules in force, console changes included, read for each recording
        rules = app.rule_book.refresh
        if workers is not None:
            auditor = _processes(app, workers, rules, database, options)
        else:
            monitor = app.recording_monitor
            auditor = ThreadAuditor(lambda t: audit_target(t, monitor, rules(), database, options), monitor.workers)
    failed = False
    queued = queue is not None
    # --once: a file is complete when it has not changed for --settle seconds, so look until then, and stop
    last_look = time.monotonic() + how.settle_s + how.poll_s if how.once else None
    try:
        with _spinner(stderr) as show:
            while True:
                room = None if how.max_files is None else how.max_files - status["taken"]
                looking = last_look is None or time.monotonic() <= last_look
                if looking and (room is None or room > 0):
                    for target in watcher.scan()[:room]:
                        status["taken"] += 1
                        if queue is not None:
                            queue.enqueue([target], options)
                            click.echo(terminal_text(f"queued {_name(target)}", one_line=True))
                        elif auditor is not None:
                            auditor.submit(target)
                show(_watching(folders, status, queued))
                if auditor is not None and auditor.pending:
                    for _, result in auditor.collect(how.poll_s):  # waits up to --poll seconds for one
                        status["done"] += 1
                        failed |= not result.ok
                        stream.emit(result.row())
                        if not result.ok:
                            stderr.print(f"skipped {result.error}", markup=False, highlight=False, soft_wrap=True)
                    continue
                if (how.max_files is not None and status["taken"] >= how.max_files) or not looking:
                    break
                time.sleep(how.poll_s)
    except AuditProcessError as exc:
        raise click.ClickException(f"the audit processes cannot start: {exc}") from None
    except KeyboardInterrupt:
        stderr.print("stopped watching", highlight=False)
        raise SystemExit(130) from None
    finally:
        if auditor is not None:
            auditor.close()
    if failed:
        raise SystemExit(1)


def _name(target: Target) -> str:
    return " + ".join(str(p) for p in (target if isinstance(target, tuple) else (target,)))


def _watching(folders: Sequence[Path], status: dict[str, int], queued: bool = False) -> str:
    where = ", ".join(map(str, folders))
    if queued:
        return f"watching {where}: {status['taken']} queued"
    return f"watching {where}: {status['done']} audited, {status['taken'] - status['done']} in progress"


@contextmanager
def _spinner(stderr: Console) -> Iterator[Callable[[str], None]]:
    """A line that says what a watch is doing, on a terminal; nothing elsewhere (the output says it)."""
    if not stderr.is_terminal:
        yield lambda _text: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=stderr, transient=True) as progress:
        task = progress.add_task("")
        yield lambda text: progress.update(task, description=text)
