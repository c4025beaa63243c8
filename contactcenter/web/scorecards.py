"""Scorecards: how an agent or a team did over a period, read from the stored calls, findings and surveys.

Three queries over the period (calls with their agent, failed findings, survey answers), summed in Python:
day buckets must follow the desk's time zone, which SQLite and PostgreSQL spell differently, and a month of
a busy desk is tens of thousands of small rows, well within one pass.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from contactcenter.storage.models import Agent, Call, RuleHit, SurveyResponse

FAILED_KINDS = ("violation", "missing")
NO_TEAM = "未分组"
RING_BUCKETS = ("1", "2", "3", "4+", "未接")
GroupBy = Literal["agent", "team"]


@dataclass(frozen=True)
class Period:
    """Whole local days, both ends included."""

    since: date
    until: date

    @classmethod
    def last_days(cls, days: int, today: date) -> Period:
        return cls(today - timedelta(days=days - 1), today)

    def bounds(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        return (datetime.combine(self.since, time(), zone),
                datetime.combine(self.until + timedelta(days=1), time(), zone))

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


@dataclass
class Tally:
    """Running sums for one group (an agent, a team, a day or everyone)."""

    calls: int = 0
    answered: int = 0
    scored: int = 0
    score_sum: float = 0.0
    passed: int = 0
    within_three_rings: int = 0

    def add(self, answered: bool, rings: int | None, score: float | None, pass_score: float) -> None:
        self.calls += 1
        if answered:
            self.answered += 1
            if rings is not None and rings <= 3:
                self.within_three_rings += 1
        if score is not None:
            self.scored += 1
            self.score_sum += score
            if score >= pass_score:
                self.passed += 1

    def summary(self) -> dict[str, Any]:
        return {"calls": self.calls, "answered": self.answered,
                "average_score": round(self.score_sum / self.scored, 1) if self.scored else None,
                "pass_rate": _rate(self.passed, self.scored),
                "answered_within_3_rings": _rate(self.within_three_rings, self.answered)}


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


@dataclass
class Scorecard:
    period: Period
    group_by: GroupBy
    totals: dict[str, Any]
    groups: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    trend: list[dict[str, Any]] = field(default_factory=list)
    rings: list[dict[str, Any]] = field(default_factory=list)
    survey: list[dict[str, Any]] = field(default_factory=list)


def scorecard(session: Session, period: Period, zone: ZoneInfo, group_by: GroupBy = "agent",
              agent: str | None = None, team: str | None = None, pass_score: float = 80.0) -> Scorecard:
    """Everything the scorecard page shows, for calls invited within ``period`` (local days)."""
    start, end = period.bounds(zone)
    where = [Call.invited_at >= start, Call.invited_at < end]
    if agent:
        where.append(Agent.extension == agent)
    if team:
        where.append(Agent.team == ("" if team == NO_TEAM else team))
    calls = session.execute(
        select(Call.id, Call.invited_at, Call.answered_at, Call.rings_before_answer, Call.compliance_score,
               Agent.extension, Agent.name, Agent.team)
        .outerjoin(Agent, Agent.id == Call.agent_id).where(*where)).all()

    def group_of(row: Any) -> str:
        if group_by == "team":
            return row.team or NO_TEAM
        return row.extension or "?"

    totals, groups, days = Tally(), defaultdict(Tally), defaultdict(Tally)
    names: dict[str, tuple[str, str]] = {}
    rings: Counter[str] = Counter()
    for row in calls:
        answered = row.answered_at is not None
        for tally in (totals, groups[group_of(row)], days[row.invited_at.astimezone(zone).date()]):
            tally.add(answered, row.rings_before_answer, row.compliance_score, pass_score)
        names.setdefault(group_of(row), (row.name or "", row.team or NO_TEAM))
        if not answered:
            rings["未接"] += 1
        else:
            count = row.rings_before_answer or 1
            rings[str(count) if count <= 3 else "4+"] += 1

    failed_calls: dict[str, set[int]] = defaultdict(set)
    severity: dict[str, str] = {}
    hits = (select(RuleHit.call_id, RuleHit.rule_id, RuleHit.severity)
            .join(Call, Call.id == RuleHit.call_id).outerjoin(Agent, Agent.id == Call.agent_id)
            .where(*where, RuleHit.kind.in_(FAILED_KINDS)))
    for call_id, rule_id, rule_severity in session.execute(hits):
        failed_calls[rule_id].add(call_id)
        severity.setdefault(rule_id, rule_severity)
    rules = [{"rule_id": rule_id, "severity": severity[rule_id], "failed_calls": len(failed),
              "pass_rate": _rate(totals.scored - len(failed), totals.scored)}
             for rule_id, failed in sorted(failed_calls.items(), key=lambda item: -len(item[1]))]

    answers: dict[str, Counter[int]] = defaultdict(Counter)
    asked: Counter[str] = Counter()
    survey = (select(SurveyResponse.question_key, SurveyResponse.answer)
              .join(Call, Call.id == SurveyResponse.call_id).outerjoin(Agent, Agent.id == Call.agent_id)
              .where(*where))
    for question, answer in session.execute(survey):
        asked[question] += 1
        if answer is not None:
            answers[question][answer] += 1
    survey_rows = []
    for question in sorted(asked):
        given = answers[question]
        count = sum(given.values())
        survey_rows.append({"question": question, "asked": asked[question], "answered": count,
                            "average": round(sum(k * v for k, v in given.items()) / count, 2) if count else None,
                            "distribution": {str(k): given.get(k, 0) for k in range(1, 6)}})

    group_rows = []
    for key in sorted(groups, key=lambda k: (-groups[k].calls, k)):
        name, team_name = names.get(key, ("", ""))
        label = {"agent": key, "name": name, "team": team_name} if group_by == "agent" else {"team": key}
        group_rows.append({**label, **groups[key].summary()})
    return Scorecard(
        period=period, group_by=group_by, totals=totals.summary(), groups=group_rows, rules=rules,
        trend=[{"day": day.isoformat(), **days[day].summary()} for day in period.days],
        rings=[{"rings": bucket, "calls": rings.get(bucket, 0)} for bucket in RING_BUCKETS],
        survey=survey_rows)
