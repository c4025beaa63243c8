"""The QA report (质检报表): how the checked calls of a team or an agent did over a period, against the period
of the same length before it (环比), for a QA lead to read on screen, print and hand on.

What it shows, for the calls invited within the period (local days), optionally one team's or one agent's:

- the figures: calls, checked and not-checked calls, average score, pass rate (a call at or above
  ``[web] pass_score`` passes), calls with a violation and their share, findings that failed, review coverage
  and agreement; each beside the previous period's, with the change;
- the score distribution (ten-point bands), the daily trend of average score, pass rate and violations;
- the agents ranked by average score (then pass rate), and the teams side by side;
- every rule ranked by the calls that failed it, the rules that never failed included with 0, each with its
  pass rate over the calls it applied to (``scorecards.applies_everywhere`` and ``scorecards._applies_to``
  say which those are) and the reviewers' verdicts on it;
- the reviewers: how many calls each reviewed, how often they agreed with the machine.

Only checked calls count. A call with no score (answered, but nobody could check it: no model, no speech,
recognition failed) is left out of every average, rate, distribution, ranking and review figure, and each
figure says how many were left out (``not_checked``). Findings and reviews of such calls are left out too.

Reviews: a call is *reviewed* when it has at least one review. A verdict (agree or disagree with the machine
on one rule of one call) counts once per call and rule: the latest review that gives a verdict on that rule
is the one that counts (a reviewer who changes their mind, or a second reviewer, replaces the first verdict).
Per reviewer, each reviewer's own latest verdicts count.

No `from __future__ import annotations`: FastAPI reads the route signatures.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, and_, case, distinct, exists, func, literal, or_, select
from sqlalchemy.orm import Session
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from contactcenter.settings import Settings, SettingsError
from contactcenter.speech.rule_book import Override, load_overrides
from contactcenter.speech.rules import Rule, RuleSet, load_rules
from contactcenter.storage.database import Database
from contactcenter.storage.models import Agent, Call, Review, RuleHit, WebUser
from contactcenter.vocabulary import Vocabulary
from contactcenter.web.auth import SignedIn
from contactcenter.web.guards import TEMPLATES, Blank, Guards, Text
from contactcenter.web.queries import agent_label
from contactcenter.web.reports import period_dependency
from contactcenter.web.scorecards import (
    FAILED_KINDS,
    NO_TEAM,
    REQUIRED_KINDS,
    Period,
    Tally,
    _applies_to,
    _rate,
    applies_everywhere,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
NO_AGENT = "(无坐席)"  # calls with no agent: shown under this name, never as a code
BANDS = tuple((low, low + 10) for low in range(0, 100, 10))  # score bands; the last one holds 100 too
SEVERITY_ORDER = ("critical", "major", "minor", "info")  # most severe first
#: The figures compared with the previous period (环比), and how each changes: "count" (relative change in
#: percent), "score" (points) or "rate" (percentage points).
COMPARED = {
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


# ------------------------------------------------------------------------------------------------ figures


@dataclass
class Figures:
    """The sums for one group of calls (everyone, a day, an agent, a team) over one period."""

    tally: Tally = field(default_factory=Tally)
    violation_calls: int = 0  # checked calls with at least one failed finding
    violations: int = 0  # failed findings (violations and missed required phrases) on checked calls
    reviewed_calls: int = 0  # checked calls with at least one review
    flagged_reviewed_calls: int = 0  # of the violation calls, those reviewed
    agreed: int = 0
    disagreed: int = 0

    def summary(self) -> dict[str, Any]:
        t = self.tally
        verdicts = self.agreed + self.disagreed
        return {
            "calls": t.calls,
            "answered": t.answered,
            "checked": t.scored,
            # left out of every average and rate below: answered calls nobody could check
            "not_checked": t.not_checked,
            "partly_checked": t.partly_checked,
            "average_score": round(t.score_sum / t.scored, 1) if t.scored else None,
            "passed": t.passed,
            "pass_rate": _rate(t.passed, t.scored),
            "violation_calls": self.violation_calls,
            "violation_rate": _rate(self.violation_calls, t.scored),
            "violations": self.violations,
            "reviewed_calls": self.reviewed_calls,
            "review_coverage": _rate(self.reviewed_calls, t.scored),
            "flagged_reviewed_calls": self.flagged_reviewed_calls,
            "flagged_review_coverage": _rate(self.flagged_reviewed_calls, self.violation_calls),
            "verdicts": verdicts,
            "agreed": self.agreed,
            "disagreed": self.disagreed,
            "agreement_rate": _rate(self.agreed, verdicts),
        }


@dataclass(frozen=True)
class ReviewedVerdict:
    """One verdict that counts: the latest on one rule of one call, with the call's groups."""

    call_id: int
    rule_id: str
    verdict: str
    reviewer_id: int
    day: int
    agent: str
    team: str


