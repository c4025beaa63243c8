"""The audit queue: recordings waiting for ``contactcenter audit-worker`` on any machine, kept in the
PostgreSQL database the desk already has (``contactcenter audit --enqueue``).

**Why procrastinate.** It is a maintained task queue whose only server is PostgreSQL: no broker to run
(Celery, RQ and Dramatiq want Redis or RabbitMQ; a deployment here has PostgreSQL and nothing else). Its
workers take jobs with ``SELECT … FOR UPDATE SKIP LOCKED``, wake on ``LISTEN/NOTIFY``, and record a heartbeat,
which is what tells a dead worker from a slow one. Its tables live beside the desk's (``procrastinate_*``,
created here on first use, under an advisory lock so two machines starting at once do not race) and are not
part of the desk's Alembic schema, so the desk's migrations and the queue's never collide. The version is
pinned (3.10): a newer procrastinate may need its own schema migrations applied first.

**Exactly once.** Each recording is one job, deferred with the file's path as its *queueing lock* (a recording
already waiting is not queued again) and as its *lock* (two jobs for one recording never run at once). A worker
that dies mid-file (SIGKILL, power cut) stops its heartbeat; after ``stalled_s`` a live worker puts its job back
in the queue (``recover_stalled``: one worker at a time, under an advisory lock, so a job is put back once) and
another worker audits it from the start. The dead worker stored nothing (a call is stored in one transaction,
at the end), or stored it and died before saying so: the store is keyed by the recording's content
(``sip_call_id`` from its hash), so the second audit replaces the row rather than adding one. A worker also
holds a PostgreSQL advisory lock on the recording's content while it audits and stores it, released by the
server the moment the worker's connection drops: a worker frozen past the timeout that wakes up waits for the
other rather than writing beside it.

The workers must see the recordings at the paths they were queued under (one shared folder, mounted alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate import exceptions as queue_errors
from procrastinate.schema import SchemaManager
from sqlalchemy.engine import make_url

from contactcenter.qa.audit import (
    AuditOptions,
    AuditResult,
    RecordingError,
    Target,
    audit_recording,
    read_target,
    recording_call_id,
    target_files,
)
from contactcenter.records import Leg
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import RuleSet
from contactcenter.storage.database import Database, DatabaseUnavailable

log = logging.getLogger(__name__)

QUEUE = "contactcenter.audit"
TASK = "contactcenter.audit_recording"
#: Advisory-lock namespaces (the first key of pg_advisory_lock(int, int)): the schema, stalled-job recovery,
#: one recording's content.
_SCHEMA_LOCK, _RECOVERY_LOCK, _RECORDING_LOCK = 1_701_800_001, 1_701_800_002, 1_701_800_003
#: Attempts at one job: a worker dying or a passing database failure costs one each.
MAX_ATTEMPTS = 3


class QueueNeedsPostgreSQL(Exception):
    """The audit queue was asked for on a database that is not PostgreSQL (the embedded SQLite)."""


def queue_conninfo(database_url: str) -> str:
    """The libpq address of the desk's database, or QueueNeedsPostgreSQL naming the URL (password hidden)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise QueueNeedsPostgreSQL(
            f"the audit queue needs PostgreSQL, and the database is {url.render_as_string(hide_password=True)} "
            "(audit on this machine with: contactcenter audit --workers N)"
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class AuditJob:
    """One queued recording: its file(s) and how to read them. JSON in the queue, a Target in the worker."""

    files: tuple[str, ...]
    agent_channel: int = 0
    mono_leg: Leg = "agent"
    agent_extension: str = ""

    @classmethod
    def of(cls, target: Target, options: AuditOptions) -> AuditJob:
        files = tuple(str(path.resolve()) for path in target_files(target))
        return cls(files, options.agent_channel, options.mono_leg, options.agent_extension)

    @property
    def target(self) -> Target:
        paths = [Path(name) for name in self.files]
        return (paths[0], paths[1]) if len(paths) == 2 else paths[0]

    @property
    def key(self) -> str:
        """The recording's lock and queueing lock: its files."""
        return "audit:" + "|".join(self.files)

    def arguments(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "agent_channel": self.agent_channel,
            "mono_leg": self.mono_leg,
            "agent_extension": self.agent_extension,
        }


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: when it stops, and how soon a dead worker's recording is audited again."""

    until_done: bool = False  # stop when nothing is waiting or being audited anywhere
    max_files: int | None = None  # stop after auditing this many
    heartbeat_s: float = 10.0
    stalled_s: float = 30.0  # no heartbeat for this long: the worker is dead and its recording is put back
    poll_s: float = 5.0  # how often to look for new jobs without a notification, and at the queue's state


