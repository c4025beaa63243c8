"""Review-queue benchmark: build one day's queue (质检任务) over 100,000 calls for 50 reviewers; prints figures.

    .venv/bin/python bench/review_queue_bench.py                    # SQLite in a temporary folder
    .venv/bin/python bench/review_queue_bench.py --calls 200000 --reviewers 80
    .venv/bin/python bench/review_queue_bench.py --url postgresql+psycopg://user@host/db   # an empty database

Seeded: the calls of one day by 400 agents, each with two rule results; 1 in 40 failed a critical rule, 1 in
30 is a complaint. Reported: the seeding time (not the benchmark), the first build (choosing, dealing and
writing every task, with a 10 % sample and a 10 % calibration share), and a rebuild (nothing to add).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert

from contactcenter.settings import ReviewSettings
from contactcenter.storage.database import Database
from contactcenter.storage.models import Agent, Call, RuleResultRow, WebUser
from contactcenter.storage.review_queue import build_queue

ZONE = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 2)


def seed(database: Database, calls: int, reviewers: int) -> None:
    start = datetime(2026, 11, 1, 16, 0, tzinfo=UTC)  # midnight of DAY in Shanghai
    spacing = 86_000 / calls  # every call within the local day
    with database.session() as session:
        session.execute(
            insert(Agent), [{"extension": f"{2000 + n}", "name": f"坐席{n}", "team": f"组{n % 8}"} for n in range(400)]
        )
        session.execute(
            insert(WebUser),
            [
                {"username": f"qa{n:03d}", "display_name": f"质检{n}", "role": "reviewer", "password_hash": "x"}
                for n in range(reviewers)
            ]
            + [
                {"username": f"lead{n}", "display_name": f"组长{n}", "role": "supervisor", "password_hash": "x"}
                for n in range(5)
            ],
        )
        batch = 5000
        for first in range(0, calls, batch):
            rows = [
                {
                    "sip_call_id": f"bench-{n}",
                    "direction": "inbound",
                    "remote_number": f"138{n:08d}",
                    "agent_id": 1 + n % 400,
                    "invited_at": start + timedelta(seconds=spacing * n),
                    "disposition": "completed",
                    "compliance_score": 80.0,
                    "complaint": n % 30 == 0,
                }
                for n in range(first, min(first + batch, calls))
            ]
            session.execute(insert(Call), rows)
            session.execute(
                insert(RuleResultRow),
                [
                    {
                        "call_id": n + 1,
                        "rule_id": rule,
                        "passed": not (rule == "banned" and n % 40 == 0),
                        "severity": "critical" if rule == "banned" else "major",
                        "weight": 1.0,
                    }
                    for n in range(first, min(first + batch, calls))
                    for rule in ("banned", "greeting")
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--url", help="an empty database (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database = Database(args.url or f"sqlite:///{Path(folder) / 'bench.db'}")
        database.upgrade()
        started = time.perf_counter()
        seed(database, args.calls, args.reviewers)
        print(
            f"seeded {args.calls:,} calls, {args.reviewers} reviewers in {time.perf_counter() - started:.1f} s ({database.safe_url.split(':')[0]})"
        )
        policy = ReviewSettings(sample_percent=10, double_review_percent=10)
        for label in ("first build", "rebuild"):
            started = time.perf_counter()
            with database.session() as session:
                built = build_queue(session, DAY, ZONE, policy, ["投诉"])
            elapsed = time.perf_counter() - started
            added = sum(built.added.values())
            shares = sorted(built.per_reviewer.values())
            spread = f", {shares[0]}–{shares[-1]} tasks per person" if shares else ""
            print(
                f"{label}: {elapsed:.2f} s for {built.calls:,} calls: {added:,} tasks added "
                f"({', '.join(f'{k} {v:,}' for k, v in built.added.items()) or 'none'}){spread}; "
                f"{built.already_queued:,} already queued"
            )
        database.dispose()


if __name__ == "__main__":
    main()
