"""A rule's pass rate on the scorecard is over the calls the rule applied to, not over every scored call: a
late-answer rule over the calls answered late, a hang-up rule over the inbound calls someone hung up, a
banned phrase over every scored call. The page, the API and the exports show how many calls that was, on
SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select

from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Call
from contactcenter.web.reports import scorecard_table
from contactcenter.web.scorecards import Period, Scorecard
from tests.helpers.web import client_as

PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}
IN_PERIOD = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, among the 30 seeded calls
LATE, BANNED, HANGUP = "late_answer_apology", "banned_phrases", "customer_hangs_up_first"
SEVERITY = {LATE: "major", BANNED: "critical", HANGUP: "minor"}  # as in scripts_zh/rules.toml


def hit(rule_id: str, kind: str) -> RuleHitRecord:
    return RuleHitRecord(rule_id=rule_id, kind=kind, severity=SEVERITY[rule_id], leg="agent", at_s=5.0)  # type: ignore[arg-type]


def seed_rule_calls(database: Any) -> None:
    """Beside the 30 seeded calls (inbound, 1 to 3 rings, the customer hung up, 10 said 我不知道): ten calls
    answered late (4 without the apology, 2 said 我不知道, 2 the agent hung up), three outbound calls (one
    said 我不知道, the agent hung up: no hang-up rule for outbound calls), one the desk could not score, one
    where nobody is known to have hung up, and one late call outside the period."""
    calls: list[tuple[CallRecord, list[RuleHitRecord], bool]] = []
    for n in range(10):
        hits = [hit(LATE, "missing" if n < 4 else "satisfied")]
        hits += [hit(BANNED, "violation")] if n in (4, 5) else []
        hits += [hit(HANGUP, "violation")] if n < 2 else []
        calls.append((record(f"late-{n}", n, rings=5, hung_up_first="agent" if n < 2 else "customer"), hits, True))
    for n in range(3):
        outbound = record(f"out-{n}", 20 + n, rings=1, hung_up_first="agent", direction="outbound")
        calls.append((outbound, [hit(BANNED, "violation")] if n == 0 else [], True))
    calls.append((record("unscored", 30, rings=6, hung_up_first=None), [], False))
    calls.append((record("nobody-hung-up", 31, rings=2, hung_up_first=None), [], True))
    outside = record("outside", 0, rings=5, hung_up_first="customer", invited=datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    calls.append((outside, [hit(LATE, "missing")], True))
    with database.session() as session:
        for call, hits, scored in calls:
            report = ComplianceReport(score=50.0 if hits and hits[0].kind != "satisfied" else 100.0) if scored else None
            save_call(session, call, [], hits, report)


def record(
    sip: str, n: int, rings: int, hung_up_first: Any, direction: Any = "inbound", invited: Any = None
) -> CallRecord:
    invited = invited or IN_PERIOD + timedelta(minutes=10 * n)
    return CallRecord(
        sip_call_id=f"rates-{sip}",
        direction=direction,
        agent_extension="1001",
        invited_at=invited,
        answered_at=invited + timedelta(seconds=20),
        ended_at=invited + timedelta(minutes=2),
        rings_before_answer=rings,
        hung_up_first=hung_up_first,
        disposition="completed",
    )


def expected_rates(database: Any) -> dict[str, tuple[int, int, float | None, float | None]]:
    """Per failed rule, worked out call by call from what is stored: (failed calls, calls it applied to,
    its pass rate over those, and the rate the scorecard used to show, over every scored call)."""
    start, end = datetime(2026, 11, 1, 16, 0, tzinfo=UTC), datetime(2026, 11, 10, 16, 0, tzinfo=UTC)  # Shanghai days
    with database.session() as session:
        stored = [
            (call, [(h.rule_id, h.kind) for h in call.rule_hits])
            for call in session.scalars(select(Call))
            if start <= call.invited_at.astimezone(UTC) < end
        ]
    scored = [(call, hits) for call, hits in stored if call.compliance_score is not None]
    applies = {
        BANNED: lambda call, hits: call.compliance_score is not None,  # always, and passing leaves no finding
        LATE: lambda call, hits: any(r == LATE and k in ("satisfied", "missing") for r, k in hits),
        HANGUP: lambda call, hits: (
            call.compliance_score is not None and call.direction == "inbound" and call.hung_up_first is not None
        ),
    }
    found = {}
    for rule_id, applied_to in applies.items():
        failed = sum(any(r == rule_id and k in ("violation", "missing") for r, k in hits) for _, hits in stored)
        applied = sum(applied_to(call, hits) for call, hits in stored)
        rate = round(100.0 * (applied - failed) / applied, 1) if applied else None
        before = round(100.0 * (len(scored) - failed) / len(scored), 1)
        found[rule_id] = (failed, applied, rate, before)
    return found


def test_each_rule_passes_over_the_calls_it_applied_to(console: dict) -> None:
    seed_rule_calls(console["database"])
    expected = expected_rates(console["database"])
    # 44 scored calls in the period: 30 seeded, 10 late, 3 outbound, 1 nobody hung up
    assert expected == {
        BANNED: (13, 44, 70.5, 70.5),  # applies to every call: as before
        LATE: (4, 10, 60.0, 90.9),
        HANGUP: (2, 40, 95.0, 95.5),
    }
    client = client_as(console, "lin")

    rules = client.get("/api/scorecards", params=PERIOD).json()["rules"]
    assert [r["rule_id"] for r in rules][:3] == [BANNED, LATE, HANGUP]  # most failed first
    assert all(r["failed_calls"] == 0 for r in rules[3:])  # then the rules in force that never failed
    for rule in rules[:3]:
        failed, applied, rate, _ = expected[rule["rule_id"]]
        assert rule == {
            "rule_id": rule["rule_id"],
            "severity": SEVERITY[rule["rule_id"]],
            "failed_calls": failed,
            "applied_calls": applied,
            "pass_rate": rate,
        }

    text = client.get("/api/export/scorecards.csv", params={**PERIOD, "part": "rules"}).text
    table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert table[0] == ["规则", "规则编号", "严重程度", "未通过通话数", "适用通话数", "通过率(%)"]
    exported = {row[1]: (int(row[3]), int(row[4]), None if row[5] == "—" else float(row[5])) for row in table[1:]}
    assert {rule: exported[rule] for rule in expected} == {
        rule_id: figures[:3] for rule_id, figures in expected.items()
    }
    assert all(figures[0] == 0 for rule, figures in exported.items() if rule not in expected)

    book = load_workbook(io.BytesIO(client.get("/api/export/scorecards.xlsx", params=PERIOD).content))
    header, *sheet = list(book["规则"].values)
    assert header == ("规则", "规则编号", "严重程度", "未通过通话数", "适用通话数", "通过率(%)")
    in_sheet = {row[1]: (row[3], row[4], row[5]) for row in sheet}
    assert {rule: in_sheet[rule] for rule in expected} == {k: v[:3] for k, v in expected.items()}

    page = client.get("/scorecards", params=PERIOD).text
    assert "<th>适用通话数 n</th>" in page.replace(' title="该规则适用的通话数,通过率以此为分母"', "")
    assert "<td>4</td><td>10</td><td>60.0% <small>(n = 10)</small></td>" in page

    one = client.get("/api/scorecards", params={**PERIOD, "agent": "1002"}).json()["rules"]
    assert [
        (r["rule_id"], r["failed_calls"], r["applied_calls"], r["pass_rate"]) for r in one if r["failed_calls"]
    ] == [
        (BANNED, 5, 15, 66.7)  # 1002 took 15 of the seeded calls, none of the late ones
    ]


def test_a_rule_that_applied_to_no_call_has_no_rate() -> None:
    card = Scorecard(
        Period(date(2026, 11, 2), date(2026, 11, 2)),
        "agent",
        totals={},
        rules=[{"rule_id": "x", "severity": "minor", "failed_calls": 0, "applied_calls": 0, "pass_rate": None}],
    )
    _, rows = scorecard_table(card, "rules")
    assert [row["pass_rate"] for row in rows] == ["—"] and card.rules[0]["pass_rate"] is None
