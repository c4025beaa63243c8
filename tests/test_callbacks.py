"""Callbacks: working days (holidays and 调休), the callback book's state changes, the callbacks made after
calls and tickets, and the scheduler (APScheduler with its SQLAlchemy job store) on SQLite and PostgreSQL:
reconciliation, misfires, a kill -9 and restart, two schedulers on one database."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text as sql

from contactcenter.app import App
from contactcenter.callbacks.book import CallbackBook, CallbackError, CallbackFilter
from contactcenter.callbacks.workdays import WorkCalendar
from contactcenter.scheduling.scheduler import SWEEP_JOB, CallbackScheduler
from contactcenter.settings import CallbackSettings
from contactcenter.storage import Database
from tests.helpers.factories import install_plugin, open_app
from tests.helpers.paths import REPO
from tests.helpers.settings import desk_environment, desk_settings
from tests.helpers.waiting import wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


# ------------------------------------------------------------------------------------------- working days


@pytest.mark.parametrize(
    ("ended", "due"),
    [
        ("2026-09-24 16:00", "2026-09-28 10:00"),  # Mid-Autumn: Fri 25th to Sun 27th off
        ("2026-09-19 11:00", "2026-09-20 10:00"),  # Sunday 20th is a make-up working day (调休)
        ("2026-09-30 17:30", "2026-10-08 10:00"),  # National Day week
        ("2026-10-09 09:15", "2026-10-10 10:00"),  # Saturday 10th is a make-up working day
        ("2026-11-27 23:50", "2026-11-30 10:00"),  # an ordinary Friday night
    ],
)
def test_next_day_callbacks_follow_the_mainland_calendar(ended: str, due: str) -> None:
    calendar = WorkCalendar(CallbackSettings(), "Asia/Shanghai")
    assert calendar.next_day_callback(at(ended)) == at(due)


def test_company_days_off_and_extra_working_days_are_added() -> None:
    calendar = WorkCalendar(
        CallbackSettings(extra_days_off=["2026-10-08"], extra_working_days=["2026-10-04"]), "Asia/Shanghai"
    )
    assert calendar.next_day_callback(at("2026-09-30 12:00")) == at("2026-10-04 10:00")
    assert calendar.next_day_callback(at("2026-10-05 12:00")) == at("2026-10-09 10:00")


def test_a_year_the_calendar_package_does_not_know_falls_back_to_weekdays_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calendar = WorkCalendar(CallbackSettings(), "Asia/Shanghai")
    with caplog.at_level(logging.WARNING):
        assert calendar.next_day_callback(at("2031-01-10 12:00")) == at("2031-01-13 10:00")  # Fri → Mon
    assert "no holiday schedule for 2031" in caplog.text


def test_a_complaint_is_due_at_the_next_opening_and_promised_within_24_hours() -> None:
    calendar = WorkCalendar(CallbackSettings(), "Asia/Shanghai")
    due, deadline = calendar.complaint_callback(at("2026-11-24 14:00"), 24)
    assert due == at("2026-11-24 14:30") and deadline == at("2026-11-25 14:00")
    due, deadline = calendar.complaint_callback(at("2026-11-27 20:00"), 24)  # Friday evening
    assert due == at("2026-11-30 09:00") and deadline == at("2026-11-28 20:00")


def test_settings_refuse_hours_that_cannot_work(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="HH:MM"):
        CallbackSettings(working_hours_start="9:00")
    with pytest.raises(ValidationError, match="before working_hours_end"):
        CallbackSettings(working_hours_start="18:00", working_hours_end="09:00")
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        CallbackSettings(extra_days_off=["2026/10/08"])


# ------------------------------------------------------------------------------------------------- the book


@pytest.fixture
def desk_app(desk: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> App:
    app = open_app(
        desk, database_url, monkeypatch, callbacks__sweep_seconds="0.5", callbacks__scheduler_lease_seconds="2"
    )
    yield app
    app.close()


def test_a_callback_fires_once_however_many_try_at_the_same_moment(desk_app: App) -> None:
    book = CallbackBook(desk_app.database, desk_app.settings)
    record = book.add(phone="13800138000", due_at=datetime.now(UTC) - timedelta(seconds=1), reason="次日回访")
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        if book.fire(record.id) is not None:
            winners.append(1)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert winners == [1]
    assert book.get(record.id).state == "due"
    assert book.fire(record.id) is None


def test_missed_attempts_retry_after_the_spacing_then_fail(desk_app: App) -> None:
    book = CallbackBook(desk_app.database, desk_app.settings)
    due = datetime.now(UTC) - timedelta(minutes=5)
    record = book.add(phone="13800138000", due_at=due)
    book.fire(record.id)
    first = book.missed(record.id, "no_answer")
    assert first.state == "pending" and first.attempts == 1
    assert first.due_at >= due + timedelta(minutes=desk_app.settings.callbacks.retry_spacing_minutes)
    book.missed(record.id, "busy")
    last = book.missed(record.id, "no_answer")
    assert last.state == "failed" and last.attempts == 3 and last.last_outcome == "no_answer"
    with pytest.raises(CallbackError, match="already failed"):
        book.done(record.id)


def test_owner_only_callbacks_become_anyones_when_long_overdue(desk_app: App) -> None:
    book = CallbackBook(desk_app.database, desk_app.settings)
    now = datetime.now(UTC)
    late = book.add(phone="1", due_at=now - timedelta(minutes=121), owner_extension="1001", owner_only=True)
    recent = book.add(phone="2", due_at=now - timedelta(minutes=10), owner_extension="1001", owner_only=True)
    assert book.release_owner_only() == 1
    assert not book.get(late.id).owner_only and book.get(recent.id).owner_only
    assert [c.id for c in book.list(CallbackFilter(owner="1001", overdue=True))] == [late.id, recent.id]
    counts = book.counts()
    assert counts.overdue == 2 and counts.pending == 0


def test_tickets_become_callbacks_by_the_rules_in_settings_once_each(desk_app: App) -> None:
    api = desk_app.plugins.api_for("tickets-test")
    service = api.create_ticket(category="报修", caller_phone="13800138000", purpose="空调不制冷")
    complaint = api.create_ticket(category="投诉", caller_phone="13900139000", purpose="态度差")
    api.create_ticket(category="咨询", caller_phone="13700137000")
    desk_app.plugins.bus.drain()
    book = CallbackBook(desk_app.database, desk_app.settings)
    assert wait_until(lambda: len(book.list()) == 2, 10)
    made = {c.kind: c for c in book.list()}
    assert set(made) == {"next_day", "complaint"}
    calendar = WorkCalendar(desk_app.settings.callbacks, "Asia/Shanghai")
    assert made["next_day"].ticket_id == service.id and made["next_day"].due_at == calendar.next_day_callback(
        service.created_at
    )
    assert made["complaint"].ticket_id == complaint.id
    assert made["complaint"].deadline_at == complaint.created_at + timedelta(hours=24)
    # A replayed ticket_created makes nothing new.
    from contactcenter.scheduling import after_calls

    after_calls.ticket_created(ticket=service, api=api)
    assert len(book.list()) == 2


# --------------------------------------------------------------------------------------------- the scheduler


def test_start_up_reconciles_jobs_with_the_table_and_fires_what_was_missed(desk_app: App) -> None:
    book = CallbackBook(desk_app.database, desk_app.settings)
    now = datetime.now(UTC)
    long_missed = book.add(phone="1", due_at=now - timedelta(days=53))  # beyond the misfire grace time
    future = book.add(phone="2", due_at=now + timedelta(days=1))
    cancelled = book.add(phone="3", due_at=now + timedelta(days=2))
    published: list = []
    first = CallbackScheduler(desk_app.database, desk_app.settings, lambda hook, **a: published.append(a))
    result = first.start()
    first.shutdown()
    assert (result.added, result.removed) == (3, 0)
    assert [a["callback"].id for a in published] == [long_missed.id]
    book.cancel(cancelled.id)
    moved = book.add(phone="4", due_at=now + timedelta(hours=3))
    second = CallbackScheduler(desk_app.database, desk_app.settings, None)
    result = second.start()
    jobs = sorted(job.id for job in second._scheduler.get_jobs())
    second.shutdown()
    daily = ["retention-purge", "review-queue"]  # the scheduler's own daily jobs
    assert jobs == sorted([f"callback-{future.id}", f"callback-{moved.id}", "callbacks-sweep", *daily])
    assert result.kept == 1 and result.added == 1 and result.removed == 1


RECORDER = """
import json, os
from contactcenter import hookimpl

