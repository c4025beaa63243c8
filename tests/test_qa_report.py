"""The QA report (质检报表): every figure the API gives is worked out again here, in plain Python over the calls,
findings and reviews read back from the store, and compared; on SQLite and PostgreSQL. Not-checked calls are
left out and counted, rules that never failed are ranked with 0, the previous period (环比) is the days just
before. The page and its print view are in Chinese, run only their own scripts, and draw their charts in a
real browser (headless Chromium) without a script error.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from contactcenter.records import CallRecord, ComplianceReport, RuleHitRecord
from contactcenter.speech.rules import CONVERSATION_KINDS, load_rules
from contactcenter.storage.calls import save_call
from contactcenter.storage.models import Agent, Call, Review, WebUser
from tests.helpers.web import PASSWORD, START, client_as, serving

PERIOD = {"since": "2026-11-02", "until": "2026-11-10"}  # the 30 seeded calls: 09:00 on the 2nd to 20:00 on the 10th
PREVIOUS = (date(2026, 10, 24), date(2026, 11, 1))  # the nine days before
AGENTS = {"1001": ("李娜", "售后一组"), "1002": ("王强", "售后二组"), "1003": ("赵敏", "售后一组")}
IN_PERIOD = datetime(2026, 11, 4, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
BEFORE = datetime(2026, 10, 27, 2, 0, tzinfo=UTC)
FAILED, REQUIRED = ("violation", "missing"), ("satisfied", "missing")
SEVERITY_ORDER = ["critical", "major", "minor", "info"]
SEVERITY = {"banned_phrases": "critical", "greeting": "major", "late_answer_apology": "major"}  # rules.toml


def hit(rule_id: str, kind: str, live: bool = False) -> RuleHitRecord:
    return RuleHitRecord(rule_id=rule_id, kind=kind, severity=SEVERITY[rule_id], leg="agent", at_s=2.0, live=live)  # type: ignore[arg-type]


def add_call(
    database: Any,
    sip: str,
    agent: str,
    invited: datetime,
    score: float | None,
    hits: list[RuleHitRecord] = (),  # type: ignore[assignment]
    rings: int = 1,
    answered: bool = True,
    dropped: float = 0.0,
) -> int:
    call = CallRecord(
        sip_call_id=f"qa-{sip}",
        agent_extension=agent,
        invited_at=invited,
        answered_at=invited + timedelta(seconds=4 * rings) if answered else None,
        ended_at=invited + timedelta(minutes=2),
        rings_before_answer=rings if answered else None,
        hung_up_first="customer" if answered else None,
        disposition="completed" if answered else "abandoned",
    )
    if not answered:
        report = None
    elif score is None:
        report = ComplianceReport(score=None, unchecked_reason="recognition_failed")
    else:
        report = ComplianceReport(score=score, dropped_seconds=dropped)
    with database.session() as session:
        return save_call(session, call, [], list(hits), report)


def seed_report(console: dict) -> dict[str, int]:
    """Beside the 30 seeded calls (1001 and 1002, 95 points, or 40 and a banned phrase every third call):
    agent 1003 with five checked calls (greetings said or missed, two answered late, one only partly checked),
    two answered calls nobody could check (one with a live banned-phrase finding, one reviewed) and one
    unanswered; a call on the period's last evening and one just after it; six calls in the previous nine
    days; reviews (one call reviewed twice, the later verdict counting; a comment with no verdict; a review
    of a call nobody could check)."""
    db = console["database"]
    with db.session() as session:
        for extension in ("1001", "1002", "1003"):
            agent = session.scalar(select(Agent).where(Agent.extension == extension))
            if agent is None:
                agent = Agent(extension=extension)
                session.add(agent)
            agent.name, agent.team = AGENTS[extension]
    minutes = iter(range(0, 10_000, 10))

    def now(**kwargs: Any) -> datetime:
        return IN_PERIOD + timedelta(minutes=next(minutes))

    calls = {
        "c1": add_call(db, "c1", "1003", now(), 85.0, [hit("greeting", "satisfied")]),
        "c2": add_call(db, "c2", "1003", now(), 72.5, [hit("greeting", "missing")]),
        "c3": add_call(db, "c3", "1003", now(), 100.0, [hit("greeting", "satisfied")]),
        "c4": add_call(
            db, "c4", "1003", now(), 60.0, [hit("greeting", "missing"), hit("late_answer_apology", "missing")], rings=5
        ),
        "c5": add_call(
            db,
            "c5",
            "1003",
            now(),
            90.0,
            [hit("greeting", "satisfied"), hit("late_answer_apology", "satisfied")],
            rings=4,
            dropped=3.0,
        ),
        "n1": add_call(db, "n1", "1003", now(), None, [hit("banned_phrases", "violation", live=True)]),
        "n2": add_call(db, "n2", "1003", now(), None),
        "u1": add_call(db, "u1", "1003", now(), None, answered=False),
        "last_evening": add_call(db, "last-evening", "1002", datetime(2026, 11, 10, 15, 30, tzinfo=UTC), 95.0),
        "after": add_call(db, "after", "1002", datetime(2026, 11, 10, 16, 10, tzinfo=UTC), 20.0),  # 11-11 00:10
        "p1": add_call(db, "p1", "1001", BEFORE, 90.0),
        "p2": add_call(db, "p2", "1001", BEFORE + timedelta(hours=1), 40.0, [hit("banned_phrases", "violation")]),
        "p3": add_call(db, "p3", "1003", BEFORE + timedelta(hours=2), 70.0, [hit("greeting", "missing")]),
        "p4": add_call(db, "p4", "1003", BEFORE + timedelta(hours=3), 95.0, [hit("greeting", "satisfied")]),
        "p5": add_call(  # 23:50 on 1 November in Shanghai: the previous period's last minutes
            db, "p5", "1002", datetime(2026, 11, 1, 15, 50, tzinfo=UTC), 55.0, [hit("banned_phrases", "violation")]
        ),
        "p6": add_call(db, "p6", "1003", BEFORE + timedelta(hours=4), None),
    }
    ids = console["ids"]
    with db.session() as session:
        users = {u.username: u.id for u in session.scalars(select(WebUser))}
        written = START + timedelta(days=20)
        for n, (call_id, user, verdicts, comment) in enumerate(
            [
                (ids[0], "lin", {"banned_phrases": "agree"}, "确认违规"),
                (ids[0], "wang", {"banned_phrases": "disagree"}, "语境不同"),  # later: it counts
                (ids[3], "lin", {"banned_phrases": "agree"}, ""),
                (ids[1], "lin", {}, "已听录音,无问题"),  # reviewed, no verdict
                (calls["c4"], "zhao", {"greeting": "agree", "late_answer_apology": "disagree"}, ""),
                (calls["c2"], "lin", {"greeting": "agree"}, ""),
                (calls["c2"], "lin", {"greeting": "disagree"}, "其实说了"),  # lin changed their mind
                (calls["n2"], "lin", {"banned_phrases": "agree"}, ""),  # a call nobody could check: left out
                (calls["p2"], "lin", {"banned_phrases": "agree"}, ""),  # the previous period
            ]
        ):
            session.add(
                Review(
                    call_id=call_id,
                    reviewer_id=users[user],
                    verdicts=verdicts,
                    comment=comment,
                    created_at=written + timedelta(minutes=n),
                )
            )
    return calls


# ------------------------------------------------------------------------------ the independent computation


def rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def stored_calls(console: dict) -> list[dict[str, Any]]:
    """Every stored call as plain data: local day, agent, score, findings, reviews in the order written."""
    zone = ZoneInfo(console["settings"].general.timezone)
    with console["database"].session() as session:
        names = {u.id: u.display_name or u.username for u in session.scalars(select(WebUser))}
        reviews: dict[int, list[tuple[str, dict[str, str]]]] = defaultdict(list)
        for review in session.scalars(select(Review).order_by(Review.created_at, Review.id)):
            reviews[review.call_id].append((names[review.reviewer_id], dict(review.verdicts)))
        return [
            {
                "id": call.id,
                "day": call.invited_at.astimezone(zone).date(),
                "agent": call.agent.extension if call.agent else "",
                "name": call.agent.name if call.agent else "",
                "team": (call.agent.team if call.agent else "") or "未分组",
                "answered": call.answered_at is not None,
                "score": call.compliance_score,
                "partly": call.compliance_score is not None and call.dropped_seconds > 0,
                "direction": call.direction,
                "rings": call.rings_before_answer,
                "hung_up_first": call.hung_up_first,
                "hits": [(h.rule_id, h.kind, h.severity) for h in call.rule_hits],
                "judged": {r.rule_id for r in call.rule_results},  # the rules with a stored verdict
                "reviews": reviews[call.id],
            }
            for call in session.scalars(select(Call))
        ]


def latest_verdicts(call: dict[str, Any], reviewer: str | None = None) -> dict[str, str]:
    """The verdict per rule that counts on a call: the latest (of one reviewer's, if given)."""
    latest: dict[str, str] = {}
    for who, verdicts in call["reviews"]:
        if reviewer is None or who == reviewer:
            latest.update(verdicts)
    return latest


def summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    checked = [c for c in calls if c["score"] is not None]
    flagged = [c for c in checked if any(kind in FAILED for _, kind, _ in c["hits"])]
    reviewed = [c for c in checked if c["reviews"]]
    verdicts = [v for c in checked for v in latest_verdicts(c).values()]
    passed = sum(c["score"] >= 80 for c in checked)
    return {
        "calls": len(calls),
        "answered": sum(c["answered"] for c in calls),
        "checked": len(checked),
        "not_checked": sum(c["answered"] and c["score"] is None for c in calls),
        "partly_checked": sum(c["partly"] for c in calls),
        "average_score": round(sum(c["score"] for c in checked) / len(checked), 1) if checked else None,
        "passed": passed,
        "pass_rate": rate(passed, len(checked)),
        "violation_calls": len(flagged),
        "violation_rate": rate(len(flagged), len(checked)),
        "violations": sum(kind in FAILED for c in checked for _, kind, _ in c["hits"]),
        "reviewed_calls": len(reviewed),
        "review_coverage": rate(len(reviewed), len(checked)),
        "flagged_reviewed_calls": sum(bool(c["reviews"]) for c in flagged),
        "flagged_review_coverage": rate(sum(bool(c["reviews"]) for c in flagged), len(flagged)),
        "verdicts": len(verdicts),
        "agreed": verdicts.count("agree"),
        "disagreed": verdicts.count("disagree"),
        "agreement_rate": rate(verdicts.count("agree"), len(verdicts)),
    }


def difference(current: Any, previous: Any) -> float | None:
    return None if current is None or previous is None else round(current - previous, 1)


def ranked(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Best average first (then pass rate, checked calls, name); a rank is one more than the number of rows
    with a better (average, pass rate); rows with nothing checked come last, unranked."""
    rows = sorted(
        rows,
        key=lambda r: (
            r["average_score"] is None,
            -(r["average_score"] or 0),
            -(r["pass_rate"] or 0),
            -r["checked"],
            r[name],
        ),
    )
    scored = [(r["average_score"], r["pass_rate"]) for r in rows if r["average_score"] is not None]
    for row in rows:
        mine = (row["average_score"], row["pass_rate"])
        row["rank"] = None if row["average_score"] is None else 1 + sum(other > mine for other in scored)
    return rows


def expected_report(console: dict, since: date, until: date, agent: str = "", team: str = "") -> dict[str, Any]:
    settings = console["settings"]
    length = (until - since).days + 1
    before = (since - timedelta(days=length), since - timedelta(days=1))
    every = stored_calls(console)

    def scope(first: date, last: date) -> list[dict[str, Any]]:
        return [
            c
            for c in every
            if first <= c["day"] <= last
            and (not agent or c["agent"] == agent)
            and (not team or (c["team"] == team and c["agent"]))
        ]

    now, then = scope(since, until), scope(*before)
    totals, previous_totals = summary(now), summary(then)
    kinds = {
        "calls": "count",
        "checked": "count",
        "not_checked": "count",
        "average_score": "score",
        "pass_rate": "rate",
        "violation_calls": "count",
        "violation_rate": "rate",
        "violations": "count",
        "reviewed_calls": "count",
        "review_coverage": "rate",
        "agreement_rate": "rate",
    }
    comparison = {}
    for key, kind in kinds.items():
        current, previous = totals[key], previous_totals[key]
        comparison[key] = {
            "current": current,
            "previous": previous,
            "change": difference(current, previous),
            "change_pct": round(100 * (current - previous) / previous, 1) if current is not None and previous else None,
            "kind": kind,
        }

    def band(score: float) -> int:
        return min(int(score // 10), 9)

    distribution = [
        {
            "from": 10 * n,
            "to": 10 * n + 10,
            "calls": sum(band(c["score"]) == n for c in now if c["score"] is not None),
            "previous_calls": sum(band(c["score"]) == n for c in then if c["score"] is not None),
            "below_pass": 10 * n + 10 <= settings.web.pass_score,
        }
        for n in range(10)
    ]
    days = [since + timedelta(days=n) for n in range(length)]
    trend = [{"day": day.isoformat(), **summary([c for c in now if c["day"] == day])} for day in days]

    def groups(calls: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in calls:
            found[c[key]].append(c)
        return found

    def with_previous(row: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
        previous = previous or {"average_score": None, "pass_rate": None, "rank": None}
        return {
            **row,
            "previous_average_score": previous["average_score"],
            "average_score_change": difference(row["average_score"], previous["average_score"]),
            "previous_pass_rate": previous["pass_rate"],
            "pass_rate_change": difference(row["pass_rate"], previous["pass_rate"]),
            "previous_rank": previous["rank"],
        }

    def label(ext: str) -> str:
        name = AGENTS[ext][0]
        return f"{name}({ext})"

    previous_agents = {
        r["agent"]: r
        for r in ranked(
            [{"agent": a, "label": label(a), **summary(cs)} for a, cs in groups(then, "agent").items()], "label"
        )
    }
    agents = ranked(
        [
            with_previous(
                {"agent": a, "name": cs[0]["name"], "label": label(a), "team": cs[0]["team"], **summary(cs)},
                previous_agents.get(a),
            )
            for a, cs in groups(now, "agent").items()
        ],
        "label",
    )
    previous_teams = {
        r["team"]: r for r in ranked([{"team": t, **summary(cs)} for t, cs in groups(then, "team").items()], "team")
    }
    teams = ranked(
        [with_previous({"team": t, **summary(cs)}, previous_teams.get(t)) for t, cs in groups(now, "team").items()],
        "team",
    )

    rules = load_rules(settings.scripts.rules, settings.company.names_said)
    late_after = settings.ring.apology_after_rings

    def rule_figures(calls: list[dict[str, Any]], rule: Any) -> tuple[int, int, int]:
        checked = [c for c in calls if c["score"] is not None]
        has = [c for c in checked if any(r == rule.id for r, _, _ in c["hits"])]
        failed = [c for c in checked if any(r == rule.id and k in FAILED for r, k, _ in c["hits"])]
        if rule.type == "required":  # a required phrase leaves a finding on every call it applied to
            applied = len(has)
        else:  # a banned phrase or a hang-up order: every checked call its `when` picks
            when = rule.spec.when

            def picked(c: dict[str, Any]) -> bool:
                if when in ("inbound", "outbound") and c["direction"] != when:
                    return False
                if when == "late_answer" and not (c["rings"] or 0) > late_after:
                    return False
                if rule.spec.kind in CONVERSATION_KINDS and rule.id not in c["judged"]:
                    return False  # judged only where the call allowed it (both legs, enough speech); talk_ratio never
                return not (rule.spec.kind == "hangup_order" and c["hung_up_first"] is None)

            applied = len([c for c in checked if picked(c) or c in has])
        findings = sum(r == rule.id and k in FAILED for c in checked for r, k, _ in c["hits"])
        return len(failed), findings, applied

    all_failed = sum(k in FAILED for c in now if c["score"] is not None for _, k, _ in c["hits"])
    rule_rows = []
    for order, rule in enumerate(rules.rules):
        failed_calls, findings, applied = rule_figures(now, rule)
        before_calls, before_findings, before_applied = rule_figures(then, rule)
        verdicts = [latest_verdicts(c).get(rule.id) for c in now if c["score"] is not None]
        agreed, disagreed = verdicts.count("agree"), verdicts.count("disagree")
        rule_rows.append(
            {
                "order": order,
                "rule_id": rule.id,
                "severity": rule.spec.severity,
                "in_rules": True,
                "enabled": True,
                "failed_calls": failed_calls,
                "violations": findings,
                "share": rate(findings, all_failed),
                "applied_calls": applied,
                "pass_rate": rate(applied - failed_calls, applied),
                "previous_failed_calls": before_calls,
                "previous_violations": before_findings,
                "previous_applied_calls": before_applied,
                "previous_pass_rate": rate(before_applied - before_calls, before_applied),
                "failed_calls_change": failed_calls - before_calls,
                "failed_calls_change_pct": round(100 * (failed_calls - before_calls) / before_calls, 1)
                if before_calls
                else None,
                "agreed": agreed,
                "disagreed": disagreed,
                "agreement_rate": rate(agreed, agreed + disagreed),
            }
        )
    rule_rows.sort(
        key=lambda r: (-r["failed_calls"], -r["violations"], SEVERITY_ORDER.index(r["severity"]), r["order"])
    )
    for row in rule_rows:
        row["rank"] = 1 + sum(other["failed_calls"] > row["failed_calls"] for other in rule_rows)
        del row["order"]

    reviewers = []
    names = {who for c in now if c["score"] is not None for who, _ in c["reviews"]}
    for who in names:
        mine = [c for c in now if c["score"] is not None and any(w == who for w, _ in c["reviews"])]
        given = [v for c in mine for v in latest_verdicts(c, who).values()]
        reviewers.append(
            {
                "reviewer": who,
                "reviewed_calls": len(mine),
                "reviews": sum(w == who for c in mine for w, _ in c["reviews"]),
                "verdicts": len(given),
                "agreed": given.count("agree"),
                "disagreed": given.count("disagree"),
                "agreement_rate": rate(given.count("agree"), len(given)),
            }
        )
    reviewers.sort(key=lambda r: (-r["reviewed_calls"], r["reviewer"]))
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "previous_since": before[0].isoformat(),
        "previous_until": before[1].isoformat(),
        "pass_score": settings.web.pass_score,
        "agent": agent or None,
        "team": team or None,
        "totals": totals,
        "previous_totals": previous_totals,
        "comparison": comparison,
        "distribution": distribution,
        "trend": trend,
        "agents": agents,
        "teams": teams,
        "rules": rule_rows,
        "reviewers": reviewers,
    }


def assert_same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Part by part, so that a difference names the part it is in."""
    assert set(found) == set(expected)
    for part in expected:
        assert found[part] == expected[part], part


# -------------------------------------------------------------------------------------------------- tests


def test_every_figure_matches_an_independent_count(console: dict) -> None:
    seed_report(console)
    client = client_as(console, "lin")
    since, until = date(2026, 11, 2), date(2026, 11, 10)
    report = client.get("/api/qa-report", params=PERIOD).json()
    assert_same(report, expected_report(console, since, until))

    # The same figures, worked out by hand from the seeding: 30 seeded calls (20 at 95, 10 at 40 with a
    # banned phrase), five of 1003's (85, 72.5, 100, 60, 90), the last evening's 95; two nobody could check,
    # one unanswered.
    totals = report["totals"]
    assert (totals["calls"], totals["answered"], totals["checked"]) == (39, 38, 36)
    assert (totals["not_checked"], totals["partly_checked"]) == (2, 1)
    assert totals["average_score"] == round((20 * 95 + 10 * 40 + 407.5 + 95) / 36, 1) == 77.8
    assert (totals["passed"], totals["pass_rate"]) == (24, 66.7)
    # n1's live banned phrase is on a call nobody could check: not counted
    assert (totals["violation_calls"], totals["violations"]) == (12, 13)
    assert (totals["reviewed_calls"], totals["review_coverage"]) == (5, 13.9)  # n2's review left out
    assert (totals["flagged_reviewed_calls"], totals["flagged_review_coverage"]) == (4, 33.3)
    assert (totals["agreed"], totals["disagreed"], totals["agreement_rate"]) == (2, 3, 40.0)

    # 环比: the nine days before; p5 (23:50 on 1 November) in it, the call at 00:10 on the 11th in neither
    assert (report["previous_since"], report["previous_until"]) == ("2026-10-24", "2026-11-01")
    previous = report["previous_totals"]
    assert (previous["calls"], previous["checked"], previous["not_checked"]) == (6, 5, 1)
    assert (previous["average_score"], previous["pass_rate"]) == (70.0, 40.0)
    assert report["comparison"]["average_score"] == {
        "current": 77.8,
        "previous": 70.0,
        "change": 7.8,
        "change_pct": 11.1,
        "kind": "score",
    }
    assert report["comparison"]["pass_rate"]["change"] == 26.7  # percentage points
    assert report["comparison"]["calls"]["change_pct"] == 550.0  # 39 against 6

    bands = {b["from"]: b["calls"] for b in report["distribution"]}
    assert bands == {0: 0, 10: 0, 20: 0, 30: 0, 40: 10, 50: 0, 60: 1, 70: 1, 80: 1, 90: 23}
    assert [b["below_pass"] for b in report["distribution"]] == [True] * 8 + [False] * 2  # pass line 80

    assert [(a["rank"], a["agent"], a["average_score"], a["previous_rank"]) for a in report["agents"]] == [
        (1, "1003", 81.5, 1),
        (2, "1002", 77.8, 3),
        (3, "1001", 76.7, 2),
    ]
    assert report["agents"][0]["not_checked"] == 2 and report["agents"][0]["label"] == "赵敏(1003)"

    rules = {r["rule_id"]: r for r in report["rules"]}
    assert [r["rule_id"] for r in report["rules"]][:3] == ["banned_phrases", "greeting", "late_answer_apology"]
    assert len(report["rules"]) == 13  # every rule of the file, the conversation rules too
    assert (rules["banned_phrases"]["failed_calls"], rules["banned_phrases"]["applied_calls"]) == (10, 36)
    assert rules["greeting"]["pass_rate"] == 60.0 and rules["late_answer_apology"]["applied_calls"] == 2
    for never in ("greeting_company", "hold_request", "hold_return", "closing", "customer_hangs_up_first"):
        assert rules[never]["failed_calls"] == 0 and rules[never]["rank"] == 4, never  # listed, with 0
    assert rules["customer_hangs_up_first"]["pass_rate"] == 100.0  # applied to every checked call
    assert rules["hold_request"]["applied_calls"] == 0 and rules["hold_request"]["pass_rate"] is None
    assert rules["banned_phrases"]["previous_failed_calls"] == 2  # p2 and p5
    assert [(v["reviewer"], v["reviewed_calls"], v["agreement_rate"]) for v in report["reviewers"]] == [
        ("Lin", 4, 66.7),
        ("Wang", 1, 0.0),
        ("Zhao", 1, 50.0),
    ]


@pytest.mark.parametrize(
    "scope", [{"team": "售后一组"}, {"team": "售后二组"}, {"agent": "1003"}, {"agent": "1001"}], ids=str
)
def test_a_team_or_an_agent_alone(console: dict, scope: dict[str, str]) -> None:
    seed_report(console)
    report = client_as(console, "lin").get("/api/qa-report", params={**PERIOD, **scope}).json()
    expected = expected_report(console, date(2026, 11, 2), date(2026, 11, 10), **scope)
    assert_same(report, expected)
    if "agent" in scope:
        assert [a["agent"] for a in report["agents"]] == [scope["agent"]]
    else:
        assert {a["team"] for a in report["agents"]} == {scope["team"]}


def test_a_period_with_no_calls_and_one_day(console: dict) -> None:
    seed_report(console)
    client = client_as(console, "lin")
    empty = client.get("/api/qa-report", params={"since": "2025-01-01", "until": "2025-01-07"}).json()
    assert empty["totals"]["calls"] == 0 and empty["totals"]["average_score"] is None
    assert empty["comparison"]["pass_rate"]["change"] is None and empty["agents"] == []
    assert len(empty["rules"]) == 13 and all(r["failed_calls"] == 0 for r in empty["rules"])
    one_day = client.get("/api/qa-report", params={"since": "2026-11-04", "until": "2026-11-04"}).json()
    assert (one_day["previous_since"], one_day["previous_until"]) == ("2026-11-03", "2026-11-03")
    assert_same(one_day, expected_report(console, date(2026, 11, 4), date(2026, 11, 4)))


def test_refused_input_and_roles(console: dict) -> None:
    client = client_as(console, "lin")
    for params, field in (
        ({"since": "2026-11-10", "until": "2026-11-01"}, None),
        ({"since": "2024-01-01", "until": "2026-11-01"}, None),
        ({"until": "9999-12-31"}, "until"),
        ({"agent": "10\x0001"}, "agent"),
        ({"team": "x" * 101}, "team"),
    ):
        answer = client.get("/api/qa-report", params=params)
        assert answer.status_code == 422, params
        if field:
            assert answer.json()["detail"][0]["loc"] == ["query", field]
    page = client.get("/qa-report", params={"since": "2026-11-10", "until": "2026-11-01"})
    assert page.status_code == 422 and "开始日期晚于结束日期" in page.text
    assert client_as(console, None).get("/api/qa-report").status_code == 401
    assert client_as(console, None).get("/qa-report").status_code == 401
    for user in ("lin", "wang", "zhao"):
        assert client_as(console, user).get("/api/qa-report").status_code == 200


def test_the_page_and_its_print_view(console: dict) -> None:
    seed_report(console)
    client = client_as(console, "lin")
    page = client.get("/qa-report", params=PERIOD)
    assert page.status_code == 200
    text = page.text
    assert "质检报表" in text and 'id="nav-qa-report"' in text and 'href="/qa-report?' in text
    assert "服务禁语 (R4)" in text and "致命" in text and "赵敏(1003)" in text and "售后一组" in text
    assert re.search(r'<tr data-rule="hold_request"><td>4</td>\s*<td>[^<]*等待前说', text)  # never failed, ranked
    assert "本期未检查 2 通" in text and "另有 1 通仅部分检查" in text
    # no code in what is shown: rule ids and severities appear only inside attributes
    shown = re.sub(r"<script.*?</script>|<[^>]+>", " ", text, flags=re.S)
    for code in ("banned_phrases", "late_answer_apology", "critical", "major", "agree", "disagree", "None"):
        assert not re.search(rf"\b{code}\b", shown), code
    # the page's own scripts and styles only: external files from this server, the data as JSON
    nonce = re.search(r"'nonce-([A-Za-z0-9_-]+)'", page.headers["content-security-policy"])[1]
    for tag, attributes in re.findall(r"<(script|style)\b([^>]*)>", text):
        allowed = f'nonce="{nonce}"' in attributes or 'type="application/json"' in attributes
        assert allowed or (tag == "script" and 'src="/static/' in attributes), (tag, attributes)
    assert not re.search(r"<[^>]+\sstyle=", text) and not re.search(r"<[^>]+\son[a-z]+=", text)

    printable = client.get("/qa-report", params={**PERIOD, "team": "售后一组", "print": "1"})
    assert printable.status_code == 200 and 'class="qa-report print-view"' in printable.text
    assert "<header>" not in printable.text and 'id="print-now"' in printable.text  # no navigation
    assert "班组 售后一组" in printable.text and 'id="qa-report-filters"' not in printable.text

    for path, kind in (
        ("/static/qa_report.css", "text/css"),
        ("/static/qa_report.js", "javascript"),
        ("/static/echarts/echarts.common.min.js", "javascript"),
        ("/static/echarts/LICENSE", ""),  # the library's licence and NOTICE are served beside it
        ("/static/echarts/NOTICE", ""),
    ):
        asset = client.get(path)
        assert asset.status_code == 200 and kind in asset.headers["content-type"], path
        assert asset.headers["cache-control"] == "no-cache" and asset.headers["x-content-type-options"] == "nosniff"
    assert "@media print" in client.get("/static/qa_report.css").text
    assert "Apache License" in client.get("/static/echarts/LICENSE").text
    assert client.get("/static/../qa_report.py").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_charts_draw_in_a_browser_in_chinese(console: dict, browser: Any, tmp_path: Any) -> None:
    from selenium.webdriver.common.by import By

    from tests.helpers.browser import wait_for

    seed_report(console)
    # every script error, refused inline code (CSP) and console error, from before the page's own scripts
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": """
            window.__problems = [];
            window.addEventListener('error', e => window.__problems.push('error: ' + e.message));
            document.addEventListener('securitypolicyviolation',
                e => window.__problems.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI));
            const consoleError = console.error;
            console.error = (...args) => { window.__problems.push('console: ' + args.join(' ')); consoleError(...args); };
            """
        },
    )
    with serving(console["app"]) as base:
        browser.get(base + "/qa-report")  # asks for a sign-in
        browser.find_element(By.ID, "username").send_keys("lin")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "qa-report"))
        browser.get_log("browser")  # the sign-in form's 401 read: only what comes after counts
        for path in (
            "/qa-report?since=2026-11-02&until=2026-11-10",
            "/qa-report?since=2026-11-02&until=2026-11-10&print=1",
        ):
            browser.get(base + path)
            wait_for(browser, lambda d: d.find_element(By.ID, "qa-report").get_attribute("data-charts") == "5")
            charts = browser.find_elements(By.CSS_SELECTOR, ".chart")
            assert len(charts) == 5
            for chart in charts:
                assert chart.get_attribute("data-rendered") == "true"
                svg = chart.find_element(By.TAG_NAME, "svg")
                assert svg.size["width"] > 300 and svg.size["height"] > 100, chart.get_attribute("id")
            assert browser.execute_script("return window.__problems") == [], path
            severe = [
                entry
                for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE" and "/favicon.ico" not in entry["message"]  # the console has none
            ]
            assert severe == [], severe
            bars = browser.find_elements(By.CSS_SELECTOR, "#chart-rules svg path")
            assert bars  # drawn
            labels = browser.execute_script(
                "return Array.from(document.querySelectorAll('.chart svg text')).map(t => t.textContent)"
            )
            assert "服务禁语 (R4)" in labels and "赵敏(1003)" in labels and "合格线 80 分" in labels
            assert "开头问候: 您好 (R2)" in labels and "结束语: 感谢您的来电 (R7)" in labels  # never failed: shown
            shown = browser.find_element(By.ID, "qa-report").text + "\n" + "\n".join(labels)
            words = set(re.findall(r"[A-Za-z][A-Za-z_]+", shown))
            assert words <= {"Lin", "Wang", "Zhao"}, words  # the reviewers' names; no code, no null or NaN
            browser.save_screenshot(str(tmp_path / f"qa_report_{'print' if 'print' in path else 'page'}.png"))
        assert not browser.find_elements(By.TAG_NAME, "header")  # the print view has no navigation