class AuditQueue:
    """The queue on one PostgreSQL database: ``enqueue`` from anywhere, ``run_worker`` on the machines that audit."""

    def __init__(self, database_url: str) -> None:
        self.conninfo = queue_conninfo(database_url)
        self.safe_url = make_url(database_url).render_as_string(hide_password=True)
        self._connector = PsycopgConnector(
            conninfo=self.conninfo, min_size=1, max_size=6, kwargs={"connect_timeout": 5}
        )
        self.app = App(connector=self._connector)
        self._handler: Callable[[AuditJob], AuditResult] | None = None
        self.task = self.app.task(name=TASK, queue=QUEUE, retry=RetryStrategy(max_attempts=MAX_ATTEMPTS - 1, wait=10))(
            self._run_job
        )

    def _run_job(self, files: list[str], agent_channel: int, mono_leg: Leg, agent_extension: str) -> None:
        if self._handler is None:
            raise RuntimeError("this queue has no worker")
        self._handler(AuditJob(tuple(files), agent_channel, mono_leg, agent_extension))

    # ------------------------------------------------------------------------------------- plain connections

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of its own (autocommit), or DatabaseUnavailable naming the database and why."""
        try:
            connection = psycopg.connect(self.conninfo, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {_first_line(exc)}") from None
        with connection:
            yield connection

    def ensure_schema(self) -> None:
        """The queue's tables, created if this database has none yet (one machine at a time)."""
        with self.connection() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_SCHEMA_LOCK,))
            row = connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            if not (row and row[0]):
                connection.execute(SchemaManager.get_schema())  # no parameters: sent as it is
                log.info("the audit queue's tables were created in %s", self.safe_url)

    def counts(self) -> dict[str, int]:
        """Jobs in the queue by state: todo (waiting), doing, succeeded, failed …"""
        with self.connection() as connection:
            rows = connection.execute(_COUNTS, {"queue": QUEUE}).fetchall()
        return {status: count for status, count in rows}

    # ----------------------------------------------------------------------------------------------- queuing

    def enqueue(self, targets: Sequence[Target], options: AuditOptions) -> tuple[int, int]:
        """Queue the recordings; (queued, already waiting). ``ensure_schema`` first, once."""
        queued = waiting = 0
        try:
            self.app.open()
        except (queue_errors.ConnectorException, psycopg.Error) as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {_first_line(exc)}") from None
        try:
            for target in targets:
                job = AuditJob.of(target, options)
                try:
                    self.task.configure(lock=job.key, queueing_lock=job.key).defer(**job.arguments())
                    queued += 1
                except queue_errors.AlreadyEnqueued:
                    waiting += 1
        finally:
            self.app.close()
        return queued, waiting

    # ------------------------------------------------------------------------------------------------ workers

    @contextlib.contextmanager
    def recording_lock(self, target: Target) -> Iterator[None]:
        """Held while one recording is audited and stored: no two workers on the same content at once. The server
        lets go when this process's connection drops (a killed worker holds nothing)."""
        key = recording_call_id(target)
        with self.connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_RECORDING_LOCK, key))
            try:
                yield
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_RECORDING_LOCK, key))

    def run_worker(
        self,
        handler: Callable[[AuditJob], AuditResult],
        options: WorkerOptions,
        on_state: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        """Audit queued recordings with ``handler`` (one at a time) until stopped (SIGINT, SIGTERM) or, as the
        options say, until the queue is done or after so many files. ``on_state`` gets the queue's counts."""
        self.ensure_schema()
        self._handler = handler
        logging.getLogger("procrastinate").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        try:
            asyncio.run(self._work(options, on_state))
        finally:
            self._handler = None

    async def _work(self, options: WorkerOptions, on_state: Callable[[dict[str, int]], None] | None) -> None:
        done = 0

        async def count(call_next: Callable[[], Any], context: Any, worker: Any) -> Any:
            """After each job: stop when this worker has audited its share (before it fetches another)."""
            nonlocal done
            try:
                return await call_next()
            finally:
                done += 1
                if options.max_files is not None and done >= options.max_files:
                    worker.stop()

        try:
            await self.app.open_async()
        except (queue_errors.ConnectorException, psycopg.Error) as exc:
            raise DatabaseUnavailable(f"cannot use database {self.safe_url}: {_first_line(exc)}") from None
        try:
            worker = asyncio.create_task(
                self.app.run_worker_async(
                    queues=[QUEUE],
                    name=f"audit@{socket.gethostname()}:{os.getpid()}",
                    concurrency=1,  # the recogniser uses the cores; one recording at a time per process
                    fetch_job_polling_interval=options.poll_s,
                    update_heartbeat_interval=options.heartbeat_s,
                    stalled_worker_timeout=options.stalled_s,
                    worker_middleware=[count],
                )
            )
            check_every = max(0.2, min(options.poll_s, options.stalled_s / 3))
            while not worker.done():
                await asyncio.wait({worker}, timeout=check_every)
                if worker.done():
                    break
                try:
                    await self._recover_stalled(options.stalled_s)
                    state = await self._counts_async()
                except Exception as exc:  # the database away a moment: the worker's own loop says so too
                    log.warning("cannot look at the audit queue now (%s); trying again", _first_line(exc))
                    continue
                if on_state is not None:
                    on_state(state)
                if options.until_done and not state.get("todo") and not state.get("doing"):
                    worker.cancel()  # a graceful stop: procrastinate lets a running job finish
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker
            if not worker.cancelled():
                worker.result()
        finally:
            await self.app.close_async()

    async def _counts_async(self) -> dict[str, int]:
        rows = await self.app.connector.execute_query_all_async(_COUNTS, queue=QUEUE)
        return {row["status"]: row["count"] for row in rows}

    async def _recover_stalled(self, stalled_s: float) -> int:
        """Put back in the queue the recordings of workers whose heartbeat stopped ``stalled_s`` ago; how many.
        One worker does it at a time (a transaction's advisory lock, held while procrastinate lists and retries
        the jobs on its own connections), so a job goes back once, never after another worker took it again."""
        manager = self.app.job_manager
        async with self._connector.pool.connection() as connection, connection.transaction():
            cursor = await connection.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", (_RECOVERY_LOCK,))
            row = await cursor.fetchone()
            if not (row and row[0]):
                return 0
            stalled = list(await manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled_s))
            for job in stalled:
                names = job.task_kwargs.get("files")
                files = " + ".join(map(str, names)) if isinstance(names, list) else job.call_string
                log.warning("the worker auditing %s went silent (no heartbeat): it goes back in the queue", files)
                await manager.retry_job(job)
            return len(stalled)


