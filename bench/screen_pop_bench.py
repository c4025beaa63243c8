"""Screen-pop benchmark: the lookup the desk makes while a number rings, over 100,000 customers and
1,000,000 calls, on SQLite and on PostgreSQL; prints p50 / p95 / max milliseconds per backend.

    .venv/bin/python bench/screen_pop_bench.py                          # both backends, full size
    .venv/bin/python bench/screen_pop_bench.py --backend sqlite --customers 10000 --calls 100000
    .venv/bin/python bench/screen_pop_bench.py --postgres-url postgresql+psycopg://user@host/emptydb

Without ``--postgres-url`` a throwaway PostgreSQL server is started the way the tests start one
(tests/helpers/postgres.py) and removed afterwards. The data: customers with mobile numbers written four
ways and some landlines; calls from those numbers and from numbers nobody recorded, spelled as SIP From
headers spell them (13800138000, +8613800138000, 013800138000, 8613800138000), a third linked to their
customer, ten "hot" numbers with 5,000 calls each; a ticket for every tenth call (a fifth still open) and
20,000 callbacks. Rows go in by executemany on SQLite and COPY on PostgreSQL, then PostgreSQL is analysed
(as autovacuum would). Each screen pop is timed whole: a session opened, every query, the session closed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert, text

from contactcenter.phones import phone_key
from contactcenter.storage.database import Database
from contactcenter.storage.models import Agent, Call, Callback, Customer, Ticket
from contactcenter.storage.screen_pop import screen_pop

START = datetime(2025, 12, 1, tzinfo=UTC)
HOT = 10  # numbers with HOT_CALLS calls each (a switchboard, a reseller)
HOT_CALLS = 5_000
BATCH = 20_000


def mobile(n: int) -> str:
    return f"1{3 + n % 7}{n:09d}"[:11]


def written(key: str, style: int) -> str:
    """The customer table's spelling of a mobile number: as typed by an agent or an import."""
    if style == 1:
        return f"{key[:3]}-{key[3:7]}-{key[7:]}"
    if style == 2:
        return f"+86 {key[:3]} {key[3:7]} {key[7:]}"
    if style == 3:
        return f"0{key}"
    return key


def from_header(key: str, rng: random.Random) -> str:
    """The calls table's spelling: as a SIP From header has it."""
    return rng.choices([key, f"+86{key}", f"0{key}", f"86{key}"], weights=[6, 2, 1, 1])[0]


class Data:
    """The numbers the benchmark asks for afterwards, by kind."""

    def __init__(self) -> None:
        self.known: list[str] = []  # customers' keys
        self.unknown_called: list[str] = []  # numbers with calls but no customer record
        self.hot: list[str] = []


def customer_rows(count: int, rng: random.Random, data: Data) -> Iterator[dict[str, Any]]:
    for n in range(count):
        if n % 10 == 9:  # a landline: Beijing or Shenzhen
            key = f"010{60_000_000 + n:08d}" if n % 20 == 9 else f"0755{20_000_000 + n:08d}"
            phone = f"{key[:3]}-{key[3:]}" if key.startswith("010") else f"{key[:4]}-{key[4:]}"
        else:
            key = mobile(n)
            phone = written(key, n % 4)
        data.known.append(key)
        yield {
            "id": n + 1,
            "name": f"{'张王李赵刘陈杨黄'[n % 8]}{n}",
            "company": f"第{n % 500}有限公司" if n % 3 else "",
            "phone": phone,
            "phone_key": phone_key(phone),
            "salutation": ("先生", "女士", "")[n % 3],
            "vip": n % 20 == 0,
            "notes": "老客户,上次报修空调" if n % 7 == 0 else "",
            "created_at": START,
        }


