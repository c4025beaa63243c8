"""Reviewer console benchmark: the calls list, the findings export and the scorecard over 100,000 calls.

    .venv/bin/python bench/web_bench.py                        # SQLite in a temporary folder
    .venv/bin/python bench/web_bench.py --count 200000 --repeat 40
    .venv/bin/python bench/web_bench.py --url postgresql+psycopg://user@host/db   # an empty database

The calls (one every 90 s over about six months, 20 agents in 4 teams, a third with a banned phrase, a tenth
complaints) are bulk-inserted, then each request is timed through the whole application (routing,
session check, query, template or JSON) with FastAPI's in-process client. Reported per request: p50 and p95
in milliseconds, for the first page, a page 200 pages deep (keyset paging), and the usual filters.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from contactcenter.settings import load_settings
from contactcenter.storage.database import Database
from contactcenter.storage.models import Agent, Call, RuleHit, Ticket
from contactcenter.web.app import create_app
from contactcenter.web.auth import Accounts

PASSWORD = "benchmark password"
START = datetime(2026, 5, 1, tzinfo=UTC)


def seed(database: Database, count: int) -> None:
    with database.session() as session:
        session.execute(
            insert(Agent),
            [{"extension": f"10{n:02d}", "name": f"坐席{n}", "team": f"{n % 4 + 1}组"} for n in range(20)],
        )
        agents = list(session.scalars(select(Agent.id).order_by(Agent.id)))
    batch = 10_000
    for first in range(0, count, batch):
        calls, hits, tickets = [], [], []
        for n in range(first, min(count, first + batch)):
            invited = START + timedelta(seconds=90 * n)
            banned = n % 3 == 0
            calls.append(
                {
                    "id": n + 1,
                    "sip_call_id": f"bench-{n}",
                    "direction": "inbound",
                    "remote_number": f"138{n:08d}",
                    "agent_id": agents[n % 20],
                    "invited_at": invited,
                    "ringing_at": invited,
                    "answered_at": invited + timedelta(seconds=6),
                    "ended_at": invited + timedelta(seconds=200),
                    "rings_before_answer": 1 + n % 4,
                    "hung_up_first": "customer",
                    "disposition": "completed",
                    "purpose": "",
                    "category": "投诉" if n % 10 == 0 else "咨询",
                    "compliance_score": 40.0 if banned else 95.0,
                    "recording_path": "",
                }
            )
            if banned:
                hits.append(
                    {
                        "call_id": n + 1,
                        "rule_id": "banned_phrases",
                        "kind": "violation",
                        "severity": "critical",
                        "leg": "agent",
                        "at_s": 8.5,
                        "matched_text": "我不知道",
                        "live": True,
                    }
                )
            if n % 10 == 0:
                tickets.append({"call_id": n + 1, "category": "投诉", "source": "tickets"})
        with database.session() as session:
            session.execute(insert(Call), calls)
            session.execute(insert(RuleHit), hits)
            session.execute(insert(Ticket), tickets)


def timed(client: TestClient, path: str, params: dict, repeat: int) -> tuple[float, float, dict]:
    times, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, params, answer.status_code, answer.text[:300])
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    return statistics.median(times), p95, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--url", help="an empty database (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="web-bench-"))
    url = args.url or f"sqlite:///{folder / 'bench.db'}"
    settings = load_settings(
        REPO / "settings.toml", {"CONTACTCENTER_DATABASE__URL": url, "CONTACTCENTER_GENERAL__DATA_DIR": str(folder)}
    )
    database = Database(url)
    database.upgrade()
    started = time.perf_counter()
    seed(database, args.count)
    print(f"{args.count:,} calls on {database.safe_url}: seeded in {time.perf_counter() - started:.1f} s")
    Accounts(database, 60).add_user("bench", PASSWORD, "reviewer")
    client = TestClient(create_app(settings, database))
    assert client.post("/api/login", json={"username": "bench", "password": PASSWORD}).status_code == 200

    # a cursor 200 pages of 50 deep, reached by following next_cursor
    cursor = None
    for _ in range(200):
        cursor = client.get("/api/calls", params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()[
            "next_cursor"
        ]
    cases = [
        ("calls page, first", "/calls", {}),
        ("calls page, 200 pages deep", "/calls", {"cursor": cursor}),
        ("API, first 50", "/api/calls", {"limit": 50}),
        ("API, 200 pages deep", "/api/calls", {"limit": 50, "cursor": cursor}),
        ("agent + rule failed", "/api/calls", {"agent": "1007", "rule_failed": "banned_phrases"}),
        ("score 0-50, one week", "/api/calls", {"score_max": 50, "since": "2026-08-03", "until": "2026-08-09"}),
        ("complaints", "/api/calls", {"complaint": "1"}),
        ("not complaints", "/api/calls", {"complaint": "0"}),
        ("scorecard, 30 days", "/api/scorecards", {"since": "2026-07-01", "until": "2026-07-30"}),
        (
            "scorecard page, by team, 30 days",
            "/scorecards",
            {"since": "2026-07-01", "until": "2026-07-30", "group_by": "team"},
        ),
        (
            "findings CSV, one agent-week",
            "/api/export/findings.csv",
            {"agent": "1003", "since": "2026-08-03", "until": "2026-08-09"},
        ),
    ]
    print(f"{'request':36} {'p50 ms':>8} {'p95 ms':>8}")
    for name, path, params in cases:
        p50, p95, _ = timed(client, path, params, args.repeat)
        print(f"{name:36} {p50:8.1f} {p95:8.1f}")
    whole = timed(client, "/api/scorecards", {"since": "2026-05-01", "until": "2026-10-31"}, max(3, args.repeat // 5))
    print(f"{'scorecard, six months (all calls)':36} {whole[0]:8.1f} {whole[1]:8.1f}")
    database.dispose()


if __name__ == "__main__":
    main()
