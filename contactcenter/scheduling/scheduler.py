"""The callback scheduler: APScheduler 3.11 as the trigger, the callbacks table as the truth.

Jobs live in APScheduler's SQLAlchemy job store in the desk's own database, one per pending callback with
the stable id ``callback-<id>`` (``replace_existing``), coalesced, with a generous misfire grace time. At
start-up a reconciliation pass rebuilds the jobs from the table (adds the missing, moves the changed,
removes the stale), and a sweep every ``sweep_seconds`` schedules callbacks added by other processes and
fires any pending callback already past its time (a clock jump, a job lost in a crash, a misfire beyond
the grace time). Firing is a conditional update in the table (:meth:`CallbackBook.fire`), so a callback
fires once however many of those paths reach it. Only the holder of the database lease runs (lease.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from contactcenter.callbacks.book import CallbackBook, utcnow
from contactcenter.records import CallbackRecord
from contactcenter.scheduling.lease import Lease
from contactcenter.settings import Settings
from contactcenter.storage.database import Database
from contactcenter.storage.personal_data import Tally
from contactcenter.storage.retention import last_purge, purge
from contactcenter.storage.review_queue import BuiltQueue, build_queue

log = logging.getLogger(__name__)
logging.getLogger("apscheduler").setLevel(logging.WARNING)  # every job run at INFO drowns the desk's own log
# A date job missed beyond the grace time is skipped by APScheduler with a warning; the sweep fires it
# from the table, so that warning would only mislead.
logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)
JOB_PREFIX = "callback-"
SWEEP_JOB = "callbacks-sweep"
RETENTION_JOB = "retention-purge"
REVIEW_QUEUE_JOB = "review-queue"
RETENTION_CATCH_UP = timedelta(minutes=15)  # after a start, when the daily purge was missed
STUCK_DIAL = timedelta(minutes=10)  # an in_progress callback whose dialler vanished goes back to due

Publish = Callable[..., None]
OnDue = Callable[[CallbackRecord], None]

_active: CallbackScheduler | None = None  # the scheduler of this process, for APScheduler's stored jobs


def fire_callback(callback_id: int) -> None:
    """The job function APScheduler stores by reference (``module:function``) with the callback id."""
    if _active is None:
        log.warning("callback %s came due but no scheduler is active in this process", callback_id)
        return
    _active.fire(callback_id)


def sweep() -> None:
    if _active is not None:
        _active.sweep()


def build_review_queue() -> None:
    """The nightly build of the reviewers' queue (``[review]``), stored by reference like the others."""
    if _active is not None:
        _active.build_review_queue()


def purge_retention() -> None:
    """The daily retention purge (``[retention]``), stored by reference like the callback jobs."""
    if _active is not None:
        _active.purge_retention()


@dataclass(frozen=True)
class Reconciled:
    added: int
    moved: int
    removed: int
    kept: int
    seconds: float