def call_rows(count: int, customers: int, rng: random.Random, data: Data) -> Iterator[dict[str, Any]]:
    unknown = [f"1{5 + n % 4}9{n:08d}" for n in range(max(1, customers // 5))]
    data.unknown_called = unknown
    data.hot = [data.known[n * 7] for n in range(HOT)]
    span = timedelta(days=365).total_seconds()
    hot_calls = min(HOT * HOT_CALLS, count // 10)
    for n in range(count):
        if n < hot_calls:
            index, key = -1, data.hot[n % HOT]
        elif rng.random() < 0.8:
            index = rng.randrange(customers)
            key = data.known[index]
        else:
            index, key = -1, rng.choice(unknown)
        invited = START + timedelta(seconds=rng.random() * span)
        linked = index >= 0 and n % 3 == 0
        yield {
            "id": n + 1,
            "sip_call_id": f"bench-{n}",
            "direction": "inbound" if n % 5 else "outbound",
            "remote_number": from_header(key, rng) if not key.startswith("0") else key,
            "agent_id": 1 + n % 20,
            "customer_id": index + 1 if linked else None,
            "invited_at": invited,
            "answered_at": invited + timedelta(seconds=8),
            "ended_at": invited + timedelta(seconds=180),
            "rings_before_answer": 2,
            "hung_up_first": "customer",
            "disposition": "completed",
            "purpose": "",
            "category": ("咨询", "报修", "投诉")[n % 3],
            "notes": "",
            "resolution": "",
            "complaint": n % 3 == 2,
            "wrapped_up_by": "",
            "compliance_score": float(60 + n % 41),
            "recording_path": "",
            "created_at": invited,
        }


def ticket_rows(calls: list[dict[str, Any]], first_id: int) -> list[dict[str, Any]]:
    rows = []
    for call in calls:
        if call["id"] % 10:
            continue
        rows.append(
            {
                "id": first_id + len(rows),
                "call_id": call["id"],
                "customer_id": call["customer_id"],
                "source": "tickets",
                "caller_name": "",
                "caller_phone": call["remote_number"],
                "category": call["category"],
                "purpose": "空调不制冷",
                "summary": "",
                "compliance_summary": "",
                "resolution": "",
                "wrapped_up": False,
                "status": "open" if call["id"] % 50 == 0 else "in_progress" if call["id"] % 50 == 10 else "closed",
                "priority": "normal",
                "due_at": call["invited_at"] + timedelta(days=1),
                "escalated": False,
                "escalation_note": "",
                "created_at": call["invited_at"],
                "updated_at": call["invited_at"],
            }
        )
    return rows


def callback_rows(count: int, rng: random.Random, data: Data) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        index = rng.randrange(len(data.known))
        due = START + timedelta(days=300 + rng.random() * 90)
        rows.append(
            {
                "id": n + 1,
                "customer_id": index + 1 if n % 2 else None,
                "phone": from_header(data.known[index], rng),
                "reason": "次日回访",
                "kind": "next_day",
                "owner_extension": "",
                "owner_only": False,
                "due_at": due,
                "timezone": "Asia/Shanghai",
                "attempts": 0,
                "max_attempts": 3,
                "spacing_minutes": 60,
                "state": ("pending", "due", "done", "cancelled")[n % 4],
                "last_outcome": "",
                "note": "",
                "created_at": due - timedelta(days=1),
                "updated_at": due - timedelta(days=1),
            }
        )
    return rows


def batches(rows: Iterator[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def bulk_insert(database: Database, table: Any, rows: list[dict[str, Any]]) -> None:
    """executemany on SQLite; COPY on PostgreSQL (ten times faster than INSERTs there)."""
    if not rows:
        return
    with database.engine.begin() as connection:
        if connection.dialect.name != "postgresql":
            connection.execute(insert(table), rows)
            return
        columns = list(rows[0])
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])


def seed(database: Database, customers: int, calls: int, callbacks: int, seed_value: int) -> Data:
    rng = random.Random(seed_value)
    data = Data()
    bulk_insert(
        database,
        Agent.__table__,
        [
            {
                "id": n + 1,
                "extension": f"10{n:02d}",
                "name": f"坐席{n}",
                "team": "",
                "active": True,
                "created_at": START,
            }
            for n in range(20)
        ],
    )
    for batch in batches(customer_rows(customers, rng, data)):
        bulk_insert(database, Customer.__table__, batch)
    tickets = 0
    for batch in batches(call_rows(calls, customers, rng, data)):
        bulk_insert(database, Call.__table__, batch)
        made = ticket_rows(batch, tickets + 1)
        bulk_insert(database, Ticket.__table__, made)
        tickets += len(made)
    bulk_insert(database, Callback.__table__, callback_rows(callbacks, rng, data))
    with database.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            for table in ("agents", "customers", "calls", "tickets", "callbacks"):  # COPY leaves ids behind
                connection.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
            connection.execute(text("ANALYZE"))
    return data


def percentile(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def spelled(key: str, rng: random.Random) -> str:
    """How the number reaches the desk this time."""
    if key.startswith("0"):
        return key
    return rng.choice([key, f"+86{key}", f"0{key}", f"+86 {key[:3]} {key[3:7]} {key[7:]}"])


def measure(database: Database, data: Data, pops: int, seed_value: int) -> dict[str, list[float]]:
    rng = random.Random(seed_value + 1)
    kinds: dict[str, Callable[[], str]] = {
        "known customer": lambda: spelled(rng.choice(data.known), rng),
        "unknown, has called": lambda: spelled(rng.choice(data.unknown_called), rng),
        "never seen": lambda: f"168{rng.randrange(10**8):08d}",
        "hot number (5,000 calls)": lambda: spelled(rng.choice(data.hot), rng),
    }
    weights = {"known customer": 6, "unknown, has called": 2, "never seen": 1, "hot number (5,000 calls)": 1}
    for _ in range(min(50, pops)):  # warm the caches and the statement cache
        with database.session() as session:
            screen_pop(session, kinds["known customer"]())
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    found = 0
    for _ in range(pops):
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        number = kinds[kind]()
        started = time.perf_counter()
        with database.session() as session:
            pop = screen_pop(session, number)
        times[kind].append((time.perf_counter() - started) * 1000)
        found += pop.known
        if kind == "known customer" and not pop.known:
            print(f"  warning: {number} not found as a customer")
    return times


def report(label: str, times: dict[str, list[float]]) -> None:
    every = [t for kind in times.values() for t in kind]
    print(f"{label}: {len(every):,} screen pops")
    print(f"  {'numbers':28} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for kind, values in [*times.items(), ("all", every)]:
        if values:
            print(
                f"  {kind:28} {len(values):6} {statistics.median(values):8.2f} {percentile(values, 0.95):8.2f}"
                f" {max(values):8.2f}"
            )


def run_backend(label: str, url: str, args: argparse.Namespace) -> None:
    database = Database(url)
    database.upgrade()
    started = time.perf_counter()
    data = seed(database, args.customers, args.calls, args.callbacks, args.seed)
    print(
        f"{label}: {args.customers:,} customers, {args.calls:,} calls (+ tickets, {args.callbacks:,} callbacks) "
        f"seeded in {time.perf_counter() - started:.1f} s"
    )
    report(label, measure(database, data, args.pops, args.seed))
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--callbacks", type=int, default=20_000)
    parser.add_argument("--pops", type=int, default=2_000, help="screen pops timed per backend")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", help="an empty PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="screen-pop-bench-"))
    try:
        if args.backend in ("sqlite", "both"):
            run_backend("SQLite", f"sqlite:///{folder / 'bench.db'}", args)
        if args.backend in ("postgresql", "both"):
            if args.postgres_url:
                run_backend("PostgreSQL", args.postgres_url, args)
            else:
                from tests.helpers.postgres import PostgresServer

                server = PostgresServer(Path(tempfile.mkdtemp(prefix="screen-pop-pg-")))
                try:
                    server.start()
                    run_backend("PostgreSQL", server.new_database(), args)
                finally:
                    server.stop()
                    shutil.rmtree(server.root, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
