"""`contactcenter audit-worker`: audit the recordings queued by `contactcenter audit --enqueue`, on any machine
that reaches the desk's PostgreSQL database and sees the recordings at the paths they were queued under.

Run as many as the machines have cores to spare (``--workers N`` forks N after the speech model loads, so they
share it). A worker that dies mid-file loses nothing: its recording is audited again by another once its
heartbeat has been silent for ``--stalled-after`` seconds, and stored once (``qa.audit_queue``).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import wait
from typing import Any

import click
from rich.console import Console

from contactcenter.app import App
from contactcenter.commands.audit import RowStream, queue_for
from contactcenter.commands.recording_options import progress_bar
from contactcenter.output import Format
from contactcenter.qa.audit import AuditResult
from contactcenter.qa.audit_queue import AuditQueue, WorkerOptions, job_handler
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage.database import Database

PR_SET_PDEATHSIG = 1


@click.command("audit-worker")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes on this machine, forked after the speech model loads (they share it).",
)
@click.option("--until-done", is_flag=True, help="Stop once no recording is waiting or being audited by any worker.")
@click.option(
    "--max-files", type=click.IntRange(min=1), default=None, help="Stop after auditing this many (per process)."
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between this worker's signs of life in the database.",
)
@click.option(
    "--stalled-after",
    "stalled_s",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="A worker silent this long is taken for dead: its recording goes back in the queue.",
)
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between looks at the queue besides its notifications.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line for each recording audited.")
@click.pass_obj
def command(
    app: App,
    workers: int,
    until_done: bool,
    max_files: int | None,
    heartbeat_s: float,
    stalled_s: float,
    poll_s: float,
    as_json: bool,
) -> None:
    """Audit queued recordings (contactcenter audit --enqueue) and store them, until stopped (Ctrl-C, SIGTERM).

    Prints a line (or with --json an object) per recording; a file that cannot be read is reported and
    not stored. Needs the desk's PostgreSQL database.
    """
    if stalled_s < 2 * heartbeat_s:
        raise click.BadParameter(
            f"{stalled_s:g} s would take a live worker for dead: at least twice --heartbeat ({heartbeat_s:g} s)",
            param_hint="--stalled-after",
        )
    queue = queue_for(app)
    database = app.store
    queue.ensure_schema()
    SpeechModel.load(
        app.settings.speech.model_path, app.settings.speech.decoder_frames_per_chunk
    )  # here, once: the forked processes share it
    options = WorkerOptions(until_done, max_files, heartbeat_s, stalled_s, poll_s)
    fmt: Format = "json" if as_json else "table"
    stderr = Console(stderr=True)
    if workers == 1:
        with _queue_bar(stderr) as show:
            _serve(app, queue, database, options, fmt, stderr, show)
        return
    _serve_forked(app, queue, database, options, fmt, stderr, workers)


def _serve(
    app: App,
    queue: AuditQueue,
    database: Database,
    options: WorkerOptions,
    fmt: Format,
    stderr: Console,
    show: Callable[[dict[str, int] | None, str], None] | None,
) -> None:
    """One worker in this process: a line per recording on standard output, progress (or, when standard error is
    not a terminal, a line per recording started) on standard error."""
    stream = RowStream(fmt)
    monitor = app.recording_monitor

    def started(path: os.PathLike[str]) -> None:
        if show is not None:
            show(None, os.fspath(path))
        else:
            stderr.print(f"auditing {os.fspath(path)}", markup=False, highlight=False, soft_wrap=True)

    def done(result: AuditResult) -> None:
        stream.emit(result.row())
        if not result.ok:
            stderr.print(f"skipped {result.error}", markup=False, highlight=False, soft_wrap=True)

    handler = job_handler(
        queue,
        monitor,
        app.rule_book.refresh,  # the rules in force, console changes included, read for each recording
        database,
        app.settings.speech.redact_numbers,
        app.settings.speech.partial_stable_ms / 1000,
        on_start=started,
        on_done=done,
    )
    queue.run_worker(handler, options, on_state=(lambda state: show(state, "")) if show is not None else None)


def _serve_forked(
    app: App, queue: AuditQueue, database: Database, options: WorkerOptions, fmt: Format, stderr: Console, workers: int
) -> None:
    """N workers forked from this process; it shows the queue's progress and passes SIGTERM/SIGINT on."""
    database.engine.dispose()  # no connection crosses the fork
    context = multiprocessing.get_context("fork")

    def child() -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: stop if the parent is killed
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        database.engine.dispose(close=False)
        try:
            _serve(app, queue, database, options, fmt, stderr, None)
        finally:
            app.recording_monitor.close()  # its recogniser threads: this child ends without the app's close

    children = [context.Process(target=child, name=f"audit-worker-{i + 1}") for i in range(workers)]
    sys.stdout.flush()  # what is buffered here would be written again by each child when it exits
    sys.stderr.flush()
    for process in children:
        process.start()

    def pass_on(signum: int, _frame: Any) -> None:
        for process in children:
            if process.is_alive() and process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _queue_bar(stderr) as show:
            while any(process.is_alive() for process in children):
                wait([process.sentinel for process in children], timeout=max(1.0, options.poll_s))
                if show is not None:
                    with contextlib.suppress(Exception):  # progress only: the workers say what matters
                        show(queue.counts(), "")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for process in children:
            process.join()
    codes = [process.exitcode for process in children]
    if any(code for code in codes):
        raise click.ClickException(f"a worker process ended with {', '.join(str(c) for c in codes if c)}")


@contextlib.contextmanager
def _queue_bar(stderr: Console) -> Iterator[Callable[[dict[str, int] | None, str], None] | None]:
    """On a terminal, a bar of the whole queue's progress since this worker started (all workers' work);
    elsewhere nothing (None): the lines on standard output say what was done."""
    if not stderr.is_terminal:
        yield None
        return
    with progress_bar("audit queue", stderr, spinner=True) as progress:
        task = progress.add_task("waiting for recordings", total=None)
        start: dict[str, int] = {}

        def show(state: dict[str, int] | None, file: str) -> None:
            if state is None:
                progress.update(task, description=file)
                return
            finished = sum(count for status, count in state.items() if status not in ("todo", "doing"))
            start.setdefault("finished", finished)
            done = finished - start["finished"]
            waiting = state.get("todo", 0) + state.get("doing", 0)
            progress.update(task, completed=done, total=done + waiting or None)

        yield show