@hookimpl
def callback_due(callback):
    with open(os.environ["CALLBACK_LOG"], "a") as log:
        log.write(json.dumps({"id": callback.id, "pid": os.getpid()}) + "\\n")
"""


def start_scheduler(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "contactcenter", "scheduler"],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def fired(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


SWEEP_SECONDS = 0.5  # callbacks__sweep_seconds below


def next_sweep(database: Database) -> float:
    """When the running scheduler sweeps next (epoch seconds), from APScheduler's job store in the database:
    it moves on by ``SWEEP_SECONDS`` each time the sweep job is run."""
    with database.engine.connect() as connection:
        return (
            connection.execute(
                sql("SELECT next_run_time FROM apscheduler_jobs WHERE id = :id"), {"id": SWEEP_JOB}
            ).scalar()
            or 0.0
        )


def sweeps_pass(database: Database, count: int) -> bool:
    """Wait until the scheduler has run ``count`` more sweeps (it may be in the last one)."""
    start = next_sweep(database)
    return wait_until(lambda: next_sweep(database) >= start + count * SWEEP_SECONDS, 10 + count * SWEEP_SECONDS)


@pytest.fixture
def scheduler_env(desk: Path, database_url: str, tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "recorder", RECORDER)
    log = tmp_path / "fired.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCENTER_")}
    env.update(
        desk_environment(
            database_url, callbacks__sweep_seconds=str(SWEEP_SECONDS), callbacks__scheduler_lease_seconds="2"
        )
    )
    env.update(
        {
            "CONTACTCENTER_SETTINGS": str(desk),
            "CONTACTCENTER_PLUGINS__ENABLED": '["recorder"]',
            "PYTHONPATH": f"{site}{os.pathsep}{REPO}",
            "CALLBACK_LOG": str(log),
        }
    )
    settings = desk_settings(desk, database_url)
    database = Database(settings.database_url)
    database.upgrade()
    yield {"env": env, "log": log, "book": CallbackBook(database, settings), "database": database, "cwd": tmp_path}
    database.dispose()


def test_a_scheduler_killed_mid_way_and_restarted_loses_nothing_and_doubles_nothing(scheduler_env: dict) -> None:
    book: CallbackBook = scheduler_env["book"]
    start = datetime.now(UTC)
    ids = [book.add(phone=f"1380013800{i}", due_at=start + timedelta(seconds=3 + 2 * i)).id for i in range(6)]
    first = start_scheduler(scheduler_env["env"], scheduler_env["cwd"])
    try:
        assert wait_until(lambda: len(fired(scheduler_env["log"])) >= 2, 30), first.stdout
        first.send_signal(signal.SIGKILL)  # no clean shutdown: the lease stays held until it expires
        first.wait(timeout=10)
        seen_at_kill = len(fired(scheduler_env["log"]))
        assert wait_until(book.overdue_pending, 15)  # callbacks come due while nothing runs
        second = start_scheduler(scheduler_env["env"], scheduler_env["cwd"])
        try:
            assert wait_until(lambda: len(fired(scheduler_env["log"])) >= 6, 40)
            assert sweeps_pass(scheduler_env["database"], 4)  # a few more sweeps: nothing fires twice
        finally:
            second.send_signal(signal.SIGINT)
            output, _ = second.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    records = fired(scheduler_env["log"])
    assert sorted(r["id"] for r in records) == sorted(ids), output
    assert len({r["pid"] for r in records}) == 2 and 2 <= seen_at_kill < 6
    assert all(book.get(i).state == "due" for i in ids)
    assert second.returncode == 0 and "scheduler stopped" in output


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_schedulers_on_one_postgresql_database_fire_each_callback_once(scheduler_env: dict) -> None:
    book: CallbackBook = scheduler_env["book"]
    start = datetime.now(UTC)
    ids = [book.add(phone=f"1390013900{i}", due_at=start + timedelta(seconds=2 + i)).id for i in range(8)]
    a = start_scheduler(scheduler_env["env"], scheduler_env["cwd"])
    b = start_scheduler(scheduler_env["env"], scheduler_env["cwd"])
    try:
        assert wait_until(lambda: len(fired(scheduler_env["log"])) >= 3, 30)
        records = fired(scheduler_env["log"])
        active = a if records[0]["pid"] == a.pid else b
        standby = b if active is a else a
        active.send_signal(signal.SIGKILL)  # the standby takes over once the lease expires
        assert wait_until(lambda: len(fired(scheduler_env["log"])) >= 8, 40)
        assert sweeps_pass(scheduler_env["database"], 4)  # a few more sweeps: nothing fires twice
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        standby_output = standby.communicate(timeout=30)[0]
        active.communicate(timeout=30)
    records = fired(scheduler_env["log"])
    assert sorted(r["id"] for r in records) == sorted(ids)  # each exactly once
    assert "standby: the scheduler lease is held by" in standby_output
    assert {r["pid"] for r in records} == {active.pid, standby.pid}


def test_callbacks_by_hand_from_the_command_line(scheduler_env: dict) -> None:
    env, cwd = scheduler_env["env"], scheduler_env["cwd"]

    def cc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "contactcenter", *args], env=env, cwd=cwd, text=True, capture_output=True, timeout=60
        )

    added = cc(
        "callbacks",
        "add",
        "13800138000",
        "--reason",
        "回访安装",
        "--due",
        "2026-10-01 10:00",
        "--owner",
        "1001",
        "--owner-only",
    )
    assert added.returncode == 0, added.stderr
    assert "outside working hours (National Day)" in added.stderr and "2026-10-08 09:00" in added.stderr
    second = cc("callbacks", "add", "13900139000")
    assert second.returncode == 0
    listed = json.loads(cc("callbacks", "list", "--json").stdout)
    assert [r["phone"] for r in listed] == ["13800138000", "13900139000"]
    assert listed[0]["owner"] == "1001 (only)" and listed[0]["reason"] == "回访安装"
    overdue = json.loads(cc("callbacks", "list", "--overdue", "--json").stdout)
    assert [r["id"] for r in overdue] == [listed[0]["id"]]
    assert "1 overdue" in cc("callbacks", "list").stdout
    first_id, second_id = str(listed[0]["id"]), str(listed[1]["id"])
    assert "attempt 1/3 missed" in cc("callbacks", "missed", first_id).stdout
    assert cc("callbacks", "done", first_id, "--note", "已解决").returncode == 0
    again = cc("callbacks", "done", first_id)
    assert again.returncode == 1 and "already done" in again.stderr
    assert cc("callbacks", "cancel", second_id).returncode == 0
    assert json.loads(cc("callbacks", "list", "--json").stdout) == []
    closed = json.loads(cc("callbacks", "list", "--all", "--json").stdout)
    assert {r["state"] for r in closed} == {"done", "cancelled"} and closed[0]["note"] == "已解决"
    bad = cc("callbacks", "add", "13800138000", "--due", "tomorrow")
    assert bad.returncode == 2 and "YYYY-MM-DD HH:MM" in bad.stderr