def compare(current: Any, previous: Any, how: str) -> dict[str, Any]:
    """A figure beside the previous period's: ``change`` is the difference (points for a score, percentage
    points for a rate), ``change_pct`` the relative change in percent (None when the previous is 0 or None)."""
    both = current is not None and previous is not None
    return {
        "current": current,
        "previous": previous,
        "change": round(current - previous, 1) if both else None,
        "change_pct": round(100.0 * (current - previous) / previous, 1) if both and previous else None,
        "kind": how,
    }


def previous_period(period: Period) -> Period:
    """The days just before ``period``, as many as it has (环比)."""
    length = (period.until - period.since).days + 1
    return Period(period.since - timedelta(days=length), period.since - timedelta(days=1))


def _day_of(period: Period, zone: ZoneInfo) -> ColumnElement[int]:
    """The index of a call's local day within ``period`` (as scorecards.scorecard puts calls in days)."""
    days = period.days
    boundaries = [datetime.combine(day + timedelta(days=1), time(), zone) for day in days[:-1]]
    if not boundaries:
        return literal(0)
    return case(*[(Call.invited_at < boundary, n) for n, boundary in enumerate(boundaries)], else_=len(days) - 1)


def _team(team: str | None) -> str:
    return team or NO_TEAM


def _agent(extension: str | None) -> str:
    return extension or ""


@dataclass
class QAReport:
    period: Period
    previous: Period
    pass_score: float
    agent: str | None
    team: str | None
    totals: dict[str, Any]
    previous_totals: dict[str, Any]
    comparison: dict[str, dict[str, Any]]
    distribution: list[dict[str, Any]]
    trend: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    reviewers: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.period.since.isoformat(),
            "until": self.period.until.isoformat(),
            "previous_since": self.previous.since.isoformat(),
            "previous_until": self.previous.until.isoformat(),
            "pass_score": self.pass_score,
            "agent": self.agent,
            "team": self.team,
            "totals": self.totals,
            "previous_totals": self.previous_totals,
            "comparison": self.comparison,
            "distribution": self.distribution,
            "trend": self.trend,
            "agents": self.agents,
            "teams": self.teams,
            "rules": self.rules,
            "reviewers": self.reviewers,
        }


