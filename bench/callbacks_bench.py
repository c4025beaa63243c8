"""Callback scheduler benchmark: start-up reconciliation with 10,000 pending callbacks; prints figures.

    .venv/bin/python bench/callbacks_bench.py                       # SQLite in a temporary folder
    .venv/bin/python bench/callbacks_bench.py --count 20000
    .venv/bin/python bench/callbacks_bench.py --url postgresql+psycopg://user@host/db   # an empty database

Reported: the first start (every job written to APScheduler's job store), a restart with nothing changed
(every job kept), a restart after 1 % of the callbacks moved and 1 % were cancelled, and one sweep.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, update

from contactcenter.callbacks.book import CallbackBook
from contactcenter.scheduling.scheduler import CallbackScheduler
from contactcenter.settings import load_settings
from contactcenter.storage.database import Database
from contactcenter.storage.models import Callback


def timed_start(database: Database, settings) -> tuple[float, object]:
    scheduler = CallbackScheduler(database, settings, None)
    started = time.perf_counter()
    result = scheduler.start()
    elapsed = time.perf_counter() - started
    sweep_started = time.perf_counter()
    scheduler.sweep()
    sweep = time.perf_counter() - sweep_started
    scheduler.shutdown()
    return elapsed, (result, sweep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--url", help="an empty database (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="contactcenter-bench-"))
    url = args.url or f"sqlite:///{folder / 'bench.db'}"
    settings = load_settings(REPO / "settings.toml", {"CONTACTCENTER_DATABASE__URL": url})
    database = Database(url)
    database.upgrade()
    now = datetime.now(UTC)
    rows = [
        dict(
            phone=f"138{i:08d}",
            reason="次日回访",
            kind="next_day",
            owner_extension="",
            owner_only=False,
            due_at=now + timedelta(days=1, seconds=i),
            timezone="Asia/Shanghai",
            attempts=0,
            max_attempts=3,
            spacing_minutes=60,
            state="pending",
            last_outcome="",
            note="",
            created_at=now,
            updated_at=now,
        )
        for i in range(args.count)
    ]
    with database.session() as session:
        session.execute(insert(Callback), rows)
    print(f"{args.count} pending callbacks in {database.safe_url}")
    first, (result, sweep) = timed_start(database, settings)
    print(f"first start: {first:.2f} s (added {result.added}); a sweep with nothing to do: {sweep * 1000:.0f} ms")
    again, (result, sweep) = timed_start(database, settings)
    print(f"restart, nothing changed: {again:.2f} s (kept {result.kept})")
    book = CallbackBook(database, settings)
    step = 100
    with database.session() as session:
        for callback_id in range(1, args.count + 1, step):
            session.execute(
                update(Callback)
                .where(Callback.id == callback_id)
                .values(due_at=now + timedelta(days=2, seconds=callback_id))
            )
    for callback_id in range(2, args.count + 1, step):
        book.cancel(callback_id)
    changed, (result, sweep) = timed_start(database, settings)
    print(
        f"restart after 1 % moved and 1 % cancelled: {changed:.2f} s (moved {result.moved}, "
        f"removed {result.removed}, kept {result.kept})"
    )
    database.dispose()


if __name__ == "__main__":
    main()