class CallbackScheduler:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        publish: Publish | None,
        on_due: OnDue | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.book = CallbackBook(database, settings)
        self.publish = publish
        self.on_due = on_due
        policy = settings.callbacks
        self.lease = lease or Lease(database, policy.scheduler_lease_seconds)
        self.fired: list[int] = []  # this process's firings, for the display and tests
        self._scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- lifecycle

    def run(self, stop: threading.Event, on_standby: Callable[[str | None], None] | None = None) -> None:
        """Wait for the lease, then schedule until ``stop`` is set or the lease is lost (then wait again)."""
        renew_every = self.settings.callbacks.scheduler_lease_seconds / 3
        while not stop.is_set():
            if not self.lease.acquire():
                if on_standby is not None:
                    on_standby(self.lease.current_holder())
                stop.wait(renew_every)
                continue
            try:
                self.start()
            except Exception:  # the database went away between the lease and the start: try again
                log.exception("the callback scheduler could not start; retrying in %.0f s", renew_every)
                self.shutdown()
                stop.wait(renew_every)
                continue
            try:
                while not stop.wait(renew_every):
                    if not self.lease.acquire():
                        log.error(
                            "the scheduler lease was lost (the database was unreachable for too long); "
                            "stopping until it can be taken again"
                        )
                        break
            finally:
                self.shutdown()
        self.lease.release()

    def start(self) -> Reconciled:
        global _active
        policy = self.settings.callbacks
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.database.engine)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": policy.misfire_grace_minutes * 60,
            },
            timezone=self.settings.general.timezone,
        )
        scheduler.start(paused=True)
        self._scheduler = scheduler
        _active = self
        result = self.reconcile()
        scheduler.add_job(
            sweep,
            "interval",
            seconds=policy.sweep_seconds,
            id=SWEEP_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._schedule_retention(scheduler)
        self._schedule_review_queue(scheduler)
        scheduler.resume()
        log.info(
            "callback scheduler running: %d jobs added, %d moved, %d removed, %d kept (%.2f s)",
            result.added,
            result.moved,
            result.removed,
            result.kept,
            result.seconds,
        )
        self.sweep()  # anything already overdue fires now, not at the first interval
        return result

    def shutdown(self) -> None:
        global _active
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        if _active is self:
            _active = None

    # ----------------------------------------------------------------------------------------- the jobs

    def _schedule_retention(self, scheduler: BackgroundScheduler) -> None:
        """The purge daily at ``purge_time``; and a quarter of an hour after this start when the last one is
        more than a day old (the scheduler was down at purge time, or this is the first start), not at once,
        so it never competes with the start-up's own work."""
        hour, minute = (int(part) for part in self.settings.retention.purge_time.split(":"))
        with self.database.session() as session:
            last = last_purge(session)
        overdue = last is None or utcnow() - last > timedelta(hours=25)
        scheduler.add_job(
            purge_retention,
            "cron",
            hour=hour,
            minute=minute,
            id=RETENTION_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=6 * 3600,
            **({"next_run_time": utcnow() + RETENTION_CATCH_UP} if overdue else {}),
        )

    def _schedule_review_queue(self, scheduler: BackgroundScheduler) -> None:
        """Nightly at ``[review] build_time``, and a quarter of an hour after each start (a build is
        idempotent: a night the scheduler was down is made up, and a rerun adds nothing)."""
        hour, minute = (int(part) for part in self.settings.review.build_time.split(":"))
        scheduler.add_job(
            build_review_queue,
            "cron",
            hour=hour,
            minute=minute,
            id=REVIEW_QUEUE_JOB,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=6 * 3600,
            next_run_time=utcnow() + RETENTION_CATCH_UP,
        )

    def build_review_queue(self, day: date | None = None) -> BuiltQueue | None:
        """Queue ``day``'s calls (default: yesterday, local) for the reviewers; a failure is logged."""
        zone = ZoneInfo(self.settings.general.timezone)
        day = day or utcnow().astimezone(zone).date() - timedelta(days=1)
        try:
            with self.database.session() as session:
                built = build_queue(
                    session, day, zone, self.settings.review, self.settings.callbacks.complaint_categories
                )
        except Exception:
            log.exception("the review queue for %s could not be built; it is tried again at the next build", day)
            return None
        log.info(
            "review queue for %s: %d calls, %s%s",
            day,
            built.calls,
            ", ".join(f"{reason} {n}" for reason, n in built.added.items()) or "nothing added",
            f" ({built.problem})" if built.problem else "",
        )
        return built

    def purge_retention(self) -> Tally | None:
        """Run the retention purge; a failure is logged and the purge runs again tomorrow (or at the next
        start), since none of it is needed by a call in progress."""
        try:
            tally = purge(
                self.database,
                self.settings.retention,
                Path(self.settings.general.data_dir),
                utcnow(),
                done_by=f"scheduler {self.lease.holder}",
            )
        except Exception:
            log.exception("the retention purge failed; it runs again at the next purge time")
            return None
        counts = {what: n for what, n in tally.as_dict().items() if n}
        log.info("retention purge: %s", ", ".join(f"{what} {n}" for what, n in counts.items()) or "nothing was due")
        return tally

    def _schedule(self, callback_id: int, due_at) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            fire_callback,
            "date",
            run_date=due_at,
            args=[callback_id],
            id=f"{JOB_PREFIX}{callback_id}",
            replace_existing=True,
        )

    def reconcile(self) -> Reconciled:
        """Make the job store agree with the callbacks table; only differences are written."""
        assert self._scheduler is not None
        started = time.perf_counter()
        wanted = self.book.pending_due_times()
        jobs = {job.id: job for job in self._scheduler.get_jobs() if job.id.startswith(JOB_PREFIX)}
        added = moved = kept = 0
        written: dict[int, datetime] = {}
        for callback_id, due_at in wanted.items():
            job = jobs.pop(f"{JOB_PREFIX}{callback_id}", None)
            if job is not None and job.next_run_time == due_at:
                kept += 1
                continue
            self._schedule(callback_id, due_at)
            written[callback_id] = due_at
            added, moved = (added + 1, moved) if job is None else (added, moved + 1)
        for job_id in jobs:
            self._scheduler.remove_job(job_id)
        self.book.mark_scheduled(written)
        return Reconciled(added, moved, len(jobs), kept, time.perf_counter() - started)

    def sweep(self) -> None:
        """Pick up callbacks other processes added or moved; fire what is overdue; owner-only → anyone."""
        if self._scheduler is None:
            return
        try:
            new = self.book.unscheduled()
            for callback_id, due_at in new.items():
                self._schedule(callback_id, due_at)
            self.book.mark_scheduled(new)
            for callback_id in self.book.overdue_pending():
                self.fire(callback_id)
            released = self.book.release_owner_only()
            if released:
                log.info("%d owner-only callbacks were overdue and are now anyone's", released)
            self.book.reopen_stuck(STUCK_DIAL)
        except Exception:
            log.exception("callback sweep failed; it runs again in %s s", self.settings.callbacks.sweep_seconds)

    def fire(self, callback_id: int) -> CallbackRecord | None:
        """The callback came due: once only (see CallbackBook.fire), then ``callback_due`` and the notice."""
        with self._lock:
            record = self.book.fire(callback_id, utcnow() + timedelta(seconds=1))
            if record is None:
                return None
            self.fired.append(callback_id)
        if self._scheduler is not None:
            try:
                self._scheduler.remove_job(f"{JOB_PREFIX}{callback_id}")
            except Exception:  # the job that called us is already gone (a date job removes itself)
                pass
        log.info("callback %s due: %s %s", record.id, record.phone, record.reason)
        if self.publish is not None:
            self.publish("callback_due", callback=record)
        if self.on_due is not None:
            try:
                self.on_due(record)
            except Exception:
                log.exception("callback %s: the due notice failed", record.id)
        return record