class _Reader:
    """The queries for one period and scope (agent, team): every figure of the report is one of these."""

    def __init__(
        self, session: Session, period: Period, zone: ZoneInfo, agent: str | None, team: str | None, pass_score: float
    ) -> None:
        self.session = session
        self.period = period
        self.pass_score = pass_score
        start, end = period.bounds(zone)
        self.where: list[ColumnElement[bool]] = [Call.invited_at >= start, Call.invited_at < end]
        if agent:
            self.where.append(or_(Agent.extension == agent, Agent.name == agent))
        if team:
            self.where.append(Agent.team == ("" if team == NO_TEAM else team))
        self.day_of = _day_of(period, zone)
        self.scored = Call.compliance_score.is_not(None)
        self._verdicts: list[ReviewedVerdict] | None = None
        self._reviews: list[tuple[int, int, dict[str, Any]]] = []

    def calls(self, *columns: Any) -> Any:
        return select(*columns).select_from(Call).outerjoin(Agent, Agent.id == Call.agent_id).where(*self.where)

    # ------------------------------------------------------------------------------------------ grouped sums

    def figures(
        self, keys: Sequence[Any], key_of: Callable[[Sequence[Any]], Any], verdict_key: Callable[[ReviewedVerdict], Any]
    ) -> dict[Any, Figures]:
        """The figures per group: ``keys`` are the columns grouped by, ``key_of`` makes a group's key of their
        values, ``verdict_key`` the same key of a verdict."""
        has_failed = exists().where(RuleHit.call_id == Call.id, RuleHit.kind.in_(FAILED_KINDS))
        has_review = exists().where(Review.call_id == Call.id)

        def count_if(*conditions: ColumnElement[bool]) -> Any:
            return func.sum(case((and_(self.scored, *conditions), 1), else_=0))

        tally = Tally.columns(self.pass_score)
        columns = [
            *tally,
            count_if(has_failed),
            count_if(has_review),
            count_if(has_failed, has_review),
        ]
        found: dict[Any, Figures] = defaultdict(Figures)
        width = len(keys)
        for row in self.session.execute(self.calls(*keys, *columns).group_by(*keys)):
            figures = found[key_of(row[:width])]
            sums = row[width:]
            figures.tally = figures.tally + Tally.of(sums[: len(tally)])
            violation_calls, reviewed_calls, flagged_reviewed_calls = (int(v or 0) for v in sums[len(tally) :])
            figures.violation_calls += violation_calls
            figures.reviewed_calls += reviewed_calls
            figures.flagged_reviewed_calls += flagged_reviewed_calls
        failed = (
            self.calls(*keys, func.count(RuleHit.id))
            .join(RuleHit, RuleHit.call_id == Call.id)
            .where(self.scored, RuleHit.kind.in_(FAILED_KINDS))
            .group_by(*keys)
        )
        for row in self.session.execute(failed):
            found[key_of(row[:width])].violations += int(row[width] or 0)
        for verdict in self.verdicts():
            figures = found[verdict_key(verdict)]
            if verdict.verdict == "agree":
                figures.agreed += 1
            else:
                figures.disagreed += 1
        return dict(found)

    def verdicts(self) -> list[ReviewedVerdict]:
        """The verdicts that count on the checked calls: the latest per call and rule."""
        if self._verdicts is None:
            rows = self.session.execute(
                self.calls(
                    Review.call_id, Review.reviewer_id, Review.verdicts, self.day_of, Agent.extension, Agent.team
                )
                .join(Review, Review.call_id == Call.id)
                .where(self.scored)
                .order_by(Review.created_at, Review.id)
            ).all()
            latest: dict[tuple[int, str], ReviewedVerdict] = {}
            for call_id, reviewer_id, verdicts, day, extension, team in rows:
                self._reviews.append((int(call_id), int(reviewer_id), verdicts or {}))
                for rule_id, verdict in (verdicts or {}).items():
                    if verdict in ("agree", "disagree"):
                        latest[(call_id, rule_id)] = ReviewedVerdict(
                            call_id, rule_id, verdict, reviewer_id, int(day), _agent(extension), _team(team)
                        )
            self._verdicts = list(latest.values())
        return self._verdicts

    def reviews(self) -> list[tuple[int, int, dict[str, Any]]]:
        """Every review of the checked calls, oldest first: (call id, reviewer id, verdicts)."""
        self.verdicts()
        return self._reviews

    def totals(self) -> Figures:
        return self.figures([], lambda _: (), lambda _: ()).get((), Figures())

    def by_day(self) -> dict[int, Figures]:
        return self.figures([self.day_of], lambda values: int(values[0]), lambda verdict: verdict.day)

    def by_agent(self) -> tuple[dict[str, Figures], dict[str, tuple[str, str]]]:
        """Figures per agent (by extension, "" for calls with no agent), and each agent's name and team."""
        labels: dict[str, tuple[str, str]] = {}

        def key_of(values: Sequence[Any]) -> str:
            extension, name, team = values
            labels[_agent(extension)] = (name or "", _team(team))
            return _agent(extension)

        found = self.figures([Agent.extension, Agent.name, Agent.team], key_of, lambda verdict: verdict.agent)
        return found, labels

    def by_team(self) -> dict[str, Figures]:
        return self.figures([Agent.team], lambda values: _team(values[0]), lambda verdict: verdict.team)

    def distribution(self) -> list[int]:
        """Checked calls per score band (BANDS)."""
        score = Call.compliance_score
        band = case(*[(score < high, n) for n, (_, high) in enumerate(BANDS[:-1])], else_=len(BANDS) - 1)
        counts = {
            int(n): int(count)
            for n, count in self.session.execute(self.calls(band, func.count()).where(self.scored).group_by(band))
        }
        return [counts.get(n, 0) for n in range(len(BANDS))]

    # ------------------------------------------------------------------------------------------------ rules

    def rule_findings(self) -> dict[str, tuple[int, int, int, set[str]]]:
        """Per rule with findings on checked calls: (calls that failed it, failed findings, calls with a
        satisfied or missing finding, severities of the failed findings)."""
        failed = RuleHit.kind.in_(FAILED_KINDS)
        query = (
            self.calls(
                RuleHit.rule_id,
                func.count(distinct(case((failed, RuleHit.call_id)))),
                func.sum(case((failed, 1), else_=0)),
                func.count(distinct(case((RuleHit.kind.in_(REQUIRED_KINDS), RuleHit.call_id)))),
            )
            .join(RuleHit, RuleHit.call_id == Call.id)
            .where(self.scored)
            .group_by(RuleHit.rule_id)
        )
        found = {
            rule_id: (int(calls or 0), int(findings or 0), int(required or 0), set[str]())
            for rule_id, calls, findings, required in self.session.execute(query)
        }
        severities = (
            self.calls(RuleHit.rule_id, RuleHit.severity)
            .join(RuleHit, RuleHit.call_id == Call.id)
            .where(self.scored, failed)
            .distinct()
        )
        for rule_id, severity in self.session.execute(severities):
            found[rule_id][3].add(severity)
        return found

    def applied_calls(self, rule_id: str, rule: Rule | None, has_required: bool, apology_after_rings: int) -> int:
        """The checked calls ``rule_id`` applied to (as the scorecard counts them, over checked calls only)."""
        if applies_everywhere(rule, has_required):
            has_finding = exists().where(RuleHit.call_id == Call.id, RuleHit.rule_id == rule_id)
            condition = or_(_applies_to(rule, apology_after_rings), and_(self.scored, has_finding))
            return int(self.session.scalar(self.calls(func.count()).where(condition)) or 0)
        with_finding = (
            self.calls(func.count(distinct(RuleHit.call_id)))
            .join(RuleHit, RuleHit.call_id == Call.id)
            .where(self.scored, RuleHit.rule_id == rule_id)
        )
        return int(self.session.scalar(with_finding) or 0)