def job_handler(
    queue: AuditQueue,
    monitor: SpeechMonitor,
    rules: Callable[[], RuleSet],
    database: Database,
    redact: bool = True,
    partial_stable_s: float = 0.2,
    on_start: Callable[[Path], None] | None = None,
    on_done: Callable[[AuditResult], None] | None = None,
) -> Callable[[AuditJob], AuditResult]:
    """What a worker does with a job: read the recording, audit and store it under its content's lock. A file
    that cannot be read is reported and done with (trying again would not help); any other failure (the
    database went away) fails the job, which procrastinate retries."""

    def handle(job: AuditJob) -> AuditResult:
        target = job.target
        path = target_files(target)[0]
        if on_start is not None:
            on_start(path)
        try:
            recording = read_target(target, job.agent_channel, job.mono_leg)
        except RecordingError as exc:
            result = AuditResult(path, ok=False, error=str(exc))
        else:
            with queue.recording_lock(target):
                result = audit_recording(
                    recording, monitor, rules(), database, job.agent_extension, redact, partial_stable_s
                )
        if on_done is not None:
            on_done(result)
        return result

    return handle


_COUNTS = "SELECT status::text AS status, count(*) AS count FROM procrastinate_jobs WHERE queue_name = %(queue)s GROUP BY status"


def _first_line(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc) if isinstance(exc, queue_errors.ConnectorException) else str(exc)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