def _competition_ranks(rows: Sequence[dict[str, Any]], score: Callable[[dict[str, Any]], Any]) -> list[int | None]:
    """1, 2, 2, 4: rows in order, equal scores sharing a rank; a row whose score is None has no rank."""
    ranks: list[int | None] = []
    last: Any = object()
    for n, row in enumerate(rows):
        value = score(row)
        if value is None:
            ranks.append(None)
        elif value == last:
            ranks.append(ranks[-1])
        else:
            ranks.append(n + 1)
        last = value
    return ranks


def _by_score(summary: dict[str, Any]) -> tuple[Any, ...] | None:
    """What agents and teams are ranked by: average score, then pass rate; None when nothing was checked."""
    if summary["average_score"] is None:
        return None
    return (summary["average_score"], summary["pass_rate"])


def _ranked(rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """Rows with checked calls by average score then pass rate (best first), then the others; ranked."""
    rows.sort(
        key=lambda r: (
            r["average_score"] is None,
            -(r["average_score"] or 0.0),
            -(r["pass_rate"] or 0.0),
            -r["checked"],
            name(r),
        )
    )
    for row, rank in zip(rows, _competition_ranks(rows, _by_score), strict=True):
        row["rank"] = rank
    return rows


def _previous_ranks(figures: dict[str, Figures], name: Callable[[str], str]) -> dict[str, int | None]:
    rows = [{"key": key, **found.summary()} for key, found in figures.items()]
    return {row["key"]: row["rank"] for row in _ranked(rows, lambda r: name(r["key"]))}


def _with_previous(summary: dict[str, Any], previous: dict[str, Any] | None, rank: int | None) -> dict[str, Any]:
    before = previous or {}
    return {
        **summary,
        "previous_average_score": before.get("average_score"),
        "average_score_change": compare(summary["average_score"], before.get("average_score"), "score")["change"],
        "previous_pass_rate": before.get("pass_rate"),
        "pass_rate_change": compare(summary["pass_rate"], before.get("pass_rate"), "rate")["change"],
        "previous_rank": rank,
    }


def _severity(rule: Rule | None, override: Override | None, seen: Iterable[str]) -> str:
    """A rule's severity in force (the console's change, else the file's); for a rule no longer in the file,
    the most severe of its failed findings."""
    if rule is not None:
        return (override.severity if override is not None else None) or rule.spec.severity
    found = [s for s in SEVERITY_ORDER if s in set(seen)]
    return found[0] if found else ""


def qa_report(
    session: Session,
    period: Period,
    zone: ZoneInfo,
    agent: str | None = None,
    team: str | None = None,
    pass_score: float = 80.0,
    rules: RuleSet | None = None,
    apology_after_rings: int = 3,
) -> QAReport:
    """Every figure of the QA report for the calls invited within ``period`` (local days), of ``agent`` (an
    extension or a name) or ``team`` (NO_TEAM for agents in none), beside the period of the same length before.
    ``rules`` (the rules file) lists the rules that never failed and tells which calls each rule applied to;
    without it, only rules with findings are listed, each judged by its findings."""
    before = previous_period(period)
    now = _Reader(session, period, zone, agent, team, pass_score)
    then = _Reader(session, before, zone, agent, team, pass_score)

    totals, previous_totals = now.totals().summary(), then.totals().summary()
    comparison = {key: compare(totals[key], previous_totals[key], how) for key, how in COMPARED.items()}

    current_bands, previous_bands = now.distribution(), then.distribution()
    distribution = [
        {
            "from": low,
            "to": high,
            "calls": calls,
            "previous_calls": previous,
            "below_pass": high <= pass_score,  # the whole band fails
        }
        for (low, high), calls, previous in zip(BANDS, current_bands, previous_bands, strict=True)
    ]

    days = now.by_day()
    trend = [{"day": day.isoformat(), **days.get(n, Figures()).summary()} for n, day in enumerate(period.days)]

    agent_figures, labels = now.by_agent()
    previous_agents, previous_labels = then.by_agent()
    labels = {**previous_labels, **labels}

    def agent_name(extension: str) -> str:
        name, _ = labels.get(extension, ("", ""))
        return agent_label(name, extension) or NO_AGENT

    previous_agent_ranks = _previous_ranks(previous_agents, agent_name)
    agent_rows = _ranked(
        [
            {
                "agent": extension,
                "name": labels[extension][0],
                "label": agent_name(extension),
                "team": labels[extension][1],
                **_with_previous(
                    found.summary(),
                    previous_agents[extension].summary() if extension in previous_agents else None,
                    previous_agent_ranks.get(extension),
                ),
            }
            for extension, found in agent_figures.items()
        ],
        lambda r: r["label"],
    )

    team_figures, previous_teams = now.by_team(), then.by_team()
    previous_team_ranks = _previous_ranks(previous_teams, str)
    team_rows = _ranked(
        [
            {
                "team": name,
                **_with_previous(
                    found.summary(),
                    previous_teams[name].summary() if name in previous_teams else None,
                    previous_team_ranks.get(name),
                ),
            }
            for name, found in team_figures.items()
        ],
        lambda r: r["team"],
    )

    rule_rows = _rule_ranking(session, now, then, rules, apology_after_rings)
    reviewers = _reviewers(session, now)
    return QAReport(
        period=period,
        previous=before,
        pass_score=pass_score,
        agent=agent,
        team=team,
        totals=totals,
        previous_totals=previous_totals,
        comparison=comparison,
        distribution=distribution,
        trend=trend,
        agents=agent_rows,
        teams=team_rows,
        rules=rule_rows,
        reviewers=reviewers,
    )


def _rule_ranking(
    session: Session, now: _Reader, then: _Reader, rules: RuleSet | None, apology_after_rings: int
) -> list[dict[str, Any]]:
    """Every rule of the file, and any other rule with findings, by the checked calls that failed it (most
    first; a rule that never failed is listed with 0), with its pass rate over the calls it applied to."""
    overrides = load_overrides(session)
    by_id = {rule.id: rule for rule in rules.rules} if rules is not None else {}
    found, previous = now.rule_findings(), then.rule_findings()
    ids = list(dict.fromkeys([*by_id, *sorted(found)]))
    total_failed = sum(findings for _, findings, _, _ in found.values())
    verdicts: dict[str, list[str]] = defaultdict(list)
    for verdict in now.verdicts():
        verdicts[verdict.rule_id].append(verdict.verdict)
    rows = []
    for rule_id in ids:
        rule, override = by_id.get(rule_id), overrides.get(rule_id)
        failed_calls, failed, required, severities = found.get(rule_id, (0, 0, 0, set()))
        applied = now.applied_calls(rule_id, rule, bool(required), apology_after_rings)
        before_calls, before_failed, before_required, _ = previous.get(rule_id, (0, 0, 0, set()))
        before_applied = then.applied_calls(rule_id, rule, bool(before_required), apology_after_rings)
        agreed, disagreed = verdicts[rule_id].count("agree"), verdicts[rule_id].count("disagree")
        rows.append(
            {
                "rule_id": rule_id,
                "severity": _severity(rule, override, severities),
                "in_rules": rule is not None,  # False: no longer in the rules file (kept for its findings)
                "enabled": rule is not None and (override is None or override.enabled),
                "failed_calls": failed_calls,
                "violations": failed,
                "share": _rate(failed, total_failed),  # of all failed findings in the period
                "applied_calls": applied,
                "pass_rate": _rate(applied - failed_calls, applied),
                "previous_failed_calls": before_calls,
                "previous_violations": before_failed,
                "previous_applied_calls": before_applied,
                "previous_pass_rate": _rate(before_applied - before_calls, before_applied),
                "failed_calls_change": failed_calls - before_calls,
                "failed_calls_change_pct": compare(failed_calls, before_calls, "count")["change_pct"],
                "agreed": agreed,
                "disagreed": disagreed,
                "agreement_rate": _rate(agreed, agreed + disagreed),
            }
        )
    severity_rank = {s: n for n, s in enumerate(SEVERITY_ORDER)}
    order = {rule_id: n for n, rule_id in enumerate(ids)}
    rows.sort(
        key=lambda r: (-r["failed_calls"], -r["violations"], severity_rank.get(r["severity"], 9), order[r["rule_id"]])
    )
    for row, rank in zip(rows, _competition_ranks(rows, lambda r: r["failed_calls"]), strict=True):
        row["rank"] = rank
    return rows


def _reviewers(session: Session, now: _Reader) -> list[dict[str, Any]]:
    """Per reviewer: checked calls reviewed, reviews written, and their own latest verdict per call and rule."""
    calls: dict[int, set[int]] = defaultdict(set)
    written: dict[int, int] = defaultdict(int)
    latest: dict[int, dict[tuple[int, str], str]] = defaultdict(dict)
    for call_id, reviewer_id, verdicts in now.reviews():
        calls[reviewer_id].add(call_id)
        written[reviewer_id] += 1
        for rule_id, verdict in verdicts.items():
            if verdict in ("agree", "disagree"):
                latest[reviewer_id][(call_id, rule_id)] = verdict
    names = {
        user_id: display_name or username
        for user_id, username, display_name in session.execute(
            select(WebUser.id, WebUser.username, WebUser.display_name).where(WebUser.id.in_(list(calls)))
        )
    }
    rows = []
    for reviewer_id in calls:
        given = list(latest[reviewer_id].values())
        agreed = given.count("agree")
        rows.append(
            {
                "reviewer": names.get(reviewer_id, ""),
                "reviewed_calls": len(calls[reviewer_id]),
                "reviews": written[reviewer_id],
                "verdicts": len(given),
                "agreed": agreed,
                "disagreed": len(given) - agreed,
                "agreement_rate": _rate(agreed, len(given)),
            }
        )
    rows.sort(key=lambda r: (-r["reviewed_calls"], r["reviewer"]))
    return rows


# ----------------------------------------------------------------------------------------------- the page


def chart_data(report: QAReport, names: Vocabulary) -> dict[str, Any]:
    """What the page's charts draw (static/qa_report.js), every label already in Chinese."""
    return {
        "pass_score": report.pass_score,
        "distribution": {
            "bands": [band_label(b) for b in report.distribution],
            "calls": [b["calls"] for b in report.distribution],
            "previous": [b["previous_calls"] for b in report.distribution],
            "below_pass": [b["below_pass"] for b in report.distribution],
        },
        "trend": {
            "days": [row["day"] for row in report.trend],
            "average_score": [row["average_score"] for row in report.trend],
            "pass_rate": [row["pass_rate"] for row in report.trend],
            "violation_calls": [row["violation_calls"] for row in report.trend],
            "violations": [row["violations"] for row in report.trend],
            "violation_rate": [row["violation_rate"] for row in report.trend],
        },
        "agents": {
            "names": [row["label"] for row in report.agents if row["rank"] is not None],
            "average_score": [row["average_score"] for row in report.agents if row["rank"] is not None],
            "pass_rate": [row["pass_rate"] for row in report.agents if row["rank"] is not None],
        },
        "rules": {
            "names": [names.name("rule", row["rule_id"]) for row in report.rules],
            "failed_calls": [row["failed_calls"] for row in report.rules],
            "previous_failed_calls": [row["previous_failed_calls"] for row in report.rules],
        },
    }


def band_label(band: dict[str, Any]) -> str:
    return f"{band['from']}–{band['to']}"


class Assets(StaticFiles):
    """The console's static files (the chart library and the pages' scripts): no one's data, so a browser may
    keep them, asking each time whether they changed (ETag), rather than fetch a megabyte with every page."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def add_qa_report_routes(app: FastAPI, guards: Guards, settings: Settings, database: Database) -> None:
    zone = ZoneInfo(settings.general.timezone)
    Reviewer = Annotated[SignedIn, Depends(guards.role("reviewer"))]
    if not any(isinstance(route, Mount) and route.path == "/static" for route in app.routes):
        if STATIC.is_dir():
            app.mount("/static", Assets(directory=STATIC), name="static")
        else:  # an install without the package's data files: the report's tables still show, without charts
            log.warning("%s is missing: the QA report is shown without its charts", STATIC)

    Days = Annotated[Period, Depends(period_dependency(zone))]  # as the scorecard's

    def rules_in_file() -> RuleSet | None:
        try:
            return load_rules(settings.scripts.rules, settings.company.names_said)
        except SettingsError:
            return None

    def report(days: Period, agent: str | None, team: str | None) -> QAReport:
        rules = rules_in_file()
        with database.session() as session:
            return qa_report(
                session,
                days,
                zone,
                agent or None,
                team or None,
                settings.web.pass_score,
                rules=rules,
                apology_after_rings=settings.ring.apology_after_rings,
            )

    def choices() -> tuple[list[tuple[str, str]], list[str]]:
        """The filter's agents (extension, label) and teams."""
        with database.session() as session:
            agents = session.execute(select(Agent.extension, Agent.name, Agent.team).order_by(Agent.extension)).all()
        teams = sorted({team for _, _, team in agents if team})
        if any(not team for _, _, team in agents):
            teams.append(NO_TEAM)
        return [(extension, agent_label(name, extension)) for extension, name, _ in agents], teams

    @app.get("/qa-report", response_class=HTMLResponse, include_in_schema=False)
    def qa_report_page(
        request: Request,
        user: Reviewer,
        days: Days,
        agent: Text | None = None,
        team: Text | None = None,
        printable: Annotated[Blank[bool], Query(alias="print")] = None,
    ) -> Response:
        found = report(days, agent, team)
        names: Vocabulary = getattr(request.app.state, "vocabulary", None) or Vocabulary()
        agents, teams = choices()
        query = {"since": days.since.isoformat(), "until": days.until.isoformat()}
        query.update({"agent": agent} if agent else {})
        query.update({"team": team} if team else {})
        return TEMPLATES.TemplateResponse(
            request,
            "qa_report.html",
            {
                "user": None if printable else user,  # the print view has no navigation
                "viewer": user,
                "printable": bool(printable),
                "r": found,
                "charts": chart_data(found, names),
                "query": query,
                "agent": agent or "",
                "team": team or "",
                "agents": agents,
                "teams": teams,
                "band_label": band_label,
                "agent_label": dict(agents).get(agent or "", agent or ""),
                "generated_at": datetime.now(zone).strftime("%Y-%m-%d %H:%M"),
                "period_days": len(days.days),
            },
        )

    @app.get("/api/qa-report", tags=["reports"])
    def api_qa_report(
        user: Reviewer, days: Days, agent: Text | None = None, team: Text | None = None
    ) -> dict[str, Any]:
        """The QA report (质检报表) for the calls invited within local days ``since`` to ``until`` (the last 30
        by default), of one ``agent`` (extension) or ``team`` (未分组: agents in no team), beside the period of
        the same length before (``previous_*``; ``comparison``: current, previous, change in points or
        percentage points, relative change in percent). Only checked calls count: ``not_checked`` says how
        many answered calls were left out. ``distribution``: checked calls per ten-point score band
        (``below_pass``: the whole band is under ``pass_score``); ``trend``: per local day; ``agents`` and
        ``teams``: ranked by average score, then pass rate (``rank`` null: nothing checked); ``rules``: every
        rule by the checked calls that failed it, those that never failed with 0, the pass rate over the
        ``applied_calls``, and the reviewers' verdicts on it; ``reviewers``: calls reviewed and agreement
        (the latest verdict per call and rule counts)."""
        return report(days, agent, team).as_dict()
